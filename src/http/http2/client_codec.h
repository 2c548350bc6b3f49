// The HTTP/2 client codec: an nghttp2 client session driven through its memory API (bytes
// in with mem_recv, frames out with mem_send into the connection's output queue), the mirror
// of http2::ServerCodec for upstream connections. One codec per connection, many streams:
// each exchange opens a stream with its own callbacks, sends its request head (mapped to
// :method, :scheme, :authority and :path; connection-specific fields dropped), its body
// through a per-stream buffer read by a data provider, and its trailers; the response comes
// back as on_head() (1xx ones too), on_data() and on_trailers(), or on_reset() when the
// stream ends without a complete response (StreamReset::refused: the request was not
// processed and may be retried). Flow control is the owner's: response bytes stay counted
// against the windows until consumed() acknowledges them, so a slow downstream stalls only
// its own stream.
//
// Stream ids given by open_stream() are the codec's handles, not HTTP/2 stream identifiers
// (nghttp2 numbers a stream when its HEADERS is submitted, and those numbers must rise in
// the order the heads go out); wire_id() maps one to the other. Handles are not reused for
// 2^32 streams, so a late call with the handle of an ended stream is a no-op.
//
// Callbacks may call back into the codec; frames submitted then go out when the outer call
// returns. on_reset() may arrive from inside any call that sends. The owner must not destroy
// the codec from inside a callback, and calls fail_streams() before destroying it with
// streams open. Owned by the upstream connection; loop thread only.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/clock.h"
#include "base/validation.h"
#include "http/codec.h"
#include "net/connection.h"

struct nghttp2_session;

namespace sluice::http::http2 {

// The settings this client announces, and the limits it keeps.
struct ClientOptions {
  // What each response stream may send before consumed() (SETTINGS_INITIAL_WINDOW_SIZE).
  uint32_t initial_stream_window = 1024 * 1024;
  // What all response streams together may send before consumed() (the connection window).
  uint32_t initial_connection_window = 4 * 1024 * 1024;
  // Response header and trailer sections larger than this (RFC 9113 §6.5.2 accounting:
  // name + value + 32 per field) reset the stream with CANCEL.
  uint32_t max_header_list_size = 64 * 1024;
  // The largest frame payload the server may send (SETTINGS_MAX_FRAME_SIZE).
  uint32_t max_frame_size = 16 * 1024;

  ConfigIssues validate() const;

  bool operator==(const ClientOptions&) const = default;
};

class ClientCodec final : public http::ClientCodec {
 public:
  enum class Outcome {
    kContinue,  // keep reading
    kFinished,  // GOAWAY received (or sent) and no stream left: close once flushed
    kError,     // a connection error: GOAWAY with goaway_code() is queued; see error()
  };

  // `scheme` is the :scheme of every request ("http" or "https"); `clock` times PINGs.
  ClientCodec(net::Connection& conn, const ClientOptions& options, std::string_view scheme,
              Clock& clock = Clock::steady());
  ~ClientCodec() override;
  ClientCodec(const ClientCodec&) = delete;
  ClientCodec& operator=(const ClientCodec&) = delete;

  // Queues the client connection preface and SETTINGS (no server push, no RFC 7540
  // priorities, the windows). Call once bytes may flow.
  void start();
  // Feeds what the connection's input holds (consuming it) and queues what is to be sent.
  // On kError every open stream has been reported through on_reset().
  Outcome dispatch();
  // The connection's output queue drained below its high watermark: more frames may go.
  void on_write_drained() { send_pending(); }
  // The connection is gone (closed by the peer, failed): every open stream whose response
  // is not complete is reported through on_reset() with CANCEL, refused when its head
  // never left.
  void fail_streams(std::string_view reason);
  const CodecError& error() const { return error_; }
  // The error code of the GOAWAY sent for a connection error (RFC 9113 §7).
  uint32_t goaway_code() const { return goaway_code_; }
  // No new streams will be opened (GOAWAY with `code`); open ones may finish.
  void go_away(uint32_t code);

  // Streams.
  // Whether open_stream() would succeed: no GOAWAY either way, no connection error, fewer
  // open streams than the server's SETTINGS_MAX_CONCURRENT_STREAMS, stream ids left.
  bool can_open() const;
  // Opens a stream whose response goes to `callbacks`; 0 when !can_open().
  StreamId open_stream(ClientCodecCallbacks& callbacks);
  // Streams opened and not yet ended.
  size_t open_streams() const { return streams_.size() - free_.size(); }
  uint32_t peer_max_concurrent_streams() const;
  bool goaway_received() const { return goaway_received_; }
  // The last stream id of the GOAWAY received: streams above it were refused.
  uint32_t goaway_last_stream_id() const { return goaway_last_stream_id_; }
  // The HTTP/2 stream identifier of `stream` (0 until its head is submitted).
  uint32_t wire_id(StreamId stream) const;

  // Submits the request head; `end_stream`: no body follows (the request ends with it).
  // The head's method, target and Host become :method, :path and :authority (a CONNECT's
  // target its :authority, without :scheme and :path); Host, Connection, Keep-Alive,
  // Proxy-Connection, Transfer-Encoding, Upgrade, TE other than "trailers" and the fields
  // Connection names are not sent; names are lowercased; content_length becomes
  // content-length when the head has none.
  void send_head(StreamId stream, const MessageHead& head, bool end_stream);
  // http::ClientCodec. The body follows unless the head says there is none, by HTTP/1's
  // rule for requests (RFC 9112 §6.3): neither chunked nor a non-zero content_length.
  void send_head(StreamId stream, const MessageHead& head) override;
  // Request body bytes, buffered for the stream until its window lets them go. When the
  // buffer empties, on_stream_drained() says so (perhaps from inside this call).
  void send_data(StreamId stream, std::string_view data) override;
  // The request ends: with END_STREAM on its last DATA frame when `trailers` is empty,
  // else with a trailing HEADERS.
  void send_trailers(StreamId stream, const HeaderMap& trailers);
  // Request bytes buffered for `stream` that the server's window did not let go yet.
  size_t buffered(StreamId stream) const;
  // Ends one stream with RST_STREAM `code`; not reported back through on_reset().
  void reset(StreamId stream, uint32_t code);

  // Response flow control. pause() holds back the window updates of `stream` until
  // resume(): bytes already allowed by the window are still delivered. consumed()
  // acknowledges response body bytes (WINDOW_UPDATE as nghttp2 sees fit). Bytes not yet
  // acknowledged when a stream ends go back to the connection window then.
  void pause(StreamId stream) override;
  void resume(StreamId stream) override;
  void consumed(StreamId stream, size_t bytes);

  // Liveness. ping() sends a PING unless one is outstanding (returns whether it sent);
  // last_ping_rtt() is the time from the last PING's sending to its ACK.
  bool ping();
  bool ping_outstanding() const { return ping_sent_.has_value(); }
  std::optional<MonoClock::duration> last_ping_rtt() const { return last_ping_rtt_; }

  // One stream's state (defined in client_codec.cc; public for its nghttp2 callbacks).
  struct Stream;
  // The nghttp2 callbacks reach the codec through these.
  struct Hooks;

 private:
  Stream* find(StreamId handle) const;
  Stream* find_wire(int32_t wire_id) const;
  void release(Stream* s);
  // Detaches `s` from nghttp2, returns its unacknowledged bytes and recycles it.
  void forget(Stream* s);
  // Reports `s` ended without a complete response and forgets it.
  void report_reset(Stream* s, uint32_t code, bool refused, std::string_view reason);
  // Reports `s`, whose HEADERS nghttp2 could not send (Stream::send_error says why).
  void report_unsent(Stream* s);
  // Runs mem_send while the connection is below its high watermark.
  void send_pending();
  void fail(uint32_t code, std::string_view reason);
  void deliver_head(Stream& s, bool end_stream);
  void on_goaway(uint32_t last_stream_id);

  net::Connection& conn_;
  ClientOptions options_;
  std::string scheme_;
  Clock& clock_;
  nghttp2_session* session_ = nullptr;
  // Stream states live as long as the codec and are recycled: a connection's streams cost
  // one allocation each at its peak concurrency, not one per request.
  std::vector<std::unique_ptr<Stream>> streams_;
  std::vector<Stream*> free_;
  StreamId next_handle_ = 1;
  // Streams whose request buffer emptied while sending: told once the sending is over.
  std::vector<StreamId> drained_;
  std::vector<StreamId> notifying_;
  bool notifying_active_ = false;
  int depth_ = 0;  // inside mem_recv or mem_send: mem_send must wait
  CodecError error_;
  std::string error_reason_;
  uint32_t goaway_code_ = 0;
  bool failed_ = false;
  bool preface_seen_ = false;  // the server's first frame header was checked
  bool goaway_sent_ = false;
  bool goaway_received_ = false;
  uint32_t goaway_last_stream_id_ = 0;
  std::optional<MonoTime> ping_sent_;
  std::optional<MonoClock::duration> last_ping_rtt_;
};

}  // namespace sluice::http::http2
