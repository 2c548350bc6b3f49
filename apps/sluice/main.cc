// The sluice command line: run, check, probe, version.
#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "base/log.h"
#include "config/config.h"
#include "probe/cli.h"
#include "server/server.h"

namespace {

constexpr const char* kUsage =
    "usage: sluice run -c FILE [--log-level debug|info|warn|error]\n"
    "       sluice check -c FILE\n"
    "       sluice probe URL [options]      (sluice probe --help for the options)\n"
    "       sluice probe --dns NAME [options]\n"
    "       sluice version\n";

int usage_error(const std::string& what) {
  std::fprintf(stderr, "sluice: %s\n%s", what.c_str(), kUsage);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace sluice;
  if (argc < 2) return usage_error("missing command");
  std::string_view command = argv[1];
  if (command == "version" || command == "--version") {
    std::printf("sluice %s\n", SLUICE_VERSION);
    return 0;
  }
  if (command == "help" || command == "--help" || command == "-h") {
    std::fputs(kUsage, stdout);
    std::fputs("\n", stdout);
    std::fputs(probe::kUsage, stdout);
    return 0;
  }
  if (command == "probe") return probe::probe_main(argc - 2, argv + 2);
  if (command != "run" && command != "check") {
    return usage_error("unknown command '" + std::string(command) + "'");
  }

  std::string config_path;
  std::string level_override;
  for (int i = 2; i < argc; ++i) {
    std::string_view arg = argv[i];
    if ((arg == "-c" || arg == "--config") && i + 1 < argc) {
      config_path = argv[++i];
    } else if (arg == "--log-level" && i + 1 < argc && command == "run") {
      level_override = argv[++i];
    } else {
      return usage_error("unexpected argument '" + std::string(arg) + "'");
    }
  }
  if (config_path.empty()) return usage_error("missing -c FILE");

  std::vector<std::string> warnings;
  auto config = config::load_file(config_path, &warnings);
  if (!config) {
    std::fprintf(stderr, "%s\n", config.status().message().c_str());
    return 1;
  }
  // Settings that load but have no effect: on stderr for `check`, logged for `run`.
  for (const auto& w : warnings) {
    if (command == "check") {
      std::fprintf(stderr, "%s\n", w.c_str());
    } else {
      LOG_WARN("{}", w);
    }
  }
  if (command == "check") {
    std::printf("%s: ok\n", config_path.c_str());
    return 0;
  }

  log::Level level = (*config)->log_level;
  if (!level_override.empty() && !log::parse_level(level_override, &level)) {
    return usage_error("unknown log level '" + level_override + "'");
  }
  log::set_level(level);
  server::Server server(config.value());
  return server.run();
}
