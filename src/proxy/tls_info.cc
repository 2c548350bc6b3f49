#include "proxy/tls_info.h"

#include "base/json.h"

namespace sluice::proxy {
namespace {

// A value inside the header: quoted, with '"' and '\' escaped, when it holds a separator.
void append_quoted(std::string_view v, std::string& out) {
  out += '"';
  for (char c : v) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  out += '"';
}

// A SAN value as it goes into the header: quoted when it holds a separator of the format;
// false for one with control characters, which is left out (a CA signed it, but no header
// may carry it).
bool append_value(std::string_view v, std::string& out) {
  bool quote = false;
  for (unsigned char c : v) {
    if (c < 0x20 || c == 0x7f) return false;
    if (c == ';' || c == ',' || c == '"' || c == '=' || c == '\\' || c == ' ') quote = true;
  }
  if (quote) {
    append_quoted(v, out);
  } else {
    out += v;
  }
  return true;
}

}  // namespace

std::string client_cert_header(const tls::PeerIdentity& id) {
  if (!id.present || !id.verified) return {};
  std::string out = "Hash=" + id.sha256;
  out += ";Subject=";
  append_quoted(id.subject, out);
  for (const auto& [key, values] : {std::pair{";URI=", &id.uris}, std::pair{";DNS=", &id.dns}}) {
    for (const auto& v : *values) {
      size_t mark = out.size();
      out += key;
      if (!append_value(v, out)) out.resize(mark);
    }
  }
  // The subject is RFC 2253-escaped by OpenSSL; still, nothing that could end a header.
  for (unsigned char c : out) {
    if (c < 0x20 || c == 0x7f) return {};
  }
  return out;
}

DownstreamTls describe_tls(const tls::Session& s, Duration handshake) {
  DownstreamTls t;
  t.version = s.version();
  t.cipher = s.cipher();
  t.sni = std::string(s.sni());
  t.alpn = std::string(s.alpn());
  t.resumed = s.resumed();
  t.early_data = s.early_data_accepted();
  tls::PeerIdentity id = s.peer_identity();
  if (id.present && id.verified) t.client_subject = id.subject;
  t.client_cert_header = client_cert_header(id);
  t.handshake = handshake;
  return t;
}

void append_tls_json(const DownstreamTls& t, std::string& line) {
  line += ",\"tls\":{\"version\":";
  append_json_string(t.version, line);
  line += ",\"cipher\":";
  append_json_string(t.cipher, line);
  line += ",\"sni\":";
  append_json_string(t.sni, line);
  line += ",\"alpn\":";
  append_json_string(t.alpn, line);
  line += t.resumed ? ",\"resumed\":true" : ",\"resumed\":false";
  line += t.early_data ? ",\"early_data\":true" : ",\"early_data\":false";
  if (!t.client_subject.empty()) {
    line += ",\"client\":";
    append_json_string(t.client_subject, line);
  }
  line += '}';
}

}  // namespace sluice::proxy
