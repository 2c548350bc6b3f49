// StunListener: a `protocol: stun` listener on one worker. It reads its SO_REUSEPORT UDP
// socket with recvmmsg, answers Binding requests (stun/binding.h decides what, statelessly)
// after a per-source rate limit, and sends the answers with sendmmsg. With an alternate
// address (RFC 5780) it reads four sockets, one per combination of the two IPs and two
// ports, and sends each answer from the one CHANGE-REQUEST asks for. No session state:
// active() is always 0. Loop thread only; one instance per listener per worker.
#pragma once

#include <functional>
#include <memory>
#include <unordered_map>
#include <vector>

#include "event/loop.h"
#include "net/listener.h"
#include "net/socket.h"
#include "proxy/listener.h"
#include "proxy/listener_config.h"
#include "proxy/stun/rate_limiter.h"
#include "proxy/stun/stun_stats.h"
#include "proxy/stun/stun_tcp_connection.h"
#include "proxy/udp/datagram_socket.h"
#include "stun/binding.h"

namespace sluice::proxy::stun {

// The sockets of an alternate address (RFC 5780) for `workers` workers: for each, the three
// StunListener takes beside its `primary` socket (bound already, its port known). A port 0 in
// `alternate` is picked by the kernel, never the primary's; `alternate` gets the one bound.
Result<std::vector<std::vector<net::Fd>>> bind_alternate_sockets(const net::Address& primary,
                                                                 net::Address& alternate,
                                                                 size_t workers);

class StunListener final : public ProxyListener {
 public:
  // `alternates`: with `stun.alternate_address`, the sockets bound on (address IP, alternate
  // port), (alternate IP, address port) and (alternate IP, alternate port), in that order.
  // `tcp`: with `stun.tcp`, the listening TCP socket on the same address.
  StunListener(event::Loop& loop, std::shared_ptr<const ListenerConfig> config, net::Fd socket,
               std::vector<net::Fd> alternates = {}, net::Fd tcp = {});
  ~StunListener() override;

  Status start();
  // A reload changed the listener (same socket). The rate-limit table starts afresh when
  // its settings changed.
  void reconfigure(std::shared_ptr<const ListenerConfig> config);

  // A TCP connection (stun.tcp).
  void on_accept(net::Fd fd, const net::Address& peer) override;

  // STUN over TCP accepts on readiness from now on (net::Listener::accept_by_polling).
  void accept_by_polling(Duration max_wait) {
    if (tcp_listener_) tcp_listener_->accept_by_polling(max_wait);
  }
  void drain() override { stop_reading(); }
  void close_all(bool) override { stop_reading(); }
  size_t active() const override { return 0; }
  void set_on_idle(std::function<void()>) override {}
  void set_access_log(std::shared_ptr<AccessLog>) override {}
  void report_connections(std::vector<net::ConnectionReport>&) const override {}
  void report_stats(ListenerStatsSink& sink) const override {
    sink.on_stun_stats(config_->name, stats_);
  }
  void set_tls(std::shared_ptr<tls::ServerContext>) override {}
  const ListenerConfig& config() const override { return *config_; }
  const StunStats& stats() const { return stats_; }

  // What a request from `source` gets, with the rate limit: true and `out` the answer to
  // send, or false (dropped). Counted either way. For UDP and TCP alike.
  bool answer(std::span<const uint8_t> request, const net::Address& source,
              const ::sluice::stun::NatDiscovery* nat, ::sluice::stun::Answer& out);
  // A TCP connection ended on a message that is not STUN or malformed (counted here).
  void count_tcp_drop(::sluice::stun::Outcome outcome);
  // A TCP connection closed itself: deleted once the loop is done with it.
  void on_tcp_closed(StunTcpConnection* connection);

 private:
  // Answers stay under the path MTU (RFC 8489 §6.2.1). Requests may exceed it: RFC 5780's
  // PADDING makes them fragment on purpose (coturn's turnutils_natdiscovery -P pads 1,500
  // bytes). Larger datagrams are read cut and dropped as malformed.
  static constexpr size_t kMaxDatagram = 1500;
  static constexpr size_t kMaxRequest = 4096;

  // One bound socket. Index i: bit 0 the alternate port, bit 1 the alternate IP (0 is the
  // listener's `address`); the socket of the other IP and port is i ^ 3.
  struct Socket final : event::IoHandler {
    Socket(StunListener& o, size_t i, net::Fd f) : owner(o), index(i), fd(std::move(f)) {}
    void on_io(uint32_t) override { owner.read(index); }
    StunListener& owner;
    size_t index;
    net::Fd fd;
    net::Address local;
    udp::DatagramBatch out{kMaxDatagram};
  };

  void read(size_t index);
  void stop_reading();
  void flush(Socket& s);
  void flush_all();
  ::sluice::stun::NatDiscovery nat(size_t index) const;

  event::Loop& loop_;
  std::shared_ptr<const ListenerConfig> config_;
  std::vector<std::unique_ptr<Socket>> sockets_;  // 1, or 4 with an alternate address
  bool reading_ = false;
  udp::DatagramBatch in_{kMaxRequest};
  ::sluice::stun::Answer answer_;
  std::unique_ptr<net::Listener> tcp_listener_;
  std::unordered_map<StunTcpConnection*, std::unique_ptr<StunTcpConnection>> tcp_;
  SourceRateLimiter limiter_;
  StunStats stats_;
};

}  // namespace sluice::proxy::stun
