// TcpInfo: what the kernel knows about one TCP connection (getsockopt TCP_INFO and
// TCP_CONGESTION), in the units people read: microseconds, segments, bytes.
#pragma once

#include <cstdint>
#include <string>

#include <optional>

#include "base/status.h"
#include "net/address.h"

namespace sluice::net {

struct TcpInfo {
  uint32_t rtt_us = 0;     // smoothed round-trip time
  uint32_t rttvar_us = 0;  // its variation
  uint32_t min_rtt_us = 0;
  uint32_t retransmits = 0;    // unrecovered retransmissions of the current segment
  uint32_t total_retrans = 0;  // segments retransmitted over the connection's life
  uint32_t lost = 0;           // segments currently considered lost
  uint32_t snd_cwnd = 0;       // congestion window, in segments
  uint32_t snd_ssthresh = 0;   // slow-start threshold (large: still in slow start)
  uint32_t snd_mss = 0;
  uint64_t delivery_rate = 0;  // bytes per second, as last measured
  uint64_t bytes_acked = 0;    // sent and acknowledged
  uint64_t bytes_received = 0;
  std::string congestion;  // "cubic", "bbr", ...
};

// `congestion`: also read the algorithm's name (a second getsockopt).
Result<TcpInfo> read_tcp_info(int fd, bool congestion = true);

// Bytes the kernel holds for one socket: "where is my data".
struct KernelQueues {
  uint32_t unsent = 0;   // written by sluice, not yet sent (the peer's window, or cwnd)
  uint32_t unacked = 0;  // sent, not yet acknowledged by the peer
  uint32_t unread = 0;   // received, not yet read by sluice
};
Result<KernelQueues> read_kernel_queues(int fd);

// One live connection as the admin endpoint lists it.
struct ConnectionReport {
  std::string role;   // "downstream" or "upstream"
  std::string owner;  // the listener or cluster
  std::string state;  // "idle", "request", "proxying", "busy", ...
  std::string sni;    // downstream: the server name its TLS ClientHello carried ("" = none)
  // A connection sluice terminates TLS on: what its handshake settled ("" = none or not yet).
  std::string tls_version;
  std::string tls_cipher;
  bool tls_resumed = false;
  // A downstream HTTP/2 connection (streams 0 and no goaway otherwise).
  bool http2 = false;
  uint32_t streams = 0;        // open request streams
  uint64_t abuse_score = 0;    // resets and control frames not yet paid for by responses
  std::string goaway;          // "", "notice sent" (the first of a drain's two), "sent"
  int32_t send_window = 0;     // connection flow-control window towards the client
  int32_t receive_window = 0;  // ... and from it
  Address local;
  Address peer;
  std::optional<TcpInfo> tcp;
  std::optional<KernelQueues> queues;
};

// Fills addresses and TCP_INFO from the socket.
ConnectionReport describe_connection(int fd, std::string role, std::string owner,
                                     std::string state);

}  // namespace sluice::net
