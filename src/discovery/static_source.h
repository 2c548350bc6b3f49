// StaticSource: the endpoints a static cluster lists in the configuration (`endpoints:`),
// reported once when it starts; synced at once. A reload that changes the list makes a new
// source (Sources::set_cluster), which reports the new list. Main thread only.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "discovery/endpoint_source.h"

namespace sluice::discovery {

class StaticSource final : public EndpointSource {
 public:
  StaticSource(std::vector<upstream::EndpointConfig> endpoints, OnUpdate on_update)
      : endpoints_(std::move(endpoints)), on_update_(std::move(on_update)) {
    stats_.set_state(state_);
  }

  void start() override {
    state_ = upstream::SourceState::kSynced;
    stats_.set_state(state_);
    stats_.endpoints = endpoints_.size();
    ++stats_.updates;
    on_update_(endpoints_);
  }
  void stop() override {}
  const char* kind() const override { return "static"; }
  std::string target() const override { return "configuration"; }
  upstream::SourceState state() const override { return state_; }
  const upstream::SourceStats& stats() const override { return stats_; }

 private:
  std::vector<upstream::EndpointConfig> endpoints_;
  OnUpdate on_update_;
  upstream::SourceState state_ = upstream::SourceState::kStarting;
  upstream::SourceStats stats_;
};

}  // namespace sluice::discovery
