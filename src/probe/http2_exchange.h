// Http2Exchange: the one HTTP/2 request of a `sluice probe` run, on a connection that is
// already connected (and secured for https): the client preface, SETTINGS and the request
// HEADERS (END_STREAM: the probe sends no body) through an http2::ClientCodec, then the
// response head, DATA (acknowledged as it arrives, so any body size flows) and trailers.
// It also reads the server's connection preface itself, before the codec consumes it, to
// show the SETTINGS that shape a client (RFC 9113 §3.4, §6.5.2) and to say what a server
// that does not speak HTTP/2 answered instead. No callbacks out: the Probe calls on_read()
// and looks at the outcome and the state. Owned by the Probe, next to the connection it
// borrows (which must outlive it); loop thread only.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "http/codec.h"
#include "http/http2/client_codec.h"
#include "http/message.h"
#include "net/connection.h"

namespace sluice::probe {

// The server's SETTINGS that matter to one client (RFC 9113 §6.5.2).
struct PeerSettings {
  std::optional<uint32_t> max_concurrent_streams;  // not sent: no limit
  uint32_t initial_window_size = 65535;            // not sent: the protocol's default
};

// The server's first frame, collected from the bytes received until it is complete.
class ServerPreface {
 public:
  enum class State {
    kIncomplete,   // fewer bytes than the frame so far
    kSettings,     // a SETTINGS frame: settings() holds its values
    kNotSettings,  // something else: not_http2_text() says what
    kMalformed,    // a SETTINGS frame with an impossible length (the codec says why)
  };
  // Feeds the bytes received, in order; returns the state after them.
  State feed(std::string_view bytes);
  State state() const { return state_; }
  const PeerSettings& settings() const { return settings_; }
  // For kNotSettings: `it answered "HTTP/1.1 400 Bad Request"` when the first line looks
  // like an HTTP/1 status line, else `its first bytes are not a SETTINGS frame`.
  std::string not_http2_text() const;

 private:
  State state_ = State::kIncomplete;
  std::string bytes_;  // the first frame's, until it is complete
  PeerSettings settings_;
};

class Http2Exchange final : public http::ClientCodecCallbacks {
 public:
  enum class Outcome { kContinue, kComplete, kFailed };
  enum class Failure {
    kNone,
    kNotHttp2,  // the server's first bytes are not an HTTP/2 SETTINGS frame
    kProtocol,  // an HTTP/2 connection error (GOAWAY sent with its code)
    kReset,     // the stream ended without a complete response (RST_STREAM, GOAWAY)
    kClosed,    // the connection closed before the response was complete
  };

  // `scheme` is the request's :scheme ("http" or "https").
  Http2Exchange(net::Connection& conn, std::string_view scheme);
  ~Http2Exchange();
  Http2Exchange(const Http2Exchange&) = delete;
  Http2Exchange& operator=(const Http2Exchange&) = delete;

  // Queues the preface, SETTINGS and `request`'s HEADERS. Host becomes :authority and
  // connection-specific fields are not sent (the codec's mapping).
  void start(const http::MessageHead& request);
  // Feeds what the connection received (consuming it).
  Outcome on_read();
  // The server sent FIN before the response was complete.
  Outcome on_read_closed();
  void on_write_drained() { codec_.on_write_drained(); }
  // After a complete response: GOAWAY (NO_ERROR), to be flushed before the close. Else the
  // stream, if still open, is reset with CANCEL.
  void end(bool complete);

  // Any response head (1xx too) arrived: the response's first byte.
  bool head_received() const { return head_received_; }
  // The final head (status 0 until it arrives). HTTP/2 has no reason phrase.
  const http::MessageHead& response() const { return response_; }
  uint64_t body_bytes() const { return body_bytes_; }
  // The request's HTTP/2 stream identifier (0 before start()).
  uint32_t stream_id() const { return stream_id_; }
  const ServerPreface& preface() const { return preface_; }
  Failure failure() const { return failure_; }
  const std::string& error() const { return error_; }

  // http::ClientCodecCallbacks
  bool on_head(http::StreamId stream, http::MessageHead& head) override;
  void on_data(http::StreamId stream, std::string_view data, bool end) override;
  void on_trailers(http::StreamId stream, http::HeaderMap& trailers) override;
  void on_reset(http::StreamId stream, const http::StreamReset& reset) override;

 private:
  Outcome failed(Failure failure, std::string message);
  Outcome outcome() const;

  net::Connection& conn_;
  http::http2::ClientCodec codec_;
  http::StreamId stream_ = 0;  // the codec's handle; 0 once the stream ended
  uint32_t stream_id_ = 0;
  ServerPreface preface_;
  bool head_received_ = false;
  http::MessageHead response_;
  uint64_t body_bytes_ = 0;
  bool complete_ = false;
  std::string reset_;  // why the stream ended early, when it did
  Failure failure_ = Failure::kNone;
  std::string error_;
};

}  // namespace sluice::probe
