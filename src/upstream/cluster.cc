#include "upstream/cluster.h"

#include "upstream/lb/round_robin.h"

namespace sluice::upstream {

Cluster::Cluster(std::shared_ptr<const ClusterConfig> config) : config_(std::move(config)) {
  std::vector<uint32_t> weights;
  weights.reserve(config_->endpoints.size());
  for (const auto& e : config_->endpoints) weights.push_back(e.weight);
  lb_ = std::make_unique<lb::RoundRobin>(std::move(weights));
}

}  // namespace sluice::upstream
