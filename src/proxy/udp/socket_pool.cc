#include "proxy/udp/socket_pool.h"

#include <sys/socket.h>

#include <cerrno>

#include "proxy/udp/datagram_socket.h"

namespace sluice::proxy::udp {

void UpstreamSocket::on_io(uint32_t events) {
  if (user_) {
    user_->on_io(events);
  } else if (pool_) {
    pool_->on_pooled_io(*this, events);
  }
}

UpstreamSocketPool::UpstreamSocketPool(event::Loop& loop)
    : loop_(loop), idle_timer_(loop.timers(), [this] { close_idle(); }) {}

UpstreamSocketPool::~UpstreamSocketPool() {
  stop();
}

Result<std::unique_ptr<UpstreamSocket>> UpstreamSocketPool::connect(
    const net::Address& to, const std::optional<net::Address>& source, event::IoHandler* user) {
  // Only a socket back for kQuarantine. Back for that long before the previous iteration
  // began, whatever the kernel reported for it by then has been handled (read and thrown
  // away) already; else it may be in this iteration's reports, after this one: read now.
  MonoTime now = loop_.now();
  MonoTime settled = loop_.previous_now();
  auto it = kept_.begin();
  while (!source && it != kept_.end() && (*it)->since_ + kQuarantine <= now) {
    if ((*it)->family_ != to.family()) {
      ++it;
      continue;
    }
    std::unique_ptr<UpstreamSocket> s = std::move(*it);
    it = kept_.erase(it);
    if (s->since_ + kQuarantine > settled && !discard_queued(*s)) {
      close(std::move(s));
      continue;
    }
    if (::connect(s->fd(), to.sockaddr_ptr(), to.length()) != 0) {
      int error = errno;
      close(std::move(s));
      return Status::from_errno("connect " + to.to_string(), error);
    }
    ++reused_;
    s->set_user(user);
    return s;
  }
  auto fd = connected_udp_socket(to, source);
  if (!fd) return fd.status();
  auto s = std::make_unique<UpstreamSocket>(std::move(*fd));
  s->pool_ = this;
  s->family_ = to.family();
  s->set_user(user);
  if (Status st = loop_.poller().add(s->fd(), event::kReadable, s.get()); !st) return st;
  s->registered_ = true;
  return s;
}

void UpstreamSocketPool::give_back(std::unique_ptr<UpstreamSocket> socket, bool keep, bool empty) {
  socket->set_user(nullptr);
  if (!keep || stopped_ || kept_.size() >= kMaxKept) return close(std::move(socket));
  // Forget the peer and the port: the kernel stops delivering to it, and the next connect
  // binds a new random port.
  sockaddr unspec{};
  unspec.sa_family = AF_UNSPEC;
  if (::connect(socket->fd(), &unspec, sizeof unspec) != 0) return close(std::move(socket));
  // What the session left unread goes, as it would with the socket.
  if (!empty && !discard_queued(*socket)) return close(std::move(socket));
  socket->since_ = loop_.now();
  kept_.push_back(std::move(socket));
  if (!idle_timer_.armed()) idle_timer_.arm_at(loop_.now() + kIdle);
}

bool UpstreamSocketPool::discard_queued(UpstreamSocket& socket) {
  uint8_t discard[1];
  // Bounded: the socket is unreachable now, so what it holds is all it will get.
  for (int i = 0; i < 4096; ++i) {
    ssize_t n = ::recv(socket.fd(), discard, sizeof discard, MSG_DONTWAIT | MSG_TRUNC);
    if (n >= 0 || errno == EINTR) continue;
    return errno == EAGAIN || errno == EWOULDBLOCK;
  }
  return false;
}

void UpstreamSocketPool::on_pooled_io(UpstreamSocket& socket, uint32_t events) {
  // A datagram that reached the socket before it was disconnected, or an error from then:
  // never for the next session.
  if ((events & event::kError) == 0 && discard_queued(socket)) return;
  for (auto it = kept_.begin(); it != kept_.end(); ++it) {
    if (it->get() == &socket) {
      std::unique_ptr<UpstreamSocket> s = std::move(*it);
      kept_.erase(it);
      return close(std::move(s));
    }
  }
}

void UpstreamSocketPool::close(std::unique_ptr<UpstreamSocket> socket) {
  if (socket->registered_) loop_.poller().remove(socket->fd());
  socket->registered_ = false;
  // The loop may still hold a report for it in this iteration's batch: deleted after it.
  socket->fd_.reset();
  socket->pool_ = nullptr;
  socket->user_ = nullptr;
  loop_.defer_delete(std::move(socket));
}

void UpstreamSocketPool::close_idle() {
  MonoTime now = loop_.now();
  while (!kept_.empty() && kept_.front()->since_ + kIdle <= now) {
    std::unique_ptr<UpstreamSocket> s = std::move(kept_.front());
    kept_.pop_front();
    close(std::move(s));
  }
  if (!kept_.empty()) idle_timer_.arm_at(kept_.front()->since_ + kIdle);
}

void UpstreamSocketPool::stop() {
  stopped_ = true;
  idle_timer_.cancel();
  while (!kept_.empty()) {
    std::unique_ptr<UpstreamSocket> s = std::move(kept_.front());
    kept_.pop_front();
    close(std::move(s));
  }
}

}  // namespace sluice::proxy::udp
