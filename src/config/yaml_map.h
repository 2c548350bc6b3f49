// The YAML → struct mapping of each configuration block (map_*.cc). Each function fills its
// module's own config struct from one YAML node and reports what the text cannot say (not
// a mapping, unknown key, not an integer, not an address, ...) at its location; the rules
// about the values are the struct's validate(), which config.cc runs afterwards.
#pragma once

#include <yaml-cpp/yaml.h>

#include <initializer_list>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "bgp/config.h"
#include "config/yaml_reader.h"
#include "discovery/registration_config.h"
#include "dns/resolver.h"
#include "net/address.h"
#include "net/socket_options.h"
#include "proxy/listener_config.h"
#include "tls/config.h"
#include "upstream/cluster.h"

namespace sluice::config {

// map_common.cc: pieces several blocks share.
void read_name(MapReader& m, std::string& out);
void read_address(YamlReader& r, MapReader& m, const char* key, net::Address& out);
// `listener` selects which Fast Open form applies: a queue length on listeners, an on/off
// switch for upstream connects.
void read_socket_options(YamlReader& r, const YAML::Node& node, const std::string& path,
                         bool listener, net::SocketOptions& out);
std::vector<std::string> read_string_list(YamlReader& r, MapReader& m, const char* key);
// `endpoints:` of an etcd block: a non-empty list of IP:PORT.
void read_etcd_endpoints(YamlReader& r, MapReader& m, std::vector<net::Address>& out);
// One of a fixed set of words; reports the choices otherwise. Returns the index, or -1.
int read_choice(YamlReader& r, MapReader& m, const char* key,
                std::initializer_list<const char*> choices);
int read_choice(YamlReader& r, MapReader& m, const char* key, std::span<const char* const> choices);

// map_listener.cc
std::shared_ptr<proxy::ListenerConfig> read_listener(YamlReader& r, const YAML::Node& node,
                                                     const std::string& path);
// map_cluster.cc
std::shared_ptr<upstream::ClusterConfig> read_cluster(YamlReader& r, const YAML::Node& node,
                                                      const std::string& path);
void read_dns(YamlReader& r, const YAML::Node& node, dns::ResolverConfig& d);
// map_bgp.cc
std::shared_ptr<bgp::BgpConfig> read_bgp(YamlReader& r, const YAML::Node& node);
std::shared_ptr<discovery::RegistrationConfig> read_registration(YamlReader& r,
                                                                 const YAML::Node& node);
// map_tls.cc
void read_server_tls(YamlReader& r, const YAML::Node& node, const std::string& path,
                     tls::ServerConfig& out);
void read_client_tls(YamlReader& r, const YAML::Node& node, const std::string& path,
                     tls::ClientConfig& out);

}  // namespace sluice::config
