#include "upstream/lb/ring_hash.h"

#include <algorithm>
#include <numeric>
#include <string>

#include "base/check.h"

namespace sluice::upstream::lb {

namespace {

// Nodes per host: ring_size * weight / total, rounded, at least one. Each host's count
// depends only on its own weight and the cluster's total, never on which others are present.
std::vector<uint32_t> node_counts(const HostSet& hosts, uint32_t ring_size, uint64_t total) {
  using u128 = unsigned __int128;
  std::vector<uint32_t> counts(hosts.size());
  for (size_t pos = 0; pos < hosts.size(); ++pos) {
    const u128 share = (u128{ring_size} * hosts[pos].weight * 2 + total) / (u128{total} * 2);
    counts[pos] = static_cast<uint32_t>(std::max<u128>(share, 1));
  }
  return counts;
}

}  // namespace

RingHash::RingHash(std::vector<LbHost> hosts, uint32_t ring_size, uint64_t total_weight,
                   uint64_t seed)
    : hosts_(std::move(hosts)), rng_(seed) {
  SLUICE_CHECK(ring_size >= 1);
  if (total_weight < hosts_.total_weight()) total_weight = hosts_.total_weight();
  const std::vector<uint32_t> counts = node_counts(hosts_, ring_size, total_weight);

  struct Node {
    uint64_t hash;
    uint32_t pos;
    uint32_t ordinal;
  };
  std::vector<Node> nodes;
  nodes.reserve(std::accumulate(counts.begin(), counts.end(), size_t{0}));
  std::string name;
  for (size_t pos = 0; pos < hosts_.size(); ++pos) {
    for (uint32_t i = 0; i < counts[pos]; ++i) {
      name = hosts_[pos].key;
      name += '_';
      name += std::to_string(i);
      nodes.push_back(Node{hash_key(name), static_cast<uint32_t>(pos), i});
    }
  }
  // Colliding positions are ordered by key, not by host order, for the same ring everywhere.
  std::sort(nodes.begin(), nodes.end(), [&](const Node& a, const Node& b) {
    if (a.hash != b.hash) return a.hash < b.hash;
    const LbHost& ha = hosts_[a.pos];
    const LbHost& hb = hosts_[b.pos];
    if (ha.key != hb.key) return ha.key < hb.key;
    if (a.ordinal != b.ordinal) return a.ordinal < b.ordinal;
    return ha.index < hb.index;
  });
  hashes_.reserve(nodes.size());
  owners_.reserve(nodes.size());
  for (const Node& n : nodes) {
    hashes_.push_back(n.hash);
    owners_.push_back(n.pos);
  }
}

size_t RingHash::pick(const PickContext& ctx) {
  const uint64_t h = ctx.hash.has_value() ? *ctx.hash : rng_.next_u64();
  size_t i =
      static_cast<size_t>(std::lower_bound(hashes_.begin(), hashes_.end(), h) - hashes_.begin());
  if (i == hashes_.size()) i = 0;
  if (!ctx.tried.empty() && hosts_.is_tried(owners_[i], ctx.tried) &&
      !hosts_.all_tried(ctx.tried)) {
    // Every host owns a node, so an untried one comes up within one turn of the ring.
    do {
      i = i + 1 == owners_.size() ? 0 : i + 1;
    } while (hosts_.is_tried(owners_[i], ctx.tried));
  }
  return hosts_[owners_[i]].index;
}

}  // namespace sluice::upstream::lb
