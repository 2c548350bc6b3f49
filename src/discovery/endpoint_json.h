// The JSON description of one endpoint that discovery sources share (a file's list, a
// registry's values): {"address": "10.0.0.5:8080", "weight": 10, "zone": "a"}. `address` is
// required (IP:PORT or [IPv6]:PORT); `weight` is 1-1000 (default 1); other members (zone,
// metadata) are allowed and ignored.
#pragma once

#include <string_view>
#include <vector>

#include "base/status.h"
#include "upstream/endpoint.h"

namespace sluice::discovery {

// Registry values larger than this are refused unread.
inline constexpr size_t kMaxEndpointJson = 4096;
// A list with more entries than this is refused whole: four times what a cluster's endpoint
// table can hold, so a file of junk costs bounded memory and time.
inline constexpr size_t kMaxListed = 4 * 4096;

// One endpoint object, as text. The error says what is wrong, without the text itself.
Result<upstream::EndpointConfig> parse_endpoint_json(std::string_view text);

// A list of them: `{"endpoints": [ ... ]}` or a bare array. Entries that are not endpoints
// go to `invalid` as "endpoints[3]: <why>", skipped; an address listed twice keeps its first
// entry (the later ones are reported too). The document itself must parse.
struct EndpointList {
  std::vector<upstream::EndpointConfig> endpoints;
  std::vector<std::string> invalid;
};
Result<EndpointList> parse_endpoint_list_json(std::string_view text);

}  // namespace sluice::discovery
