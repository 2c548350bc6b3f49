// Timers for one Loop: a binary min-heap of intrusive Timer nodes. Arming, re-arming and
// cancelling are O(log n) with no allocation, so a worker holds 100k+ timers cheaply (one
// per connection), and the loop sleeps exactly until the earliest deadline.
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
  ~Timer() { cancel(); }
  Timer(const Timer&) = delete;
  Timer& operator=(const Timer&) = delete;

  void arm_at(MonoTime deadline);
  void cancel();
  bool armed() const { return index_ != kNotQueued; }
  MonoTime deadline() const { return deadline_; }

 private:
  friend class TimerQueue;
  static constexpr size_t kNotQueued = SIZE_MAX;

  TimerQueue* queue_;
  std::function<void()> on_fire_;
  MonoTime deadline_{};
  uint64_t seq_ = 0;  // ties fire in arming order
  size_t index_ = kNotQueued;
};

class TimerQueue {
 public:
  std::optional<MonoTime> next_deadline() const {
    if (heap_.empty()) return std::nullopt;
    return heap_.front()->deadline_;
  }
  // Fires every timer whose deadline is <= now, earliest first. A callback may arm or
  // cancel any timer, including its own.
  void run_expired(MonoTime now);
  size_t size() const { return heap_.size(); }

 private:
  friend class Timer;
  void insert(Timer* t);
  void erase(Timer* t);
  static bool earlier(const Timer* a, const Timer* b) {
    return a->deadline_ < b->deadline_ || (a->deadline_ == b->deadline_ && a->seq_ < b->seq_);
  }
  void sift_up(size_t i);
  void sift_down(size_t i);
  void place(size_t i, Timer* t) {
    heap_[i] = t;
    t->index_ = i;
  }

  std::vector<Timer*> heap_;
  uint64_t next_seq_ = 0;
};

}  // namespace sluice::event
