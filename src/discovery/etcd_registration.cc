#include "discovery/etcd_registration.h"

#include <algorithm>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "base/log.h"
#include "discovery/etcd_json.h"

namespace sluice::discovery {

EtcdRegistration::EtcdRegistration(event::Loop& loop, const RegistrationConfig& config)
    : loop_(loop),
      config_(config),
      step_timer_(loop.timers(), [this] { retry_now(); }),
      call_timer_(loop.timers(), [this] {
        // As for the source: etcd 3.4's gateway may not answer a call whose token it does not
        // know; the next attempt authenticates first.
        bool with_token = !authenticating_ && !token_.empty();
        if (with_token) {
          token_.clear();
          ++stats_.auth_renewals;
        }
        fail(fmt::format("no answer in {}{}", format_duration(kCallTimeout),
                         with_token ? "; authenticating again" : ""));
      }) {
  tls_ = make_call_tls(config_.tls, &tls_error_);
  transition(RegistrationState::kIdle);
}

EtcdRegistration::~EtcdRegistration() {
  cancel_call();
}

std::string EtcdRegistration::endpoint() const {
  return config_.endpoints[endpoint_].to_string();
}

void EtcdRegistration::transition(RegistrationState s) {
  state_ = s;
  stats_.set_state(s);
  stats_.lease_ttl_ns = lease_ != 0 ? static_cast<uint64_t>(granted_ttl_s_) * 1'000'000'000 : 0;
}

void EtcdRegistration::start(int64_t inherited_lease) {
  if (state_ != RegistrationState::kIdle) return;
  lease_ = inherited_lease;
  if (lease_ != 0) {
    // A keepalive first: it tells whether the lease still lives; the key is put again
    // after it (the configuration may have changed with the binary).
    LOG_INFO("registration: keeping the lease {:x} of the previous process alive", lease_);
    transition(RegistrationState::kRegistered);
    return retry_now();
  }
  transition(RegistrationState::kGranting);
  retry_now();
}

void EtcdRegistration::release(bool handed_over) {
  cancel_call();
  revoked_ = nullptr;
  step_timer_.cancel();
  if (state_ != RegistrationState::kIdle && state_ != RegistrationState::kDone && lease_ != 0) {
    if (handed_over) {
      LOG_INFO("registration: lease {:x} left to the new process", lease_);
    } else {
      LOG_WARN("registration: lease {:x} not revoked; {} goes when its TTL runs out", lease_,
               config_.key);
    }
  }
  transition(RegistrationState::kDone);
}

void EtcdRegistration::revoke(std::function<void()> done) {
  cancel_call();
  step_timer_.cancel();
  if (lease_ == 0 || state_ == RegistrationState::kIdle || state_ == RegistrationState::kDone) {
    transition(RegistrationState::kDone);
    return done();
  }
  revoked_ = std::move(done);
  transition(RegistrationState::kRevoking);
  LOG_INFO("registration: revoking lease {:x} ({} goes)", lease_, config_.key);
  retry_now();
}

void EtcdRegistration::retry_now() {
  if (state_ == RegistrationState::kIdle || state_ == RegistrationState::kDone) return;
  if (!config_.username.empty() && token_.empty()) return authenticate();
  switch (state_) {
    case RegistrationState::kGranting:
      return grant();
    case RegistrationState::kPutting:
      return put();
    case RegistrationState::kRegistered:
      return keepalive();
    case RegistrationState::kRevoking:
      return revoke_call();
    case RegistrationState::kIdle:
    case RegistrationState::kDone:
      return;
  }
}

void EtcdRegistration::authenticate() {
  begin("/v3/auth/authenticate", authenticate_request(config_.username, config_.password), true);
}

void EtcdRegistration::revoke_call() {
  begin("/v3/lease/revoke", nlohmann::json{{"ID", std::to_string(lease_)}}.dump());
}

void EtcdRegistration::grant() {
  auto ttl = std::chrono::duration_cast<std::chrono::seconds>(config_.ttl).count();
  begin("/v3/lease/grant", nlohmann::json{{"TTL", std::to_string(ttl)}}.dump());
}

void EtcdRegistration::put() {
  nlohmann::json req = {{"key", b64_encode(config_.key)},
                        {"value", b64_encode(config_.value)},
                        {"lease", std::to_string(lease_)}};
  begin("/v3/kv/put", req.dump());
}

void EtcdRegistration::keepalive() {
  // The gateway's keepalive is a stream: one request in the body, one answer per request,
  // and the answer ends when the request body does.
  begin("/v3/lease/keepalive", nlohmann::json{{"ID", std::to_string(lease_)}}.dump());
}

void EtcdRegistration::begin(const std::string& path, const std::string& body,
                             bool authenticating) {
  cancel_call();
  authenticating_ = authenticating;
  status_ = 0;
  body_.clear();
  oversized_ = false;
  if (!tls_error_.empty()) return fail(tls_error_);
  http_ = std::make_unique<HttpCall>(loop_, static_cast<HttpCallCallbacks&>(*this), tls_);
  call_timer_.arm_at(loop_.now() + kCallTimeout);
  http_->post(config_.endpoints[endpoint_], path, body, auth_header(token_));
}

void EtcdRegistration::cancel_call() {
  call_timer_.cancel();
  authenticating_ = false;
  if (http_) {
    http_->cancel();
    loop_.defer_delete(std::move(http_));
  }
}

void EtcdRegistration::on_call_body(std::string_view data) {
  if (body_.size() + data.size() > kMaxAnswer) {
    oversized_ = true;
    return;
  }
  body_.append(data);
}

bool EtcdRegistration::token_refused() const {
  return status_ == 401 || (status_ != 200 && is_auth_error(body_));
}

bool EtcdRegistration::renew_token() {
  if (config_.username.empty() || token_retried_) return false;
  LOG_INFO("registration: etcd {} refused the auth token; authenticating again", endpoint());
  token_.clear();
  token_retried_ = true;
  ++stats_.auth_renewals;
  authenticate();
  return true;
}

void EtcdRegistration::on_auth_done(const std::string& error) {
  authenticating_ = false;
  if (!error.empty()) return fail(error);
  if (oversized_) return fail(fmt::format("an answer larger than {} bytes", kMaxAnswer));
  if (status_ != 200) {
    return fail(fmt::format("authenticate: status {}: {}", status_, body_.substr(0, 200)));
  }
  auto j = nlohmann::json::parse(body_, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return fail("an answer that is not JSON");
  std::string why;
  auto token = token_of(j, &why);
  if (!token) return fail(why);
  token_ = std::move(*token);
  retry_now();
}

void EtcdRegistration::on_call_done(const std::string& error) {
  call_timer_.cancel();
  if (authenticating_) return on_auth_done(error);
  if (state_ == RegistrationState::kRevoking) {
    if (error.empty() && token_refused() && renew_token()) return;
    cancel_call();
    // A lease etcd no longer has (it expired meanwhile) took its key with it: nothing to say.
    bool gone = body_.find("lease not found") != std::string::npos;
    if (!gone && (!error.empty() || status_ != 200)) {
      LOG_WARN("registration: revoking lease {:x} on {}: {}; it expires by its TTL", lease_,
               endpoint(), error.empty() ? fmt::format("status {}", status_) : error);
    }
    lease_ = 0;
    transition(RegistrationState::kDone);
    auto done = std::move(revoked_);
    revoked_ = nullptr;
    if (done) done();
    return;
  }
  if (!error.empty()) return fail(error);
  if (oversized_) return fail(fmt::format("an answer larger than {} bytes", kMaxAnswer));
  if (token_refused()) {
    if (renew_token()) return;
    token_.clear();  // the next attempt authenticates first
    return fail(fmt::format("status {}: {}", status_, body_.substr(0, 200)));
  }
  token_retried_ = false;
  // A key put under a lease etcd no longer has: the lease went (404, "lease not found").
  bool lease_gone = body_.find("lease not found") != std::string::npos;
  if (status_ != 200 && !lease_gone) {
    return fail(fmt::format("status {}: {}", status_, body_.substr(0, 200)));
  }
  nlohmann::json j;
  if (!lease_gone) {
    // The keepalive stream's answer is one line: {"result": {...}}.
    size_t nl = body_.find('\n');
    j = nlohmann::json::parse(body_.substr(0, nl), nullptr, false);
    if (j.is_discarded() || !j.is_object()) return fail("an answer that is not JSON");
    if (auto r = j.find("result"); r != j.end() && r->is_object()) j = *r;
    if (auto e = j.find("error"); e != j.end()) {
      return fail("error " + e->dump().substr(0, 200));
    }
  }
  if (state_ == RegistrationState::kRegistered && !lease_gone) {
    int64_t ttl = int_field(j, "TTL");
    lease_gone = ttl <= 0;
    if (!lease_gone) {
      ++stats_.keepalives;
      granted_ttl_s_ = ttl;
      stats_.lease_ttl_ns = static_cast<uint64_t>(ttl) * 1'000'000'000;
    }
  }
  if (lease_gone) {
    LOG_WARN("registration: etcd no longer has lease {:x}; granting a new one and putting {} again",
             lease_, config_.key);
    ++stats_.leases_lost;
    lease_ = 0;
    put_done_ = false;
    transition(RegistrationState::kGranting);
    return grant();
  }
  if (!last_failure_.empty()) {
    LOG_INFO("registration: etcd {} answers again", endpoint());
    last_failure_.clear();
  }
  backoff_ = kMinBackoff;
  if (state_ == RegistrationState::kGranting) {
    lease_ = int_field(j, "ID");
    granted_ttl_s_ = int_field(j, "TTL");
    if (lease_ == 0 || granted_ttl_s_ == 0) return fail("a grant answer without ID and TTL");
    ++stats_.grants;
    transition(RegistrationState::kPutting);
    return put();
  }
  if (state_ == RegistrationState::kPutting || !put_done_) {
    if (state_ == RegistrationState::kRegistered) {
      // An inherited lease that lives: the key goes under it again.
      transition(RegistrationState::kPutting);
      return put();
    }
    put_done_ = true;
    ++stats_.puts;
    LOG_INFO("registration: {} put in etcd {} under lease {:x} (TTL {}s)", config_.key, endpoint(),
             lease_, granted_ttl_s_);
    transition(RegistrationState::kRegistered);
  }
  // The next keepalive at a third of the TTL: two may fail before the key goes.
  Duration ttl = granted_ttl_s_ > 0 ? Duration(std::chrono::seconds(granted_ttl_s_)) : config_.ttl;
  step_timer_.arm_at(loop_.now() + ttl / 3);
}

void EtcdRegistration::fail(const std::string& why) {
  if (state_ == RegistrationState::kRevoking) return on_call_done(why.empty() ? "failed" : why);
  cancel_call();
  ++stats_.failures;
  if (why != last_failure_) {
    LOG_WARN("registration: etcd {}: {} while {}; trying again", endpoint(), why,
             upstream::to_string(state_));
    last_failure_ = why;
  }
  endpoint_ = (endpoint_ + 1) % config_.endpoints.size();
  step_timer_.arm_at(loop_.now() + backoff_);
  backoff_ = std::min<Duration>(backoff_ * 2, kMaxBackoff);
}

}  // namespace sluice::discovery
