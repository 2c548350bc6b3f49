// SignalSet: process signals delivered as events on a Loop through signalfd(2).
// block_process_signals() must run on the main thread before any other thread starts, so
// that every thread inherits the mask and only the signalfd sees the signals.
#pragma once

#include <functional>
#include <initializer_list>

#include "event/loop.h"

namespace sluice::event {

void block_process_signals(std::initializer_list<int> signals);

class SignalSet final : public IoHandler {
 public:
  SignalSet(Loop& loop, std::initializer_list<int> signals, std::function<void(int)> on_signal);
  ~SignalSet();
  void on_io(uint32_t events) override;

 private:
  Loop& loop_;
  int fd_;
  std::function<void(int)> on_signal_;
};

}  // namespace sluice::event
