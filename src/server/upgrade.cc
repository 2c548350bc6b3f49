// Binary upgrade. The running process (the old one) starts the binary at the path it was
// started from, as a child, with one end of a SOCK_SEQPACKET pair (--upgrade-fd), and hands
// it every listening socket and the admin socket (handover.h). The new process reads its
// configuration, adopts the sockets whose address it still listens on instead of binding,
// runs its first DNS and health round, and says "ready": only then does the old one stop
// accepting and drain (idle keep-alive connections stay until their next request, answered
// with Connection: close). If the new one fails, it says why (or dies), and the old one
// keeps serving. At most two generations: a process whose predecessor still drains refuses
// to upgrade again.
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <fstream>

#include <fmt/format.h>

#include "admin/admin_server.h"
#include "base/log.h"
#include "discovery/etcd_registration.h"
#include "event/timer.h"
#include "server/handover.h"
#include "server/server.h"
#include "server/worker.h"

extern char** environ;

namespace sluice::server {

using admin::LifecycleState;
using admin::UpgradeOutcome;

namespace {

// How often the old process looks for the new one's answer.
constexpr auto kUpgradePoll = std::chrono::milliseconds(10);
// The new process gets ready_timeout for its first round, plus this to start.
constexpr auto kUpgradeSlack = std::chrono::seconds(10);
// How long the new process waits for each packet of the hand-over.
constexpr auto kHandoverTimeout = std::chrono::seconds(5);

// Whether `pid` runs (an exited process its parent has not reaped yet does not).
bool alive(pid_t pid) {
  if (::kill(pid, 0) != 0) return false;
  std::ifstream stat(fmt::format("/proc/{}/stat", pid));
  std::string line;
  if (!std::getline(stat, line)) return true;
  size_t paren = line.rfind(')');
  return paren == std::string::npos || paren + 2 >= line.size() || line[paren + 2] != 'Z';
}

}  // namespace

void Server::set_upgrade_fd(int fd) {
  upgrade_fd_ = net::Fd(fd);
  ::fcntl(fd, F_SETFD, FD_CLOEXEC);
}

Status Server::receive_inherited() {
  if (!upgrade_fd_.valid()) return Status::ok();
  predecessor_ = ::getppid();
  auto h = receive_handover(upgrade_fd_.get(), kHandoverTimeout);
  if (!h) return h.status();
  size_t sockets = 0;
  for (const auto& l : h->listeners) sockets += l.fds.size();
  LOG_INFO("upgrade: took over {} listeners ({} sockets){} from pid {}", h->listeners.size(),
           sockets, h->admin ? " and the admin socket" : "", predecessor_);
  inherited_ = std::move(h.value());
  inherited_lease_ = inherited_->registration_lease;
  return Status::ok();
}

std::vector<net::Fd> Server::take_inherited(const proxy::ListenerConfig& l) {
  if (!inherited_) return {};
  auto matches = [&](const HandedListener& h) {
    if (h.fds.empty()) return false;
    if (h.address == l.address) return true;
    // Port 0 in the file: the port the old process was given, for the same listener.
    return l.address.port() == 0 && h.name == l.name &&
           h.address.ip_string() == l.address.ip_string();
  };
  for (auto& h : inherited_->listeners) {
    if (matches(h)) return std::move(h.fds);
  }
  return {};
}

void Server::tell_predecessor(const std::string& line) {
  if (!upgrade_fd_.valid()) return;
  if (Status s = send_line(upgrade_fd_.get(), line); !s) {
    LOG_WARN("upgrade: could not tell pid {} '{}': {}", predecessor_, line, s.message());
  }
  upgrade_fd_.reset();
  // Sockets handed over that the configuration no longer listens on close with the old
  // process.
  inherited_.reset();
}

void Server::request_upgrade(std::function<void(UpgradeOutcome)> done) {
  auto fail = [&](std::string why) {
    LOG_ERROR("upgrade refused: {}", why);
    if (done) done(UpgradeOutcome{false, 0, std::move(why)});
  };
  if (lifecycle_.is(LifecycleState::kUpgrading)) {
    if (done) upgrade_waiters_.push_back(std::move(done));
    return;
  }
  if (!lifecycle_.is(LifecycleState::kReady)) {
    return fail(fmt::format("sluice is {}", admin::to_string(lifecycle_.state())));
  }
  if (predecessor_ > 0 && alive(predecessor_)) {
    return fail(
        fmt::format("the previous generation (pid {}) is still draining; at most two run at once",
                    predecessor_));
  }
  if (config_path_.empty() || exe_path_.empty()) {
    return fail("no configuration file or executable path to start again");
  }
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
    return fail(fmt::format("socketpair: {}", std::strerror(errno)));
  }
  net::Fd mine(sv[0]), theirs(sv[1]);
  // Everything the child needs, made before fork(): it may only call async-signal-safe
  // functions between fork() and exec().
  std::string fd_arg = std::to_string(theirs.get());
  std::vector<std::string> args = {exe_path_, "run", "-c", config_path_, "--upgrade-fd", fd_arg};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  // The environment, with what sluice took out of it at start: the new process becomes the
  // service's main one and notifies systemd itself.
  std::vector<std::string> env;
  for (char** e = environ; *e; ++e) env.emplace_back(*e);
  if (systemd_.enabled()) {
    env.push_back("NOTIFY_SOCKET=" + systemd_.socket_text());
    if (systemd_.watchdog_interval()) {
      auto us =
          std::chrono::duration_cast<std::chrono::microseconds>(*systemd_.watchdog_interval());
      env.push_back(fmt::format("WATCHDOG_USEC={}", us.count()));
    }
  }
  std::vector<char*> envp;
  for (auto& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);
  pid_t pid = ::fork();
  if (pid < 0) return fail(fmt::format("fork: {}", std::strerror(errno)));
  if (pid == 0) {
    ::fcntl(sv[1], F_SETFD, 0);  // the one descriptor the new process inherits
    sigset_t none;
    ::sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::execve(argv[0], argv.data(), envp.data());
    ::_exit(127);
  }
  theirs.reset();
  // Before the new process can accept on the same sockets (listener.h says why).
  for (auto& w : workers_) w->accept_by_polling();
  if (admin_) admin_->accept_by_polling();
  Handover h;
  for (const auto& [name, address] : listener_addresses_) {
    auto fds = listener_fds_.find(name);
    if (fds == listener_fds_.end()) continue;
    HandedListener l{name, *net::Address::parse(address), {}};
    for (const auto& fd : fds->second) l.fds.emplace_back(::fcntl(fd.get(), F_DUPFD_CLOEXEC, 0));
    h.listeners.push_back(std::move(l));
  }
  h.endpoints = health_->export_state();
  if (resolver_) h.dns = resolver_->save_cache();
  if (registration_) h.registration_lease = registration_->lease();
  for (const auto& l : config_->listeners) {
    // Keys read from files are read from the same files by the new process.
    if (!l->tls || !l->tls->ticket_key_files.empty()) continue;
    auto keys = ticket_keys_.find(l->name);
    if (keys != ticket_keys_.end()) h.ticket_keys[l->name] = keys->second->keys();
  }
  if (admin_ && admin_->listening_fd() >= 0 && config_->admin_address) {
    auto bound = net::local_address(admin_->listening_fd());
    h.admin = HandedListener{"admin", bound ? *bound : *config_->admin_address, {}};
    h.admin->fds.emplace_back(::fcntl(admin_->listening_fd(), F_DUPFD_CLOEXEC, 0));
  }
  successor_ = pid;
  upgrade_sock_ = std::move(mine);
  if (done) upgrade_waiters_.push_back(std::move(done));
  lifecycle_.transition(LifecycleState::kUpgrading,
                        fmt::format("started pid {} ({})", pid, exe_path_));
  systemd_.send(sd_message::status(fmt::format("upgrading: started pid {}", pid)));
  if (Status s = send_handover(upgrade_sock_.get(), h); !s) {
    // Its end closed: it exited (an executable that cannot run, a crash) while we wrote.
    bool gone = errno == EPIPE || errno == ECONNRESET;
    return upgrade_finished(
        false, gone ? fmt::format("pid {} exited before it was ready", pid) : s.message());
  }
  upgrade_deadline_ = main_loop_.now() + config_->ready_timeout + kUpgradeSlack;
  upgrade_poll_->arm_at(main_loop_.now() + kUpgradePoll);
}

void Server::poll_upgrade() {
  if (!upgrade_sock_.valid()) return;
  char buf[4096];
  ssize_t n = ::recv(upgrade_sock_.get(), buf, sizeof buf, MSG_DONTWAIT);
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
    if (main_loop_.now() >= upgrade_deadline_) {
      return upgrade_finished(false,
                              fmt::format("pid {} did not say ready within {}", successor_,
                                          format_duration(config_->ready_timeout + kUpgradeSlack)));
    }
    upgrade_poll_->arm_at(main_loop_.now() + kUpgradePoll);
    return;
  }
  std::string line = n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string();
  if (line.rfind("ready ", 0) == 0) return upgrade_finished(true, {});
  if (line.rfind("failed ", 0) == 0) return upgrade_finished(false, line.substr(7));
  upgrade_finished(false, fmt::format("pid {} exited before it was ready", successor_));
}

void Server::upgrade_finished(bool ok, std::string error) {
  upgrade_poll_->cancel();
  upgrade_sock_.reset();
  pid_t pid = successor_;
  successor_ = 0;
  if (!ok) {
    // It may still be starting: it must not serve beside this process.
    ::kill(pid, SIGKILL);
    int status = 0;
    ::waitpid(pid, &status, 0);
    if (lifecycle_.is(LifecycleState::kUpgrading)) {
      LOG_ERROR("upgrade failed, this process keeps serving: {}", error);
    } else {
      LOG_WARN("upgrade abandoned (pid {} stopped): {}", pid, error);
    }
    systemd_.send(sd_message::status("ready: upgrade failed: " + error));
    if (lifecycle_.is(LifecycleState::kUpgrading)) {
      lifecycle_.transition(LifecycleState::kReady, "upgrade failed");
    }
  }
  // Logged before the answer: whoever asked finds the outcome in the log once answered.
  if (ok) LOG_INFO("upgrade: pid {} serves now; this process drains", pid);
  auto waiters = std::move(upgrade_waiters_);
  upgrade_waiters_.clear();
  for (auto& w : waiters) w(UpgradeOutcome{ok, pid, error});
  if (!ok) return;
  // The new process serves on the same sockets: stop accepting on ours and drain.
  listener_fds_.clear();
  lifecycle_.mark_replaced();
  if (admin_) admin_->stop_accepting();
  drain(fmt::format("upgraded: pid {} serves now", pid), /*keep_idle=*/true);
}

}  // namespace sluice::server
