// Monotonic time for timers and timeouts.
#pragma once

#include <chrono>

namespace sluice {

using MonoClock = std::chrono::steady_clock;
using MonoTime = MonoClock::time_point;

}  // namespace sluice
