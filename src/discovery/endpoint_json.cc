#include "discovery/endpoint_json.h"

#include <set>
#include <string>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace sluice::discovery {

namespace {

Result<upstream::EndpointConfig> endpoint_from(const nlohmann::json& j) {
  if (!j.is_object())
    return Status::error("expected an object such as {\"address\": \"10.0.0.5:8080\"}");
  auto a = j.find("address");
  if (a == j.end()) return Status::error("no \"address\"");
  if (!a->is_string()) return Status::error("\"address\" is not a string");
  const std::string& text = a->get_ref<const std::string&>();
  auto address = net::Address::parse(text);
  if (!address || address->port() == 0) {
    return Status::error(
        fmt::format("\"address\" '{}' is not IP:PORT or [IPv6]:PORT with a port from 1 to 65535",
                    text.substr(0, 100)));
  }
  upstream::EndpointConfig e;
  e.address = *address;
  if (auto w = j.find("weight"); w != j.end()) {
    if (!w->is_number_unsigned() || w->get<uint64_t>() < 1 ||
        w->get<uint64_t>() > upstream::EndpointConfig::kMaxWeight) {
      return Status::error(fmt::format("\"weight\" is not a whole number from 1 to {}",
                                       upstream::EndpointConfig::kMaxWeight));
    }
    e.weight = static_cast<uint32_t>(w->get<uint64_t>());
  }
  return e;
}

}  // namespace

Result<upstream::EndpointConfig> parse_endpoint_json(std::string_view text) {
  if (text.size() > kMaxEndpointJson) {
    return Status::error(fmt::format("{} bytes, more than {}", text.size(), kMaxEndpointJson));
  }
  auto j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded()) return Status::error("not JSON");
  return endpoint_from(j);
}

Result<EndpointList> parse_endpoint_list_json(std::string_view text) {
  nlohmann::json doc;
  try {
    doc = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    // "[json.exception.parse_error.101] parse error at line 3, column 5: ...": the part
    // after the category says where. (A number out of range is an out_of_range error.)
    std::string what = e.what();
    auto at = what.find("] ");
    return Status::error(at == std::string::npos ? what : what.substr(at + 2));
  }
  const nlohmann::json* list = &doc;
  if (doc.is_object()) {
    auto it = doc.find("endpoints");
    if (it == doc.end()) return Status::error("expected {\"endpoints\": [...]} or a list");
    list = &*it;
  }
  if (!list->is_array()) return Status::error("\"endpoints\" is not a list");
  EndpointList out;
  std::set<std::string> seen;
  if (list->size() > kMaxListed) {
    return Status::error(
        fmt::format("{} endpoints listed, more than {}", list->size(), kMaxListed));
  }
  for (size_t i = 0; i < list->size(); ++i) {
    auto e = endpoint_from((*list)[i]);
    if (!e) {
      out.invalid.push_back(fmt::format("endpoints[{}]: {}", i, e.status().message()));
      continue;
    }
    if (!seen.insert(e->address.to_string()).second) {
      out.invalid.push_back(
          fmt::format("endpoints[{}]: {} is listed already", i, e->address.to_string()));
      continue;
    }
    out.endpoints.push_back(std::move(*e));
  }
  return out;
}

}  // namespace sluice::discovery
