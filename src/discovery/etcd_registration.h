// EtcdRegistration: sluice's own key in etcd (`registration:`), held under a lease it keeps
// alive, through the same JSON gateway and non-blocking HttpCall as the etcd source.
//
// States: kIdle until start() (the server calls it once ready); kGranting (POST
// /v3/lease/grant), kPutting (/v3/kv/put with the lease), kRegistered (a keepalive,
// /v3/lease/keepalive, every third of the TTL). A keepalive answered without a TTL means the
// lease is gone (revoked, or expired while etcd could not be reached): a new one is granted
// and the key put again. A failed call tries the next member after a backoff and repeats the
// step. revoke() (a stop) deletes the key at once through /v3/lease/revoke so that peers stop
// sending before sluice stops accepting; release() (a binary upgrade) stops renewing without
// revoking, and the new process, given lease(), keeps the same lease alive. With a username,
// a token from /v3/auth/authenticate goes with every call; a call refused for its token
// (expired: etcd checks it on grant, put and revoke but not on keepalives, so a quiet one
// expires; or lost when the member restarted) authenticates again and is made again, once.
// Main thread only.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "discovery/http_call.h"
#include "discovery/registration_config.h"
#include "event/loop.h"
#include "event/timer.h"
#include "upstream/registration_stats.h"

namespace sluice::discovery {

using upstream::RegistrationState;
using upstream::RegistrationStats;

class EtcdRegistration final : private HttpCallCallbacks {
 public:
  static constexpr Duration kMinBackoff = std::chrono::milliseconds(100);
  static constexpr Duration kMaxBackoff = std::chrono::seconds(2);
  // A call unanswered for this long fails (and the next member is tried).
  static constexpr Duration kCallTimeout = std::chrono::seconds(3);
  static constexpr size_t kMaxAnswer = 64 << 10;

  EtcdRegistration(event::Loop& loop, const RegistrationConfig& config);
  ~EtcdRegistration();

  // Registers: keeps `inherited_lease` alive when given (a binary upgrade's), else grants one.
  void start(int64_t inherited_lease = 0);
  // Revokes the lease (etcd deletes the key), then runs `done`: at its answer, at once when
  // there is no lease, or after kCallTimeout when etcd does not answer.
  void revoke(std::function<void()> done);
  // Stops renewing without revoking: `handed_over`, the process that takes over keeps the
  // lease alive; otherwise it expires by its TTL.
  void release(bool handed_over);

  int64_t lease() const { return lease_; }
  RegistrationState state() const { return state_; }
  const RegistrationConfig& config() const { return config_; }
  const RegistrationStats& stats() const { return stats_; }
  // The member in use, as host:port.
  std::string endpoint() const;

 private:
  void grant();
  void put();
  void keepalive();
  void revoke_call();
  void authenticate();
  void on_auth_done(const std::string& error);
  // The answer refused the call's token.
  bool token_refused() const;
  // A new token and the call again (counted, logged), unless that was just tried or there is
  // no username; false then.
  bool renew_token();
  // `authenticating`: the call is /v3/auth/authenticate (its answer goes to on_auth_done).
  void begin(const std::string& path, const std::string& body, bool authenticating = false);
  void fail(const std::string& why);
  // The call of the state (the next step, or the one that failed) again; first a token when
  // one is needed.
  void retry_now();
  void transition(RegistrationState s);
  void cancel_call();

  void on_call_status(int status) override { status_ = status; }
  void on_call_body(std::string_view data) override;
  void on_call_done(const std::string& error) override;

  event::Loop& loop_;
  RegistrationConfig config_;
  std::unique_ptr<HttpCall> http_;
  // With `tls:`: the client context (made once, from the files), or why it could not be.
  std::shared_ptr<tls::ClientContext> tls_;
  std::string tls_error_;
  int status_ = 0;
  std::string body_;
  bool oversized_ = false;
  size_t endpoint_ = 0;
  Duration backoff_ = kMinBackoff;
  int64_t lease_ = 0;
  int64_t granted_ttl_s_ = 0;    // the TTL etcd granted (it may raise a short one)
  bool put_done_ = false;        // the key is under lease_
  std::string token_;            // with a username: the auth token ("" none yet)
  bool authenticating_ = false;  // the call in flight is /v3/auth/authenticate
  bool token_retried_ = false;   // a new token was got for the step in progress
  std::string last_failure_;
  std::function<void()> revoked_;
  event::Timer step_timer_;  // the next keepalive, or the retry after a failure
  event::Timer call_timer_;  // kCallTimeout of the call in flight
  RegistrationState state_ = RegistrationState::kIdle;
  RegistrationStats stats_;
};

}  // namespace sluice::discovery
