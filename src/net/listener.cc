#include "net/listener.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string_view>

#include "base/log.h"

namespace sluice::net {
namespace {
constexpr auto kAcceptPause = std::chrono::milliseconds(100);
// Connections accepted per wake-up before the loop serves its other events: a burst of new
// connections is taken in batches (fewer epoll round trips than one per wake-up) without
// starving the connections already open.
constexpr int kAcceptBatch = 64;
}  // namespace

Result<Fd> bind_listener(const Address& address, int backlog, const SocketOptions& options,
                         bool reuse_port) {
  auto sock = tcp_socket(address.family());
  if (!sock) return sock.status();
  int fd = sock->get();
  int one = 1;
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
      (reuse_port && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0)) {
    return Status::from_errno("setsockopt SO_REUSEADDR/SO_REUSEPORT", errno);
  }
  if (address.family() == AF_INET6 &&
      setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) != 0) {
    return Status::from_errno("setsockopt IPV6_V6ONLY", errno);
  }
  if (Status s = apply_socket_options(fd, options); !s) return s;
  if (options.fastopen_queue != 0) {
    int q = static_cast<int>(options.fastopen_queue);
    if (setsockopt(fd, IPPROTO_TCP, TCP_FASTOPEN, &q, sizeof q) != 0) {
      return Status::from_errno("setsockopt TCP_FASTOPEN", errno);
    }
  }
  if (options.defer_accept.count() != 0) {
    if (Status s = apply_listening_options(fd, options); !s) return s;
  }
  if (::bind(fd, address.sockaddr_ptr(), address.length()) != 0) {
    return Status::from_errno(fmt::format("bind {}", address.to_string()), errno);
  }
  if (::listen(fd, backlog) != 0) {
    return Status::from_errno(fmt::format("listen {}", address.to_string()), errno);
  }
  return sock;
}

Status apply_listening_options(int fd, const SocketOptions& options) {
  auto secs = std::chrono::ceil<std::chrono::seconds>(options.defer_accept).count();
  int defer = static_cast<int>(secs);
  if (setsockopt(fd, IPPROTO_TCP, TCP_DEFER_ACCEPT, &defer, sizeof defer) != 0) {
    return Status::from_errno("setsockopt TCP_DEFER_ACCEPT", errno);
  }
  // 0 is the kernel's default (net.ipv4.tcp_notsent_lowat).
  int lowat = static_cast<int>(options.notsent_lowat);
  if (setsockopt(fd, IPPROTO_TCP, TCP_NOTSENT_LOWAT, &lowat, sizeof lowat) != 0) {
    return Status::from_errno("setsockopt TCP_NOTSENT_LOWAT", errno);
  }
  return Status::ok();
}

bool same_listening_socket(const SocketOptions& a, const SocketOptions& b) {
  SocketOptions x = a;
  x.defer_accept = b.defer_accept;
  x.notsent_lowat = b.notsent_lowat;
  return x == b;
}

Listener::Listener(event::Loop& loop, Fd fd, std::string name, ListenerCallbacks& callbacks)
    : loop_(loop),
      fd_(std::move(fd)),
      name_(std::move(name)),
      callbacks_(&callbacks),
      resume_timer_(loop.timers(), [this] {
        paused_ = false;
        if (by_completion_) {
          loop_.poller().resume_acceptor(fd_.get());
        } else {
          accept_all();
        }
      }) {}

Listener::~Listener() {
  // Not close(): the callbacks may be going away too; connections accepted for this listener
  // and not handed over are closed by the poller.
  if (!fd_.valid()) return;
  resume_timer_.cancel();
  loop_.poller().remove_and_release(fd_.get());
  fd_.reset();
}

namespace {
// Accepting by completion is opt-in for now: under a binary upgrade on io_uring
// (test_upgrade.py), the old process was seen, rarely, to wait out its drain_timeout for one
// connection with it, and never without it (docs/event-backends.md).
bool accept_by_completion_wanted() {
  const char* v = std::getenv("SLUICE_IO_URING_ACCEPT");
  return v && std::string_view(v) == "multishot";
}
}  // namespace

Status Listener::start() {
  if (accept_by_completion_wanted() && loop_.poller().add_acceptor(fd_.get(), this)) {
    // The kernel takes what queued before the worker started with the first wait().
    by_completion_ = true;
    return Status::ok();
  }
  return start_polling();
}

Status Listener::start_polling() {
  by_completion_ = false;
  Status s = loop_.poller().add(fd_.get(), event::kReadable, this);
  if (s) accept_all();  // connections may have queued before the worker started
  return s;
}

void Listener::accept_queued_and_close() {
  if (!fd_.valid()) return;
  // By completion, close() takes what is queued already.
  if (!by_completion_ && !paused_) accept_all();
  close();
}

void Listener::accept_by_polling(Duration max_wait) {
  if (!by_completion_ || !fd_.valid()) return;
  loop_.poller().stop_acceptor(fd_.get(), max_wait);
  resume_timer_.cancel();
  paused_ = false;
  if (Status s = start_polling(); !s) LOG_ERROR("listener {}: {}", name_, s.message());
}

void Listener::close() {
  if (!fd_.valid()) return;
  if (by_completion_) {
    // Connections the kernel accepted for this listener, up to the end of the accept: served.
    loop_.poller().stop_acceptor(fd_.get(), kStopWait);
    // The kernel wakes one accept of those waiting on a listening socket (they wait as
    // exclusive waiters), and a wake-up that came while this one was being cancelled ends
    // with it, unused: the connection would wait in the backlog for the next wake-up, while
    // the socket may be shared with another process (after a binary upgrade). Take what is
    // queued now that nothing waits here any more.
    if (!paused_) accept_backlog();
  } else {
    loop_.poller().remove_and_release(fd_.get());  // stops accepting at once
  }
  resume_timer_.cancel();
  fd_.reset();
}

void Listener::accept_backlog() {
  // Bounded by the backlog the kernel keeps (listen(2) caps it at 65535).
  for (int i = 0; i < 65536 && fd_.valid(); ++i) {
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    int fd =
        accept4(fd_.get(), reinterpret_cast<sockaddr*>(&ss), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO || errno == EPERM) continue;
      return;  // EAGAIN: empty; out of descriptors: the kernel keeps the rest
    }
    callbacks_->on_accept(Fd(fd), Address::from_sockaddr(reinterpret_cast<sockaddr*>(&ss), len));
  }
}

void Listener::on_io(uint32_t) {
  if (paused_) return;
  // Reports gathered before the queue was last found empty named connections taken then: a
  // burst reported once per connection costs one accept4() per report otherwise, each
  // saying EAGAIN.
  uint64_t gathered = loop_.poller().gathered();
  if (gathered != 0 && gathered == drained_at_) return;
  accept_all();
}

void Listener::on_accepted(int fd) {
  Fd conn(fd);
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  // A multishot accept gives no address (one buffer would serve every completion).
  if (getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) {
    return;  // reset before it was handed over (ENOTCONN): as accept4's ECONNABORTED
  }
  log_resumed();
  callbacks_->on_accept(std::move(conn),
                        Address::from_sockaddr(reinterpret_cast<sockaddr*>(&ss), len));
}

void Listener::on_accept_failed(int err) {
  if (!fd_.valid()) return;
  if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
    pause(err);
    return;
  }
  if (err == EINVAL || err == EOPNOTSUPP) {
    // A kernel without multishot accept (before 5.19): poll and accept as on epoll.
    LOG_INFO("listener {}: completion-based accept refused ({}); polling instead", name_,
             std::strerror(err));
    loop_.poller().remove(fd_.get());
    if (Status s = start_polling(); !s) {
      LOG_ERROR("listener {}: {}", name_, s.message());
    }
    return;
  }
  LOG_ERROR("listener {}: accept failed: {}; retrying in {}ms", name_, std::strerror(err),
            kAcceptPause.count());
  paused_ = true;
  resume_timer_.arm_at(loop_.now() + kAcceptPause);
}

void Listener::log_resumed() {
  if (pauses_ > 0 && !paused_ && resumed_log_pending_) {
    resumed_log_pending_ = false;
    LOG_WARN("listener {}: accepting again after descriptor exhaustion ({} pauses so far)", name_,
             pauses_);
  }
}

void Listener::pause(int err) {
  // Out of descriptors or memory: the pending connection stays in the backlog. Pause, then
  // retry; logging once per episode keeps a flood from filling the log.
  ++pauses_;
  if (!resumed_log_pending_) {
    LOG_WARN("listener {}: accept failed: {} ({}); pausing accepts for {}ms", name_,
             std::strerror(err),
             err == EMFILE   ? "EMFILE"
             : err == ENFILE ? "ENFILE"
                             : "no memory",
             kAcceptPause.count());
    resumed_log_pending_ = true;
  }
  paused_ = true;
  resume_timer_.arm_at(loop_.now() + kAcceptPause);
}

void Listener::accept_all() {
  for (int accepted = 0; fd_.valid(); ++accepted) {
    if (accepted == kAcceptBatch) {
      // More may be queued, and an edge-triggered socket will not say so again: go on once
      // this iteration's other events are handled (a timer due now runs after them).
      if (!resume_timer_.armed()) resume_timer_.arm_at(loop_.now());
      return;
    }
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    int fd =
        accept4(fd_.get(), reinterpret_cast<sockaddr*>(&ss), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) {
      log_resumed();
      callbacks_->on_accept(Fd(fd), Address::from_sockaddr(reinterpret_cast<sockaddr*>(&ss), len));
      continue;
    }
    int err = errno;
    if (err == EAGAIN || err == EWOULDBLOCK) {
      drained_at_ = loop_.poller().gathered();
      return;
    }
    if (err == EINTR || err == ECONNABORTED || err == EPROTO || err == EPERM) continue;
    if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
      pause(err);
      return;
    }
    LOG_ERROR("listener {}: accept failed: {}", name_, std::strerror(err));
    return;
  }
}

}  // namespace sluice::net
