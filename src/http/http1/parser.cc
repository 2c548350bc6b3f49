#include "http/http1/parser.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cstring>

#include "http/authority.h"

namespace sluice::http::http1 {

static_assert(sizeof(Parser) <= 64, "Parser grew: every idle keep-alive connection holds one");
namespace {

// Fields a request or response head usually has (a browser's request: about a dozen).
constexpr size_t kUsualFieldCount = 16;

Parser* self(llhttp_t* p) {
  return static_cast<Parser*>(p->data);
}

}  // namespace

const llhttp_settings_t* Parser::settings() {
  // One table for every parser: llhttp only reads it.
  static const llhttp_settings_t table = [] {
    llhttp_settings_t s;
    llhttp_settings_init(&s);
    s.on_message_begin = cb_message_begin;
    s.on_url = cb_url;
    s.on_status = cb_status;
    s.on_header_field = cb_header_field;
    s.on_header_value = cb_header_value;
    s.on_header_value_complete = cb_header_value_complete;
    s.on_headers_complete = cb_headers_complete;
    s.on_body = cb_body;
    s.on_message_complete = cb_message_complete;
    s.on_chunk_header = cb_chunk_header;
    s.on_chunk_complete = cb_chunk_complete;
    return s;
  }();
  return &table;
}

const ParserLimits Parser::kDefaultLimits{};

Parser::Parser(Kind kind, const ParserLimits& limits, ParserCallbacks& callbacks)
    : limits_(&limits), callbacks_(callbacks), kind_(kind) {}

int Parser::fail(int status, std::string reason) {
  user_error_ = true;
  set_error(status, std::move(reason));
  return HPE_USER;
}

bool Parser::count_head_bytes(size_t n) {
  head_bytes_ += n;
  return head_bytes_ <= limits_->max_head_bytes;
}

namespace {
constexpr size_t kMaxCachedMessages = 64;
}  // namespace

std::vector<std::unique_ptr<Parser::Message>>& Parser::message_cache() {
  thread_local std::vector<std::unique_ptr<Message>> cache;
  return cache;
}

void Parser::take_message() {
  auto& cache = message_cache();
  if (cache.empty()) {
    msg_ = std::make_unique<Message>();
  } else {
    msg_ = std::move(cache.back());
    cache.pop_back();
  }
  llhttp_t& ll = msg_->ll;
  llhttp_init(&ll, kind_ == Kind::kRequest ? HTTP_REQUEST : HTTP_RESPONSE, settings());
  ll.data = this;
  // As llhttp's own state is after a message (it tells what may come between messages).
  ll.initial_message_completed = completed_one_ ? 1 : 0;
}

void Parser::give_message(std::unique_ptr<Message> m) {
  auto& cache = message_cache();
  if (m && cache.size() < kMaxCachedMessages) cache.push_back(std::move(m));
}

int Parser::cb_message_begin(llhttp_t* p) {
  Parser* s = self(p);
  Message& m = *s->msg_;
  m.head = MessageHead{};
  m.trailers.clear();
  m.field.clear();
  m.value.clear();
  // One allocation for the fields of a usual head, rather than one per doubling.
  s->msg_->head.headers.fields().reserve(kUsualFieldCount);
  s->in_value_ = false;
  s->in_message_ = true;
  s->head_done_ = false;
  s->head_bytes_ = 0;
  s->chunked_body_ = s->size_line_ = s->in_chunk_data_ = s->last_chunk_ = false;
  return HPE_OK;
}

int Parser::cb_url(llhttp_t* p, const char* at, size_t len) {
  Parser* s = self(p);
  s->msg_->head.target.append(at, len);
  if (s->msg_->head.target.size() > s->limits_->max_uri_bytes) {
    return s->fail(414,
                   fmt::format("request target longer than {} bytes", s->limits_->max_uri_bytes));
  }
  if (!s->count_head_bytes(len)) return s->fail(431, "request head too large");
  return HPE_OK;
}

int Parser::cb_status(llhttp_t* p, const char* at, size_t len) {
  Parser* s = self(p);
  // RFC 9112 §4: reason-phrase = 1*( HTAB / SP / VCHAR / obs-text ).
  if (find_invalid_field_value_char(std::string_view(at, len)) != std::string_view::npos) {
    return s->fail(502, "invalid character in the response's reason phrase");
  }
  s->msg_->head.reason.append(at, len);
  if (!s->count_head_bytes(len)) return s->fail(502, "response head too large");
  return HPE_OK;
}

int Parser::cb_header_field(llhttp_t* p, const char* at, size_t len) {
  Parser* s = self(p);
  if (s->in_value_) return HPE_OK;  // value_complete handles the switch
  s->msg_->field.append(at, len);
  if (!s->count_head_bytes(len)) {
    return s->fail(s->kind_ == Kind::kRequest ? 431 : 502, "header section too large");
  }
  return HPE_OK;
}

int Parser::cb_header_value(llhttp_t* p, const char* at, size_t len) {
  Parser* s = self(p);
  s->in_value_ = true;
  if (size_t i = find_invalid_field_value_char(std::string_view(at, len));
      i != std::string_view::npos) {
    return s->fail(s->bad_status(),
                   fmt::format("invalid character 0x{:02x} in the value of header '{}'",
                               static_cast<unsigned char>(at[i]), s->msg_->field));
  }
  s->msg_->value.append(at, len);
  if (!s->count_head_bytes(len)) {
    return s->fail(s->kind_ == Kind::kRequest ? 431 : 502, "header section too large");
  }
  return HPE_OK;
}

int Parser::cb_header_value_complete(llhttp_t* p) {
  Parser* s = self(p);
  s->in_value_ = false;
  for (char c : s->msg_->field) {
    if (!is_tchar(static_cast<unsigned char>(c))) {
      return s->fail(s->bad_status(), fmt::format("invalid header name '{}'", s->msg_->field));
    }
  }
  if (s->msg_->field.empty()) return s->fail(s->bad_status(), "empty header name");
  // Trim trailing whitespace of the value (RFC 9112 §5: OWS around the value is not part of it).
  while (!s->msg_->value.empty() &&
         (s->msg_->value.back() == ' ' || s->msg_->value.back() == '\t')) {
    s->msg_->value.pop_back();
  }
  // ": " and CRLF around each field count too, once per field however the reads fell.
  if (!s->count_head_bytes(4)) {
    return s->fail(s->kind_ == Kind::kRequest ? 431 : 502, "header section too large");
  }
  HeaderMap& target = s->head_done_ ? s->msg_->trailers : s->msg_->head.headers;
  target.add(std::move(s->msg_->field), std::move(s->msg_->value));
  s->msg_->field.clear();
  s->msg_->value.clear();
  if (!s->head_done_ && s->msg_->head.headers.size() > s->limits_->max_headers) {
    return s->fail(s->kind_ == Kind::kRequest ? 431 : 502,
                   fmt::format("more than {} header fields", s->limits_->max_headers));
  }
  return HPE_OK;
}

int Parser::check_request_head() {
  MessageHead& h = msg_->head;
  const std::string& t = h.target;
  // RFC 9112 §3.2: the request-target forms and which methods may use them.
  if (h.method == "CONNECT") {
    if (t.empty() || t[0] == '/' || t.find("://") != std::string::npos) {
      return fail(400, "CONNECT needs an authority-form target (host:port)");
    }
  } else if (t == "*") {
    if (h.method != "OPTIONS") return fail(400, "asterisk-form target is only for OPTIONS");
  } else if (t.empty() ||
             (t[0] != '/' && t.rfind("http://", 0) != 0 && t.rfind("https://", 0) != 0)) {
    return fail(400, "invalid request target");
  }
  for (unsigned char c : t) {
    if (c <= 0x20 || c == 0x7f || c == '#') return fail(400, "invalid character in request target");
  }
  // RFC 3986 §3.2: the authority of an authority-form or absolute-form target, and Host.
  if (h.method == "CONNECT") {
    if (Status st = check_authority(t, PortRule::kRequired); !st) {
      return fail(400, "invalid CONNECT target: " + st.message());
    }
  } else if (t[0] != '/' && t != "*") {
    std::string_view rest = std::string_view(t).substr(t.find("://") + 3);
    std::string_view authority = rest.substr(0, rest.find_first_of("/?"));
    Status st = check_authority(authority, PortRule::kOptional);
    // RFC 9110 §4.2.1: an http(s) URI with an empty host is invalid.
    if (st && (authority.empty() || authority[0] == ':')) st = Status::error("the host is empty");
    if (!st) return fail(400, "invalid authority in the request target: " + st.message());
  }
  if (const std::string* host = h.headers.get("host")) {
    if (Status st = check_authority(*host, PortRule::kOptional); !st) {
      return fail(400, "invalid Host header: " + st.message());
    }
  }
  // RFC 9110 §9.3.6: a CONNECT request has no content; the bytes after its head are the
  // tunnel. llhttp ends the message at the head whatever the framing headers say, so a
  // Content-Length other than 0, or a Transfer-Encoding, would announce a body that is never
  // read here but that an upstream honouring it would take out of the tunnel.
  if (h.method == "CONNECT" &&
      ((h.content_length && *h.content_length > 0) || h.headers.count("transfer-encoding") > 0)) {
    return fail(400, "CONNECT request with a body (Content-Length or Transfer-Encoding)");
  }
  // RFC 9112 §3.2: a 1.1 request has exactly one Host; several are always an error.
  size_t hosts = h.headers.count("host");
  if (hosts > 1) return fail(400, "several Host headers");
  if (hosts == 0 && h.version_minor >= 1) return fail(400, "HTTP/1.1 request without Host");
  if (h.headers.count("transfer-encoding") > 0 && h.version_minor == 0) {
    return fail(400, "Transfer-Encoding in an HTTP/1.0 request");
  }
  // RFC 9112 §6.3: a request whose final transfer coding is not chunked cannot be framed.
  if (h.headers.count("transfer-encoding") > 0 && !h.chunked) {
    return fail(400, "Transfer-Encoding whose final coding is not chunked");
  }
  return HPE_OK;
}

int Parser::cb_headers_complete(llhttp_t* p) {
  Parser* s = self(p);
  MessageHead& h = s->msg_->head;
  if (p->http_major == 0) return s->fail(s->bad_status(), "HTTP/0.9 is not accepted");
  if (p->http_major != 1 || p->http_minor > 1) {
    return s->fail(s->kind_ == Kind::kRequest ? 505 : 502,
                   fmt::format("unsupported version HTTP/{}.{}", p->http_major, p->http_minor));
  }
  h.version_minor = p->http_minor;
  h.keep_alive = llhttp_should_keep_alive(p) != 0;
  // RFC 9113 §3.1: the upgrade to h2c is obsolete, and sluice never performs it. Such a request
  // is an ordinary one: llhttp goes on reading its body and the requests after it.
  if (p->upgrade && s->kind_ == Kind::kRequest && h.headers.has_token("upgrade", "h2c")) {
    p->upgrade = 0;
  }
  h.upgrade = p->upgrade != 0;
  h.chunked = (p->flags & F_CHUNKED) != 0;
  if (p->flags & F_CONTENT_LENGTH) h.content_length = p->content_length;
  if (s->kind_ == Kind::kRequest) {
    h.method = llhttp_method_name(static_cast<llhttp_method_t>(p->method));
    if (int rc = s->check_request_head(); rc != HPE_OK) return rc;
  } else {
    h.status = p->status_code;
    if (h.status < 100 || h.status > 599) {
      return s->fail(502, fmt::format("invalid response status {}", h.status));
    }
    if (h.headers.count("transfer-encoding") > 0 && !h.chunked) {
      // RFC 9112 §6.3: a response whose final coding is not chunked is read until close;
      // we refuse that ambiguity instead.
      return s->fail(502, "response Transfer-Encoding does not end in chunked");
    }
  }
  s->head_done_ = true;
  // From here on run() splits a chunked body at each ';' (see chunk_ext_), also when the
  // owner stops at the head and resumes later.
  s->chunked_body_ = s->size_line_ = h.chunked;
  if (!s->callbacks_.on_head(h)) {
    s->set_error(0, "stopped");
    return HPE_PAUSED;
  }
  // RFC 9112 §6.3: responses to HEAD, and 1xx, 204 and 304 responses, end with their head
  // whatever Content-Length says. Returning 1 tells llhttp there is no body.
  if (s->kind_ == Kind::kResponse && (s->no_body_ || h.status == 204 || h.status == 304 ||
                                      (h.status >= 100 && h.status < 200 && h.status != 101))) {
    s->chunked_body_ = s->size_line_ = false;
    return 1;
  }
  if (s->chunked_body_) {
    // Pause, so that run() goes on with the body in pieces split at each ';'.
    s->body_pause_ = true;
    return HPE_PAUSED;
  }
  return HPE_OK;
}

int Parser::cb_chunk_header(llhttp_t* p) {
  Parser* s = self(p);
  s->size_line_ = false;
  s->last_chunk_ = p->content_length == 0;
  s->in_chunk_data_ = !s->last_chunk_;
  return HPE_OK;
}

int Parser::cb_chunk_complete(llhttp_t* p) {
  Parser* s = self(p);
  s->in_chunk_data_ = false;
  s->size_line_ = !s->last_chunk_;
  return HPE_OK;
}

int Parser::cb_body(llhttp_t* p, const char* at, size_t len) {
  self(p)->callbacks_.on_body(std::string_view(at, len));
  return HPE_OK;
}

int Parser::cb_message_complete(llhttp_t* p) {
  Parser* s = self(p);
  s->in_message_ = false;
  s->chunked_body_ = s->size_line_ = s->in_chunk_data_ = s->last_chunk_ = false;
  // An upgrade (or CONNECT) request is followed by another protocol, never by a message:
  // llhttp's state stays, so what follows it is not parsed as HTTP.
  s->keep_alive_ = llhttp_should_keep_alive(p) != 0 && !p->upgrade;
  s->completed_one_ = true;
  // The callback may take the trailers; the rest of the message state is reused by the next.
  s->callbacks_.on_message_complete(s->msg_->trailers);
  return HPE_PAUSED;  // one message at a time: the owner resumes when it is ready
}

Parser::Outcome Parser::execute(std::string_view data, size_t* consumed) {
  if (!msg_) take_message();
  if (!in_message_) {
    fold_prev_lf_ = false;
    head_end_seen_ = false;
    head_started_ = false;
  }
  // Find an obs-fold in the head before llhttp runs (it would accept it), but parse up to
  // it first: an earlier error in the same bytes must win, whatever the read boundaries.
  size_t fold_at = std::string_view::npos;
  if (!head_done_ || !in_message_) {
    const char* p = data.data();
    size_t n = data.size();
    size_t i = 0;
    // Empty lines before a request line are skipped (RFC 9112 §2.2); they are not the
    // empty line that ends a head.
    if (!head_started_) {
      while (i < n && (p[i] == '\r' || p[i] == '\n')) ++i;
      head_started_ = i < n;
    }
    // Only the byte after each LF matters: jump from one LF to the next.
    while (i < n && !head_end_seen_) {
      if (!fold_prev_lf_) {
        const void* lf = std::memchr(p + i, '\n', n - i);
        if (!lf) break;  // the last byte is not a LF: fold_prev_lf_ stays false
        i = static_cast<size_t>(static_cast<const char*>(lf) - p) + 1;
        fold_prev_lf_ = true;
        continue;
      }
      char c = p[i];
      // RFC 9112 §5.2: obs-fold is rejected with 400 (a proxy must not pass it on).
      if (c == ' ' || c == '\t') {
        fold_at = i;
        break;
      }
      if (c == '\r' || c == '\n') head_end_seen_ = true;
      fold_prev_lf_ = c == '\n';
      ++i;
    }
  }
  if (fold_at != std::string_view::npos) {
    Outcome o = run(data.substr(0, fold_at), consumed);
    if (o != Outcome::kNeedMore) return o;
    set_error(bad_status(), "obsolete line folding in a header");
    return Outcome::kError;
  }
  return run(data, consumed);
}

Parser::Outcome Parser::run(std::string_view data, size_t* consumed) {
  user_error_ = false;
  // What llhttp is given in place of chunk extensions after their ';': one long name.
  static const std::string kPlainName(ChunkExtScanner::kMaxBytes, 'x');
  size_t pos = 0;
  while (true) {
    if (chunk_ext_.active()) {
      size_t n = chunk_ext_.scan(data.substr(pos));
      if (!chunk_ext_.ok()) {
        *consumed = pos + n;
        set_error(bad_status(), chunk_ext_.error());
        return Outcome::kError;
      }
      for (size_t fed = 0; fed < n;) {
        size_t piece = std::min(n - fed, kPlainName.size());
        llhttp_errno_t rc = llhttp_execute(&msg_->ll, kPlainName.data(), piece);
        if (rc != HPE_OK) {
          *consumed = pos + fed;
          return outcome_of(rc);
        }
        fed += piece;
      }
      pos += n;
    }
    if (pos == data.size()) break;
    // In a chunked body, stop before the next ';' that may open chunk extensions: none
    // inside the rest of the current chunk's data.
    size_t end = data.size();
    if (chunked_body_) {
      size_t from = pos;
      if (in_chunk_data_)
        from += static_cast<size_t>(std::min<uint64_t>(msg_->ll.content_length, end - pos));
      end = std::min(end, data.find(';', from));
      if (end == pos && !size_line_) end = std::min(data.size(), data.find(';', pos + 1));
    }
    if (end == pos) {
      // A ';' on a chunk-size line: it goes to llhttp as it is, the extensions after it are
      // checked here.
      end = pos + 1;
      chunk_ext_.start();
    }
    llhttp_errno_t rc = llhttp_execute(&msg_->ll, data.data() + pos, end - pos);
    if (rc == HPE_PAUSED && body_pause_) {
      body_pause_ = false;
      const char* at = llhttp_get_error_pos(&msg_->ll);
      llhttp_resume(&msg_->ll);
      pos = static_cast<size_t>(at - data.data());
      continue;
    }
    if (rc != HPE_OK) {
      const char* at = llhttp_get_error_pos(&msg_->ll);
      *consumed = at ? static_cast<size_t>(at - data.data()) : pos;
      return outcome_of(rc);
    }
    pos = end;
  }
  *consumed = data.size();
  return Outcome::kNeedMore;
}

Parser::Outcome Parser::outcome_of(llhttp_errno_t rc) {
  // Our own checks fail through llhttp, which may report them under another code (a
  // failing *_complete callback): the reason we recorded is the one that counts.
  if (user_error_) return Outcome::kError;
  switch (rc) {
    case HPE_PAUSED:
      if (!in_message_) {
        // After a message that closes the connection llhttp refuses what follows: its state
        // stays (and is resumed), as it does until the next message for other outcomes.
        if (keep_alive_) give_message(std::move(msg_));
        return Outcome::kMessageComplete;
      }
      return Outcome::kStopped;
    case HPE_PAUSED_UPGRADE:
      return Outcome::kUpgrade;
    case HPE_USER:
      return Outcome::kError;
    case HPE_PAUSED_H2_UPGRADE:
      set_error(400, "HTTP/2 prior knowledge is not supported on this listener");
      return Outcome::kError;
    case HPE_INVALID_METHOD:
      set_error(kind_ == Kind::kRequest ? 400 : 502, "invalid method");
      return Outcome::kError;
    case HPE_INVALID_VERSION: {
      // llhttp has stored the digits it read: a well-formed version other than 1.0/1.1 is
      // one we do not support (505); 1.x followed by garbage is a malformed line (400).
      const llhttp_t& ll = msg_->ll;
      bool is_1x = ll.http_major == 1 && ll.http_minor <= 1;
      bool is_09 = ll.http_major == 0 && ll.http_minor == 9;  // "GET /" alone
      if (kind_ == Kind::kResponse) {
        set_error(502, "invalid HTTP version in the response");
      } else if (is_09) {
        set_error(400, "HTTP/0.9 requests are not accepted");
      } else if (!is_1x) {
        set_error(505, fmt::format("unsupported HTTP version {}.{}", ll.http_major, ll.http_minor));
      } else {
        set_error(400, "invalid HTTP version");
      }
      return Outcome::kError;
    }
    default:
      set_error(kind_ == Kind::kRequest ? 400 : 502,
                fmt::format("{}: {}", llhttp_errno_name(rc), llhttp_get_error_reason(&msg_->ll)));
      return Outcome::kError;
  }
}

void Parser::set_error(int status, std::string reason) {
  if (!error_) error_ = std::make_unique<ParseError>();
  error_->status = status;
  error_->reason = std::move(reason);
}

const ParseError& Parser::error() const {
  static const ParseError kNone{0, ""};
  return error_ ? *error_ : kNone;
}

void Parser::resume() {
  // Without a message: the last one ended and gave its state back; the next starts afresh.
  if (msg_) llhttp_resume(&msg_->ll);
}

Parser::Outcome Parser::finish() {
  if (!msg_) return Outcome::kNeedMore;  // between messages: nothing is cut short
  llhttp_errno_t rc = llhttp_finish(&msg_->ll);
  if (rc == HPE_OK) return Outcome::kNeedMore;
  if (rc == HPE_PAUSED) return Outcome::kMessageComplete;
  set_error(kind_ == Kind::kRequest ? 400 : 502,
            in_message_ ? "connection closed in the middle of a message"
                        : fmt::format("{}", llhttp_errno_name(rc)));
  return Outcome::kError;
}

}  // namespace sluice::http::http1
