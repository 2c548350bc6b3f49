// Durations and sizes as users write them in configuration: "250ms", "1s", "5m", "64KiB".
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace sluice {

using Duration = std::chrono::nanoseconds;

// Accepts <integer><unit> with unit in ns, us, ms, s, m, h ("0" alone is also accepted).
std::optional<Duration> parse_duration(std::string_view text);
// Accepts <integer>[unit] with unit in B, KiB, MiB, GiB (powers of 1024) or KB, MB, GB (1000).
std::optional<uint64_t> parse_size(std::string_view text);

std::string format_duration(Duration d);

}  // namespace sluice
