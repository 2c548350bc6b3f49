#include "discovery/sources.h"

#include <algorithm>

#include <fmt/format.h>

#include "base/log.h"
#include "discovery/etcd_source.h"
#include "discovery/file_source.h"
#include "discovery/static_source.h"

namespace sluice::discovery {

using upstream::ClusterConfig;

namespace {

// Whether a reload's `next` settings of a cluster (same index, so same name) may keep the
// source made for `prev`, and its set.
bool same_source(const ClusterConfig& prev, const ClusterConfig& next) {
  if (prev.type != next.type) return false;
  switch (next.type) {
    case ClusterConfig::Type::kStatic:
      return prev.endpoints == next.endpoints;
    case ClusterConfig::Type::kFile:
      return prev.file_path == next.file_path && prev.file_batch_window == next.file_batch_window;
    case ClusterConfig::Type::kEtcd:
      return prev.etcd == next.etcd;
    case ClusterConfig::Type::kStrictDns:
    case ClusterConfig::Type::kLogicalDns:
    case ClusterConfig::Type::kDnsSrv:
      return prev.dns_targets == next.dns_targets && prev.srv_name == next.srv_name;
  }
  return false;
}

}  // namespace

Sources::Sources(event::Loop& loop, upstream::health::HealthManager& health,
                 dns::ResolverConfig dns)
    : loop_(loop),
      health_(health),
      dns_config_(std::move(dns)),
      first_round_timer_(loop.timers(), [this] { check_first_round(); }) {}

Result<std::unique_ptr<Sources>> Sources::create(
    event::Loop& loop, upstream::health::HealthManager& health,
    const std::vector<std::shared_ptr<const ClusterConfig>>& clusters, dns::ResolverConfig dns) {
  std::unique_ptr<Sources> s(new Sources(loop, health, std::move(dns)));
  // DNS clusters are resolved on this loop; the resolver is made now so that an unusable
  // resolver setting stops the start.
  bool uses_dns = std::any_of(clusters.begin(), clusters.end(),
                              [](const auto& c) { return upstream::is_dns(c->type); });
  if (uses_dns) {
    if (Status st = s->make_resolver(); !st) return st;
  }
  for (size_t i = 0; i < clusters.size(); ++i) {
    if (Entry e = s->make(i, clusters[i]); e.source) s->entries_.push_back(std::move(e));
  }
  return s;
}

Sources::~Sources() {
  stop();
}

Status Sources::make_resolver() {
  if (resolver_) return Status::ok();
  auto r = dns::Resolver::create(loop_, dns_config_);
  if (!r) return Status::error(fmt::format("dns: {}", r.status().message()));
  resolver_ = std::move(r.value());
  return Status::ok();
}

Sources::Entry Sources::make(size_t index, std::shared_ptr<const ClusterConfig> config) {
  Entry e{index, config, nullptr, nullptr};
  auto on_update = [this, index](std::vector<upstream::EndpointConfig> endpoints) {
    // Refused (the table is full) is logged and counted there; the source keeps its set.
    (void)health_.set_endpoints(index, endpoints);
    check_first_round();
  };
  switch (config->type) {
    case ClusterConfig::Type::kStatic:
      e.source = std::make_unique<StaticSource>(config->endpoints, on_update);
      break;
    case ClusterConfig::Type::kFile:
      e.source = std::make_unique<FileSource>(loop_, config->name, config->file_path,
                                              config->file_batch_window, on_update);
      break;
    case ClusterConfig::Type::kEtcd:
      e.source = std::make_unique<EtcdSource>(loop_, config->name, config->etcd, on_update);
      break;
    case ClusterConfig::Type::kStrictDns:
    case ClusterConfig::Type::kLogicalDns:
    case ClusterConfig::Type::kDnsSrv: {
      if (Status s = make_resolver(); !s) {
        LOG_ERROR("{}; cluster {} is not resolved", s.message(), config->name);
        break;
      }
      auto dns = std::make_unique<DnsSource>(loop_, *resolver_, config, on_update,
                                             [this] { check_first_round(); });
      e.dns = dns.get();
      e.source = std::move(dns);
      break;
    }
  }
  return e;
}

void Sources::start(std::function<void()> on_first_round) {
  started_ = true;
  on_first_round_ = std::move(on_first_round);
  for (auto& e : entries_) e.source->start();
  check_first_round();
}

void Sources::stop() {
  started_ = false;  // a reload now adds no running source
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
  if (e && same_source(*e->config, *config)) {
    if (e->dns) e->dns->set_config(config);
    e->config = std::move(config);
    return;
  }
  if (e) remove_cluster(index);
  Entry made = make(index, std::move(config));
  if (!made.source) return;
  entries_.push_back(std::move(made));
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
