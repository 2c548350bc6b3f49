#include <fmt/format.h>

#include "config/yaml_map.h"

namespace sluice::config {

void read_name(MapReader& m, std::string& out) {
  if (!m.require("name")) return;
  m.read_string("name", out);
}

void read_address(YamlReader& r, MapReader& m, const char* key, net::Address& out) {
  if (!m.has(key)) return;
  auto text = m.scalar(key, "an address such as 127.0.0.1:8080 or [::1]:8080");
  if (!text) return;
  auto a = net::Address::parse(*text);
  if (!a) {
    r.error(m.get(key), m.path(key), a.status().message());
    return;
  }
  out = *a;
}

void read_socket_options(YamlReader& r, const YAML::Node& node, const std::string& path,
                         bool listener, net::SocketOptions& out) {
  MapReader m(r, node, path,
              {"tcp_nodelay", "keepalive", "fastopen", "congestion", "send_buffer",
               "receive_buffer", "quickack", "notsent_lowat", "defer_accept"});
  if (!m.ok()) return;
  m.read_bool("tcp_nodelay", out.tcp_nodelay);
  m.read_bool("quickack", out.quickack);
  if (m.has("keepalive")) {
    MapReader k(r, m.get("keepalive"), m.path("keepalive"), {"idle", "interval", "count"});
    if (k.ok()) {
      net::KeepaliveOptions ka;
      k.read_duration("idle", ka.idle);
      k.read_duration("interval", ka.interval);
      k.read_int("count", ka.count);
      out.keepalive = ka;
    }
  }
  m.read_string("congestion", out.congestion);
  for (auto [key, field] : {std::pair{"send_buffer", &out.send_buffer},
                            std::pair{"receive_buffer", &out.receive_buffer}}) {
    m.read_size(key, *field);
    // 0 is the struct's "kernel default"; written, it is below the smallest buffer.
    if (m.has(key) && m.get(key).IsScalar() && parse_size(m.get(key).Scalar()) == 0u) {
      r.error(m.get(key), m.path(key),
              fmt::format("expected a size from 4096 to {} bytes, got {}", 256ull << 20,
                          m.get(key).Scalar()));
    }
  }
  m.read_size("notsent_lowat", out.notsent_lowat);
  if (listener) {
    m.read_uint("fastopen", out.fastopen_queue);
    m.read_duration("defer_accept", out.defer_accept);
  } else {
    if (m.has("defer_accept")) {
      r.error(m.get("defer_accept"), m.path("defer_accept"), "only for listeners");
    }
    m.read_bool("fastopen", out.fastopen_connect);
  }
}

std::vector<std::string> read_string_list(YamlReader& r, MapReader& m, const char* key) {
  std::vector<std::string> out;
  if (!m.has(key)) return out;
  YAML::Node list = m.get(key);
  if (!list.IsSequence()) {
    r.error(list, m.path(key), "expected a list of strings");
    return out;
  }
  for (size_t i = 0; i < list.size(); ++i) {
    if (!list[i].IsScalar()) {
      r.error(list[i], fmt::format("{}[{}]", m.path(key), i), "expected a string");
      out.emplace_back();  // keeps the indexes of those after it
      continue;
    }
    out.push_back(list[i].Scalar());
  }
  return out;
}

int read_choice(YamlReader& r, MapReader& m, const char* key,
                std::initializer_list<const char*> choices) {
  return read_choice(r, m, key, std::span<const char* const>(choices.begin(), choices.size()));
}

int read_choice(YamlReader& r, MapReader& m, const char* key,
                std::span<const char* const> choices) {
  if (!m.has(key)) return -1;
  std::string v;
  m.read_string(key, v);
  int i = 0;
  std::string list;
  for (const char* c : choices) {
    if (v == c) return i;
    list += (i++ ? ", " : "");
    list += c;
  }
  r.error(m.get(key), m.path(key), fmt::format("expected one of: {}, got '{}'", list, v));
  return -1;
}

void read_etcd_endpoints(YamlReader& r, MapReader& m, std::vector<net::Address>& out) {
  if (!m.require("endpoints")) return;
  YAML::Node list = m.get("endpoints");
  if (!list.IsSequence() || list.size() == 0) {
    r.error(list, m.path("endpoints"), "expected a list of addresses such as 127.0.0.1:2379");
    return;
  }
  for (size_t i = 0; i < list.size(); ++i) {
    std::string text = list[i].IsScalar() ? list[i].Scalar() : "";
    auto a = net::Address::parse(text);
    if (!a || a->port() == 0) {
      r.error(list[i], fmt::format("{}[{}]", m.path("endpoints"), i),
              fmt::format("'{}': expected IP:PORT such as 127.0.0.1:2379", text));
      continue;
    }
    out.push_back(*a);
  }
}

}  // namespace sluice::config
