#include "proxy/stun/stun_listener.h"

#include "base/log.h"
#include "stun/binding.h"

namespace sluice::proxy::stun {

namespace {
SourceRateLimiter make_limiter(const ListenerConfig& c) {
  return SourceRateLimiter(c.stun.rate_limit, c.stun.rate_burst, c.stun.max_sources);
}
}  // namespace

Result<std::vector<std::vector<net::Fd>>> bind_alternate_sockets(const net::Address& primary,
                                                                 net::Address& alternate,
                                                                 size_t workers) {
  bool pick_port = alternate.port() == 0;
  // With a port picked by the kernel, the other IP's port may be taken already: try again.
  for (int attempt = 0;; ++attempt) {
    net::Address alt = alternate;
    std::vector<std::vector<net::Fd>> out(workers);
    Status st = Status::ok();
    for (size_t w = 0; w < workers && st; ++w) {
      // The alternate address first, so that a port 0 is known for the other two.
      auto both = udp::bind_udp_socket(alt);
      if (!both) {
        st = both.status();
        break;
      }
      if (alt.port() == 0) {
        auto bound = net::local_address(both->get());
        if (!bound) return bound.status();
        alt = *bound;
        if (alt.port() == primary.port()) {
          st = Status::error("the kernel picked the listener's port");
          break;
        }
      }
      for (const net::Address& a :
           {::sluice::stun::combine(primary, alt), ::sluice::stun::combine(alt, primary)}) {
        auto fd = udp::bind_udp_socket(a);
        if (!fd) {
          st = fd.status();
          break;
        }
        out[w].push_back(std::move(fd.value()));
      }
      out[w].push_back(std::move(both.value()));
    }
    if (st) {
      alternate = alt;
      return out;
    }
    if (!pick_port || attempt == 8) return st;
  }
}

StunListener::StunListener(event::Loop& loop, std::shared_ptr<const ListenerConfig> config,
                           net::Fd socket, std::vector<net::Fd> alternates, net::Fd tcp)
    : loop_(loop), config_(std::move(config)), limiter_(make_limiter(*config_)) {
  if (tcp.valid()) {
    tcp_listener_ = std::make_unique<net::Listener>(loop_, std::move(tcp), config_->name, *this);
  }
  sockets_.push_back(std::make_unique<Socket>(*this, 0, std::move(socket)));
  for (auto& fd : alternates) {
    sockets_.push_back(std::make_unique<Socket>(*this, sockets_.size(), std::move(fd)));
  }
  for (auto& s : sockets_) {
    if (auto local = net::local_address(s->fd.get())) s->local = *local;
  }
}

StunListener::~StunListener() {
  stop_reading();
}

Status StunListener::start() {
  if (reading_ || !sockets_[0]->fd.valid()) return Status::ok();
  for (auto& s : sockets_) {
    if (Status st = loop_.poller().add(s->fd.get(), event::kReadable, s.get()); !st) {
      for (auto& added : sockets_) {
        if (added == s) break;
        loop_.poller().remove(added->fd.get());
      }
      return st;
    }
  }
  reading_ = true;
  if (tcp_listener_) {
    if (Status st = tcp_listener_->start(); !st) return st;
  }
  for (auto& s : sockets_) read(s->index);
  return Status::ok();
}

void StunListener::stop_reading() {
  if (!reading_) return;
  for (auto& s : sockets_) loop_.poller().remove(s->fd.get());
  reading_ = false;
  // Nothing in flight over TCP but answers already written: the connections end with it.
  if (tcp_listener_) tcp_listener_->close();
  // Deleted after this loop iteration: an event of theirs may still be in the batch being
  // dispatched (as on_tcp_closed does for one).
  for (auto& [c, owned] : tcp_) {
    owned->shut();
    loop_.defer_delete(std::move(owned));
  }
  tcp_.clear();
}

void StunListener::on_accept(net::Fd fd, const net::Address& peer) {
  if (!reading_) return;
  if (tcp_.size() >= config_->stun.max_tcp_connections) {
    ++stats_.tcp_refused;
    return;  // closes fd
  }
  auto c = std::make_unique<StunTcpConnection>(*this, loop_, std::move(fd), peer);
  StunTcpConnection* raw = c.get();
  tcp_.emplace(raw, std::move(c));
  ++stats_.tcp_accepted;
  if (Status st = raw->start(); !st) {
    LOG_WARN("stun {}: {}", config_->name, st.message());
    raw->shut();
    tcp_.erase(raw);
  }
}

void StunListener::on_tcp_closed(StunTcpConnection* connection) {
  auto it = tcp_.find(connection);
  if (it == tcp_.end()) return;
  loop_.defer_delete(std::move(it->second));
  tcp_.erase(it);
}

void StunListener::count_tcp_drop(::sluice::stun::Outcome outcome) {
  ++(outcome == ::sluice::stun::Outcome::kDropNotStun ? stats_.dropped_not_stun
                                                      : stats_.dropped_malformed);
}

bool StunListener::answer(std::span<const uint8_t> request, const net::Address& source,
                          const ::sluice::stun::NatDiscovery* nat, ::sluice::stun::Answer& a) {
  // The header checks cost less than a table lookup: what fails them is dropped before it
  // can take a rate-limit entry.
  ::sluice::stun::answer_binding(request, source, config_->stun, nat, a);
  using ::sluice::stun::Outcome;
  switch (a.outcome) {
    case Outcome::kDropNotStun:
      ++stats_.dropped_not_stun;
      return false;
    case Outcome::kDropMalformed:
      ++stats_.dropped_malformed;
      return false;
    case Outcome::kDropBadFingerprint:
      ++stats_.dropped_bad_fingerprint;
      return false;
    case Outcome::kDropNotRequest:
      ++stats_.dropped_not_request;
      return false;
    default:
      break;
  }
  if (!limiter_.allow(udp::address_key(source, false), loop_.now())) {
    ++stats_.dropped_rate_limited;
    return false;
  }
  switch (a.outcome) {
    case Outcome::kSuccess:
      ++stats_.success;
      break;
    case Outcome::kBadRequest:
      ++stats_.bad_request;
      break;
    case Outcome::kUnauthenticated:
      ++stats_.unauthenticated;
      break;
    default:
      ++stats_.unknown_attribute;
      break;
  }
  stats_.bytes_received += request.size();
  stats_.bytes_sent += a.response.size();
  return true;
}

void StunListener::reconfigure(std::shared_ptr<const ListenerConfig> config) {
  bool limits_changed = config->stun.rate_limit != config_->stun.rate_limit ||
                        config->stun.rate_burst != config_->stun.rate_burst ||
                        config->stun.max_sources != config_->stun.max_sources;
  config_ = std::move(config);
  if (limits_changed) limiter_ = make_limiter(*config_);
}

::sluice::stun::NatDiscovery StunListener::nat(size_t index) const {
  return {sockets_[index]->local, sockets_[index ^ 3]->local};
}

void StunListener::read(size_t index) {
  Socket& socket = *sockets_[index];
  bool discovery = sockets_.size() == 4;
  ::sluice::stun::NatDiscovery addresses;
  if (discovery) addresses = nat(index);
  while (reading_) {
    Result<size_t> got = in_.receive(socket.fd.get());
    if (!got) {
      LOG_WARN("stun {}: {}", config_->name, got.status().message());
      return;
    }
    size_t n = *got;
    if (n == 0) break;
    for (size_t i = 0; i < n; ++i) {
      if (in_.too_large(i)) {
        ++stats_.dropped_malformed;
        continue;
      }
      net::Address source = in_.source(i);
      std::span<const uint8_t> request = in_.data(i);
      ::sluice::stun::Answer& a = answer_;  // its buffer reused request after request
      if (!answer(request, source, discovery ? &addresses : nullptr, a)) continue;
      // RFC 5780 §7.2: CHANGE-REQUEST picks the socket the answer leaves from (bit 1 the
      // other IP, bit 0 the other port); RESPONSE-PORT the client's port it goes to.
      size_t from = index;
      if (a.change & ::sluice::stun::kChangeIp) from ^= 2;
      if (a.change & ::sluice::stun::kChangePort) from ^= 1;
      Socket& out = *sockets_[from];
      net::Address to = source;
      if (a.response_port != 0) to.set_port(a.response_port);
      if (out.out.full()) flush(out);
      // On a wildcard-bound socket the answer leaves from the address the client sent to
      // (IP_PKTINFO), not the routing table's pick.
      udp::PacketInfo origin = from == index ? in_.destination(i) : udp::PacketInfo{};
      if (!out.out.push(to, a.response, origin)) {
        // Counted as answered above; the send failure is counted too.
        ++stats_.dropped_send_failed;
      }
    }
    flush_all();
    // A read that did not fill the batch found the socket empty: what arrives later is
    // reported again (edge-triggered), so no call to see EAGAIN.
    if (in_.drained()) break;
  }
}

void StunListener::flush_all() {
  for (auto& s : sockets_) flush(*s);
}

void StunListener::flush(Socket& s) {
  size_t queued = s.out.queued();
  if (queued == 0) return;
  // Answers go to many clients, rarely two to one: no joining (GSO).
  udp::GsoState no_gso;
  size_t sent = s.out.flush(s.fd.get(), no_gso).sent;
  if (sent < queued) stats_.dropped_send_failed += queued - sent;
}

}  // namespace sluice::proxy::stun
