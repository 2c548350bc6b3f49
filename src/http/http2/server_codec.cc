#include "http/http2/server_codec.h"

#include <nghttp2/nghttp2.h>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <utility>

#include "base/buffer.h"
#include "base/check.h"
#include "http/http2/session_setup.h"

namespace sluice::http::http2 {

struct ServerCodec::Stream {
  StreamId id = 0;  // 0: free
  // The request, as its header section arrives.
  MessageHead head;
  std::string authority;
  HeaderMap trailers;
  size_t header_bytes = 0;      // of the section being received, RFC 9113 §6.5.2
  bool too_large = false;       // that section passed max_header_list_size
  bool in_trailers = false;     // the section being received is the trailer section
  bool head_delivered = false;  // the owner knows this stream
  bool paused = false;
  size_t held = 0;  // consumed while paused: acknowledged on resume()
  // The response.
  Buffer out;
  HeaderMap response_trailers;
  bool responding = false;     // a head with a body was submitted
  bool deferred = false;       // the data provider waits for send_data() or send_trailers()
  bool ended = false;          // the owner ended the response (or reset the stream)
  bool stop_request = false;   // RST_STREAM NO_ERROR once the response has gone out
  bool response_sent = false;  // its END_STREAM went out
  bool request_ended = false;  // the client's END_STREAM arrived
  bool owner_reset = false;    // the RST_STREAM being sent is sluice's own decision

  void clear() {
    id = 0;
    head = MessageHead{};
    authority.clear();
    trailers.clear();
    header_bytes = 0;
    too_large = in_trailers = head_delivered = paused = false;
    held = 0;
    out.clear();
    out.release();
    response_trailers.clear();
    responding = deferred = ended = stop_request = false;
    response_sent = request_ended = owner_reset = false;
  }
};

namespace {

// Response heads and trailers on their way into nghttp2 (which copies them): one set of
// buffers per worker thread.
struct NvScratch {
  std::vector<nghttp2_nv> nv;
  std::string names;  // lowercased field names
  char status[4] = {};
};

NvScratch& nv_scratch() {
  thread_local NvScratch s;
  return s;
}

nghttp2_nv make_nv(const char* name, size_t name_len, const char* value, size_t value_len) {
  return nghttp2_nv{reinterpret_cast<uint8_t*>(const_cast<char*>(name)),
                    reinterpret_cast<uint8_t*>(const_cast<char*>(value)), name_len, value_len,
                    NGHTTP2_NV_FLAG_NONE};
}

// RFC 9113 §8.2.2: connection-specific fields have no place in HTTP/2.
bool connection_specific(std::string_view name) {
  return iequals(name, "connection") || iequals(name, "keep-alive") ||
         iequals(name, "proxy-connection") || iequals(name, "transfer-encoding") ||
         iequals(name, "upgrade");
}

// Fills the scratch with `fields` (names lowercased, RFC 9113 §8.2), after ":status" when
// `status` is set.
NvScratch& build_nv(const HeaderMap& fields, int status) {
  NvScratch& s = nv_scratch();
  s.nv.clear();
  s.names.clear();
  size_t total = 0;
  for (const auto& h : fields) total += h.name.size();
  // Reserved up front: the nv entries point into `names`.
  s.names.reserve(total);
  if (status > 0) {
    int v = std::clamp(status, 100, 999);
    s.status[0] = static_cast<char>('0' + v / 100);
    s.status[1] = static_cast<char>('0' + v / 10 % 10);
    s.status[2] = static_cast<char>('0' + v % 10);
    s.nv.push_back(make_nv(":status", 7, s.status, 3));
  }
  for (const auto& h : fields) {
    if (h.name.empty() || h.name[0] == ':' || connection_specific(h.name)) continue;
    size_t at = s.names.size();
    for (char c : h.name) {
      s.names.push_back(c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c);
    }
    s.nv.push_back(make_nv(s.names.data() + at, h.name.size(), h.value.data(), h.value.size()));
  }
  return s;
}

// RFC 9113 §8.2.3: cookie crumbs become one field for HTTP/1.
void join_cookies(HeaderMap& headers) {
  if (headers.count("cookie") < 2) return;
  std::string joined;
  for (const auto& h : headers) {
    if (!iequals(h.name, "cookie")) continue;
    if (!joined.empty()) joined += "; ";
    joined += h.value;
  }
  headers.set("cookie", std::move(joined));
}

}  // namespace

// The nghttp2 callbacks: each finds the codec in user_data and the stream by its id.
struct ServerCodec::Hooks {
  static ServerCodec& codec(void* user_data) { return *static_cast<ServerCodec*>(user_data); }

  static int on_begin_headers(nghttp2_session*, const nghttp2_frame* frame, void* user_data) {
    if (frame->hd.type != NGHTTP2_HEADERS) return 0;
    ServerCodec& c = codec(user_data);
    if (frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
      c.acquire(static_cast<StreamId>(frame->hd.stream_id));
    } else if (Stream* s = c.find(static_cast<StreamId>(frame->hd.stream_id))) {
      s->in_trailers = true;
      s->header_bytes = 0;
    }
    return 0;
  }

  static int on_header(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name,
                       size_t name_len, const uint8_t* value, size_t value_len, uint8_t,
                       void* user_data) {
    ServerCodec& c = codec(user_data);
    Stream* s = c.find(static_cast<StreamId>(frame->hd.stream_id));
    if (!s || s->too_large) return 0;
    s->header_bytes += name_len + value_len + 32;
    if (s->header_bytes > c.options_.max_header_list_size) {
      // Decoding goes on (HPACK state must stay in step); the fields are dropped.
      s->too_large = true;
      return 0;
    }
    std::string_view n(reinterpret_cast<const char*>(name), name_len);
    std::string v(reinterpret_cast<const char*>(value), value_len);
    if (s->in_trailers) {
      s->trailers.add(std::string(n), std::move(v));
    } else if (!n.empty() && n[0] == ':') {
      // nghttp2 has checked the pseudo-headers (RFC 9113 §8.3.1) by the end of the section.
      if (n == ":method") {
        s->head.method = std::move(v);
      } else if (n == ":path") {
        s->head.target = std::move(v);
      } else if (n == ":authority") {
        s->authority = std::move(v);
      }
    } else {
      s->head.headers.add(std::string(n), std::move(v));
    }
    return 0;
  }

  static int on_frame_recv(nghttp2_session* session, const nghttp2_frame* frame, void* user_data) {
    ServerCodec& c = codec(user_data);
    bool end = (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
    auto id = static_cast<StreamId>(frame->hd.stream_id);
    FrameCounts& n = c.counts_;
    if (end && (frame->hd.type == NGHTTP2_HEADERS || frame->hd.type == NGHTTP2_DATA)) {
      if (Stream* s = c.find(id)) s->request_ended = true;
    }
    c.note_ping(frame);
    switch (frame->hd.type) {
      case NGHTTP2_DATA:
        n.empty_data += frame->hd.length == 0 && !end;
        break;
      case NGHTTP2_RST_STREAM:
        ++n.resets_received;
        break;
      case NGHTTP2_PING:
        if (frame->hd.flags & NGHTTP2_FLAG_ACK) {
          ++n.ping_acks;
        } else {
          ++n.ping;
        }
        break;
      case NGHTTP2_SETTINGS:
        n.settings += (frame->hd.flags & NGHTTP2_FLAG_ACK) == 0;
        break;
      default:
        break;
    }
    switch (frame->hd.type) {
      case NGHTTP2_HEADERS: {
        Stream* s = c.find(id);
        if (!s) return 0;
        if (!s->in_trailers) {
          c.deliver_head(*s, end);
          return 0;
        }
        if (s->too_large) {
          // reset() marks the stream ended, so its close will not tell the owner: tell now.
          bool tell = s->head_delivered && !s->ended;
          s->ended = true;
          nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, frame->hd.stream_id,
                                    NGHTTP2_ENHANCE_YOUR_CALM);
          if (tell) c.callbacks_.on_reset(id, "trailer section too large");
          return 0;
        }
        if (s->head_delivered) c.callbacks_.on_trailers(id, s->trailers);
        return 0;
      }
      case NGHTTP2_DATA:
        if (Stream* s = c.find(id); s && end && s->head_delivered) {
          c.callbacks_.on_data(id, {}, true);
        }
        return 0;
      case NGHTTP2_GOAWAY:
        return 0;
      default:
        return 0;
    }
  }

  static int on_data_chunk(nghttp2_session* session, uint8_t, int32_t stream_id,
                           const uint8_t* data, size_t len, void* user_data) {
    ServerCodec& c = codec(user_data);
    auto id = static_cast<StreamId>(stream_id);
    Stream* s = c.find(id);
    if (!s || !s->head_delivered) {
      // Nobody will consume these: give the window back now.
      nghttp2_session_consume(session, stream_id, len);
      return 0;
    }
    c.callbacks_.on_data(id, {reinterpret_cast<const char*>(data), len}, false);
    return 0;
  }

  static int on_stream_close(nghttp2_session* session, int32_t stream_id, uint32_t error_code,
                             void* user_data) {
    ServerCodec& c = codec(user_data);
    auto id = static_cast<StreamId>(stream_id);
    Stream* s = c.find(id);
    if (!s) return 0;
    if (s->held > 0) nghttp2_session_consume_connection(session, s->held);
    c.recently_closed_[c.closed_next_++ % kRecentlyClosed] = stream_id;
    bool tell = s->head_delivered && !s->ended;
    nghttp2_session_set_stream_user_data(session, stream_id, nullptr);
    c.release(s);
    if (tell) c.callbacks_.on_reset(id, nghttp2_http2_strerror(error_code));
    return 0;
  }

  static int on_begin_frame(nghttp2_session* session, const nghttp2_frame_hd* hd, void* user_data) {
    ServerCodec& c = codec(user_data);
    if (hd->type == NGHTTP2_PRIORITY) {
      ++c.counts_.priority;
      if (c.priority_allowance_ > 0) {
        --c.priority_allowance_;
        ++c.counts_.free_priority;
      }
    } else if (hd->type > NGHTTP2_CONTINUATION) {
      ++c.counts_.unknown;
    } else if (hd->type == NGHTTP2_HEADERS && (hd->stream_id & 1) == 1) {
      // RFC 9113 §5.1.1: a new stream's id must exceed every id the client used before.
      // nghttp2 drops such a HEADERS silently, which would leave the request unanswered.
      // Frames the client sent before it saw a stream end (sluice reset or finished it) are
      // ignored (RFC 9113 §5.1): only ids that were never opened are an error.
      if (hd->stream_id < c.highest_stream_ &&
          nghttp2_session_find_stream(session, hd->stream_id) == nullptr &&
          std::find(std::begin(c.recently_closed_), std::end(c.recently_closed_), hd->stream_id) ==
              std::end(c.recently_closed_)) {
        c.fail(NGHTTP2_PROTOCOL_ERROR, "HEADERS on a stream id lower than one already used");
        return NGHTTP2_ERR_CALLBACK_FAILURE;
      }
      if (hd->stream_id > c.highest_stream_) c.priority_allowance_ += kFreePriorityPerStream;
      c.highest_stream_ = std::max(c.highest_stream_, hd->stream_id);
    }
    return 0;
  }

  static int on_invalid_frame(nghttp2_session*, const nghttp2_frame*, int, void* user_data) {
    ++codec(user_data).counts_.invalid;
    return 0;
  }

  static int on_frame_send(nghttp2_session* session, const nghttp2_frame* frame, void* user_data) {
    ServerCodec& c = codec(user_data);
    if ((frame->hd.type == NGHTTP2_DATA || frame->hd.type == NGHTTP2_HEADERS) &&
        (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
      // RFC 9113 §8.1: the response is complete; the rest of the request is not wanted.
      Stream* s = c.find(static_cast<StreamId>(frame->hd.stream_id));
      if (s) s->response_sent = true;
      if (s && s->stop_request && !s->request_ended) {
        s->stop_request = false;
        s->owner_reset = true;
        nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, frame->hd.stream_id,
                                  NGHTTP2_NO_ERROR);
      }
    }
    if (frame->hd.type == NGHTTP2_RST_STREAM) {
      // Counted when it goes out, so that the owner's share never exceeds what was sent.
      Stream* s = c.find(static_cast<StreamId>(frame->hd.stream_id));
      if (s && s->owner_reset) ++c.counts_.owner_resets;
    }
    if (frame->hd.type == NGHTTP2_RST_STREAM) ++c.counts_.resets_sent;
    if (frame->hd.type == NGHTTP2_DATA) c.counts_.data_bytes_sent += frame->hd.length;
    if (frame->hd.type == NGHTTP2_GOAWAY) ++c.counts_.goaways_sent;
    // nghttp2 found a connection error itself (RFC 9113 §5.4.1) and said so in a GOAWAY.
    if (frame->hd.type == NGHTTP2_GOAWAY && frame->goaway.error_code != NGHTTP2_NO_ERROR &&
        !c.failed_) {
      c.failed_ = true;
      c.goaway_code_ = frame->goaway.error_code;
      c.error_reason_ = nghttp2_http2_strerror(frame->goaway.error_code);
      c.error_ = CodecError{400, c.error_reason_};
    }
    return 0;
  }

  static ssize_t read_body(nghttp2_session* session, int32_t stream_id, uint8_t* buf, size_t length,
                           uint32_t* flags, nghttp2_data_source* source, void* user_data) {
    auto* s = static_cast<Stream*>(source->ptr);
    if (!s || s->id != static_cast<StreamId>(stream_id))
      return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    size_t before = s->out.size();
    ssize_t rv = read_buffered_body(
        session, stream_id, s->out, s->ended, !s->response_trailers.empty(),
        [s]() -> const std::vector<nghttp2_nv>& { return build_nv(s->response_trailers, 0).nv; },
        s->deferred, buf, length, flags);
    codec(user_data).buffered_total_ -= before - s->out.size();
    return rv;
  }
};

namespace {

// Built once; nghttp2 copies it into each session.
const nghttp2_session_callbacks* server_callbacks() {
  static const CallbacksPtr cb = [] {
    CallbacksPtr owned = new_callbacks();
    nghttp2_session_callbacks* p = owned.get();
    using H = ServerCodec::Hooks;
    nghttp2_session_callbacks_set_on_begin_headers_callback(p, H::on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(p, H::on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(p, H::on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(p, H::on_data_chunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(p, H::on_stream_close);
    nghttp2_session_callbacks_set_on_frame_send_callback(p, H::on_frame_send);
    nghttp2_session_callbacks_set_on_invalid_frame_recv_callback(p, H::on_invalid_frame);
    nghttp2_session_callbacks_set_on_begin_frame_callback(p, H::on_begin_frame);
    return owned;
  }();
  return cb.get();
}

}  // namespace

ConfigIssues ServerOptions::validate() const {
  ConfigChecker c;
  c.check_uint("max_concurrent_streams", max_concurrent_streams, 1, 10000);
  check_limits(c, initial_stream_window, initial_connection_window, max_header_list_size,
               max_frame_size);
  return c.take();
}

ServerCodec::ServerCodec(net::Connection& conn, const ServerOptions& options,
                         ServerCodecCallbacks& callbacks)
    : conn_(conn), options_(options), callbacks_(callbacks) {
  SLUICE_CHECK(nghttp2_session_server_new2(&session_, server_callbacks(), this, session_option()) ==
               0);
}

ServerCodec::~ServerCodec() {
  nghttp2_session_del(session_);
}

void ServerCodec::start() {
  const nghttp2_settings_entry iv[] = {
      {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, options_.max_concurrent_streams},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, options_.initial_stream_window},
      {NGHTTP2_SETTINGS_MAX_FRAME_SIZE, options_.max_frame_size},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, options_.max_header_list_size},
      {NGHTTP2_SETTINGS_NO_RFC7540_PRIORITIES, 1},
  };
  if (nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, iv, std::size(iv)) != 0) {
    return fail(NGHTTP2_INTERNAL_ERROR, "cannot queue SETTINGS");
  }
  if (options_.initial_connection_window > NGHTTP2_INITIAL_CONNECTION_WINDOW_SIZE) {
    nghttp2_session_set_local_window_size(session_, NGHTTP2_FLAG_NONE, 0,
                                          static_cast<int32_t>(options_.initial_connection_window));
  }
  send_pending();
}

ServerCodec::Outcome ServerCodec::dispatch() {
  Buffer& in = conn_.input();
  if (!in.empty()) {
    ++recv_depth_;
    ssize_t rv =
        nghttp2_session_mem_recv(session_, reinterpret_cast<const uint8_t*>(in.data()), in.size());
    --recv_depth_;
    // A callback may have closed the connection (and emptied its input): consume all.
    in.consume(in.size());
    if (rv == NGHTTP2_ERR_BAD_CLIENT_MAGIC) {
      fail(NGHTTP2_PROTOCOL_ERROR, "not an HTTP/2 connection preface");
    } else if (rv == NGHTTP2_ERR_FLOODED) {
      fail(NGHTTP2_ENHANCE_YOUR_CALM, "flood of frames that need an answer");
    } else if (rv == NGHTTP2_ERR_TOO_MANY_CONTINUATIONS) {
      fail(NGHTTP2_ENHANCE_YOUR_CALM, "header block in too many CONTINUATION frames");
    } else if (rv < 0) {
      fail(NGHTTP2_INTERNAL_ERROR, nghttp2_strerror(static_cast<int>(rv)));
    }
  }
  send_pending();
  if (failed_) return Outcome::kError;
  if (!nghttp2_session_want_read(session_) && !nghttp2_session_want_write(session_)) {
    return Outcome::kFinished;
  }
  return Outcome::kContinue;
}

void ServerCodec::fail(uint32_t code, std::string_view reason) {
  if (failed_) return;
  failed_ = true;
  goaway_code_ = code;
  error_reason_ = std::string(reason);
  error_ = CodecError{400, error_reason_};
  nghttp2_session_terminate_session(session_, code);
}

void ServerCodec::send_final() {
  send_pending(true);
}

void ServerCodec::send_pending(bool past_watermark) {
  if (recv_depth_ > 0) return;  // nghttp2 may not send from inside mem_recv
  while (past_watermark || !conn_.above_high_watermark()) {
    const uint8_t* data = nullptr;
    ssize_t n = nghttp2_session_mem_send(session_, &data);
    if (n < 0) {
      fail(NGHTTP2_INTERNAL_ERROR, nghttp2_strerror(static_cast<int>(n)));
      return;
    }
    if (n == 0) return;
    conn_.write({reinterpret_cast<const char*>(data), static_cast<size_t>(n)});
  }
}

ServerCodec::Stream* ServerCodec::find(StreamId id) const {
  auto* s = static_cast<Stream*>(
      nghttp2_session_get_stream_user_data(session_, static_cast<int32_t>(id)));
  return s && s->id == id ? s : nullptr;
}

ServerCodec::Stream* ServerCodec::acquire(StreamId id) {
  Stream* s;
  if (!free_.empty()) {
    s = free_.back();
    free_.pop_back();
  } else {
    streams_.push_back(std::make_unique<Stream>());
    s = streams_.back().get();
  }
  s->id = id;
  if (nghttp2_session_set_stream_user_data(session_, static_cast<int32_t>(id), s) != 0) {
    release(s);  // nghttp2 did not open the stream
    return nullptr;
  }
  return s;
}

void ServerCodec::release(Stream* s) {
  buffered_total_ -= s->out.size();
  s->clear();
  free_.push_back(s);
}

std::vector<StreamId> ServerCodec::reset_stalled() {
  std::vector<StreamId> ids;
  for (const auto& s : streams_) {
    if (s->id != 0 && !s->out.empty()) ids.push_back(s->id);
  }
  for (StreamId id : ids) reset(id, NGHTTP2_CANCEL);
  return ids;
}

size_t ServerCodec::open_streams() const {
  return streams_.size() - free_.size();
}

size_t ServerCodec::buffered(StreamId stream) const {
  Stream* s = find(stream);
  return s ? s->out.size() : 0;
}

void ServerCodec::deliver_head(Stream& s, bool end_stream) {
  auto id = s.id;
  if (s.too_large) {
    // RFC 9113 §10.5.1: a header section larger than the server will handle gets a 431.
    HeaderMap none;
    s.stop_request = !end_stream;
    submit_head(s, 431, none, false);
    return;
  }
  MessageHead& head = s.head;
  // RFC 9113 §8.3.1: nghttp2 holds an "http" or "https" :path to origin-form (or "*"), but
  // lets another :scheme carry any :path; as a request target it would not be one.
  if (head.method != "CONNECT" && head.target != "*" &&
      (head.target.empty() || head.target[0] != '/')) {
    HeaderMap none;
    s.stop_request = !end_stream;
    submit_head(s, 400, none, false);
    return;
  }
  if (!s.authority.empty()) {
    // RFC 9113 §8.3.1: Host and :authority must name the same thing; :authority wins.
    if (const std::string* host = head.headers.get("host")) {
      if (!iequals(*host, s.authority)) {
        // The client's error: its reset is scored like nghttp2's own.
        s.ended = true;
        nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, static_cast<int32_t>(id),
                                  NGHTTP2_PROTOCOL_ERROR);
        return;
      }
    } else {
      auto& f = head.headers.fields();
      f.insert(f.begin(), Header{"host", s.authority});
    }
  }
  // A CONNECT names its target in :authority (RFC 9113 §8.5), as HTTP/1's authority-form.
  if (head.method == "CONNECT") head.target = s.authority;
  join_cookies(head.headers);
  if (const std::string* cl = head.headers.get("content-length")) {
    uint64_t v = 0;
    auto [p, ec] = std::from_chars(cl->data(), cl->data() + cl->size(), v);
    if (ec == std::errc() && p == cl->data() + cl->size()) head.content_length = v;
  }
  // A body without a length ends with the stream: to an HTTP/1 upstream it is chunked.
  head.chunked = !end_stream && !head.content_length;
  head.version_minor = 1;
  head.keep_alive = true;
  s.head_delivered = true;
  if (!callbacks_.on_head(id, head)) pause(id);
  if (end_stream && find(id)) callbacks_.on_data(id, {}, true);
}

void ServerCodec::submit_head(Stream& s, int status, HeaderMap& headers, bool with_body) {
  NvScratch& nv = build_nv(headers, status);
  nghttp2_data_provider provider;
  provider.source.ptr = &s;
  provider.read_callback = Hooks::read_body;
  s.responding = with_body;
  if (!with_body) s.ended = true;
  int rv = nghttp2_submit_response(session_, static_cast<int32_t>(s.id), nv.nv.data(), nv.nv.size(),
                                   with_body ? &provider : nullptr);
  if (rv != 0) reset(s.id, NGHTTP2_INTERNAL_ERROR);
}

bool ServerCodec::send_head(StreamId stream, MessageHead& head, const ResponseOptions& options) {
  Stream* s = find(stream);
  if (!s || s->responding || s->ended) return false;
  if (head.content_length && !head.headers.get("content-length")) {
    head.headers.add("content-length", std::to_string(*head.content_length));
  }
  // 101 does not exist in HTTP/2 (RFC 9113 §8.6); a tunnel is a CONNECT stream.
  submit_head(*s, head.status, head.headers, !options.no_body);
  send_pending();
  return false;
}

void ServerCodec::send_interim(StreamId stream, const MessageHead& head) {
  Stream* s = find(stream);
  if (!s || s->responding || s->ended || head.status == 101) return;
  NvScratch& nv = build_nv(head.headers, head.status);
  nghttp2_submit_headers(session_, NGHTTP2_FLAG_NONE, static_cast<int32_t>(stream), nullptr,
                         nv.nv.data(), nv.nv.size(), nullptr);
  send_pending();
}

void ServerCodec::send_data(StreamId stream, std::string_view data) {
  Stream* s = find(stream);
  if (!s || !s->responding || s->ended || data.empty()) return;
  s->out.append(data);
  buffered_total_ += data.size();
  if (s->deferred) {
    s->deferred = false;
    nghttp2_session_resume_data(session_, static_cast<int32_t>(stream));
  }
  send_pending();
}

void ServerCodec::send_trailers(StreamId stream, const HeaderMap& trailers) {
  Stream* s = find(stream);
  if (!s || !s->responding || s->ended) return;
  s->ended = true;
  s->response_trailers = trailers;
  if (s->deferred) {
    s->deferred = false;
    nghttp2_session_resume_data(session_, static_cast<int32_t>(stream));
  }
  send_pending();
}

void ServerCodec::stop_request_after_response(StreamId stream) {
  Stream* s = find(stream);
  if (!s || s->request_ended) return;
  if (!s->response_sent) {
    s->stop_request = true;  // sent after the response's END_STREAM (on_frame_send)
    return;
  }
  s->owner_reset = true;
  nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, static_cast<int32_t>(stream),
                            NGHTTP2_NO_ERROR);
  send_pending();
}

void ServerCodec::pause(StreamId stream) {
  if (Stream* s = find(stream)) s->paused = true;
}

void ServerCodec::resume(StreamId stream) {
  Stream* s = find(stream);
  if (!s || !s->paused) return;
  s->paused = false;
  size_t held = std::exchange(s->held, 0);
  if (held > 0) consumed(stream, held);
}

void ServerCodec::consumed(StreamId stream, size_t bytes) {
  if (bytes == 0) return;
  Stream* s = find(stream);
  if (s && s->paused) {
    s->held += bytes;
    return;
  }
  if (s) {
    nghttp2_session_consume(session_, static_cast<int32_t>(stream), bytes);
  } else {
    // The stream is gone; the connection window still counts these bytes.
    nghttp2_session_consume_connection(session_, bytes);
  }
  send_pending();
}

void ServerCodec::go_away(uint32_t code) {
  nghttp2_submit_goaway(session_, NGHTTP2_FLAG_NONE,
                        nghttp2_session_get_last_proc_stream_id(session_), code, nullptr, 0);
  send_pending();
}

void ServerCodec::shutdown_notice() {
  nghttp2_submit_shutdown_notice(session_);
  send_pending();
}

void ServerCodec::ping() {
  nghttp2_submit_ping(session_, NGHTTP2_FLAG_NONE, nullptr);
  send_pending();
}

int32_t ServerCodec::send_window() const {
  return nghttp2_session_get_remote_window_size(session_);
}

int32_t ServerCodec::receive_window() const {
  return nghttp2_session_get_local_window_size(session_);
}

void ServerCodec::note_ping(const void* f) {
  const auto* frame = static_cast<const nghttp2_frame*>(f);
  if (frame->hd.type == NGHTTP2_HEADERS || frame->hd.type == NGHTTP2_DATA) {
    activity_since_ping_ = true;
  } else if (frame->hd.type == NGHTTP2_PING && !(frame->hd.flags & NGHTTP2_FLAG_ACK)) {
    if (activity_since_ping_) {
      activity_since_ping_ = false;
      ++counts_.free_pings;
    }
  }
}

bool ServerCodec::finished() const {
  return !nghttp2_session_want_read(session_) && !nghttp2_session_want_write(session_);
}

void ServerCodec::reset(StreamId stream, uint32_t code) {
  if (Stream* s = find(stream)) {
    s->ended = true;
    s->owner_reset = true;
  }
  nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, static_cast<int32_t>(stream), code);
  send_pending();
}

}  // namespace sluice::http::http2
