#include "base/clock.h"

namespace sluice {

namespace {

class SteadyClock final : public Clock {
 public:
  MonoTime now() const override { return MonoClock::now(); }
};

}  // namespace

Clock& Clock::steady() {
  static SteadyClock clock;
  return clock;
}

}  // namespace sluice
