#include "upstream/lb/round_robin.h"

#include <algorithm>

#include "upstream/lb/hash.h"

namespace sluice::upstream::lb {

RoundRobin::RoundRobin(std::vector<LbHost> hosts, uint64_t seed) : hosts_(std::move(hosts)) {
  using u128 = unsigned __int128;
  if (seed == 0) seed = Rng::random_seed();
  // Start at virtual time s / W: each host's first turn is its earliest deadline >= s / W.
  // That is the state reached after the picks due before s / W, so the sequence is the same
  // cycle, rotated, set up in O(n log n) instead of by s dry-run picks. mix64 spreads nearby
  // seeds (1, 2, 3...) over the cycle.
  const uint64_t total = hosts_.total_weight();
  const uint64_t s = mix64(seed) % total;
  const uint64_t n = hosts_.size();
  heap_.reserve(n);
  skipped_.reserve(n);
  for (size_t pos = 0; pos < n; ++pos) {
    const uint64_t w = hosts_[pos].weight;
    // Smallest k >= 1 with (k - 1 + (2p + 1) / 2n) / w >= s / W, i.e.
    // k - 1 >= (2nsw - (2p + 1)W) / 2nW.
    const u128 lhs = u128{2} * n * s * w;
    const u128 phase = u128{2 * pos + 1} * total;
    const u128 den = u128{2} * n * total;
    uint64_t k = 1;
    if (lhs > phase) k += static_cast<uint64_t>((lhs - phase + den - 1) / den);  // <= w + 1
    uint64_t cycle = 0;
    if (k > w) {
      k -= w;
      cycle = 1;
    }
    heap_.push_back(Turn{cycle, static_cast<uint32_t>(k), static_cast<uint32_t>(pos)});
  }
  std::make_heap(heap_.begin(), heap_.end(),
                 [this](const Turn& a, const Turn& b) { return later(a, b); });
}

bool RoundRobin::later(const Turn& a, const Turn& b) const {
  if (a.cycle != b.cycle) return a.cycle > b.cycle;
  // (2n(ka - 1) + 2pa + 1) / (2n wa) vs the same for b, cross-multiplied in 128 bits.
  using u128 = unsigned __int128;
  const uint64_t n2 = 2 * hosts_.size();
  const u128 lhs = u128{n2 * (a.k - 1) + 2 * a.pos + 1} * hosts_[b.pos].weight;
  const u128 rhs = u128{n2 * (b.k - 1) + 2 * b.pos + 1} * hosts_[a.pos].weight;
  if (lhs != rhs) return lhs > rhs;
  return a.pos > b.pos;
}

void RoundRobin::advance(Turn& t) const {
  if (t.k == hosts_[t.pos].weight) {
    t.k = 1;
    ++t.cycle;
  } else {
    ++t.k;
  }
}

size_t RoundRobin::pick(const PickContext& ctx) {
  auto cmp = [this](const Turn& a, const Turn& b) { return later(a, b); };
  const bool avoid = !ctx.tried.empty() && !hosts_.all_tried(ctx.tried);
  // Tried hosts are set aside without using up their turn, so the next request still sees
  // them at their place in the cycle. Each host is in the heap once, so at most |tried|
  // are set aside before an untried one comes up.
  while (avoid && hosts_.is_tried(heap_.front().pos, ctx.tried)) {
    std::pop_heap(heap_.begin(), heap_.end(), cmp);
    skipped_.push_back(heap_.back());
    heap_.pop_back();
  }
  std::pop_heap(heap_.begin(), heap_.end(), cmp);
  const size_t pos = heap_.back().pos;
  advance(heap_.back());
  std::push_heap(heap_.begin(), heap_.end(), cmp);
  for (const Turn& t : skipped_) {
    heap_.push_back(t);
    std::push_heap(heap_.begin(), heap_.end(), cmp);
  }
  skipped_.clear();
  return hosts_[pos].index;
}

}  // namespace sluice::upstream::lb
