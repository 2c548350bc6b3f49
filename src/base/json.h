// JSON text helpers shared by the access log, the admin endpoint and `sluice probe`.
#pragma once

#include <string>
#include <string_view>

namespace sluice {

// Appends `s` as a JSON string (RFC 8259 §7): quoted, with quotes, backslashes and control
// characters escaped. Valid UTF-8 passes through; each byte that is not part of a valid
// sequence (obs-text in a header) is written as \u00XX, the Latin-1 character of the same
// value, so the output always parses whatever a client sent.
void append_json_string(std::string_view s, std::string& out);

}  // namespace sluice
