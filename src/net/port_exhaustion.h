// Port exhaustion: what to say when a connect fails with EADDRNOTAVAIL ("cannot assign
// requested address"), i.e. no local port is left for another connection to a destination.
// Each connection sluice closes first holds its local port in TIME_WAIT for 60 s, and
// connections to one destination address and port cannot share a local port, so opening
// connections to it faster than the ephemeral range allows ends here. The count of sockets
// in TIME_WAIT towards the destination comes from the kernel (sock_diag netlink,
// inet_diag with a destination filter). Plain functions; any thread.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "base/clock.h"
#include "base/status.h"
#include "net/address.h"

namespace sluice::net {

// How many TCP sockets towards `destination` (address and port) sit in TIME_WAIT in this
// network namespace. A netlink round trip to the kernel (no I/O beyond it).
Result<uint64_t> count_time_wait_towards(const Address& destination);

// "no free local port to connect to 127.0.0.1:8080: the 10 ephemeral ports
// (net.ipv4.ip_local_port_range 40000-40009) are exhausted towards it, 10 sockets towards it
// in TIME_WAIT (to fix: <advice>)". The TIME_WAIT count is asked of the kernel at most once a
// second per thread and destination (`now` says when); the rest of the message is what `advice`
// says to change.
std::string ports_exhausted_detail(const Address& destination, MonoTime now,
                                   std::string_view advice);

}  // namespace sluice::net
