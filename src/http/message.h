// MessageHead: the start line and header section of an HTTP/1.x request or response, with
// the framing facts the parser established. Plain value type.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "http/headers.h"

namespace sluice::http {

struct MessageHead {
  // Requests.
  std::string method;
  std::string target;
  // Responses.
  int status = 0;
  std::string reason;

  int version_minor = 1;  // HTTP/1.<minor>
  HeaderMap headers;

  // Framing, as parsed.
  bool chunked = false;
  std::optional<uint64_t> content_length;
  bool keep_alive = true;  // what the message itself asks for
  bool upgrade = false;    // an Upgrade the parser accepted (101 or CONNECT follows)
};

// RFC 9110 §9.2.2.
bool is_idempotent(const std::string& method);
const char* reason_phrase(int status);

}  // namespace sluice::http
