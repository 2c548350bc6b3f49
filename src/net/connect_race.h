// ConnectRace: one connection to a host that has several addresses, made the way RFC 8305
// ("Happy Eyeballs") describes. Attempts start one at a time in the order given (callers
// put IPv6 first and alternate the families; see interleave_families); the next attempt
// starts when the previous one has not connected within `attempt_delay`, or at once when it
// fails. The first to connect wins and every other attempt is closed. Fast Open is not used:
// a deferred SYN would "connect" at once and decide the race without the network.
// Loop thread only. Owners destroy it through the loop's deferred deletion (its sockets'
// events of the current iteration may still be queued for it).
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/units.h"
#include "event/loop.h"
#include "event/timer.h"
#include "net/address.h"
#include "net/socket.h"
#include "net/socket_options.h"

namespace sluice::net {

// RFC 8305 section 4: IPv6 first, then the families take turns, each keeping its order.
std::vector<Address> interleave_families(const std::vector<Address>& addresses);

class ConnectRaceCallbacks {
 public:
  // `fd` is connected to `address`, no longer watched by the poller.
  virtual void on_race_won(Fd fd, const Address& address) = 0;
  // Every attempt failed; `detail` names each address and why.
  virtual void on_race_lost(int err, const std::string& detail) = 0;

 protected:
  ~ConnectRaceCallbacks() = default;
};

class ConnectRace final : public event::DeferredDeletable {
 public:
  // Addresses past this many are not tried (RFC 8305 leaves the number to the client).
  static constexpr size_t kMaxAttempts = 8;

  ConnectRace(event::Loop& loop, std::vector<Address> addresses, const SocketOptions& options,
              const std::optional<Address>& source, Duration attempt_delay,
              ConnectRaceCallbacks& callbacks);
  ~ConnectRace() override;
  ConnectRace(const ConnectRace&) = delete;
  ConnectRace& operator=(const ConnectRace&) = delete;

  // Starts the first attempt. The callbacks are never called from inside start().
  void start();
  // Closes every attempt; the callbacks are not called any more.
  void cancel();
  bool finished() const { return finished_; }
  // Attempts started so far (for logs and tests of the race itself).
  size_t attempts_started() const { return next_; }
  // The addresses tried so far, for a timeout's message ("[::1]:80, 127.0.0.1:80").
  std::string tried() const;

 private:
  struct Attempt final : event::IoHandler {
    Attempt(ConnectRace& r, size_t i) : race(r), index(i) {}
    void on_io(uint32_t events) override { race.on_attempt_io(*this, events); }
    ConnectRace& race;
    size_t index;
    Fd fd;
  };

  void start_next();
  void on_attempt_io(Attempt& a, uint32_t events);
  void attempt_failed(Attempt& a, int err);
  void close_attempt(Attempt& a);
  void finish_lost();
  size_t pending() const;

  event::Loop& loop_;
  std::vector<Address> addresses_;
  SocketOptions options_;
  std::optional<Address> source_;
  Duration attempt_delay_;
  ConnectRaceCallbacks& callbacks_;
  std::vector<std::unique_ptr<Attempt>> attempts_;
  event::Timer timer_;  // starts the next attempt, or reports a race lost inside start()
  size_t next_ = 0;     // the next address to try
  int last_err_ = 0;
  std::string failures_;
  bool finished_ = false;
};

}  // namespace sluice::net
