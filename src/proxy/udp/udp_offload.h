// UDP segmentation offloads: what the kernel offers (probed once per process), turning
// UDP_GRO on a socket, and writing a run of datagrams with the fewest calls: sendmmsg, with
// consecutive datagrams to one destination of one size (the last may be shorter) joined into
// one UDP_SEGMENT (GSO) message the kernel cuts back into the same datagrams. Receiving
// coalesced datagrams (UDP_GRO) is DatagramBatch's (datagram_socket.h). Any thread.
#pragma once

#include <sys/socket.h>

#include <cstddef>
#include <cstdint>
#include <span>

namespace sluice::proxy::udp {

// What the running kernel accepts: UDP_SEGMENT (Linux 4.18) and UDP_GRO (5.0) as socket
// options. Probed on a throwaway socket the first time it is asked.
struct OffloadSupport {
  bool gso = false;
  bool gro = false;
};
const OffloadSupport& offload_support();

// Turns UDP_GRO on or off on `fd`; false when the kernel refused (nothing changes then).
bool set_gro(int fd, bool on);

// The largest buffer one GRO read can fill (a UDP datagram's length field).
inline constexpr size_t kGroBufferSize = 65535;
// Datagrams the kernel joins into one GSO message at most (UDP_MAX_SEGMENTS).
inline constexpr size_t kMaxSegments = 64;

// One datagram to write: an optional prefix (a PROXY header) and the payload, both kept
// alive by the caller until send_datagrams returns.
struct Outgoing {
  std::span<const uint8_t> head;
  std::span<const uint8_t> body;
  const sockaddr_storage* to = nullptr;  // null: the socket is connected
  socklen_t to_length = 0;
  std::span<const uint8_t> control;  // control messages (IP_PKTINFO), or empty
  size_t size() const { return head.size() + body.size(); }
};

// Whether a socket may join datagrams (GSO), and up to which datagram size: a path whose
// MTU is below a segment's size refuses it (EINVAL), a device without checksum offload
// refuses GSO altogether (EIO); each lowers this state and the datagrams go out one by one.
struct GsoState {
  bool enabled = false;
  size_t max_segment = 65507;
};

struct SendCounts {
  size_t sent = 0;           // datagrams the kernel took
  size_t failed = 0;         // refused (an unreachable destination, an error)
  size_t calls = 0;          // sendmmsg / sendmsg / sendto calls that sent something
  size_t gso_datagrams = 0;  // of `sent`, those that went in a joined (GSO) message
  int first_error = 0;       // the errno of the first refusal (ECONNREFUSED: nothing there)
};

// Writes `out` in order. Stops at a full socket buffer (EAGAIN) or a connected socket's
// ECONNREFUSED: the datagrams not written are neither sent nor failed, and the caller counts
// them as it sees fit.
SendCounts send_datagrams(int fd, std::span<const Outgoing> out, GsoState& gso);

}  // namespace sluice::proxy::udp
