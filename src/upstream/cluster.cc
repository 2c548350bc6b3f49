#include "upstream/cluster.h"

#include "upstream/lb/round_robin.h"

namespace sluice::upstream {

Cluster::Cluster(event::Loop& loop, std::shared_ptr<const ClusterConfig> config, uint32_t workers)
    : loop_(loop), config_(std::move(config)), pools_(config_->endpoints.size()) {
  worker_pool_config_ = config_->pool;
  if (workers > 1) {
    // Round up: each worker gets its share, and every worker at least one connection.
    worker_pool_config_.max_connections = (config_->pool.max_connections + workers - 1) / workers;
  }
  std::vector<uint32_t> weights;
  weights.reserve(config_->endpoints.size());
  for (const auto& e : config_->endpoints) weights.push_back(e.weight);
  lb_ = std::make_unique<lb::RoundRobin>(std::move(weights));
}

}  // namespace sluice::upstream

namespace sluice::upstream {

pool::ConnPool& Cluster::pool(size_t index) {
  auto& p = pools_.at(index);
  if (!p) {
    p = std::make_unique<pool::ConnPool>(loop_, config_->endpoints[index].address,
                                         worker_pool_config_, config_->socket_options,
                                         config_->source_address, config_->connect_timeout);
    p->warm_up();
  }
  return *p;
}

void Cluster::warm_up_pools() {
  if (config_->pool.min_idle == 0) return;
  for (size_t i = 0; i < pools_.size(); ++i) pool(i);
}

void Cluster::drain_pools() {
  for (auto& p : pools_) {
    if (p) p->drain();
  }
}

}  // namespace sluice::upstream
