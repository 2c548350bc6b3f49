// A small, fast pseudo-random generator for balancer decisions (splitmix64: 8 bytes of
// state, statistically sound for this use, not cryptographic). One per balancer, so loop
// thread only like the balancer itself.
#pragma once

#include <cstdint>
#include <random>

namespace sluice::upstream::lb {

class Rng {
 public:
  // `seed` 0 draws one from std::random_device.
  explicit Rng(uint64_t seed) : state_(seed != 0 ? seed : random_seed()) {}

  uint64_t next() {
    uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }

  // Uniform in [0, bound) for bound >= 1, by multiply-shift: no division, and a bias of at
  // most bound / 2^64, far below anything a balancer can observe.
  uint64_t below(uint64_t bound) {
    return static_cast<uint64_t>((static_cast<unsigned __int128>(next()) * bound) >> 64);
  }

  static uint64_t random_seed() {
    std::random_device rd;
    return (static_cast<uint64_t>(rd()) << 32) ^ rd();
  }

 private:
  uint64_t state_;
};

}  // namespace sluice::upstream::lb
