// ReplayGuard: sluice's own protection against replayed TLS 1.3 early data (0-RTT).
//
// Early data rides on a session ticket, and an attacker who records a ClientHello with early
// data can send it again. OpenSSL's own anti-replay keeps single-use tickets in each context's
// session cache; with one context per worker and stateless tickets (so sessions resume on any
// worker) that cannot work, so sluice turns it off and keeps this record instead: the
// pre_shared_key extension of every ClientHello whose early data was accepted (its ticket
// identity, obfuscated age and binder, which a replay repeats byte for byte), for as long as
// a ticket can be used. A ClientHello seen before gets a full handshake: its early data is
// rejected, and the client sends the request again after the handshake.
//
// What it guarantees: within one sluice process (all its workers), early data from one
// ClientHello is accepted at most once while its ticket is valid. What it does not: a replay
// sent to another process (another machine of a fleet sharing ticket keys) is not seen, and
// when the record is full early data is refused rather than risked. Only safe requests are
// acted on from early data anyway (GET, HEAD, OPTIONS), forwarded with `Early-Data: 1`.
// Thread-safe: every worker of a listener shares one.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_set>

namespace sluice::tls {

class ReplayGuard {
 public:
  using Clock = std::chrono::steady_clock;

  ReplayGuard(size_t capacity, Clock::duration window) : capacity_(capacity), window_(window) {}

  // True the first time `key` is offered within the window (and records it); false for a
  // key seen before, or when the record is full.
  bool first_use(std::string_view key, Clock::time_point now = Clock::now());
  uint64_t replays() const;
  size_t size() const;

 private:
  mutable std::mutex mu_;
  size_t capacity_;
  Clock::duration window_;
  std::unordered_set<std::string> seen_;
  std::deque<std::pair<Clock::time_point, std::string>> order_;  // oldest first
  uint64_t replays_ = 0;
};

}  // namespace sluice::tls
