// Cache: the Resolver's answers by name and type, and the rules for how long each may be
// used. Time is an argument (the resolver passes its loop's time), so the rules are tested by
// moving a manual clock, without a DNS server.
//
// - A positive answer is kept for its TTL (the smallest along the CNAME chain), clamped to
//   [min_ttl, max_ttl]. A negative one (NXDOMAIN, NODATA) for the SOA's negative TTL, clamped
//   to [negative_min_ttl, negative_max_ttl]; it also forgets the last good answer (the name
//   is gone: nothing stale to serve).
// - A failure (timeout, SERVFAIL, refused...) is not cached. When a refresh fails while the
//   last good answer is still within its TTL, that answer is served (refresh_failed) for the
//   rest of it. After expiry it is served stale (RFC 8767) for up to stale_ttl, with a short
//   TTL so that the servers are asked again soon; then the failure is returned.
// - Callers that keep a name fresh ask again refresh_after(ttl) after a good answer, ahead of
//   its expiry, so they never wait on an expired name.
// Loop thread only (the resolver's).
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "base/clock.h"
#include "base/units.h"
#include "dns/answer.h"

namespace sluice::dns {

struct CacheConfig {
  Duration min_ttl = std::chrono::seconds(1);
  Duration max_ttl = std::chrono::hours(1);
  Duration negative_min_ttl = std::chrono::seconds(1);
  Duration negative_max_ttl = std::chrono::minutes(5);
  Duration stale_ttl = std::chrono::minutes(5);
};

// How long to use a good answer with this TTL before asking the servers again: a tenth of
// the TTL early, at most 30 s early.
Duration refresh_after(Duration ttl);

class Cache {
 public:
  explicit Cache(const CacheConfig& config) : config_(config) {}

  // The unexpired answer under `key` at `now` (positive, negative, or a good one whose
  // refresh failed), marked from_cache, its ttl what is left of it; nullopt when none.
  std::optional<Answer> find(const std::string& key, MonoTime now) const;
  // Takes what the servers answered for `key` at `now` (ttl unset) and returns what the
  // askers get: the answer with its clamped ttl, or, for a failure, the last good answer
  // (refresh_failed or stale) when the rules above allow, else the failure with ttl 0.
  Answer store(const std::string& key, Answer answer, MonoTime now);

  size_t size() const { return entries_.size(); }

  // The good answers still within their TTL, with what is left of it (a binary upgrade hands
  // them to the new process, whose first round then needs no query).
  struct Saved {
    std::string key;
    Answer answer;
    Duration left{0};
  };
  std::vector<Saved> save(MonoTime now) const;
  // Every name the cache holds with its latest answer (good, negative, refreshed in vain, or
  // the last good one marked stale when a refresh after expiry failed) and what is left of
  // its TTL (negative: expired), for the admin dashboard.
  std::vector<Saved> report(MonoTime now) const;
  // Takes a saved answer as if the servers had just given it with `left` to live.
  void restore(const Saved& saved, MonoTime now);
  const CacheConfig& config() const { return config_; }

 private:
  struct Entry {
    Answer answer;  // the latest positive or negative answer
    bool has_answer = false;
    MonoTime expires{};
    Answer good;  // the last positive answer, for serve-stale
    bool has_good = false;
    MonoTime good_expires{};
  };

  CacheConfig config_;
  std::map<std::string, Entry> entries_;
};

}  // namespace sluice::dns
