// The Server's TLS: each TLS listener's certificates, session-ticket keys and per-worker
// contexts (kept per listener name across reloads and handed over by a binary upgrade), the
// clusters' client contexts, and the certificate files watched for changes.
#include <fmt/format.h>

#include "base/log.h"
#include "server/handover.h"
#include "server/server.h"
#include "server/worker.h"
#include "tls/cert_store.h"
#include "tls/cert_watcher.h"
#include "tls/context.h"
#include "tls/ticket_keys.h"

namespace sluice::server {

namespace {
// Early-data ClientHellos remembered per listener; beyond it, early data is refused.
constexpr size_t kReplayGuardCapacity = 100000;
// OpenSSL accepts early data only when the ticket's age as the client tells it is within 10 s
// of its real age: a replayed ClientHello is refused by OpenSSL itself after that, so the
// record needs to remember each one for only a little longer.
constexpr auto kReplayWindow = std::chrono::seconds(30);
}  // namespace

Status Server::prepare_tls(std::vector<std::vector<ListenerHandoff>>& per_worker) {
  bool wants_ktls = false;
  for (const auto& l : config_->listeners) {
    if (!l->tls) continue;
    wants_ktls |= l->tls->ktls;
    if (Status st = make_listener_tls(*l); !st) return st;
    for (size_t w = 0; w < per_worker.size(); ++w) {
      for (auto& h : per_worker[w]) {
        if (h.config == l) h.tls = listener_tls_.at(l->name)[w];
      }
    }
  }
  for (const auto& l : config_->listeners) {
    if (l->tls) watch_certificates(l);
  }
  cluster_tls_.assign(per_worker.size() + 1, {});  // the last: the main thread's (checks)
  for (size_t i = 0; i < config_->clusters.size(); ++i) {
    const auto& c = config_->clusters[i];
    if (c->tls) wants_ktls |= c->tls->ktls;
    if (Status st = make_cluster_tls(*c, i); !st) return st;
  }
  if (wants_ktls && !tls::kernel_tls_available()) {
    LOG_WARN(
        "tls: ktls is set, but this kernel offers no kTLS (no `tls` module): records are "
        "encrypted in user space");
  }
  return Status::ok();
}

Status Server::make_cluster_tls(const upstream::ClusterConfig& c, size_t index) {
  std::vector<std::shared_ptr<tls::ClientContext>> made(cluster_tls_.size());
  for (auto& ctx : made) {
    if (!c.tls) break;
    auto context = tls::ClientContext::create(*c.tls);
    if (!context)
      return Status::error(fmt::format("cluster {}: tls: {}", c.name, context.status().message()));
    ctx = context.value();
  }
  for (size_t w = 0; w < cluster_tls_.size(); ++w) {
    if (cluster_tls_[w].size() <= index) cluster_tls_[w].resize(index + 1);
    cluster_tls_[w][index] = std::move(made[w]);
  }
  return Status::ok();
}

Status Server::make_listener_tls(const proxy::ListenerConfig& l) {
  // Read and checked when the configuration was loaded (its warnings logged then); a
  // configuration built in code is read here.
  std::shared_ptr<const tls::CertStore> store = l.cert_store;
  if (!store) {
    std::vector<std::string> warnings;
    auto loaded = tls::CertStore::load(*l.tls, &warnings);
    for (const auto& w : warnings) LOG_WARN("listener {}: tls: {}", l.name, w);
    if (!loaded)
      return Status::error(fmt::format("listener {}: tls: {}", l.name, loaded.status().message()));
    store = loaded.value();
  }
  std::shared_ptr<tls::TicketKeys> keys;
  if (auto known = ticket_keys_.find(l.name); known != ticket_keys_.end()) {
    keys = known->second;  // a reload: sessions resumed with the keys in use keep resuming
  } else if (!l.tls->ticket_key_files.empty()) {
    auto from_files = tls::TicketKeys::from_files(l.tls->ticket_key_files);
    if (!from_files)
      return Status::error(
          fmt::format("listener {}: tls: {}", l.name, from_files.status().message()));
    keys = from_files.value();
    // A fleet rotates its files: new keys are read when they change.
    auto watcher = tls::CertWatcher::create(
        main_loop_, l.tls->ticket_key_files,
        [name = l.name, keys, files = l.tls->ticket_key_files] {
          if (Status s = keys->reload_files(files); !s) {
            LOG_ERROR(
                "listener {}: tls: the changed ticket key files are not used, the keys "
                "in use stay: {}",
                name, s.message());
            return;
          }
          LOG_INFO("listener {}: tls: ticket keys read again from {} files", name, files.size());
        });
    if (watcher) {
      ticket_watchers_.push_back(std::move(watcher.value()));
    } else {
      LOG_WARN("listener {}: tls: ticket key files are not watched ({})", l.name,
               watcher.status().message());
    }
  } else {
    // A binary upgrade: the keys of the process this one replaces, so that its clients resume.
    if (inherited_ && inherited_->ticket_keys.count(l.name)) {
      keys = std::make_shared<tls::TicketKeys>(inherited_->ticket_keys.at(l.name));
    } else {
      keys = std::make_shared<tls::TicketKeys>();
    }
    // Rotated on the main thread; each worker's contexts read the keys under their lock.
    size_t slot = ticket_rotations_.size();
    Duration every = l.tls->ticket_key_rotation;
    ticket_rotations_.push_back(
        std::make_unique<event::Timer>(main_loop_.timers(), [this, keys, slot, every] {
          keys->rotate();
          ticket_rotations_[slot]->arm_at(main_loop_.now() + every);
        }));
    ticket_rotations_.back()->arm_at(main_loop_.now() + every);
  }
  if (l.tls->early_data.enabled && !replay_guards_[l.name]) {
    // One record of accepted early data for all workers.
    replay_guards_[l.name] =
        std::make_shared<tls::ReplayGuard>(kReplayGuardCapacity, kReplayWindow);
  }
  std::vector<std::shared_ptr<tls::ServerContext>> contexts;
  for (uint32_t w = 0; w < config_->workers; ++w) {
    auto ctx = tls::ServerContext::create(*l.tls, l.name, store, keys, replay_guards_[l.name]);
    if (!ctx)
      return Status::error(fmt::format("listener {}: tls: {}", l.name, ctx.status().message()));
    contexts.push_back(ctx.value());
  }
  ticket_keys_[l.name] = keys;
  cert_stores_[l.name] = store;
  listener_tls_[l.name] = std::move(contexts);
  return Status::ok();
}

void Server::watch_certificates(std::shared_ptr<const proxy::ListenerConfig> listener) {
  const proxy::ListenerConfig& l = *listener;
  std::vector<std::string> files = cert_stores_.at(l.name)->files();
  if (!l.tls->client_ca.empty()) files.push_back(l.tls->client_ca);
  cert_watchers_.erase(l.name);
  auto watcher = tls::CertWatcher::create(main_loop_, std::move(files),
                                          [this, listener] { reload_certificates(*listener); });
  if (!watcher) {
    LOG_WARN("listener {}: tls: certificate files are not watched ({}); changes need a restart",
             l.name, watcher.status().message());
    return;
  }
  cert_watchers_[l.name] = std::move(watcher.value());
}

void Server::reload_certificates(const proxy::ListenerConfig& l) {
  auto& [done, failed] = cert_reloads_[l.name];
  std::vector<std::string> warnings;
  auto store = tls::CertStore::load(*l.tls, &warnings);
  for (const auto& w : warnings) LOG_WARN("listener {}: tls: {}", l.name, w);
  std::vector<std::shared_ptr<tls::ServerContext>> contexts;
  Status s = store ? Status::ok() : store.status();
  for (size_t w = 0; s && w < workers_.size(); ++w) {
    auto ctx = tls::ServerContext::create(*l.tls, l.name, store.value(), ticket_keys_.at(l.name),
                                          replay_guards_[l.name]);
    if (!ctx) {
      s = ctx.status();
      break;
    }
    contexts.push_back(ctx.value());
  }
  if (!s) {
    ++failed;
    LOG_ERROR(
        "listener {}: tls: the changed certificate files are not used, the last good ones "
        "stay in force: {}",
        l.name, s.message());
    return;
  }
  ++done;
  cert_stores_[l.name] = store.value();
  listener_tls_[l.name] = contexts;
  for (size_t w = 0; w < workers_.size(); ++w) workers_[w]->set_listener_tls(l.name, contexts[w]);
  // Said once every worker uses the new set: a handshake after the line gets it.
  auto waiting = std::make_shared<size_t>(workers_.size());
  auto announce = [name = l.name, store = store.value()] {
    for (const auto& cert : store->certificates()) {
      LOG_INFO("listener {}: tls: serving {} ({}) for new handshakes", name, cert->subject,
               cert->chain_file);
    }
  };
  for (auto& w : workers_) {
    w->after_pending([this, waiting, announce] {
      main_loop_.post([waiting, announce] {
        if (--*waiting == 0) announce();
      });
    });
  }
}

}  // namespace sluice::server
