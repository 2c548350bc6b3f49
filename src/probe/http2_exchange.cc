#include "probe/http2_exchange.h"

#include <nghttp2/nghttp2.h>

#include <fmt/format.h>

#include "base/check.h"

namespace sluice::probe {
namespace {

// RFC 9113 §4.1: length (24 bits), type, flags, stream identifier (31 bits).
constexpr size_t kFrameHeader = 9;
// The largest frame a server may send before our SETTINGS reach it (RFC 9113 §4.2).
constexpr size_t kMaxPayload = 16384;
// Kept of a first frame that is not SETTINGS, to quote an HTTP/1 status line from it.
constexpr size_t kQuoteBytes = 256;
constexpr size_t kMaxQuotedLine = 100;

uint32_t be32(const std::string& s, size_t at) {
  auto b = [&](size_t i) { return static_cast<uint32_t>(static_cast<uint8_t>(s[at + i])); };
  return (b(0) << 24) | (b(1) << 16) | (b(2) << 8) | b(3);
}

}  // namespace

ServerPreface::State ServerPreface::feed(std::string_view bytes) {
  if (state_ != State::kIncomplete) return state_;
  size_t room = kFrameHeader + kMaxPayload - bytes_.size();
  bytes_.append(bytes.substr(0, room));
  // RFC 9113 §3.4: the server's preface is a SETTINGS frame (type 0x4, byte 3).
  if (bytes_.size() < 4) return state_;
  if (static_cast<uint8_t>(bytes_[3]) != NGHTTP2_SETTINGS) {
    if (bytes_.size() > kQuoteBytes) bytes_.resize(kQuoteBytes);
    return state_ = State::kNotSettings;
  }
  if (bytes_.size() < kFrameHeader) return state_;
  size_t length = be32(bytes_, 0) >> 8;
  auto flags = static_cast<uint8_t>(bytes_[4]);
  if (length % 6 != 0 || length > kMaxPayload || (flags & NGHTTP2_FLAG_ACK) != 0) {
    bytes_.clear();
    return state_ = State::kMalformed;
  }
  if (bytes_.size() < kFrameHeader + length) return state_;
  // RFC 9113 §6.5.1: 16-bit identifier, 32-bit value; a later one of the same id wins.
  for (size_t at = kFrameHeader; at < kFrameHeader + length; at += 6) {
    auto id = static_cast<uint16_t>((static_cast<uint8_t>(bytes_[at]) << 8) |
                                    static_cast<uint8_t>(bytes_[at + 1]));
    uint32_t value = be32(bytes_, at + 2);
    if (id == NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS) settings_.max_concurrent_streams = value;
    if (id == NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE) settings_.initial_window_size = value;
  }
  bytes_.clear();
  bytes_.shrink_to_fit();
  return state_ = State::kSettings;
}

std::string ServerPreface::not_http2_text() const {
  std::string_view b = bytes_;
  if (!b.starts_with("HTTP/")) return "its first bytes are not a SETTINGS frame";
  std::string line(b.substr(0, std::min(b.find_first_of("\r\n"), kMaxQuotedLine)));
  for (char& c : line) {
    if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) >= 0x7f) c = '?';
  }
  return fmt::format("it answered \"{}\"", line);
}

Http2Exchange::Http2Exchange(net::Connection& conn, std::string_view scheme)
    : conn_(conn), codec_(conn, http::http2::ClientOptions{}, scheme) {}

Http2Exchange::~Http2Exchange() {
  // The codec is not to go with a stream open; nothing is reported back from a reset.
  if (stream_ != 0) codec_.reset(stream_, NGHTTP2_CANCEL);
}

void Http2Exchange::start(const http::MessageHead& request) {
  codec_.start();
  stream_ = codec_.open_stream(*this);
  SLUICE_CHECK(stream_ != 0);  // a new connection has room for one stream
  http::StreamId handle = stream_;
  codec_.send_head(handle, request, /*end_stream=*/true);
  stream_id_ = codec_.wire_id(handle);  // 0 if the head could not be submitted (on_reset)
}

Http2Exchange::Outcome Http2Exchange::on_read() {
  if (preface_.state() == ServerPreface::State::kIncomplete) preface_.feed(conn_.input().view());
  if (codec_.dispatch() == http::http2::ClientCodec::Outcome::kError) {
    if (preface_.state() == ServerPreface::State::kNotSettings) {
      return failed(Failure::kNotHttp2,
                    "the server does not speak HTTP/2: " + preface_.not_http2_text());
    }
    std::string_view reason = codec_.error().reason;
    std::string_view code = nghttp2_http2_strerror(codec_.goaway_code());
    // nghttp2's own findings are named by their code alone.
    return failed(Failure::kProtocol,
                  reason == code
                      ? fmt::format("HTTP/2 connection error: {} (GOAWAY sent)", code)
                      : fmt::format("HTTP/2 connection error: {} (GOAWAY {} sent)", reason, code));
  }
  return outcome();
}

Http2Exchange::Outcome Http2Exchange::on_read_closed() {
  if (failure_ != Failure::kNone || complete_) return outcome();
  std::string what;
  if (preface_.state() == ServerPreface::State::kIncomplete) {
    what = "no HTTP/2 SETTINGS from the server";
  } else if (response_.status == 0) {
    what = "no response";
  } else {
    what = fmt::format("HTTP {}, {} bytes of body received", response_.status, body_bytes_);
  }
  codec_.fail_streams("the connection closed");  // on_reset() for the stream, if open
  return failed(Failure::kClosed,
                fmt::format("connection closed before a complete response ({})", what));
}

void Http2Exchange::end(bool complete) {
  if (complete) {
    codec_.go_away(NGHTTP2_NO_ERROR);
  } else if (stream_ != 0) {
    codec_.reset(stream_, NGHTTP2_CANCEL);
  }
  stream_ = 0;
}

Http2Exchange::Outcome Http2Exchange::failed(Failure failure, std::string message) {
  // A connection error also ends the stream (on_reset first): the connection's reason wins.
  failure_ = failure;
  error_ = std::move(message);
  return Outcome::kFailed;
}

Http2Exchange::Outcome Http2Exchange::outcome() const {
  if (failure_ != Failure::kNone) return Outcome::kFailed;
  return complete_ ? Outcome::kComplete : Outcome::kContinue;
}

bool Http2Exchange::on_head(http::StreamId, http::MessageHead& head) {
  head_received_ = true;
  if (head.status >= 200) response_ = head;
  return true;
}

void Http2Exchange::on_data(http::StreamId stream, std::string_view data, bool end) {
  if (!data.empty()) {
    body_bytes_ += data.size();
    codec_.consumed(stream, data.size());  // nothing is kept: the window opens again
  }
  if (end) {
    complete_ = true;
    stream_ = 0;
  }
}

void Http2Exchange::on_trailers(http::StreamId, http::HeaderMap&) {
  complete_ = true;
  stream_ = 0;
}

void Http2Exchange::on_reset(http::StreamId, const http::StreamReset& reset) {
  stream_ = 0;
  if (failure_ != Failure::kNone) return;
  failure_ = Failure::kReset;
  error_ =
      fmt::format("HTTP/2 stream {} ended before a complete response: {}{}", stream_id_,
                  reset.reason, reset.refused ? " (refused: the server did not process it)" : "");
}

}  // namespace sluice::probe
