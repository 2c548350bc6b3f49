#include <gtest/gtest.h>

#include <string>

#include "probe/http2_exchange.h"

namespace sluice::probe {
namespace {

using State = ServerPreface::State;

// A frame header (RFC 9113 §4.1) and payload.
std::string frame(uint8_t type, uint8_t flags, const std::string& payload) {
  std::string f;
  f += static_cast<char>((payload.size() >> 16) & 0xff);
  f += static_cast<char>((payload.size() >> 8) & 0xff);
  f += static_cast<char>(payload.size() & 0xff);
  f += static_cast<char>(type);
  f += static_cast<char>(flags);
  f += std::string(4, '\0');  // stream 0
  return f + payload;
}

std::string setting(uint16_t id, uint32_t value) {
  std::string s;
  s += static_cast<char>(id >> 8);
  s += static_cast<char>(id & 0xff);
  for (int shift = 24; shift >= 0; shift -= 8) s += static_cast<char>((value >> shift) & 0xff);
  return s;
}

TEST(ProbeServerPreface, ReadsTheSettingsAcrossReads) {
  std::string bytes = frame(0x4, 0, setting(0x3, 7) + setting(0x1, 4096) + setting(0x4, 1048575));
  bytes += frame(0x8, 0, std::string(4, '\x01'));  // a WINDOW_UPDATE after it is not looked at
  ServerPreface p;
  EXPECT_EQ(p.feed(bytes.substr(0, 3)), State::kIncomplete);
  EXPECT_EQ(p.feed(bytes.substr(3, 10)), State::kIncomplete);
  EXPECT_EQ(p.feed(bytes.substr(13)), State::kSettings);
  EXPECT_EQ(p.settings().max_concurrent_streams, 7u);
  EXPECT_EQ(p.settings().initial_window_size, 1048575u);
  EXPECT_EQ(p.feed(frame(0x4, 0, setting(0x3, 1))), State::kSettings);  // only the first counts
  EXPECT_EQ(p.settings().max_concurrent_streams, 7u);
}

TEST(ProbeServerPreface, SettingsNotSentKeepTheirDefaults) {
  ServerPreface p;
  EXPECT_EQ(p.feed(frame(0x4, 0, "")), State::kSettings);
  EXPECT_FALSE(p.settings().max_concurrent_streams.has_value());  // no limit
  EXPECT_EQ(p.settings().initial_window_size, 65535u);
}

TEST(ProbeServerPreface, QuotesAnHttp1StatusLine) {
  ServerPreface p;
  EXPECT_EQ(p.feed("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"), State::kNotSettings);
  EXPECT_EQ(p.not_http2_text(), "it answered \"HTTP/1.1 400 Bad Request\"");
  ServerPreface q;
  EXPECT_EQ(q.feed(std::string("HTTP/1.0 \x01\xff x", 13)), State::kNotSettings);
  EXPECT_EQ(q.not_http2_text(), "it answered \"HTTP/1.0 ?? x\"");
}

TEST(ProbeServerPreface, AnotherFrameOrBytesAreNotHttp2) {
  ServerPreface p;
  EXPECT_EQ(p.feed(frame(0x7, 0, std::string(8, '\0'))), State::kNotSettings);  // GOAWAY
  EXPECT_EQ(p.not_http2_text(), "its first bytes are not a SETTINGS frame");
  ServerPreface q;
  EXPECT_EQ(q.feed("SSH-2.0-OpenSSH_9.2\r\n"), State::kNotSettings);
  EXPECT_EQ(q.not_http2_text(), "its first bytes are not a SETTINGS frame");
}

TEST(ProbeServerPreface, ImpossibleSettingsAreMalformed) {
  ServerPreface p;
  EXPECT_EQ(p.feed(frame(0x4, 0, std::string(5, '\0'))), State::kMalformed);  // not 6 per entry
  ServerPreface ack;
  EXPECT_EQ(ack.feed(frame(0x4, 0x1, "")), State::kMalformed);  // an ACK first
  ServerPreface big;
  EXPECT_EQ(big.feed(frame(0x4, 0, std::string(16386, '\0'))), State::kMalformed);
}

}  // namespace
}  // namespace sluice::probe
