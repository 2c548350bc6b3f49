#include "event/signals.h"

#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "base/check.h"

namespace sluice::event {
namespace {
sigset_t make_set(std::initializer_list<int> signals) {
  sigset_t set;
  sigemptyset(&set);
  for (int s : signals) sigaddset(&set, s);
  return set;
}
}  // namespace

void block_process_signals(std::initializer_list<int> signals) {
  sigset_t set = make_set(signals);
  SLUICE_CHECK(pthread_sigmask(SIG_BLOCK, &set, nullptr) == 0);
}

SignalSet::SignalSet(Loop& loop, std::initializer_list<int> signals,
                     std::function<void(int)> on_signal)
    : loop_(loop), on_signal_(std::move(on_signal)) {
  sigset_t set = make_set(signals);
  fd_ = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
  SLUICE_CHECK(fd_ >= 0);
  SLUICE_CHECK(loop_.poller().add(fd_, kReadable, this).is_ok());
}

SignalSet::~SignalSet() {
  loop_.poller().remove(fd_);
  ::close(fd_);
}

void SignalSet::on_io(uint32_t) {
  signalfd_siginfo info;
  while (::read(fd_, &info, sizeof info) == static_cast<ssize_t>(sizeof info)) {
    on_signal_(static_cast<int>(info.ssi_signo));
  }
}

}  // namespace sluice::event
