#include "server/worker.h"

#include <pthread.h>

#include <fmt/format.h>

#include "base/log.h"

namespace sluice::server {
namespace {

// Copies each listener's counters into the maps of its protocol.
class StatsInto final : public proxy::ListenerStatsSink {
 public:
  StatsInto(std::map<std::string, proxy::tcp::TcpProxyStats>& tcp,
            std::map<std::string, proxy::http::HttpProxyStats>& http,
            std::map<std::string, tls::ListenerTlsStats>& tls)
      : tcp_(tcp), http_(http), tls_(tls) {}
  void on_tcp_stats(const std::string& listener, const proxy::tcp::TcpProxyStats& s) override {
    tcp_[listener] = s;
  }
  void on_http_stats(const std::string& listener, const proxy::http::HttpProxyStats& s) override {
    http_[listener] = s;
  }
  void on_tls_stats(const std::string& listener, const tls::ListenerTlsStats& s) override {
    tls_[listener] = s;
  }

 private:
  std::map<std::string, proxy::tcp::TcpProxyStats>& tcp_;
  std::map<std::string, proxy::http::HttpProxyStats>& http_;
  std::map<std::string, tls::ListenerTlsStats>& tls_;
};

}  // namespace

Worker::Worker(size_t index, std::shared_ptr<const config::Config> config,
               std::vector<ListenerHandoff> listeners, upstream::health::HealthManager& health,
               std::vector<std::shared_ptr<tls::ClientContext>> cluster_tls)
    : index_(index),
      config_(std::move(config)),
      handoffs_(std::move(listeners)),
      health_(health),
      cluster_tls_(std::move(cluster_tls)) {}

void Worker::collect(bool connections, std::function<void(admin::WorkerReport)> done) {
  loop_.post([this, connections, done = std::move(done)] {
    admin::WorkerReport r;
    StatsInto sink(r.tcp, r.http, r.tls);
    for (const auto& p : proxies_) p->report_stats(sink);
    for (auto* c : cluster_by_index_) {
      admin::WorkerReport::Cluster rc;
      rc.stats = c->stats();
      size_t n = c->endpoint_count();
      rc.pools.resize(n);
      rc.active_requests.resize(n);
      for (size_t e = 0; e < n; ++e) {
        if (const auto* ps = c->pool_stats(e)) rc.pools[e] = *ps;
        rc.active_requests[e] = c->active_requests(e);
      }
      r.clusters.push_back(std::move(rc));
    }
    r.loop = loop_.stats();
    if (connections) {
      for (const auto& p : proxies_) p->report_connections(r.connections);
      for (auto* c : cluster_by_index_) {
        const std::string& name = c->config().name;
        c->for_each_pool([&](size_t, const upstream::pool::ConnPool& pool) {
          pool.for_each_connection([&](int fd, const char* state) {
            r.connections.push_back(net::describe_connection(fd, "upstream", name, state));
          });
        });
      }
    }
    done(std::move(r));
  });
}

void Worker::set_health(size_t cluster,
                        std::shared_ptr<const upstream::health::HealthSnapshot> snapshot) {
  loop_.post([this, cluster, snapshot = std::move(snapshot)]() mutable {
    if (cluster < cluster_by_index_.size())
      cluster_by_index_[cluster]->set_health(std::move(snapshot));
  });
}

void Worker::set_listener_tls(const std::string& name,
                              std::shared_ptr<tls::ServerContext> context) {
  loop_.post([this, name, context = std::move(context)]() mutable {
    for (auto& p : proxies_) {
      if (p->config().name == name) p->set_tls(context);
    }
  });
}

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

  for (size_t i = 0; i < config_->clusters.size(); ++i) {
    const auto& c = config_->clusters[i];
    auto cluster = std::make_unique<upstream::Cluster>(loop_, c, config_->workers, i,
                                                       health_.shared(i), health_.sink_for(i));
    if (i < cluster_tls_.size() && cluster_tls_[i]) cluster->set_tls(cluster_tls_[i]);
    cluster_by_index_.push_back(cluster.get());
    clusters_.emplace(c->name, std::move(cluster));
  }
  proxy::http::ClusterMap cluster_map;
  for (auto& [cluster_name, c] : clusters_) cluster_map.emplace(cluster_name, c.get());
  for (auto& h : handoffs_) {
    std::unique_ptr<proxy::ProxyListener> proxy;
    if (h.config->protocol == proxy::Protocol::kHttp) {
      proxy = std::make_unique<proxy::http::HttpProxy>(loop_, h.config, cluster_map,
                                                       h.active_connections, h.tls);
    } else {
      std::vector<upstream::Cluster*> sni_clusters;
      for (const auto& route : h.config->sni_routes) {
        sni_clusters.push_back(clusters_.at(route.cluster).get());
      }
      proxy = std::make_unique<proxy::tcp::TcpProxy>(
          loop_, h.config, *clusters_.at(h.config->cluster), std::move(sni_clusters),
          transfer_pool_, h.active_connections, h.tls);
    }
    proxy->set_on_idle([this] { check_drained(); });
    proxy->set_access_log(h.access_log);
    auto listener = std::make_unique<net::Listener>(loop_, std::move(h.fd), h.config->name, *proxy);
    proxies_.push_back(std::move(proxy));
    if (Status s = listener->start(); !s) {
      LOG_ERROR("listener {}: {}", h.config->name, s.message());
    }
    listeners_.push_back(std::move(listener));
  }

  // Warm connections (pool.min_idle) for the clusters HTTP routes use.
  for (const auto& p : proxies_) {
    for (const auto& vh : p->config().http.virtual_hosts) {
      for (const auto& route : vh.routes) {
        auto it = clusters_.find(route.cluster);
        if (it != clusters_.end()) it->second->warm_up_pools();
      }
    }
  }

  loop_.run();

  listeners_.clear();
  StatsInto sink(final_stats_, final_http_stats_, final_tls_stats_);
  for (auto& p : proxies_) {
    p->close_all(false);
    p->report_stats(sink);
  }
  // Connections, streams and attempts waiting for deferred deletion refer to their proxy
  // and cluster: destroy them while those still exist.
  loop_.delete_deferred_now();
  proxies_.clear();
  for (auto* c : cluster_by_index_) final_cluster_stats_.push_back(c->stats());
  cluster_by_index_.clear();
  clusters_.clear();
}

void Worker::drain(std::function<void()> on_drained) {
  loop_.post([this, on_drained = std::move(on_drained)]() mutable {
    on_drained_ = std::move(on_drained);
    for (auto& l : listeners_) l->close();
    for (auto& p : proxies_) p->drain();
    for (auto& [name, c] : clusters_) c->drain_pools();
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
