// Http1Parser: strict HTTP/1.x parsing on top of llhttp (built in strict mode, with every
// lenient flag off), plus the checks llhttp leaves to us: limits on the head, field
// characters, a single Host, the authority grammar (http/authority.h), request-target forms,
// versions. Chunk extensions are checked by ChunkExtScanner (chunk_ext.h), not llhttp: every
// RFC 9112 §7.1.1 form is accepted, whitespace around ';' or '=' (BWS) is refused. Every
// rejection carries the status to answer with (400, 414, 431, 501, 505; 502 for a response)
// and a reason for the log.
// One parser per connection direction; loop thread only.
#pragma once

#include <llhttp.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "http/http1/chunk_ext.h"
#include "http/message.h"

namespace sluice::http::http1 {

struct ParseError {
  int status = 400;
  std::string reason;
};

struct ParserLimits {
  size_t max_head_bytes = 64 * 1024;  // start line + header section → 431
  size_t max_headers = 100;           // → 431
  size_t max_uri_bytes = 8 * 1024;    // → 414
};

class ParserCallbacks {
 public:
  // The head is complete. Return false to stop parsing (the caller decides what to answer).
  virtual bool on_head(MessageHead& head) = 0;
  virtual void on_body(std::string_view data) = 0;
  // `trailers` is empty unless a chunked body ended with trailer fields.
  virtual void on_message_complete(HeaderMap& trailers) = 0;

 protected:
  ~ParserCallbacks() = default;
};

class Parser {
 public:
  enum class Kind : uint8_t { kRequest, kResponse };
  enum class Outcome {
    kNeedMore,         // consumed everything; no message completed
    kMessageComplete,  // stopped right after a message: resume() before the next
    kUpgrade,          // the message switched protocols: the rest is not HTTP
    kStopped,          // a callback returned false
    kError,            // see error()
  };

  // `limits` must outlive the parser (it is the listener's, or kDefaultLimits).
  Parser(Kind kind, const ParserLimits& limits, ParserCallbacks& callbacks);
  Parser(Kind kind, const ParserLimits&& limits, ParserCallbacks& callbacks) = delete;
  static const ParserLimits kDefaultLimits;
  Parser(const Parser&) = delete;
  Parser& operator=(const Parser&) = delete;

  // Parses from `data`; *consumed says how far it got.
  Outcome execute(std::string_view data, size_t* consumed);
  void resume();
  // The connection closed: completes a message delimited by close, or fails a partial one.
  Outcome finish();
  // For a response: the request was HEAD (or similar), so no body follows the head.
  void set_no_body_expected(bool v) { no_body_ = v; }
  // For a response: the request was CONNECT, so a 2xx head is followed by the tunnel.
  void set_connect_request(bool v) { connect_ = v; }
  bool mid_message() const { return in_message_; }
  bool in_head() const { return in_message_ && !head_done_; }
  const ParseError& error() const;

 private:
  static const llhttp_settings_t* settings();
  static int cb_message_begin(llhttp_t* p);
  static int cb_url(llhttp_t* p, const char* at, size_t len);
  static int cb_status(llhttp_t* p, const char* at, size_t len);
  static int cb_header_field(llhttp_t* p, const char* at, size_t len);
  static int cb_header_value(llhttp_t* p, const char* at, size_t len);
  static int cb_header_value_complete(llhttp_t* p);
  static int cb_headers_complete(llhttp_t* p);
  static int cb_body(llhttp_t* p, const char* at, size_t len);
  static int cb_message_complete(llhttp_t* p);
  static int cb_chunk_header(llhttp_t* p);
  static int cb_chunk_complete(llhttp_t* p);

  int fail(int status, std::string reason);
  Outcome run(std::string_view data, size_t* consumed);
  Outcome outcome_of(llhttp_errno_t rc);
  // The status for a malformed message: 400 for a request, 502 for a response.
  int bad_status() const { return kind_ == Kind::kRequest ? 400 : 502; }
  bool count_head_bytes(size_t n);
  int check_request_head();

  // What a message being parsed accumulates, llhttp's state included. Taken when bytes of
  // a message come and given back when it ends (after a keep-alive message: the next starts
  // from a fresh llhttp state, as llhttp itself would), to a small per-thread cache that
  // keeps the field and value buffers' capacity: an idle keep-alive connection carries none
  // of it, and a busy one allocates none of it per message.
  struct Message {
    llhttp_t ll;
    MessageHead head;
    HeaderMap trailers;
    std::string field;
    std::string value;
  };
  // A message with llhttp's state fresh (of this parser's kind).
  void take_message();
  static void give_message(std::unique_ptr<Message> m);
  static std::vector<std::unique_ptr<Message>>& message_cache();

  void set_error(int status, std::string reason);

  // Members ordered, and flags packed, for size: every idle keep-alive connection holds a
  // parser (llhttp's state is most of it).
  const ParserLimits* limits_;
  ParserCallbacks& callbacks_;
  std::unique_ptr<Message> msg_;       // from the first byte of a message to its end
  std::unique_ptr<ParseError> error_;  // allocated by the first error only
  // Chunk extensions are checked by chunk_ext_ rather than by llhttp (see chunk_ext.h): in a
  // chunked body, run() stops llhttp before each ';' and, when that ';' opens a chunk-size
  // line's extensions, feeds llhttp a plain name of the same length in their place.
  ChunkExtScanner chunk_ext_;
  size_t head_bytes_ = 0;
  Kind kind_;
  bool in_value_ : 1 = false;
  bool in_message_ : 1 = false;
  bool head_done_ : 1 = false;
  bool no_body_ : 1 = false;
  bool connect_ : 1 = false;
  // obs-fold detection (llhttp accepts folded lines): the raw head is scanned for a line
  // that starts with whitespace.
  bool fold_prev_lf_ : 1 = false;
  bool head_end_seen_ : 1 = false;
  bool head_started_ : 1 = false;
  bool chunked_body_ : 1 = false;   // between the head and the end of a chunked message
  bool size_line_ : 1 = false;      // llhttp is reading a chunk-size line
  bool in_chunk_data_ : 1 = false;  // llhttp is reading chunk data (parser_.content_length left)
  bool last_chunk_ : 1 = false;     // the 0-size chunk was read: trailers follow
  bool body_pause_ : 1 = false;     // our own pause at the head of a chunked message
  bool user_error_ : 1 = false;     // error_ was set by our own check, not by llhttp
  bool keep_alive_ : 1 = false;     // the message that just ended lets another follow
  bool completed_one_ : 1 = false;  // a message ended: llhttp's state says so to the next
};

}  // namespace sluice::http::http1
