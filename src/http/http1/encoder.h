// HTTP/1.1 serialisation: request and response heads, and chunked body framing.
// Functions append to a std::string the caller reuses. Any thread.
#pragma once

#include <string>
#include <string_view>

#include "http/message.h"

namespace sluice::http::http1 {

void encode_request_head(const MessageHead& head, std::string& out);
// Responses always go out as HTTP/1.1 (RFC 9110 §6.2: our own version, whatever the client's).
void encode_response_head(const MessageHead& head, std::string& out);
// One chunk (RFC 9112 §7.1); an empty `data` writes nothing (the last chunk is separate).
void encode_chunk(std::string_view data, std::string& out);
void encode_last_chunk(const HeaderMap& trailers, std::string& out);

}  // namespace sluice::http::http1
