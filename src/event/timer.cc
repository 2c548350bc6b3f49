#include "event/timer.h"

#include "base/check.h"

namespace sluice::event {

static_assert(sizeof(Timer) <= 56, "Timer grew: every open connection holds one");

Timer::~Timer() {
  // An armed timer is always queued; one whose queue is gone was let go by it.
  if (index_ == kNotQueued) return;
  cancel();
  queue_->erase(this);
}

TimerQueue::~TimerQueue() {
  // Timers that outlive their loop (cancelled ones wait in the heap) must not reach back.
  for (Timer* t : heap_) t->index_ = Timer::kNotQueued;
}

void Timer::cancel() {
  if (!armed_) return;
  armed_ = false;
  --queue_->armed_count_;
}

void Timer::arm_at(MonoTime deadline) {
  deadline_ = deadline;
  seq_ = queue_->next_seq_++;
  if (!armed_) ++queue_->armed_count_;
  armed_ = true;
  // Already in the heap at an earlier place: it moves when that place comes due.
  if (index_ != kNotQueued && key_ < deadline) return;
  if (index_ != kNotQueued) queue_->erase(this);
  queue_->insert(this);
}

void TimerQueue::insert(Timer* t) {
  t->key_ = t->deadline_;
  t->key_seq_ = t->seq_;
  heap_.push_back(t);
  t->index_ = static_cast<uint32_t>(heap_.size() - 1);
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
  while (!heap_.empty() && heap_.front()->key_ <= now) {
    Timer* t = heap_.front();
    erase(t);
    if (!t->armed_) continue;  // cancelled since it was placed
    if (t->key_ != t->deadline_ || t->key_seq_ != t->seq_) {
      // Re-armed since: to its real place, which keeps the firing order exact.
      insert(t);
      continue;
    }
    t->cancel();
    t->on_fire_();  // may destroy t's owner: t is not touched after this
  }
}

}  // namespace sluice::event
