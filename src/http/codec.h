// The codec seam: how a connection's bytes become streams of messages and back, whatever
// the protocol. A ServerCodec (client connections) turns bytes into requests, each on its
// own stream, and sends their responses; a ClientCodec (upstream connections) is its
// mirror. HTTP/1 carries one stream at a time, in order (pipelined requests wait); HTTP/2
// many at once. Backpressure is per stream: pause() and resume() stop and restart delivery,
// consumed() acknowledges bytes (HTTP/2 flow-control windows; a no-op for HTTP/1).
// Loop thread only.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "http/message.h"

namespace sluice::http {

using StreamId = uint32_t;

// A connection-level failure of the peer: the status to answer (a server), the reason.
struct CodecError {
  int status = 400;
  std::string_view reason;
};

// What a ServerCodec tells the connection that owns it.
class ServerCodecCallbacks {
 public:
  // A request head opened `stream`. Return false to read no further for now.
  virtual bool on_head(StreamId stream, MessageHead& head) = 0;
  // Request body bytes; `end`: the request is complete (no trailers follow).
  virtual void on_data(StreamId stream, std::string_view data, bool end) = 0;
  // The request's trailer section; the request is complete.
  virtual void on_trailers(StreamId stream, HeaderMap& trailers) = 0;
  // A stream the owner knows ended before its response did (the client reset it, or a
  // protocol error did): nothing more is delivered or sent on it. HTTP/2 only.
  virtual void on_reset(StreamId /*stream*/, std::string_view /*reason*/) {}

 protected:
  ~ServerCodecCallbacks() = default;
};

// How a response is to go out.
struct ResponseOptions {
  bool no_body = false;      // HEAD, 204, 304, or a switch of protocols
  bool upgrade = false;      // a 101 (or a CONNECT 2xx): the connection becomes a tunnel
  bool connect = false;      // ... to a CONNECT
  bool close_after = false;  // the connection ends with this response
};

class ServerCodec {
 public:
  virtual ~ServerCodec() = default;
  // Sends a final response head, framed by the codec. Returns whether the connection ends
  // after this response (asked for, or needed by the framing).
  virtual bool send_head(StreamId stream, MessageHead& head, const ResponseOptions& options) = 0;
  // An interim (1xx) response.
  virtual void send_interim(StreamId stream, const MessageHead& head) = 0;
  virtual void send_data(StreamId stream, std::string_view data) = 0;
  // The response ends, with `trailers` when the framing can carry them.
  virtual void send_trailers(StreamId stream, const HeaderMap& trailers) = 0;
  virtual void pause(StreamId stream) = 0;
  virtual void resume(StreamId stream) = 0;
  virtual void consumed(StreamId stream, size_t bytes) = 0;
};

// The client side mirrors the server side.
// How a stream ended before its response did, as a ClientCodec reports it.
struct StreamReset {
  // The HTTP/2 error code (RFC 9113 §7) the stream ended with: received in RST_STREAM, sent
  // by the codec, or implied by a GOAWAY (REFUSED_STREAM).
  uint32_t code = 0;
  // The peer did not process the request (REFUSED_STREAM, a stream above a GOAWAY's last
  // stream id, a head that had not left when a GOAWAY came or the connection failed): it
  // may be retried, even if not idempotent (RFC 9113 §8.7).
  bool refused = false;
  std::string_view reason;
};

// What a ClientCodec tells the exchange that owns it.
class ClientCodecCallbacks {
 public:
  // A response head (interim 1xx ones too). Return false to read no further.
  virtual bool on_head(StreamId stream, MessageHead& head) = 0;
  virtual void on_data(StreamId stream, std::string_view data, bool end) = 0;
  virtual void on_trailers(StreamId stream, HeaderMap& trailers) = 0;
  // The stream ended without a complete response (the peer reset it, a GOAWAY refused it,
  // the connection failed): nothing more is delivered or sent on it. HTTP/2 only.
  virtual void on_reset(StreamId /*stream*/, const StreamReset& /*reset*/) {}
  // Every request byte buffered for `stream` went out (into frames the peer's window
  // allowed): a request body held back for the stream's sake may flow again. HTTP/2 only.
  virtual void on_stream_drained(StreamId /*stream*/) {}

 protected:
  ~ClientCodecCallbacks() = default;
};

class ClientCodec {
 public:
  virtual ~ClientCodec() = default;
  virtual void send_head(StreamId stream, const MessageHead& head) = 0;
  virtual void send_data(StreamId stream, std::string_view data) = 0;
  virtual void pause(StreamId stream) = 0;
  virtual void resume(StreamId stream) = 0;
};

}  // namespace sluice::http
