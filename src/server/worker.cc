#include "server/worker.h"

#include <pthread.h>

#include <algorithm>
#include <utility>

#include <fmt/format.h>

#include "base/check.h"
#include "base/log.h"

namespace sluice::server {
namespace {

// Copies each listener's counters into the maps of its protocol.
class StatsInto final : public proxy::ListenerStatsSink {
 public:
  StatsInto(std::map<std::string, proxy::tcp::TcpProxyStats>& tcp,
            std::map<std::string, proxy::http::HttpProxyStats>& http,
            std::map<std::string, tls::ListenerTlsStats>& tls,
            std::map<std::string, proxy::udp::UdpProxyStats>& udp,
            std::map<std::string, proxy::stun::StunStats>& stun)
      : tcp_(tcp), http_(http), tls_(tls), udp_(udp), stun_(stun) {}
  // Added up: a listener's old proxy (replaced by a reload) and its new one report under
  // one name.
  void on_tcp_stats(const std::string& listener, const proxy::tcp::TcpProxyStats& s) override {
    tcp_[listener].add(s);
  }
  void on_http_stats(const std::string& listener, const proxy::http::HttpProxyStats& s) override {
    http_[listener].add(s);
  }
  void on_tls_stats(const std::string& listener, const tls::ListenerTlsStats& s) override {
    tls_[listener].add(s);
  }
  void on_udp_stats(const std::string& listener, const proxy::udp::UdpProxyStats& s) override {
    udp_[listener].add(s);
  }
  void on_stun_stats(const std::string& listener, const proxy::stun::StunStats& s) override {
    stun_[listener].add(s);
  }

 private:
  std::map<std::string, proxy::tcp::TcpProxyStats>& tcp_;
  std::map<std::string, proxy::http::HttpProxyStats>& http_;
  std::map<std::string, tls::ListenerTlsStats>& tls_;
  std::map<std::string, proxy::udp::UdpProxyStats>& udp_;
  std::map<std::string, proxy::stun::StunStats>& stun_;
};

}  // namespace

Worker::Worker(size_t index, std::shared_ptr<const config::Config> config,
               std::vector<ListenerHandoff> listeners, std::vector<ClusterHandoff> clusters)
    : index_(index),
      config_(std::move(config)),
      handoffs_(std::move(listeners)),
      initial_clusters_(std::move(clusters)),
      retire_timer_(loop_.timers(), [this] { close_overdue(); }) {}

void Worker::collect(admin::GatherScope scope, std::function<void(admin::WorkerReport)> done) {
  loop_.post([this, scope, done = std::move(done)] {
    admin::WorkerReport r;
    r.tcp = gone_tcp_;
    r.http = gone_http_;
    r.tls = gone_tls_;
    r.udp = gone_udp_;
    r.stun = gone_stun_;
    StatsInto sink(r.tcp, r.http, r.tls, r.udp, r.stun);
    for (const auto& s : served_) s.proxy->report_stats(sink);
    for (const auto& p : retired_) p.proxy->report_stats(sink);
    for (const auto& c : clusters_) {
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
    if (scope.recent) {
      auto put = [&r](const proxy::ProxyListener& p) {
        auto& recent = r.recent[p.config().name];
        p.report_recent(recent.slow, recent.failed);
      };
      for (const auto& s : served_) put(*s.proxy);
      for (const auto& p : retired_) put(*p.proxy);
    }
    if (scope.connections) {
      for (const auto& s : served_) s.proxy->report_connections(r.connections);
      for (const auto& p : retired_) p.proxy->report_connections(r.connections);
      for (const auto& c : clusters_) {
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
    // A cluster a reload adds gets its snapshot with the reload.
    if (cluster < clusters_.size()) clusters_[cluster]->set_health(std::move(snapshot));
  });
}

void Worker::set_listener_tls(const std::string& name,
                              std::shared_ptr<tls::ServerContext> context) {
  loop_.post([this, name, context = std::move(context)]() mutable {
    for (auto& s : served_) {
      if (s.handoff.config->name == name) {
        s.handoff.tls = context;
        s.proxy->set_tls(context);
      }
    }
  });
}

void Worker::reload(WorkerReload reload, std::function<void()> applied) {
  // Shared: a posted function must be copyable, and the sockets in it are not.
  auto r = std::make_shared<WorkerReload>(std::move(reload));
  loop_.post([this, r, applied = std::move(applied)] {
    apply(*r);
    applied();
  });
}

void Worker::set_cluster(ClusterHandoff& h) {
  if (h.index < clusters_.size()) {
    upstream::Cluster& c = *clusters_[h.index];
    if (!h.config) {
      // Removed: no route leads here any more; requests already on their way finish.
      c.drain_pools();
      removed_[h.index] = true;
      return;
    }
    c.reconfigure(h.config, h.sink, h.tls);
    if (h.health) c.set_health(h.health);
    if (removed_[h.index]) c.undrain_pools();  // back under the same name
    removed_[h.index] = false;
    return;
  }
  SLUICE_CHECK(h.index == clusters_.size() && h.config);
  auto cluster = std::make_unique<upstream::Cluster>(loop_, h.config, config_->workers, h.index,
                                                     *h.shared, h.sink);
  if (h.tls) cluster->set_tls(h.tls);
  if (h.health) cluster->set_health(h.health);
  by_name_[h.config->name] = cluster.get();
  clusters_.push_back(std::move(cluster));
  removed_.push_back(false);
}

proxy::http::ClusterMap Worker::cluster_map() const {
  proxy::http::ClusterMap map;
  for (const auto& [name, c] : by_name_) map.emplace(name, c);
  return map;
}

std::unique_ptr<proxy::ProxyListener> Worker::make_proxy(const ListenerHandoff& h) {
  std::unique_ptr<proxy::ProxyListener> proxy;
  if (h.config->protocol == proxy::Protocol::kHttp) {
    proxy = std::make_unique<proxy::http::HttpProxy>(loop_, h.config, cluster_map(),
                                                     h.active_connections, h.tls);
  } else {
    std::vector<upstream::Cluster*> sni_clusters;
    for (const auto& route : h.config->sni_routes) {
      sni_clusters.push_back(by_name_.at(route.cluster));
    }
    proxy = std::make_unique<proxy::tcp::TcpProxy>(loop_, h.config, *by_name_.at(h.config->cluster),
                                                   std::move(sni_clusters), transfer_pool_,
                                                   h.active_connections, h.tls);
  }
  proxy->set_on_idle([this] { check_drained(); });
  proxy->set_access_log(h.access_log);
  return proxy;
}

void Worker::serve(ListenerHandoff h) {
  if (proxy::is_datagram(h.config->protocol)) return serve_datagram(std::move(h));
  Served s;
  s.proxy = make_proxy(h);
  s.listener = std::make_unique<net::Listener>(loop_, std::move(h.fd), h.config->name, *s.proxy);
  if (Status st = accept_later_ ? Status::ok() : s.listener->start(); !st) {
    LOG_ERROR("listener {}: {}", h.config->name, st.message());
  }
  for (auto& fd : h.extra_fds) {
    auto& l = s.extra.emplace_back(
        std::make_unique<net::Listener>(loop_, std::move(fd), h.config->name, *s.proxy));
    if (Status st = accept_later_ ? Status::ok() : l->start(); !st) {
      LOG_ERROR("listener {}: {}", h.config->name, st.message());
    }
  }
  h.extra_fds.clear();
  s.handoff = std::move(h);
  served_.push_back(std::move(s));
}

// --- datagram listeners (udp, stun): the proxy reads its socket itself ----------------------

void Worker::serve_datagram(ListenerHandoff h) {
  Served s;
  if (h.config->protocol == proxy::Protocol::kStun) {
    s.proxy = std::make_unique<proxy::stun::StunListener>(
        loop_, h.config, std::move(h.fd), std::move(h.alternate_fds), std::move(h.stun_tcp_fd));
  } else {
    s.proxy = std::make_unique<proxy::udp::UdpProxy>(
        loop_, h.config, *by_name_.at(h.config->cluster), std::move(h.fd), h.active_connections);
  }
  s.proxy->set_on_idle([this] { check_drained(); });
  s.proxy->set_access_log(h.access_log);
  s.handoff = std::move(h);
  if (!accept_later_) start_datagram(s);
  served_.push_back(std::move(s));
}

void Worker::start_datagram(Served& s) {
  Status st = s.handoff.config->protocol == proxy::Protocol::kStun
                  ? static_cast<proxy::stun::StunListener&>(*s.proxy).start()
                  : static_cast<proxy::udp::UdpProxy&>(*s.proxy).start();
  if (!st) LOG_ERROR("listener {}: {}", s.handoff.config->name, st.message());
}

void Worker::reconfigure_datagram(Served& s, const ListenerHandoff& h) {
  if (h.config->protocol == proxy::Protocol::kStun) {
    static_cast<proxy::stun::StunListener&>(*s.proxy).reconfigure(h.config);
  } else {
    static_cast<proxy::udp::UdpProxy&>(*s.proxy).reconfigure(h.config,
                                                             *by_name_.at(h.config->cluster));
  }
  s.proxy->set_access_log(h.access_log);
}

// -------------------------------------------------------------------------------------------

void Worker::warm_up(const proxy::ListenerConfig& listener) {
  // Warm connections (pool.min_idle) for the clusters HTTP routes use.
  for (const auto& vh : listener.http.virtual_hosts) {
    for (const auto& route : vh.routes) {
      auto it = by_name_.find(route.cluster);
      if (it != by_name_.end()) it->second->warm_up_pools();
    }
  }
}

void Worker::retire(std::unique_ptr<proxy::ProxyListener> proxy, MonoTime close_at) {
  retired_.push_back(Retired{std::move(proxy), close_at});
  if (close_at != MonoTime::max() &&
      (!retire_timer_.armed() || close_at < retire_timer_.deadline())) {
    retire_timer_.arm_at(close_at);
  }
  reap_retired();
}

void Worker::close_overdue() {
  MonoTime next = MonoTime::max();
  std::vector<proxy::ProxyListener*> overdue;
  for (auto& r : retired_) {
    if (r.close_at <= loop_.now()) {
      overdue.push_back(r.proxy.get());
      r.close_at = MonoTime::max();
    } else {
      next = std::min(next, r.close_at);
    }
  }
  // Closing reaps (on_idle): the list changes under the loop above, not under this one.
  for (auto* p : overdue) p->close_all(true);
  if (next != MonoTime::max()) retire_timer_.arm_at(next);
}

void Worker::discard(std::unique_ptr<net::Listener> listener) {
  loop_.post([gone = std::shared_ptr<net::Listener>(std::move(listener))] {});
}

void Worker::reap_retired() {
  for (auto it = retired_.begin(); it != retired_.end();) {
    if (it->proxy->active() != 0) {
      ++it;
      continue;
    }
    StatsInto gone(gone_tcp_, gone_http_, gone_tls_, gone_udp_, gone_stun_);
    it->proxy->report_stats(gone);
    // Deleted on the next iteration: this may run inside one of its own callbacks, and its
    // connections may still wait for deferred deletion.
    loop_.post([gone = std::shared_ptr<proxy::ProxyListener>(std::move(it->proxy))] {});
    it = retired_.erase(it);
  }
}

void Worker::change(Served& s, const ListenerHandoff& h) {
  bool http = h.config->protocol == proxy::Protocol::kHttp;
  if (proxy::is_datagram(h.config->protocol)) {
    // Same socket, same protocol (a change of either binds anew): new settings in place.
    reconfigure_datagram(s, h);
  } else if (http && s.handoff.config->protocol == proxy::Protocol::kHttp) {
    auto& proxy = static_cast<proxy::http::HttpProxy&>(*s.proxy);
    proxy.set_config(h.config);
    proxy.set_tls(h.tls);
    proxy.set_access_log(h.access_log);
  } else {
    // A TCP proxy holds its clusters: a new one takes new connections; the sessions of the
    // old one run on untouched. (HTTP turned TCP or back: the old one drains.)
    auto fresh = make_proxy(h);
    s.listener->set_callbacks(*fresh);
    for (auto& l : s.extra) l->set_callbacks(*fresh);
    if (s.handoff.config->protocol == proxy::Protocol::kHttp) s.proxy->drain();
    retire(std::exchange(s.proxy, std::move(fresh)));
  }
  // The sockets stay with the Served: only the settings change.
  s.handoff.config = h.config;
  s.handoff.active_connections = h.active_connections;
  s.handoff.access_log = h.access_log;
  s.handoff.tls = h.tls;
}

void Worker::apply(WorkerReload& r) {
  config_ = r.config;
  for (auto& c : r.clusters) set_cluster(c);
  for (const auto& name : r.removed) {
    // A datagram listener may be served more than once here (worker.h).
    for (auto it = served_.begin(); it != served_.end();) {
      if (it->handoff.config->name != name) {
        ++it;
        continue;
      }
      if (it->listener) it->listener->accept_queued_and_close();
      for (auto& l : it->extra) l->accept_queued_and_close();
      if (it->listener) discard(std::move(it->listener));
      for (auto& l : it->extra) discard(std::move(l));
      // Connections just accepted from the queue get their request answered (with
      // Connection: close), as do idle keep-alive ones; drain_timeout bounds the rest.
      it->proxy->drain_keeping_idle();
      retire(std::move(it->proxy), loop_.now() + config_->drain_timeout);
      it = served_.erase(it);
    }
  }
  for (auto& h : r.changed) {
    h.fd = net::Fd();
    for (auto& served : served_) {
      if (served.handoff.config->name == h.config->name) change(served, h);
    }
  }
  for (auto& h : r.added) serve(std::move(h));
  proxy::http::ClusterMap map = cluster_map();
  for (auto& s : served_) {
    if (s.handoff.config->protocol == proxy::Protocol::kHttp) {
      static_cast<proxy::http::HttpProxy&>(*s.proxy).set_clusters(map);
    }
  }
  for (auto& s : served_) {
    s.proxy->set_generation(r.generation);
    warm_up(*s.handoff.config);
  }
}

Worker::~Worker() {
  stop_and_join();
}

void Worker::start_accepting() {
  loop_.post([this] {
    if (!accept_later_) return;
    accept_later_ = false;
    for (auto& s : served_) {
      if (!s.listener) {
        start_datagram(s);
        continue;
      }
      std::vector<net::Listener*> all{s.listener.get()};
      for (auto& l : s.extra) all.push_back(l.get());
      for (auto* l : all) {
        if (Status st = l->start(); !st) {
          LOG_ERROR("listener {}: {}", s.handoff.config->name, st.message());
        }
      }
    }
  });
}

void Worker::accept_by_polling(std::function<void()> done) {
  loop_.post([this, done = std::move(done)] {
    // One budget for all the worker's listeners, however many: the new process waits for the
    // hand-over's first packet for a bounded time (server/upgrade.cc).
    const MonoTime until = MonoClock::now() + kAcceptByPollingBudget;
    auto left = [until] { return std::max<Duration>(Duration::zero(), until - MonoClock::now()); };
    for (auto& s : served_) {
      if (s.listener) s.listener->accept_by_polling(left());
      for (auto& l : s.extra) l->accept_by_polling(left());
      if (s.handoff.config->protocol == proxy::Protocol::kStun) {
        static_cast<proxy::stun::StunListener&>(*s.proxy).accept_by_polling(left());
      }
    }
    if (done) done();
  });
}

void Worker::start() {
  thread_ = std::thread([this] { thread_main(); });
}

void Worker::thread_main() {
  std::string name = fmt::format("w{}", index_);
  log::set_thread_name(name);
  pthread_setname_np(pthread_self(), fmt::format("sluice-{}", name).c_str());

  for (auto& c : initial_clusters_) set_cluster(c);
  initial_clusters_.clear();
  for (auto& h : handoffs_) serve(std::move(h));
  handoffs_.clear();
  for (auto& s : served_) warm_up(*s.handoff.config);

  loop_.run();

  StatsInto sink(final_stats_, final_http_stats_, final_tls_stats_, final_udp_stats_,
                 final_stun_stats_);
  final_stats_ = gone_tcp_;
  final_http_stats_ = gone_http_;
  final_tls_stats_ = gone_tls_;
  final_udp_stats_ = gone_udp_;
  final_stun_stats_ = gone_stun_;
  for (auto& s : served_) {
    s.listener.reset();
    s.proxy->close_all(false);
    s.proxy->report_stats(sink);
  }
  for (auto& p : retired_) {
    p.proxy->close_all(false);
    p.proxy->report_stats(sink);
  }
  // Connections, streams and attempts waiting for deferred deletion refer to their proxy
  // and cluster: destroy them while those still exist.
  loop_.delete_deferred_now();
  served_.clear();
  retired_.clear();
  loop_.delete_deferred_now();
  for (const auto& c : clusters_) final_cluster_stats_.push_back(c->stats());
  by_name_.clear();
  clusters_.clear();
}

void Worker::drain(std::function<void()> on_drained, bool keep_idle) {
  loop_.post([this, keep_idle, on_drained = std::move(on_drained)]() mutable {
    on_drained_ = std::move(on_drained);
    for (auto& s : served_) {
      if (s.listener) s.listener->close();
      for (auto& l : s.extra) l->close();
    }
    for (auto& s : served_) {
      if (keep_idle) {
        s.proxy->drain_for_upgrade();
      } else {
        s.proxy->drain();
      }
    }
    // A retired proxy whose last connection a drain closes is reaped (taken out of retired_)
    // at once: walk a copy. Reaped proxies are deleted by a later post, so the pointers hold.
    std::vector<proxy::ProxyListener*> retiring;
    for (auto& p : retired_) retiring.push_back(p.proxy.get());
    for (auto* p : retiring) p->drain();
    for (auto& c : clusters_) c->drain_pools();
    check_drained();
  });
}

void Worker::check_drained() {
  reap_retired();
  if (!on_drained_) return;
  for (const auto& s : served_) {
    if (s.proxy->active() != 0) return;
  }
  if (!retired_.empty()) return;
  auto fn = std::move(on_drained_);
  on_drained_ = nullptr;
  fn();
}

void Worker::close_all() {
  loop_.post([this] {
    for (auto& s : served_) s.proxy->close_all(true);
    for (auto& p : retired_) p.proxy->close_all(true);
  });
}

void Worker::stop_and_join() {
  if (!thread_.joinable()) return;
  loop_.stop();
  thread_.join();
}

}  // namespace sluice::server
