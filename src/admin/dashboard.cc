#include "admin/dashboard.h"

#include <fmt/format.h>
#include <openssl/rand.h>
#include <sys/random.h>

#include <algorithm>
#include <cerrno>
#include <nlohmann/json.hpp>

#include "admin/dashboard_assets.h"
#include "admin/json_views.h"
#include "base/check.h"

namespace sluice::admin {
namespace {

using nlohmann::json;

constexpr size_t kMaxRecent = 32;  // of each list, over every worker

AdminResponse text(int status, std::string body) {
  return AdminResponse{status, "text/plain; charset=utf-8", std::move(body)};
}

double seconds(Duration d) {
  return std::chrono::duration<double>(d).count();
}

json dns_json(const std::vector<dns::Cache::Saved>& names) {
  json out = json::array();
  for (const auto& n : names) {
    const dns::Answer& a = n.answer;
    json j;
    j["key"] = n.key;
    j["name"] = a.name;
    json addresses = json::array();
    for (const auto& ad : a.addresses) addresses.push_back(ad.ip_string());
    j["addresses"] = std::move(addresses);
    if (!a.srv.empty()) {
      json srv = json::array();
      for (const auto& s : a.srv) {
        srv.push_back({{"target", s.target},
                       {"port", s.port},
                       {"priority", s.priority},
                       {"weight", s.weight}});
      }
      j["srv"] = std::move(srv);
    }
    if (!a.cname_chain.empty()) j["cname_chain"] = a.cname_chain;
    j["error"] = dns::to_string(a.error);
    if (!a.error_text.empty()) j["error_text"] = a.error_text;
    j["record_ttl"] = a.record_ttl;
    j["ttl_seconds"] = seconds(a.ttl);
    j["left_seconds"] = seconds(n.left);
    j["expired"] = n.left <= Duration(0);
    j["stale"] = a.stale;
    j["refresh_failed"] = a.refresh_failed;
    j["from_hosts_file"] = a.from_hosts_file;
    out.push_back(std::move(j));
  }
  return out;
}

json recent_json(const proxy::http::RecentRequest& r, const std::string& listener, size_t worker) {
  json record = json::parse(r.record, nullptr, /*allow_exceptions=*/false);
  return {{"listener", listener},
          {"worker", worker},
          {"duration_us", r.duration_us},
          {"ended_ms", r.ended_ms},
          {"failed", r.failed},
          {"record", record.is_discarded() ? json(r.record) : std::move(record)}};
}

// The recent requests of every worker: the slowest first, the failed latest first.
std::pair<json, json> recent_json(const MetricsInput& in) {
  struct Item {
    const proxy::http::RecentRequest* r;
    const std::string* listener;
    size_t worker;
  };
  std::vector<Item> slow, failed;
  for (size_t w = 0; w < in.workers.size(); ++w) {
    for (const auto& [listener, recent] : in.workers[w].recent) {
      for (const auto& r : recent.slow) slow.push_back({&r, &listener, w});
      for (const auto& r : recent.failed) failed.push_back({&r, &listener, w});
    }
  }
  std::sort(slow.begin(), slow.end(),
            [](const Item& a, const Item& b) { return a.r->duration_us > b.r->duration_us; });
  std::sort(failed.begin(), failed.end(),
            [](const Item& a, const Item& b) { return a.r->ended_ms > b.r->ended_ms; });
  auto list = [](const std::vector<Item>& items) {
    json out = json::array();
    for (size_t i = 0; i < items.size() && i < kMaxRecent; ++i) {
      out.push_back(recent_json(*items[i].r, *items[i].listener, items[i].worker));
    }
    return out;
  };
  return {list(slow), list(failed)};
}

}  // namespace

std::string make_action_token() {
  unsigned char bytes[16] = {};
  size_t got = 0;
  while (got < sizeof bytes) {
    ssize_t n = getrandom(bytes + got, sizeof bytes - got, 0);
    if (n > 0) {
      got += static_cast<size_t>(n);
    } else if (n < 0 && errno != EINTR) {
      // No getrandom (an old kernel, a seccomp filter): OpenSSL's generator, seeded its own way.
      SLUICE_CHECK(RAND_bytes(bytes, sizeof bytes) == 1);
      break;
    }
  }
  std::string out;
  for (unsigned char b : bytes) out += fmt::format("{:02x}", b);
  return out;
}

std::string percent_decode(std::string_view s) {
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && hex(s[i + 1]) >= 0 && hex(s[i + 2]) >= 0) {
      out += static_cast<char>(hex(s[i + 1]) * 16 + hex(s[i + 2]));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

std::string render_dashboard_json(const MetricsInput& in, const DashboardInfo& info) {
  json out;
  out["time_ms"] = std::chrono::duration_cast<std::chrono::milliseconds>(
                       std::chrono::system_clock::now().time_since_epoch())
                       .count();
  out["state"] = std::string(to_string(info.state));
  out["generation"] = info.generation;
  out["metrics"] = metrics_json(in);
  out["listeners"] = listeners_json(in, info.listener_addresses);
  out["clusters"] = clusters_json(in);
  out["dns"] = dns_json(in.dns_names);
  if (!info.bgp.empty()) {
    json bgp = json::parse(info.bgp, nullptr, /*allow_exceptions=*/false);
    if (!bgp.is_discarded()) out["bgp"] = std::move(bgp);
  }
  auto [slow, failed] = recent_json(in);
  out["slow"] = std::move(slow);
  out["failed"] = std::move(failed);
  return out.dump() + "\n";
}

void register_dashboard(AdminServer& server, AdminContext context, std::string token,
                        DashboardEvents* events) {
  server.require_browser_token(std::move(token));
  auto ctx = std::make_shared<const AdminContext>(std::move(context));
  AdminServer* admin = &server;
  server.handle_sync("/", [](const AdminRequest& req) {
    for (const auto& a : dashboard_assets()) {
      if (a.url == req.path) {
        if (req.method != "GET" && req.method != "HEAD") return text(405, "use GET\n");
        return AdminResponse{200, std::string(a.content_type), std::string(a.body)};
      }
    }
    return text(404, "no such admin endpoint\n");
  });
  // The data, built the same way for a poll and for the event streams.
  auto build = [ctx](std::function<void(std::string)> done) {
    ctx->gather({.recent = true, .dns = true}, [done = std::move(done), ctx](MetricsInput& in) {
      ConfigView view = ctx->view();
      DashboardInfo info{ctx->lifecycle->state(), ctx->reloads ? ctx->reloads->generation : 0,
                         view.listener_addresses, ctx->bgp ? ctx->bgp() : std::string()};
      done(render_dashboard_json(in, info));
    });
  };
  server.handle("/dashboard/data", [build](const AdminRequest&, AdminServer::Respond respond) {
    build([respond](std::string json) {
      respond(AdminResponse{200, "application/json", std::move(json)});
    });
  });
  if (events) {
    events->set_build(build);
    server.handle("/dashboard/events",
                  [events](const AdminRequest& req, AdminServer::Respond respond) {
                    events->subscribe(req, std::move(respond));
                  });
  }
  // The actions: always with the token, whoever asks.
  auto allowed = [admin](const AdminRequest& req) -> std::optional<AdminResponse> {
    if (req.method != "POST") return text(405, "use POST\n");
    if (!admin->has_token(req)) return AdminServer::token_refusal();
    return std::nullopt;
  };
  for (const char* action : {"drain", "undrain"}) {
    server.handle_sync(
        std::string("/dashboard/") + action, [ctx, allowed, action](const AdminRequest& req) {
          if (auto refused = allowed(req)) return *refused;
          AdminRequest as = req;
          as.path = fmt::format("/clusters/{}/endpoints/{}/{}",
                                percent_decode(query_value(req.query, "cluster")),
                                percent_decode(query_value(req.query, "endpoint")), action);
          ConfigView view = ctx->view();
          return endpoint_drain(as, *view.clusters, *ctx->health);
        });
  }
  server.handle("/dashboard/reload",
                [ctx, allowed](const AdminRequest& req, AdminServer::Respond respond) {
                  if (auto refused = allowed(req)) return respond(*refused);
                  if (!ctx->reload) return respond(text(501, "reloading is not available\n"));
                  ctx->reload(false, [respond](ReloadOutcome o) {
                    int status = o.result == ReloadOutcome::Result::kFailed ? 400 : 200;
                    respond(AdminResponse{status, "application/json", render_reload_json(o)});
                  });
                });
}

}  // namespace sluice::admin
