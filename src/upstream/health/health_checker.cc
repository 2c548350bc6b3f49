#include "upstream/health/health_checker.h"

#include <fmt/format.h>

#include "base/random.h"
#include "net/connect.h"

namespace sluice::upstream::health {
namespace {

Duration random_part(Duration max) {
  if (max.count() <= 0) return Duration(0);
  return Duration(static_cast<int64_t>(thread_rng().below(static_cast<uint64_t>(max.count()) + 1)));
}

}  // namespace

HealthChecker::HealthChecker(event::Loop& loop, const HealthCheckConfig& config, std::string host,
                             net::Address target, std::optional<net::Address> source,
                             ResultFn on_result)
    : loop_(loop),
      config_(config),
      host_(std::move(host)),
      target_(target),
      source_(std::move(source)),
      on_result_(std::move(on_result)),
      timer_(loop.timers(), [this] {
        if (running_) {
          finish(false, fmt::format("timed out after {}", format_duration(config_.timeout)));
        } else {
          run_check();
        }
      }) {}

HealthChecker::~HealthChecker() {
  stop();
}

void HealthChecker::start() {
  timer_.arm_at(loop_.now() + random_part(config_.jitter));
}

void HealthChecker::stop() {
  timer_.cancel();
  if (race_) race_->cancel();
  if (conn_) conn_->close();
  running_ = false;
}

void HealthChecker::run_check() {
  // Called from the timer only, never from inside the previous connection's callbacks, so
  // the previous connection and parser can be destroyed here.
  if (race_) loop_.defer_delete(std::move(race_));
  grpc_.reset();
  session_ = nullptr;
  conn_.reset();
  parser_.reset();
  status_ = 0;
  body_.clear();
  body_ok_ = config_.http.body_contains.empty();
  running_ = true;
  timer_.arm_at(loop_.now() + config_.timeout);
  net::SocketOptions options;  // checks use plain sockets: no Fast Open, no tuning
  if (!fallbacks_.empty()) {
    std::vector<net::Address> targets{target_};
    targets.insert(targets.end(), fallbacks_.begin(), fallbacks_.end());
    race_ = std::make_unique<net::ConnectRace>(loop_, std::move(targets), options, source_,
                                               attempt_delay_, *this);
    race_->start();
    return;
  }
  auto pending = net::start_connect(target_, options, source_, false);
  if (!pending) return finish(false, pending.status().message());
  conn_ = std::make_unique<net::Connection>(loop_, *this);
  if (!start_tls(pending->fd.get(), target_)) return finish(false, "TLS: cannot make a session");
  if (Status s = conn_->adopt_connecting(std::move(pending->fd), pending->connected); !s) {
    return finish(false, s.message());
  }
  if (pending->connected) on_connected();
}

bool HealthChecker::start_tls(int fd, const net::Address& to) {
  if (!tls_) return true;
  // gRPC is HTTP/2 only, which over TLS is chosen by ALPN (RFC 9113 §3.2).
  static const std::string kH2 = tls::alpn_wire({"h2"});
  auto session = tls_->new_session(fd, tls_host_, to,
                                   config_.type == HealthCheckConfig::Type::kGrpc ? kH2 : "");
  if (!session) return false;
  session_ = session.get();
  conn_->set_transport(std::move(session));
  return true;
}

void HealthChecker::on_race_won(net::Fd fd, const net::Address& address) {
  conn_ = std::make_unique<net::Connection>(loop_, *this);
  if (!start_tls(fd.get(), address)) return finish(false, "TLS: cannot make a session");
  if (Status s = conn_->adopt_connecting(std::move(fd), true); !s) {
    return finish(false, s.message());
  }
  on_connected();
}

void HealthChecker::on_race_lost(int, const std::string& detail) {
  if (running_) finish(false, detail);
}

void HealthChecker::on_connected() {
  if (!running_ || conn_->transport()) return;  // with TLS: once the handshake is done
  send_check();
}

void HealthChecker::on_secured() {
  if (running_) send_check();
}

void HealthChecker::send_check() {
  if (config_.type == HealthCheckConfig::Type::kTcp) {
    return finish(true, conn_->transport() ? "connected (TLS)" : "connected");
  }
  if (config_.type == HealthCheckConfig::Type::kGrpc) {
    if (session_ && session_->alpn() != "h2") {
      return finish(false,
                    session_->alpn().empty()
                        ? "no HTTP/2: the endpoint chose no protocol by ALPN (h2 offered)"
                        : fmt::format("no HTTP/2: the endpoint chose '{}' by ALPN (h2 offered)",
                                      session_->alpn()));
    }
    grpc_ = std::make_unique<GrpcCheck>(*conn_, session_ != nullptr,
                                        [this](bool passed, const std::string& detail) {
                                          if (running_) finish(passed, detail);
                                        });
    grpc_->start(host_, config_.grpc.service);
    return;
  }
  parser_ = std::make_unique<sluice::http::http1::Parser>(
      sluice::http::http1::Parser::Kind::kResponse, sluice::http::http1::Parser::kDefaultLimits,
      *this);
  parser_->set_no_body_expected(config_.http.method == "HEAD");
  conn_->write(fmt::format(
      "{} {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: sluice-health\r\nConnection: close\r\n\r\n",
      config_.http.method, config_.http.path, host_));
}

void HealthChecker::on_read() {
  if (running_ && grpc_) return grpc_->on_read();
  if (!running_ || !parser_) {
    conn_->input().clear();
    return;
  }
  Buffer& in = conn_->input();
  while (running_ && !in.empty()) {
    size_t used = 0;
    auto outcome = parser_->execute(in.view(), &used);
    in.consume(used);
    if (outcome == sluice::http::http1::Parser::Outcome::kError) {
      return finish(false, "invalid response: " + parser_->error().reason);
    }
    if (outcome == sluice::http::http1::Parser::Outcome::kMessageComplete) {
      if (!running_) break;
      parser_->resume();  // an interim 1xx ended; the final response follows
    } else if (outcome != sluice::http::http1::Parser::Outcome::kNeedMore) {
      return finish(false, "unexpected upgrade or stop in the check response");
    }
  }
}

void HealthChecker::on_write_drained() {
  if (running_ && grpc_) grpc_->on_write_drained();
}

void HealthChecker::on_read_closed() {
  if (!running_) return;
  if (grpc_) return grpc_->on_read_closed();
  if (parser_ && parser_->finish() == sluice::http::http1::Parser::Outcome::kMessageComplete) {
    return;  // on_message_complete decided
  }
  if (running_) {
    finish(false, config_.type == HealthCheckConfig::Type::kTcp
                      ? "closed by the endpoint"
                      : "connection closed before a complete response");
  }
}

void HealthChecker::on_error(int err) {
  if (!running_) return;
  const net::Transport* t = conn_ ? conn_->transport() : nullptr;
  if (t && !t->established() && !t->failure().empty()) {
    return finish(false, fmt::format("TLS: {}", t->failure()));
  }
  finish(false, net::error_text(err));
}

bool HealthChecker::on_head(sluice::http::MessageHead& head) {
  if (head.status < 200) return true;  // an interim response: the final one follows
  status_ = head.status;
  return true;
}

void HealthChecker::on_body(std::string_view data) {
  if (body_ok_ || status_ == 0) return;
  body_.append(data);
  if (body_.find(config_.http.body_contains) != std::string::npos) {
    body_ok_ = true;
    body_.clear();
  } else if (body_.size() > 64 * 1024) {
    // Keep only the tail that could still begin a match.
    body_.erase(0, body_.size() - config_.http.body_contains.size());
  }
}

void HealthChecker::on_message_complete(sluice::http::HeaderMap&) {
  if (!running_ || status_ == 0) return;  // an interim response ended
  bool expected = false;
  for (const auto& [lo, hi] : config_.http.expected_statuses) {
    if (status_ >= lo && status_ <= hi) expected = true;
  }
  if (!expected) return finish(false, fmt::format("status {}", status_));
  if (!body_ok_) {
    return finish(false, fmt::format("body does not contain \"{}\"", config_.http.body_contains));
  }
  finish(true, fmt::format("status {}", status_));
}

void HealthChecker::finish(bool passed, const std::string& detail) {
  running_ = false;
  if (race_) race_->cancel();
  if (conn_) conn_->close(!passed);
  schedule_next();
  on_result_(passed, detail);
}

void HealthChecker::schedule_next() {
  timer_.arm_at(loop_.now() + config_.interval + random_part(config_.jitter));
}

}  // namespace sluice::upstream::health
