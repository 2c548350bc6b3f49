// Stable hashing shared by the hash-based balancers. hash_key() (declared in
// load_balancer.h) is the public entry point; the seeded variant exists so that maglev can
// derive two independent hashes of one host key. Nothing here depends on a per-process seed:
// a key hashes to the same value on every worker, host and restart.
#pragma once

#include <cstdint>
#include <string_view>

namespace sluice::upstream::lb {

// A bijective 64-bit finaliser (the MurmurHash3 fmix64 constants): every input bit
// affects every output bit.
constexpr uint64_t mix64(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ULL;
  x ^= x >> 33;
  return x;
}

// FNV-1a over the bytes, with `seed` folded into the offset basis, then mix64() of the
// result and the length. hash_key(d) == hash_bytes(d, 0).
uint64_t hash_bytes(std::string_view data, uint64_t seed);

}  // namespace sluice::upstream::lb
