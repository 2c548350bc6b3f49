// SocketOptions: the TCP knobs sluice sets on downstream (listener) and upstream (cluster)
// sockets, with the checks that tell a user, before anything starts, when the kernel lacks
// what the configuration asks for.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "base/status.h"
#include "base/units.h"
#include "base/validation.h"

namespace sluice::net {

struct KeepaliveOptions {
  Duration idle = std::chrono::seconds(60);
  Duration interval = std::chrono::seconds(10);
  int count = 5;
  bool operator==(const KeepaliveOptions&) const = default;
};

// 128 KiB: enough unsent data for the kernel to keep a 10 Gbit/s path busy for about 100 µs,
// far longer than a worker takes to refill it when it reports writable; at 10 Mbit/s it is
// about 100 ms of queue, where an unbounded socket buffer (autotuned up to
// net.ipv4.tcp_wmem's maximum, 4 MiB by default) would be seconds.
inline constexpr uint32_t kDefaultNotsentLowat = 128 * 1024;

// The smallest output queue an HTTP/2 connection with notsent_lowat keeps before it stops
// producing frames: a few full DATA frames, so that refilling the socket is not one frame
// per wake-up.
inline constexpr size_t kMinHttp2HighWatermark = 64 * 1024;

struct SocketOptions {
  bool tcp_nodelay = true;
  std::optional<KeepaliveOptions> keepalive;  // absent: SO_KEEPALIVE off
  std::string congestion;                     // empty: the kernel's default
  uint32_t send_buffer = 0;                   // 0: the kernel's default (autotuned)
  uint32_t receive_buffer = 0;
  uint32_t fastopen_queue = 0;    // listeners: TCP_FASTOPEN queue length, 0 = off
  bool fastopen_connect = false;  // upstream: TCP_FASTOPEN_CONNECT
  // HTTP: after a small read that leaves a message incomplete, acknowledge at once
  // (TCP_QUICKACK), so a peer whose Nagle algorithm holds the rest of its message until its
  // first segment is acknowledged does not wait for our delayed ACK (40-200 ms).
  bool quickack = true;
  // Listeners: the kernel completes a handshake but queues the connection for accept only
  // once the client's first bytes arrive, or after about this long without any (then it is
  // accepted like any other; TCP_DEFER_ACCEPT, whole seconds, rounded up by the kernel to
  // its SYN-ACK retransmission steps 1, 3, 7, 15... s). A worker never wakes for a
  // connection that has nothing to read yet. 0: off. HTTP listeners default to
  // kDefaultHttpDeferAccept (proxy/listener_config.h); a TCP proxy's protocol may have the
  // server speak first, so it has none.
  Duration defer_accept{0};
  // At most this many bytes written but not yet sent wait in the kernel (TCP_NOTSENT_LOWAT):
  // the socket refuses more, and reports writable only once the unsent bytes fall below
  // half of it. What the network cannot take yet stays in sluice, where backpressure stops
  // reading the other side, instead of piling up megabytes of socket buffer in front of
  // whatever is sent next (a small HTTP/2 response behind a download). 0: the kernel's
  // default (no limit). Set on a listener it holds for every connection it accepts.
  uint32_t notsent_lowat = kDefaultNotsentLowat;

  // `listener`: the options of a listening socket (else of upstream connects).
  ConfigIssues validate(bool listener) const;

  bool operator==(const SocketOptions&) const = default;
};

// Reads of fewer bytes than this that leave a message incomplete are the ones a Nagle-bound
// peer may be waiting on (a bulk transfer reads more per call, and the kernel acknowledges
// every other full segment anyway).
inline constexpr size_t kQuickAckReadBytes = 4096;
// Asks the kernel to acknowledge what it received at once (TCP_QUICKACK; it clears itself).
void ack_now(int fd);

// Checks `name` against net.ipv4.tcp_available_congestion_control; the error lists what the
// kernel offers.
Status check_congestion_available(const std::string& name);
// Checks net.ipv4.tcp_fastopen has the server (2) or client (1) bit.
Status check_fastopen_enabled(bool server);

// net.ipv4.ip_local_port_range. Read once: call it at startup, before workers run, so that
// no worker reads a file.
struct PortRange {
  uint32_t low = 0;
  uint32_t high = 0;
  uint32_t count() const { return high - low + 1; }
};
PortRange ephemeral_port_range();
// Its size.
uint32_t ephemeral_port_count();

// Applies everything but fastopen_queue and defer_accept (which belong to a listening socket:
// see bind_listener) and fastopen_connect (see connect paths).
Status apply_socket_options(int fd, const SocketOptions& opts);

}  // namespace sluice::net
