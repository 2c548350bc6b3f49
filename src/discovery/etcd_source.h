// EtcdSource: a cluster's endpoints as the values of the keys under a prefix in etcd v3,
// read and watched through etcd's JSON gateway (POST /v3/kv/range, /v3/watch,
// /v3/auth/authenticate) with sluice's own non-blocking HTTP client on the main loop: no
// client library, no thread. docs/discovery.md has the key schema.
//
// States: kStarting until the first range read; then a watch from the read's revision + 1,
// with progress notifications asked for. Every event or notification moves the revision on;
// a watch that shows neither for `watch_timeout` is taken as dead and made again. Until its
// first message (connect, request, the gateway's "created" answer) a watch has only
// kCallTimeout, so a member that died silently is left in seconds, not after a whole bound. When a
// call fails (connect, reset, error answer) the next etcd endpoint is tried after a backoff
// (100 ms doubling to 5 s), and the watch resumes from the last revision seen, so no update
// is lost; a resume the server has compacted past re-reads the whole prefix and applies the
// difference. An invalid or expired auth token is renewed (authenticate) and the call made
// again. While etcd cannot be reached the last good set stays (kStale): a partition never
// empties a pool. Changes within batch_window are applied as one set; a value is parsed once,
// when it arrives, so a batch costs the keys' count, not a re-parse of every value. With
// `persist`, each applied set is also written to a file (PersistedSet, off the main loop),
// and a cold start that cannot reach etcd serves the set found there, kStale. Main thread
// only.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "discovery/endpoint_source.h"
#include "discovery/http_call.h"
#include "discovery/persisted_set.h"
#include "event/loop.h"
#include "event/timer.h"
#include "upstream/cluster.h"

namespace sluice::discovery {

class EtcdSource final : public EndpointSource, private HttpCallCallbacks {
 public:
  static constexpr Duration kMinBackoff = std::chrono::milliseconds(100);
  static constexpr Duration kMaxBackoff = std::chrono::seconds(5);
  // A range or authenticate answer larger than this fails (and is tried again).
  static constexpr size_t kMaxAnswer = 64 << 20;
  // A range or authenticate call unanswered for this long fails. etcd 3.4's gateway does not
  // answer a call whose token it no longer knows (it retries inside), so a call made with a
  // token that times out drops the token: the next attempt authenticates first.
  static constexpr Duration kCallTimeout = std::chrono::seconds(5);

  EtcdSource(event::Loop& loop, std::string cluster, const upstream::EtcdSourceConfig& config,
             OnUpdate on_update);
  ~EtcdSource() override;

  void start() override;
  void stop() override;
  const char* kind() const override { return "etcd"; }
  std::string target() const override;
  upstream::SourceState state() const override { return state_; }
  // (stale_ns is worked out from the loop's clock when asked.)
  const upstream::SourceStats& stats() const override;
  // Stale for longer than max_staleness (0: never): why sluice is not ready; "" otherwise.
  std::string staleness_problem() const override;
  bool first_round_done() const override;

 private:
  enum class Call { kNone, kAuth, kRange, kWatch };

  void authenticate();
  void range();
  void watch();
  void begin(Call call, const std::string& path, const std::string& body);
  // The call failed: the next endpoint after a backoff.
  void fail(const std::string& why);
  void retry_now();
  void on_watch_message(const std::string& line);
  struct Entry;
  // The key's new value (a put): parsed here, once; an invalid one is logged and counted now.
  Entry parse_entry(const std::string& key, std::string value);
  void apply(bool now);
  // A cold start that cannot reach etcd (`why`): the persisted set (etcd.persist), if there is
  // one that can be read, is applied (the state stays kStale). Once per source; true if served.
  bool serve_persisted(const std::string& why);
  void first_fetch_timed_out();
  void set_state(upstream::SourceState s);
  // A call refused for its token: a new token and the call again (counted, logged), unless
  // that was just tried or there is no username; false then.
  bool renew_token();

  // HttpCallCallbacks
  void on_call_status(int status) override;
  void on_call_body(std::string_view data) override;
  void on_call_done(const std::string& error) override;

  event::Loop& loop_;
  std::string cluster_;
  upstream::EtcdSourceConfig config_;
  OnUpdate on_update_;
  std::string key_b64_, range_end_b64_;
  std::unique_ptr<HttpCall> http_;
  // With `tls:`: the client context (made once, from the files), or why it could not be.
  std::shared_ptr<tls::ClientContext> tls_;
  std::string tls_error_;
  Call call_ = Call::kNone;
  int status_ = 0;
  std::string body_;     // the answer so far (range, authenticate), or the watch's partial line
  size_t endpoint_ = 0;  // which of config_.endpoints is in use
  Duration backoff_ = kMinBackoff;
  std::string token_;
  bool token_retried_ = false;
  // One key under the prefix: its value and what it describes (nullopt: not an endpoint).
  struct Entry {
    std::string value;
    std::optional<upstream::EndpointConfig> endpoint;
    std::string address;  // endpoint's address as text (the key of the duplicate check)
  };
  std::map<std::string, Entry> kvs_;
  bool watch_created_ = false;  // the watch in flight has had its first message
  int64_t revision_ = 0;        // the last revision seen (0: none yet)
  bool synced_once_ = false;
  bool stopped_ = true;
  std::string last_failure_;
  event::Timer retry_timer_;
  event::Timer watch_timer_;  // the dead-watch bound, or kCallTimeout for other calls
  event::Timer batch_timer_;
  event::Timer first_fetch_timer_;  // initial_fetch_timeout from start()
  upstream::SourceState state_ = upstream::SourceState::kStarting;
  MonoTime started_at_{};
  bool gave_up_first_fetch_ = false;  // initial_fetch_timeout ran out before a good read
  // With etcd.persist: the writer of each applied set, and whether a cold start served it.
  std::unique_ptr<PersistedSet> persisted_;
  bool served_persisted_ = false;
  MonoTime stale_since_{};  // when the source last left kSynced (or started, never synced)
  mutable upstream::SourceStats stats_;
};

}  // namespace sluice::discovery
