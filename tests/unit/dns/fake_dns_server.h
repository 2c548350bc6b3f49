// A DNS server for unit tests, on a loopback UDP socket driven by the test's loop.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <vector>

#include <gtest/gtest.h>

#include "event/loop.h"
#include "net/address.h"
#include "net/socket.h"

namespace sluice::dns {

// A DNS server on a loopback UDP socket, driven by the same loop as the resolver: it answers
// every query the way it is told (A records, NXDOMAIN with an SOA, or SERVFAIL).
class FakeDnsServer final : public event::IoHandler {
 public:
  enum class Mode { kAnswer, kNxDomain, kServFail };

  explicit FakeDnsServer(event::Loop& loop) : loop_(loop) {
    fd_ = net::Fd(::socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::bind(fd_.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0);
    address_ = net::local_address(fd_.get()).value();
    EXPECT_TRUE(loop_.poller().add(fd_.get(), event::kReadable, this).is_ok());
  }
  ~FakeDnsServer() { loop_.poller().remove(fd_.get()); }

  const net::Address& address() const { return address_; }
  int queries() const { return queries_; }

  Mode mode = Mode::kAnswer;
  std::vector<uint32_t> ipv4 = {0xc0000201};  // 192.0.2.1
  uint32_t ttl = 30;
  uint32_t soa_ttl = 60, soa_minimum = 20;

  void on_io(uint32_t) override {
    uint8_t buf[512];
    for (int i = 0; i < 64; ++i) {
      sockaddr_storage from{};
      socklen_t from_len = sizeof from;
      ssize_t n =
          ::recvfrom(fd_.get(), buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&from), &from_len);
      if (n <= 0) return;
      ++queries_;
      std::vector<uint8_t> reply = answer(std::vector<uint8_t>(buf, buf + n));
      ::sendto(fd_.get(), reply.data(), reply.size(), 0, reinterpret_cast<sockaddr*>(&from),
               from_len);
    }
  }

 private:
  static void put16(std::vector<uint8_t>& out, uint16_t v) {
    out.push_back(static_cast<uint8_t>(v >> 8));
    out.push_back(static_cast<uint8_t>(v));
  }
  static void put32(std::vector<uint8_t>& out, uint32_t v) {
    put16(out, static_cast<uint16_t>(v >> 16));
    put16(out, static_cast<uint16_t>(v));
  }

  std::vector<uint8_t> answer(const std::vector<uint8_t>& q) const {
    // The question: the name's labels, then type and class.
    size_t end = 12;
    while (end < q.size() && q[end] != 0) end += q[end] + 1;
    end += 1 + 4;
    uint8_t rcode = mode == Mode::kNxDomain ? 3 : mode == Mode::kServFail ? 2 : 0;
    uint16_t answers = mode == Mode::kAnswer ? static_cast<uint16_t>(ipv4.size()) : 0;
    std::vector<uint8_t> out(q.begin(), q.begin() + 2);  // the query's id
    put16(out, static_cast<uint16_t>(0x8180 | rcode));   // response, RD, RA
    put16(out, 1);
    put16(out, answers);
    put16(out, mode == Mode::kNxDomain ? 1 : 0);
    put16(out, 0);
    out.insert(out.end(), q.begin() + 12, q.begin() + static_cast<long>(end));
    for (uint16_t i = 0; i < answers; ++i) {
      put16(out, 0xc00c);  // the question's name
      put16(out, 1);       // A
      put16(out, 1);       // IN
      put32(out, ttl);
      put16(out, 4);
      put32(out, ipv4[i]);
    }
    if (mode == Mode::kNxDomain) {
      put16(out, 0xc00c);
      put16(out, 6);  // SOA
      put16(out, 1);
      put32(out, soa_ttl);
      put16(out, 2 + 20);
      out.push_back(0);  // mname: the root
      out.push_back(0);  // rname: the root
      for (uint32_t v : {1u, 3600u, 600u, 86400u}) put32(out, v);
      put32(out, soa_minimum);
    }
    return out;
  }

  event::Loop& loop_;
  net::Fd fd_;
  net::Address address_;
  int queries_ = 0;
};

}  // namespace sluice::dns
