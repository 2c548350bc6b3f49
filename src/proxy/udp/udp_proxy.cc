#include "proxy/udp/udp_proxy.h"

#include <fmt/format.h>

#include "base/log.h"
#include "upstream/lb/load_balancer.h"

namespace sluice::proxy::udp {

UdpProxy::UdpProxy(event::Loop& loop, std::shared_ptr<const ListenerConfig> config,
                   upstream::Cluster& cluster, net::Fd socket,
                   std::shared_ptr<std::atomic<uint32_t>> active_sessions)
    : loop_(loop),
      config_(std::move(config)),
      cluster_(&cluster),
      socket_(std::move(socket)),
      active_sessions_(std::move(active_sessions)),
      in_(config_->udp.max_datagram_size),
      out_(config_->udp.max_datagram_size),
      from_upstream_(config_->udp.max_datagram_size),
      pool_(loop) {
  if (auto a = net::local_address(socket_.get())) local_ = *a;
  apply_offloads();
}

void UdpProxy::apply_offloads() {
  const UdpOptions& o = config_->udp;
  const OffloadSupport& kernel = offload_support();
  bool gro = o.gro && kernel.gro;
  // A socket handed over by another process may have it on: say so either way.
  if (kernel.gro && socket_.valid() && !set_gro(socket_.get(), gro)) gro = false;
  in_ = DatagramBatch(o.max_datagram_size, gro);
  out_ = DatagramBatch(o.max_datagram_size);
  from_upstream_ = DatagramBatch(o.max_datagram_size, gro);
  gso_ = GsoState{};
  gso_.enabled = o.gso && kernel.gso;
}

UdpProxy::~UdpProxy() {
  loop_.cancel_iteration_end(this);
  stop_reading();
  // Sessions still open (a test tearing down): give back their counts.
  for (auto& [key, s] : sessions_) {
    if (!s->closed()) active_sessions_->fetch_sub(1);
  }
  sessions_.clear();
  pool_.stop();
}

Status UdpProxy::start() {
  if (reading_ || !socket_.valid()) return Status::ok();
  if (Status s = loop_.poller().add(socket_.get(), event::kReadable, this); !s) return s;
  reading_ = true;
  // Datagrams queued before the registration raise no edge: read them now.
  on_io(event::kReadable);
  return Status::ok();
}

void UdpProxy::stop_reading() {
  if (!reading_) return;
  loop_.poller().remove(socket_.get());
  reading_ = false;
}

void UdpProxy::reconfigure(std::shared_ptr<const ListenerConfig> config,
                           upstream::Cluster& cluster) {
  // The batches are remade (empty: flushed first) for a new datagram size or offload.
  const UdpOptions& was = config_->udp;
  const UdpOptions& now = config->udp;
  bool remake =
      now.max_datagram_size != was.max_datagram_size || now.gro != was.gro || now.gso != was.gso;
  if (remake) flush();
  config_ = std::move(config);
  cluster_ = &cluster;
  if (remake) apply_offloads();
}

void UdpProxy::on_io(uint32_t events) {
  // Edge-triggered: read until the socket is empty. A read that fills fewer messages than
  // the batch holds found it empty: no call to see EAGAIN (unless woken with an error, which
  // the kernel may hold behind the datagrams it returned).
  bool until_eagain = (events & event::kError) != 0;
  while (reading_) {
    Result<size_t> got = in_.receive(socket_.get());
    if (!got) {
      LOG_WARN("udp {}: {}", config_->name, got.status().message());
      return;
    }
    size_t n = *got;
    if (n == 0) return;
    ++stats_.receive_batches;
    stats_.gro_datagrams += in_.gro_datagrams();
    for (size_t i = 0; i < n; ++i) {
      if (in_.too_large(i)) {
        ++stats_.dropped_too_large;
        continue;
      }
      on_datagram(in_.source(i), in_.data(i), in_.destination(i));
    }
    // Before in_ is read again: what was queued points into it.
    flush_upstream();
    if (in_.drained() && !until_eagain) return;
  }
}

void UdpProxy::on_datagram(const net::Address& source, std::span<const uint8_t> data,
                           const PacketInfo& local) {
  bool by_port = config_->udp.session_key == UdpOptions::SessionKey::kSourceIpPort;
  AddressKey key = address_key(source, by_port);
  UdpSession* session = nullptr;
  if (auto it = sessions_.find(key); it != sessions_.end()) {
    session = it->second.get();
  } else {
    session = open_session(source, key);
    if (!session) return;
  }
  // A session keyed by IP alone heard from another port: what it queued carries the old
  // port's PROXY header; send that first.
  if (session->queued() != 0 && !(source == session->client())) flush_upstream();
  session->from_downstream(source, local);
  if (session->closed()) return;
  ++session->queued();
  to_upstream_.push_back({session, data});
}

void UdpProxy::flush_upstream() {
  // Sessions are deleted only after this loop iteration: a closed one is still there.
  for (size_t i = 0; i < to_upstream_.size(); ++i) {
    UdpSession* session = to_upstream_[i].session;
    if (!session) continue;
    run_.clear();
    for (size_t j = i; j < to_upstream_.size() && run_.size() < session->queued(); ++j) {
      if (to_upstream_[j].session != session) continue;
      run_.push_back(to_upstream_[j].data);
      to_upstream_[j].session = nullptr;
    }
    session->send_upstream(run_);
  }
  to_upstream_.clear();
}

UdpSession* UdpProxy::open_session(const net::Address& source, const AddressKey& key) {
  if (draining_) {
    ++stats_.dropped_draining;
    return nullptr;
  }
  const UdpOptions& o = config_->udp;
  AddressKey ip = address_key(source, false);
  auto refuse = [&](uint64_t& counter, const char* why) -> UdpSession* {
    ++counter;
    // Once a second at most: a flood is one line, not one per datagram.
    if (loop_.now() - last_refusal_log_ >= std::chrono::seconds(1)) {
      last_refusal_log_ = loop_.now();
      LOG_WARN("udp {}: dropping datagrams from {}: {}", config_->name, source.to_string(), why);
    }
    return nullptr;
  };
  if (o.max_sessions_per_source != 0) {
    auto it = per_source_.find(ip);
    if (it != per_source_.end() && it->second >= o.max_sessions_per_source) {
      return refuse(stats_.dropped_max_sessions_per_source, "max_sessions_per_source reached");
    }
  }
  if (active_sessions_->fetch_add(1) >= o.max_sessions) {
    active_sessions_->fetch_sub(1);
    return refuse(stats_.dropped_max_sessions, "max_sessions reached");
  }
  upstream::Cluster& cl = *cluster_;
  if (!cl.has_endpoints()) {
    active_sessions_->fetch_sub(1);
    ++cl.stats().no_healthy_endpoint;
    return refuse(stats_.dropped_no_endpoint,
                  fmt::format("no healthy endpoint in cluster {}", cl.config().name).c_str());
  }
  upstream::lb::PickContext ctx{{}, std::nullopt};
  if (cl.config().lb.policy == upstream::lb::Policy::kRingHash ||
      cl.config().lb.policy == upstream::lb::Policy::kMaglev) {
    ctx.hash = config_->hash_key == ListenerConfig::HashKey::kSourceIpPort
                   ? upstream::lb::hash_key(source.to_string())
                   : upstream::lb::hash_key(source.ip_string());
  }
  size_t endpoint = cl.pick(ctx);
  const net::Address& target = cl.endpoint(endpoint).address;
  ++cl.stats().connect_attempts;
  // A socket an ended session gave back when one is ready (socket_pool.h), else a new one.
  uint64_t reused = pool_.reused();
  auto socket = pool_.connect(target, cl.config().source_address, nullptr);
  stats_.sockets_reused += pool_.reused() - reused;
  if (!socket) {
    active_sessions_->fetch_sub(1);
    ++cl.stats().connect_failures;
    return refuse(stats_.dropped_send_failed, socket.status().message().c_str());
  }
  auto session =
      std::make_unique<UdpSession>(loop_, config_, cl, endpoint, std::move(*socket), source, key,
                                   generation(), stats_, static_cast<SessionCallbacks&>(*this));
  if (o.proxy_protocol) session->set_listener_address(local_);
  if (Status s = session->start(); !s) {
    active_sessions_->fetch_sub(1);
    return refuse(stats_.dropped_send_failed, s.message().c_str());
  }
  // A session that ends with its first answer forwards one datagram: GRO could only join
  // what it drops, and costs a system call per session. A socket with GRO on, or bound to
  // the cluster's source address, is not kept for another session.
  if (o.gro && offload_support().gro && o.max_responses != 1) {
    set_gro(session->upstream_fd(), true);
  } else if (!cl.config().source_address) {
    session->set_plain_socket();
  }
  ++stats_.sessions;
  // Counted only under a limit: a table update per session saved when there is none (a
  // reload that sets one counts the sessions opened from then on).
  if (o.max_sessions_per_source != 0) {
    ++per_source_[ip];
    session->set_counted_per_source();
  }
  UdpSession* raw = session.get();
  sessions_.emplace(key, std::move(session));
  return raw;
}

bool UdpProxy::send_downstream(const net::Address& to, std::span<const uint8_t> data,
                               const PacketInfo& from) {
  if (out_.full()) flush();
  if (!out_.push(to, data, from)) {
    ++stats_.dropped_too_large;
    return false;
  }
  ++stats_.datagrams_to_downstream;
  stats_.bytes_to_downstream += data.size();
  loop_.at_iteration_end(this);
  return true;
}

void UdpProxy::flush() {
  size_t queued = out_.queued();
  if (queued == 0) return;
  SendCounts sent = out_.flush(socket_.get(), gso_);
  stats_.send_batches += sent.calls;
  stats_.gso_datagrams += sent.gso_datagrams;
  if (sent.sent < queued) stats_.dropped_send_failed += queued - sent.sent;
}

void UdpProxy::on_session_closed(UdpSession& session, CloseReason) {
  active_sessions_->fetch_sub(1);
  if (session.counted_per_source()) {
    AddressKey ip = session.key();
    ip.port = 0;
    if (auto it = per_source_.find(ip); it != per_source_.end() && --it->second == 0) {
      per_source_.erase(it);
    }
  }
  auto it = sessions_.find(session.key());
  if (it != sessions_.end()) {
    // It may be inside its own callback: deleted once this iteration's events are handled.
    loop_.defer_delete(std::move(it->second));
    sessions_.erase(it);
  }
  if (sessions_.empty()) {
    if (draining_) flush();
    if (on_idle_) on_idle_();
  }
}

void UdpProxy::drain() {
  draining_ = true;
  stop_reading();
  pool_.stop();
}

void UdpProxy::drain_for_upgrade() {
  for (auto& [key, s] : sessions_) s->mark_upgraded();
  if (!sessions_.empty()) {
    LOG_INFO("udp {}: {} sessions end with the upgrade; their clients continue in the new process",
             config_->name, sessions_.size());
  }
  drain();
}

void UdpProxy::close_all(bool drain_deadline) {
  std::vector<UdpSession*> open;
  open.reserve(sessions_.size());
  for (auto& [key, s] : sessions_) open.push_back(s.get());
  for (UdpSession* s : open) {
    s->close(drain_deadline ? CloseReason::kDrainDeadline : CloseReason::kShutdown);
  }
  pool_.stop();
  flush();
}

}  // namespace sluice::proxy::udp
