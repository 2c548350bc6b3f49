#include "discovery/etcd_json.h"

#include <algorithm>
#include <array>
#include <cstdint>

namespace sluice::discovery {

namespace {
constexpr char kB64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

}  // namespace

std::string b64_encode(std::string_view in) {
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    uint32_t v = (uint8_t(in[i]) << 16) | (uint8_t(in[i + 1]) << 8) | uint8_t(in[i + 2]);
    for (int s = 18; s >= 0; s -= 6) out += kB64[(v >> s) & 63];
  }
  if (i + 1 == in.size()) {
    uint32_t v = uint8_t(in[i]) << 16;
    out += kB64[(v >> 18) & 63];
    out += kB64[(v >> 12) & 63];
    out += "==";
  } else if (i + 2 == in.size()) {
    uint32_t v = (uint8_t(in[i]) << 16) | (uint8_t(in[i + 1]) << 8);
    out += kB64[(v >> 18) & 63];
    out += kB64[(v >> 12) & 63];
    out += kB64[(v >> 6) & 63];
    out += '=';
  }
  return out;
}

std::optional<std::string> b64_decode(std::string_view in) {
  static const auto kValue = [] {
    std::array<int8_t, 256> t{};
    t.fill(-1);
    for (int i = 0; i < 64; ++i) t[static_cast<unsigned char>(kB64[i])] = static_cast<int8_t>(i);
    return t;
  }();
  std::string out;
  out.reserve(in.size() / 4 * 3);
  uint32_t v = 0;
  int bits = 0;
  for (char c : in) {
    if (c == '=') break;
    int8_t d = kValue[static_cast<unsigned char>(c)];
    if (d < 0) return std::nullopt;
    v = (v << 6) | static_cast<uint32_t>(d);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((v >> bits) & 0xff);
    }
  }
  return out;
}

int64_t int_field(const nlohmann::json& j, const char* name) {
  auto it = j.find(name);
  if (it == j.end()) return 0;
  int64_t v = 0;
  if (it->is_string()) {
    try {
      v = std::stoll(it->get<std::string>());
    } catch (...) {
      return 0;
    }
  } else if (it->is_number_integer()) {
    v = it->get<int64_t>();
  }
  // Revisions are positive and sluice adds one to them: anything else reads as absent.
  return v > 0 && v < INT64_MAX ? v : 0;
}

bool bool_field(const nlohmann::json& j, const char* name) {
  auto it = j.find(name);
  return it != j.end() && it->is_boolean() && it->get<bool>();
}

std::string string_field(const nlohmann::json& j, const char* name) {
  auto it = j.find(name);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

bool is_auth_error(std::string_view text) {
  return text.find("invalid auth token") != std::string_view::npos ||
         text.find("user name is empty") != std::string_view::npos;
}

std::string authenticate_request(const std::string& username, const std::string& password) {
  return nlohmann::json{{"name", username}, {"password", password}}.dump();
}

std::optional<std::string> token_of(const nlohmann::json& answer, std::string* error) {
  std::string token = string_field(answer, "token");
  if (token.empty()) {
    *error = "authenticate answered no token";
    return std::nullopt;
  }
  if (std::any_of(token.begin(), token.end(),
                  [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; })) {
    *error = "authenticate answered a token with control characters";
    return std::nullopt;
  }
  return token;
}

std::string auth_header(const std::string& token) {
  return token.empty() ? std::string() : "Authorization: " + token + "\r\n";
}

}  // namespace sluice::discovery
