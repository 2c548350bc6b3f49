#include "bgp/handover.h"

#include <charconv>
#include <sstream>

#include <fmt/format.h>

namespace sluice::bgp {
namespace {

// Under the hand-over's packet size (4096) with room for the words before the data.
constexpr size_t kHexPerLine = 3000;

std::string hex(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) out += fmt::format("{:02x}", c);
  return out;
}

bool unhex(std::string_view text, std::string& out) {
  if (text.size() % 2 != 0) return false;
  for (size_t i = 0; i < text.size(); i += 2) {
    unsigned value = 0;
    auto r = std::from_chars(text.data() + i, text.data() + i + 2, value, 16);
    if (r.ec != std::errc() || r.ptr != text.data() + i + 2) return false;
    out += static_cast<char>(value);
  }
  return true;
}

template <typename T>
bool number(std::string_view text, T& out) {
  auto r = std::from_chars(text.data(), text.data() + text.size(), out);
  return r.ec == std::errc() && r.ptr == text.data() + text.size();
}

int64_t ms(Duration d) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
}

std::string head(std::string_view kind, const std::string& peer) {
  return fmt::format("bgp {} {} {}", kHandoverSectionVersion, kind, peer);
}

std::string route_line(const std::string& peer, const Route& r) {
  std::string line =
      head("route", peer) + ' ' + r.prefix.to_string() + " nh=" +
      hex(std::string_view(reinterpret_cast<const char*>(r.next_hop.data()), r.next_hop.size()));
  line += r.med ? fmt::format(" med={}", *r.med) : std::string(" med=-");
  line += " c=";
  for (size_t i = 0; i < r.communities.size(); ++i) {
    line += fmt::format("{}{}", i ? "," : "", r.communities[i]);
  }
  return line;
}

// Splits "k=v k=v" into a map; false on a word without '='.
bool pairs(std::istringstream& in, std::map<std::string, std::string>& out) {
  std::string word;
  while (in >> word) {
    size_t eq = word.find('=');
    if (eq == std::string::npos) return false;
    out[word.substr(0, eq)] = word.substr(eq + 1);
  }
  return true;
}

Status bad(std::string_view line) {
  return Status::error(fmt::format("hand-over: unexpected BGP line '{}'", line.substr(0, 200)));
}

}  // namespace

bool is_handover_line(std::string_view line) {
  return line.starts_with("bgp ");
}

std::vector<std::string> write_session_lines(const SessionTransfer& t) {
  const OpenMessage& o = t.peer_open;
  std::string caps;
  for (auto [on, name] : {std::pair{o.four_octet_as, "as4"}, std::pair{o.route_refresh, "rr"},
                          std::pair{o.ipv4_unicast, "v4"}, std::pair{o.ipv6_unicast, "v6"}}) {
    if (!on) continue;
    if (!caps.empty()) caps += ',';
    caps += name;
  }
  std::vector<std::string> lines;
  lines.push_back(head("session", t.peer) +
                  fmt::format(" remote_as={} local_as={} router_id={} md5={} peer_as={} "
                              "peer_id={} peer_hold={} caps={} hold_ms={} uptime_ms={}",
                              t.remote_as, t.local_as, t.router_id, t.md5 ? 1 : 0, o.as,
                              o.router_id, o.hold_time, caps.empty() ? "-" : caps, ms(t.hold),
                              ms(t.uptime)));
  for (const Route& r : t.sent) lines.push_back(route_line(t.peer, r));
  return lines;
}

std::vector<std::string> write_release_lines(const SessionTransfer& t) {
  std::vector<std::string> lines;
  lines.push_back(head("release", t.peer) +
                  fmt::format(" established={} hold_left_ms={} keepalive_left_ms={} "
                              "stats={},{},{},{},{}",
                              t.established ? 1 : 0, ms(t.hold_left), ms(t.keepalive_left),
                              t.stats[0], t.stats[1], t.stats[2], t.stats[3], t.stats[4]));
  if (!t.established) return lines;
  for (const Route& r : t.sent) lines.push_back(route_line(t.peer, r));
  for (auto [kind, bytes] : {std::pair{"in", &t.in}, std::pair{"out", &t.out}}) {
    std::string h = hex(*bytes);
    for (size_t at = 0; at < h.size(); at += kHexPerLine) {
      lines.push_back(head(kind, t.peer) + ' ' + h.substr(at, kHexPerLine));
    }
  }
  std::string line;
  for (const Prefix& p : t.received) {
    if (line.empty()) line = head("received", t.peer);
    line += ' ' + p.to_string();
    if (line.size() > kHexPerLine) lines.push_back(std::exchange(line, {}));
  }
  if (!line.empty()) lines.push_back(std::move(line));
  return lines;
}

Status HandoverReader::add(std::string_view line, std::vector<net::Fd>& fds) {
  std::istringstream in{std::string(line)};
  std::string word, kind, peer;
  uint32_t version = 0;
  if (!(in >> word >> version >> kind >> peer) || word != "bgp") return bad(line);
  if (version > kHandoverSectionVersion) {
    return Status::error(fmt::format(
        "hand-over: BGP section version {} is newer than this binary's {}: upgrade to a binary "
        "at least as new as the running one",
        version, kHandoverSectionVersion));
  }
  bool takes_fd = kind == "session";
  if (fds.size() != (takes_fd ? 1u : 0u)) return bad(line);
  if (kind == "session") {
    std::map<std::string, std::string> kv;
    if (!pairs(in, kv) || sessions_.count(peer)) return bad(line);
    SessionTransfer t;
    t.peer = peer;
    t.fd = std::move(fds.front());
    fds.clear();
    OpenMessage& o = t.peer_open;
    int64_t hold_ms = 0, uptime_ms = 0;
    int md5 = 0;
    if (!number(kv["remote_as"], t.remote_as) || !number(kv["local_as"], t.local_as) ||
        !number(kv["router_id"], t.router_id) || !number(kv["md5"], md5) ||
        !number(kv["peer_as"], o.as) || !number(kv["peer_id"], o.router_id) ||
        !number(kv["peer_hold"], o.hold_time) || !number(kv["hold_ms"], hold_ms) ||
        !number(kv["uptime_ms"], uptime_ms) || kv["caps"].empty()) {
      return bad(line);
    }
    t.md5 = md5 != 0;
    std::istringstream caps(kv["caps"]);
    std::string cap;
    while (std::getline(caps, cap, ',')) {
      o.four_octet_as |= cap == "as4";
      o.route_refresh |= cap == "rr";
      o.ipv4_unicast |= cap == "v4";
      o.ipv6_unicast |= cap == "v6";
    }
    t.hold = std::chrono::milliseconds(hold_ms);
    t.uptime = std::chrono::milliseconds(uptime_ms);
    sessions_.emplace(peer, std::move(t));
    return Status::ok();
  }
  auto it = sessions_.find(peer);
  if (it == sessions_.end() && kind == "release") {
    // Step 2 read on its own (the new process holds step 1's sessions already).
    it = sessions_.emplace(peer, SessionTransfer{}).first;
    it->second.peer = peer;
  }
  if (it == sessions_.end()) return bad(line);
  SessionTransfer& t = it->second;
  if (kind == "release") {
    std::map<std::string, std::string> kv;
    int established = 0;
    int64_t hold_left = 0, keepalive_left = 0;
    if (!pairs(in, kv) || t.released || !number(kv["established"], established) ||
        !number(kv["hold_left_ms"], hold_left) ||
        !number(kv["keepalive_left_ms"], keepalive_left)) {
      return bad(line);
    }
    std::istringstream stats(kv["stats"]);
    for (uint64_t& s : t.stats) {
      std::string n;
      if (!std::getline(stats, n, ',') || !number(n, s)) return bad(line);
    }
    t.released = true;
    t.established = established != 0;
    t.hold_left = std::chrono::milliseconds(hold_left);
    t.keepalive_left = std::chrono::milliseconds(keepalive_left);
    t.sent.clear();  // the list that follows is the one in force
    return Status::ok();
  }
  if (kind == "route") {
    std::string prefix;
    std::map<std::string, std::string> kv;
    if (!(in >> prefix) || !pairs(in, kv)) return bad(line);
    auto p = Prefix::parse(prefix);
    std::string nh;
    if (!p || !unhex(kv["nh"], nh) || nh.size() != 16) return bad(line);
    Route r;
    r.prefix = *p;
    std::copy(nh.begin(), nh.end(), r.next_hop.begin());
    if (kv["med"] != "-") {
      uint32_t med = 0;
      if (!number(kv["med"], med)) return bad(line);
      r.med = med;
    }
    std::istringstream cs(kv["c"]);
    std::string c;
    while (std::getline(cs, c, ',')) {
      uint32_t value = 0;
      if (!number(c, value)) return bad(line);
      r.communities.push_back(value);
    }
    t.sent.push_back(std::move(r));
    return Status::ok();
  }
  if ((kind == "in" || kind == "out") && t.released) {
    std::string data;
    if (!(in >> data) || !unhex(data, kind == "in" ? t.in : t.out)) return bad(line);
    return Status::ok();
  }
  if (kind == "received" && t.released) {
    std::string prefix;
    while (in >> prefix) {
      auto p = Prefix::parse(prefix);
      if (!p) return bad(line);
      t.received.push_back(*p);
    }
    return Status::ok();
  }
  return bad(line);
}

}  // namespace sluice::bgp
