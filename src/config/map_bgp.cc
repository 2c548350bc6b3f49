// The `bgp:` block → bgp::BgpConfig.
#include <arpa/inet.h>

#include <fmt/format.h>

#include "config/yaml_map.h"

namespace sluice::config {
namespace {

// An IP literal, with or without a port ("127.0.0.2", "127.0.0.2:1790", "[::1]:179").
void read_ip(YamlReader& r, MapReader& m, const char* key, uint16_t default_port,
             std::optional<net::Address>& out) {
  if (!m.has(key)) return;
  auto text = m.scalar(key, "an IP address such as 192.0.2.1 or [2001:db8::1]:179");
  if (!text) return;
  auto a = net::Address::parse_ip(*text, default_port);
  if (!a) a = net::Address::parse(*text);
  if (!a) {
    r.error(m.get(key), m.path(key),
            fmt::format("expected an IP address such as 192.0.2.1 or [2001:db8::1]:179, got '{}'",
                        *text));
    return;
  }
  out = *a;
}

void read_peer(YamlReader& r, const YAML::Node& node, const std::string& path, bgp::PeerConfig& p) {
  MapReader m(
      r, node, path,
      {"address", "port", "local_address", "remote_as", "hold_time", "password", "connect_retry"});
  if (!m.ok()) return;
  std::optional<net::Address> address;
  if (m.require("address")) read_ip(r, m, "address", bgp::PeerConfig::kDefaultPort, address);
  if (address) {
    p.address = *address;
    if (m.has("port")) {
      uint32_t port = 0;
      m.read_uint("port", port);
      if (port == 0 || port > 65535) {
        r.error(m.get("port"), m.path("port"), "expected a port from 1 to 65535");
      } else {
        p.address.set_port(static_cast<uint16_t>(port));
      }
    }
  }
  read_ip(r, m, "local_address", 0, p.local_address);
  if (p.local_address) p.local_address->set_port(0);
  if (m.require("remote_as")) m.read_uint("remote_as", p.remote_as);
  m.read_duration("hold_time", p.hold_time);
  m.read_string("password", p.password);
  m.read_duration("connect_retry", p.connect_retry);
}

void read_announce(YamlReader& r, const YAML::Node& node, const std::string& path,
                   bgp::AnnounceConfig& a) {
  MapReader m(r, node, path, {"prefix", "when", "communities", "med", "next_hop"});
  if (!m.ok()) return;
  if (m.require("prefix")) {
    if (auto text = m.scalar("prefix", "a prefix such as 192.0.2.1/32")) {
      auto p = bgp::Prefix::parse(*text);
      if (!p) {
        r.error(m.get("prefix"), m.path("prefix"), p.status().message());
      } else {
        a.prefix = *p;
      }
    }
  }
  if (m.require("when")) {
    MapReader w(r, m.get("when"), m.path("when"), {"listener", "cluster", "min_healthy"});
    if (w.ok()) {
      if (w.has("listener") == w.has("cluster")) {
        r.error(m.get("when"), m.path("when"), "expected exactly one of 'listener' or 'cluster'");
      } else if (w.has("listener")) {
        a.source = bgp::AnnounceConfig::Source::kListener;
        w.read_string("listener", a.target);
      } else {
        w.read_string("cluster", a.target);
      }
      if (w.has("min_healthy")) {
        if (auto text = w.scalar("min_healthy", "a count (2) or a percentage (50%)")) {
          std::string t = *text;
          bool percent = !t.empty() && t.back() == '%';
          if (percent) t.pop_back();
          char* end = nullptr;
          unsigned long v = t.empty() ? 0 : std::strtoul(t.c_str(), &end, 10);
          if (t.empty() || *end != '\0' || v == 0 || v > (percent ? 100ul : 4096ul)) {
            r.error(w.get("min_healthy"), w.path("min_healthy"),
                    fmt::format("expected a count from 1 to 4096 or a percentage from 1% to "
                                "100%, got '{}'",
                                *text));
          } else {
            a.min_healthy = static_cast<uint32_t>(v);
            a.min_healthy_percent = percent;
          }
        }
      }
    }
  }
  if (m.has("communities")) {
    YAML::Node list = m.get("communities");
    if (!list.IsSequence()) {
      r.error(list, m.path("communities"), "expected a list of communities such as 65000:100");
    } else {
      for (size_t i = 0; i < list.size(); ++i) {
        std::string at = fmt::format("{}[{}]", m.path("communities"), i);
        auto c = list[i].IsScalar() ? bgp::parse_community(list[i].Scalar()) : std::nullopt;
        if (!c) {
          r.error(list[i], at,
                  "expected a community such as 65000:100 (each part 0 to 65535) or "
                  "graceful_shutdown, no_export, no_advertise");
        } else {
          a.communities.push_back(*c);
        }
      }
    }
  }
  if (m.has("med")) {
    uint32_t med = 0;
    m.read_uint("med", med);
    a.med = med;
  }
  read_ip(r, m, "next_hop", 0, a.next_hop);
}

}  // namespace

std::shared_ptr<bgp::BgpConfig> read_bgp(YamlReader& r, const YAML::Node& node) {
  auto b = std::make_shared<bgp::BgpConfig>();
  MapReader m(r, node, "bgp",
              {"local_as", "router_id", "peers", "announce", "hold_down", "shutdown_delay"});
  if (!m.ok()) return b;
  if (m.require("local_as")) m.read_uint("local_as", b->local_as);
  if (m.require("router_id")) {
    if (auto text = m.scalar("router_id", "an IPv4 address such as 192.0.2.10")) {
      in_addr id{};
      if (::inet_pton(AF_INET, text->c_str(), &id) != 1) {
        r.error(m.get("router_id"), m.path("router_id"),
                fmt::format("expected an IPv4 address such as 192.0.2.10, got '{}'", *text));
        r.failed("bgp.router_id");
      } else {
        b->router_id = ntohl(id.s_addr);
        b->router_id_text = *text;
      }
    }
  }
  m.read_duration("hold_down", b->hold_down);
  m.read_duration("shutdown_delay", b->shutdown_delay);
  for (const char* key : {"peers", "announce"}) {
    if (!m.require(key)) continue;
    YAML::Node list = m.get(key);
    if (!list.IsSequence() || list.size() == 0) {
      r.error(list, m.path(key), fmt::format("expected a non-empty list of {}", key));
      r.failed(m.path(key));
      continue;
    }
    for (size_t i = 0; i < list.size(); ++i) {
      std::string at = fmt::format("bgp.{}[{}]", key, i);
      if (std::string_view(key) == "peers") {
        read_peer(r, list[i], at, b->peers.emplace_back());
      } else {
        read_announce(r, list[i], at, b->announce.emplace_back());
      }
    }
  }
  return b;
}

}  // namespace sluice::config
