#include "tls/client_hello.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "client_hello_fixtures.h"

namespace sluice::tls {
namespace {

using Bytes = std::vector<uint8_t>;
using Outcome = HelloParse::Outcome;

Bytes from_hex(std::string_view hex) {
  Bytes out;
  auto nibble = [](char c) { return c <= '9' ? c - '0' : c - 'a' + 10; };
  for (size_t i = 0; i + 1 < hex.size(); i += 2) {
    out.push_back(static_cast<uint8_t>(nibble(hex[i]) << 4 | nibble(hex[i + 1])));
  }
  return out;
}

Bytes from_text(std::string_view text) {
  return Bytes(text.begin(), text.end());
}

void put16(Bytes& b, size_t v) {
  b.push_back(static_cast<uint8_t>(v >> 8));
  b.push_back(static_cast<uint8_t>(v));
}

void put24(Bytes& b, size_t v) {
  b.push_back(static_cast<uint8_t>(v >> 16));
  put16(b, v);
}

void append(Bytes& b, const Bytes& more) {
  b.insert(b.end(), more.begin(), more.end());
}

// One record per fragment size in `sizes` (the last one takes what is left) around the
// handshake message of a single-record ClientHello.
Bytes refragment(const Bytes& single, std::vector<size_t> sizes) {
  Bytes message(single.begin() + 5, single.end());
  Bytes out;
  size_t at = 0;
  for (size_t i = 0; at < message.size(); ++i) {
    size_t n = i < sizes.size() ? sizes[i] : message.size() - at;
    n = std::min(n, message.size() - at);
    out.insert(out.end(), {0x16, 0x03, 0x01});
    put16(out, n);
    out.insert(out.end(), message.begin() + at, message.begin() + at + n);
    at += n;
  }
  return out;
}

// The pieces of a ClientHello built by hand, for the cases no real client sends.
struct Build {
  uint8_t record_type = 0x16;
  uint16_t record_version = 0x0301;
  uint8_t handshake_type = 1;
  uint8_t session_id = 32;
  size_t suites = 4;
  uint8_t compressions = 1;
  bool with_extensions = true;
  Bytes extensions;  // each already framed (ext() below)
  // Overrides, when set, of the lengths the builder would write.
  long record_length = -1;
  long message_length = -1;
  long extensions_length = -1;
  size_t cut = 0;  // bytes dropped from the end of the body

  Bytes body() const {
    Bytes b{0x03, 0x03};
    b.insert(b.end(), 32, 0xab);  // random
    b.push_back(session_id);
    b.insert(b.end(), session_id, 0x11);
    put16(b, suites);
    for (size_t i = 0; i < suites / 2; ++i) put16(b, 0x1301 + i);
    b.insert(b.end(), suites % 2, 0x13);
    b.push_back(compressions);
    b.insert(b.end(), compressions, 0x00);
    if (with_extensions) {
      put16(b, extensions_length >= 0 ? size_t(extensions_length) : extensions.size());
      append(b, extensions);
    }
    b.resize(b.size() - cut);
    return b;
  }
  Bytes bytes() const {
    Bytes body_bytes = body();
    Bytes message{handshake_type};
    put24(message, message_length >= 0 ? size_t(message_length) : body_bytes.size());
    append(message, body_bytes);
    Bytes out{record_type, uint8_t(record_version >> 8), uint8_t(record_version)};
    put16(out, record_length >= 0 ? size_t(record_length) : message.size());
    append(out, message);
    return out;
  }
};

Bytes ext(uint16_t type, const Bytes& data) {
  Bytes b;
  put16(b, type);
  put16(b, data.size());
  append(b, data);
  return b;
}

Bytes sni_ext(std::string_view name) {
  Bytes entry{0x00};
  put16(entry, name.size());
  append(entry, from_text(name));
  Bytes list;
  put16(list, entry.size());
  append(list, entry);
  return ext(0, list);
}

HelloParse parse(const Bytes& b) {
  return parse_client_hello(b);
}

// --- real ClientHellos -------------------------------------------------------------------

struct Captured {
  const char* name;
  const char* hex;
  std::string server_name;
  std::vector<std::string> alpn;
  std::vector<uint16_t> versions;
};

const std::vector<Captured>& captured() {
  static const std::vector<Captured> all = {
      {"tls13_sni_alpn", testing::kTls13SniAlpn, "a.example.com", {"h2", "http/1.1"}, {0x0304}},
      {"tls12_sni", testing::kTls12Sni, "www.example.org", {}, {}},
      {"tls12_no_sni", testing::kTls12NoSni, "", {}, {}},
      {"tls13_no_sni", testing::kTls13NoSni, "", {}, {0x0304}},
      {"default_sni_alpn",
       testing::kDefaultSniAlpn,
       "mixed.case.example.com",
       {"http/1.1"},
       {0x0304, 0x0303, 0x0302, 0x0301}},
  };
  return all;
}

void expect_hello(const HelloParse& p, const Captured& c, size_t examined) {
  ASSERT_EQ(p.outcome, Outcome::kComplete) << c.name << ": " << p.reason;
  EXPECT_EQ(p.reason, "") << c.name;
  EXPECT_EQ(p.bytes_examined, examined) << c.name;
  EXPECT_EQ(p.hello.server_name, c.server_name) << c.name;
  EXPECT_EQ(p.hello.alpn, c.alpn) << c.name;
  EXPECT_EQ(p.hello.supported_versions, c.versions) << c.name;
  EXPECT_EQ(p.hello.legacy_version, 0x0303) << c.name;
}

TEST(ClientHello, CapturedHellosParseWhole) {
  for (const Captured& c : captured()) {
    Bytes b = from_hex(c.hex);
    expect_hello(parse(b), c, b.size());
  }
}

TEST(ClientHello, BytesAfterTheHelloAreNotExamined) {
  for (const Captured& c : captured()) {
    Bytes b = from_hex(c.hex);
    size_t size = b.size();
    // A TLS 1.3 client's ChangeCipherSpec and early data may follow; so may garbage.
    b.insert(b.end(), {0x14, 0x03, 0x03, 0x00, 0x01, 0x01, 'x', 'y'});
    expect_hello(parse(b), c, size);
  }
}

TEST(ClientHello, EveryPrefixNeedsMore) {
  for (const Captured& c : captured()) {
    Bytes b = from_hex(c.hex);
    for (size_t n = 0; n < b.size(); ++n) {
      HelloParse p = parse_client_hello(std::span(b).first(n));
      ASSERT_EQ(p.outcome, Outcome::kNeedMore) << c.name << " prefix " << n << ": " << p.reason;
      EXPECT_EQ(p.bytes_examined, n) << c.name;
      EXPECT_EQ(p.hello.server_name, "");
    }
  }
}

TEST(ClientHello, SplitAcrossTwoRecordsAtEveryByte) {
  for (const Captured& c : captured()) {
    Bytes b = from_hex(c.hex);
    size_t message = b.size() - 5;
    for (size_t first = 1; first < message; ++first) {
      Bytes two = refragment(b, {first});
      ASSERT_EQ(two.size(), b.size() + 5);
      expect_hello(parse(two), c, two.size());
      if (testing::kTls13SniAlpn != c.hex) continue;
      // Every prefix of one of them, the second record's header included.
      for (size_t n = 0; n < two.size(); ++n) {
        ASSERT_EQ(parse_client_hello(std::span(two).first(n)).outcome, Outcome::kNeedMore)
            << c.name << " split " << first << " prefix " << n;
      }
    }
  }
}

TEST(ClientHello, OneByteRecords) {
  for (const Captured& c : captured()) {
    Bytes b = from_hex(c.hex);
    Bytes many = refragment(b, std::vector<size_t>(b.size(), 1));
    ASSERT_EQ(many.size(), (b.size() - 5) * 6);
    expect_hello(parse(many), c, many.size());
  }
}

// --- not TLS -----------------------------------------------------------------------------

TEST(ClientHello, NotTls) {
  struct Case {
    Bytes input;
    size_t examined;
  };
  const std::vector<Case> cases = {
      {from_text("GET / HTTP/1.1\r\nHost: a\r\n\r\n"), 1},
      {from_text("SSH-2.0-OpenSSH_9.2\r\n"), 1},
      {{0x16, 0x04, 0x01, 0x00, 0x10}, 2},        // handshake byte, then not version 3.x
      {{0x80, 0x2e, 0x01, 0x00, 0x02}, 1},        // an SSLv2-format ClientHello
      {{0x17, 0x03, 0x03, 0x00, 0x05, 1, 2}, 1},  // application data first
      {{0x00}, 1},
  };
  for (const Case& c : cases) {
    HelloParse p = parse(c.input);
    EXPECT_EQ(p.outcome, Outcome::kNotTls);
    EXPECT_EQ(p.reason, "not a TLS handshake record");
    EXPECT_EQ(p.bytes_examined, c.examined);
  }
}

// --- malformed ---------------------------------------------------------------------------

TEST(ClientHello, MalformedFraming) {
  Bytes real = from_hex(testing::kTls13SniAlpn);
  struct Case {
    const char* what;
    Bytes input;
    std::string_view reason;
    size_t examined;
  };
  Bytes second_not_handshake = refragment(real, {10});
  second_not_handshake[5 + 10] = 0x15;  // an alert where the second fragment should be
  Bytes bad_version = real;
  bad_version[2] = 0x05;
  Bytes empty_record = {0x16, 0x03, 0x01, 0x00, 0x00};
  Bytes huge_record = {0x16, 0x03, 0x01, 0x40, 0x01};
  Bytes server_hello = real;
  server_hello[5] = 0x02;
  Bytes longer_record = real;  // the record claims one byte more than the message has
  longer_record[4] += 1;
  longer_record.push_back(0x00);
  Build empty_message;
  empty_message.message_length = 0;
  empty_message.record_length = 4;
  Bytes empty_message_bytes = empty_message.bytes();
  empty_message_bytes.resize(9);
  const std::vector<Case> cases = {
      {"a non-handshake record inside the hello", second_not_handshake,
       "a record other than handshake inside the ClientHello", 15},
      {"record version 3.5", bad_version, "record version is not TLS", 3},
      {"empty record", empty_record, "empty handshake record", 5},
      {"record over 2^14", huge_record, "record longer than 2^14 bytes", 5},
      {"a ServerHello", server_hello, "the first handshake message is not a ClientHello", 6},
      {"record longer than the hello", longer_record, "bytes after the ClientHello in its record",
       9},
      {"empty hello", empty_message_bytes, "ClientHello is empty", 9},
  };
  for (const Case& c : cases) {
    HelloParse p = parse(c.input);
    EXPECT_EQ(p.outcome, Outcome::kMalformed) << c.what;
    EXPECT_EQ(p.reason, c.reason) << c.what;
    EXPECT_EQ(p.bytes_examined, c.examined) << c.what;
    EXPECT_EQ(p.hello.server_name, "") << c.what;
  }
}

TEST(ClientHello, LengthsOverflowing) {
  struct Case {
    const char* what;
    Build build;
    std::string_view reason;
  };
  std::vector<Case> cases;
  auto add = [&cases](const char* what, std::string_view reason, auto edit) {
    Build b;
    b.extensions = sni_ext("a.example.com");
    edit(b);
    cases.push_back({what, b, reason});
  };
  add("session id of 33", "session id longer than 32 bytes", [](Build& b) { b.session_id = 33; });
  add("odd cipher suites", "cipher suites length is invalid", [](Build& b) { b.suites = 3; });
  add("no cipher suite", "cipher suites length is invalid", [](Build& b) { b.suites = 0; });
  add("no compression", "no compression method", [](Build& b) { b.compressions = 0; });
  add("extensions longer than the hello", "extensions length does not match the ClientHello",
      [](Build& b) { b.extensions_length = 0xffff; });
  add("extensions shorter than the hello", "extensions length does not match the ClientHello",
      [](Build& b) { b.extensions_length = 3; });
  add("extension overruns", "extension overruns the ClientHello", [](Build& b) {
    b.extensions = {0x00, 0x10, 0xff, 0xff, 0x00};
  });
  add("server_name entry overruns", "server_name entry overruns its extension", [](Build& b) {
    b.extensions = ext(0, {0x00, 0x04, 0x00, 0x00, 0x09, 'a'});
  });
  add("server_name list length", "server_name list length is inconsistent", [](Build& b) {
    b.extensions = ext(0, {0x00, 0x09, 0x00, 0x00, 0x01, 'a'});
  });
  add("empty server_name extension", "server_name list length is inconsistent",
      [](Build& b) { b.extensions = ext(0, {}); });
  add("ALPN list length", "ALPN list length is inconsistent", [](Build& b) {
    b.extensions = ext(16, {0x00, 0x07, 0x02, 'h', '2'});
  });
  add("ALPN protocol overruns", "ALPN protocol overruns its extension", [](Build& b) {
    b.extensions = ext(16, {0x00, 0x03, 0x05, 'h', '2'});
  });
  add("supported_versions odd", "supported_versions length is inconsistent", [](Build& b) {
    b.extensions = ext(43, {0x03, 0x03, 0x04, 0x03});
  });
  add("supported_versions overruns", "supported_versions length is inconsistent", [](Build& b) {
    b.extensions = ext(43, {0x04, 0x03, 0x04});
  });
  add("hello ends in its compression methods", "ClientHello is cut short before its extensions",
      [](Build& b) {
        b.with_extensions = false;
        b.compressions = 2;
        b.cut = 1;
      });
  add("hello ends in its random", "ClientHello is cut short before its session id", [](Build& b) {
    b.with_extensions = false;
    b.session_id = 0;
    b.suites = 2;
    b.cut = 10;
  });
  for (const Case& c : cases) {
    HelloParse p = parse(c.build.bytes());
    EXPECT_EQ(p.outcome, Outcome::kMalformed) << c.what;
    EXPECT_EQ(p.reason, c.reason) << c.what;
    EXPECT_EQ(p.bytes_examined, c.build.bytes().size()) << c.what;
  }

  // A handshake length that could never fit is refused from the first nine bytes.
  Bytes huge = {0x16, 0x03, 0x01, 0x00, 0x04, 0x01, 0xff, 0xff, 0xff};
  HelloParse p = parse(huge);
  EXPECT_EQ(p.outcome, Outcome::kMalformed);
  EXPECT_EQ(p.reason, "ClientHello larger than 16 KiB");
  EXPECT_EQ(p.bytes_examined, 9u);
}

TEST(ClientHello, ServerNameRules) {
  struct Case {
    Bytes extensions;
    std::string_view reason;  // "" = complete
    std::string name;
  };
  Bytes two_hosts;
  {
    Bytes list;
    for (const char* n : {"a.example", "b.example"}) {
      list.push_back(0);
      put16(list, std::string_view(n).size());
      append(list, from_text(n));
    }
    Bytes framed;
    put16(framed, list.size());
    append(framed, list);
    two_hosts = ext(0, framed);
  }
  Bytes twice = sni_ext("a.example");
  append(twice, sni_ext("b.example"));
  Bytes other_type = ext(0, {0x00, 0x04, 0x01, 0x00, 0x01, 'a'});
  Bytes empty_host = ext(0, {0x00, 0x03, 0x00, 0x00, 0x00});
  Bytes alpn_twice = ext(16, {0x00, 0x03, 0x02, 'h', '2'});
  append(alpn_twice, ext(16, {0x00, 0x03, 0x02, 'h', '2'}));
  Bytes alpn_empty_name = ext(16, {0x00, 0x03, 0x00, 0x01, 'x'});
  Bytes versions_twice = ext(43, {0x02, 0x03, 0x04});
  append(versions_twice, ext(43, {0x02, 0x03, 0x04}));
  const std::vector<Case> cases = {
      {sni_ext("API.Example.COM"), "", "api.example.com"},
      {sni_ext("_srv.x-y.example"), "", "_srv.x-y.example"},
      {sni_ext("localhost"), "", "localhost"},
      {sni_ext("a.example."), "server_name is not a valid DNS host name", ""},
      {sni_ext("a..example"), "server_name is not a valid DNS host name", ""},
      {sni_ext("10.0.0.1"), "server_name is not a valid DNS host name", ""},
      {sni_ext("a b.example"), "server_name is not a valid DNS host name", ""},
      {sni_ext(std::string("a\0b.example", 11)), "server_name is not a valid DNS host name", ""},
      {sni_ext(std::string(64, 'a') + ".example"), "server_name is not a valid DNS host name", ""},
      {two_hosts, "server_name has two host_names", ""},
      {twice, "two server_name extensions", ""},
      {other_type, "server_name of a type other than host_name", ""},
      {empty_host, "server_name host_name is empty", ""},
      {alpn_twice, "two ALPN extensions", ""},
      {alpn_empty_name, "ALPN protocol name is empty", ""},
      {versions_twice, "two supported_versions extensions", ""},
  };
  for (const Case& c : cases) {
    Build b;
    b.extensions = c.extensions;
    HelloParse p = parse(b.bytes());
    if (c.reason.empty()) {
      ASSERT_EQ(p.outcome, Outcome::kComplete) << c.name << ": " << p.reason;
      EXPECT_EQ(p.hello.server_name, c.name);
    } else {
      EXPECT_EQ(p.outcome, Outcome::kMalformed) << c.reason;
      EXPECT_EQ(p.reason, c.reason);
      EXPECT_EQ(p.hello.server_name, "");
    }
  }
}

TEST(ClientHello, WithoutExtensionsOrWithUnknownOnes) {
  Build none;
  none.with_extensions = false;
  HelloParse p = parse(none.bytes());
  ASSERT_EQ(p.outcome, Outcome::kComplete) << p.reason;
  EXPECT_EQ(p.hello.server_name, "");
  EXPECT_TRUE(p.hello.alpn.empty());

  Build grease;  // GREASE and unknown extensions are skipped
  grease.extensions = ext(0x0a0a, {});
  append(grease.extensions, ext(0xfe0d, Bytes(40, 0x5a)));
  append(grease.extensions, sni_ext("x.example"));
  append(grease.extensions, ext(43, {0x04, 0x7a, 0x7a, 0x03, 0x04}));
  p = parse(grease.bytes());
  ASSERT_EQ(p.outcome, Outcome::kComplete) << p.reason;
  EXPECT_EQ(p.hello.server_name, "x.example");
  EXPECT_EQ(p.hello.supported_versions, (std::vector<uint16_t>{0x7a7a, 0x0304}));
}

// --- the 16 KiB bound --------------------------------------------------------------------

// A ClientHello made `total` bytes long on the wire (one record) with a padding extension.
Bytes padded_to(size_t total) {
  Build b;
  b.extensions = sni_ext("big.example");
  size_t base = b.bytes().size() + 4;  // the padding extension's own header
  b.extensions = sni_ext("big.example");
  append(b.extensions, ext(21, Bytes(total - base, 0)));
  Bytes out = b.bytes();
  EXPECT_EQ(out.size(), total);
  return out;
}

TEST(ClientHello, BoundAt16KiB) {
  Bytes at_limit = padded_to(kMaxClientHelloBytes);
  HelloParse p = parse(at_limit);
  ASSERT_EQ(p.outcome, Outcome::kComplete) << p.reason;
  EXPECT_EQ(p.hello.server_name, "big.example");
  EXPECT_EQ(p.bytes_examined, kMaxClientHelloBytes);

  // One byte more is refused as soon as the record header says so.
  Bytes over = padded_to(kMaxClientHelloBytes + 1);
  p = parse_client_hello(std::span(over).first(5));
  EXPECT_EQ(p.outcome, Outcome::kMalformed);
  EXPECT_EQ(p.reason, "ClientHello larger than 16 KiB");
  EXPECT_EQ(p.bytes_examined, 5u);
  // The same in records of 4 KiB: as soon as the handshake header says so.
  Bytes over_fragmented = refragment(over, {4096});
  p = parse_client_hello(std::span(over_fragmented).first(9));
  EXPECT_EQ(p.outcome, Outcome::kMalformed);
  EXPECT_EQ(p.reason, "ClientHello larger than 16 KiB");
  EXPECT_EQ(p.bytes_examined, 9u);

  // Within the bound as a message, but past it with the headers of its records.
  Bytes fragmented = refragment(at_limit, {8000, 8000});
  p = parse(fragmented);
  EXPECT_EQ(p.outcome, Outcome::kMalformed);
  EXPECT_EQ(p.reason, "ClientHello larger than 16 KiB");
  EXPECT_EQ(p.bytes_examined, 16015u);  // where the third record's fragment would begin

  // A prefix longer than the bound is cut there, not read further.
  Bytes endless = from_hex(testing::kTls12Sni);
  endless.resize(kMaxClientHelloBytes * 2, 0x16);
  p = parse(endless);
  ASSERT_EQ(p.outcome, Outcome::kComplete);
  EXPECT_EQ(p.hello.server_name, "www.example.org");
}

TEST(ClientHello, ValidServerName) {
  struct Case {
    std::string_view name;
    bool valid;
  };
  const Case cases[] = {
      {"example.com", true},
      {"a", true},
      {"xn--bcher-kva.example", true},
      {"a-1.b_2.c3", true},
      {"1.2.3.com", true},
      {"", false},
      {"example.com.", false},
      {".example", false},
      {"1.2.3.4", false},
      {"4", false},
      {"a..b", false},
      {"a/b", false},
      {"*.example", false},
      {"é.example", false},
  };
  for (const Case& c : cases) EXPECT_EQ(valid_server_name(c.name), c.valid) << c.name;
  EXPECT_TRUE(valid_server_name(std::string(63, 'a') + ".b"));
  EXPECT_FALSE(valid_server_name(std::string(64, 'a') + ".b"));
}

}  // namespace
}  // namespace sluice::tls
