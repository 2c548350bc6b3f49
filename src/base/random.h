// Random: a small, fast pseudo-random generator (splitmix64: 8 bytes of state, statistically
// sound for jitter, sampling and balancing; not cryptographic). One object belongs to one
// thread: thread_rng() is the calling thread's, seeded once from std::random_device; a
// balancer keeps its own, seeded, so its picks repeat in tests.
#pragma once

#include <cstdint>
#include <random>

namespace sluice {

class Random {
 public:
  // `seed` 0 draws one from std::random_device.
  explicit Random(uint64_t seed = 0) : state_(seed != 0 ? seed : random_seed()) {}

  uint64_t next_u64() {
    uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }

  // Uniform in [0, bound) for bound >= 1 (0 for bound 0), by multiply-shift: no division,
  // and a bias of at most bound / 2^64, far below anything observable here.
  uint64_t below(uint64_t bound) {
    return static_cast<uint64_t>((static_cast<unsigned __int128>(next_u64()) * bound) >> 64);
  }

  // Uniform in [0, 1): the top 53 bits, so every value is a double exactly.
  double uniform() { return static_cast<double>(next_u64() >> 11) * 0x1.0p-53; }

  // True with probability percent / 100 (percent >= 100: always).
  bool chance_percent(uint32_t percent) { return below(100) < percent; }

  // A seed from the operating system's entropy.
  static uint64_t random_seed() {
    std::random_device rd;
    uint64_t s = (static_cast<uint64_t>(rd()) << 32) ^ rd();
    return s != 0 ? s : 0x9e3779b97f4a7c15ULL;
  }

 private:
  uint64_t state_;
};

// The calling thread's generator, for jitter, sampling and identifiers.
inline Random& thread_rng() {
  thread_local Random rng;
  return rng;
}

}  // namespace sluice
