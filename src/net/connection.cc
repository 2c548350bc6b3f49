#include "net/connection.h"

#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <algorithm>

#include <cerrno>

#include "net/connect.h"

namespace sluice::net {

static_assert(sizeof(Connection) <= 112, "Connection grew: every open connection holds one");
namespace {
constexpr size_t kReadChunk = 16 * 1024;
// After a read that filled the buffer (a bulk transfer), read in larger pieces: fewer
// syscalls and parser calls per megabyte.
constexpr size_t kBulkReadChunk = 128 * 1024;
// Writes this large (with what is queued) go out at once with writev, without being copied
// into the output buffer first.
constexpr size_t kDirectWrite = 32 * 1024;
constexpr uint32_t kInterest = event::kReadable | event::kWritable | event::kPeerClosed;
}  // namespace

Status Connection::adopt(Fd fd) {
  fd_ = std::move(fd);
  readable_ = true;  // bytes may have arrived before registration
  receiving_ = false;
  sending_ = false;
  in_flight_ = 0;
  receive_later_ = !transport_ && loop_.receive_by_completion();
  woken_to_read_ = false;
  return loop_.poller().add(fd_.get(), kInterest, this);
}

void Connection::after_read_wakeup(size_t bytes) {
  // A wake-up that found nothing (its bytes were read already) says nothing.
  if (bytes == 0) return;
  if (!woken_to_read_) {
    woken_to_read_ = true;
    return;
  }
  if (!fd_.valid() || !read_enabled_ || peer_closed_ || readable_) return;
  // A large transfer is read here, up to 128 KiB a time, not a receive piece at a time.
  if (bytes > event::kReceivePiece) return;
  receive_later_ = false;
  // The loop receives (a buffer of its own is taken only while bytes are handed over); the
  // poll hears of writability and errors only, so arriving bytes make one completion, not
  // a readiness report and a recv(). Both changes ride with the next wait(): no system call.
  if (Status s = loop_.poller().modify(fd_.get(), event::kWritable, this); !s) return fail(EBADF);
  if (loop_.poller().add_receiver(fd_.get(), this)) {
    receiving_ = true;
    // Nothing is in flight yet (this is the first send by completion): no reordering.
    sending_ = loop_.poller().can_send();
    return;
  }
  if (Status s = loop_.poller().modify(fd_.get(), kInterest, this); !s) fail(EBADF);
}

Status Connection::adopt_connecting(Fd fd, bool connected) {
  fd_ = std::move(fd);
  connecting_ = !connected;
  return loop_.poller().add(fd_.get(), kInterest, this);
}

void Connection::close(bool reset) {
  loop_.cancel_iteration_end(this);
  if (!fd_.valid()) return;
  // Cancels a send in flight too; the loop keeps its bytes until the kernel let go of them.
  loop_.poller().remove(fd_.get());
  in_flight_ = 0;
  // An orderly close says goodbye in the transport too (TLS close_notify).
  if (transport_ && !reset && out_.empty()) transport_->shutdown();
  if (reset) set_reset_on_close(fd_.get());
  fd_.reset();
  // The storage stays until the Connection is destroyed: a parser may still be walking the
  // input when a callback closes the connection.
  in_.clear();
  out_.clear();
}

bool Connection::close_if_quiet() {
  if (!fd_.valid() || transport_ || connecting_ || !in_.empty()) return false;
  // In flight: whether those bytes reach the socket before a close() here would cancel them
  // is not known until their completion. The caller half-closes instead.
  if (in_flight_ > 0) return false;
  // Held back, the last segment leaves with the FIN of close() below; if the connection
  // stays open instead, shutdown_write()'s FIN (or the next send) pushes it out. Sent now
  // even when sending by completion: the decision needs the bytes in the kernel.
  flush_now(MSG_MORE);
  if (!fd_.valid() || !out_.empty()) return false;
  // Bytes the loop received but has not handed over count as unread too.
  if (receiving_ && loop_.poller().receive_pending(fd_.get())) return false;
  int unread = 0;
  if (::ioctl(fd_.get(), SIOCINQ, &unread) != 0 || unread != 0) return false;
  close();
  return true;
}

void Connection::fail(int err) {
  close(true);
  callbacks_->on_error(err);
}

void Connection::on_io(uint32_t events) {
  if (!fd_.valid()) return;
  if (receiving_) {
    // Bytes, the FIN and errors come through on_received() and on_receive_failed().
    if (events & (event::kWritable | event::kError)) flush();
    return;
  }
  if (connecting_) {
    if (!(events & (event::kWritable | event::kError))) return;
    int err = 0;
    switch (check_connect(fd_.get(), &err)) {
      case ConnectState::kInProgress:
        return;
      case ConnectState::kFailed:
        return fail(err);
      case ConnectState::kConnected:
        connecting_ = false;
        callbacks_->on_connected();
        if (!fd_.valid()) return;
        break;
    }
  }
  if (transport_ && !transport_->established() && !drive_handshake()) return;
  const bool to_read = events & (event::kReadable | event::kPeerClosed | event::kError);
  if (to_read) readable_ = true;
  if (events & (event::kPeerClosed | event::kError)) rdhup_ = true;
  if (events & (event::kWritable | event::kError)) flush();
  const size_t bytes = fd_.valid() ? do_read() : 0;
  if (receive_later_ && to_read) after_read_wakeup(bytes);
}

bool Connection::drive_handshake() {
  Transport::Step step = transport_->handshake();
  std::string early;
  if (step != Transport::Step::kFailed && transport_->take_early_data(early)) {
    // Early data goes up before the handshake is done (the owner sees secured() false and
    // decides what is safe to act on); what it writes waits for the handshake, which goes
    // on at once: its next bytes may be here already.
    in_.append(early);
    if (read_enabled_) callbacks_->on_read();
    if (!fd_.valid()) return false;
    step = transport_->handshake();
  }
  switch (step) {
    case Transport::Step::kWantRead:
    case Transport::Step::kWantWrite:
      return false;
    case Transport::Step::kFailed:
      fail(EPROTO);
      return false;
    case Transport::Step::kDone:
      break;
  }
  // Records may have come with the last handshake flight: read until the socket says wait.
  readable_ = true;
  callbacks_->on_secured();
  if (!fd_.valid()) return false;
  flush();
  return fd_.valid();
}

void Connection::on_received(const char* data, size_t size) {
  if (!fd_.valid()) return;
  if (size == 0) {
    fin_held_ = true;
  } else {
    in_.append(std::string_view(data, size));
  }
  if (size == event::kReceivePiece && !leaving_) {
    // A full piece: more is on its way (an upload). It is read on readiness instead, in
    // large reads, once the receive has handed over what it took.
    leaving_ = true;
    loop_.poller().stop_receiver(fd_.get());
  }
  // Reading off: kept (the receive is being cancelled) until set_read_enabled(true).
  if (!read_enabled_) return;
  if (size > 0) {
    callbacks_->on_read();
    if (!fd_.valid()) return;
  }
  finish_read();
}

void Connection::on_receive_failed(int err) {
  if (!fd_.valid()) return;
  if (err == EOPNOTSUPP) {
    // The loop could not set up its receive buffers: read on readiness instead, for good.
    receiving_ = false;
    receive_later_ = false;
    if (Status s = loop_.poller().modify(fd_.get(), kInterest, this); !s) return fail(EBADF);
    readable_ = true;
    do_read();
    return;
  }
  // As a failed recv(): the connection is reset, whether reading was on or not.
  fail(err);
}

void Connection::on_receive_stopped() {
  if (!fd_.valid()) return;
  receiving_ = false;
  leaving_ = false;
  receive_later_ = true;  // back to the loop's receive once requests are small again
  if (Status s = loop_.poller().modify(fd_.get(), kInterest, this); !s) return fail(EBADF);
  readable_ = true;
  bulk_ = true;
  do_read();
}

void Connection::finish_read() {
  if (fin_held_ && read_enabled_) {
    fin_held_ = false;
    peer_closed_ = true;
  }
  if (peer_closed_ && !eof_delivered_ && fd_.valid() && read_enabled_) {
    // What the callbacks wrote while reading (an answer made at once, before the FIN that
    // came with the request was read) goes out before they hear of the end: one that closes
    // on it would otherwise drop those bytes and send a FIN that looks like a clean end.
    // (With bytes in flight they wait behind them: the owner sees them in queued().)
    if (!out_.empty()) flush_now(0);
    if (!fd_.valid()) return;
    eof_delivered_ = true;
    callbacks_->on_read_closed();
  }
  // Everything read was consumed: an idle connection keeps no input buffer.
  if (fd_.valid() && in_.empty()) in_.release();
}

size_t Connection::do_read() {
  if (receiving_) {
    finish_read();
    return 0;
  }
  if (!secured()) return 0;
  size_t total = 0;
  while (readable_ && read_enabled_ && fd_.valid() && !peer_closed_) {
    char* p = in_.prepare(bulk_ ? kBulkReadChunk : kReadChunk);
    size_t room = in_.writable();
    ssize_t n = transport_ ? transport_->read(p, room) : ::recv(fd_.get(), p, room, 0);
    if (n > 0) {
      // A short read drained the socket: with edge-triggered epoll, bytes arriving later
      // wake us again, so skip the read that would only say EAGAIN. Not after the peer
      // closed: its FIN (read as 0) must still be seen. Not through a transport, which
      // reads the socket a record at a time.
      bulk_ = static_cast<size_t>(n) == room;
      if (!bulk_ && !rdhup_ && !transport_) {
        readable_ = false;
        drained_iteration_ = loop_.stats().iterations;
      }
      in_.commit(static_cast<size_t>(n));
      total += static_cast<size_t>(n);
      callbacks_->on_read();
      continue;
    }
    if (n == 0) {
      peer_closed_ = true;
      break;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      readable_ = false;
      drained_iteration_ = loop_.stats().iterations;
      if (in_.empty()) in_.release();
      return total;
    }
    if (errno == EINTR) continue;
    fail(errno);
    return total;
  }
  finish_read();
  return total;
}

void Connection::write(std::string_view bytes) {
  if (!fd_.valid() || bytes.empty()) return;
  if (transport_ && transport_->established() && !connecting_ &&
      out_.size() + bytes.size() >= kDirectWrite) {
    // Large, through TLS: what is queued, then these bytes, go to the transport now, record
    // by record, and only what the socket does not take is copied into the queue. (A
    // record the transport could not send yet is retried from the queue, which starts with
    // the same bytes.)
    while (!out_.empty()) {
      ssize_t n = transport_->write(out_.data(), out_.size());
      if (n > 0) {
        out_.consume(static_cast<size_t>(n));
        continue;
      }
      if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) return fail(errno);
      break;
    }
    while (out_.empty() && !bytes.empty()) {
      ssize_t n = transport_->write(bytes.data(), bytes.size());
      if (n > 0) {
        bytes.remove_prefix(static_cast<size_t>(n));
        continue;
      }
      if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) return fail(errno);
      break;
    }
    if (bytes.empty() && out_.empty()) {
      out_.release();
      if (shutdown_pending_) shutdown_write();
      if (was_above_high_) loop_.at_iteration_end(this);
      return;
    }
  }
  if (!connecting_ && !transport_ && in_flight_ == 0 &&
      out_.size() + bytes.size() >= kDirectWrite) {
    // Large: send what is queued and these bytes together now, copying only the rest. (Not
    // behind bytes in flight: these queue after them.)
    iovec iov[2] = {{const_cast<char*>(out_.data()), out_.size()},
                    {const_cast<char*>(bytes.data()), bytes.size()}};
    msghdr msg{};
    msg.msg_iov = out_.empty() ? iov + 1 : iov;
    msg.msg_iovlen = out_.empty() ? 1 : 2;
    ssize_t n = ::sendmsg(fd_.get(), &msg, MSG_NOSIGNAL);
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) return fail(errno);
    size_t sent = n > 0 ? static_cast<size_t>(n) : 0;
    size_t from_queue = std::min(sent, out_.size());
    out_.consume(from_queue);
    bytes.remove_prefix(sent - from_queue);
    if (bytes.empty() && out_.empty()) {
      out_.release();
      if (shutdown_pending_) shutdown_write();
      // A writer held back by the watermark hears about the drain at the end of the
      // iteration (flush() tells it), not from inside this write.
      if (was_above_high_) loop_.at_iteration_end(this);
      return;
    }
  }
  out_.append(bytes);
  if (above_high_watermark()) was_above_high_ = true;
  loop_.at_iteration_end(this);
}

void Connection::flush(int send_flags) {
  if (!secured()) return;
  if (sending_) return send_by_completion(send_flags);
  send_direct(send_flags);
}

void Connection::flush_now(int send_flags) {
  if (!secured() || in_flight_ > 0) return;
  send_direct(send_flags);
}

void Connection::send_by_completion(int send_flags) {
  if (!fd_.valid() || in_flight_ > 0) return;
  if (out_.empty()) return drained();
  const auto size = static_cast<uint32_t>(out_.size());
  // The loop takes the buffer itself (out_ is left empty): it is never appended to nor
  // moved while the kernel reads it, and outlives this connection if need be.
  if (loop_.poller().send(fd_.get(), out_, send_flags)) {
    in_flight_ = size;
    return;
  }
  // Refused (nothing is in flight): send(2) from now on.
  sending_ = false;
  send_direct(send_flags);
}

void Connection::on_sent(size_t size) {
  if (!fd_.valid()) return;
  in_flight_ -= static_cast<uint32_t>(std::min<size_t>(size, in_flight_));
  if (in_flight_ > 0) return;  // a short send: the loop sends the rest
  // What was written meanwhile goes at the end of this iteration, with whatever else is
  // written until then.
  if (!out_.empty()) return loop_.at_iteration_end(this);
  drained();
}

void Connection::on_send_failed(int err) {
  if (!fd_.valid()) return;
  in_flight_ = 0;
  // As a failed send(): the connection is reset, once (its other requests' completions
  // are dropped with the registration).
  fail(err);
}

void Connection::send_direct(int send_flags) {
  while (fd_.valid() && !connecting_ && !out_.empty()) {
    ssize_t n = transport_ ? transport_->write(out_.data(), out_.size())
                           : ::send(fd_.get(), out_.data(), out_.size(), MSG_NOSIGNAL | send_flags);
    if (n > 0) {
      out_.consume(static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINPROGRESS)) return;
    if (n < 0 && errno == EINTR) continue;
    return fail(n < 0 ? errno : EPIPE);
  }
  if (!fd_.valid() || connecting_) return;
  drained();
}

void Connection::drained() {
  out_.release();
  if (shutdown_pending_) {
    if (transport_ && !transport_->shutdown()) return;  // again on the next writable edge
    shutdown_pending_ = false;
    ::shutdown(fd_.get(), SHUT_WR);
  }
  if (was_above_high_) {
    was_above_high_ = false;
    callbacks_->on_write_drained();
  }
}

void Connection::set_read_enabled(bool enabled) {
  if (read_enabled_ == enabled) return;
  read_enabled_ = enabled;
  if (receiving_ && fd_.valid()) loop_.poller().pause_receiver(fd_.get(), !enabled);
  // Resuming: deliver what is already buffered, then read what the kernel holds (its edge
  // was consumed while reading was off).
  if (enabled && fd_.valid()) {
    if (!in_.empty()) callbacks_->on_read();
    if (fd_.valid()) do_read();
  }
}

void Connection::shutdown_write() {
  if (!fd_.valid()) return;
  if (!out_.empty() || in_flight_ > 0 || connecting_ || !secured()) {
    shutdown_pending_ = true;
    return;
  }
  if (transport_ && !transport_->shutdown()) {
    shutdown_pending_ = true;  // the close alert goes first, when the socket takes it
    return;
  }
  shutdown_pending_ = false;
  ::shutdown(fd_.get(), SHUT_WR);
}

bool Connection::check_alive() {
  if (!fd_.valid() || peer_closed_ || fin_held_ || !in_.empty()) return false;
  if (receiving_ && loop_.poller().receive_pending(fd_.get())) return false;
  char byte;
  ssize_t n = ::recv(fd_.get(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  if (n == 0) return false;  // FIN
  if (n > 0 && transport_) {
    // Through TLS, records that carry no data (a session ticket, a key update) may arrive
    // at any time; read them. Data or a close is not alive.
    ssize_t r = transport_->read(&byte, 1);
    return r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
  }
  if (n > 0) return false;  // unsolicited bytes on an idle connection: not trustworthy
  return errno == EAGAIN || errno == EWOULDBLOCK;
}

}  // namespace sluice::net
