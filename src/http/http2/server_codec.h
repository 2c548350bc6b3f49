// The HTTP/2 server codec: an nghttp2 server session driven through its memory API (bytes
// in with mem_recv, frames out with mem_send into the connection's output queue; nghttp2
// does no I/O of its own). Each request stream becomes a MessageHead (pseudo-headers mapped
// to method, target and Host), its DATA becomes on_data(), its trailer section
// on_trailers(). Responses are submitted with a data provider that reads a per-stream
// buffer: send_data() fills it, send_trailers() ends it. Flow control is the owner's:
// request bytes stay counted against the windows until consumed() acknowledges them.
// Callbacks may call back into the codec (send_head() from on_head()); frames submitted
// then go out when dispatch() returns. on_reset() may arrive from inside send_*() (a frame
// sent closes a stream the client had reset). Owned by the connection it serves; loop
// thread only.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "base/validation.h"
#include "http/codec.h"
#include "net/connection.h"

struct nghttp2_session;

namespace sluice::http::http2 {

// The settings this server announces, and the limits it keeps.
struct ServerOptions {
  uint32_t max_concurrent_streams = 100;
  // What each request stream may send before consumed() (SETTINGS_INITIAL_WINDOW_SIZE).
  uint32_t initial_stream_window = 256 * 1024;
  // What all request streams together may send before consumed() (the connection window).
  uint32_t initial_connection_window = 1024 * 1024;
  // Header and trailer sections larger than this (RFC 9113 §6.5.2 accounting: name + value
  // + 32 per field) are answered with 431.
  uint32_t max_header_list_size = 64 * 1024;
  // The largest frame payload the client may send (SETTINGS_MAX_FRAME_SIZE).
  uint32_t max_frame_size = 16 * 1024;

  ConfigIssues validate() const;

  bool operator==(const ServerOptions&) const = default;
};

// What the client's frames amounted to, counted as they arrive: the owner turns them into
// a verdict (an abuse score) and counters.
struct FrameCounts {
  uint64_t resets_received = 0;  // RST_STREAM frames from the client
  uint64_t resets_sent = 0;      // RST_STREAM frames sluice sent, nghttp2's for stream errors too
  uint64_t owner_resets = 0;     // ... of which reset() asked for
  uint64_t empty_data = 0;       // DATA frames with no payload and no END_STREAM
  uint64_t priority = 0;         // PRIORITY frames
  uint64_t free_priority = 0;    // ... of which the streams the client opened paid for (not scored)
  uint64_t unknown = 0;          // frames of types HTTP/2 does not define (ignored)
  uint64_t ping = 0;             // PING frames (not ACKs)
  uint64_t free_pings = 0;       // ... of which came after other frames (not scored)
  uint64_t settings = 0;         // SETTINGS frames (not ACKs)
  uint64_t invalid = 0;          // frames nghttp2 refused (a stream or connection error)
  uint64_t goaways_sent = 0;
  uint64_t ping_acks = 0;        // ACKs of our PINGs
  uint64_t data_bytes_sent = 0;  // response DATA payload sent
};

class ServerCodec final : public http::ServerCodec {
 public:
  enum class Outcome {
    kContinue,  // keep reading
    kFinished,  // GOAWAY exchanged and no stream left: close once the output is flushed
    kError,     // a connection error: GOAWAY with goaway_code() is queued; see error()
  };

  ServerCodec(net::Connection& conn, const ServerOptions& options, ServerCodecCallbacks& callbacks);
  ~ServerCodec() override;
  ServerCodec(const ServerCodec&) = delete;
  ServerCodec& operator=(const ServerCodec&) = delete;

  // Queues the server's connection preface (SETTINGS). Call once bytes may flow.
  void start();
  // Feeds what the connection's input holds (consuming it) and queues what is to be sent.
  Outcome dispatch();
  // The connection's output queue drained below its high watermark: more frames may go.
  void on_write_drained() { send_pending(); }
  const CodecError& error() const { return error_; }
  // The error code of the GOAWAY sent for a connection error (RFC 9113 §7).
  uint32_t goaway_code() const { return goaway_code_; }
  // No new streams are accepted (GOAWAY with `code`); open ones may finish.
  void go_away(uint32_t code);
  // The first step of a graceful shutdown (RFC 9113 §6.8): a GOAWAY with the largest stream
  // id, so that the client stops opening streams while those in flight still arrive; the
  // real go_away() follows about a round trip later.
  void shutdown_notice();
  // A PING (its ACK is counted in counts().ping_acks).
  void ping();
  // The response of `stream` is complete before its request: once its last frame is sent,
  // RST_STREAM NO_ERROR asks the client to stop sending the rest (RFC 9113 §8.1).
  void stop_request_after_response(StreamId stream);
  // Ends one stream with RST_STREAM `code`.
  void reset(StreamId stream, uint32_t code);
  // GOAWAY went both ways or out, and no stream is left: nothing more will be read or sent.
  bool finished() const;
  // The connection is about to close once its output is out: everything nghttp2 still
  // holds (the GOAWAY among it) goes to the connection now, past its high watermark, since
  // no drained output will ask for more.
  void send_final();
  const FrameCounts& counts() const { return counts_; }
  // The connection's flow-control windows: what sluice may still send the client, and what
  // the client may still send before sluice acknowledges more.
  int32_t send_window() const;
  int32_t receive_window() const;
  // Response bytes buffered for `stream` that the client's window did not let go yet.
  size_t buffered(StreamId stream) const;
  // ... for all streams.
  size_t buffered_total() const { return buffered_total_; }
  // Resets (CANCEL) every stream with response bytes buffered; returns their ids.
  std::vector<StreamId> reset_stalled();
  size_t open_streams() const;

  // http::ServerCodec. HTTP/2 never needs the connection's end to frame a response, so
  // send_head() returns false and ignores close_after: ending the connection is the owner's
  // go_away() to decide.
  bool send_head(StreamId stream, MessageHead& head, const ResponseOptions& options) override;
  void send_interim(StreamId stream, const MessageHead& head) override;
  void send_data(StreamId stream, std::string_view data) override;
  // Empty trailers end the response with its last DATA frame.
  void send_trailers(StreamId stream, const HeaderMap& trailers) override;
  // Holds back the window updates of `stream` until resume(): bytes already allowed by
  // the window are still delivered.
  void pause(StreamId stream) override;
  void resume(StreamId stream) override;
  void consumed(StreamId stream, size_t bytes) override;

  // One stream's state (defined in server_codec.cc; public for its nghttp2 callbacks).
  struct Stream;
  // The nghttp2 callbacks reach the codec through these.
  struct Hooks;

 private:
  Stream* find(StreamId id) const;
  Stream* acquire(StreamId id);
  void release(Stream* s);
  // Runs mem_send while the connection is below its high watermark.
  void send_pending(bool past_watermark = false);
  void fail(uint32_t code, std::string_view reason);
  void submit_head(Stream& s, int status, HeaderMap& headers, bool with_body);
  void deliver_head(Stream& s, bool end_stream);

  net::Connection& conn_;
  ServerOptions options_;
  ServerCodecCallbacks& callbacks_;
  nghttp2_session* session_ = nullptr;
  // Stream states live as long as the codec and are recycled: a connection's streams cost
  // one allocation each at its peak concurrency, not one per request.
  std::vector<std::unique_ptr<Stream>> streams_;
  std::vector<Stream*> free_;
  int recv_depth_ = 0;  // inside mem_recv: mem_send must wait
  CodecError error_;
  std::string error_reason_;
  uint32_t goaway_code_ = 0;
  bool failed_ = false;
  FrameCounts counts_;
  // PRIORITY frames the client may still send unscored: a browser builds a tree before its
  // first request and moves streams in it as a page lays out, a few times each.
  static constexpr uint64_t kFreePriorityFrames = 16;    // before any stream
  static constexpr uint64_t kFreePriorityPerStream = 4;  // earned by each stream opened
  uint64_t priority_allowance_ = kFreePriorityFrames;
  size_t buffered_total_ = 0;
  int32_t highest_stream_ = 0;  // the highest client stream id seen
  // The ids of the streams closed last, whose late frames are ignored, not an error.
  static constexpr size_t kRecentlyClosed = 256;
  int32_t recently_closed_[kRecentlyClosed] = {};
  size_t closed_next_ = 0;
  // A PING is free when other frames came since the previous one (gRPC's BDP probes and
  // keep-alives); counts().ping counts the others.
  bool activity_since_ping_ = true;
  void note_ping(const void* frame);
};

}  // namespace sluice::http::http2
