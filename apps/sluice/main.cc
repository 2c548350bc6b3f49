// The sluice command line: run, check, reload, probe, version.
#include <charconv>
#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "base/log.h"
#include "config/config.h"
#include "config/config_diff.h"
#include "event/backend.h"
#include "probe/cli.h"
#include "reload_cli.h"
#include "server/handover.h"
#include "server/server.h"

namespace {

constexpr const char* kUsage =
    "usage: sluice run -c FILE [--log-level debug|info|warn|error]\n"
    "       sluice check -c FILE [--diff OLD_FILE | --diff-running]\n"
    "       sluice reload -c FILE [--dry-run]   (asks the sluice at FILE's admin address)\n"
    "       sluice upgrade -c FILE    (the running sluice starts its binary again, hands it\n"
    "                                  its sockets and drains once the new one serves)\n"
    "       sluice probe URL [options]      (sluice probe --help for the options)\n"
    "       sluice probe --dns NAME [options]\n"
    "       sluice version\n";

int usage_error(const std::string& what) {
  std::fprintf(stderr, "sluice: %s\n%s", what.c_str(), kUsage);
  return 2;
}

// Loads one file as `sluice check` does: errors and warnings on stderr, one per line.
std::shared_ptr<const sluice::config::Config> check_file(const std::string& path) {
  std::vector<std::string> warnings;
  auto config = sluice::config::load_file(path, &warnings);
  if (!config) {
    std::fprintf(stderr, "%s\n", config.status().message().c_str());
    return nullptr;
  }
  for (const auto& w : warnings) std::fprintf(stderr, "%s\n", w.c_str());
  return config.value();
}

// `sluice check -c FILE [--diff OLD_FILE]`: 0 when FILE (and OLD_FILE) are valid, whether
// or not they differ; then, with --diff, what a reload from OLD_FILE to FILE would change,
// one line each, or "No changes".
int check_main(const std::string& path, const std::string& old_path) {
  auto config = check_file(path);
  std::shared_ptr<const sluice::config::Config> old_config;
  if (!old_path.empty()) {
    old_config = check_file(old_path);
    if (!old_config) {
      std::fprintf(stderr, "sluice: %s (--diff) is not valid: nothing to compare with\n",
                   old_path.c_str());
    }
  }
  if (!config || (!old_path.empty() && !old_config)) return 1;
  std::printf("%s: ok\n", path.c_str());
  if (old_config) {
    auto changes = sluice::config::diff_configs(*old_config, *config);
    if (changes.empty()) std::printf("No changes\n");
    for (const auto& c : changes) std::printf("%s\n", c.text.c_str());
  }
  return 0;
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
  if (command != "run" && command != "check" && command != "reload" && command != "upgrade") {
    return usage_error("unknown command '" + std::string(command) + "'");
  }

  std::string config_path;
  std::string level_override;
  std::string diff_path;
  bool diff_running = false;
  bool dry_run = false;
  int upgrade_fd = -1;
  for (int i = 2; i < argc; ++i) {
    std::string_view arg = argv[i];
    if ((arg == "-c" || arg == "--config") && i + 1 < argc) {
      config_path = argv[++i];
    } else if (arg == "--log-level" && i + 1 < argc && command == "run") {
      level_override = argv[++i];
    } else if (arg == "--diff" && i + 1 < argc && command == "check") {
      diff_path = argv[++i];
    } else if (arg == "--diff-running" && command == "check") {
      diff_running = true;
    } else if (arg == "--dry-run" && command == "reload") {
      dry_run = true;
    } else if (arg == "--upgrade-fd" && i + 1 < argc && command == "run") {
      // Internal: set by the running sluice that starts this one for a binary upgrade.
      std::string_view value = argv[++i];
      int fd = 0;
      auto [end, err] = std::from_chars(value.data(), value.data() + value.size(), fd);
      // 0-2 are the standard streams: never the hand-over's socket.
      if (err != std::errc() || end != value.data() + value.size() || fd < 3) {
        return usage_error("--upgrade-fd wants a descriptor number of 3 or more, not '" +
                           std::string(value) + "'");
      }
      upgrade_fd = fd;
    } else {
      return usage_error("unexpected argument '" + std::string(arg) + "'");
    }
  }
  if (config_path.empty()) return usage_error("missing -c FILE");

  if (!diff_path.empty() && diff_running) {
    return usage_error("--diff and --diff-running: one or the other");
  }
  if (command == "reload") return cli::reload_main(config_path, dry_run);
  if (command == "upgrade") return cli::upgrade_main(config_path);
  if (command == "check" && diff_running) {
    // FILE must be valid; then the running sluice (at FILE's admin address) says what reading
    // its own file again would change.
    if (!check_file(config_path)) return 1;
    return cli::reload_main(config_path, true);
  }
  if (command == "check") return check_main(config_path, diff_path);

  std::vector<std::string> warnings;
  auto config = config::load_file(config_path, &warnings);
  if (!config) {
    std::fprintf(stderr, "%s\n", config.status().message().c_str());
    // The running sluice that started this one keeps serving, and says why.
    if (upgrade_fd >= 0) (void)server::send_line(upgrade_fd, "failed " + config.status().message());
    return 1;
  }
  // Settings that load but have no effect: logged (`check` prints them).
  for (const auto& w : warnings) LOG_WARN("{}", w);

  log::Level level = (*config)->log_level;
  if (!level_override.empty() && !log::parse_level(level_override, &level)) {
    return usage_error("unknown log level '" + level_override + "'");
  }
  log::set_level(level);
  // Before any Loop: the server's and the workers' loops all use the backend chosen here.
  auto backend = event::choose_backend((*config)->event.backend);
  if (!backend) {
    std::fprintf(stderr, "%s\n", backend.status().message().c_str());
    if (upgrade_fd >= 0)
      (void)server::send_line(upgrade_fd, "failed " + backend.status().message());
    return 1;
  }
  LOG_INFO("{}", backend->describe());
  if (!backend->ring_setup.empty()) LOG_INFO("io_uring ring: {}", backend->ring_setup);
  event::set_process_backend(backend->backend);
  auto receive = event::choose_receive((*config)->event.receive);
  if (!receive) {
    std::fprintf(stderr, "%s\n", receive.status().message().c_str());
    if (upgrade_fd >= 0)
      (void)server::send_line(upgrade_fd, "failed " + receive.status().message());
    return 1;
  }
  // Only io_uring receives by completion; epoll reads on readiness whatever is asked.
  if (backend->backend == event::Backend::kIoUring) {
    LOG_INFO("io_uring receive: {}", event::receive_name(*receive));
  }
  event::set_process_receive(*receive);
  server::Server server(config.value(), config_path);
  if (upgrade_fd >= 0) server.set_upgrade_fd(upgrade_fd);
  return server.run();
}
