#include "http/http2/request_fields.h"

#include <charconv>
#include <cstring>

namespace sluice::http::http2 {

namespace {

// RFC 9113 §8.2.2: connection-specific fields have no place in HTTP/2; TE may only say
// "trailers". Fields the Connection header names are hop-by-hop too (RFC 9110 §7.6.1).
bool dropped(const HeaderMap& fields, bool has_connection, const Header& h) {
  std::string_view n = h.name;
  if (n.empty() || n[0] == ':' || iequals(n, "host") || iequals(n, "connection") ||
      iequals(n, "keep-alive") || iequals(n, "proxy-connection") ||
      iequals(n, "transfer-encoding") || iequals(n, "upgrade")) {
    return true;
  }
  if (iequals(n, "te")) {
    std::string_view v = h.value;
    while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
    while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
    return !iequals(v, "trailers");
  }
  return has_connection && fields.has_token("connection", n);
}

// One set of buffers per worker thread.
NvList& nv_scratch() {
  thread_local NvList s;
  return s;
}

nghttp2_nv make_nv(std::string_view name, std::string_view value) {
  return nghttp2_nv{reinterpret_cast<uint8_t*>(const_cast<char*>(name.data())),
                    reinterpret_cast<uint8_t*>(const_cast<char*>(value.data())), name.size(),
                    value.size(), NGHTTP2_NV_FLAG_NONE};
}

// Appends `fields` (names lowercased, RFC 9113 §8.2) to the scratch's nv list.
void add_fields(NvList& s, const HeaderMap& fields) {
  bool has_connection = fields.get("connection") != nullptr;
  for (const auto& h : fields) {
    if (dropped(fields, has_connection, h)) continue;
    size_t at = s.names.size();
    for (char c : h.name) {
      s.names.push_back(c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c);
    }
    s.nv.push_back(make_nv({s.names.data() + at, h.name.size()}, h.value));
  }
}

NvList& start_nv(const HeaderMap& fields) {
  NvList& s = nv_scratch();
  s.nv.clear();
  s.names.clear();
  size_t total = 0;
  for (const auto& h : fields) total += h.name.size();
  // Reserved up front: the nv entries point into `names`.
  s.names.reserve(total);
  return s;
}

}  // namespace

const NvList& request_nv(const MessageHead& head, std::string_view scheme) {
  NvList& s = start_nv(head.headers);
  std::string_view target = head.target;
  std::string_view authority;
  if (const std::string* host = head.headers.get("host")) authority = *host;
  if (head.method == "CONNECT") {
    // RFC 9113 §8.5: the target (authority-form) is :authority; no :scheme, no :path.
    s.nv.push_back(make_nv(":method", head.method));
    s.nv.push_back(make_nv(":authority", target));
  } else {
    // An absolute-form target carries its own authority (RFC 9112 §3.2.2).
    if (size_t sep = target.find("://");
        !target.empty() && sep != std::string_view::npos && target.front() != '/') {
      std::string_view rest = target.substr(sep + 3);
      size_t slash = rest.find_first_of("/?");
      if (authority.empty()) authority = rest.substr(0, slash);
      target = slash == std::string_view::npos ? std::string_view("/") : rest.substr(slash);
      if (target[0] == '?') {
        // "http://h?q": the path is empty, and :path "/?q" (RFC 9113 §8.3.1).
        s.path.resize(target.size() + 1);
        s.path[0] = '/';
        std::memcpy(s.path.data() + 1, target.data(), target.size());
        target = s.path;
      }
    }
    if (target.empty()) target = "/";
    s.nv.push_back(make_nv(":method", head.method));
    s.nv.push_back(make_nv(":scheme", scheme));
    if (!authority.empty()) s.nv.push_back(make_nv(":authority", authority));
    s.nv.push_back(make_nv(":path", target));
  }
  add_fields(s, head.headers);
  if (head.content_length && !head.headers.get("content-length")) {
    auto [end, ec] = std::to_chars(s.content_length, s.content_length + sizeof s.content_length,
                                   *head.content_length);
    (void)ec;  // 24 bytes hold any uint64_t
    s.nv.push_back(
        make_nv("content-length", {s.content_length, static_cast<size_t>(end - s.content_length)}));
  }
  return s;
}

const NvList& trailer_nv(const HeaderMap& trailers) {
  NvList& s = start_nv(trailers);
  add_fields(s, trailers);
  return s;
}

bool left_out(const HeaderMap& fields, const Header& field) {
  return dropped(fields, fields.get("connection") != nullptr, field);
}

}  // namespace sluice::http::http2
