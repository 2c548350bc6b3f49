#include "probe/stun_probe.h"

#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
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
constexpr std::string_view kTcpScheme = "stun+tcp://";
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

// The answer `m` (from `from`) to one request, read into `a`.
void read_answer(const stun::ParseResult& r, const net::Address& from, StunAttempt& a) {
  a.responder = from;
  if (!r.message) {
    a.failure = StunFailure::kMalformedAnswer;
    a.error = fmt::format("malformed answer: {}", stun::to_string(r.error));
    return;
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
    return;
  }
  if (m.message_class != stun::MessageClass::kSuccess || m.method != stun::kBinding) {
    a.failure = StunFailure::kMalformedAnswer;
    a.error = "answer is not a Binding response";
    return;
  }
  if (const auto* x = m.find(stun::attr::kXorMappedAddress)) {
    a.mapped = stun::read_address(x->value, &m.transaction_id);
  } else if (const auto* p2 = m.find(stun::attr::kMappedAddress)) {
    a.mapped = stun::read_address(p2->value, nullptr);
  }
  if (!a.mapped) {
    a.failure = StunFailure::kMalformedAnswer;
    a.error = "answer without a (valid) XOR-MAPPED-ADDRESS";
    return;
  }
  if (const auto* o = m.find(stun::attr::kOtherAddress)) {
    a.other_address = stun::read_address(o->value, nullptr);
  }
  if (const auto* o = m.find(stun::attr::kResponseOrigin)) {
    a.response_origin = stun::read_address(o->value, nullptr);
  }
}

// A Binding request with SOFTWARE, CHANGE-REQUEST when `change`, PADDING and FINGERPRINT.
std::vector<uint8_t> binding_request(const stun::TransactionId& id, uint8_t change) {
  stun::MessageWriter w(stun::kBinding, stun::MessageClass::kRequest, id);
  w.add_string(stun::attr::kSoftware, "sluice probe");
  if (change) {
    uint8_t flags[4] = {0, 0, 0, change};
    w.add(stun::attr::kChangeRequest, flags);
  }
  // As large as the fullest answer (IPv6: XOR-MAPPED-ADDRESS, OTHER-ADDRESS, RESPONSE-ORIGIN
  // and SOFTWARE), so that the server pays no amplification for it.
  uint8_t padding[64] = {};
  w.add(stun::attr::kPadding, padding);
  auto bytes = w.finish(true);
  return {bytes.begin(), bytes.end()};
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

// Waits up to `until` for `events` on `fd`; false on timeout.
bool wait_for(int fd, short events, MonoTime until) {
  for (;;) {
    MonoTime now = Clock::steady().now();
    if (now >= until) return false;
    auto ms_left = std::chrono::duration_cast<std::chrono::milliseconds>(until - now).count() + 1;
    pollfd p{fd, events, 0};
    int n = ::poll(&p, 1, static_cast<int>(ms_left));
    if (n > 0) return true;
    if (n < 0 && errno != EINTR) return false;
  }
}

// One Binding request on the connection and its answer, framed by the header's length
// (RFC 8489 §6.2.2: messages back to back). Sent once: TCP retransmits.
StunAttempt tcp_binding(int fd, const net::Address& server, Duration timeout) {
  StunAttempt a;
  stun::TransactionId id;
  std::random_device rd;
  for (auto& b : id) b = static_cast<uint8_t>(rd());
  std::vector<uint8_t> request = binding_request(id, 0);
  MonoTime start = Clock::steady().now();
  MonoTime until = start + timeout;
  auto no_answer = [&](std::string why) {
    a.failure = StunFailure::kNoAnswer;
    a.error = std::move(why);
    return a;
  };
  for (size_t sent = 0; sent < request.size();) {
    ssize_t n = ::send(fd, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (n > 0) {
      sent += static_cast<size_t>(n);
    } else if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
      if (!wait_for(fd, POLLOUT, until)) break;
    } else {
      return no_answer(
          fmt::format("connection to {} failed: {}", server.to_string(), std::strerror(errno)));
    }
  }
  a.transmissions = 1;
  std::vector<uint8_t> answer;
  size_t want = stun::kHeaderSize;
  uint8_t buf[2048];
  while (answer.size() < want) {
    ssize_t n = ::recv(fd, buf, std::min(sizeof buf, want - answer.size()), 0);
    if (n > 0) {
      answer.insert(answer.end(), buf, buf + n);
      if (answer.size() == stun::kHeaderSize) {
        // The header says how much follows; one that is not STUN's is read as it is.
        bool stun_header = (answer[0] & 0xC0) == 0 && answer[4] == 0x21 && answer[5] == 0x12 &&
                           answer[6] == 0xA4 && answer[7] == 0x42;
        if (stun_header) want += size_t{answer[2]} << 8 | answer[3];
      }
    } else if (n == 0) {
      return no_answer(
          fmt::format("{} closed the connection before an answer", server.to_string()));
    } else if (errno == EAGAIN || errno == EINTR) {
      if (!wait_for(fd, POLLIN, until)) {
        return no_answer(fmt::format("no answer from {} within {:.0f} ms (tcp)", server.to_string(),
                                     ms(timeout)));
      }
    } else {
      return no_answer(
          fmt::format("connection to {} failed: {}", server.to_string(), std::strerror(errno)));
    }
  }
  a.rtt = Clock::steady().now() - start;
  stun::ParseResult r = stun::parse(answer);
  read_answer(r, server, a);
  if (r.message && !std::equal(id.begin(), id.end(), r.message->transaction_id.begin())) {
    a.failure = StunFailure::kMalformedAnswer;
    a.error = "malformed answer: another transaction's";
    a.mapped.reset();
  }
  return a;
}

// stun+tcp://: `count` requests on one connection, connected within `timeout`.
void run_stun_tcp(const net::Address& server, int count, Duration timeout, StunReport& r) {
  net::Fd fd(::socket(server.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  int rc = fd.valid() ? ::connect(fd.get(), server.sockaddr_ptr(), server.length()) : -1;
  int error = rc == 0 ? 0 : errno;
  if (rc != 0 && error == EINPROGRESS) {
    if (!wait_for(fd.get(), POLLOUT, Clock::steady().now() + timeout)) {
      r.failure = StunFailure::kNoAnswer;
      r.error = fmt::format("cannot connect to {}: no answer within {:.0f} ms", server.to_string(),
                            ms(timeout));
      return;
    }
    socklen_t len = sizeof error;
    ::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &error, &len);
  }
  if (error != 0) {
    r.failure = StunFailure::kNoAnswer;
    r.error = fmt::format("cannot connect to {}: {}", server.to_string(), std::strerror(error));
    return;
  }
  for (int i = 0; i < count; ++i) {
    StunAttempt a = tcp_binding(fd.get(), server, timeout);
    bool failed = a.failure != StunFailure::kNone;
    if (failed && r.failure == StunFailure::kNone) {
      r.failure = a.failure;
      r.error = a.error;
    }
    r.attempts.push_back(std::move(a));
    // The connection is in an unknown state after a failure: the rest would fail alike.
    if (failed) break;
  }
}

}  // namespace

bool is_stun_url(std::string_view text) {
  return text.starts_with(kScheme) || text.starts_with(kTcpScheme);
}

Result<StunTarget> parse_stun_url(std::string_view text) {
  if (!is_stun_url(text)) {
    return Status::error("bad URL: expected stun://HOST[:PORT] or stun+tcp://HOST[:PORT]");
  }
  bool tcp = text.starts_with(kTcpScheme);
  std::string_view rest = text.substr(tcp ? kTcpScheme.size() : kScheme.size());
  if (!rest.empty() && rest.back() == '/') rest.remove_suffix(1);
  StunTarget t;
  t.tcp = tcp;
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

std::vector<StunAttempt> exchange_bindings(std::span<const StunRequest> requests,
                                           Duration timeout) {
  struct Pending {
    stun::TransactionId id;
    std::vector<uint8_t> bytes;
    MonoTime next_send;
    Duration rto = kInitialRto;
    bool done = false;
  };
  std::vector<StunAttempt> out(requests.size());
  std::vector<Pending> pending(requests.size());
  std::random_device rd;
  MonoTime start = Clock::steady().now();
  MonoTime deadline = start + timeout;
  for (size_t i = 0; i < requests.size(); ++i) {
    for (auto& b : pending[i].id) b = static_cast<uint8_t>(rd());
    pending[i].bytes = binding_request(pending[i].id, requests[i].change);
    pending[i].next_send = start;
  }
  std::vector<pollfd> fds;
  for (const auto& r : requests) {
    if (std::none_of(fds.begin(), fds.end(), [&](const pollfd& p) { return p.fd == r.fd; })) {
      fds.push_back(pollfd{r.fd, POLLIN, 0});
    }
  }
  size_t open = requests.size();
  uint8_t buf[1500];
  while (open > 0) {
    MonoTime now = Clock::steady().now();
    if (now >= deadline) break;
    MonoTime wake = deadline;
    for (size_t i = 0; i < requests.size(); ++i) {
      Pending& p = pending[i];
      if (p.done) continue;
      if (now >= p.next_send) {
        const net::Address& to = requests[i].to;
        (void)::sendto(requests[i].fd, p.bytes.data(), p.bytes.size(), 0, to.sockaddr_ptr(),
                       to.length());
        ++out[i].transmissions;
        p.next_send = now + p.rto;
        p.rto *= 2;
      }
      wake = std::min(wake, p.next_send);
    }
    auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(wake - now).count() + 1;
    for (auto& p : fds) p.revents = 0;
    if (::poll(fds.data(), fds.size(), static_cast<int>(wait)) <= 0) continue;
    for (const auto& pfd : fds) {
      if (!(pfd.revents & (POLLIN | POLLERR))) continue;
      sockaddr_storage from{};
      socklen_t from_len = sizeof from;
      // ECONNREFUSED (ICMP port unreachable) included: keep trying until the timeout, as a
      // client would.
      ssize_t n = ::recvfrom(pfd.fd, buf, sizeof buf, MSG_DONTWAIT,
                             reinterpret_cast<sockaddr*>(&from), &from_len);
      if (n < 0) continue;
      std::span<const uint8_t> got(buf, static_cast<size_t>(n));
      stun::ParseResult r = stun::parse(got);
      // The transaction it answers; a malformed answer is the oldest open one's on that socket.
      size_t which = requests.size();
      for (size_t i = 0; i < requests.size(); ++i) {
        if (pending[i].done || requests[i].fd != pfd.fd) continue;
        bool same_id = got.size() >= stun::kHeaderSize &&
                       std::equal(pending[i].id.begin(), pending[i].id.end(), got.begin() + 8);
        if (same_id || (!r.message && which == requests.size())) which = i;
        if (same_id) break;
      }
      if (which == requests.size()) continue;  // a late answer to another
      StunAttempt& a = out[which];
      a.rtt = Clock::steady().now() - start;
      read_answer(r, net::Address::from_sockaddr(reinterpret_cast<sockaddr*>(&from), from_len), a);
      pending[which].done = true;
      --open;
    }
  }
  for (size_t i = 0; i < requests.size(); ++i) {
    if (pending[i].done) continue;
    out[i].failure = StunFailure::kNoAnswer;
    out[i].error = fmt::format("no answer from {} within {:.0f} ms ({} transmissions)",
                               requests[i].to.to_string(), ms(timeout), out[i].transmissions);
  }
  return out;
}

StunReport run_stun_probe(const std::string& url, const StunTarget& target, int count,
                          Duration timeout) {
  StunReport r;
  r.url = url;
  r.tcp = target.tcp;
  auto server = resolve(target);
  if (!server) {
    r.failure = StunFailure::kResolve;
    r.error = server.status().message();
    return r;
  }
  r.server = *server;
  if (target.tcp) {
    run_stun_tcp(*server, count, timeout, r);
    return r;
  }
  net::Fd fd(::socket(server->family(), SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!fd.valid() || ::connect(fd.get(), server->sockaddr_ptr(), server->length()) != 0) {
    r.failure = StunFailure::kNoAnswer;
    r.error = fmt::format("cannot reach {}: {}", server->to_string(), std::strerror(errno));
    return r;
  }
  for (int i = 0; i < count; ++i) {
    // One socket for every request: a NAT keeps one mapping for it, so the mapped addresses
    // of all requests agree unless the mapping changed.
    StunRequest req{fd.get(), *server, 0};
    StunAttempt a = std::move(exchange_bindings(std::span(&req, 1), timeout).front());
    if (a.failure != StunFailure::kNone && r.failure == StunFailure::kNone) {
      r.failure = a.failure;
      r.error = a.error;
    }
    r.attempts.push_back(std::move(a));
  }
  // RFC 5780's tests only against a server that offers them.
  if (r.failure == StunFailure::kNone && !r.attempts.empty() && r.attempts[0].other_address) {
    r.nat = discover_nat(*server, timeout);
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
    if (r.nat.ran) {
      out += text_nat_report(r.nat);
    } else if (r.tcp) {
      out += "  nat behaviour: not tested over TCP (RFC 5780's tests need UDP)\n";
    } else {
      out +=
          "  nat behaviour: cannot tell (the server offers no OTHER-ADDRESS: RFC 5780 needs a "
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
  out += r.tcp ? ",\"transport\":\"tcp\"" : ",\"transport\":\"udp\"";
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
  out += "],\"nat\":";
  out += r.nat.ran ? json_nat_report(r.nat) : "null";
  out += ",\"failure\":";
  append_json_string(failure_name(r.failure), out);
  out += "}\n";
  return out;
}

}  // namespace sluice::probe
