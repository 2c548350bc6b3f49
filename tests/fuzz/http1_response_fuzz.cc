// Fuzz target for the response path: the strict HTTP/1.x response parser (what sluice
// reads from an upstream) and the encoder that writes the head back to the client.
//
// The first input byte picks how the rest is cut into reads, the second whether the
// request was a HEAD (no body follows the head); the same bytes are also parsed in one
// piece and both runs must agree. Any violated invariant traps.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "http/headers.h"
#include "http/http1/encoder.h"
#include "http/http1/parser.h"
#include "http/message.h"

namespace {

using sluice::http::HeaderMap;
using sluice::http::iequals;
using sluice::http::MessageHead;
using sluice::http::http1::encode_response_head;
using sluice::http::http1::Parser;
using sluice::http::http1::ParserCallbacks;
using sluice::http::http1::ParserLimits;

constexpr size_t kMaxMessages = 16;
constexpr ParserLimits kLimits{2048, 32, 512};
constexpr ParserLimits kWideLimits{1 << 20, 1000, 1 << 20};

void require(bool cond) {
  if (!cond) __builtin_trap();
}

struct Message {
  MessageHead head;
  std::string body;
  size_t trailers = 0;
  bool complete = false;
};

class Recorder final : public ParserCallbacks {
 public:
  bool on_head(MessageHead& head) override {
    messages.push_back(Message{head, {}, 0, false});
    return true;
  }
  void on_body(std::string_view data) override {
    require(!messages.empty() && !messages.back().complete);
    messages.back().body.append(data);
  }
  void on_message_complete(HeaderMap& trailers) override {
    require(!messages.empty() && !messages.back().complete);
    messages.back().trailers = trailers.size();
    messages.back().complete = true;
  }

  std::vector<Message> messages;
};

struct Result {
  std::vector<Message> messages;
  Parser::Outcome last = Parser::Outcome::kNeedMore;
  int error_status = 0;
  Parser::Outcome finished = Parser::Outcome::kNeedMore;
  bool hit_limit = false;  // a size limit rejected the input
};

Result run(std::string_view input, const std::vector<size_t>& cuts, bool no_body) {
  Recorder rec;
  Parser parser(Parser::Kind::kResponse, kLimits, rec);
  parser.set_no_body_expected(no_body);
  Result r;
  std::string pending;
  size_t offset = 0;
  size_t completed = 0;
  bool done = false;
  for (size_t piece = 0; piece <= cuts.size() && !done && offset < input.size(); ++piece) {
    size_t n = piece < cuts.size() ? cuts[piece] : input.size() - offset;
    if (n > input.size() - offset) n = input.size() - offset;
    pending.append(input.substr(offset, n));
    offset += n;
    while (!pending.empty() && !done) {
      size_t consumed = pending.size() + 1;
      Parser::Outcome o = parser.execute(pending, &consumed);
      require(consumed <= pending.size());
      r.last = o;
      switch (o) {
        case Parser::Outcome::kNeedMore:
          require(consumed == pending.size());
          pending.clear();
          break;
        case Parser::Outcome::kMessageComplete:
          require(!parser.mid_message());
          require(!rec.messages.empty() && rec.messages.back().complete);
          pending.erase(0, consumed);
          if (++completed >= kMaxMessages) {
            done = true;
            break;
          }
          parser.resume();
          break;
        case Parser::Outcome::kUpgrade:
          require(!rec.messages.empty());
          done = true;
          break;
        case Parser::Outcome::kStopped:
          require(false);
          break;
        case Parser::Outcome::kError:
          r.error_status = parser.error().status;
          require(r.error_status == 502);
          require(!parser.error().reason.empty());
          r.hit_limit = parser.error().reason.find("too large") != std::string::npos ||
                        parser.error().reason.find("more than") != std::string::npos;
          done = true;
          break;
      }
    }
  }
  if (!done) {
    // The upstream closed: a close-delimited body ends here, anything partial is an error.
    bool mid_body = parser.mid_message() && !parser.in_head();
    r.finished = parser.finish();
    if (r.finished == Parser::Outcome::kError) require(parser.error().status == 502);
    if (r.finished == Parser::Outcome::kMessageComplete) {
      require(mid_body);
      require(!rec.messages.empty() && rec.messages.back().complete);
    }
  }
  r.messages = std::move(rec.messages);
  return r;
}

bool all_digits(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
  }
  return true;
}

uint64_t to_number(std::string_view s) {
  uint64_t v = 0;
  for (char c : s) v = v * 10 + static_cast<uint64_t>(c - '0');
  return v;
}

void check_message(const Message& m, bool no_body) {
  const MessageHead& h = m.head;
  require(h.status >= 100 && h.status <= 999);
  require(h.version_minor == 0 || h.version_minor == 1);
  require(h.headers.size() <= kLimits.max_headers);
  for (const auto& f : h.headers) {
    require(!f.name.empty());
    for (unsigned char c : f.name) require(c > 0x20 && c < 0x7f && c != ':');
    for (unsigned char c : f.value) require(c == '\t' || (c >= 0x20 && c != 0x7f));
  }
  for (unsigned char c : h.reason) require(c != '\r' && c != '\n' && c != 0);
  require(!(h.chunked && h.content_length));
  size_t te = h.headers.count("transfer-encoding");
  size_t cl = h.headers.count("content-length");
  if (te > 0) {
    require(h.chunked);
    std::string_view last;
    for (const auto& f : h.headers) {
      if (iequals(f.name, "transfer-encoding")) {
        sluice::http::for_each_token(f.value, [&](std::string_view t) { last = t; });
      }
    }
    require(iequals(last, "chunked"));
  } else {
    require(!h.chunked);
  }
  if (cl > 0 && te == 0) {
    require(h.content_length.has_value());
    for (const auto& f : h.headers) {
      if (!iequals(f.name, "content-length")) continue;
      require(all_digits(f.value));
      if (f.value.size() < 20) require(to_number(f.value) == *h.content_length);
    }
  }
  if (no_body) require(m.body.empty());
  if (h.content_length) {
    require(m.body.size() <= *h.content_length);
    if (m.complete && !m.body.empty()) require(m.body.size() == *h.content_length);
  }
  if (!h.chunked) require(m.trailers == 0);
}

void check_reencode(const MessageHead& h) {
  std::string wire;
  encode_response_head(h, wire);
  Recorder rec;
  Parser parser(Parser::Kind::kResponse, kWideLimits, rec);
  size_t consumed = 0;
  Parser::Outcome o = parser.execute(wire, &consumed);
  require(o != Parser::Outcome::kError && o != Parser::Outcome::kStopped);
  require(rec.messages.size() == 1);
  const MessageHead& again = rec.messages.front().head;
  require(again.status == h.status);
  require(again.version_minor == 1);
  require(again.headers.size() == h.headers.size());
  auto a = h.headers.begin();
  for (const auto& f : again.headers) {
    require(f.name == a->name && f.value == a->value);
    ++a;
  }
  require(again.chunked == h.chunked);
  require(again.content_length == h.content_length);
}

bool same_message(const Message& a, const Message& b) {
  if (a.head.status != b.head.status || a.head.reason != b.head.reason) return false;
  if (a.head.version_minor != b.head.version_minor) return false;
  if (a.head.chunked != b.head.chunked || a.head.content_length != b.head.content_length) {
    return false;
  }
  if (a.head.headers.size() != b.head.headers.size()) return false;
  auto it = b.head.headers.begin();
  for (const auto& f : a.head.headers) {
    if (f.name != it->name || f.value != it->value) return false;
    ++it;
  }
  return a.body == b.body && a.trailers == b.trailers && a.complete == b.complete;
}

std::vector<size_t> cuts_for(uint8_t selector, size_t size) {
  std::vector<size_t> cuts;
  switch (selector & 3) {
    case 0:
      break;
    case 1:
      cuts.push_back(selector >> 2);
      break;
    case 2: {
      size_t n = (selector >> 2) % 16 + 1;
      for (size_t done = 0; done < size; done += n) cuts.push_back(n);
      break;
    }
    default:
      if (size <= 4096) cuts.assign(size, 1);
      break;
  }
  return cuts;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  bool no_body = (data[1] & 1) != 0;
  std::string_view input(reinterpret_cast<const char*>(data) + 2, size - 2);
  Result split = run(input, cuts_for(data[0], input.size()), no_body);
  for (const Message& m : split.messages) {
    check_message(m, no_body);
    check_reencode(m.head);
  }
  Result whole = run(input, {}, no_body);
  // Known imprecision: the head size is counted per callback, so where the limit trips
  // depends on the reads (fixed in the parser; regressions are in the corpus). Compare only runs
  // clear of limits.
  if (whole.hit_limit || split.hit_limit) return 0;
  require(whole.last == split.last);
  require(whole.error_status == split.error_status);
  require(whole.finished == split.finished);
  require(whole.messages.size() == split.messages.size());
  for (size_t i = 0; i < whole.messages.size(); ++i) {
    require(same_message(whole.messages[i], split.messages[i]));
  }
  return 0;
}
