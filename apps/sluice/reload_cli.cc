#include "reload_cli.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <optional>
#include <type_traits>

#include <nlohmann/json.hpp>

#include "base/clock.h"
#include "config/config.h"
#include "net/socket.h"

namespace sluice::cli {
namespace {

constexpr auto kTimeout = std::chrono::seconds(30);  // a reload waits for every worker

// Writes `request` and reads the whole answer (the admin endpoint closes after it, as asked).
Result<std::string> ask_admin(const net::Address& address, const std::string& request) {
  auto fd = net::tcp_socket(address.family());
  if (!fd) return fd.status();
  int s = fd->get();
  MonoTime deadline = MonoClock::now() + kTimeout;
  auto wait = [&](short events) -> Status {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - MonoClock::now());
    if (left.count() <= 0) return Status::error("no answer within 30s");
    pollfd p{s, events, 0};
    int n = ::poll(&p, 1, static_cast<int>(left.count()));
    if (n == 0) return Status::error("no answer within 30s");
    if (n < 0) return Status::error(std::strerror(errno));
    return Status::ok();
  };
  if (::connect(s, address.sockaddr_ptr(), address.length()) != 0 && errno != EINPROGRESS) {
    return Status::error(std::strerror(errno));
  }
  if (Status st = wait(POLLOUT); !st) return st;
  int err = 0;
  socklen_t len = sizeof err;
  ::getsockopt(s, SOL_SOCKET, SO_ERROR, &err, &len);
  if (err != 0) return Status::error(std::strerror(err));
  size_t sent = 0;
  while (sent < request.size()) {
    if (Status st = wait(POLLOUT); !st) return st;
    ssize_t n = ::send(s, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno != EAGAIN && errno != EINTR) return Status::error(std::strerror(errno));
    if (n > 0) sent += static_cast<size_t>(n);
  }
  std::string answer;
  char buf[16384];
  for (;;) {
    if (Status st = wait(POLLIN); !st) return st;
    ssize_t n = ::recv(s, buf, sizeof buf, 0);
    if (n == 0) break;
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) continue;
      return Status::error(std::strerror(errno));
    }
    answer.append(buf, static_cast<size_t>(n));
  }
  return answer;
}

void print_lines(std::FILE* out, const nlohmann::json& j, const char* key, const char* prefix) {
  if (!j.contains(key) || !j[key].is_array()) return;
  for (const auto& line : j[key]) {
    if (line.is_string()) std::fprintf(out, "%s%s\n", prefix, line.get<std::string>().c_str());
  }
}

}  // namespace

namespace {

// POSTs `target` to the admin address of the sluice that runs `config_path` and returns its
// JSON answer (an object with a string "result"); on any failure, says why on stderr and
// returns nullopt. `signal` names what to send instead when the file has no admin address.
std::optional<nlohmann::json> ask_running(const std::string& config_path, const std::string& target,
                                          const char* signal) {
  auto config = config::load_file(config_path);
  if (!config) {
    std::fprintf(stderr, "%s\n", config.status().message().c_str());
    return std::nullopt;
  }
  const auto& admin = (*config)->admin_address;
  if (!admin) {
    std::fprintf(stderr,
                 "sluice: %s has no admin address to ask; send the running sluice %s instead\n",
                 config_path.c_str(), signal);
    return std::nullopt;
  }
  auto answer = ask_admin(*admin, "POST " + target +
                                      " HTTP/1.1\r\nHost: sluice-admin\r\nContent-Length: "
                                      "0\r\nConnection: close\r\n\r\n");
  if (!answer) {
    std::fprintf(stderr, "sluice: cannot ask the admin endpoint %s: %s\n",
                 admin->to_string().c_str(), answer.status().message().c_str());
    return std::nullopt;
  }
  int status = 0;
  std::sscanf(answer->c_str(), "HTTP/1.%*d %d", &status);
  size_t body_at = answer->find("\r\n\r\n");
  std::string body = body_at == std::string::npos ? "" : answer->substr(body_at + 4);
  auto j = nlohmann::json::parse(body, nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("result") || !j["result"].is_string()) {
    std::fprintf(stderr, "sluice: the admin endpoint %s answered %d: %s\n",
                 admin->to_string().c_str(), status, body.c_str());
    return std::nullopt;
  }
  return j;
}

// A field of the answer, or `fallback` when it is missing or of another type.
template <typename T>
T field(const nlohmann::json& j, const char* key, T fallback) {
  auto it = j.find(key);
  if (it == j.end()) return fallback;
  if constexpr (std::is_same_v<T, std::string>) {
    return it->is_string() ? it->template get<std::string>() : fallback;
  } else {
    return it->is_number() ? it->template get<T>() : fallback;
  }
}

}  // namespace

int upgrade_main(const std::string& config_path) {
  auto j = ask_running(config_path, "/upgrade", "SIGUSR2");
  if (!j) return 1;
  if ((*j)["result"] != "upgraded") {
    std::fprintf(stderr, "upgrade failed, the running sluice keeps serving: %s\n",
                 field<std::string>(*j, "error", "").c_str());
    return 1;
  }
  std::printf("Upgraded: pid %d serves now; the previous process drains\n", field(*j, "pid", 0));
  return 0;
}

int reload_main(const std::string& config_path, bool dry_run) {
  auto j = ask_running(config_path, dry_run ? "/reload?dry_run=1" : "/reload", "SIGHUP");
  if (!j) return 1;
  std::string result = (*j)["result"].get<std::string>();
  auto generation = static_cast<unsigned long long>(field<uint64_t>(*j, "generation", 0));
  if (result == "failed") {
    std::fprintf(stderr, "reload failed, the running configuration (generation %llu) stays:\n",
                 generation);
    print_lines(stderr, *j, "errors", "  ");
    return 1;
  }
  print_lines(stderr, *j, "warnings", "");
  if (result == "unchanged") {
    std::printf("No changes (generation %llu stays)\n", generation);
    return 0;
  }
  if (dry_run) {
    std::printf("A reload would make generation %llu:\n", generation);
  } else {
    std::printf("Reloaded: generation %llu in %.1f ms\n", generation,
                field(*j, "apply_seconds", 0.0) * 1000);
  }
  print_lines(stdout, *j, "changes", "  ");
  return 0;
}

}  // namespace sluice::cli
