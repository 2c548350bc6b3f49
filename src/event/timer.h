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
#include <new>
#include <optional>
#include <type_traits>
#include <utility>
#include <vector>

#include "base/clock.h"
#include "base/units.h"

namespace sluice::event {

class TimerQueue;

// What a timer runs when it fires: any callable. One that fits in a pointer and copies
// trivially (a lambda that captures `this`, as nearly every timer's does) is kept in place,
// anything else on the heap: 16 bytes either way, where a std::function takes 32, and a
// connection holds a timer for as long as it is open.
class TimerCallback {
 public:
  template <class F>
  explicit TimerCallback(F&& f) {
    using Fn = std::decay_t<F>;
    if constexpr (sizeof(Fn) <= sizeof(void*) && alignof(Fn) <= alignof(void*) &&
                  std::is_trivially_copyable_v<Fn>) {
      ::new (static_cast<void*>(buf_)) Fn(std::forward<F>(f));
      ops_ = &kInline<Fn>;
    } else {
      ::new (static_cast<void*>(buf_)) Fn*(new Fn(std::forward<F>(f)));
      ops_ = &kHeap<Fn>;
    }
  }
  ~TimerCallback() {
    if (ops_->destroy) ops_->destroy(buf_);
  }
  TimerCallback(const TimerCallback&) = delete;
  TimerCallback& operator=(const TimerCallback&) = delete;

  void operator()() { ops_->call(buf_); }

 private:
  struct Ops {
    void (*call)(unsigned char* buf);
    void (*destroy)(unsigned char* buf);  // null: nothing to do
  };
  template <class Fn>
  static constexpr Ops kInline{
      [](unsigned char* b) { (*std::launder(reinterpret_cast<Fn*>(b)))(); }, nullptr};
  template <class Fn>
  static constexpr Ops kHeap{
      [](unsigned char* b) { (**std::launder(reinterpret_cast<Fn**>(b)))(); },
      [](unsigned char* b) { delete *std::launder(reinterpret_cast<Fn**>(b)); }};

  const Ops* ops_;
  alignas(void*) unsigned char buf_[sizeof(void*)];
};

class Timer {
 public:
  template <class F>
  Timer(TimerQueue& queue, F&& on_fire) : queue_(&queue), on_fire_(std::forward<F>(on_fire)) {}
  ~Timer();
  Timer(const Timer&) = delete;
  Timer& operator=(const Timer&) = delete;

  void arm_at(MonoTime deadline);
  void cancel();
  bool armed() const { return armed_; }
  MonoTime deadline() const { return deadline_; }

 private:
  friend class TimerQueue;
  static constexpr uint32_t kNotQueued = UINT32_MAX;

  TimerQueue* queue_;
  TimerCallback on_fire_;
  // What the owner asked for.
  MonoTime deadline_{};
  // Where the node sits in the heap (while index_ != kNotQueued): at or before deadline_.
  MonoTime key_{};
  // Arming order, for ties: 32 bits that wrap, compared as serial numbers (two timers tied
  // at the same nanosecond were armed far fewer than 2^31 arms apart).
  uint32_t seq_ = 0;
  uint32_t key_seq_ = 0;
  uint32_t index_ = kNotQueued;
  bool armed_ = false;
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
    return a->key_ < b->key_ ||
           (a->key_ == b->key_ && static_cast<int32_t>(a->key_seq_ - b->key_seq_) < 0);
  }
  void sift_up(size_t i);
  void sift_down(size_t i);
  void place(size_t i, Timer* t) {
    heap_[i] = t;
    t->index_ = static_cast<uint32_t>(i);
  }

  std::vector<Timer*> heap_;  // armed timers, and some cancelled ones waiting for their place
  size_t armed_count_ = 0;
  uint32_t next_seq_ = 0;
};

}  // namespace sluice::event
