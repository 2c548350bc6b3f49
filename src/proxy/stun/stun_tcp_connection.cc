#include "proxy/stun/stun_tcp_connection.h"

#include <sys/socket.h>

#include <cerrno>

#include "proxy/stun/stun_listener.h"
#include "stun/message.h"

namespace sluice::proxy::stun {

StunTcpConnection::StunTcpConnection(StunListener& owner, event::Loop& loop, net::Fd fd,
                                     net::Address peer)
    : owner_(owner),
      loop_(loop),
      fd_(std::move(fd)),
      peer_(std::move(peer)),
      idle_(loop.timers(), [this] { close(); }) {}

StunTcpConnection::~StunTcpConnection() {
  shut();
}

Status StunTcpConnection::start() {
  if (Status s = loop_.poller().add(fd_.get(), event::kReadable, this); !s) return s;
  idle_.arm_at(loop_.now() + owner_.config().stun.tcp_idle_timeout);
  read_all();
  return Status::ok();
}

void StunTcpConnection::shut() {
  if (closed_) return;
  closed_ = true;
  idle_.cancel();
  loop_.poller().remove(fd_.get());
  fd_ = net::Fd();
}

void StunTcpConnection::close() {
  if (closed_) return;
  shut();
  owner_.on_tcp_closed(this);
}

void StunTcpConnection::on_io(uint32_t events) {
  if (closed_) return;
  if (events & event::kWritable) write_pending();
  if (!closed_) read_all();
}

void StunTcpConnection::read_all() {
  uint8_t buf[4096];
  while (!closed_) {
    ssize_t n = ::recv(fd_.get(), buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    if (n <= 0) {
      close();  // the peer closed, or reset
      return;
    }
    in_.insert(in_.end(), buf, buf + n);
    if (!handle_messages()) {
      close();
      return;
    }
    write_pending();
  }
}

bool StunTcpConnection::handle_messages() {
  using ::sluice::stun::kHeaderSize;
  size_t at = 0;
  bool answered = false;
  while (in_.size() - at >= kHeaderSize) {
    const uint8_t* h = &in_[at];
    // RFC 8489 §6.2.2: nothing but the header frames a message; a stream that fails the
    // header checks cannot be resynchronised.
    uint32_t cookie = uint32_t{h[4]} << 24 | uint32_t{h[5]} << 16 | uint32_t{h[6]} << 8 | h[7];
    size_t length = static_cast<size_t>(h[2] << 8 | h[3]);
    if ((h[0] & 0xC0) != 0 || cookie != ::sluice::stun::kMagicCookie) {
      owner_.count_tcp_drop(::sluice::stun::Outcome::kDropNotStun);
      return false;
    }
    if (length % 4 != 0 || kHeaderSize + length > kMaxMessage) {
      owner_.count_tcp_drop(::sluice::stun::Outcome::kDropMalformed);
      return false;
    }
    if (in_.size() - at < kHeaderSize + length) break;
    std::span<const uint8_t> message(&in_[at], kHeaderSize + length);
    at += message.size();
    ::sluice::stun::Answer a;
    if (owner_.answer(message, peer_, nullptr, a)) {
      out_.insert(out_.end(), a.response.begin(), a.response.end());
      answered = true;
    }
  }
  in_.erase(in_.begin(), in_.begin() + static_cast<std::ptrdiff_t>(at));
  if (answered) idle_.arm_at(loop_.now() + owner_.config().stun.tcp_idle_timeout);
  return true;
}

void StunTcpConnection::write_pending() {
  while (!out_.empty() && !closed_) {
    ssize_t n = ::send(fd_.get(), out_.data(), out_.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    if (n < 0) {
      close();
      return;
    }
    out_.erase(out_.begin(), out_.begin() + n);
  }
  if (closed_) return;
  if (out_.size() > kMaxPendingOutput) {
    close();  // a client that sends requests and reads no answers
    return;
  }
  bool want = !out_.empty();
  if (want != writable_interest_) {
    writable_interest_ = want;
    (void)loop_.poller().modify(
        fd_.get(), event::kReadable | (want ? static_cast<uint32_t>(event::kWritable) : 0u), this);
  }
}

}  // namespace sluice::proxy::stun
