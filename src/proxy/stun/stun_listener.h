// StunListener: a `protocol: stun` listener on one worker. It reads its SO_REUSEPORT UDP
// socket with recvmmsg, answers Binding requests (stun/binding.h decides what, statelessly)
// after a per-source rate limit, and sends the answers with sendmmsg. No session state:
// active() is always 0. Loop thread only; one instance per listener per worker.
#pragma once

#include <functional>
#include <memory>
#include <vector>

#include "event/loop.h"
#include "net/socket.h"
#include "proxy/listener.h"
#include "proxy/listener_config.h"
#include "proxy/stun/rate_limiter.h"
#include "proxy/stun/stun_stats.h"
#include "proxy/udp/datagram_socket.h"

namespace sluice::proxy::stun {

class StunListener final : public ProxyListener, public event::IoHandler {
 public:
  StunListener(event::Loop& loop, std::shared_ptr<const ListenerConfig> config, net::Fd socket);
  ~StunListener() override;

  Status start();
  // A reload changed the listener (same socket). The rate-limit table starts afresh when
  // its settings changed.
  void reconfigure(std::shared_ptr<const ListenerConfig> config);

  void on_accept(net::Fd, const net::Address&) override {}
  void on_io(uint32_t events) override;

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

 private:
  void stop_reading();
  void flush();

  // STUN messages over UDP stay under the path MTU (RFC 8489 §6.2.1); larger datagrams are
  // read cut and dropped as malformed.
  static constexpr size_t kMaxDatagram = 1500;

  event::Loop& loop_;
  std::shared_ptr<const ListenerConfig> config_;
  net::Fd socket_;
  bool reading_ = false;
  udp::DatagramBatch in_{kMaxDatagram};
  udp::DatagramBatch out_{kMaxDatagram};
  SourceRateLimiter limiter_;
  StunStats stats_;
};

}  // namespace sluice::proxy::stun
