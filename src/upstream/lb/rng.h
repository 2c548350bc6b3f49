// The balancers' generator: sluice::Random, one per balancer (loop thread only like the
// balancer itself), seeded so that picks repeat in tests.
#pragma once

#include "base/random.h"

namespace sluice::upstream::lb {

using Rng = sluice::Random;

}  // namespace sluice::upstream::lb
