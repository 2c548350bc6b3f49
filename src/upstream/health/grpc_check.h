// GrpcCheck: one gRPC health check (grpc.health.v1.Health/Check, unary) over a connection
// the HealthChecker opened and secured. It speaks HTTP/2 through sluice's client codec: the
// connection preface, then one stream with `POST /grpc.health.v1.Health/Check`,
// `content-type: application/grpc`, `te: trailers` and the HealthCheckRequest{service}. The
// check passes only on HTTP 200, grpc-status 0 (in the trailers, or in the head of a
// trailers-only response) and a HealthCheckResponse whose status is SERVING; anything else
// fails with what was seen ("NOT_SERVING", "grpc-status 12 (UNIMPLEMENTED): ...",
// "HTTP status 503", "no HTTP/2: ...").
//
// The result goes to `done` exactly once, possibly from inside on_read(); `done` may close
// the connection but must not destroy this object, which is destroyed (before the
// connection) outside its callbacks. Owned by the HealthChecker; loop thread only.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "http/codec.h"
#include "http/http2/client_codec.h"
#include "net/connection.h"

namespace sluice::upstream::health {

class GrpcCheck final : public sluice::http::ClientCodecCallbacks {
 public:
  using DoneFn = std::function<void(bool passed, const std::string& detail)>;

  // `tls`: the connection is TLS (:scheme https), else cleartext HTTP/2 with prior knowledge.
  GrpcCheck(net::Connection& conn, bool tls, DoneFn done);
  ~GrpcCheck();
  GrpcCheck(const GrpcCheck&) = delete;
  GrpcCheck& operator=(const GrpcCheck&) = delete;

  // Bytes may flow: sends the preface, SETTINGS and the request.
  void start(const std::string& authority, const std::string& service);
  // The connection's events, forwarded by the HealthChecker.
  void on_read();
  void on_write_drained();
  void on_read_closed();

  // ClientCodecCallbacks
  bool on_head(sluice::http::StreamId stream, sluice::http::MessageHead& head) override;
  void on_data(sluice::http::StreamId stream, std::string_view data, bool end) override;
  void on_trailers(sluice::http::StreamId stream, sluice::http::HeaderMap& trailers) override;
  void on_reset(sluice::http::StreamId stream, const sluice::http::StreamReset& reset) override;

 private:
  // Decides from the fields that carry grpc-status (the trailers, or a trailers-only head).
  void judge(const sluice::http::HeaderMap& fields);
  void finish(bool passed, const std::string& detail);

  net::Connection& conn_;
  bool tls_;
  DoneFn done_;
  std::unique_ptr<sluice::http::http2::ClientCodec> codec_;
  sluice::http::StreamId stream_ = 0;
  sluice::http::HeaderMap head_fields_;  // of the final response head
  bool head_seen_ = false;
  std::string body_;
  // The endpoint's first bytes were checked: an HTTP/2 frame, not an HTTP/1 answer.
  bool first_bytes_checked_ = false;
  bool speaks_http2_ = false;
  bool finished_ = false;
};

}  // namespace sluice::upstream::health
