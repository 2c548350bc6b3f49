#include "config/config.h"

#include <yaml-cpp/yaml.h>

#include <fstream>
#include <map>
#include <sstream>
#include <thread>

#include <fmt/format.h>

#include "config/yaml_reader.h"

namespace sluice::config {
namespace {

using std::chrono::hours;
using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr Duration kZero{0};
constexpr Duration kDay = hours(24);

bool valid_name(const std::string& s) {
  if (s.empty() || s.size() > 64) return false;
  for (char c : s) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.')) {
      return false;
    }
  }
  return true;
}

void read_name(YamlReader& r, MapReader& m, std::string& out) {
  if (!m.require("name")) return;
  m.read_string("name", out);
  if (!out.empty() && !valid_name(out)) {
    r.error(m.get("name"), m.path("name"),
            fmt::format("'{}' is not a valid name (1-64 letters, digits, '_', '-', '.')", out));
  }
}

void read_address(YamlReader& r, MapReader& m, const char* key, net::Address& out,
                  bool port_required) {
  if (!m.has(key)) return;
  auto text = m.scalar(key, "an address such as 127.0.0.1:8080 or [::1]:8080");
  if (!text) return;
  auto a = net::Address::parse(*text);
  if (!a) {
    r.error(m.get(key), m.path(key), a.status().message());
    return;
  }
  if (port_required && a->port() == 0) {
    r.error(m.get(key), m.path(key), fmt::format("'{}' needs a port from 1 to 65535", *text));
    return;
  }
  out = *a;
}

// `listener` selects which Fast Open form applies: a queue length on listeners, an on/off
// switch for upstream connects.
void read_socket_options(YamlReader& r, const YAML::Node& node, const std::string& path,
                         bool listener, net::SocketOptions& out) {
  MapReader m(
      r, node, path,
      {"tcp_nodelay", "keepalive", "fastopen", "congestion", "send_buffer", "receive_buffer"});
  if (!m.ok()) return;
  m.read_bool("tcp_nodelay", out.tcp_nodelay);
  if (m.has("keepalive")) {
    MapReader k(r, m.get("keepalive"), m.path("keepalive"), {"idle", "interval", "count"});
    if (k.ok()) {
      net::KeepaliveOptions ka;
      k.read_duration("idle", ka.idle, seconds(1), kDay);
      k.read_duration("interval", ka.interval, seconds(1), kDay);
      k.read_int("count", ka.count, 1, 127);
      out.keepalive = ka;
    }
  }
  if (m.has("congestion")) {
    m.read_string("congestion", out.congestion);
    if (Status s = net::check_congestion_available(out.congestion); !s) {
      r.error(m.get("congestion"), m.path("congestion"), s.message());
    }
  }
  m.read_size("send_buffer", out.send_buffer, 4096, 256ull << 20);
  m.read_size("receive_buffer", out.receive_buffer, 4096, 256ull << 20);
  if (m.has("fastopen")) {
    bool on = false;
    if (listener) {
      m.read_uint("fastopen", out.fastopen_queue, 0, 65535);
      on = out.fastopen_queue > 0;
    } else {
      m.read_bool("fastopen", out.fastopen_connect);
      on = out.fastopen_connect;
    }
    if (on) {
      if (Status s = net::check_fastopen_enabled(listener); !s) {
        r.error(m.get("fastopen"), m.path("fastopen"), s.message());
      }
    }
  }
}

std::shared_ptr<upstream::ClusterConfig> read_cluster(YamlReader& r, const YAML::Node& node,
                                                      const std::string& path) {
  auto c = std::make_shared<upstream::ClusterConfig>();
  MapReader m(r, node, path,
              {"name", "connect_timeout", "max_connect_attempts", "source_address",
               "socket_options", "endpoints"});
  if (!m.ok()) return c;
  read_name(r, m, c->name);
  m.read_duration("connect_timeout", c->connect_timeout, milliseconds(1), hours(1));
  m.read_uint("max_connect_attempts", c->max_connect_attempts, 1, 100);
  if (m.has("source_address")) {
    auto text = m.scalar("source_address", "an IP address such as 127.0.0.2");
    if (text) {
      auto a = net::Address::parse_ip(*text, 0);
      if (a) {
        c->source_address = *a;
      } else {
        r.error(m.get("source_address"), m.path("source_address"), a.status().message());
      }
    }
  }
  if (m.has("socket_options")) {
    read_socket_options(r, m.get("socket_options"), m.path("socket_options"), false,
                        c->socket_options);
  }
  if (!m.require("endpoints")) return c;
  YAML::Node eps = m.get("endpoints");
  if (!eps.IsSequence() || eps.size() == 0) {
    r.error(eps, m.path("endpoints"), "expected a non-empty list of endpoints");
    return c;
  }
  for (size_t i = 0; i < eps.size(); ++i) {
    std::string epath = fmt::format("{}[{}]", m.path("endpoints"), i);
    MapReader e(r, eps[i], epath, {"address", "weight"});
    if (!e.ok()) continue;
    upstream::EndpointConfig ep;
    if (e.require("address")) read_address(r, e, "address", ep.address, true);
    e.read_uint("weight", ep.weight, 1, upstream::ClusterConfig::kMaxWeight);
    if (c->source_address && ep.address.length() != 0 &&
        ep.address.family() != c->source_address->family()) {
      r.error(eps[i]["address"], e.path("address"),
              fmt::format("family differs from source_address {}", c->source_address->to_string()));
    }
    c->endpoints.push_back(ep);
  }
  return c;
}

std::shared_ptr<proxy::ListenerConfig> read_listener(YamlReader& r, const YAML::Node& node,
                                                     const std::string& path) {
  auto l = std::make_shared<proxy::ListenerConfig>();
  MapReader m(r, node, path,
              {"name", "address", "protocol", "cluster", "backlog", "max_connections",
               "socket_options", "idle_timeout", "max_duration", "splice"});
  if (!m.ok()) return l;
  read_name(r, m, l->name);
  if (m.require("address")) read_address(r, m, "address", l->address, false);
  if (m.has("protocol")) {
    std::string p;
    m.read_string("protocol", p);
    if (p != "tcp") {
      r.error(m.get("protocol"), m.path("protocol"),
              fmt::format("expected one of: tcp, got '{}'", p));
    }
  }
  if (m.require("cluster")) m.read_string("cluster", l->cluster);
  m.read_int("backlog", l->backlog, 1, 65535);
  m.read_uint("max_connections", l->max_connections, 0, 10'000'000);
  if (m.has("socket_options")) {
    read_socket_options(r, m.get("socket_options"), m.path("socket_options"), true,
                        l->socket_options);
  }
  m.read_duration("idle_timeout", l->idle_timeout, kZero, kDay * 7);
  m.read_duration("max_duration", l->max_duration, kZero, kDay * 7);
  m.read_bool("splice", l->splice);
  return l;
}

Result<std::shared_ptr<const Config>> build(const YAML::Node& root, YamlReader& r) {
  auto cfg = std::make_shared<Config>();
  MapReader top(r, root, "", {"workers", "log_level", "drain_timeout", "listeners", "clusters"});
  if (top.ok()) {
    top.read_uint("workers", cfg->workers, 1, Config::kMaxWorkers);
    if (top.has("log_level")) {
      std::string level;
      top.read_string("log_level", level);
      if (!level.empty() && !log::parse_level(level, &cfg->log_level)) {
        r.error(top.get("log_level"), "log_level",
                fmt::format("expected one of: debug, info, warn, error, got '{}'", level));
      }
    }
    top.read_duration("drain_timeout", cfg->drain_timeout, kZero, hours(1));

    std::map<std::string, YAML::Mark> cluster_names;
    bool every_cluster_named = true;  // else "no cluster named" would only echo that error
    if (top.has("clusters")) {
      YAML::Node list = top.get("clusters");
      if (!list.IsSequence()) {
        r.error(list, "clusters", "expected a list of clusters");
      } else {
        for (size_t i = 0; i < list.size(); ++i) {
          std::string path = fmt::format("clusters[{}]", i);
          auto c = read_cluster(r, list[i], path);
          if (c->name.empty()) {
            every_cluster_named = false;
            continue;
          }
          auto [it, fresh] = cluster_names.emplace(c->name, list[i]["name"].Mark());
          if (!fresh) {
            r.error(list[i]["name"], path + ".name",
                    fmt::format("duplicate cluster name '{}' (first defined at line {})", c->name,
                                it->second.line + 1));
          }
          cfg->clusters.push_back(std::move(c));
        }
      }
    }

    std::map<std::string, YAML::Mark> listener_names;
    std::map<std::string, std::string> addresses;
    if (top.require("listeners")) {
      YAML::Node list = top.get("listeners");
      if (!list.IsSequence() || list.size() == 0) {
        r.error(list, "listeners", "expected a non-empty list of listeners");
      } else {
        for (size_t i = 0; i < list.size(); ++i) {
          std::string path = fmt::format("listeners[{}]", i);
          auto l = read_listener(r, list[i], path);
          if (!l->name.empty()) {
            auto [it, fresh] = listener_names.emplace(l->name, list[i]["name"].Mark());
            if (!fresh) {
              r.error(list[i]["name"], path + ".name",
                      fmt::format("duplicate listener name '{}' (first defined at line {})",
                                  l->name, it->second.line + 1));
            }
          }
          if (l->address.length() != 0 && l->address.port() != 0) {
            auto [it, fresh] = addresses.emplace(l->address.to_string(), l->name);
            if (!fresh) {
              r.error(list[i]["address"], path + ".address",
                      fmt::format("{} is already used by listener '{}'", l->address.to_string(),
                                  it->second));
            }
          }
          if (!l->cluster.empty() && every_cluster_named && !cluster_names.count(l->cluster)) {
            std::string known;
            for (const auto& [name, mark] : cluster_names) {
              known += known.empty() ? name : ", " + name;
            }
            r.error(list[i]["cluster"], path + ".cluster",
                    fmt::format("no cluster named '{}' (defined clusters: {})", l->cluster,
                                known.empty() ? "none" : known));
          }
          cfg->listeners.push_back(std::move(l));
        }
      }
    }
  }
  if (!r.errors().empty()) {
    std::string all;
    for (const auto& e : r.errors()) all += (all.empty() ? "" : "\n") + e;
    return Status::error(all);
  }
  if (cfg->workers == 0) {
    unsigned cores = std::thread::hardware_concurrency();
    cfg->workers = cores == 0 ? 1 : std::min(cores, Config::kMaxWorkers);
  }
  return std::shared_ptr<const Config>(std::move(cfg));
}

}  // namespace

const upstream::ClusterConfig* Config::find_cluster(std::string_view name) const {
  for (const auto& c : clusters) {
    if (c->name == name) return c.get();
  }
  return nullptr;
}

Result<std::shared_ptr<const Config>> load_string(const std::string& yaml,
                                                  const std::string& file_name) {
  YamlReader r(file_name);
  YAML::Node root;
  try {
    root = YAML::Load(yaml);
  } catch (const YAML::Exception& e) {
    return Status::error(fmt::format("{}: invalid YAML: {}", r.location(e.mark), e.msg));
  }
  if (!root.IsDefined() || root.IsNull()) {
    return Status::error(fmt::format("{}: the configuration is empty", file_name));
  }
  try {
    return build(root, r);
  } catch (const YAML::Exception& e) {
    return Status::error(fmt::format("{}: {}", r.location(e.mark), e.msg));
  }
}

Result<std::shared_ptr<const Config>> load_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) return Status::error(fmt::format("{}: cannot open: {}", path, std::strerror(errno)));
  std::stringstream ss;
  ss << in.rdbuf();
  return load_string(ss.str(), path);
}

}  // namespace sluice::config
