// DownstreamConnection: one client connection of the HTTP proxy. It owns the socket
// (net::Connection), the server codec (HTTP/1) and the Stream of the request being served.
// Requests are served one at a time in order: pipelined requests wait in the input buffer,
// the parser paused, until the response before them is complete. After a 101 or a CONNECT
// 2xx the connection is a tunnel: bytes flow both ways unparsed.
// States: Active → Draining (the listener drains: the current response closes the
// connection) → Closing (the last response is flushed, waiting briefly for the client's FIN)
// → Closed. Its timer is the keep-alive idle timeout between requests, then the header-read
// timeout once a request head begins; a Stream times its own body.
// Owned by its HttpProxy (an intrusive list); deleted through deferred deletion. Loop
// thread only.
#pragma once

#include <cstdint>
#include <memory>

#include "base/recycled.h"
#include "event/loop.h"
#include "http/http1/codec.h"
#include "net/connection.h"
#include "proxy/http/http2_session.h"
#include "proxy/http/stream.h"
#include "proxy/tls_info.h"

namespace sluice::proxy::http {

class HttpProxy;

class DownstreamConnection final : public net::ConnectionCallbacks,
                                   public sluice::http::ServerCodecCallbacks,
                                   public StreamCallbacks,
                                   public event::DeferredDeletable,
                                   public Recycled<DownstreamConnection> {
 public:
  enum class State : uint8_t { kActive, kDraining, kClosing, kClosed };

  DownstreamConnection(HttpProxy& proxy, const net::Address& peer);
  ~DownstreamConnection() override;

  void start(net::Fd fd);
  void close(const char* reason);
  // The listener drains: close if idle, else after the current response.
  void drain();

  // ConnectionCallbacks
  void on_secured() override;
  void on_read() override;
  void on_read_closed() override;
  void on_write_drained() override;
  void on_error(int err) override;
  // ServerCodecCallbacks (the requests)
  bool on_head(sluice::http::StreamId stream, sluice::http::MessageHead& head) override;
  void on_data(sluice::http::StreamId stream, std::string_view data, bool end) override;
  void on_trailers(sluice::http::StreamId stream, sluice::http::HeaderMap& trailers) override;
  // StreamCallbacks
  sluice::http::ServerCodec& codec() override { return codec_; }
  bool downstream_above_high_watermark() const override { return conn_.above_high_watermark(); }
  void set_downstream_read_enabled(bool enabled) override;
  bool downstream_read_enabled() const override { return conn_.read_enabled(); }
  bool keep_alive_allowed() const override;
  void on_stream_done(bool close_connection) override;
  void on_stream_reset(const char* reason) override;
  void on_stream_tunnel(UpstreamExchange& exchange) override;
  const DownstreamTls* downstream_tls() const override;
  bool downstream_secured() const override { return conn_.secured(); }

  // The HttpProxy's list of open connections.
  DownstreamConnection* prev = nullptr;
  DownstreamConnection* next = nullptr;
  int fd() const { return conn_.fd(); }
  bool busy() const;
  // Null: the connection speaks HTTP/1.x.
  const Http2Session* http2() const { return h2(); }
  State state() const { return state_; }

 private:
  enum class TimerMode : uint8_t { kNone, kKeepalive, kHead };
  class Tunnel;
  struct Extras;

  Http2Session* h2() const;
  Tunnel* tunnel() const;
  // What most connections never use, made by the first that does.
  Extras& extras();
  void on_session_finished(const char* reason);

  void transition(State to);
  void process_input();
  // From here on the connection speaks HTTP/2.
  void start_http2();
  // A cleartext listener with prior knowledge: whether the input is (so far) the HTTP/2
  // connection preface. Undecided while it is a shorter prefix of it.
  enum class Preface { kNo, kYes, kUndecided };
  Preface sniff_preface();
  // Closing: the last bytes go out, then a brief wait for the client's FIN.
  void close_after_flush();
  // Before the handshake completes (TLS early data): whether the next request may be served
  // now. Safe methods may; others wait for the handshake or get 425, as configured.
  bool early_request_allowed();
  void arm_timer(TimerMode mode, Duration d);
  void on_timer();
  void on_linger_timer();
  void arm_linger();
  void on_handshake_timeout();
  // Reset the client's connection (no response can be sent).
  void abort(const char* reason);
  // A Stream for a reply to a request that has none (a timeout or a malformed head).
  Stream& stream_for_reply();

  // An idle keep-alive connection is this object and nothing else (its buffers, parser
  // message and Stream are let go between requests), so what only some connections use
  // (TLS, HTTP/2, a tunnel, a lingering close) lives in extras_, and the rest is packed:
  // the static_assert in the .cc keeps it that way.
  HttpProxy& proxy_;
  net::Address peer_;
  net::Connection conn_;
  sluice::http::http1::ServerCodec codec_;
  std::unique_ptr<Stream> stream_;
  std::unique_ptr<Extras> extras_;
  event::Timer timer_;
  MonoTime request_first_byte_{};  // of the request being read
  uint32_t requests_ = 0;
  State state_ = State::kActive;
  TimerMode timer_mode_ = TimerMode::kNone;
  bool in_parser_ : 1 = false;  // inside codec_.dispatch(): the parser must not be re-entered
  bool resume_after_parse_ : 1 = false;
  bool held_early_ : 1 = false;  // a request in early data waits for the handshake
};

const char* to_string(DownstreamConnection::State s);

}  // namespace sluice::proxy::http
