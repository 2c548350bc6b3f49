#include "proxy/udp/udp_session.h"

#include <sys/socket.h>
#include <sys/uio.h>

#include <cerrno>

#include <fmt/format.h>

#include "base/json.h"
#include "base/log.h"
#include "proxy/access_log.h"

namespace sluice::proxy::udp {

const char* to_string(CloseReason r) {
  switch (r) {
    case CloseReason::kIdleTimeout:
      return "idle_timeout";
    case CloseReason::kMaxResponses:
      return "max_responses";
    case CloseReason::kUpstreamError:
      return "upstream_error";
    case CloseReason::kDrainDeadline:
      return "drain_deadline";
    case CloseReason::kShutdown:
      return "shutdown";
    case CloseReason::kUpgrade:
      return "upgrade";
  }
  return "?";
}

UdpSession::UdpSession(event::Loop& loop, std::shared_ptr<const ListenerConfig> config,
                       upstream::Cluster& cluster, size_t endpoint, net::Fd upstream,
                       const net::Address& client, AddressKey key, uint64_t generation,
                       UdpProxyStats& stats, SessionCallbacks& owner)
    : loop_(loop),
      config_(std::move(config)),
      cluster_(cluster),
      endpoint_(endpoint),
      upstream_(std::move(upstream)),
      client_(client),
      key_(key),
      generation_(generation),
      stats_(stats),
      owner_(owner),
      idle_timer_(loop.timers(), [this] { on_timer(); }),
      started_(loop.now()),
      last_activity_(loop.now()),
      wall_start_(std::chrono::system_clock::now()) {
  cluster_.request_started(endpoint_);
}

UdpSession::~UdpSession() {
  if (!closed_) {
    // Destroyed without close() (a proxy torn down in a test): still leave the poller.
    if (registered_) loop_.poller().remove(upstream_.get());
    cluster_.request_finished(endpoint_);
  }
}

Status UdpSession::start() {
  if (Status s = loop_.poller().add(upstream_.get(), event::kReadable, this); !s) return s;
  registered_ = true;
  idle_timer_.arm_at(loop_.now() + config_->udp.idle_timeout);
  return Status::ok();
}

void UdpSession::from_downstream(const net::Address& client, std::span<const uint8_t> data,
                                 const PacketInfo& local) {
  local_ = local;
  if (closed_) return;
  if (listener_ && (proxy_header_.empty() || !(client == client_))) {
    proxy_header_ = proxy_v2_header(client, *listener_);
  }
  client_ = client;
  last_activity_ = loop_.now();
  iovec iov[2];
  size_t n_iov = 0;
  if (!proxy_header_.empty()) iov[n_iov++] = {proxy_header_.data(), proxy_header_.size()};
  iov[n_iov++] = {const_cast<uint8_t*>(data.data()), data.size()};
  msghdr msg{};
  msg.msg_iov = iov;
  msg.msg_iovlen = n_iov;
  ssize_t n;
  do {
    n = ::sendmsg(upstream_.get(), &msg, MSG_DONTWAIT);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (errno == ECONNREFUSED) {
      // An ICMP port unreachable from an earlier datagram: nothing listens there.
      ++stats_.dropped_send_failed;
      return close(CloseReason::kUpstreamError);
    }
    ++stats_.dropped_send_failed;
    return;
  }
  ++counts_.datagrams_to_upstream;
  counts_.bytes_to_upstream += data.size();
  ++stats_.datagrams_to_upstream;
  stats_.bytes_to_upstream += data.size();
}

void UdpSession::on_io(uint32_t events) {
  if (closed_) return;
  (void)events;
  read_upstream();
}

void UdpSession::read_upstream() {
  std::span<uint8_t> buf = owner_.scratch();
  size_t max = config_->udp.max_datagram_size;
  // Edge-triggered: read until the socket is empty (bounded by what the kernel holds).
  while (!closed_) {
    ssize_t n = ::recv(upstream_.get(), buf.data(), buf.size(), MSG_DONTWAIT | MSG_TRUNC);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      // ECONNREFUSED and the like: the endpoint is not there (ICMP unreachable).
      return close(CloseReason::kUpstreamError);
    }
    last_activity_ = loop_.now();
    if (static_cast<size_t>(n) > max) {
      ++stats_.dropped_too_large;
      continue;
    }
    auto data = std::span<const uint8_t>(buf.data(), static_cast<size_t>(n));
    if (owner_.send_downstream(client_, data, local_)) {
      ++counts_.datagrams_to_downstream;
      counts_.bytes_to_downstream += data.size();
    }
    uint32_t limit = config_->udp.max_responses;
    if (limit != 0 && ++responses_ >= limit) return close(CloseReason::kMaxResponses);
  }
}

void UdpSession::on_timer() {
  MonoTime due = last_activity_ + config_->udp.idle_timeout;
  if (loop_.now() < due) {
    // Traffic since the timer was armed: one re-arm per period, not one per datagram.
    idle_timer_.arm_at(due);
    return;
  }
  close(CloseReason::kIdleTimeout);
}

void UdpSession::close(CloseReason reason) {
  if (closed_) return;
  closed_ = true;
  if (upgraded_) reason = CloseReason::kUpgrade;
  idle_timer_.cancel();
  if (registered_) loop_.poller().remove(upstream_.get());
  registered_ = false;
  upstream_.reset();
  cluster_.request_finished(endpoint_);
  switch (reason) {
    case CloseReason::kIdleTimeout:
      ++stats_.closed_idle;
      break;
    case CloseReason::kMaxResponses:
      ++stats_.closed_responses;
      break;
    case CloseReason::kUpstreamError:
      ++stats_.closed_upstream_error;
      break;
    case CloseReason::kDrainDeadline:
      ++stats_.closed_drain;
      break;
    case CloseReason::kShutdown:
      ++stats_.closed_shutdown;
      break;
    case CloseReason::kUpgrade:
      ++stats_.closed_upgrade;
      break;
  }
  LOG_DEBUG("udp {}: session {} closed: {}", config_->name, client_.to_string(), to_string(reason));
  write_access_log(reason);
  owner_.on_session_closed(*this, reason);
}

void UdpSession::write_access_log(CloseReason reason) {
  AccessLog* log = owner_.access_log();
  if (!log) return;
  Duration duration = loop_.now() - started_;
  bool failed = reason == CloseReason::kUpstreamError;
  if (!should_log(config_->access_log, 0, failed, duration)) return;
  std::string line = "{\"time\":";
  append_json_string(log::format_time(wall_start_), line);
  line += ",\"listener\":";
  append_json_string(config_->name, line);
  fmt::format_to(std::back_inserter(line), ",\"config_generation\":{},\"protocol\":\"udp\"",
                 generation_);
  line += ",\"downstream\":";
  append_json_string(client_.to_string(), line);
  line += ",\"cluster\":";
  append_json_string(cluster_.config().name, line);
  line += ",\"endpoint\":";
  append_json_string(cluster_.endpoint(endpoint_).address.to_string(), line);
  line += ",\"close_reason\":";
  append_json_string(to_string(reason), line);
  fmt::format_to(std::back_inserter(line),
                 ",\"datagrams_to_upstream\":{},\"datagrams_to_downstream\":{},"
                 "\"bytes_to_upstream\":{},\"bytes_to_downstream\":{},"
                 "\"timings_us\":{{\"duration\":{}}}}}",
                 counts_.datagrams_to_upstream, counts_.datagrams_to_downstream,
                 counts_.bytes_to_upstream, counts_.bytes_to_downstream,
                 std::chrono::duration_cast<std::chrono::microseconds>(duration).count());
  log->write(line);
}

}  // namespace sluice::proxy::udp
