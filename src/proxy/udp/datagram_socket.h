// UDP sockets and batched datagram I/O for the UDP-side listeners (udp, stun): binding one
// SO_REUSEPORT socket per worker, upstream sockets connected to one endpoint, compact
// address keys for the session and rate-limit tables, and a batch of datagram slots read
// with one recvmmsg or written with one sendmmsg. Loop thread only (the bind calls: any).
#pragma once

#include <sys/socket.h>
#include <sys/uio.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "base/status.h"
#include "net/address.h"
#include "net/socket.h"
#include "proxy/udp/udp_offload.h"

namespace sluice::proxy::udp {

// A bound, non-blocking UDP socket with SO_REUSEPORT (each worker binds its own on the
// same address; the kernel keeps one client 4-tuple on one socket while the set of sockets
// does not change). Bound to a wildcard, it also reports each datagram's destination
// (IP_PKTINFO, IPV6_RECVPKTINFO), so that an answer can leave from the address the client
// sent to (DatagramBatch::destination).
Result<net::Fd> bind_udp_socket(const net::Address& address);
// A non-blocking UDP socket connected to `to` (bound to `source` first when given): the
// kernel filters what it receives to datagrams from `to`.
Result<net::Fd> connected_udp_socket(const net::Address& to,
                                     const std::optional<net::Address>& source);

// A client address as a table key: family, IP bytes and (optionally) port.
struct AddressKey {
  std::array<uint8_t, 16> ip{};
  uint16_t port = 0;
  uint8_t family = 0;
  bool operator==(const AddressKey&) const = default;
};
AddressKey address_key(const net::Address& a, bool with_port);

// The PROXY protocol v2 header (PROXY command, UDP over the addresses' family) saying that
// `client` sent to `listener`: 28 bytes for IPv4, 52 for IPv6. Both of one family.
std::vector<uint8_t> proxy_v2_header(const net::Address& client, const net::Address& listener);

// Hashes keys with a per-process random seed, so that a client cannot pick sources that
// all land in one bucket.
struct AddressKeyHash {
  size_t operator()(const AddressKey& k) const;
};

// The local address a datagram came in on (IP_PKTINFO / IPV6_PKTINFO), to send its answer
// from: family 0 when unknown.
struct PacketInfo {
  int family = 0;
  std::array<uint8_t, 16> ip{};
  int ifindex = 0;
};

// Up to 64 datagrams of at most `max_size` bytes each (fewer for large slots, down to 16:
// a batch's buffer stays near 1 MiB). Slots are allocated on first use and hold max_size + 1
// bytes, so that a larger datagram shows as truncated.
//
// With `gro` (a socket with UDP_GRO on) a slot holds what one read may return, 64 KiB: the
// kernel may join several datagrams of one sender into one read, all of one size but the
// last, and says the size (the UDP_GRO control message); receive() cuts them apart again, so
// that data(i) is always one datagram as it was sent. With a GsoState enabled, flush() joins
// consecutive datagrams to one destination the other way (udp_offload.h).
class DatagramBatch {
 public:
  static constexpr size_t kMaxSlots = 64;
  static constexpr size_t kMinSlots = 16;
  static constexpr size_t kBatchBytes = size_t{1} << 20;
  explicit DatagramBatch(size_t max_size, bool gro = false)
      : max_size_(max_size),
        gro_(gro),
        slots_(std::clamp(kBatchBytes / slot(), kMinSlots, kMaxSlots)) {}

  // Datagrams one receive() or flush() moves at most.
  size_t slots() const { return slots_; }
  // Receiving: one recvmmsg of at most `max_messages` messages (a reader that wants fewer
  // than the batch holds: the kernel stops there instead of trying one more). Returns the
  // datagrams read (0: none waiting), or an error.
  Result<size_t> receive(int fd, size_t max_messages = kMaxSlots);
  // The last receive() found the socket empty: it filled fewer messages than it asked for
  // (0 included), so the kernel had no more queued. A socket registered edge-triggered
  // is reported again for what arrives after that read: its reader need not call receive()
  // again to see EAGAIN. (An error the kernel met after the last datagram it returned is
  // kept for the next call: a reader woken with an error keeps reading to EAGAIN.)
  bool drained() const { return messages_ < requested_; }
  std::span<const uint8_t> data(size_t i) const {
    const Datagram& d = received_[i];
    return {&buffer_[d.message * slot() + d.offset], std::min<size_t>(d.length, max_size_)};
  }
  // Larger than max_size (its bytes are cut).
  bool too_large(size_t i) const { return received_[i].too_large; }
  net::Address source(size_t i) const;
  // Where datagram i was sent to (a socket bound to a wildcard; family 0 otherwise).
  PacketInfo destination(size_t i) const;
  // Of the datagrams the last receive() returned, those the kernel had joined (GRO).
  size_t gro_datagrams() const { return gro_datagrams_; }

  // Sending: queues a copy of `data` for `to`; false when the batch is full (flush first)
  // or the datagram is larger than max_size.
  // `from` (family not 0): the source address to send it from, on a wildcard-bound socket.
  bool push(const net::Address& to, std::span<const uint8_t> data, const PacketInfo& from = {});
  size_t queued() const { return queued_; }
  bool full() const { return queued_ == slots_; }
  // Sends everything queued (sendmmsg, joining runs when `gso` allows) until done or the
  // socket refuses more. Returns how many were sent; the rest are discarded (the caller
  // counts them).
  SendCounts flush(int fd, GsoState& gso);

 private:
  // One datagram of a read: a part of message `message`'s slot.
  struct Datagram {
    uint32_t message;
    uint32_t offset;
    uint32_t length;
    bool too_large;
  };
  size_t slot() const { return (gro_ ? std::max(max_size_, kGroBufferSize) : max_size_) + 1; }
  void allocate();

  // Control messages: the received IP_PKTINFO / IPV6_PKTINFO and UDP_GRO, or the one to
  // send with.
  static constexpr size_t kControlSize = 64;
  // What the slots' messages point at, on the heap so that a moved batch stays valid. The
  // recvmmsg messages are made once (allocate) and point at the slots for good.
  struct Slots {
    std::array<mmsghdr, kMaxSlots> msgs;
    std::array<iovec, kMaxSlots> iov;
    std::array<sockaddr_storage, kMaxSlots> addresses;
    std::array<size_t, kMaxSlots> lengths;
    std::array<std::array<uint8_t, kControlSize>, kMaxSlots> control;
    std::array<size_t, kMaxSlots> control_lengths;
    std::array<Outgoing, kMaxSlots> out;  // what flush() hands to send_datagrams
  };

  size_t max_size_;
  bool gro_;
  size_t slots_;
  std::vector<uint8_t> buffer_;
  std::unique_ptr<Slots> s_;
  std::vector<Datagram> received_;
  size_t messages_ = 0;   // filled by the last receive()
  size_t requested_ = 0;  // asked for by the last receive()
  size_t written_ = 0;    // messages whose header fields the kernel may have written since
  size_t gro_datagrams_ = 0;
  size_t queued_ = 0;
};

}  // namespace sluice::proxy::udp
