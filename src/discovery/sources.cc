#include "discovery/sources.h"

#include <algorithm>

#include "discovery/etcd_source.h"
#include "discovery/file_source.h"

namespace sluice::discovery {

using upstream::ClusterConfig;

Sources::Sources(event::Loop& loop, upstream::health::HealthManager& health,
                 const std::vector<std::shared_ptr<const ClusterConfig>>& clusters)
    : loop_(loop),
      health_(health),
      first_round_timer_(loop.timers(), [this] { check_first_round(); }) {
  for (size_t i = 0; i < clusters.size(); ++i) {
    if (auto s = make(i, *clusters[i])) entries_.push_back({i, clusters[i], std::move(s)});
  }
}

Sources::~Sources() {
  stop();
}

std::unique_ptr<EndpointSource> Sources::make(size_t index, const ClusterConfig& config) {
  auto on_update = [this, index](std::vector<upstream::EndpointConfig> endpoints) {
    // Refused (the table is full) is logged and counted there; the source keeps its set.
    (void)health_.set_endpoints(index, endpoints);
    check_first_round();
  };
  switch (config.type) {
    case ClusterConfig::Type::kFile:
      return std::make_unique<FileSource>(loop_, config.name, config.file_path,
                                          config.file_batch_window, on_update);
    case ClusterConfig::Type::kEtcd:
      return std::make_unique<EtcdSource>(loop_, config.name, config.etcd, on_update);
    default:
      return nullptr;
  }
}

void Sources::start(std::function<void()> on_first_round) {
  started_ = true;
  on_first_round_ = std::move(on_first_round);
  for (auto& e : entries_) e.source->start();
  check_first_round();
}

void Sources::stop() {
  first_round_timer_.cancel();
  for (auto& e : entries_) e.source->stop();
}

Sources::Entry* Sources::find(size_t index) {
  for (auto& e : entries_) {
    if (e.index == index) return &e;
  }
  return nullptr;
}

void Sources::set_cluster(size_t index, std::shared_ptr<const ClusterConfig> config) {
  Entry* e = find(index);
  if (e && e->config->type == config->type && e->config->file_path == config->file_path &&
      e->config->file_batch_window == config->file_batch_window &&
      e->config->etcd == config->etcd) {
    e->config = std::move(config);
    return;
  }
  if (e) remove_cluster(index);
  auto s = make(index, *config);
  if (!s) return;
  entries_.push_back({index, std::move(config), std::move(s)});
  if (started_) entries_.back().source->start();
}

void Sources::remove_cluster(size_t index) {
  auto it = std::find_if(entries_.begin(), entries_.end(),
                         [index](const Entry& e) { return e.index == index; });
  if (it == entries_.end()) return;
  it->source->stop();
  // Deleted at the end of this loop iteration: its own timers or watcher may be the caller.
  struct Doomed : event::DeferredDeletable {
    std::unique_ptr<EndpointSource> s;
  };
  auto d = std::make_unique<Doomed>();
  d->s = std::move(it->source);
  loop_.defer_delete(std::move(d));
  entries_.erase(it);
}

bool Sources::answered(size_t index) const {
  for (const auto& e : entries_) {
    if (e.index == index) return e.source->first_round_done();
  }
  return true;
}

const EndpointSource* Sources::source(size_t index) const {
  for (const auto& e : entries_) {
    if (e.index == index) return e.source.get();
  }
  return nullptr;
}

void Sources::check_first_round() {
  if (!on_first_round_) return;
  for (const auto& e : entries_) {
    if (!e.source->first_round_done()) {
      if (!first_round_timer_.armed()) {
        first_round_timer_.arm_at(loop_.now() + kFirstRoundPoll);
      }
      return;
    }
  }
  first_round_timer_.cancel();
  auto fn = std::move(on_first_round_);
  on_first_round_ = nullptr;
  fn();
}

std::string Sources::staleness_problem() const {
  for (const auto& e : entries_) {
    if (!e.source) continue;
    if (std::string why = e.source->staleness_problem(); !why.empty()) return why;
  }
  return {};
}

}  // namespace sluice::discovery
