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
#include "discovery/sources.h"
#include "event/timer.h"
#include "server/handover.h"
#include "server/server.h"
#include "server/worker.h"
#include "stun/binding.h"

extern char** environ;

namespace sluice::server {

using admin::LifecycleState;
using admin::UpgradeOutcome;

namespace {

// How often the old process looks for the new one's answer.
constexpr auto kUpgradePoll = std::chrono::milliseconds(10);
// The new process gets ready_timeout for its first round, plus this to start.
constexpr auto kUpgradeSlack = std::chrono::seconds(10);
// How long the new process waits for each packet of the hand-over. The first comes once the
// admin listener, then every worker, accept by polling (send_handover_when_polling): within
// net::Listener::kStopWait, then Worker::kAcceptByPollingBudget (the workers at the same
// time, whatever their number of listeners). Twice that, at least, for a busy machine.
constexpr auto kHandoverTimeout = std::chrono::seconds(5);
static_assert(kHandoverTimeout >= 2 * (net::Listener::kStopWait + Worker::kAcceptByPollingBudget));

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

HandedListener Server::take_inherited(const proxy::ListenerConfig& l) {
  if (!inherited_) return {};
  auto matches = [&](const HandedListener& h) {
    if (h.fds.empty()) return false;
    if (h.address == l.address) return true;
    // Port 0 in the file: the port the old process was given, for the same listener.
    return l.address.port() == 0 && h.name == l.name &&
           h.address.ip_string() == l.address.ip_string();
  };
  for (auto& h : inherited_->listeners) {
    if (matches(h)) {
      HandedListener taken{h.name, h.address, std::move(h.fds), std::move(h.parts)};
      h.fds.clear();
      return taken;
    }
  }
  return {};
}

void Server::adopt_inherited(const proxy::ListenerConfig& l, net::Address& address,
                             std::optional<net::Address>& alternate, std::vector<SocketSet>& sets) {
  HandedListener h = take_inherited(l);
  if (h.fds.empty()) return;
  if (auto bound = net::local_address(h.fds.front().get())) address = *bound;
  const size_t n = h.fds.size();
  // A part the listener still has: as many sockets as main ones, at `want` (port 0: the
  // port the old process was given).
  auto part = [&](SocketRole role, const net::Address& want) -> HandedSockets* {
    for (auto& p : h.parts) {
      if (p.role != role || p.fds.size() != n) continue;
      if (p.address == want || (want.port() == 0 && p.address.ip_string() == want.ip_string())) {
        return &p;
      }
    }
    return nullptr;
  };
  HandedSockets* alt[3] = {nullptr, nullptr, nullptr};
  if (alternate) {
    alt[0] = part(SocketRole::kStunAlternatePort, ::sluice::stun::combine(address, *alternate));
    alt[1] = part(SocketRole::kStunAlternateIp, ::sluice::stun::combine(*alternate, address));
    alt[2] = part(SocketRole::kStunAlternateBoth, *alternate);
    // The alternate port picked by the kernel is one port for both of its sockets.
    if (!alt[0] || !alt[1] || !alt[2] || alt[0]->address.port() != alt[2]->address.port()) {
      alt[0] = nullptr;
    } else {
      alternate = alt[2]->address;
    }
  }
  bool stun_tcp = l.protocol == proxy::Protocol::kStun && l.stun.tcp;
  HandedSockets* tcp = stun_tcp ? part(SocketRole::kStunTcp, address) : nullptr;
  for (size_t i = 0; i < n; ++i) {
    SocketSet set{std::move(h.fds[i]), {}, {}};
    if (alt[0]) {
      for (auto* p : alt) set.alternates.push_back(std::move(p->fds[i]));
    }
    if (tcp) set.tcp = std::move(tcp->fds[i]);
    sets.push_back(std::move(set));
  }
  // Parts not taken (the listener changed) close here: their copies in the old process close
  // with it.
  LOG_INFO("upgrade: listener {} takes over {} sockets{}{}", l.name, n,
           alt[0] ? " with their alternate-address sockets" : "",
           tcp ? " and their tcp sockets" : "");
}

namespace {
net::Fd duplicate(const net::Fd& fd) {
  return net::Fd(::fcntl(fd.get(), F_DUPFD_CLOEXEC, 0));
}
}  // namespace

HandedListener Server::copy_for_handover(const std::string& name, const net::Address& address,
                                         const std::vector<SocketSet>& sets) {
  HandedListener out{name, address, {}, {}};
  if (sets.empty()) return out;
  const size_t alternates = sets.front().alternates.size() == 3 ? 3 : 0;
  static constexpr SocketRole kAlternateRoles[] = {
      SocketRole::kStunAlternatePort, SocketRole::kStunAlternateIp, SocketRole::kStunAlternateBoth};
  for (size_t k = 0; k < alternates; ++k) {
    auto bound = net::local_address(sets.front().alternates[k].get());
    out.parts.push_back(HandedSockets{kAlternateRoles[k], bound ? *bound : address, {}});
  }
  const bool tcp = sets.front().tcp.valid();
  if (tcp) out.parts.push_back(HandedSockets{SocketRole::kStunTcp, address, {}});
  for (const auto& set : sets) {
    out.fds.push_back(duplicate(set.fd));
    for (size_t k = 0; k < alternates; ++k)
      out.parts[k].fds.push_back(duplicate(set.alternates[k]));
    if (tcp) out.parts.back().fds.push_back(duplicate(set.tcp));
  }
  return out;
}

void Server::tell_predecessor(const std::string& line) {
  if (!upgrade_fd_.valid()) return;
  if (Status s = send_line(upgrade_fd_.get(), line); !s) {
    LOG_WARN("upgrade: could not tell pid {} '{}': {}", predecessor_, line, s.message());
  }
  if (line.rfind("ready ", 0) == 0) take_over_bgp();
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
  successor_ = pid;
  upgrade_sock_ = std::move(mine);
  if (done) upgrade_waiters_.push_back(std::move(done));
  lifecycle_.transition(LifecycleState::kUpgrading,
                        fmt::format("started pid {} ({})", pid, exe_path_));
  systemd_.send(sd_message::status(fmt::format("upgrading: started pid {}", pid)));
  // Watched from now on: a new process that dies, or says it failed, ends the upgrade even
  // before it has the sockets.
  upgrade_deadline_ = main_loop_.now() + config_->ready_timeout + kUpgradeSlack;
  upgrade_poll_->arm_at(main_loop_.now() + kUpgradePoll);
  send_handover_when_polling(pid);
}

void Server::send_handover_when_polling(pid_t pid) {
  // Before the new process can accept on the same sockets (listener.h says why), and done,
  // not only asked for: a worker still waiting in a multishot accept when the new process
  // starts could take a wake-up the new process needed.
  if (admin_) admin_->accept_by_polling();
  auto left = std::make_shared<size_t>(workers_.size());
  if (*left == 0) return send_handover_now(pid);
  for (auto& w : workers_) {
    w->accept_by_polling([this, pid, left] {
      main_loop_.post([this, pid, left] {
        // The upgrade may have ended meanwhile (a drain began; the new process died).
        if (--*left == 0 && successor_ == pid && upgrade_sock_.valid()) send_handover_now(pid);
      });
    });
  }
}

void Server::send_handover_now(pid_t pid) {
  Handover h;
  for (const auto& [name, address] : listener_addresses_) {
    auto found = listener_fds_.find(name);
    if (found == listener_fds_.end()) continue;
    const HandedListener& mine = found->second;
    HandedListener l{name, *net::Address::parse(address), {}, {}};
    for (const auto& fd : mine.fds) l.fds.push_back(duplicate(fd));
    for (const auto& part : mine.parts) {
      HandedSockets copy{part.role, part.address, {}};
      for (const auto& fd : part.fds) copy.fds.push_back(duplicate(fd));
      l.parts.push_back(std::move(copy));
    }
    h.listeners.push_back(std::move(l));
  }
  h.endpoints = health_->export_state();
  if (bgp_) {
    for (auto& t : bgp_->hand_over()) {
      std::string peer = t.peer;
      h.bgp.emplace(std::move(peer), std::move(t));
    }
  }
  if (const dns::Resolver* r = sources_->resolver()) h.dns = r->save_cache();
  if (registration_) h.registration_lease = registration_->lease();
  for (const auto& l : config_->listeners) {
    // Keys read from files are read from the same files by the new process.
    if (!l->tls || !l->tls->ticket_key_files.empty()) continue;
    auto keys = ticket_keys_.find(l->name);
    if (keys != ticket_keys_.end()) h.ticket_keys[l->name] = keys->second->keys();
  }
  if (admin_ && admin_->listening_fd() >= 0 && config_->admin_address) {
    auto bound = net::local_address(admin_->listening_fd());
    h.admin = HandedListener{"admin", bound ? *bound : *config_->admin_address, {}, {}};
    h.admin->fds.emplace_back(::fcntl(admin_->listening_fd(), F_DUPFD_CLOEXEC, 0));
  }
  // Version 1 when it is enough: a roll-back to a binary of that version works.
  h.version = lowest_handover_version(h);
  if (Status s = send_handover(upgrade_sock_.get(), h); !s) {
    // Its end closed: it exited (an executable that cannot run, a crash) while we wrote.
    bool gone = errno == EPIPE || errno == ECONNRESET;
    upgrade_finished(false,
                     gone ? fmt::format("pid {} exited before it was ready", pid) : s.message());
  }
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
  // The new process runs the BGP sessions from here on.
  if (ok) release_bgp();
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
