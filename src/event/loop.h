// Loop: one thread's event loop. It owns a Poller, a TimerQueue, a cross-thread post queue
// (eventfd) and a deferred-deletion list, and reads the time from a Clock (the steady clock,
// or a ManualClock in tests). Everything but post() and stop() must be called from the
// loop's own thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "base/clock.h"
#include "base/metric.h"
#include "event/poller.h"
#include "event/timer.h"

namespace sluice::event {

// Objects that may still receive events in the current iteration (a connection closed by
// one handler while another event for it is queued) are destroyed after the iteration.
class DeferredDeletable {
 public:
  virtual ~DeferredDeletable() = default;
};

// Work an object wants done once per iteration, after every event of the iteration was
// handled: a connection flushes everything its handlers wrote with one send().
class EndOfIteration {
 public:
  virtual void on_iteration_end() = 0;

 protected:
  virtual ~EndOfIteration() = default;

 private:
  friend class Loop;
  bool queued_ = false;
};

// One loop's counters (its own thread), declared once (base/metric.h says how to add one);
// exported per worker, not merged.
// clang-format off
#define SLUICE_LOOP_STATS(COUNTER, GAUGE, HISTOGRAM, COUNTERS, GAUGES)                             \
  COUNTER(busy_ns, "sluice_worker_busy_seconds_total", "", "busy",                                 \
          "Time each worker loop spent handling events, timers and posts.")                        \
  COUNTER(events, "sluice_worker_events_total", "", "events",                                      \
          "I/O events each worker handled.")                                                       \
  COUNTER(iterations, "sluice_worker_iterations_total", "", "iterations",                          \
          "Loop iterations of each worker.")                                                       \
  GAUGE(longest_iteration_ns, "sluice_worker_longest_iteration_seconds", "",                       \
        "longest iteration", "The longest single loop iteration of each worker so far.")
// clang-format on

struct LoopStats {
  SLUICE_METRIC_MEMBERS(SLUICE_LOOP_STATS)
};

class Loop {
 public:
  // Uses the process's event backend (event/backend.h), or `backend`.
  explicit Loop(Clock& clock = Clock::steady());
  Loop(Clock& clock, Backend backend);
  ~Loop();
  Loop(const Loop&) = delete;
  Loop& operator=(const Loop&) = delete;

  Poller& poller() { return *poller_; }
  Backend backend() const { return poller_->backend(); }
  // Whether connections that can (raw downstream ones) receive by completion here: the
  // process's choice (set_process_receive()) when the backend offers it. Tests may choose.
  bool receive_by_completion() const { return receive_by_completion_; }
  void set_receive(Receive r) {
    receive_by_completion_ = r == Receive::kCompletion && backend() == Backend::kIoUring;
  }
  TimerQueue& timers() { return timers_; }
  // The time at the start of the current iteration: cheap, good for timeouts.
  MonoTime now() const { return now_; }
  // The start of the iteration before this one: what the kernel had reported by then was
  // handled before this iteration's events.
  MonoTime previous_now() const { return previous_now_; }
  const LoopStats& stats() const { return stats_; }
  Clock& clock() const { return clock_; }

  // Any thread: runs fn on the loop thread, in posting order.
  void post(std::function<void()> fn);
  // Loop thread: destroys obj once the current iteration's events are handled.
  void defer_delete(std::unique_ptr<DeferredDeletable> obj);
  // Loop thread, outside any callback (after run() returned): destroys every deferred
  // object now, including those their destructors defer in turn.
  void delete_deferred_now();
  // Loop thread: calls obj->on_iteration_end() once, after this iteration's events (before
  // deferred deletions). Queuing it again before then is free.
  void at_iteration_end(EndOfIteration* obj) {
    if (obj->queued_) return;
    obj->queued_ = true;
    at_end_.push_back(obj);
  }
  // Forgets obj if queued (it is going away).
  void cancel_iteration_end(EndOfIteration* obj);

  // Runs until stop(). Returns on the loop thread.
  void run();
  // Tests: runs iterations without sleeping (events already ready, posted work, timers due
  // at the clock's current time, requests still to reach the kernel) until one finds
  // nothing to do. With a ManualClock, move
  // time with clock.advance(d) and call this to fire what fell due.
  void run_until_idle();
  // Any thread.
  void stop();

 private:
  class Wakeup;
  // A loop about to sleep this long (or until an event) with nothing due is quiet.
  static constexpr int kQuietMs = 1000;
  bool worked_since_quiet_ = false;  // events were handled since the loop was last quiet
  MonoTime last_events_{};           // the end of the last iteration that handled events
  void run_posted();
  // One iteration: waits up to timeout_ms for events, then handles them, the timers due,
  // the end-of-iteration work and deferred deletions. Returns the number of events.
  int run_once(int timeout_ms);

  Clock& clock_;
  bool steady_;  // clock_ is the process's steady clock: busy time and now_ read it once
  std::unique_ptr<Poller> poller_;
  bool receive_by_completion_ = false;
  TimerQueue timers_;
  std::unique_ptr<Wakeup> wakeup_;
  MonoTime now_;
  MonoTime previous_now_;
  MonoTime ended_;  // when the last iteration ended (the steady clock)
  LoopStats stats_;
  std::atomic<bool> stopping_{false};

  std::mutex posted_mu_;
  std::vector<std::function<void()>> posted_;
  std::vector<std::function<void()>> running_;
  std::vector<std::unique_ptr<DeferredDeletable>> to_delete_;
  std::vector<EndOfIteration*> at_end_;
  std::vector<EndOfIteration*> running_at_end_;
  void run_at_end();
};

}  // namespace sluice::event
