#include "discovery/etcd_source.h"

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <unordered_map>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "base/log.h"
#include "discovery/endpoint_json.h"
#include "discovery/etcd_json.h"

namespace sluice::discovery {

namespace {

// The end of the range of every key with `prefix` (etcd's "prefix end": the prefix with its
// last byte below 0xff incremented, the rest dropped).
std::string prefix_end(std::string prefix) {
  while (!prefix.empty()) {
    auto& last = reinterpret_cast<unsigned char&>(prefix.back());
    if (last < 0xff) {
      ++last;
      return prefix;
    }
    prefix.pop_back();
  }
  return std::string(1, '\0');  // every key
}

}  // namespace

EtcdSource::EtcdSource(event::Loop& loop, std::string cluster,
                       const upstream::EtcdSourceConfig& config, OnUpdate on_update)
    : loop_(loop),
      cluster_(std::move(cluster)),
      config_(config),
      on_update_(std::move(on_update)),
      key_b64_(b64_encode(config.prefix)),
      range_end_b64_(b64_encode(prefix_end(config.prefix))),
      retry_timer_(loop.timers(), [this] { retry_now(); }),
      watch_timer_(loop.timers(),
                   [this] {
                     if (call_ == Call::kWatch && watch_created_) {
                       return fail(fmt::format("no event or progress notification for {}",
                                               format_duration(config_.watch_timeout)));
                     }
                     bool with_token = call_ != Call::kAuth && !token_.empty();
                     if (with_token) {
                       token_.clear();
                       ++stats_.auth_renewals;
                     }
                     fail(fmt::format(
                         "no answer in {}{}",
                         format_duration(std::min<Duration>(kCallTimeout, config_.watch_timeout)),
                         with_token ? "; authenticating again" : ""));
                   }),
      batch_timer_(loop.timers(), [this] { apply(true); }),
      first_fetch_timer_(loop.timers(), [this] { first_fetch_timed_out(); }) {
  tls_ = make_call_tls(config_.tls, &tls_error_);
  if (!config_.persist.empty()) {
    persisted_ = std::make_unique<PersistedSet>(cluster_, config_.persist);
  }
  set_state(upstream::SourceState::kStarting);
}

EtcdSource::~EtcdSource() {
  stop();
}

std::string EtcdSource::target() const {
  std::string s;
  for (const auto& e : config_.endpoints) {
    if (!s.empty()) s += ',';
    s += e.to_string();
  }
  s += ' ';
  s += config_.prefix;
  return s;
}

const upstream::SourceStats& EtcdSource::stats() const {
  stats_.stale_ns =
      state_ == upstream::SourceState::kSynced
          ? 0
          : static_cast<uint64_t>(
                std::chrono::duration_cast<std::chrono::nanoseconds>(loop_.now() - stale_since_)
                    .count());
  return stats_;
}

std::string EtcdSource::staleness_problem() const {
  if (config_.max_staleness == Duration{} || state_ == upstream::SourceState::kSynced) return {};
  Duration stale = loop_.now() - stale_since_;
  if (stale <= config_.max_staleness) return {};
  return fmt::format("cluster {}: etcd not reached for {} (max_staleness {})", cluster_,
                     format_duration(std::chrono::duration_cast<std::chrono::seconds>(stale)),
                     format_duration(config_.max_staleness));
}

void EtcdSource::set_state(upstream::SourceState s) {
  if (s != upstream::SourceState::kSynced &&
      (state_ == upstream::SourceState::kSynced || stale_since_ == MonoTime{})) {
    stale_since_ = loop_.now();
  }
  state_ = s;
  stats_.set_state(s);
}

bool EtcdSource::first_round_done() const {
  if (config_.initial_fetch_timeout == Duration{})
    return state_ != upstream::SourceState::kStarting;
  return synced_once_ || gave_up_first_fetch_;
}

void EtcdSource::first_fetch_timed_out() {
  if (synced_once_ || stopped_) return;
  gave_up_first_fetch_ = true;
  std::string why = fmt::format("no endpoints from etcd within initial_fetch_timeout {}",
                                format_duration(config_.initial_fetch_timeout));
  if (!serve_persisted(why)) {
    LOG_ERROR("cluster {}: {}; going on without them (still trying)", cluster_, why);
  }
}

bool EtcdSource::serve_persisted(const std::string& why) {
  if (!persisted_ || served_persisted_ || synced_once_) return false;
  served_persisted_ = true;
  auto set = persisted_->load();
  if (!set) {
    if (set.status().sys_errno() == ENOENT) {
      LOG_INFO("cluster {}: no set persisted in {} yet", cluster_, persisted_->path());
    } else {
      LOG_ERROR("cluster {}: persisted set {}: {}; ignored", cluster_, persisted_->path(),
                set.status().message());
    }
    return false;
  }
  for (const auto& entry : set->invalid) {
    LOG_WARN("cluster {}: persisted set {}: {}; skipped", cluster_, persisted_->path(), entry);
  }
  stats_.invalid_entries += set->invalid.size();
  std::string age = "at an unknown time";
  if (set->written_unix > 0) {
    int64_t now = std::chrono::duration_cast<std::chrono::seconds>(
                      std::chrono::system_clock::now().time_since_epoch())
                      .count();
    age = format_duration(std::chrono::seconds(std::max<int64_t>(0, now - set->written_unix))) +
          " ago";
  }
  LOG_WARN(
      "cluster {}: {}; serving the {} endpoints persisted in {} {} (revision {}), stale until "
      "etcd answers",
      cluster_, why, set->endpoints.size(), persisted_->path(), age, set->revision);
  ++stats_.updates;
  stats_.endpoints = set->endpoints.size();
  on_update_(std::move(set->endpoints));
  return true;
}

void EtcdSource::start() {
  stopped_ = false;
  started_at_ = loop_.now();
  if (config_.initial_fetch_timeout != Duration{}) {
    first_fetch_timer_.arm_at(started_at_ + config_.initial_fetch_timeout);
  }
  retry_now();
}

void EtcdSource::stop() {
  stopped_ = true;
  retry_timer_.cancel();
  watch_timer_.cancel();
  batch_timer_.cancel();
  first_fetch_timer_.cancel();
  if (http_) {
    http_->cancel();
    loop_.defer_delete(std::move(http_));
  }
}

void EtcdSource::retry_now() {
  if (stopped_) return;
  if (!config_.username.empty() && token_.empty()) return authenticate();
  // With a revision in hand the watch resumes from it; a first start (or a compaction)
  // reads the whole prefix first.
  if (revision_ == 0) return range();
  watch();
}

void EtcdSource::begin(Call call, const std::string& path, const std::string& body) {
  if (http_) {
    http_->cancel();
    loop_.defer_delete(std::move(http_));
  }
  call_ = call;
  status_ = 0;
  body_.clear();
  if (!tls_error_.empty()) return fail(tls_error_);
  http_ = std::make_unique<HttpCall>(loop_, static_cast<HttpCallCallbacks&>(*this), tls_);
  // A watch has the whole watch_timeout only once it is created (on_watch_message): until
  // then connecting and the first answer have the bound of any call, so a member that went
  // away without a reset is left quickly.
  watch_created_ = false;
  watch_timer_.arm_at(loop_.now() + std::min<Duration>(kCallTimeout, config_.watch_timeout));
  http_->post(config_.endpoints[endpoint_], path, body, auth_header(token_));
}

void EtcdSource::authenticate() {
  begin(Call::kAuth, "/v3/auth/authenticate",
        authenticate_request(config_.username, config_.password));
}

void EtcdSource::range() {
  nlohmann::json req = {{"key", key_b64_}, {"range_end", range_end_b64_}};
  begin(Call::kRange, "/v3/kv/range", req.dump());
}

void EtcdSource::watch() {
  nlohmann::json req = {{"create_request",
                         {{"key", key_b64_},
                          {"range_end", range_end_b64_},
                          {"start_revision", std::to_string(revision_ + 1)},
                          {"progress_notify", true}}}};
  begin(Call::kWatch, "/v3/watch", req.dump());
}

void EtcdSource::on_call_status(int status) {
  status_ = status;
}

void EtcdSource::on_call_body(std::string_view data) {
  if (call_ != Call::kWatch) {
    if (body_.size() + data.size() > kMaxAnswer) {
      return fail(fmt::format("an answer larger than {} bytes", kMaxAnswer));
    }
    body_.append(data);
    return;
  }
  // The gateway streams one JSON message per line.
  // What was kept from before holds no newline: look for one only in what is new.
  const size_t scanned = body_.size();
  body_.append(data);
  size_t start = 0;
  for (size_t nl; (nl = body_.find('\n', std::max(start, scanned))) != std::string::npos;
       start = nl + 1) {
    std::string line = body_.substr(start, nl - start);
    if (!line.empty()) on_watch_message(line);
    if (call_ != Call::kWatch) return;  // the message ended the watch
  }
  body_.erase(0, start);
  if (body_.size() > kMaxAnswer) fail("a watch message larger than the limit");
}

void EtcdSource::on_call_done(const std::string& error) {
  Call call = call_;
  call_ = Call::kNone;
  if (stopped_) return;
  watch_timer_.cancel();
  if (!error.empty()) return fail(error);
  if (call == Call::kWatch) return fail("the watch ended");
  if (status_ == 401 || (status_ != 200 && is_auth_error(body_))) {
    if (call != Call::kAuth && renew_token()) return;
    return fail(fmt::format("status {}: {}", status_, body_.substr(0, 200)));
  }
  if (status_ != 200) return fail(fmt::format("status {}: {}", status_, body_.substr(0, 200)));
  auto j = nlohmann::json::parse(body_, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return fail("an answer that is not JSON");
  if (call == Call::kAuth) {
    std::string why;
    auto token = token_of(j, &why);
    if (!token) return fail(why);
    token_ = std::move(*token);
    return retry_now();
  }
  // kRange: the whole prefix at one revision.
  token_retried_ = false;
  int64_t revision = j.contains("header") ? int_field(j["header"], "revision") : 0;
  if (revision <= 0) return fail("a range answer without a revision");
  std::map<std::string, Entry> kvs;
  if (auto it = j.find("kvs"); it != j.end() && it->is_array()) {
    for (const auto& kv : *it) {
      auto key = b64_decode(string_field(kv, "key"));
      auto value = b64_decode(string_field(kv, "value"));
      if (!key || !value) continue;
      // A re-read (after a compaction) keeps what it already parsed: only changes cost.
      auto old = kvs_.find(*key);
      if (old != kvs_.end() && old->second.value == *value) {
        kvs.emplace(*key, std::move(old->second));
      } else {
        kvs.emplace(*key, parse_entry(*key, std::move(*value)));
      }
    }
  }
  kvs_ = std::move(kvs);
  revision_ = revision;
  stats_.revision = static_cast<uint64_t>(revision);
  apply(true);
  watch();
}

bool EtcdSource::renew_token() {
  if (config_.username.empty() || token_retried_) return false;
  // The token expired or the member restarted: a new one, and the call again (once; a
  // refusal right after a new token is a failure).
  LOG_INFO("cluster {}: etcd {} refused the auth token; authenticating again", cluster_,
           config_.endpoints[endpoint_].to_string());
  token_.clear();
  token_retried_ = true;
  ++stats_.auth_renewals;
  retry_now();
  return true;
}

void EtcdSource::on_watch_message(const std::string& line) {
  auto j = nlohmann::json::parse(line, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return fail("a watch message that is not JSON");
  if (auto e = j.find("error"); e != j.end()) {
    std::string what = e->dump();
    if (is_auth_error(what) && !config_.username.empty()) {
      if (renew_token()) return;
      token_.clear();
      return fail("auth token refused on the watch");
    }
    return fail("watch error " + what.substr(0, 200));
  }
  auto r = j.find("result");
  if (r == j.end() || !r->is_object()) return;
  watch_created_ = true;
  watch_timer_.arm_at(loop_.now() + config_.watch_timeout);
  int64_t compacted = int_field(*r, "compact_revision");
  if (compacted > 0) {
    // The revision to resume from is gone: read everything again and apply the difference.
    LOG_WARN("cluster {}: etcd compacted past revision {} (to {}); reading {} again", cluster_,
             revision_, compacted, config_.prefix);
    revision_ = 0;
    return fail("compacted");
  }
  if (bool_field(*r, "canceled")) {
    std::string reason = string_field(*r, "cancel_reason");
    // etcd checks the token when a watch is made (not while it runs): a watch made again
    // after a quiet spell longer than the token's TTL is refused here.
    if (is_auth_error(reason) && !config_.username.empty()) {
      if (renew_token()) return;
      token_.clear();
    }
    return fail("watch canceled: " + reason);
  }
  bool first_message = bool_field(*r, "created");
  if (first_message || state_ != upstream::SourceState::kSynced) {
    if (!last_failure_.empty()) {
      LOG_INFO("cluster {}: etcd watch resumed from revision {} on {}", cluster_, revision_ + 1,
               config_.endpoints[endpoint_].to_string());
      last_failure_.clear();
    }
    backoff_ = kMinBackoff;
    token_retried_ = false;
    set_state(upstream::SourceState::kSynced);
  }
  auto events = r->find("events");
  if (events == r->end() || !events->is_array() || events->empty()) {
    // A progress notification: every event up to the header's revision has come.
    if (!first_message && r->contains("header")) {
      revision_ = std::max(revision_, int_field((*r)["header"], "revision"));
      stats_.revision = static_cast<uint64_t>(revision_);
    }
    return;
  }
  for (const auto& ev : *events) {
    if (!ev.is_object()) continue;
    auto kv_it = ev.find("kv");
    if (kv_it == ev.end() || !kv_it->is_object()) continue;
    const auto& kv = *kv_it;
    auto key = b64_decode(string_field(kv, "key"));
    if (!key) continue;
    if (string_field(ev, "type") == "DELETE") {
      kvs_.erase(*key);
    } else {
      std::string value = b64_decode(string_field(kv, "value")).value_or("");
      auto old = kvs_.find(*key);
      if (old == kvs_.end()) {
        kvs_.emplace(*key, parse_entry(*key, std::move(value)));
      } else if (old->second.value != value) {
        old->second = parse_entry(*key, std::move(value));
      }
    }
    revision_ = std::max(revision_, int_field(kv, "mod_revision"));
  }
  stats_.revision = static_cast<uint64_t>(revision_);
  apply(false);
}

EtcdSource::Entry EtcdSource::parse_entry(const std::string& key, std::string value) {
  Entry entry;
  if (key.compare(0, config_.prefix.size(), config_.prefix) != 0) {
    LOG_WARN("cluster {}: etcd key {} is outside {}; skipped", cluster_, key.substr(0, 200),
             config_.prefix);
    ++stats_.invalid_entries;
  } else if (auto e = parse_endpoint_json(value); !e) {
    LOG_WARN("cluster {}: etcd key {}: {}; skipped", cluster_, key.substr(0, 200),
             e.status().message());
    ++stats_.invalid_entries;
  } else {
    entry.address = e->address.to_string();
    entry.endpoint = std::move(*e);
  }
  entry.value = std::move(value);
  return entry;
}

void EtcdSource::apply(bool now) {
  if (!now) {
    if (!batch_timer_.armed()) batch_timer_.arm_at(loop_.now() + config_.batch_window);
    return;
  }
  batch_timer_.cancel();
  std::vector<upstream::EndpointConfig> endpoints;
  endpoints.reserve(kvs_.size());
  std::unordered_map<std::string_view, const std::string*> seen;  // address -> first key
  seen.reserve(kvs_.size());
  for (const auto& [key, entry] : kvs_) {
    if (!entry.endpoint) continue;
    auto [first, inserted] = seen.emplace(entry.address, &key);
    if (!inserted) {
      // Logged on each set while both keys stay: rare, and the operator must see it.
      LOG_WARN("cluster {}: etcd key {}: {} is listed under {} too; skipped", cluster_,
               key.substr(0, 200), entry.address, first->second->substr(0, 200));
      continue;
    }
    endpoints.push_back(*entry.endpoint);
  }
  ++stats_.updates;
  stats_.endpoints = endpoints.size();
  synced_once_ = true;
  first_fetch_timer_.cancel();
  set_state(upstream::SourceState::kSynced);
  if (persisted_) persisted_->save(endpoints, revision_);
  on_update_(std::move(endpoints));
}

void EtcdSource::fail(const std::string& why) {
  if (stopped_) return;
  watch_timer_.cancel();
  if (http_) {
    http_->cancel();
    loop_.defer_delete(std::move(http_));
  }
  call_ = Call::kNone;
  ++stats_.failures;
  ++stats_.reconnects;
  std::string where = config_.endpoints[endpoint_].to_string();
  if (why != last_failure_) {
    if (synced_once_) {
      LOG_WARN("cluster {}: etcd {}: {}; keeping the last {} endpoints, trying again", cluster_,
               where, why, stats_.endpoints);
    } else {
      LOG_ERROR("cluster {}: etcd {}: {}; no endpoints yet, trying again", cluster_, where, why);
    }
    last_failure_ = why;
  }
  set_state(upstream::SourceState::kStale);
  endpoint_ = (endpoint_ + 1) % config_.endpoints.size();
  retry_timer_.arm_at(loop_.now() + backoff_);
  backoff_ = std::min<Duration>(backoff_ * 2, kMaxBackoff);
  // A cold start that cannot reach etcd serves what an earlier run persisted; with
  // initial_fetch_timeout only once that has passed (first_fetch_timed_out).
  if (config_.initial_fetch_timeout == Duration{}) serve_persisted("etcd not reached");
}

}  // namespace sluice::discovery
