// Http2Session: the HTTP/2 side of a client connection, once ALPN h2 or the cleartext
// preface chose it. It owns the HTTP/2 server codec and one Stream per open request stream;
// each Stream is the same state machine HTTP/1 requests run through, talking to the session
// through its stream's StreamCallbacks (a Slot). Backpressure is per stream: a slow upstream
// holds back its stream's WINDOW_UPDATEs, a slow client's window stalls only its stream's
// upstream reads.
// It keeps the connection's HTTP/2 life: the idle timeout, keep-alive PINGs, the maximum
// age and request count, the two-step GOAWAY of a drain (RFC 9113 §6.8), and the abuse
// score that ends connections whose resets and control frames outrun their requests
// (Rapid Reset, MadeYouReset, floods of empty DATA, PRIORITY, PING or SETTINGS).
// Owned by its DownstreamConnection, which it calls back through Http2SessionOwner. Loop
// thread only.
#pragma once

#include <cstdint>
#include <memory>
#include <unordered_map>

#include "event/loop.h"
#include "http/http2/server_codec.h"
#include "net/address.h"
#include "net/connection.h"
#include "proxy/http/stream.h"
#include "proxy/tls_info.h"

namespace sluice::proxy::http {

class HttpProxy;

// What the session needs of the connection that owns it.
class Http2SessionOwner {
 public:
  // Nothing more will be read or sent: close once what is queued went out.
  virtual void on_session_finished(const char* reason) = 0;
  // The client connection's TLS (null: cleartext).
  virtual const DownstreamTls* session_tls() const = 0;

 protected:
  ~Http2SessionOwner() = default;
};

class Http2Session final : public sluice::http::ServerCodecCallbacks {
 public:
  Http2Session(HttpProxy& proxy, net::Connection& conn, Http2SessionOwner& owner,
               const net::Address& peer);
  ~Http2Session();
  Http2Session(const Http2Session&) = delete;
  Http2Session& operator=(const Http2Session&) = delete;

  // Sends the server's SETTINGS and reads what the client already sent.
  void start();
  void on_read();
  void on_write_drained();
  // Graceful: a GOAWAY announcing the end, then the real one a round trip later; open
  // streams finish, then the connection closes.
  void drain();
  // The connection closes: every open stream ends (logged as incomplete).
  void on_connection_closed();
  // The client closed or broke the connection: open streams are logged as reset by it.
  void on_client_gone();

  size_t open_streams() const { return slots_.size(); }
  uint64_t abuse_score() const { return score_; }
  const sluice::http::http2::ServerCodec& codec() const { return codec_; }
  bool draining() const { return drain_step_ != DrainStep::kNone; }
  // For /connections: "", "notice sent" or "sent".
  const char* goaway_state() const;

  // ServerCodecCallbacks
  bool on_head(sluice::http::StreamId stream, sluice::http::MessageHead& head) override;
  void on_data(sluice::http::StreamId stream, std::string_view data, bool end) override;
  void on_trailers(sluice::http::StreamId stream, sluice::http::HeaderMap& trailers) override;
  void on_reset(sluice::http::StreamId stream, std::string_view reason) override;

  // One open request stream: its Stream and what the Stream sees of the connection.
  class Slot;

 private:
  enum class DrainStep { kNone, kNoticeSent, kGoawaySent };

  // After the codec read or sent frames: counters, the abuse verdict, streams whose output
  // drained, the connection's end.
  void after_codec();
  void sync_counts();
  void check_finished();
  void finish(const char* reason);
  // A Stream ended (its response done, or reset): the slot goes, deleted after the iteration.
  void remove(Slot& slot, bool completed);
  void on_stream_done(Slot& slot);
  void on_stream_reset(Slot& slot, const char* reason);
  Slot* find(sluice::http::StreamId id);
  void arm_idle();
  void on_idle_timer();
  void on_ping_timer();
  void on_goaway_timer();
  // Response bytes are waiting and none went out for send_stall_timeout: the client's
  // windows stay shut (or it does not read): those streams are reset.
  void on_stall_timer();
  // Starts watching for a stall when response bytes wait (after the codec was given some).
  void arm_stall();
  void abuse_close();

  HttpProxy& proxy_;
  net::Connection& conn_;
  Http2SessionOwner& owner_;
  const net::Address& peer_;
  const Http2Options& options_;
  sluice::http::http2::ServerCodec codec_;
  std::unordered_map<sluice::http::StreamId, std::unique_ptr<Slot>> slots_;
  sluice::http::http2::FrameCounts seen_;  // what the counters and the score already took
  uint64_t score_ = 0;
  uint64_t streams_ = 0;
  uint64_t completed_ = 0;
  uint64_t premature_resets_ = 0;  // streams the client reset before their response completed
  bool in_dispatch_ = false;       // inside the codec's dispatch(): the end waits for its return
  const char* finish_reason_ = nullptr;
  DrainStep drain_step_ = DrainStep::kNone;
  bool finished_ = false;
  bool blocked_streams_ = false;  // some stream's output was over its high watermark
  MonoTime last_read_{};
  bool ping_outstanding_ = false;
  event::Timer idle_timer_;
  event::Timer ping_timer_;
  event::Timer age_timer_;
  event::Timer goaway_timer_;
  event::Timer stall_timer_;
  uint64_t stall_mark_ = 0;  // data_bytes_sent when the stall timer was armed
};

}  // namespace sluice::proxy::http
