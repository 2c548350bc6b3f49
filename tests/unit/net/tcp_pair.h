// A connected TCP pair over loopback for the net tests: `client` blocking, `server` accepted
// non-blocking (as a listener hands it to a Connection).
#pragma once

#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "net/address.h"
#include "net/listener.h"
#include "net/socket.h"

namespace sluice::net {

struct TcpPair {
  Fd client;
  Fd server;
};

inline TcpPair connected_pair() {
  SocketOptions o;
  Fd lfd = bind_listener(Address::parse_ip("127.0.0.1", 0).value(), 4, o, false).value();
  Address address = local_address(lfd.get()).value();
  TcpPair p;
  p.client = Fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  EXPECT_EQ(::connect(p.client.get(), address.sockaddr_ptr(), address.length()), 0);
  p.server = Fd(::accept4(lfd.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
  EXPECT_TRUE(p.server.valid());
  return p;
}

}  // namespace sluice::net
