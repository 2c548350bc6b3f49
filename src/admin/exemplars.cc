#include "admin/exemplars.h"

#include <algorithm>
#include <nlohmann/json.hpp>
#include <string_view>

namespace sluice::admin {

namespace {

constexpr const char* kRequestDuration = "sluice_http_request_duration_seconds";
constexpr const char* kPoolWait = "sluice_cluster_pool_wait_seconds";

// Microseconds of the record's waterfall, or -1 when the phase did not happen.
int64_t timing(const nlohmann::json& timings, const char* phase) {
  auto it = timings.find(phase);
  return it != timings.end() && it->is_number_integer() ? it->get<int64_t>() : -1;
}

}  // namespace

std::vector<RecentExemplar> recent_exemplars(const MetricsInput& in) {
  std::vector<RecentExemplar> out;
  constexpr std::string_view kTrace = "\"traceparent\":\"00-";  // version 00: 32 hex digits
  auto add = [&](const std::string& listener, const proxy::http::RecentRequest& q) {
    size_t at = q.record.find(kTrace);
    if (at == std::string::npos || at + kTrace.size() + 32 > q.record.size()) return;
    std::string trace = q.record.substr(at + kTrace.size(), 32);
    double ended = static_cast<double>(q.ended_ms) / 1e3;
    out.push_back({kRequestDuration, "listener", listener, static_cast<double>(q.duration_us) / 1e6,
                   trace, ended});
    // The last attempt's wait for a connection: the record's pool wait, connect and TLS.
    auto record = nlohmann::json::parse(q.record, nullptr, /*allow_exceptions=*/false);
    if (record.is_discarded() || !record.is_object()) return;
    auto cluster = record.find("cluster");
    auto timings = record.find("timings_us");
    if (cluster == record.end() || !cluster->is_string() ||
        cluster->get_ref<const std::string&>().empty() || timings == record.end() ||
        !timings->is_object()) {
      return;
    }
    int64_t wait = timing(*timings, "pool_wait");
    if (wait < 0) return;
    wait += std::max<int64_t>(0, timing(*timings, "upstream_connect")) +
            std::max<int64_t>(0, timing(*timings, "upstream_tls"));
    out.push_back({kPoolWait, "cluster", cluster->get<std::string>(),
                   static_cast<double>(wait) / 1e6, std::move(trace), ended});
  };
  for (const auto& w : in.workers) {
    for (const auto& [listener, r] : w.recent) {
      for (const auto& q : r.slow) add(listener, q);
      for (const auto& q : r.failed) add(listener, q);
    }
  }
  std::stable_sort(out.begin(), out.end(), [](const RecentExemplar& a, const RecentExemplar& b) {
    return a.seconds > b.seconds;
  });
  return out;
}

}  // namespace sluice::admin
