#include "upstream/lb/hash.h"

#include "upstream/lb/load_balancer.h"

namespace sluice::upstream::lb {

namespace {
constexpr uint64_t kFnvOffsetBasis = 0xcbf29ce484222325ULL;
constexpr uint64_t kFnvPrime = 0x100000001b3ULL;
}  // namespace

uint64_t hash_bytes(std::string_view data, uint64_t seed) {
  // FNV-1a alone mixes its last bytes poorly into the high bits (keys that differ only in a
  // trailing digit, like "10.0.0.1:8080_17", land close together); the finaliser fixes that,
  // which matters for ring positions and for maglev's `% M`.
  uint64_t h = kFnvOffsetBasis ^ mix64(seed);
  for (unsigned char c : data) {
    h ^= c;
    h *= kFnvPrime;
  }
  return mix64(h ^ data.size());
}

uint64_t hash_key(std::string_view data) {
  return hash_bytes(data, 0);
}

}  // namespace sluice::upstream::lb
