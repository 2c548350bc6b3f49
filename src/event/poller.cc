#include "event/poller.h"

#include <cerrno>

namespace sluice::event {

// What a backend without completion-based accept answers: the caller polls instead.
Status Poller::add_acceptor(int, AcceptHandler*) {
  return Status::error("this event backend has no completion-based accept", EOPNOTSUPP);
}

Status Poller::add_receiver(int, RecvHandler*) {
  return Status::error("this event backend has no completion-based receive", EOPNOTSUPP);
}

Status Poller::send(int, Buffer&, int) {
  return Status::error("this event backend has no completion-based send", EOPNOTSUPP);
}

// epoll_ctl(EPOLL_CTL_DEL) lets go of the file at once.
void Poller::remove_and_release(int fd) {
  remove(fd);
}

void Poller::pause_receiver(int, bool) {}

void Poller::stop_receiver(int) {}

bool Poller::receive_pending(int) {
  return false;
}

void Poller::resume_acceptor(int) {}

void Poller::deliver_accepted(int) {}

void Poller::stop_acceptor(int fd, Duration) {
  deliver_accepted(fd);
  remove(fd);
}

}  // namespace sluice::event
