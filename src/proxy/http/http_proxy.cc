#include "proxy/http/http_proxy.h"

#include "base/log.h"
#include "proxy/http/downstream_connection.h"

namespace sluice::proxy::http {

HttpProxy::HttpProxy(event::Loop& loop, std::shared_ptr<const ListenerConfig> config,
                     ClusterMap clusters, std::shared_ptr<std::atomic<uint32_t>> active_connections,
                     std::shared_ptr<tls::ServerContext> tls)
    : loop_(loop),
      config_(std::move(config)),
      clusters_(std::move(clusters)),
      active_connections_(std::move(active_connections)),
      parser_limits_{config_->http.max_head_bytes, config_->http.max_headers,
                     config_->http.max_uri_bytes},
      tls_(std::move(tls)) {
  size_t routes = 0;
  for (const auto& vh : config_->http.virtual_hosts) routes += vh.routes.size();
  stats_.routes.resize(routes);
}

void HttpProxy::set_config(std::shared_ptr<const ListenerConfig> config) {
  // Route counters follow their route's name, wherever the new list puts it.
  std::map<std::string, HttpRouteStats> by_name;
  for (const auto& vh : config_->http.virtual_hosts) {
    for (const auto& r : vh.routes) {
      if (r.id < stats_.routes.size()) by_name[r.name] = stats_.routes[r.id];
    }
  }
  config_ = std::move(config);
  parser_limits_ = {config_->http.max_head_bytes, config_->http.max_headers,
                    config_->http.max_uri_bytes};
  size_t routes = 0;
  for (const auto& vh : config_->http.virtual_hosts) routes += vh.routes.size();
  stats_.routes.assign(routes, HttpRouteStats{});
  for (const auto& vh : config_->http.virtual_hosts) {
    for (const auto& r : vh.routes) {
      auto it = by_name.find(r.name);
      if (it != by_name.end() && r.id < routes) stats_.routes[r.id] = it->second;
    }
  }
}

HttpProxy::~HttpProxy() {
  on_idle_ = nullptr;
  close_all();
}

void HttpProxy::on_accept(net::Fd fd, const net::Address& peer) {
  uint32_t now_active = active_connections_->fetch_add(1, std::memory_order_relaxed) + 1;
  if (config_->max_connections != 0 && now_active > config_->max_connections) {
    active_connections_->fetch_sub(1, std::memory_order_relaxed);
    ++stats_.refused_max_connections;
    if (loop_.now() - last_refusal_log_ >= std::chrono::seconds(1)) {
      LOG_WARN("listener {}: refusing {}: max_connections {} reached", config_->name,
               peer.to_string(), config_->max_connections);
      last_refusal_log_ = loop_.now();
    }
    return;
  }
  if (draining_) {
    active_connections_->fetch_sub(1, std::memory_order_relaxed);
    return;
  }
  ++stats_.accepted;
  auto* c = new DownstreamConnection(*this, peer);
  c->next = head_;
  if (head_) head_->prev = c;
  head_ = c;
  ++connections_;
  c->start(std::move(fd));
}

void HttpProxy::remove(DownstreamConnection* c) {
  if (c->prev) {
    c->prev->next = c->next;
  } else {
    head_ = c->next;
  }
  if (c->next) c->next->prev = c->prev;
  c->prev = c->next = nullptr;
  --connections_;
  active_connections_->fetch_sub(1, std::memory_order_relaxed);
  loop_.defer_delete(std::unique_ptr<event::DeferredDeletable>(c));
  if (connections_ == 0 && on_idle_) on_idle_();
}

void HttpProxy::report_connections(std::vector<net::ConnectionReport>& out) const {
  for (const DownstreamConnection* c = head_; c; c = c->next) {
    if (c->fd() < 0) continue;
    out.push_back(net::describe_connection(c->fd(), "downstream", config_->name,
                                           c->busy() ? "request" : "idle"));
    if (const DownstreamTls* t = c->downstream_tls()) {
      auto& r = out.back();
      r.sni = t->sni;
      r.tls_version = t->version;
      r.tls_cipher = t->cipher;
      r.tls_resumed = t->resumed;
    }
    if (const Http2Session* h2 = c->http2()) {
      auto& r = out.back();
      r.http2 = true;
      r.streams = static_cast<uint32_t>(h2->open_streams());
      r.abuse_score = h2->abuse_score();
      r.goaway = h2->goaway_state();
      r.send_window = h2->codec().send_window();
      r.receive_window = h2->codec().receive_window();
    }
  }
}

void HttpProxy::drain() {
  draining_ = true;
  DownstreamConnection* c = head_;
  while (c) {
    DownstreamConnection* next = c->next;
    c->drain();
    c = next;
  }
}

void HttpProxy::drain_keeping_idle() {
  draining_ = true;
  DownstreamConnection* c = head_;
  while (c) {
    DownstreamConnection* next = c->next;
    // An idle HTTP/1 connection is left alone: keep_alive_allowed() now says no, so its
    // next response closes it.
    if (c->busy() || c->http2()) c->drain();
    c = next;
  }
}

void HttpProxy::close_all(bool) {
  while (head_) head_->close("shutdown");
}

}  // namespace sluice::proxy::http
