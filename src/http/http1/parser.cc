#include "http/http1/parser.h"

#include <fmt/format.h>

namespace sluice::http::http1 {
namespace {

Parser* self(llhttp_t* p) {
  return static_cast<Parser*>(p->data);
}

// RFC 9110 §5.6.2: tchar.
bool is_tchar(unsigned char c) {
  if (c >= '0' && c <= '9') return true;
  if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') return true;
  switch (c) {
    case '!':
    case '#':
    case '$':
    case '%':
    case '&':
    case '\'':
    case '*':
    case '+':
    case '-':
    case '.':
    case '^':
    case '_':
    case '`':
    case '|':
    case '~':
      return true;
    default:
      return false;
  }
}

// RFC 9110 §5.5: field-value is VCHAR, obs-text, SP and HTAB; no CR, LF, NUL or other CTL.
bool valid_value_char(unsigned char c) {
  return c == '\t' || (c >= 0x20 && c != 0x7f);
}

}  // namespace

Parser::Parser(Kind kind, ParserLimits limits, ParserCallbacks& callbacks)
    : kind_(kind), limits_(limits), callbacks_(callbacks) {
  llhttp_settings_init(&settings_);
  settings_.on_message_begin = cb_message_begin;
  settings_.on_url = cb_url;
  settings_.on_status = cb_status;
  settings_.on_header_field = cb_header_field;
  settings_.on_header_value = cb_header_value;
  settings_.on_header_value_complete = cb_header_value_complete;
  settings_.on_headers_complete = cb_headers_complete;
  settings_.on_body = cb_body;
  settings_.on_message_complete = cb_message_complete;
  llhttp_init(&parser_, kind == Kind::kRequest ? HTTP_REQUEST : HTTP_RESPONSE, &settings_);
  parser_.data = this;
}

int Parser::fail(int status, std::string reason) {
  error_.status = status;
  error_.reason = std::move(reason);
  return HPE_USER;
}

bool Parser::count_head_bytes(size_t n) {
  head_bytes_ += n;
  return head_bytes_ <= limits_.max_head_bytes;
}

int Parser::cb_message_begin(llhttp_t* p) {
  Parser* s = self(p);
  s->head_ = MessageHead{};
  s->trailers_.clear();
  s->field_.clear();
  s->value_.clear();
  s->in_value_ = false;
  s->in_message_ = true;
  s->head_done_ = false;
  s->head_bytes_ = 0;
  return HPE_OK;
}

int Parser::cb_url(llhttp_t* p, const char* at, size_t len) {
  Parser* s = self(p);
  s->head_.target.append(at, len);
  if (s->head_.target.size() > s->limits_.max_uri_bytes) {
    return s->fail(414,
                   fmt::format("request target longer than {} bytes", s->limits_.max_uri_bytes));
  }
  if (!s->count_head_bytes(len)) return s->fail(431, "request head too large");
  return HPE_OK;
}

int Parser::cb_status(llhttp_t* p, const char* at, size_t len) {
  Parser* s = self(p);
  s->head_.reason.append(at, len);
  if (!s->count_head_bytes(len)) return s->fail(502, "response head too large");
  return HPE_OK;
}

int Parser::cb_header_field(llhttp_t* p, const char* at, size_t len) {
  Parser* s = self(p);
  if (s->in_value_) return HPE_OK;  // value_complete handles the switch
  s->field_.append(at, len);
  if (!s->count_head_bytes(len + 4)) {
    return s->fail(s->kind_ == Kind::kRequest ? 431 : 502, "header section too large");
  }
  return HPE_OK;
}

int Parser::cb_header_value(llhttp_t* p, const char* at, size_t len) {
  Parser* s = self(p);
  s->in_value_ = true;
  for (size_t i = 0; i < len; ++i) {
    if (!valid_value_char(static_cast<unsigned char>(at[i]))) {
      return s->fail(400, fmt::format("invalid character 0x{:02x} in the value of header '{}'",
                                      static_cast<unsigned char>(at[i]), s->field_));
    }
  }
  s->value_.append(at, len);
  if (!s->count_head_bytes(len)) {
    return s->fail(s->kind_ == Kind::kRequest ? 431 : 502, "header section too large");
  }
  return HPE_OK;
}

int Parser::cb_header_value_complete(llhttp_t* p) {
  Parser* s = self(p);
  s->in_value_ = false;
  for (char c : s->field_) {
    if (!is_tchar(static_cast<unsigned char>(c))) {
      return s->fail(400, fmt::format("invalid header name '{}'", s->field_));
    }
  }
  if (s->field_.empty()) return s->fail(400, "empty header name");
  // Trim trailing whitespace of the value (RFC 9112 §5: OWS around the value is not part of it).
  while (!s->value_.empty() && (s->value_.back() == ' ' || s->value_.back() == '\t')) {
    s->value_.pop_back();
  }
  HeaderMap& target = s->head_done_ ? s->trailers_ : s->head_.headers;
  target.add(std::move(s->field_), std::move(s->value_));
  s->field_.clear();
  s->value_.clear();
  if (!s->head_done_ && s->head_.headers.size() > s->limits_.max_headers) {
    return s->fail(s->kind_ == Kind::kRequest ? 431 : 502,
                   fmt::format("more than {} header fields", s->limits_.max_headers));
  }
  return HPE_OK;
}

int Parser::check_request_head() {
  MessageHead& h = head_;
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
  // RFC 9112 §3.2: a 1.1 request has exactly one Host; several are always an error.
  size_t hosts = h.headers.count("host");
  if (hosts > 1) return fail(400, "several Host headers");
  if (hosts == 0 && h.version_minor >= 1) return fail(400, "HTTP/1.1 request without Host");
  if (h.headers.count("transfer-encoding") > 0 && h.version_minor == 0) {
    return fail(400, "Transfer-Encoding in an HTTP/1.0 request");
  }
  return HPE_OK;
}

int Parser::cb_headers_complete(llhttp_t* p) {
  Parser* s = self(p);
  MessageHead& h = s->head_;
  if (p->http_major != 1 || p->http_minor > 1) {
    return s->fail(s->kind_ == Kind::kRequest ? 505 : 502,
                   fmt::format("unsupported version HTTP/{}.{}", p->http_major, p->http_minor));
  }
  h.version_minor = p->http_minor;
  h.keep_alive = llhttp_should_keep_alive(p) != 0;
  h.upgrade = p->upgrade != 0;
  h.chunked = (p->flags & F_CHUNKED) != 0;
  if (p->flags & F_CONTENT_LENGTH) h.content_length = p->content_length;
  if (s->kind_ == Kind::kRequest) {
    h.method = llhttp_method_name(static_cast<llhttp_method_t>(p->method));
    if (int rc = s->check_request_head(); rc != HPE_OK) return rc;
  } else {
    h.status = p->status_code;
    if (h.headers.count("transfer-encoding") > 0 && !h.chunked) {
      // RFC 9112 §6.3: a response whose final coding is not chunked is read until close;
      // we refuse that ambiguity instead.
      return s->fail(502, "response Transfer-Encoding does not end in chunked");
    }
  }
  s->head_done_ = true;
  if (!s->callbacks_.on_head(h)) {
    s->error_.reason = "stopped";
    return HPE_PAUSED;
  }
  if (s->kind_ == Kind::kResponse && s->no_body_) return 1;  // llhttp: skip the body
  return HPE_OK;
}

int Parser::cb_body(llhttp_t* p, const char* at, size_t len) {
  self(p)->callbacks_.on_body(std::string_view(at, len));
  return HPE_OK;
}

int Parser::cb_message_complete(llhttp_t* p) {
  Parser* s = self(p);
  s->in_message_ = false;
  s->callbacks_.on_message_complete(s->trailers_);
  return HPE_PAUSED;  // one message at a time: the owner resumes when it is ready
}

Parser::Outcome Parser::execute(std::string_view data, size_t* consumed) {
  if (!in_message_) {
    fold_prev_lf_ = false;
    head_end_seen_ = false;
  }
  if (!head_done_ || !in_message_) {
    for (size_t i = 0; i < data.size() && !head_end_seen_; ++i) {
      char c = data[i];
      if (fold_prev_lf_) {
        // RFC 9112 §5.2: obs-fold is rejected with 400 (a proxy must not pass it on).
        if (c == ' ' || c == '\t') {
          error_ = {kind_ == Kind::kRequest ? 400 : 502, "obsolete line folding in a header"};
          *consumed = 0;
          return Outcome::kError;
        }
        if (c == '\r' || c == '\n') head_end_seen_ = true;
      }
      fold_prev_lf_ = c == '\n';
    }
  }
  llhttp_errno_t rc = llhttp_execute(&parser_, data.data(), data.size());
  if (rc == HPE_OK) {
    *consumed = data.size();
    return Outcome::kNeedMore;
  }
  const char* pos = llhttp_get_error_pos(&parser_);
  *consumed = pos ? static_cast<size_t>(pos - data.data()) : 0;
  switch (rc) {
    case HPE_PAUSED:
      if (!in_message_) return Outcome::kMessageComplete;
      return Outcome::kStopped;
    case HPE_PAUSED_UPGRADE:
      return Outcome::kUpgrade;
    case HPE_USER:
      return Outcome::kError;
    case HPE_PAUSED_H2_UPGRADE:
      error_ = {400, "HTTP/2 prior knowledge is not supported on this listener"};
      return Outcome::kError;
    case HPE_INVALID_METHOD:
      error_ = {kind_ == Kind::kRequest ? 400 : 502, "invalid method"};
      return Outcome::kError;
    case HPE_INVALID_VERSION:
      error_ = {kind_ == Kind::kRequest ? 400 : 502, "invalid HTTP version"};
      return Outcome::kError;
    default:
      error_ = {kind_ == Kind::kRequest ? 400 : 502,
                fmt::format("{}: {}", llhttp_errno_name(rc), llhttp_get_error_reason(&parser_))};
      return Outcome::kError;
  }
}

void Parser::resume() {
  llhttp_resume(&parser_);
}

Parser::Outcome Parser::finish() {
  llhttp_errno_t rc = llhttp_finish(&parser_);
  if (rc == HPE_OK) return Outcome::kNeedMore;
  if (rc == HPE_PAUSED) return Outcome::kMessageComplete;
  error_ = {kind_ == Kind::kRequest ? 400 : 502,
            in_message_ ? "connection closed in the middle of a message"
                        : fmt::format("{}", llhttp_errno_name(rc))};
  return Outcome::kError;
}

}  // namespace sluice::http::http1
