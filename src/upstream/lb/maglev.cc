#include "upstream/lb/maglev.h"

#include <algorithm>
#include <limits>

#include "base/check.h"
#include "upstream/lb/hash.h"

namespace sluice::upstream::lb {

namespace {

// Seed of h2, the skip hash; h1 is hash_key() itself. Any fixed value other than 0 works.
constexpr uint64_t kSkipHashSeed = 0x6d61676c65763273ULL;
constexpr uint32_t kEmpty = std::numeric_limits<uint32_t>::max();

bool is_prime(uint32_t n) {
  if (n < 2) return false;
  for (uint64_t d = 2; d * d <= n; ++d) {
    if (n % d == 0) return false;
  }
  return true;
}

}  // namespace

Maglev::Maglev(std::vector<LbHost> hosts, uint32_t table_size, uint64_t seed)
    : hosts_(std::move(hosts)), rng_(seed) {
  SLUICE_CHECK(is_prime(table_size));
  const uint64_t m = table_size;

  struct Filler {
    uint64_t next;  // the slot this host tries next
    uint64_t skip;
    uint64_t turns;  // slots claimed so far
    uint64_t round;  // the round of its next turn
    uint32_t pos;
  };
  std::vector<Filler> fillers;
  fillers.reserve(hosts_.size());
  uint64_t max_weight = 0;
  for (size_t pos = 0; pos < hosts_.size(); ++pos) {
    const LbHost& h = hosts_[pos];
    fillers.push_back(Filler{hash_key(h.key) % m, hash_bytes(h.key, kSkipHashSeed) % (m - 1) + 1, 0,
                             0, static_cast<uint32_t>(pos)});
    max_weight = std::max<uint64_t>(max_weight, h.weight);
  }
  // Within a round, turns go in key order, so the table does not depend on host order.
  std::sort(fillers.begin(), fillers.end(), [&](const Filler& a, const Filler& b) {
    const LbHost& ha = hosts_[a.pos];
    const LbHost& hb = hosts_[b.pos];
    if (ha.key != hb.key) return ha.key < hb.key;
    return ha.index < hb.index;
  });

  // The credit rule (each round add w, take a turn when the credit reaches max_weight) gives
  // a host its turn t (1-based) in round ceil(t * max / w) - 1. A heap ordered by (round, key
  // rank) visits exactly those turns, without walking the hosts that sit a round out: the
  // build stays O(M log n) however skewed the weights.
  auto round_of_turn = [&](uint64_t t, uint64_t w) { return (t * max_weight + w - 1) / w - 1; };
  std::vector<uint32_t> heap;  // ranks into `fillers`
  heap.reserve(fillers.size());
  for (uint32_t rank = 0; rank < fillers.size(); ++rank) {
    fillers[rank].round = round_of_turn(1, hosts_[fillers[rank].pos].weight);
    heap.push_back(rank);
  }
  auto later = [&](uint32_t a, uint32_t b) {
    if (fillers[a].round != fillers[b].round) return fillers[a].round > fillers[b].round;
    return a > b;
  };
  std::make_heap(heap.begin(), heap.end(), later);

  table_.assign(m, kEmpty);
  for (uint64_t filled = 0; filled < m; ++filled) {
    std::pop_heap(heap.begin(), heap.end(), later);
    Filler& f = fillers[heap.back()];
    // A permutation of all slots, and the table is not full: a free one comes up.
    while (table_[f.next] != kEmpty) f.next = (f.next + f.skip) % m;
    table_[f.next] = f.pos;
    f.next = (f.next + f.skip) % m;
    ++f.turns;
    f.round = round_of_turn(f.turns + 1, hosts_[f.pos].weight);
    std::push_heap(heap.begin(), heap.end(), later);
  }
}

size_t Maglev::pick(const PickContext& ctx) {
  const uint64_t h = ctx.hash.has_value() ? *ctx.hash : rng_.next_u64();
  size_t slot = static_cast<size_t>(h % table_.size());
  if (ctx.tried.empty() || !hosts_.is_tried(table_[slot], ctx.tried) ||
      hosts_.all_tried(ctx.tried)) {
    return hosts_[table_[slot]].index;
  }
  // Following slots belong to hosts in proportion to their share, so an untried host comes
  // up after a few steps. A very light host may own no slot at all; after one turn of the
  // table fall back to a weighted draw.
  for (size_t step = 1; step < table_.size(); ++step) {
    if (++slot == table_.size()) slot = 0;
    if (!hosts_.is_tried(table_[slot], ctx.tried)) return hosts_[table_[slot]].index;
  }
  return hosts_[hosts_.pick_weighted_untried(rng_, ctx.tried)].index;
}

}  // namespace sluice::upstream::lb
