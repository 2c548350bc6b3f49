#include "proxy/http/header_mutation.h"

#include <gtest/gtest.h>

namespace sluice::proxy::http {
namespace {

using sluice::http::HeaderMap;
using sluice::http::MessageHead;

uint64_t counting_random() {
  thread_local uint64_t n = 0;
  return 0x1111111111111111ull * (++n % 15);
}

std::string dump(const HeaderMap& h) {
  std::string out;
  for (const auto& f : h) out += f.name + ": " + f.value + "\n";
  return out;
}

HeaderMap make(std::initializer_list<std::pair<const char*, const char*>> fields) {
  HeaderMap h;
  for (auto [n, v] : fields) h.add(n, v);
  return h;
}

TEST(HeaderMutation, RemovesHopByHop) {
  struct Case {
    HeaderMap in;
    bool keep_upgrade;
    const char* out;
  };
  const Case cases[] = {
      {make({{"Host", "a"},
             {"Connection", "keep-alive, X-Private"},
             {"X-Private", "1"},
             {"Keep-Alive", "timeout=5"},
             {"Accept", "*/*"}}),
       false, "Host: a\nAccept: */*\n"},
      {make({{"TE", "trailers"},
             {"Trailer", "x"},
             {"Transfer-Encoding", "chunked"},
             {"Proxy-Connection", "keep-alive"},
             {"Upgrade", "websocket"},
             {"A", "b"}}),
       false, "A: b\n"},
      {make({{"Connection", "Upgrade"}, {"Upgrade", "websocket"}, {"A", "b"}}), true,
       "Upgrade: websocket\nA: b\n"},
      {make({{"Connection", "close"}, {"A", "b"}, {"a", "c"}}), false, "A: b\na: c\n"},
      {make({{"connection", "a"}, {"A", "b"}, {"Connection", "c"}, {"c", "d"}, {"e", "f"}}), false,
       "e: f\n"},
      // More names than the few read once: each field is looked up in the Connection fields.
      {make({{"Connection", "t1, t2, t3, t4, t5, t6, t7, t8"},
             {"T9", "x"},
             {"Connection", " t9 ,t10"},
             {"t1", "x"},
             {"T10", "x"},
             {"t11", "kept"}}),
       false, "t11: kept\n"},
      {make({{"Connection", "t1, t2, t3, t4, t5, t6, t7, t8"}, {"T8", "x"}, {"t9", "kept"}}), false,
       "t9: kept\n"},
  };
  for (const Case& c : cases) {
    HeaderMap h = c.in;
    remove_hop_by_hop(h, c.keep_upgrade);
    EXPECT_EQ(dump(h), c.out) << dump(c.in);
  }
}

TEST(HeaderMutation, UpstreamTarget) {
  struct Case {
    const char* prefix;
    std::optional<std::string> rewrite;
    const char* method;
    const char* target;
    const char* out;
  };
  const Case cases[] = {
      {"/", std::nullopt, "GET", "/a/b?x=1", "/a/b?x=1"},
      {"/api/", std::string("/v2/"), "GET", "/api/users?id=3", "/v2/users?id=3"},
      {"/api", std::string(""), "GET", "/api", "/"},
      {"/api/", std::string("v2/"), "GET", "/api/x", "/v2/x"},
      {"/", std::nullopt, "CONNECT", "example.com:443", "example.com:443"},
      {"/", std::nullopt, "GET", "http://h.example/p?q", "/p?q"},
  };
  for (const Case& c : cases) {
    Route r;
    r.match.path = c.prefix;
    r.prefix_rewrite = c.rewrite;
    MessageHead req;
    req.method = c.method;
    req.target = c.target;
    EXPECT_EQ(upstream_target(r, req), c.out) << c.target;
  }
}

TEST(HeaderMutation, ToUpstream) {
  struct Case {
    const char* name;
    HeaderMap in;
    bool trust;
    bool chunked;
    std::optional<uint64_t> content_length;
    const char* out;
  };
  const char* tp = "00-0123456789abcdef0123456789abcdef-0123456789abcdef-01";
  const Case cases[] = {
      {"replaces forwarded headers of an untrusted hop",
       make({{"Host", "a.example"},
             {"X-Forwarded-For", "6.6.6.6"},
             {"X-Request-Id", "r1"},
             {"Expect", "100-continue"},
             {"Connection", "keep-alive"},
             {"traceparent", tp}}),
       false, false, 5,
       "Host: a.example\nX-Request-Id: r1\nX-Forwarded-For: 10.1.2.3\nX-Forwarded-Proto: "
       "http\nX-Forwarded-Host: a.example\ntraceparent: "
       "00-0123456789abcdef0123456789abcdef-1111111111111111-01\nX-Added: yes\n"
       "Content-Length: 5\n"},
      {"appends to a trusted hop's",
       make({{"Host", "a.example"},
             {"X-Forwarded-For", "6.6.6.6"},
             {"X-Forwarded-Proto", "https"},
             {"X-Request-Id", "r1"},
             {"traceparent", tp},
             {"X-Remove", "x"}}),
       true, true, std::nullopt,
       "Host: a.example\nX-Forwarded-Proto: https\nX-Request-Id: r1\nX-Forwarded-For: 6.6.6.6, "
       "10.1.2.3\nX-Forwarded-Host: a.example\ntraceparent: "
       "00-0123456789abcdef0123456789abcdef-1111111111111111-01\nX-Added: yes\n"
       "Transfer-Encoding: chunked\n"},
  };
  for (const Case& c : cases) {
    Route r;
    r.cluster = "app";
    r.request_headers_to_add = {{"X-Added", "yes"}};
    r.request_headers_to_remove = {"x-remove"};
    MessageHead req;
    req.method = "POST";
    req.target = "/";
    req.headers = c.in;
    req.chunked = c.chunked;
    req.content_length = c.content_length;
    UpstreamIds ids;
    auto one = []() -> uint64_t { return 0x1111111111111110ull; };
    to_upstream(r, req, DownstreamInfo{"10.1.2.3", c.trust, true}, false, one, ids);
    EXPECT_EQ(dump(req.headers), c.out) << c.name;
    EXPECT_EQ(ids.request_id, "r1") << c.name;
    EXPECT_EQ(ids.traceparent, *req.headers.get("traceparent")) << c.name;
  }
}

TEST(HeaderMutation, NewIdsAndDefaultHost) {
  Route r;
  r.cluster = "app";
  MessageHead req;
  req.method = "GET";
  req.version_minor = 0;
  UpstreamIds ids;
  to_upstream(r, req, DownstreamInfo{"10.1.2.3", false, true}, false, counting_random, ids);
  EXPECT_EQ(ids.request_id.size(), 36u);
  EXPECT_EQ(ids.request_id[14], '4');  // version 4
  EXPECT_EQ(*req.headers.get("x-request-id"), ids.request_id);
  EXPECT_EQ(ids.traceparent.size(), 55u);
  EXPECT_EQ(ids.traceparent.substr(0, 3), "00-");
  EXPECT_EQ(ids.traceparent.substr(52), "-01");
  EXPECT_EQ(*req.headers.get("host"), "app");
  // An invalid incoming traceparent starts a new trace.
  EXPECT_NE(next_traceparent(nullptr, counting_random).substr(3, 32),
            std::string("00000000000000000000000000000000"));
  std::string zero = "00-00000000000000000000000000000000-0123456789abcdef-01";
  EXPECT_NE(next_traceparent(&zero, counting_random).substr(3, 32), zero.substr(3, 32));
}

uint64_t fixed_random() {
  thread_local int n = 0;
  constexpr uint64_t kValues[] = {0x0123456789abcdefull, 0xfedcba9876543210ull,
                                  0x00000000000000a0ull};
  return kValues[n++ % 3];
}

// The ids, digit for digit: random bits in lower-case hex, a v4 UUID's version and variant.
TEST(HeaderMutation, IdsExact) {
  EXPECT_EQ(random_request_id(fixed_random), "01234567-89ab-4def-bedc-ba9876543210");
  EXPECT_EQ(next_traceparent(nullptr, fixed_random),
            "00-00000000000000a00123456789abcdef-fedcba9876543211-01");
  std::string incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
  EXPECT_EQ(next_traceparent(&incoming, fixed_random),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00000000000000a1-00");
}

// A client's own x-forwarded-client-cert never reaches the upstream: on a cleartext
// connection it is dropped, on a TLS one it is replaced by what the certificate proved, and
// X-Forwarded-Proto says https.
TEST(HeaderMutation, ClientCertificateHeader) {
  struct Case {
    const char* name;
    bool secure;
    const char* proved;
    const char* want_xfcc;  // nullptr: absent
    const char* want_proto;
  };
  const Case cases[] = {
      {"cleartext, spoofed", false, "", nullptr, "http"},
      {"TLS without a client certificate, spoofed", true, "", nullptr, "https"},
      {"TLS with a verified certificate", true, "Hash=ab;Subject=\"CN=c\"",
       "Hash=ab;Subject=\"CN=c\"", "https"},
  };
  for (const Case& c : cases) {
    Route r;
    r.cluster = "app";
    MessageHead req;
    req.method = "GET";
    req.headers = make({{"Host", "a"},
                        {"X-Forwarded-Client-Cert", "Hash=forged;Subject=\"CN=admin\""},
                        {"x-forwarded-client-cert", "second"}});
    UpstreamIds ids;
    DownstreamInfo d{"10.1.2.3", false, false, c.secure, c.proved};
    to_upstream(r, req, d, false, counting_random, ids);
    const std::string* xfcc = req.headers.get("x-forwarded-client-cert");
    if (c.want_xfcc) {
      ASSERT_NE(xfcc, nullptr) << c.name;
      EXPECT_EQ(*xfcc, c.want_xfcc) << c.name;
    } else {
      EXPECT_EQ(xfcc, nullptr) << c.name;
    }
    EXPECT_EQ(req.headers.count("x-forwarded-client-cert"), c.want_xfcc ? 1u : 0u) << c.name;
    EXPECT_EQ(*req.headers.get("x-forwarded-proto"), c.want_proto) << c.name;
  }
}

TEST(HeaderMutation, ToDownstream) {
  Route r;
  r.response_headers_to_add = {{"X-Served-By", "sluice"}};
  r.response_headers_to_remove = {"server"};
  MessageHead resp;
  resp.status = 200;
  resp.headers = make({{"Server", "x"},
                       {"Connection", "keep-alive"},
                       {"Keep-Alive", "timeout=5"},
                       {"Content-Length", "3"},
                       {"Transfer-Encoding", "chunked"}});
  to_downstream(r, resp, false);
  EXPECT_EQ(dump(resp.headers), "Content-Length: 3\nX-Served-By: sluice\n");
}

TEST(HeaderMutation, ForbiddenTrailers) {
  struct Case {
    HeaderMap in;
    size_t removed;
    const char* out;
  };
  const Case cases[] = {
      {make({{"X-Checksum", "abc"}, {"Server-Timing", "db;dur=5"}}), 0,
       "X-Checksum: abc\nServer-Timing: db;dur=5\n"},
      {make({{"Content-Length", "5"},
             {"Transfer-Encoding", "chunked"},
             {"Host", "evil"},
             {"X-Checksum", "abc"}}),
       3, "X-Checksum: abc\n"},
      {make({{"Connection", "X-Hop"},
             {"X-Hop", "1"},
             {"Keep-Alive", "t"},
             {"Proxy-Connection", "k"},
             {"TE", "t"},
             {"Trailer", "x"},
             {"Upgrade", "h2c"},
             {"ok", "1"}}),
       7, "ok: 1\n"},
      {make({{"Content-Encoding", "gzip"},
             {"Content-Type", "text/html"},
             {"Content-Range", "bytes 0-1/2"},
             {"Authorization", "Basic x"},
             {"Proxy-Authorization", "Basic y"},
             {"Cookie", "a=b"},
             {"Set-Cookie", "a=b"},
             {"Expect", "100-continue"},
             {"Max-Forwards", "1"},
             {"Cache-Control", "no-store"},
             {"grpc-status", "0"}}),
       10, "grpc-status: 0\n"},
  };
  for (const Case& c : cases) {
    HeaderMap h = c.in;
    EXPECT_EQ(remove_forbidden_trailers(h), c.removed) << dump(c.in);
    EXPECT_EQ(dump(h), c.out);
  }
}

}  // namespace
}  // namespace sluice::proxy::http
