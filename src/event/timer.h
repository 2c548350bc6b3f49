// Timers for one Loop: a binary min-heap of intrusive Timer nodes. Arming is O(log n) with
// no allocation, so a worker holds 100k+ timers cheaply (one per connection). Moving a
// timer later and cancelling it are lazy and O(1): the node keeps its place in the heap, and
// when that earlier place comes due the timer is put back at its real deadline (or dropped,
// if cancelled) instead of firing. A keep-alive timer pushed back on every request so
// costs no heap work per request, at the price of a rare early wake-up of the loop.
// Timers fire in deadline order, ties in arming order.
// Timer and TimerQueue belong to one loop thread.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <vector>

#include "base/clock.h"
#include "base/units.h"

namespace sluice::event {

class TimerQueue;

class Timer {
 public:
  Timer(TimerQueue& queue, std::function<void()> on_fire)
      : queue_(&queue), on_fire_(std::move(on_fire)) {}
  ~Timer();
  Timer(const Timer&) = delete;
  Timer& operator=(const Timer&) = delete;

  void arm_at(MonoTime deadline);
  void cancel();
  bool armed() const { return armed_; }
  MonoTime deadline() const { return deadline_; }

 private:
  friend class TimerQueue;
  static constexpr size_t kNotQueued = SIZE_MAX;

  TimerQueue* queue_;
  std::function<void()> on_fire_;
  // What the owner asked for.
  MonoTime deadline_{};
  uint64_t seq_ = 0;  // ties fire in arming order
  bool armed_ = false;
  // Where the node sits in the heap (while index_ != kNotQueued): at or before deadline_.
  MonoTime key_{};
  uint64_t key_seq_ = 0;
  size_t index_ = kNotQueued;
};

class TimerQueue {
 public:
  TimerQueue() = default;
  ~TimerQueue();
  TimerQueue(const TimerQueue&) = delete;
  TimerQueue& operator=(const TimerQueue&) = delete;
  // The earliest place in the heap: the loop wakes then (possibly only to move a timer that
  // was pushed back, or drop one that was cancelled).
  std::optional<MonoTime> next_deadline() const {
    if (heap_.empty()) return std::nullopt;
    return heap_.front()->key_;
  }
  // Fires every timer whose deadline is <= now, earliest first. A callback may arm or
  // cancel any timer, including its own.
  void run_expired(MonoTime now);
  // Armed timers.
  size_t size() const { return armed_count_; }

 private:
  friend class Timer;
  void insert(Timer* t);
  void erase(Timer* t);
  static bool earlier(const Timer* a, const Timer* b) {
    return a->key_ < b->key_ || (a->key_ == b->key_ && a->key_seq_ < b->key_seq_);
  }
  void sift_up(size_t i);
  void sift_down(size_t i);
  void place(size_t i, Timer* t) {
    heap_[i] = t;
    t->index_ = i;
  }

  std::vector<Timer*> heap_;  // armed timers, and some cancelled ones waiting for their place
  size_t armed_count_ = 0;
  uint64_t next_seq_ = 0;
};

}  // namespace sluice::event
