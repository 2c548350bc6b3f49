#include <sys/epoll.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>

#include "base/log.h"
#include "event/poller.h"

namespace sluice::event {
namespace {

uint32_t to_epoll(uint32_t interest) {
  uint32_t e = EPOLLET;
  if (interest & kReadable) e |= EPOLLIN;
  if (interest & kWritable) e |= EPOLLOUT;
  if (interest & kPeerClosed) e |= EPOLLRDHUP;
  return e;
}

uint32_t from_epoll(uint32_t e) {
  uint32_t out = 0;
  if (e & EPOLLIN) out |= kReadable;
  if (e & EPOLLOUT) out |= kWritable;
  if (e & EPOLLRDHUP) out |= kPeerClosed;
  if (e & (EPOLLERR | EPOLLHUP)) out |= kError;
  return out;
}

// epoll(7), edge-triggered; the handler pointer rides in epoll_event.data.
class EpollPoller final : public Poller {
 public:
  EpollPoller() : epfd_(epoll_create1(EPOLL_CLOEXEC)) { SLUICE_CHECK(epfd_ >= 0); }
  ~EpollPoller() override { ::close(epfd_); }

  Status add(int fd, uint32_t interest, IoHandler* handler) override {
    return ctl(EPOLL_CTL_ADD, fd, interest, handler);
  }
  Status modify(int fd, uint32_t interest, IoHandler* handler) override {
    return ctl(EPOLL_CTL_MOD, fd, interest, handler);
  }
  void remove(int fd) override { epoll_ctl(epfd_, EPOLL_CTL_DEL, fd, nullptr); }

  int wait(int timeout_ms) override {
    ready_ = epoll_wait(epfd_, events_.data(), static_cast<int>(events_.size()), timeout_ms);
    if (ready_ < 0) {
      if (errno != EINTR) LOG_ERROR("epoll_wait: {}", std::strerror(errno));
      ready_ = 0;
    }
    return ready_;
  }

  void dispatch() override {
    for (int i = 0; i < ready_; ++i) {
      static_cast<IoHandler*>(events_[i].data.ptr)->on_io(from_epoll(events_[i].events));
    }
    ready_ = 0;
  }

  Backend backend() const override { return Backend::kEpoll; }

 private:
  Status ctl(int op, int fd, uint32_t interest, IoHandler* handler) {
    epoll_event ev{};
    ev.events = to_epoll(interest);
    ev.data.ptr = handler;
    if (epoll_ctl(epfd_, op, fd, &ev) != 0) return Status::from_errno("epoll_ctl", errno);
    return Status::ok();
  }

  int epfd_;
  std::array<epoll_event, 256> events_{};
  int ready_ = 0;
};

}  // namespace

std::unique_ptr<Poller> make_epoll_poller() {
  return std::make_unique<EpollPoller>();
}

}  // namespace sluice::event
