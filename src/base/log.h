// Logging: one line per event on stderr, written with a single write(2) so lines from
// different threads never interleave. Format: "<UTC time> <level> [<thread>] <message>".
// Any thread may log; each thread names itself once with set_thread_name().
#pragma once

#include <fmt/format.h>

#include <chrono>
#include <string>
#include <string_view>

namespace sluice::log {

enum class Level { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };

void set_level(Level level);
Level level();
// "debug", "info", "warn", "error" → Level; false when the name is unknown.
bool parse_level(std::string_view name, Level* out);
void set_thread_name(std::string_view name);

void write(Level level, std::string_view message);
// "2026-11-28T01:02:03.456Z": the time format of log lines and the access log.
std::string format_time(std::chrono::system_clock::time_point t);

inline bool enabled(Level l) {
  return static_cast<int>(l) >= static_cast<int>(level());
}

}  // namespace sluice::log

#define SLUICE_LOG(lvl, ...)                                                     \
  do {                                                                           \
    if (::sluice::log::enabled(::sluice::log::Level::lvl)) {                     \
      ::sluice::log::write(::sluice::log::Level::lvl, fmt::format(__VA_ARGS__)); \
    }                                                                            \
  } while (0)

#define LOG_DEBUG(...) SLUICE_LOG(kDebug, __VA_ARGS__)
#define LOG_INFO(...) SLUICE_LOG(kInfo, __VA_ARGS__)
#define LOG_WARN(...) SLUICE_LOG(kWarn, __VA_ARGS__)
#define LOG_ERROR(...) SLUICE_LOG(kError, __VA_ARGS__)
