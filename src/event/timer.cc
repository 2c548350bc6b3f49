#include "event/timer.h"

#include "base/check.h"

namespace sluice::event {

void Timer::arm_at(MonoTime deadline) {
  cancel();
  deadline_ = deadline;
  queue_->insert(this);
}

void Timer::cancel() {
  if (armed()) queue_->erase(this);
}

void TimerQueue::insert(Timer* t) {
  t->seq_ = next_seq_++;
  heap_.push_back(t);
  t->index_ = heap_.size() - 1;
  sift_up(t->index_);
}

void TimerQueue::erase(Timer* t) {
  size_t i = t->index_;
  SLUICE_ASSERT(i < heap_.size() && heap_[i] == t);
  t->index_ = Timer::kNotQueued;
  Timer* last = heap_.back();
  heap_.pop_back();
  if (i == heap_.size()) return;  // t was the last element
  place(i, last);
  if (i > 0 && earlier(last, heap_[(i - 1) / 2])) {
    sift_up(i);
  } else {
    sift_down(i);
  }
}

void TimerQueue::sift_up(size_t i) {
  Timer* t = heap_[i];
  while (i > 0) {
    size_t parent = (i - 1) / 2;
    if (!earlier(t, heap_[parent])) break;
    place(i, heap_[parent]);
    i = parent;
  }
  place(i, t);
}

void TimerQueue::sift_down(size_t i) {
  Timer* t = heap_[i];
  size_t n = heap_.size();
  for (;;) {
    size_t child = 2 * i + 1;
    if (child >= n) break;
    if (child + 1 < n && earlier(heap_[child + 1], heap_[child])) ++child;
    if (!earlier(heap_[child], t)) break;
    place(i, heap_[child]);
    i = child;
  }
  place(i, t);
}

void TimerQueue::run_expired(MonoTime now) {
  while (!heap_.empty() && heap_.front()->deadline_ <= now) {
    Timer* t = heap_.front();
    erase(t);
    t->on_fire_();  // may destroy t's owner: t is not touched after this
  }
}

}  // namespace sluice::event
