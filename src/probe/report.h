// What `sluice probe` prints: the waterfall of one run, the percentiles of many, and the
// JSON forms of both; and the --dns lookup. Functions over plain results; any thread.
#pragma once

#include <string>
#include <vector>

#include "probe/probe.h"

namespace sluice::probe {

std::string text_report(const ProbeOptions& options, const RunResult& run);
std::string text_summary(const ProbeOptions& options, const std::vector<RunResult>& runs);
std::string json_report(const ProbeOptions& options, const RunResult& run);
std::string json_summary(const ProbeOptions& options, const std::vector<RunResult>& runs);

std::string text_dns_report(const std::string& name, const DnsLookup& lookup);
std::string json_dns_report(const std::string& name, const DnsLookup& lookup);

// Nearest-rank percentile (p in 0..100) of sorted values; 0 when empty.
int64_t percentile(const std::vector<int64_t>& sorted, double p);

}  // namespace sluice::probe
