// What etcd v3's JSON gateway speaks (proto3's JSON mapping): bytes fields as standard base64,
// int64 fields as JSON strings. Shared by the etcd source and the self-registration.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace sluice::discovery {

std::string b64_encode(std::string_view in);
// Standard base64 (as the gateway writes bytes fields); nullopt when it is not.
std::optional<std::string> b64_decode(std::string_view in);

// An int64 field (a string, or a number); 0 when absent, not a number, not positive, or
// INT64_MAX (revisions and lease ids are positive and sluice adds one to revisions).
int64_t int_field(const nlohmann::json& j, const char* name);
bool bool_field(const nlohmann::json& j, const char* name);
std::string string_field(const nlohmann::json& j, const char* name);

// etcd's words for a token it does not know (expired, or lost when the member restarted) or a
// call that carried none.
bool is_auth_error(std::string_view text);
// The request body of POST /v3/auth/authenticate.
std::string authenticate_request(const std::string& username, const std::string& password);
// The token of an authenticate answer, or an error: none, or one with control characters (it
// goes into a header line, where they would inject headers).
std::optional<std::string> token_of(const nlohmann::json& answer, std::string* error);
// The header line that carries `token` ("" without one).
std::string auth_header(const std::string& token);

}  // namespace sluice::discovery
