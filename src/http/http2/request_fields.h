// How an HTTP/1-shaped request head becomes an HTTP/2 header block (RFC 9113 §8.2, §8.3.1):
// :method, :scheme, :authority (from Host, or an absolute-form target) and :path first, then
// the fields with their names lowercased and the connection-specific ones left out. Pure
// helpers for the client codec; the lists they return point into the head (or trailers)
// they were built from and into per-thread scratch storage, valid until the next call on
// this thread. nghttp2 copies them when a frame is submitted.
#pragma once

#include <nghttp2/nghttp2.h>

#include <string>
#include <string_view>
#include <vector>

#include "http/message.h"

namespace sluice::http::http2 {

struct NvList {
  std::vector<nghttp2_nv> nv;
  std::string names;  // lowercased field names
  std::string path;   // a :path the target does not hold as such
  char content_length[24] = {};
};

// RFC 9113 §8.2.2: whether `field` of `fields` stays out of an HTTP/2 request: Host (it is
// :authority), Connection, Keep-Alive, Proxy-Connection, Transfer-Encoding, Upgrade, TE
// other than "trailers", and the fields Connection names (RFC 9110 §7.6.1).
bool left_out(const HeaderMap& fields, const Header& field);

// The request's pseudo-header fields and fields. A CONNECT (RFC 9113 §8.5) carries its
// target as :authority, without :scheme and :path; content_length becomes content-length
// when the head has none.
const NvList& request_nv(const MessageHead& head, std::string_view scheme);
// A trailer section's fields.
const NvList& trailer_nv(const HeaderMap& trailers);

}  // namespace sluice::http::http2
