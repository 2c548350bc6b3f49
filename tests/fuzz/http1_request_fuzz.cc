// Fuzz target for the request path: the strict HTTP/1.x request parser, the encoder that
// writes the upstream head, and the router's target/host handling.
//
// The first input byte picks how the rest is cut into reads (one piece, a split point,
// fixed-size pieces, byte by byte); the same bytes are also parsed in one piece and both
// runs must agree. Every message is checked against the framing rules a proxy relies on
// to not be desynchronised from its upstream. Any violated invariant traps.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <re2/re2.h>

#include "http/headers.h"
#include "http/http1/encoder.h"
#include "http/http1/parser.h"
#include "http/message.h"
#include "proxy/http/route_config.h"
#include "proxy/http/router.h"

namespace {

using sluice::http::HeaderMap;
using sluice::http::iequals;
using sluice::http::MessageHead;
using sluice::http::http1::encode_request_head;
using sluice::http::http1::Parser;
using sluice::http::http1::ParserCallbacks;
using sluice::http::http1::ParserLimits;
namespace router = sluice::proxy::http;

constexpr size_t kMaxMessages = 16;

// Small limits so the fuzzer reaches them with short inputs.
constexpr ParserLimits kLimits{2048, 32, 512};
constexpr ParserLimits kWideLimits{1 << 20, 1000, 1 << 20};

void require(bool cond) {
  if (!cond) __builtin_trap();
}

bool allowed_request_status(int status) {
  switch (status) {
    case 400:
    case 408:
    case 413:
    case 414:
    case 431:
    case 501:
    case 505:
      return true;
    default:
      return false;
  }
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
  bool hit_limit = false;  // a size limit rejected the input
};

// Feeds `input` in pieces of the given sizes (the last piece takes what is left), the way
// the connection does: unconsumed bytes stay buffered and are offered again after resume().
Result run(std::string_view input, const std::vector<size_t>& cuts) {
  Recorder rec;
  Parser parser(Parser::Kind::kRequest, kLimits, rec);
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
          // The rest of the stream is not HTTP.
          require(!rec.messages.empty());
          done = true;
          break;
        case Parser::Outcome::kStopped:
          require(false);  // on_head never stops
          break;
        case Parser::Outcome::kError:
          r.error_status = parser.error().status;
          require(allowed_request_status(r.error_status));
          r.hit_limit = r.error_status == 414 || r.error_status == 431;
          require(!parser.error().reason.empty());
          done = true;
          break;
      }
    }
  }
  if (!done) {
    Parser::Outcome o = parser.finish();
    if (o == Parser::Outcome::kError) {
      require(allowed_request_status(parser.error().status));
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

// What a proxy must be able to rely on for an accepted request head.
void check_head(const MessageHead& h) {
  require(!h.method.empty());
  require(!h.target.empty());
  require(h.target.size() <= kLimits.max_uri_bytes);
  for (unsigned char c : h.target) require(c > 0x20 && c != 0x7f);
  require(h.version_minor == 0 || h.version_minor == 1);
  require(h.headers.size() <= kLimits.max_headers);
  for (const auto& f : h.headers) {
    require(!f.name.empty());
    for (unsigned char c : f.name) require(c > 0x20 && c < 0x7f && c != ':');
    for (unsigned char c : f.value) require(c == '\t' || (c >= 0x20 && c != 0x7f));
    if (!f.value.empty()) {
      require(f.value.front() != ' ' && f.value.front() != '\t');
      require(f.value.back() != ' ' && f.value.back() != '\t');
    }
  }
  // Exactly one Host on 1.1, never several.
  size_t hosts = h.headers.count("host");
  require(hosts <= 1);
  if (h.version_minor == 1) require(hosts == 1);
  // Framing: one unambiguous body length (RFC 9112 §6.1, §6.3).
  require(!(h.chunked && h.content_length));
  size_t te = h.headers.count("transfer-encoding");
  size_t cl = h.headers.count("content-length");
  if (te > 0) {
    require(h.chunked);
    require(cl == 0);
    require(h.version_minor == 1);
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
  if (cl > 0) {
    require(h.content_length.has_value());
    for (const auto& f : h.headers) {
      if (!iequals(f.name, "content-length")) continue;
      require(all_digits(f.value));
      if (f.value.size() < 20) require(to_number(f.value) == *h.content_length);
    }
  } else {
    require(!h.content_length);
  }
}

void check_message(const Message& m) {
  check_head(m.head);
  if (m.complete) {
    if (m.head.content_length) require(m.body.size() == *m.head.content_length);
    if (!m.head.chunked) require(m.trailers == 0);
    if (!m.head.chunked && !m.head.content_length) require(m.body.empty());
  } else if (m.head.content_length) {
    require(m.body.size() < *m.head.content_length);
  }
}

// The head as it goes upstream must parse again to the same request.
void check_reencode(const MessageHead& original) {
  MessageHead h = original;
  if (h.headers.count("host") == 0) h.headers.add("Host", "upstream");  // 1.0 without Host
  std::string wire;
  encode_request_head(h, wire);
  Recorder rec;
  Parser parser(Parser::Kind::kRequest, kWideLimits, rec);
  size_t consumed = 0;
  Parser::Outcome o = parser.execute(wire, &consumed);
  require(o != Parser::Outcome::kError && o != Parser::Outcome::kStopped);
  require(consumed <= wire.size());
  require(rec.messages.size() == 1);
  const MessageHead& again = rec.messages.front().head;
  require(again.method == h.method);
  require(again.target == h.target);
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

const router::HttpOptions& route_table() {
  static const router::HttpOptions* options = [] {
    auto* o = new router::HttpOptions();
    auto route = [](router::RouteMatch::PathKind kind, std::string path) {
      router::Route r;
      r.match.path_kind = kind;
      r.match.path = std::move(path);
      r.cluster = "c";
      return r;
    };
    router::VirtualHost exact{"exact", {"example.com", "Example.ORG"}, {}};
    exact.routes.push_back(route(router::RouteMatch::PathKind::kExact, "/exact"));
    router::Route re = route(router::RouteMatch::PathKind::kRegex, "");
    re.match.regex = std::make_shared<const re2::RE2>("/re/[a-z0-9]+(/.*)?");
    exact.routes.push_back(re);
    router::Route post = route(router::RouteMatch::PathKind::kPrefix, "/api/");
    post.match.methods = {"POST", "PUT"};
    post.match.headers.push_back({"x-tenant", std::string("a")});
    post.match.query.push_back({"v", std::nullopt});
    post.match.query.push_back({"k", std::string("1")});
    exact.routes.push_back(post);
    exact.routes.push_back(route(router::RouteMatch::PathKind::kPrefix, "/"));
    router::VirtualHost suffix{"suffix", {"*.example.com"}, {}};
    suffix.routes.push_back(route(router::RouteMatch::PathKind::kPrefix, "/s"));
    router::VirtualHost longer{"longer", {"*.a.example.com", "[::1]"}, {}};
    longer.routes.push_back(route(router::RouteMatch::PathKind::kPrefix, "/"));
    router::VirtualHost all{"all", {"*"}, {}};
    all.routes.push_back(route(router::RouteMatch::PathKind::kPrefix, "/"));
    o->virtual_hosts = {exact, suffix, longer, all};
    return o;
  }();
  return *options;
}

bool within(std::string_view part, std::string_view whole) {
  return part.data() >= whole.data() && part.data() + part.size() <= whole.data() + whole.size();
}

void check_routing(const MessageHead& h) {
  std::string_view target = h.target;
  std::string_view path, query;
  router::split_target(target, &path, &query);
  require(within(path, target) || path == "/");
  require(query.empty() || within(query, target));
  require(path.find('?') == std::string_view::npos);
  const std::string* host = h.headers.get("host");
  std::string_view name = host ? router::host_without_port(*host) : std::string_view();
  if (host) {
    require(name.size() <= host->size());
    require(std::string_view(*host).substr(0, name.size()) == name);
  }
  const router::HttpOptions& options = route_table();
  const router::VirtualHost* vh = router::match_virtual_host(options, name);
  require(vh != nullptr);  // "*" catches everything
  router::RequestView view{name, h.method, path, query, &h.headers};
  const router::Route* route = router::match_route(*vh, view);
  if (route) require(route >= vh->routes.data() && route < vh->routes.data() + vh->routes.size());
  if (vh->name == "exact" || vh->name == "longer" || vh->name == "all") {
    if (!path.empty() && path.front() == '/') require(route != nullptr);
  }
}

bool same_message(const Message& a, const Message& b) {
  if (a.head.method != b.head.method || a.head.target != b.head.target) return false;
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

// How the reads are cut, from the selector byte.
std::vector<size_t> cuts_for(uint8_t selector, size_t size) {
  std::vector<size_t> cuts;
  switch (selector & 3) {
    case 0:  // one piece
      break;
    case 1:  // the first few bytes, then the rest
      cuts.push_back(selector >> 2);
      break;
    case 2: {  // fixed-size pieces
      size_t n = (selector >> 2) % 16 + 1;
      for (size_t done = 0; done < size; done += n) cuts.push_back(n);
      break;
    }
    default:  // byte by byte (bounded)
      if (size <= 4096) cuts.assign(size, 1);
      break;
  }
  return cuts;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  std::string_view input(reinterpret_cast<const char*>(data) + 1, size - 1);
  Result split = run(input, cuts_for(data[0], input.size()));
  for (const Message& m : split.messages) {
    check_message(m);
    check_reencode(m.head);
    check_routing(m.head);
  }
  // Parsing must not depend on how the bytes were cut into reads.
  Result whole = run(input, {});
  // Known imprecision: the head and target sizes are checked per callback, so where a limit
  // trips depends on the reads (fixed in the parser; regressions are in the corpus). Compare only
  // runs clear of limits.
  if (whole.hit_limit || split.hit_limit) return 0;
  require(whole.last == split.last);
  require(whole.error_status == split.error_status);
  require(whole.messages.size() == split.messages.size());
  for (size_t i = 0; i < whole.messages.size(); ++i) {
    require(same_message(whole.messages[i], split.messages[i]));
  }
  return 0;
}
