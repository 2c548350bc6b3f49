// Monotonic time for timers and timeouts, behind a seam: production code reads the steady
// clock; tests hold time still with a ManualClock and move it by hand, so timeouts, backoff,
// lifetimes and refresh rules are tested exactly instead of by sleeping.
#pragma once

#include <chrono>

namespace sluice {

using MonoClock = std::chrono::steady_clock;
using MonoTime = MonoClock::time_point;

// Where an event loop (and everything timed on it) reads the time. Implementations are
// called from one loop thread at a time.
class Clock {
 public:
  virtual ~Clock() = default;
  virtual MonoTime now() const = 0;
  // True when time moves only by hand (a loop then never sleeps waiting for a timer).
  virtual bool manual() const { return false; }

  // The process-wide steady clock.
  static Clock& steady();
};

// A clock that stands still until advance() or set() moves it. For tests.
class ManualClock final : public Clock {
 public:
  // Starts at an arbitrary, non-zero point (a zero MonoTime means "never" in places).
  ManualClock() : now_(MonoTime(std::chrono::hours(1))) {}
  MonoTime now() const override { return now_; }
  bool manual() const override { return true; }
  void advance(MonoClock::duration d) { now_ += d; }
  void set(MonoTime t) { now_ = t; }

 private:
  MonoTime now_;
};

}  // namespace sluice
