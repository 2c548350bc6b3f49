#include "event/loop.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>

#include "base/check.h"
#include "base/log.h"
#include "base/memory.h"
#include "event/backend.h"

namespace sluice::event {

// The eventfd that wakes the loop when another thread posts work.
class Loop::Wakeup final : public IoHandler {
 public:
  explicit Wakeup(Loop& loop) : loop_(loop), fd_(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {
    SLUICE_CHECK(fd_ >= 0);
    SLUICE_CHECK(loop_.poller().add(fd_, kReadable, this).is_ok());
  }
  ~Wakeup() {
    loop_.poller().remove(fd_);
    ::close(fd_);
  }
  void notify() {
    uint64_t one = 1;
    // EAGAIN means the counter is saturated: the loop is already due to wake up.
    [[maybe_unused]] ssize_t n = ::write(fd_, &one, sizeof one);
  }
  void on_io(uint32_t) override {
    uint64_t value;
    while (::read(fd_, &value, sizeof value) > 0) {
    }
    loop_.run_posted();
  }

 private:
  Loop& loop_;
  int fd_;
};

Loop::Loop(Clock& clock) : Loop(clock, Backend::kAuto) {}

Loop::Loop(Clock& clock, Backend backend)
    : clock_(clock),
      steady_(&clock == &Clock::steady()),
      poller_(make_poller(backend)),
      now_(clock.now()),
      previous_now_(now_),
      ended_(MonoClock::now()) {
  wakeup_ = std::make_unique<Wakeup>(*this);
  set_receive(process_receive());
}

Loop::~Loop() {
  to_delete_.clear();
  wakeup_.reset();
}

void Loop::post(std::function<void()> fn) {
  bool was_empty;
  {
    std::lock_guard<std::mutex> lock(posted_mu_);
    was_empty = posted_.empty();
    posted_.push_back(std::move(fn));
  }
  if (was_empty) wakeup_->notify();
}

void Loop::run_posted() {
  {
    std::lock_guard<std::mutex> lock(posted_mu_);
    running_.swap(posted_);
  }
  for (auto& fn : running_) fn();
  running_.clear();
}

void Loop::delete_deferred_now() {
  while (!to_delete_.empty()) {
    std::vector<std::unique_ptr<DeferredDeletable>> batch;
    batch.swap(to_delete_);
  }
}

void Loop::defer_delete(std::unique_ptr<DeferredDeletable> obj) {
  to_delete_.push_back(std::move(obj));
}

void Loop::cancel_iteration_end(EndOfIteration* obj) {
  if (!obj->queued_) return;
  obj->queued_ = false;
  for (auto* v : {&at_end_, &running_at_end_}) {
    for (auto& p : *v) {
      if (p == obj) p = nullptr;
    }
  }
}

void Loop::run_at_end() {
  // Running one may queue others (a flush that fails closes a connection, whose owner
  // writes elsewhere): go on until nothing is queued.
  while (!at_end_.empty()) {
    running_at_end_.swap(at_end_);
    for (size_t i = 0; i < running_at_end_.size(); ++i) {
      EndOfIteration* obj = running_at_end_[i];
      if (!obj) continue;
      obj->queued_ = false;
      obj->on_iteration_end();
    }
    running_at_end_.clear();
  }
}

void Loop::stop() {
  stopping_.store(true, std::memory_order_release);
  wakeup_->notify();
}

int Loop::run_once(int timeout_ms) {
  int n = poller_->wait(timeout_ms);
  // Busy time is always real time, whatever clock the timers run on; on the steady clock
  // one read gives both.
  auto start = MonoClock::now();
  previous_now_ = now_;
  now_ = steady_ ? start : clock_.now();
  poller_->dispatch();
  timers_.run_expired(now_);
  run_at_end();
  to_delete_.clear();
  ended_ = MonoClock::now();
  auto busy = static_cast<uint64_t>((ended_ - start).count());
  ++stats_.iterations;
  stats_.events += static_cast<uint64_t>(n);
  stats_.busy_ns += busy;
  if (busy > stats_.longest_iteration_ns) stats_.longest_iteration_ns = busy;
  return n;
}

void Loop::run() {
  ended_ = MonoClock::now();
  while (!stopping_.load(std::memory_order_acquire)) {
    int timeout_ms = -1;
    if (auto next = timers_.next_deadline()) {
      // On the steady clock, the end of the last iteration is now enough (it was just read).
      auto wait = *next - (steady_ ? ended_ : clock_.now());
      // Round up so a timer never fires a little early and makes us spin. A manual clock
      // does not move while we sleep: waiting for its timers would never end.
      if (clock_.manual()) {
        timeout_ms = wait.count() <= 0 ? 0 : -1;
      } else {
        timeout_ms =
            wait.count() <= 0
                ? 0
                : static_cast<int>(std::chrono::ceil<std::chrono::milliseconds>(wait).count());
      }
    }
    // A second without events after some work: the buffer blocks cached for the next burst,
    // and the memory the burst freed, give their pages back, so a quiet worker's memory is
    // what its connections hold. Never on a busy loop: the wait is cut short to see whether
    // the second passes without events.
    if (worked_since_quiet_) {
      auto quiet_for = std::chrono::ceil<std::chrono::milliseconds>(ended_ - last_events_);
      if (quiet_for.count() >= kQuietMs) {
        worked_since_quiet_ = false;
        release_idle_memory();
      } else {
        int left = kQuietMs - static_cast<int>(quiet_for.count());
        if (timeout_ms < 0 || timeout_ms > left) timeout_ms = left;
      }
    }
    if (run_once(timeout_ms) > 0) {
      worked_since_quiet_ = true;
      last_events_ = ended_;
    }
  }
  run_posted();
  run_at_end();
  to_delete_.clear();
}

void Loop::run_until_idle() {
  // Bounded: a test whose callbacks keep re-arming due timers must not hang its run.
  for (int i = 0; i < 10000; ++i) {
    bool posted;
    {
      std::lock_guard<std::mutex> lock(posted_mu_);
      posted = !posted_.empty();
    }
    auto next = timers_.next_deadline();
    bool due = next && *next <= clock_.now();
    int n = run_once(0);
    // Work queued for the kernel (a send, a removal) goes with the next wait: one more.
    if (n == 0 && !posted && !due && !poller_->submissions_pending()) return;
  }
}

}  // namespace sluice::event
