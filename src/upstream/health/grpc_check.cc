#include "upstream/health/grpc_check.h"

#include <charconv>

#include <fmt/format.h>

#include "upstream/health/grpc_health.h"

namespace sluice::upstream::health {

using sluice::http::HeaderMap;
using sluice::http::MessageHead;
using sluice::http::StreamId;
using sluice::http::StreamReset;
namespace http2 = sluice::http::http2;

GrpcCheck::GrpcCheck(net::Connection& conn, bool tls, DoneFn done)
    : conn_(conn), tls_(tls), done_(std::move(done)) {}

GrpcCheck::~GrpcCheck() {
  finished_ = true;  // nothing more is reported
  // The codec's rule: streams still open are failed before it goes.
  if (codec_) codec_->fail_streams("check over");
}

void GrpcCheck::start(const std::string& authority, const std::string& service) {
  codec_ =
      std::make_unique<http2::ClientCodec>(conn_, http2::ClientOptions{}, tls_ ? "https" : "http");
  codec_->start();
  stream_ = codec_->open_stream(*this);
  if (stream_ == 0) return finish(false, "no HTTP/2: cannot open a stream");
  MessageHead head;
  head.method = "POST";
  head.target = std::string(grpc::kCheckPath);
  head.headers.add("host", authority);  // becomes :authority
  head.headers.add("content-type", "application/grpc");
  head.headers.add("te", "trailers");
  head.headers.add("user-agent", "sluice-health");
  codec_->send_head(stream_, head, /*end_stream=*/false);
  codec_->send_data(stream_, grpc::frame_message(grpc::encode_check_request(service)));
  codec_->send_trailers(stream_, HeaderMap{});  // END_STREAM on the DATA frame
}

void GrpcCheck::on_read() {
  if (finished_ || !codec_) {
    conn_.input().clear();
    return;
  }
  Buffer& in = conn_.input();
  if (!first_bytes_checked_ && in.size() >= 4) {
    // RFC 9113 §3.4: the server's connection preface is a SETTINGS frame (type, byte 3).
    first_bytes_checked_ = true;
    speaks_http2_ = !in.view().starts_with("HTTP/") && static_cast<uint8_t>(in.data()[3]) == 0x4;
  }
  auto outcome = codec_->dispatch();
  if (finished_) return;
  if (outcome == http2::ClientCodec::Outcome::kError) {
    // Every open stream was reported through on_reset(); this covers a failure before the
    // request stream could be told.
    std::string reason(codec_->error().reason);
    return finish(false, speaks_http2_ ? "HTTP/2: " + reason : "no HTTP/2: " + reason);
  }
  if (outcome == http2::ClientCodec::Outcome::kFinished) {
    return finish(false, "the endpoint ended the HTTP/2 connection (GOAWAY) before answering");
  }
}

void GrpcCheck::on_write_drained() {
  if (codec_ && !finished_) codec_->on_write_drained();
}

void GrpcCheck::on_read_closed() {
  if (finished_) return;
  if (!speaks_http2_) {
    return finish(false, "no HTTP/2: connection closed before the endpoint's SETTINGS");
  }
  finish(false, "connection closed before a complete response");
}

bool GrpcCheck::on_head(StreamId, MessageHead& head) {
  if (finished_ || head.status < 200) return true;  // an interim head: the final one follows
  if (head.status != 200) {
    finish(false, fmt::format("HTTP status {}", head.status));
    return false;
  }
  const std::string* type = head.headers.get("content-type");
  // gRPC over HTTP/2: "application/grpc", optionally followed by "+proto", ";...".
  std::string_view t = type ? std::string_view(*type) : std::string_view();
  bool grpc_type =
      t.starts_with("application/grpc") && (t.size() == 16 || t[16] == '+' || t[16] == ';');
  if (!grpc_type) {
    finish(false, type ? fmt::format("content-type '{}' is not application/grpc",
                                     grpc::decode_grpc_message(*type, 100))
                       : std::string("no content-type in the response"));
    return false;
  }
  head_seen_ = true;
  head_fields_ = head.headers;
  return true;
}

void GrpcCheck::on_data(StreamId stream, std::string_view data, bool end) {
  if (finished_) return;
  if (!data.empty()) {
    codec_->consumed(stream, data.size());
    if (body_.size() + data.size() > grpc::kMaxResponseMessage + 5) {
      return finish(
          false, fmt::format("response body longer than {} bytes", grpc::kMaxResponseMessage + 5));
    }
    body_.append(data);
  }
  // The stream ended without trailers: a trailers-only response carries grpc-status in
  // its head (gRPC over HTTP/2, "Responses").
  if (end) judge(head_fields_);
}

void GrpcCheck::on_trailers(StreamId, HeaderMap& trailers) {
  if (!finished_) judge(trailers);
}

void GrpcCheck::on_reset(StreamId, const StreamReset& reset) {
  if (finished_) return;
  std::string reason(reset.reason);
  if (!speaks_http2_) return finish(false, "no HTTP/2: " + reason);
  finish(false, fmt::format("stream reset: {}", reason));
}

void GrpcCheck::judge(const HeaderMap& fields) {
  if (!head_seen_) return finish(false, "stream ended without a response head");
  const std::string* status = fields.get("grpc-status");
  if (!status) return finish(false, "HTTP 200 without grpc-status");
  uint64_t code = 0;
  auto [p, ec] = std::from_chars(status->data(), status->data() + status->size(), code);
  if (ec != std::errc() || p != status->data() + status->size()) {
    return finish(false,
                  fmt::format("invalid grpc-status '{}'", grpc::decode_grpc_message(*status, 40)));
  }
  if (code != 0) {
    std::string detail = fmt::format("grpc-status {}", code);
    std::string_view name = grpc::status_code_name(code);
    if (!name.empty()) detail += fmt::format(" ({})", name);
    const std::string* message = fields.get("grpc-message");
    if (message && !message->empty()) detail += ": " + grpc::decode_grpc_message(*message);
    return finish(false, detail);
  }
  auto message = grpc::unframe_message(body_);
  if (!message) return finish(false, message.status().message());
  auto serving = grpc::decode_check_response(message.value());
  if (!serving) return finish(false, serving.status().message());
  std::string_view name = grpc::to_string(serving.value());
  if (serving.value() == grpc::ServingStatus::kServing) return finish(true, std::string(name));
  finish(false, name.empty()
                    ? fmt::format("serving status {}", static_cast<uint64_t>(serving.value()))
                    : std::string(name));
}

void GrpcCheck::finish(bool passed, const std::string& detail) {
  if (finished_) return;
  finished_ = true;
  done_(passed, detail);
}

}  // namespace sluice::upstream::health
