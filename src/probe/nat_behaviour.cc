#include "probe/nat_behaviour.h"

#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

#include "base/json.h"
#include "net/socket.h"
#include "probe/stun_probe.h"
#include "stun/binding.h"

namespace sluice::probe {
namespace {

// A UDP socket bound to the address this host sends to `server` from (a connected socket's
// local address), port picked by the kernel: its own address is known, to be compared with
// the mapped one.
Result<std::pair<net::Fd, net::Address>> bound_socket(const net::Address& server) {
  net::Fd route(::socket(server.family(), SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!route.valid() || ::connect(route.get(), server.sockaddr_ptr(), server.length()) != 0) {
    return Status::error(
        fmt::format("cannot reach {}: {}", server.to_string(), std::strerror(errno)));
  }
  auto local = net::local_address(route.get());
  if (!local) return local.status();
  local->set_port(0);
  net::Fd fd(::socket(server.family(), SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!fd.valid() || ::bind(fd.get(), local->sockaddr_ptr(), local->length()) != 0) {
    return Status::error(
        fmt::format("cannot bind {}: {}", local->to_string(), std::strerror(errno)));
  }
  auto bound = net::local_address(fd.get());
  if (!bound) return bound.status();
  return std::make_pair(std::move(fd), *bound);
}

const char* change_name(uint8_t change) {
  if (change == (stun::kChangeIp | stun::kChangePort)) return "ip and port";
  if (change == stun::kChangePort) return "port";
  if (change == stun::kChangeIp) return "ip";
  return "";
}

NatTest record(std::string name, const StunRequest& req, const StunAttempt& a) {
  NatTest t;
  t.name = std::move(name);
  t.to = req.to;
  t.change = change_name(req.change);
  t.mapped = a.mapped;
  t.answer_from = a.responder;
  if (a.failure != StunFailure::kNone) {
    t.result = a.error;
  } else {
    t.result =
        fmt::format("answer from {}, mapped {}", a.responder->to_string(), a.mapped->to_string());
  }
  return t;
}

// §4.3: Test II (the other IP, same port) and Test III (the other IP and port) against Test I.
void judge_mapping(NatReport& r, const StunAttempt& one, const StunAttempt& two,
                   const StunAttempt& three) {
  if (two.failure != StunFailure::kNone) {
    r.mapping_detail = fmt::format("cannot tell: mapping test II: {}", two.error);
    return;
  }
  if (*two.mapped == *one.mapped) {
    r.mapping = NatBehaviour::kEndpointIndependent;
    r.mapping_detail =
        fmt::format("the same mapped address {} towards the server and towards its other IP",
                    one.mapped->to_string());
    return;
  }
  if (three.failure != StunFailure::kNone) {
    r.mapping_detail = fmt::format("cannot tell: mapping test III: {}", three.error);
    return;
  }
  if (*three.mapped == *two.mapped) {
    r.mapping = NatBehaviour::kAddressDependent;
    r.mapping_detail = fmt::format(
        "mapped {} towards the server, {} towards its other IP, the same towards its other IP "
        "and port",
        one.mapped->to_string(), two.mapped->to_string());
    return;
  }
  r.mapping = NatBehaviour::kAddressAndPortDependent;
  r.mapping_detail = fmt::format(
      "mapped {} towards the server, {} towards its other IP, {} towards its other IP and port",
      one.mapped->to_string(), two.mapped->to_string(), three.mapped->to_string());
}

// §4.4: Test II (answer from the other IP and port) and Test III (from the other port).
void judge_filtering(NatReport& r, const StunAttempt& two, const net::Address& two_from,
                     const StunAttempt& three, const net::Address& three_from) {
  struct Check {
    const StunAttempt& attempt;
    const net::Address& want;
    const char* name;
  };
  for (const Check& c : {Check{two, two_from, "II"}, Check{three, three_from, "III"}}) {
    const StunAttempt& a = c.attempt;
    if (a.failure == StunFailure::kNone && !(*a.responder == c.want)) {
      r.filtering_detail = fmt::format(
          "cannot tell: filtering test {} was answered from {}, not from {} as its "
          "CHANGE-REQUEST asked",
          c.name, a.responder->to_string(), c.want.to_string());
      return;
    }
    if (a.failure != StunFailure::kNone && a.failure != StunFailure::kNoAnswer) {
      r.filtering_detail = fmt::format("cannot tell: filtering test {}: {}", c.name, a.error);
      return;
    }
  }
  if (two.failure == StunFailure::kNone) {
    r.filtering = NatBehaviour::kEndpointIndependent;
    r.filtering_detail = fmt::format("an answer from the server's other IP and port {} came in",
                                     two_from.to_string());
  } else if (three.failure == StunFailure::kNone) {
    r.filtering = NatBehaviour::kAddressDependent;
    r.filtering_detail = fmt::format(
        "an answer from the server's other port {} came in, none from its other IP and port {}",
        three_from.to_string(), two_from.to_string());
  } else {
    r.filtering = NatBehaviour::kAddressAndPortDependent;
    r.filtering_detail =
        fmt::format("no answer from the server's other IP and port {} nor from its other port {}",
                    two_from.to_string(), three_from.to_string());
  }
}

void append_address(const std::optional<net::Address>& a, std::string& out) {
  if (a) {
    append_json_string(a->to_string(), out);
  } else {
    out += "null";
  }
}

}  // namespace

const char* to_string(NatBehaviour b) {
  switch (b) {
    case NatBehaviour::kUnknown:
      return "unknown";
    case NatBehaviour::kEndpointIndependent:
      return "endpoint-independent";
    case NatBehaviour::kAddressDependent:
      return "address-dependent";
    case NatBehaviour::kAddressAndPortDependent:
      return "address-and-port-dependent";
  }
  return "?";
}

NatReport discover_nat(const net::Address& server, Duration timeout) {
  NatReport r;
  r.ran = true;
  auto mapping = bound_socket(server);
  if (!mapping) {
    r.mapping_detail = r.filtering_detail =
        fmt::format("cannot tell: {}", mapping.status().message());
    return r;
  }
  auto filtering = bound_socket(server);
  if (!filtering) {
    r.mapping_detail = r.filtering_detail =
        fmt::format("cannot tell: {}", filtering.status().message());
    return r;
  }
  int m = mapping->first.get();
  int f = filtering->first.get();

  // Test I of each: the mapped address, and the server's other address.
  StunRequest first[] = {{m, server, 0}, {f, server, 0}};
  std::vector<StunAttempt> one = exchange_bindings(first, timeout);
  r.tests.push_back(record("mapping I", first[0], one[0]));
  r.tests.push_back(record("filtering I", first[1], one[1]));
  if (one[0].failure != StunFailure::kNone || one[1].failure != StunFailure::kNone) {
    const StunAttempt& bad = one[0].failure != StunFailure::kNone ? one[0] : one[1];
    r.mapping_detail = r.filtering_detail = fmt::format("cannot tell: test I: {}", bad.error);
    return r;
  }
  if (!one[0].other_address || one[0].other_address->family() != server.family()) {
    r.mapping_detail = r.filtering_detail =
        "cannot tell: the answer to test I carries no OTHER-ADDRESS";
    return r;
  }
  const net::Address other = *one[0].other_address;
  r.other_address = other;
  r.behind_nat = !(*one[0].mapped == mapping->second);

  // Phase two, at once: the mapping tests from the first socket, the filtering tests from
  // the second (which has sent to the server's address alone).
  net::Address other_ip = stun::combine(other, server);
  StunRequest second[] = {{m, other_ip, 0},
                          {m, other, 0},
                          {f, server, stun::kChangeIp | stun::kChangePort},
                          {f, server, stun::kChangePort}};
  size_t n = *r.behind_nat ? 4 : 2;  // without a NAT the mapping is known already
  std::span<const StunRequest> phase(*r.behind_nat ? second : second + 2, n);
  std::vector<StunAttempt> two = exchange_bindings(phase, timeout);
  if (*r.behind_nat) {
    r.tests.push_back(record("mapping II", second[0], two[0]));
    r.tests.push_back(record("mapping III", second[1], two[1]));
    judge_mapping(r, one[0], two[0], two[1]);
  } else {
    r.mapping = NatBehaviour::kEndpointIndependent;
    r.mapping_detail =
        fmt::format("no NAT: the mapped address {} is this host's own", one[0].mapped->to_string());
  }
  const StunAttempt& f2 = two[n - 2];
  const StunAttempt& f3 = two[n - 1];
  r.tests.push_back(record("filtering II", second[2], f2));
  r.tests.push_back(record("filtering III", second[3], f3));
  judge_filtering(r, f2, other, f3, stun::combine(server, other));
  return r;
}

std::string text_nat_report(const NatReport& r) {
  std::string out;
  out += fmt::format("  nat mapping: {}\n",
                     r.mapping == NatBehaviour::kUnknown
                         ? r.mapping_detail
                         : fmt::format("{} ({})", to_string(r.mapping), r.mapping_detail));
  out += fmt::format("  nat filtering: {}\n",
                     r.filtering == NatBehaviour::kUnknown
                         ? r.filtering_detail
                         : fmt::format("{} ({})", to_string(r.filtering), r.filtering_detail));
  for (const auto& t : r.tests) {
    out += fmt::format("  test {}: to {}{}{}: {}\n", t.name, t.to.to_string(),
                       t.change.empty() ? "" : " change ", t.change, t.result);
  }
  return out;
}

std::string json_nat_report(const NatReport& r) {
  std::string out = "{\"mapping\":";
  append_json_string(to_string(r.mapping), out);
  out += ",\"mapping_detail\":";
  append_json_string(r.mapping_detail, out);
  out += ",\"filtering\":";
  append_json_string(to_string(r.filtering), out);
  out += ",\"filtering_detail\":";
  append_json_string(r.filtering_detail, out);
  out += ",\"other_address\":";
  append_address(r.other_address, out);
  out += ",\"behind_nat\":";
  out += !r.behind_nat ? "null" : *r.behind_nat ? "true" : "false";
  out += ",\"tests\":[";
  for (size_t i = 0; i < r.tests.size(); ++i) {
    const NatTest& t = r.tests[i];
    if (i) out += ',';
    out += "{\"test\":";
    append_json_string(t.name, out);
    out += ",\"to\":";
    append_json_string(t.to.to_string(), out);
    out += ",\"change\":";
    append_json_string(t.change, out);
    out += ",\"answer_from\":";
    append_address(t.answer_from, out);
    out += ",\"mapped\":";
    append_address(t.mapped, out);
    out += ",\"result\":";
    append_json_string(t.result, out);
    out += '}';
  }
  out += "]}";
  return out;
}

}  // namespace sluice::probe
