#include "base/units.h"

#include <fmt/format.h>

#include <charconv>
#include <limits>

namespace sluice {
namespace {

struct Unit {
  std::string_view name;
  uint64_t factor;
};

template <size_t N>
std::optional<uint64_t> parse_with_units(std::string_view text, const Unit (&units)[N],
                                         bool unit_required) {
  uint64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end == text.data()) return std::nullopt;
  std::string_view unit(end, static_cast<size_t>(text.data() + text.size() - end));
  if (unit.empty()) {
    if (unit_required && value != 0) return std::nullopt;
    return value;
  }
  for (const Unit& u : units) {
    if (unit == u.name) {
      if (value > std::numeric_limits<uint64_t>::max() / u.factor) return std::nullopt;
      return value * u.factor;
    }
  }
  return std::nullopt;
}

constexpr Unit kDurationUnits[] = {
    {"ns", 1},
    {"us", 1000},
    {"ms", 1000 * 1000},
    {"s", 1000ull * 1000 * 1000},
    {"m", 60ull * 1000 * 1000 * 1000},
    {"h", 3600ull * 1000 * 1000 * 1000},
};
constexpr Unit kSizeUnits[] = {
    {"B", 1},     {"KiB", 1ull << 10}, {"MiB", 1ull << 20},           {"GiB", 1ull << 30},
    {"KB", 1000}, {"MB", 1000 * 1000}, {"GB", 1000ull * 1000 * 1000},
};

}  // namespace

std::optional<Duration> parse_duration(std::string_view text) {
  auto ns = parse_with_units(text, kDurationUnits, /*unit_required=*/true);
  if (!ns || *ns > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return std::nullopt;
  return Duration(static_cast<int64_t>(*ns));
}

std::optional<uint64_t> parse_size(std::string_view text) {
  return parse_with_units(text, kSizeUnits, /*unit_required=*/false);
}

std::string format_duration(Duration d) {
  auto ns = d.count();
  if (ns % 1000000000 == 0) return fmt::format("{}s", ns / 1000000000);
  if (ns % 1000000 == 0) return fmt::format("{}ms", ns / 1000000);
  if (ns % 1000 == 0) return fmt::format("{}us", ns / 1000);
  return fmt::format("{}ns", ns);
}

}  // namespace sluice
