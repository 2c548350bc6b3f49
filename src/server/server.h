// Server: the main thread. It binds every listener (one SO_REUSEPORT socket per worker, so
// a bind error stops startup with a clear message), starts the workers, and handles signals:
// SIGTERM/SIGINT drain (stop accepting, let connections finish for drain_timeout, then close
// them); a second one closes everything at once.
#pragma once

#include <memory>

#include "config/config.h"

namespace sluice::server {

class Server {
 public:
  explicit Server(std::shared_ptr<const config::Config> config);
  // Runs until drained. Returns the process exit code.
  int run();

 private:
  std::shared_ptr<const config::Config> config_;
};

}  // namespace sluice::server
