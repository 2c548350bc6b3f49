#include "http/http2/client_codec.h"

#include <nghttp2/nghttp2.h>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <utility>

#include "base/buffer.h"
#include "base/check.h"
#include "http/http2/request_fields.h"
#include "http/http2/session_setup.h"

namespace sluice::http::http2 {

struct ClientCodec::Stream {
  StreamId handle = 0;  // 0: free
  int32_t wire = 0;     // the HTTP/2 stream id, once the head is submitted
  ClientCodecCallbacks* callbacks = nullptr;
  // The request.
  Buffer out;
  HeaderMap request_trailers;
  bool head_sent = false;  // its HEADERS frame left (the server may have seen it)
  bool body = false;       // a data provider reads `out`
  bool deferred = false;   // the data provider waits for send_data() or send_trailers()
  bool ended = false;      // the owner ended the request
  int send_error = 0;      // why nghttp2 could not send the HEADERS (an nghttp2_error)
  // The response, as its header sections arrive.
  MessageHead head;
  HeaderMap trailers;
  size_t header_bytes = 0;   // of the section being received, RFC 9113 §6.5.2
  bool too_large = false;    // that section passed max_header_list_size
  bool in_trailers = false;  // the section being received is the trailer section
  bool final_head = false;   // a final (non-1xx) head was delivered
  bool complete = false;     // the response ended (END_STREAM seen)
  bool paused = false;
  size_t unacked = 0;  // response bytes delivered and not yet passed to nghttp2 as consumed
  size_t held = 0;     // of those, consumed while paused: passed on resume()

  void clear() {
    handle = 0;
    wire = 0;
    callbacks = nullptr;
    out.clear();
    out.release();
    request_trailers.clear();
    head_sent = body = deferred = ended = false;
    head = MessageHead{};
    trailers.clear();
    header_bytes = 0;
    too_large = in_trailers = final_head = complete = paused = false;
    unacked = held = 0;
    send_error = 0;
  }
};

// The nghttp2 callbacks: each finds the codec in user_data and the stream by its id.
struct ClientCodec::Hooks {
  static ClientCodec& codec(void* user_data) { return *static_cast<ClientCodec*>(user_data); }

  static int on_begin_headers(nghttp2_session*, const nghttp2_frame* frame, void* user_data) {
    if (frame->hd.type != NGHTTP2_HEADERS) return 0;
    Stream* s = codec(user_data).find_wire(frame->hd.stream_id);
    if (!s) return 0;
    // After a final head only a trailer section may come; before it, each section is a
    // head (1xx ones, then the final one).
    s->in_trailers = s->final_head;
    if (!s->final_head) s->head = MessageHead{};
    s->header_bytes = 0;
    s->too_large = false;
    return 0;
  }

  static int on_header(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name,
                       size_t name_len, const uint8_t* value, size_t value_len, uint8_t,
                       void* user_data) {
    ClientCodec& c = codec(user_data);
    Stream* s = c.find_wire(frame->hd.stream_id);
    if (!s || s->too_large) return 0;
    s->header_bytes += name_len + value_len + 32;
    if (s->header_bytes > c.options_.max_header_list_size) {
      // Decoding goes on (HPACK state must stay in step); the fields are dropped.
      s->too_large = true;
      return 0;
    }
    std::string_view n(reinterpret_cast<const char*>(name), name_len);
    std::string_view v(reinterpret_cast<const char*>(value), value_len);
    if (s->in_trailers) {
      s->trailers.add(std::string(n), std::string(v));
    } else if (!n.empty() && n[0] == ':') {
      // nghttp2 has checked :status (three digits, RFC 9113 §8.3.2) by the section's end.
      if (n == ":status") {
        auto r = std::from_chars(v.data(), v.data() + v.size(), s->head.status);
        (void)r;
      }
    } else {
      s->head.headers.add(std::string(n), std::string(v));
    }
    return 0;
  }

  static int on_frame_recv(nghttp2_session*, const nghttp2_frame* frame, void* user_data) {
    ClientCodec& c = codec(user_data);
    bool end = (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
    switch (frame->hd.type) {
      case NGHTTP2_SETTINGS:
        if (!(frame->hd.flags & NGHTTP2_FLAG_ACK)) c.settings_received_ = true;
        return 0;
      case NGHTTP2_HEADERS: {
        Stream* s = c.find_wire(frame->hd.stream_id);
        if (!s) return 0;
        if (s->too_large) {
          nghttp2_submit_rst_stream(c.session_, NGHTTP2_FLAG_NONE, s->wire, NGHTTP2_CANCEL);
          c.report_reset(s, NGHTTP2_CANCEL, false,
                         "response header section larger than max_header_list_size");
          return 0;
        }
        if (!s->in_trailers) {
          c.deliver_head(*s, end);
          return 0;
        }
        // nghttp2 lets a trailer section through only with END_STREAM.
        s->complete = true;
        s->callbacks->on_trailers(s->handle, s->trailers);
        return 0;
      }
      case NGHTTP2_DATA:
        if (Stream* s = c.find_wire(frame->hd.stream_id); s && end) {
          s->complete = true;
          s->callbacks->on_data(s->handle, {}, true);
        }
        return 0;
      case NGHTTP2_GOAWAY:
        c.on_goaway(static_cast<uint32_t>(frame->goaway.last_stream_id));
        return 0;
      case NGHTTP2_PING:
        if ((frame->hd.flags & NGHTTP2_FLAG_ACK) != 0 && c.ping_sent_) {
          c.last_ping_rtt_ = c.clock_.now() - *c.ping_sent_;
          c.ping_sent_.reset();
        }
        return 0;
      default:
        return 0;
    }
  }

  static int on_data_chunk(nghttp2_session* session, uint8_t, int32_t stream_id,
                           const uint8_t* data, size_t len, void* user_data) {
    Stream* s = codec(user_data).find_wire(stream_id);
    if (!s) {
      // Nobody will consume these (the owner reset the stream): give the window back now.
      nghttp2_session_consume(session, stream_id, len);
      return 0;
    }
    // The connection window reopens at once: a stream whose client reads slowly holds back
    // its own window only, never the other streams'.
    nghttp2_session_consume_connection(session, len);
    s->unacked += len;
    s->callbacks->on_data(s->handle, {reinterpret_cast<const char*>(data), len}, false);
    return 0;
  }

  static int on_stream_close(nghttp2_session*, int32_t stream_id, uint32_t error_code,
                             void* user_data) {
    ClientCodec& c = codec(user_data);
    Stream* s = c.find_wire(stream_id);
    if (!s) return 0;
    if (s->complete) {
      c.forget(s);
      return 0;
    }
    if (s->send_error != 0) {
      c.report_unsent(s);
      return 0;
    }
    // A stream above a GOAWAY's last stream id is closed by nghttp2 with REFUSED_STREAM.
    c.report_reset(s, error_code, error_code == NGHTTP2_REFUSED_STREAM || !s->head_sent,
                   nghttp2_http2_strerror(error_code));
    return 0;
  }

  static int on_frame_send(nghttp2_session*, const nghttp2_frame* frame, void* user_data) {
    ClientCodec& c = codec(user_data);
    switch (frame->hd.type) {
      case NGHTTP2_HEADERS:
        if (Stream* s = c.find_wire(frame->hd.stream_id)) s->head_sent = true;
        return 0;
      case NGHTTP2_GOAWAY:
        c.goaway_sent_ = true;
        // nghttp2 found a connection error itself (RFC 9113 §5.4.1) and said so.
        if (frame->goaway.error_code != NGHTTP2_NO_ERROR && !c.failed_) {
          c.failed_ = true;
          c.goaway_code_ = frame->goaway.error_code;
          c.error_reason_ = nghttp2_http2_strerror(frame->goaway.error_code);
          c.error_ = CodecError{502, c.error_reason_};
        }
        return 0;
      case NGHTTP2_PING:
        // The RTT runs from when the PING left, not from when it queued behind DATA.
        if ((frame->hd.flags & NGHTTP2_FLAG_ACK) == 0 && c.ping_sent_) {
          c.ping_sent_ = c.clock_.now();
        }
        return 0;
      default:
        return 0;
    }
  }

  // A request HEADERS that could not go: a GOAWAY arrived first or the stream ids ran out
  // (the request may go elsewhere), or the header block is too large to send (it would
  // fail anywhere). nghttp2 closes the stream next if it had opened it; if not, no
  // on_stream_close follows and the stream is reported here.
  static int on_frame_not_send(nghttp2_session* session, const nghttp2_frame* frame, int lib_error,
                               void* user_data) {
    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
    ClientCodec& c = codec(user_data);
    Stream* s = c.find_wire(frame->hd.stream_id);
    if (!s) return 0;
    s->send_error = lib_error;
    if (!nghttp2_session_find_stream(session, frame->hd.stream_id)) c.report_unsent(s);
    return 0;
  }

  static ssize_t read_body(nghttp2_session* session, int32_t stream_id, uint8_t* buf, size_t length,
                           uint32_t* flags, nghttp2_data_source* source, void* user_data) {
    auto* s = static_cast<Stream*>(source->ptr);
    // The stream state may have been recycled since (the owner reset the stream).
    if (!s || s->handle == 0 || s->wire != stream_id) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    bool had_bytes = !s->out.empty();
    ssize_t rv = read_buffered_body(
        session, stream_id, s->out, s->ended, !s->request_trailers.empty(),
        [s]() -> const std::vector<nghttp2_nv>& { return trailer_nv(s->request_trailers).nv; },
        s->deferred, buf, length, flags);
    // The owner hears of it once this round of sending is over.
    if (had_bytes && s->out.empty() && !s->ended) codec(user_data).drained_.push_back(s->handle);
    return rv;
  }
};

namespace {

// Built once; nghttp2 copies it into each session.
const nghttp2_session_callbacks* client_callbacks() {
  static const CallbacksPtr cb = [] {
    CallbacksPtr owned = new_callbacks();
    nghttp2_session_callbacks* p = owned.get();
    using H = ClientCodec::Hooks;
    nghttp2_session_callbacks_set_on_begin_headers_callback(p, H::on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(p, H::on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(p, H::on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(p, H::on_data_chunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(p, H::on_stream_close);
    nghttp2_session_callbacks_set_on_frame_send_callback(p, H::on_frame_send);
    nghttp2_session_callbacks_set_on_frame_not_send_callback(p, H::on_frame_not_send);
    return owned;
  }();
  return cb.get();
}

}  // namespace

ConfigIssues ClientOptions::validate() const {
  ConfigChecker c;
  check_limits(c, initial_stream_window, initial_connection_window, max_header_list_size,
               max_frame_size);
  return c.take();
}

ClientCodec::ClientCodec(net::Connection& conn, const ClientOptions& options,
                         std::string_view scheme, Clock& clock)
    : conn_(conn), options_(options), scheme_(scheme), clock_(clock) {
  SLUICE_CHECK(nghttp2_session_client_new2(&session_, client_callbacks(), this, session_option()) ==
               0);
}

ClientCodec::~ClientCodec() {
  nghttp2_session_del(session_);
}

void ClientCodec::start() {
  const nghttp2_settings_entry iv[] = {
      {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, options_.initial_stream_window},
      {NGHTTP2_SETTINGS_MAX_FRAME_SIZE, options_.max_frame_size},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, options_.max_header_list_size},
      {NGHTTP2_SETTINGS_NO_RFC7540_PRIORITIES, 1},
  };
  // nghttp2 puts the client connection preface in front of the first SETTINGS.
  if (nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, iv, std::size(iv)) != 0) {
    return fail(NGHTTP2_INTERNAL_ERROR, "cannot queue SETTINGS");
  }
  if (options_.initial_connection_window > NGHTTP2_INITIAL_CONNECTION_WINDOW_SIZE) {
    nghttp2_session_set_local_window_size(session_, NGHTTP2_FLAG_NONE, 0,
                                          static_cast<int32_t>(options_.initial_connection_window));
  }
  send_pending();
}

ClientCodec::Outcome ClientCodec::dispatch() {
  Buffer& in = conn_.input();
  if (!preface_seen_ && in.size() >= 4 && !failed_) {
    // RFC 9113 §3.4: the server's preface is a SETTINGS frame (its type is byte 3).
    preface_seen_ = true;
    if (in.view().starts_with("HTTP/")) {
      fail(NGHTTP2_PROTOCOL_ERROR, "the upstream answered in HTTP/1, not HTTP/2");
    } else if (static_cast<uint8_t>(in.data()[3]) != NGHTTP2_SETTINGS) {
      fail(NGHTTP2_PROTOCOL_ERROR, "the upstream's preface is not a SETTINGS frame");
    }
  }
  if (!in.empty() && !failed_) {
    ++depth_;
    ssize_t rv =
        nghttp2_session_mem_recv(session_, reinterpret_cast<const uint8_t*>(in.data()), in.size());
    --depth_;
    // A callback may have closed the connection (and emptied its input): consume all.
    in.consume(in.size());
    if (rv == NGHTTP2_ERR_FLOODED) {
      fail(NGHTTP2_ENHANCE_YOUR_CALM, "flood of frames that need an answer");
    } else if (rv < 0) {
      fail(NGHTTP2_PROTOCOL_ERROR, nghttp2_strerror(static_cast<int>(rv)));
    }
  } else if (!in.empty()) {
    in.consume(in.size());
  }
  send_pending();
  if (failed_) {
    fail_streams(error_reason_);
    return Outcome::kError;
  }
  if (!nghttp2_session_want_read(session_) && !nghttp2_session_want_write(session_)) {
    return Outcome::kFinished;
  }
  return Outcome::kContinue;
}

void ClientCodec::fail(uint32_t code, std::string_view reason) {
  if (failed_) return;
  failed_ = true;
  goaway_code_ = code;
  error_reason_ = std::string(reason);
  error_ = CodecError{502, error_reason_};
  nghttp2_session_terminate_session(session_, code);
}

void ClientCodec::fail_streams(std::string_view reason) {
  if (!failed_) {
    failed_ = true;
    error_reason_ = std::string(reason);
    error_ = CodecError{502, error_reason_};
  }
  // The owners' on_reset() may open, reset or end other streams: walk a snapshot.
  std::vector<StreamId> open;
  for (const auto& s : streams_) {
    if (s->handle != 0) open.push_back(s->handle);
  }
  for (StreamId h : open) {
    Stream* s = find(h);
    if (!s) continue;
    // A complete response was the owner's last word on the stream, even with the request
    // still going.
    if (s->complete) {
      forget(s);
    } else {
      report_reset(s, NGHTTP2_CANCEL, !s->head_sent, reason);
    }
  }
}

void ClientCodec::send_pending() {
  if (depth_ > 0) return;  // nghttp2 may not send from inside its own calls
  ++depth_;
  while (!conn_.above_high_watermark()) {
    const uint8_t* data = nullptr;
    ssize_t n = nghttp2_session_mem_send(session_, &data);
    if (n < 0) {
      fail(NGHTTP2_INTERNAL_ERROR, nghttp2_strerror(static_cast<int>(n)));
      break;
    }
    if (n == 0) break;
    conn_.write({reinterpret_cast<const char*>(data), static_cast<size_t>(n)});
  }
  --depth_;
  // The owners may send more from on_stream_drained(), draining streams again: the outer
  // call tells of those too, taking the list each round (both vectors keep their storage).
  if (notifying_active_) return;
  while (!drained_.empty()) {
    notifying_.swap(drained_);
    notifying_active_ = true;
    for (StreamId h : notifying_) {
      if (Stream* s = find(h); s && !s->ended && s->out.empty()) {
        s->callbacks->on_stream_drained(h);
      }
    }
    notifying_active_ = false;
    notifying_.clear();
  }
}

ClientCodec::Stream* ClientCodec::find(StreamId handle) const {
  if (handle == 0) return nullptr;
  // Streams are few (the server's concurrency limit); a scan beats a map's allocations.
  for (const auto& s : streams_) {
    if (s->handle == handle) return s.get();
  }
  return nullptr;
}

ClientCodec::Stream* ClientCodec::find_wire(int32_t wire_id) const {
  if (wire_id <= 0) return nullptr;
  auto* s = static_cast<Stream*>(nghttp2_session_get_stream_user_data(session_, wire_id));
  if (s) return s->handle != 0 && s->wire == wire_id ? s : nullptr;
  // A request still queued in nghttp2 has no stream (nor user data) yet.
  for (const auto& t : streams_) {
    if (t->handle != 0 && t->wire == wire_id) return t.get();
  }
  return nullptr;
}

void ClientCodec::forget(Stream* s) {
  if (s->wire > 0) {
    // Fails harmlessly when nghttp2 has closed (or not yet opened) the stream. (The
    // connection window took its bytes back as they arrived.)
    nghttp2_session_set_stream_user_data(session_, s->wire, nullptr);
  }
  s->clear();
  free_.push_back(s);
}

void ClientCodec::report_reset(Stream* s, uint32_t code, bool refused, std::string_view reason) {
  StreamId handle = s->handle;
  ClientCodecCallbacks* callbacks = s->callbacks;
  forget(s);
  callbacks->on_reset(handle, StreamReset{code, refused, reason});
}

void ClientCodec::report_unsent(Stream* s) {
  switch (s->send_error) {
    case NGHTTP2_ERR_START_STREAM_NOT_ALLOWED:  // GOAWAY received or sent
    case NGHTTP2_ERR_STREAM_ID_NOT_AVAILABLE:
      return report_reset(s, NGHTTP2_REFUSED_STREAM, true, nghttp2_strerror(s->send_error));
    case NGHTTP2_ERR_FRAME_SIZE_ERROR:
      return report_reset(s, NGHTTP2_INTERNAL_ERROR, false, "request header section too large");
    default:
      return report_reset(s, NGHTTP2_INTERNAL_ERROR, false, nghttp2_strerror(s->send_error));
  }
}

void ClientCodec::on_goaway(uint32_t last_stream_id) {
  goaway_received_ = true;
  goaway_last_stream_id_ = last_stream_id;
  // Streams whose head was not submitted yet never will be. Those above last_stream_id
  // are closed by nghttp2 with REFUSED_STREAM (on_stream_close or on_frame_not_send).
  std::vector<StreamId> unsent;
  for (const auto& s : streams_) {
    if (s->handle != 0 && s->wire == 0) unsent.push_back(s->handle);
  }
  for (StreamId h : unsent) {
    if (Stream* s = find(h)) report_reset(s, NGHTTP2_REFUSED_STREAM, true, "GOAWAY received");
  }
}

bool ClientCodec::can_open() const {
  if (failed_ || goaway_received_ || goaway_sent_) return false;
  if (nghttp2_session_check_request_allowed(session_) == 0) return false;
  // Every open stream may still take an id: keep them within 2^31-1 (RFC 9113 §5.1.1).
  if (uint64_t{nghttp2_session_get_next_stream_id(session_)} + 2 * uint64_t{open_streams()} >
      0x7fffffff) {
    return false;
  }
  return open_streams() < peer_max_concurrent_streams();
}

uint32_t ClientCodec::peer_max_concurrent_streams() const {
  // Until the server's SETTINGS arrive nghttp2 assumes 100 (its safe initial value).
  return nghttp2_session_get_remote_settings(session_, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
}

StreamId ClientCodec::open_stream(ClientCodecCallbacks& callbacks) {
  if (!can_open()) return 0;
  Stream* s;
  if (!free_.empty()) {
    s = free_.back();
    free_.pop_back();
  } else {
    streams_.push_back(std::make_unique<Stream>());
    s = streams_.back().get();
  }
  s->handle = next_handle_++;
  if (next_handle_ == 0) next_handle_ = 1;
  s->callbacks = &callbacks;
  return s->handle;
}

uint32_t ClientCodec::wire_id(StreamId stream) const {
  Stream* s = find(stream);
  return s ? static_cast<uint32_t>(s->wire) : 0;
}

void ClientCodec::send_head(StreamId stream, const MessageHead& head) {
  send_head(stream, head, !head.chunked && head.content_length.value_or(0) == 0);
}

void ClientCodec::send_head(StreamId stream, const MessageHead& head, bool end_stream) {
  Stream* s = find(stream);
  if (!s || s->wire != 0) return;
  const NvList& nv = request_nv(head, scheme_);
  nghttp2_data_provider provider;
  provider.source.ptr = s;
  provider.read_callback = Hooks::read_body;
  s->body = !end_stream;
  s->ended = end_stream;
  int32_t rv = nghttp2_submit_request(session_, nullptr, nv.nv.data(), nv.nv.size(),
                                      end_stream ? nullptr : &provider, s);
  if (rv < 0) {
    report_reset(s, NGHTTP2_REFUSED_STREAM, true, nghttp2_strerror(rv));
    return;
  }
  s->wire = rv;
  send_pending();
}

void ClientCodec::send_data(StreamId stream, std::string_view data) {
  Stream* s = find(stream);
  if (!s || !s->body || s->ended || data.empty()) return;
  s->out.append(data);
  if (s->deferred) {
    s->deferred = false;
    nghttp2_session_resume_data(session_, s->wire);
  }
  send_pending();
}

void ClientCodec::send_trailers(StreamId stream, const HeaderMap& trailers) {
  Stream* s = find(stream);
  if (!s || !s->body || s->ended) return;
  s->ended = true;
  s->request_trailers = trailers;
  if (s->deferred) {
    s->deferred = false;
    nghttp2_session_resume_data(session_, s->wire);
  }
  send_pending();
}

size_t ClientCodec::buffered(StreamId stream) const {
  Stream* s = find(stream);
  return s ? s->out.size() : 0;
}

void ClientCodec::reset(StreamId stream, uint32_t code) {
  Stream* s = find(stream);
  if (!s) return;
  // A request still queued in nghttp2 is cancelled there; its HEADERS never leaves.
  if (s->wire > 0) nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, s->wire, code);
  forget(s);
  send_pending();
}

void ClientCodec::pause(StreamId stream) {
  if (Stream* s = find(stream)) s->paused = true;
}

void ClientCodec::resume(StreamId stream) {
  Stream* s = find(stream);
  if (!s || !s->paused) return;
  s->paused = false;
  size_t held = std::exchange(s->held, 0);
  if (held > 0) {
    s->unacked -= held;
    nghttp2_session_consume_stream(session_, s->wire, held);
    send_pending();
  }
}

void ClientCodec::consumed(StreamId stream, size_t bytes) {
  Stream* s = find(stream);
  if (!s) return;  // an ended stream gave its bytes back when it ended
  bytes = std::min(bytes, s->unacked - s->held);
  if (bytes == 0) return;
  if (s->paused) {
    s->held += bytes;
    return;
  }
  s->unacked -= bytes;
  nghttp2_session_consume_stream(session_, s->wire, bytes);
  send_pending();
}

void ClientCodec::deliver_head(Stream& s, bool end_stream) {
  StreamId handle = s.handle;
  MessageHead& head = s.head;
  head.version_minor = 1;
  head.keep_alive = true;
  if (head.status >= 100 && head.status < 200) {
    // An interim head; the final one follows on the same stream.
    s.callbacks->on_head(handle, head);
    return;
  }
  s.final_head = true;
  if (const std::string* cl = head.headers.get("content-length")) {
    uint64_t v = 0;
    auto [p, ec] = std::from_chars(cl->data(), cl->data() + cl->size(), v);
    if (ec == std::errc() && p == cl->data() + cl->size()) head.content_length = v;
  }
  // A body without a length ends with the stream: to an HTTP/1 client it is chunked.
  head.chunked = !end_stream && !head.content_length;
  if (end_stream) s.complete = true;
  ClientCodecCallbacks* callbacks = s.callbacks;
  if (!callbacks->on_head(handle, head)) pause(handle);
  if (end_stream && find(handle)) callbacks->on_data(handle, {}, true);
}

void ClientCodec::go_away(uint32_t code) {
  goaway_sent_ = true;
  // A client's GOAWAY names the last server-initiated stream it processed: none (no push).
  nghttp2_submit_goaway(session_, NGHTTP2_FLAG_NONE, 0, code, nullptr, 0);
  send_pending();
}

bool ClientCodec::ping() {
  if (ping_sent_ || failed_) return false;
  static constexpr uint8_t kOpaque[8] = {'s', 'l', 'u', 'i', 'c', 'e', 0, 0};
  if (nghttp2_submit_ping(session_, NGHTTP2_FLAG_NONE, kOpaque) != 0) return false;
  ping_sent_ = clock_.now();
  send_pending();
  return true;
}

}  // namespace sluice::http::http2
