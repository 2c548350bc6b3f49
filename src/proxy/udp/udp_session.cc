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
                       upstream::Cluster& cluster, size_t endpoint,
                       std::unique_ptr<UpstreamSocket> upstream, const net::Address& client,
                       AddressKey key, uint64_t generation, UdpProxyStats& stats,
                       SessionCallbacks& owner)
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
  upstream_->set_user(this);
  gso_.enabled = config_->udp.gso && offload_support().gso;
}

UdpSession::~UdpSession() {
  if (!closed_) {
    // Destroyed without close() (a proxy torn down in a test): the socket still goes.
    if (upstream_) owner_.socket_pool().give_back(std::move(upstream_), false, true);
    cluster_.request_finished(endpoint_);
  }
}

Status UdpSession::start() {
  // The socket is registered with the loop already (UpstreamSocketPool::connect).
  idle_timer_.arm_at(loop_.now() + config_->udp.idle_timeout);
  return Status::ok();
}

void UdpSession::from_downstream(const net::Address& client, const PacketInfo& local) {
  local_ = local;
  if (closed_) return;
  if (listener_ && (proxy_header_.empty() || !(client == client_))) {
    proxy_header_ = proxy_v2_header(client, *listener_);
  }
  client_ = client;
  last_activity_ = loop_.now();
}

void UdpSession::send_upstream(std::span<const std::span<const uint8_t>> datagrams) {
  queued_ = 0;
  if (closed_ || datagrams.empty()) return;
  thread_local std::vector<Outgoing> out;
  out.clear();
  for (std::span<const uint8_t> d : datagrams) out.push_back({proxy_header_, d, nullptr, 0, {}});
  SendCounts sent = send_datagrams(upstream_->fd(), out, gso_);
  stats_.send_batches += sent.calls;
  stats_.gso_datagrams += sent.gso_datagrams;
  // Counted per datagram the kernel took (they are taken in order); the others are dropped.
  size_t bytes = 0;
  for (size_t i = 0; i < sent.sent; ++i) bytes += out[i].body.size();
  counts_.datagrams_to_upstream += sent.sent;
  counts_.bytes_to_upstream += bytes;
  stats_.datagrams_to_upstream += sent.sent;
  stats_.bytes_to_upstream += bytes;
  stats_.dropped_send_failed += out.size() - sent.sent;
  // An ICMP port unreachable from an earlier datagram: nothing listens there.
  if (sent.first_error == ECONNREFUSED) close(CloseReason::kUpstreamError);
}

void UdpSession::on_io(uint32_t events) {
  if (closed_) return;
  // Woken with an error (ICMP port unreachable): the kernel may hold it behind datagrams a
  // read returns, so read on to the error or EAGAIN.
  read_upstream((events & event::kError) != 0);
}

void UdpSession::read_upstream(bool until_eagain) {
  DatagramBatch& batch = owner_.upstream_batch();
  // Edge-triggered: read until the socket is empty (bounded by what the kernel holds); a
  // read that did not fill the batch found it empty.
  uint32_t limit = config_->udp.max_responses;
  while (!closed_) {
    // Under max_responses, one more than the session will forward (DNS: two): a read that
    // does not fill that found the socket empty, which the pool then need not check.
    Result<size_t> got = batch.receive(
        upstream_->fd(), limit == 0 ? DatagramBatch::kMaxSlots : limit - responses_ + 1);
    // ECONNREFUSED and the like: the endpoint is not there (ICMP unreachable).
    if (!got) return close(CloseReason::kUpstreamError);
    size_t n = *got;
    upstream_empty_ = batch.drained();
    if (n == 0) return;
    last_activity_ = loop_.now();
    ++stats_.receive_batches;
    stats_.gro_datagrams += batch.gro_datagrams();
    for (size_t i = 0; i < n; ++i) {
      if (batch.too_large(i)) {
        ++stats_.dropped_too_large;
        continue;
      }
      std::span<const uint8_t> data = batch.data(i);
      if (owner_.send_downstream(client_, data, local_)) {
        ++counts_.datagrams_to_downstream;
        counts_.bytes_to_downstream += data.size();
      }
      if (limit != 0 && ++responses_ >= limit) return close(CloseReason::kMaxResponses);
    }
    if (batch.drained() && !until_eagain) return;
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
  // Ended by its answers or its idle time, the socket can serve another session; not after
  // an error (the kernel may hold one more for it) or at a drain or shutdown.
  bool keep = plain_socket_ &&
              (reason == CloseReason::kMaxResponses || reason == CloseReason::kIdleTimeout);
  owner_.socket_pool().give_back(std::move(upstream_), keep, upstream_empty_);
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
