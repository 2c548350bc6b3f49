// HealthChecker: the active checks of one endpoint, on the health manager's loop. Each check
// opens its own connection (never a pooled one): a TCP check passes once the connect
// completes; an HTTP check sends one request with `Connection: close` and
// `User-Agent: sluice-health`, and passes on an expected status (and body substring); a gRPC
// check speaks HTTP/2 (prior knowledge, or ALPN h2 over TLS) and passes when the endpoint's
// grpc.health.v1.Health/Check answers SERVING (GrpcCheck).
// Checks run every interval plus a random jitter, so a fleet of proxies does not probe in
// step. Loop thread only.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "event/loop.h"
#include "event/timer.h"
#include "http/http1/parser.h"
#include "net/address.h"
#include "net/connect_race.h"
#include "net/connection.h"
#include "tls/context.h"
#include "tls/session.h"
#include "upstream/health/grpc_check.h"
#include "upstream/health/health.h"

namespace sluice::upstream::health {

class HealthChecker final : public net::ConnectionCallbacks,
                            public net::ConnectRaceCallbacks,
                            public sluice::http::http1::ParserCallbacks {
 public:
  // `on_result(passed, detail)`: detail says what failed ("connection refused",
  // "status 503", "timed out after 1s", "NOT_SERVING", ...), or what passed. `host` is the
  // Host of an HTTP check, the :authority of a gRPC check.
  using ResultFn = std::function<void(bool passed, const std::string& detail)>;

  HealthChecker(event::Loop& loop, const HealthCheckConfig& config, std::string host,
                net::Address target, std::optional<net::Address> source, ResultFn on_result);
  ~HealthChecker();

  // The first check runs after a random part of one jitter, so that checks of many
  // endpoints do not start in the same instant.
  void start();
  void stop();
  // Where the next check connects: `target`, then the other addresses of the endpoint
  // raced after it (RFC 8305) as requests' connects are: a check must reach the endpoint
  // the way traffic does.
  void set_target(const net::Address& target, std::vector<net::Address> fallbacks,
                  Duration attempt_delay) {
    target_ = target;
    fallbacks_ = std::move(fallbacks);
    attempt_delay_ = attempt_delay;
  }

  // Checks speak TLS made by `context` (the cluster's), checking `host` ("" for an
  // IP-literal endpoint) as requests' connections do: a TCP check passes once the handshake
  // (and verification) does. A gRPC check offers ALPN h2 only, whatever the cluster offers.
  void set_tls(std::shared_ptr<tls::ClientContext> context, std::string host) {
    tls_ = std::move(context);
    tls_host_ = std::move(host);
  }

  // ConnectionCallbacks
  void on_connected() override;
  void on_secured() override;
  void on_read() override;
  void on_read_closed() override;
  void on_error(int err) override;
  void on_write_drained() override;
  // ConnectRaceCallbacks
  void on_race_won(net::Fd fd, const net::Address& address) override;
  void on_race_lost(int err, const std::string& detail) override;
  // ParserCallbacks (the response)
  bool on_head(sluice::http::MessageHead& head) override;
  void on_body(std::string_view data) override;
  void on_message_complete(sluice::http::HeaderMap& trailers) override;

 private:
  void run_check();
  // Wraps `conn_` (about to adopt `fd` connecting to `to`) in TLS when the cluster uses it.
  bool start_tls(int fd, const net::Address& to);
  void send_check();
  void finish(bool passed, const std::string& detail);
  void schedule_next();

  event::Loop& loop_;
  const HealthCheckConfig& config_;
  std::string host_;
  net::Address target_;
  std::optional<net::Address> source_;
  ResultFn on_result_;
  event::Timer timer_;  // the next check, or the running check's timeout
  std::vector<net::Address> fallbacks_;
  Duration attempt_delay_{0};
  std::unique_ptr<net::ConnectRace> race_;
  std::unique_ptr<net::Connection> conn_;
  // After conn_: it speaks over the connection, and goes first.
  std::unique_ptr<GrpcCheck> grpc_;
  std::shared_ptr<tls::ClientContext> tls_;
  std::string tls_host_;
  tls::Session* session_ = nullptr;  // conn_'s transport when the check speaks TLS
  std::unique_ptr<sluice::http::http1::Parser> parser_;
  bool running_ = false;
  int status_ = 0;
  std::string body_;  // kept only while looking for body_contains
  bool body_ok_ = false;
};

}  // namespace sluice::upstream::health
