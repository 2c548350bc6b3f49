// YAML → the TLS settings of a listener (tls::ServerConfig) and of a cluster
// (tls::ClientConfig).
#include <fmt/format.h>

#include "config/yaml_map.h"

namespace sluice::config {
namespace {

void read_versions(YamlReader& r, MapReader& m, tls::Version& min, tls::Version& max) {
  int v = read_choice(r, m, "min_version", tls::kVersionNames);
  if (v >= 0) min = static_cast<tls::Version>(v);
  v = read_choice(r, m, "max_version", tls::kVersionNames);
  if (v >= 0) max = static_cast<tls::Version>(v);
}

void read_certificates(YamlReader& r, MapReader& m, std::vector<tls::CertificateConfig>& out) {
  if (!m.require("certificates")) return;
  YAML::Node list = m.get("certificates");
  if (!list.IsSequence() || list.size() == 0) {
    r.error(list, m.path("certificates"),
            "expected a non-empty list of {certificate_chain, private_key}");
    return;
  }
  for (size_t i = 0; i < list.size(); ++i) {
    MapReader c(r, list[i], fmt::format("{}[{}]", m.path("certificates"), i),
                {"certificate_chain", "private_key", "ocsp_response"});
    tls::CertificateConfig cert;
    if (c.ok()) {
      if (c.require("certificate_chain"))
        c.read_string("certificate_chain", cert.certificate_chain);
      if (c.require("private_key")) c.read_string("private_key", cert.private_key);
      c.read_string("ocsp_response", cert.ocsp_response);
    }
    out.push_back(std::move(cert));
  }
}

}  // namespace

void read_server_tls(YamlReader& r, const YAML::Node& node, const std::string& path,
                     tls::ServerConfig& t) {
  MapReader m(r, node, path,
              {"certificates", "alpn", "min_version", "max_version", "require_sni",
               "handshake_timeout", "session_tickets", "ticket_key_rotation", "ticket_key_files",
               "early_data", "client_ca", "verify", "verify_depth", "ktls"});
  if (!m.ok()) return;
  read_certificates(r, m, t.certificates);
  t.alpn = read_string_list(r, m, "alpn");
  read_versions(r, m, t.min_version, t.max_version);
  m.read_bool("require_sni", t.require_sni);
  m.read_duration("handshake_timeout", t.handshake_timeout);
  m.read_bool("session_tickets", t.session_tickets);
  m.read_duration("ticket_key_rotation", t.ticket_key_rotation);
  t.ticket_key_files = read_string_list(r, m, "ticket_key_files");
  if (m.has("early_data")) {
    MapReader e(r, m.get("early_data"), m.path("early_data"),
                {"enabled", "reject_unsafe", "max_early_data"});
    if (e.ok()) {
      e.read_bool("enabled", t.early_data.enabled);
      e.read_bool("reject_unsafe", t.early_data.reject_unsafe);
      e.read_size("max_early_data", t.early_data.max_early_data);
      for (const char* key : {"reject_unsafe", "max_early_data"}) {
        if (e.has(key) && !t.early_data.enabled) {
          r.warning(e.get(key), e.path(key), "not used: early_data.enabled is false");
        }
      }
    }
  }
  m.read_string("client_ca", t.client_ca);
  int verify = read_choice(r, m, "verify", tls::kClientVerifyNames);
  if (verify >= 0) t.verify = static_cast<tls::ClientVerify>(verify);
  m.read_uint("verify_depth", t.verify_depth);
  m.read_bool("ktls", t.ktls);
}

void read_client_tls(YamlReader& r, const YAML::Node& node, const std::string& path,
                     tls::ClientConfig& t) {
  MapReader m(r, node, path,
              {"verify", "ca", "sni", "alpn", "certificate_chain", "private_key", "min_version",
               "max_version", "session_resumption", "ktls"});
  if (!m.ok()) return;
  m.read_bool("verify", t.verify);
  m.read_string("ca", t.ca);
  m.read_string("sni", t.sni);
  t.alpn = read_string_list(r, m, "alpn");
  m.read_string("certificate_chain", t.certificate_chain);
  m.read_string("private_key", t.private_key);
  read_versions(r, m, t.min_version, t.max_version);
  m.read_bool("session_resumption", t.session_resumption);
  m.read_bool("ktls", t.ktls);
}

}  // namespace sluice::config
