#include "server/worker.h"

#include <pthread.h>

#include <fmt/format.h>

#include "base/log.h"

namespace sluice::server {

Worker::Worker(size_t index, std::shared_ptr<const config::Config> config,
               std::vector<ListenerHandoff> listeners)
    : index_(index), config_(std::move(config)), handoffs_(std::move(listeners)) {}

Worker::~Worker() {
  stop_and_join();
}

void Worker::start() {
  thread_ = std::thread([this] { thread_main(); });
}

void Worker::thread_main() {
  std::string name = fmt::format("w{}", index_);
  log::set_thread_name(name);
  pthread_setname_np(pthread_self(), fmt::format("sluice-{}", name).c_str());

  for (const auto& c : config_->clusters) {
    clusters_.emplace(c->name, std::make_unique<upstream::Cluster>(c));
  }
  for (auto& h : handoffs_) {
    auto proxy = std::make_unique<proxy::tcp::TcpProxy>(
        loop_, h.config, *clusters_.at(h.config->cluster), transfer_pool_, h.active_connections);
    proxy->set_on_idle([this] { check_drained(); });
    auto listener = std::make_unique<net::Listener>(loop_, std::move(h.fd), h.config->name, *proxy);
    if (Status s = listener->start(); !s) {
      LOG_ERROR("listener {}: {}", h.config->name, s.message());
    }
    proxies_.push_back(std::move(proxy));
    listeners_.push_back(std::move(listener));
  }

  loop_.run();

  listeners_.clear();
  for (auto& p : proxies_) {
    p->close_all(false);
    final_stats_[p->config().name] = p->stats();
  }
  proxies_.clear();
  clusters_.clear();
}

void Worker::drain(std::function<void()> on_drained) {
  loop_.post([this, on_drained = std::move(on_drained)]() mutable {
    on_drained_ = std::move(on_drained);
    for (auto& l : listeners_) l->close();
    check_drained();
  });
}

void Worker::check_drained() {
  if (!on_drained_) return;
  for (const auto& p : proxies_) {
    if (p->active() != 0) return;
  }
  auto fn = std::move(on_drained_);
  on_drained_ = nullptr;
  fn();
}

void Worker::close_all() {
  loop_.post([this] {
    for (auto& p : proxies_) p->close_all(true);
  });
}

void Worker::stop_and_join() {
  if (!thread_.joinable()) return;
  loop_.stop();
  thread_.join();
}

}  // namespace sluice::server
