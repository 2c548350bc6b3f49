// RequestLog: what one HTTP request did, as the access log and the metrics see it: its
// response flags, its status, its body sizes and the waterfall of its phases. A plain record
// filled in by the Stream as the request goes; RequestLog::append_json() writes the access
// log line. No I/O. Loop thread only (one record per request).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "base/clock.h"
#include "base/units.h"

namespace sluice::proxy {
struct DownstreamTls;
}
namespace sluice::proxy::http {

// Why a response is what it is. Each flag is one bit; the names in the access log, the
// request debug line and metrics labels come from the one table in request_log.cc.
enum class ResponseFlag : uint32_t {
  kNoRoute,
  kDirectResponse,
  kRedirect,
  kUpstreamConnectFailure,
  kUpstreamResetBeforeResponse,
  kUpstreamTimeout,
  kUpstreamProtocolError,
  kPoolOverflow,
  kPoolTimeout,
  kOverflowActiveRequests,
  kRetryOverflow,
  kRetried,
  kStaleConnectionRetried,
  kRequestNotReplayable,
  kRequestTooLarge,
  kDownstreamHeaderTimeout,
  kDownstreamBodyTimeout,
  kDownstreamProtocolError,
  kDownstreamReset,
  kNoHealthyUpstream,
  kIncomplete,
  kUpstreamPortsExhausted,
  kTrailerDropped,
  kRefusedStreamResent,
  kDelayedAckStall,
  kCount,  // not a flag
};

// The flag's name as logged ("no_route").
std::string_view name(ResponseFlag f);

// A set of ResponseFlags.
class ResponseFlags {
 public:
  constexpr ResponseFlags() = default;
  constexpr ResponseFlags(std::initializer_list<ResponseFlag> flags) {
    for (ResponseFlag f : flags) set(f);
  }
  constexpr void set(ResponseFlag f) { bits_ |= bit(f); }
  constexpr bool has(ResponseFlag f) const { return (bits_ & bit(f)) != 0; }
  constexpr bool any_of(ResponseFlags o) const { return (bits_ & o.bits_) != 0; }
  constexpr bool empty() const { return bits_ == 0; }
  constexpr uint32_t bits() const { return bits_; }
  constexpr bool operator==(const ResponseFlags&) const = default;
  // Calls fn(flag) for each flag set, in table order.
  template <typename Fn>
  void for_each(Fn&& fn) const {
    for (uint32_t i = 0; i < static_cast<uint32_t>(ResponseFlag::kCount); ++i) {
      if (bits_ & (1u << i)) fn(static_cast<ResponseFlag>(i));
    }
  }
  // "a,b,c" (or "-" when empty), for the request debug line.
  void append_names(std::string& out) const;

 private:
  static constexpr uint32_t bit(ResponseFlag f) { return 1u << static_cast<uint32_t>(f); }
  uint32_t bits_ = 0;
};
static_assert(static_cast<uint32_t>(ResponseFlag::kCount) <= 32);

// Flags that mark a request as failed (always logged by the errors-and-slow and sample modes).
inline constexpr ResponseFlags kFailureFlags{
    ResponseFlag::kUpstreamConnectFailure, ResponseFlag::kUpstreamResetBeforeResponse,
    ResponseFlag::kUpstreamTimeout,        ResponseFlag::kUpstreamProtocolError,
    ResponseFlag::kUpstreamPortsExhausted, ResponseFlag::kNoHealthyUpstream,
    ResponseFlag::kDownstreamReset,        ResponseFlag::kIncomplete,
};

struct RequestLog {
  ResponseFlags flags;
  const char* protocol = "HTTP/1.1";  // as the client spoke it
  uint32_t stream = 0;                // the HTTP/2 stream id (0: HTTP/1)
  int grpc_status = -1;               // of a gRPC call sluice answered itself (-1: none)
  int status = 0;
  uint64_t request_body_bytes = 0;
  uint64_t response_body_bytes = 0;
  uint32_t attempts = 0;

  // The waterfall (zero: did not happen).
  std::chrono::system_clock::time_point wall_start{};
  MonoTime first_byte_in{};  // the request's first byte was read
  MonoTime head_done{};      // the request head was complete
  MonoTime attempt_started{};
  MonoTime pool_ready{};
  Duration upstream_connect{0};  // of a connection opened for this request
  Duration upstream_tls{0};      // its TLS handshake
  MonoTime request_sent{};
  MonoTime upstream_first_byte{};

  bool have_tcp_info = false;
  uint32_t upstream_rtt_us = 0;
  uint32_t upstream_retransmits = 0;
  std::string upstream_address;  // the address that won a race of the endpoint's addresses
  std::string traceparent;       // as sent upstream
  std::string request_id;        // X-Request-Id, as sent upstream
  // Why the request failed, in full (endpoint address, errno text); empty when it did not.
  std::string detail;

  bool recorded = false;  // timed and access-logged
  bool log_decided = false;
  bool log = false;

  void add(ResponseFlag f) { flags.set(f); }
  bool failed() const { return flags.any_of(kFailureFlags); }

  // Who served the request, for the line; views valid during append_json().
  uint64_t config_generation = 0;  // the configuration the request started on
  struct Names {
    std::string_view listener, downstream, method, target, host, cluster, endpoint;
    const DownstreamTls* tls = nullptr;  // the client connection's TLS (null: cleartext)
  };
  // Appends the access log line (one JSON object, no newline). `now` ends the waterfall.
  void append_json(const Names& names, MonoTime now, std::string& out) const;
};

}  // namespace sluice::proxy::http
