#include "probe/stun_probe.h"

#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <random>

#include <fmt/format.h>

#include "base/clock.h"
#include "base/json.h"
#include "net/socket.h"
#include "probe/url.h"
#include "stun/message.h"

namespace sluice::probe {
namespace {

constexpr std::string_view kScheme = "stun://";
constexpr auto kInitialRto = std::chrono::milliseconds(500);  // RFC 8489 §6.2.1

Result<net::Address> resolve(const StunTarget& t) {
  if (auto ip = net::Address::parse_ip(t.host, t.port)) return *ip;
  addrinfo hints{};
  hints.ai_socktype = SOCK_DGRAM;
  addrinfo* res = nullptr;
  int rc = ::getaddrinfo(t.host.c_str(), nullptr, &hints, &res);
  if (rc != 0 || !res) {
    return Status::error(fmt::format("cannot resolve {}: {}", t.host, ::gai_strerror(rc)));
  }
  net::Address a = net::Address::from_sockaddr(res->ai_addr, res->ai_addrlen);
  ::freeaddrinfo(res);
  a.set_port(t.port);
  return a;
}

double ms(Duration d) {
  return std::chrono::duration<double, std::milli>(d).count();
}

StunAttempt one_binding(int fd, const net::Address& server, Duration timeout) {
  StunAttempt a;
  stun::TransactionId id;
  std::random_device rd;
  for (auto& b : id) b = static_cast<uint8_t>(rd());
  stun::MessageWriter w(stun::kBinding, stun::MessageClass::kRequest, id);
  w.add_string(stun::attr::kSoftware, "sluice probe");
  auto request = w.finish(true);
  std::vector<uint8_t> req(request.begin(), request.end());

  MonoTime start = Clock::steady().now();
  MonoTime deadline = start + timeout;
  MonoTime next_send = start;
  Duration rto = kInitialRto;
  uint8_t buf[1500];
  while (true) {
    MonoTime now = Clock::steady().now();
    if (now >= deadline) {
      a.failure = StunFailure::kNoAnswer;
      a.error = fmt::format("no answer from {} within {:.0f} ms ({} transmissions)",
                            server.to_string(), ms(timeout), a.transmissions);
      return a;
    }
    if (now >= next_send) {
      (void)::sendto(fd, req.data(), req.size(), 0, server.sockaddr_ptr(), server.length());
      ++a.transmissions;
      next_send = now + rto;
      rto *= 2;
    }
    MonoTime wake = std::min(deadline, next_send);
    auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(wake - now).count() + 1;
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(wait)) <= 0) continue;
    ssize_t n = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n < 0) {
      if (errno == ECONNREFUSED) {
        // ICMP port unreachable: keep trying until the timeout, as a client would.
        continue;
      }
      continue;
    }
    stun::ParseResult r = stun::parse(std::span<const uint8_t>(buf, static_cast<size_t>(n)));
    if (r.message && r.message->transaction_id != id) continue;  // a late answer to another
    a.rtt = Clock::steady().now() - start;
    if (!r.message) {
      a.failure = StunFailure::kMalformedAnswer;
      a.error = fmt::format("malformed answer: {}", stun::to_string(r.error));
      return a;
    }
    const stun::Message& m = *r.message;
    if (m.message_class == stun::MessageClass::kError) {
      const stun::Attribute* code = m.find(stun::attr::kErrorCode);
      a.failure = StunFailure::kErrorResponse;
      if (code && code->value.size() >= 4) {
        a.error_code = (code->value[2] & 0x7) * 100 + code->value[3];
        std::string reason(code->value.begin() + 4, code->value.end());
        a.error =
            fmt::format("error response {}{}{}", a.error_code, reason.empty() ? "" : " ", reason);
      } else {
        a.error = "error response without ERROR-CODE";
      }
      return a;
    }
    if (m.message_class != stun::MessageClass::kSuccess || m.method != stun::kBinding) {
      a.failure = StunFailure::kMalformedAnswer;
      a.error = "answer is not a Binding response";
      return a;
    }
    if (const auto* x = m.find(stun::attr::kXorMappedAddress)) {
      a.mapped = stun::read_address(x->value, &m.transaction_id);
    } else if (const auto* p2 = m.find(stun::attr::kMappedAddress)) {
      a.mapped = stun::read_address(p2->value, nullptr);
    }
    if (!a.mapped) {
      a.failure = StunFailure::kMalformedAnswer;
      a.error = "answer without a (valid) XOR-MAPPED-ADDRESS";
      return a;
    }
    if (const auto* o = m.find(stun::attr::kOtherAddress)) {
      a.other_address = stun::read_address(o->value, nullptr);
    }
    if (const auto* o = m.find(stun::attr::kResponseOrigin)) {
      a.response_origin = stun::read_address(o->value, nullptr);
    }
    return a;
  }
}

const char* failure_name(StunFailure f) {
  switch (f) {
    case StunFailure::kNone:
      return "";
    case StunFailure::kResolve:
      return "resolve";
    case StunFailure::kNoAnswer:
      return "no_answer";
    case StunFailure::kErrorResponse:
      return "error_response";
    case StunFailure::kMalformedAnswer:
      return "malformed_answer";
  }
  return "?";
}

}  // namespace

bool is_stun_url(std::string_view text) {
  return text.starts_with(kScheme);
}

Result<StunTarget> parse_stun_url(std::string_view text) {
  if (!is_stun_url(text)) return Status::error("bad URL: expected stun://HOST[:PORT]");
  std::string_view rest = text.substr(kScheme.size());
  if (!rest.empty() && rest.back() == '/') rest.remove_suffix(1);
  StunTarget t;
  std::string_view port;
  if (rest.starts_with("[")) {
    size_t close = rest.find(']');
    if (close == std::string_view::npos) return Status::error("bad URL: unclosed '[' in the host");
    t.host = std::string(rest.substr(1, close - 1));
    rest.remove_prefix(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') return Status::error("bad URL: expected ':PORT' after ']'");
      port = rest.substr(1);
    }
  } else {
    size_t colon = rest.find(':');
    t.host = std::string(rest.substr(0, colon));
    if (colon != std::string_view::npos) port = rest.substr(colon + 1);
  }
  if (t.host.empty() || !valid_host(t.host)) {
    return Status::error(fmt::format("bad URL: '{}' is not a host", t.host));
  }
  if (port.data() != nullptr) {
    unsigned v = 0;
    auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), v);
    if (port.empty() || ec != std::errc() || end != port.data() + port.size() || v == 0 ||
        v > 65535) {
      return Status::error(fmt::format("bad URL: port '{}' is not 1-65535", port));
    }
    t.port = static_cast<uint16_t>(v);
  }
  return t;
}

StunReport run_stun_probe(const std::string& url, const StunTarget& target, int count,
                          Duration timeout) {
  StunReport r;
  r.url = url;
  auto server = resolve(target);
  if (!server) {
    r.failure = StunFailure::kResolve;
    r.error = server.status().message();
    return r;
  }
  r.server = *server;
  net::Fd fd(::socket(server->family(), SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!fd.valid() || ::connect(fd.get(), server->sockaddr_ptr(), server->length()) != 0) {
    r.failure = StunFailure::kNoAnswer;
    r.error = fmt::format("cannot reach {}: {}", server->to_string(), std::strerror(errno));
    return r;
  }
  for (int i = 0; i < count; ++i) {
    // One socket for every request: a NAT keeps one mapping for it, so the mapped addresses
    // of all requests agree unless the mapping changed.
    StunAttempt a = one_binding(fd.get(), *server, timeout);
    if (a.failure != StunFailure::kNone && r.failure == StunFailure::kNone) {
      r.failure = a.failure;
      r.error = a.error;
    }
    r.attempts.push_back(std::move(a));
  }
  return r;
}

std::string text_stun_report(const StunReport& r) {
  std::string out = fmt::format("{} ({})\n", r.url, r.server ? r.server->to_string() : "?");
  for (size_t i = 0; i < r.attempts.size(); ++i) {
    const StunAttempt& a = r.attempts[i];
    if (a.failure == StunFailure::kNone) {
      out += fmt::format("  binding {}: mapped {}  rtt {:.3f} ms  transmissions {}\n", i + 1,
                         a.mapped->to_string(), ms(a.rtt), a.transmissions);
    } else {
      out += fmt::format("  binding {}: {}\n", i + 1, a.error);
    }
  }
  const StunAttempt* first = nullptr;
  bool same = true;
  for (const auto& a : r.attempts) {
    if (!a.mapped) continue;
    if (!first) first = &a;
    same = same && *a.mapped == *first->mapped;
  }
  if (first) {
    out += fmt::format("  mapped address: {}{}\n", first->mapped->to_string(),
                       r.attempts.size() > 1 ? (same ? " (the same for every request)"
                                                     : " (it changed between requests)")
                                             : "");
    if (first->other_address) {
      out += fmt::format(
          "  nat behaviour: not tested (the server offers OTHER-ADDRESS {}; this probe does "
          "not run RFC 5780's tests yet)\n",
          first->other_address->to_string());
    } else {
      out +=
          "  nat behaviour: not tested (the server offers no OTHER-ADDRESS: RFC 5780 needs a "
          "server with a second address)\n";
    }
  }
  return out;
}

std::string json_stun_report(const StunReport& r) {
  std::string out = "{\"url\":";
  append_json_string(r.url, out);
  out += ",\"server\":";
  if (r.server) {
    append_json_string(r.server->to_string(), out);
  } else {
    out += "null";
  }
  out += ",\"bindings\":[";
  for (size_t i = 0; i < r.attempts.size(); ++i) {
    const StunAttempt& a = r.attempts[i];
    if (i) out += ',';
    out += "{\"mapped\":";
    if (a.mapped) {
      append_json_string(a.mapped->to_string(), out);
    } else {
      out += "null";
    }
    fmt::format_to(std::back_inserter(out), ",\"rtt_ms\":{:.3f},\"transmissions\":{}",
                   a.failure == StunFailure::kNone || a.failure == StunFailure::kErrorResponse
                       ? ms(a.rtt)
                       : -1.0,
                   a.transmissions);
    out += ",\"other_address\":";
    if (a.other_address) {
      append_json_string(a.other_address->to_string(), out);
    } else {
      out += "null";
    }
    if (a.error_code) fmt::format_to(std::back_inserter(out), ",\"error_code\":{}", a.error_code);
    out += ",\"error\":";
    append_json_string(a.error, out);
    out += '}';
  }
  out += "],\"failure\":";
  append_json_string(failure_name(r.failure), out);
  out += "}\n";
  return out;
}

}  // namespace sluice::probe
