#include "server/handover.h"

#include <limits.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <sstream>

#include <fmt/format.h>

namespace sluice::server {
namespace {

// The kernel passes at most SCM_MAX_FD (253) descriptors per message.
constexpr size_t kMaxFdsPerPacket = 253;
constexpr size_t kMaxLine = 4096;

Status send_packet(int sock, const std::string& line, const std::vector<int>& fds) {
  iovec iov{const_cast<char*>(line.data()), line.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  std::vector<char> control;
  if (!fds.empty()) {
    control.resize(CMSG_SPACE(sizeof(int) * fds.size()));
    msg.msg_control = control.data();
    msg.msg_controllen = control.size();
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
  }
  for (;;) {
    ssize_t n = ::sendmsg(sock, &msg, MSG_NOSIGNAL);
    if (n >= 0) return Status::ok();
    if (errno == EINTR) continue;
    int err = errno;
    Status failed = Status::error(fmt::format("hand-over: send: {}", std::strerror(err)));
    errno = err;  // the caller tells a peer that went away (EPIPE) from other failures
    return failed;
  }
}

// One packet: its line and the descriptors that came with it (owned).
Result<std::string> receive_packet(int sock, Duration timeout, std::vector<net::Fd>* fds) {
  pollfd p{sock, POLLIN, 0};
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(timeout).count();
  int ready;
  do {
    ready = ::poll(&p, 1, static_cast<int>(ms));
  } while (ready < 0 && errno == EINTR);
  if (ready == 0) return Status::error("hand-over: nothing received in time");
  if (ready < 0) return Status::error(fmt::format("hand-over: poll: {}", std::strerror(errno)));
  char buf[kMaxLine];
  std::vector<char> control(CMSG_SPACE(sizeof(int) * kMaxFdsPerPacket));
  iovec iov{buf, sizeof buf};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control.data();
  msg.msg_controllen = control.size();
  ssize_t n;
  do {
    n = ::recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return Status::error(fmt::format("hand-over: receive: {}", std::strerror(errno)));
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < count; ++i) {
      int fd;
      std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
      if (fds) {
        fds->emplace_back(fd);
      } else {
        net::Fd drop(fd);
      }
    }
  }
  if (n == 0) return Status::error("hand-over: the other process closed the connection");
  if (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) {
    return Status::error("hand-over: a packet was larger than expected");
  }
  return std::string(buf, static_cast<size_t>(n));
}

constexpr SocketRole kRoles[] = {SocketRole::kStunAlternatePort, SocketRole::kStunAlternateIp,
                                 SocketRole::kStunAlternateBoth, SocketRole::kStunTcp};

// Sends `fds` with as many packets of `line_for(count)` as the kernel's limit asks for (one
// packet when there are none).
template <typename LineFor>
Status send_sockets(int sock, const std::vector<net::Fd>& fds, LineFor line_for) {
  for (size_t at = 0; at < fds.size() || at == 0; at += kMaxFdsPerPacket) {
    size_t n = std::min(kMaxFdsPerPacket, fds.size() - at);
    std::vector<int> raw;
    for (size_t i = 0; i < n; ++i) raw.push_back(fds[at + i].get());
    if (Status s = send_packet(sock, line_for(n), raw); !s) return s;
    if (fds.empty()) break;
  }
  return Status::ok();
}

// "sockets <name> <role> <address> <count>": appended to the listener sent last under that
// name.
Status read_sockets(std::istringstream& in, const std::string& line, std::vector<net::Fd> fds,
                    Handover& h) {
  std::string kind, name, role, address;
  size_t count = 0;
  if (!(in >> kind >> name >> role >> address >> count) || count != fds.size()) {
    return Status::error(
        fmt::format("hand-over: unexpected '{}' with {} sockets", line, fds.size()));
  }
  const SocketRole* known = std::find_if(std::begin(kRoles), std::end(kRoles),
                                         [&](SocketRole r) { return role == to_string(r); });
  auto parsed = net::Address::parse(address);
  auto owner = std::find_if(h.listeners.rbegin(), h.listeners.rend(),
                            [&](const HandedListener& l) { return l.name == name; });
  if (known == std::end(kRoles) || !parsed || owner == h.listeners.rend()) {
    return Status::error(fmt::format("hand-over: unexpected '{}'", line));
  }
  auto& parts = owner->parts;
  if (parts.empty() || parts.back().role != *known || parts.back().address != *parsed) {
    parts.push_back(HandedSockets{*known, *parsed, {}});
  }
  for (auto& fd : fds) parts.back().fds.push_back(std::move(fd));
  return Status::ok();
}

}  // namespace

const char* to_string(SocketRole role) {
  switch (role) {
    case SocketRole::kStunAlternatePort:
      return "stun-alternate-port";
    case SocketRole::kStunAlternateIp:
      return "stun-alternate-ip";
    case SocketRole::kStunAlternateBoth:
      return "stun-alternate-both";
    case SocketRole::kStunTcp:
      return "stun-tcp";
  }
  return "?";
}

std::string own_executable() {
  char buf[PATH_MAX];
  ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return {};
  std::string path(buf, static_cast<size_t>(n));
  // Replaced on disk since: the path is what runs next.
  const std::string deleted = " (deleted)";
  if (path.size() > deleted.size() && path.ends_with(deleted)) {
    path.resize(path.size() - deleted.size());
  }
  return path;
}

Status send_line(int sock, const std::string& line) {
  return send_packet(sock, line, {});
}

uint32_t lowest_handover_version(const Handover& h) {
  for (const auto& l : h.listeners) {
    for (const auto& part : l.parts) {
      if (!part.fds.empty()) return 2;
    }
  }
  return 1;
}

Status send_handover(int sock, const Handover& h) {
  if (Status s = send_packet(sock, fmt::format("sluice-handover {}", h.version), {}); !s) return s;
  for (const auto& l : h.listeners) {
    // Names and addresses have no spaces (the configuration's rules).
    Status s = send_sockets(sock, l.fds, [&](size_t n) {
      return fmt::format("listener {} {} {}", l.name, l.address.to_string(), n);
    });
    if (!s) return s;
    // A reader of version 1 knows no "sockets" line: sent only from version 2 on.
    for (const auto& part : l.parts) {
      if (h.version < 2 || part.fds.empty()) continue;
      s = send_sockets(sock, part.fds, [&](size_t n) {
        return fmt::format("sockets {} {} {} {}", l.name, to_string(part.role),
                           part.address.to_string(), n);
      });
      if (!s) return s;
    }
  }
  for (const auto& e : h.endpoints) {
    std::string line = fmt::format("endpoint {} {} {} {} {}", e.cluster, e.address,
                                   e.draining ? 1 : 0, e.ejections, e.ejected_ms_left);
    if (Status s = send_packet(sock, line, {}); !s) return s;
  }
  for (const auto& d : h.dns) {
    const dns::Answer& a = d.answer;
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(d.left).count();
    std::string line = fmt::format("dns {} {} {} {} {}", d.key, ms, a.record_ttl, a.name,
                                   a.srv.empty() ? "A" : "S");
    for (const auto& addr : a.addresses) {
      line += ' ';
      line += addr.ip_string();
    }
    for (const auto& s : a.srv) {
      line += fmt::format(" {}/{}/{}/{}", s.target, s.port, s.priority, s.weight);
    }
    // One packet per answer; an answer too large for one is left out (asked again).
    if (line.size() >= kMaxLine) continue;
    if (Status s = send_packet(sock, line, {}); !s) return s;
  }
  for (const auto& [name, keys] : h.ticket_keys) {
    std::string hex;
    for (const auto& k : keys) {
      for (const auto* part : {k.name.data(), k.aes_key.data(), k.hmac_key.data()}) {
        size_t n = part == k.name.data() ? k.name.size() : k.aes_key.size();
        for (size_t i = 0; i < n; ++i) hex += fmt::format("{:02x}", part[i]);
      }
    }
    if (Status s = send_packet(sock, fmt::format("tickets {} {}", name, hex), {}); !s) return s;
  }
  for (const auto& [peer, t] : h.bgp) {
    std::vector<std::string> lines = bgp::write_session_lines(t);
    for (size_t i = 0; i < lines.size(); ++i) {
      std::vector<int> fds;
      if (i == 0) fds.push_back(t.fd.get());
      if (Status s = send_packet(sock, lines[i], fds); !s) return s;
    }
  }
  if (h.registration_lease > 0) {
    std::string line = fmt::format("registration {}", h.registration_lease);
    if (Status s = send_packet(sock, line, {}); !s) return s;
  }
  if (h.admin && !h.admin->fds.empty()) {
    std::string line = fmt::format("admin {} 1", h.admin->address.to_string());
    if (Status s = send_packet(sock, line, {h.admin->fds.front().get()}); !s) return s;
  }
  return send_packet(sock, "end", {});
}

Result<Handover> receive_handover(int sock, Duration timeout) {
  Handover h;
  auto first = receive_packet(sock, timeout, nullptr);
  if (!first) return first.status();
  std::istringstream head(*first);
  std::string magic;
  uint32_t version = 0;
  if (!(head >> magic >> version) || magic != "sluice-handover") {
    return Status::error(fmt::format("hand-over: not a sluice hand-over ('{}')", *first));
  }
  if (version > kHandoverVersion) {
    return Status::error(fmt::format(
        "hand-over: version {} is newer than this binary's {}: upgrade to a binary at least as "
        "new as the running one",
        version, kHandoverVersion));
  }
  h.version = version;
  bgp::HandoverReader bgp;
  for (;;) {
    std::vector<net::Fd> fds;
    auto line = receive_packet(sock, timeout, &fds);
    if (!line) return line.status();
    if (*line == "end") {
      h.bgp = std::move(bgp.sessions());
      return h;
    }
    if (bgp::is_handover_line(*line)) {
      if (Status s = bgp.add(*line, fds); !s) return s;
      continue;
    }
    std::istringstream in(*line);
    if (line->rfind("dns ", 0) == 0) {
      std::string kind, kind2;
      dns::Cache::Saved d;
      int64_t ms = 0;
      if (!(in >> kind >> d.key >> ms >> d.answer.record_ttl >> d.answer.name >> kind2) ||
          (kind2 != "A" && kind2 != "S") || !fds.empty()) {
        return Status::error(fmt::format("hand-over: unexpected '{}'", *line));
      }
      d.left = std::chrono::milliseconds(ms);
      std::string value;
      while (in >> value) {
        if (kind2 == "A") {
          auto ip = net::Address::parse_ip(value, 0);
          if (!ip) return Status::error(fmt::format("hand-over: dns: bad address '{}'", value));
          d.answer.addresses.push_back(*ip);
          continue;
        }
        dns::SrvTarget t;
        unsigned port = 0, priority = 0, weight = 0;
        size_t slash = value.find('/');
        if (slash == std::string::npos ||
            std::sscanf(value.c_str() + slash, "/%u/%u/%u", &port, &priority, &weight) != 3) {
          return Status::error(fmt::format("hand-over: dns: bad SRV record '{}'", value));
        }
        t.target = value.substr(0, slash);
        t.port = static_cast<uint16_t>(port);
        t.priority = static_cast<uint16_t>(priority);
        t.weight = static_cast<uint16_t>(weight);
        d.answer.srv.push_back(std::move(t));
      }
      h.dns.push_back(std::move(d));
      continue;
    }
    if (line->rfind("endpoint ", 0) == 0) {
      std::string kind;
      upstream::health::HealthManager::EndpointState e;
      int draining = 0;
      if (!(in >> kind >> e.cluster >> e.address >> draining >> e.ejections >> e.ejected_ms_left) ||
          !fds.empty()) {
        return Status::error(fmt::format("hand-over: unexpected '{}'", *line));
      }
      e.draining = draining != 0;
      h.endpoints.push_back(std::move(e));
      continue;
    }
    if (line->rfind("tickets ", 0) == 0) {
      std::string kind, name, hex;
      in >> kind >> name >> hex;
      constexpr size_t kKeyHex = 2 * (16 + 32 + 32);
      if (name.empty() || hex.empty() || hex.size() % kKeyHex != 0 || !fds.empty()) {
        return Status::error(fmt::format("hand-over: unexpected tickets line for '{}'", name));
      }
      std::vector<unsigned char> bytes;
      for (size_t i = 0; i < hex.size(); i += 2) {
        unsigned value = 0;
        if (std::sscanf(hex.c_str() + i, "%2x", &value) != 1) {
          return Status::error(fmt::format("hand-over: tickets for '{}': not hex", name));
        }
        bytes.push_back(static_cast<unsigned char>(value));
      }
      std::vector<tls::TicketKey> keys;
      for (size_t at = 0; at < bytes.size(); at += 80) {
        tls::TicketKey k;
        std::copy_n(bytes.begin() + at, 16, k.name.begin());
        std::copy_n(bytes.begin() + at + 16, 32, k.aes_key.begin());
        std::copy_n(bytes.begin() + at + 48, 32, k.hmac_key.begin());
        keys.push_back(k);
      }
      h.ticket_keys[name] = std::move(keys);
      continue;
    }
    if (line->rfind("sockets ", 0) == 0) {
      if (Status s = read_sockets(in, *line, std::move(fds), h); !s) return s;
      continue;
    }
    if (line->rfind("registration ", 0) == 0) {
      std::string kind;
      if (!(in >> kind >> h.registration_lease) || h.registration_lease <= 0 || !fds.empty()) {
        return Status::error(fmt::format("hand-over: unexpected '{}'", *line));
      }
      continue;
    }
    if (line->rfind("admin ", 0) == 0) {
      std::string kind, address;
      auto parsed = (in >> kind >> address) ? net::Address::parse(address)
                                            : Result<net::Address>(Status::error("no address"));
      if (!parsed || fds.size() != 1) {
        return Status::error(fmt::format("hand-over: unexpected '{}'", *line));
      }
      h.admin = HandedListener{"admin", *parsed, std::move(fds)};
      continue;
    }
    std::string kind, name, address;
    size_t count = 0;
    if (!(in >> kind >> name >> address >> count) || kind != "listener" || count != fds.size()) {
      return Status::error(
          fmt::format("hand-over: unexpected '{}' with {} sockets", *line, fds.size()));
    }
    auto parsed = net::Address::parse(address);
    if (!parsed) {
      return Status::error(fmt::format("hand-over: listener {}: bad address '{}'", name, address));
    }
    // A listener with more sockets than fit in one packet comes in several.
    if (!h.listeners.empty() && h.listeners.back().name == name) {
      for (auto& fd : fds) h.listeners.back().fds.push_back(std::move(fd));
      continue;
    }
    h.listeners.push_back(HandedListener{name, *parsed, std::move(fds)});
  }
}

Status send_bgp_release(int sock, const std::vector<bgp::SessionTransfer>& released) {
  for (const auto& t : released) {
    for (const auto& line : bgp::write_release_lines(t)) {
      if (Status s = send_packet(sock, line, {}); !s) return s;
    }
  }
  return send_packet(sock, "end", {});
}

Result<std::map<std::string, bgp::SessionTransfer>> receive_bgp_release(int sock,
                                                                        Duration timeout) {
  bgp::HandoverReader reader;
  for (;;) {
    std::vector<net::Fd> fds;
    auto line = receive_packet(sock, timeout, &fds);
    if (!line) return line.status();
    if (*line == "end") return std::move(reader.sessions());
    if (Status s = reader.add(*line, fds); !s) return s;
  }
}

}  // namespace sluice::server
