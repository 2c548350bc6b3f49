#include "dns/cache.h"

#include <algorithm>

#include "base/log.h"

namespace sluice::dns {

namespace {

Duration clamp_ttl(uint32_t seconds, Duration lo, Duration hi) {
  Duration d = std::chrono::seconds(seconds);
  return std::clamp(d, lo, hi);
}

}  // namespace

Duration refresh_after(Duration ttl) {
  Duration lead = std::min<Duration>(ttl / 10, std::chrono::seconds(30));
  return ttl - lead;
}

std::optional<Answer> Cache::find(const std::string& key, MonoTime now) const {
  auto it = entries_.find(key);
  if (it == entries_.end()) return std::nullopt;
  const Entry& e = it->second;
  if (!e.has_answer || now >= e.expires) return std::nullopt;
  Answer a = e.answer;
  a.from_cache = true;
  a.latency = Duration(0);
  a.ttl = std::chrono::duration_cast<Duration>(e.expires - now);
  return a;
}

std::vector<Cache::Saved> Cache::save(MonoTime now) const {
  std::vector<Saved> out;
  for (const auto& [key, e] : entries_) {
    if (!e.has_answer || !e.answer.ok() || now >= e.expires) continue;
    out.push_back(Saved{key, e.answer, std::chrono::duration_cast<Duration>(e.expires - now)});
  }
  return out;
}

std::vector<Cache::Saved> Cache::report(MonoTime now) const {
  std::vector<Saved> out;
  for (const auto& [key, e] : entries_) {
    if (e.has_answer) {
      out.push_back(Saved{key, e.answer, std::chrono::duration_cast<Duration>(e.expires - now)});
    } else if (e.has_good && now < e.good_expires + config_.stale_ttl) {
      // A refresh after expiry failed: lookups get the last good answer, stale.
      Answer stale = e.good;
      stale.stale = true;
      out.push_back(Saved{key, stale, std::chrono::duration_cast<Duration>(e.good_expires - now)});
    }
  }
  return out;
}

void Cache::restore(const Saved& saved, MonoTime now) {
  if (saved.left <= Duration(0) || !saved.answer.ok()) return;
  Entry& e = entries_[saved.key];
  Answer a = saved.answer;
  a.ttl = saved.left;
  a.from_cache = false;
  a.stale = a.refresh_failed = false;
  e.answer = a;
  e.has_answer = true;
  e.expires = now + saved.left;
  e.good = a;
  e.has_good = true;
  e.good_expires = e.expires;
}

Answer Cache::store(const std::string& key, Answer a, MonoTime now) {
  Entry& e = entries_[key];
  if (a.ok()) {
    a.ttl = clamp_ttl(a.record_ttl, config_.min_ttl, config_.max_ttl);
    e.answer = a;
    e.has_answer = true;
    e.expires = now + a.ttl;
    e.good = a;
    e.has_good = true;
    e.good_expires = e.expires;
    return a;
  }
  if (a.negative()) {
    a.ttl = clamp_ttl(a.record_ttl, config_.negative_min_ttl, config_.negative_max_ttl);
    e.answer = a;
    e.has_answer = true;
    e.expires = now + a.ttl;
    e.has_good = false;  // the name is gone: nothing stale to serve
    return a;
  }
  e.has_answer = false;  // failures are not cached: the next lookup asks again
  if (e.has_good && now < e.good_expires) {
    // A refresh ahead of expiry failed: the answer is still good for the rest of its TTL.
    Duration left = std::chrono::duration_cast<std::chrono::milliseconds>(e.good_expires - now);
    LOG_WARN("dns: {}: {}; the cached answer stays good for its remaining {}", a.name, a.error_text,
             format_duration(left));
    Answer kept = e.good;
    kept.from_cache = true;
    kept.refresh_failed = true;
    kept.latency = a.latency;
    kept.error_text = a.error_text;  // why the refresh failed
    kept.ttl = left;
    e.answer = kept;
    e.has_answer = true;
    e.expires = e.good_expires;
    return kept;
  }
  if (e.has_good && now < e.good_expires + config_.stale_ttl) {
    // Whole milliseconds, for a readable log line.
    Duration left = std::chrono::duration_cast<std::chrono::milliseconds>(e.good_expires +
                                                                          config_.stale_ttl - now);
    LOG_WARN("dns: {}: {}; serving the last good answer ({} of stale_ttl left)", a.name,
             a.error_text, format_duration(left));
    Answer stale = e.good;
    stale.stale = true;
    stale.from_cache = true;
    stale.latency = a.latency;
    stale.error_text = a.error_text;  // why it is stale
    // Try again soon, but never past the end of the stale window.
    stale.ttl = std::min(left, std::max<Duration>(config_.min_ttl, std::chrono::seconds(1)));
    return stale;
  }
  e.has_good = false;
  a.ttl = Duration(0);
  return a;
}

}  // namespace sluice::dns
