#include "dns/resolver.h"

#include <ares.h>
#include <poll.h>
#include <sys/stat.h>

#include <algorithm>
#include <fstream>
#include <mutex>
#include <sstream>

#include <fmt/format.h>

#include "base/log.h"
#include "dns/message.h"

namespace sluice::dns {

const char* to_string(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::kNone:
      return "ok";
    case ErrorKind::kNxDomain:
      return "NXDOMAIN";
    case ErrorKind::kNoData:
      return "NODATA";
    case ErrorKind::kTimeout:
      return "timeout";
    case ErrorKind::kServFail:
      return "SERVFAIL";
    case ErrorKind::kRefused:
      return "REFUSED";
    case ErrorKind::kCnameLoop:
      return "CNAME loop";
    case ErrorKind::kCnameChainTooLong:
      return "CNAME chain too long";
    case ErrorKind::kMalformed:
      return "malformed response";
    case ErrorKind::kOther:
      return "error";
  }
  return "error";
}

// --- the parts of the cache and of a lookup in flight -----------------------------------

struct Resolver::Lookup {
  struct Part {
    uint16_t qtype = 0;
    Answer result;
    uint32_t ttl = UINT32_MAX;  // smallest TTL seen along the chain so far
    std::vector<std::string> seen;
  };
  std::string key;
  std::string name;
  QueryType type = QueryType::kAddress;
  MonoTime started{};
  std::vector<Part> parts;  // one per record type asked (AAAA then A for Family::kBoth)
  size_t pending = 0;
};

// The askers of one name and type, and the lookup that will answer them.
struct Resolver::InFlight {
  std::vector<Callback> waiters;
  std::unique_ptr<Lookup> lookup;
};

// One c-ares socket registered with the poller.
class Resolver::Socket final : public event::IoHandler {
 public:
  Socket(Resolver& r, int fd) : r_(r), fd_(fd) {}
  void on_io(uint32_t events) override {
    bool read = events & (event::kReadable | event::kError | event::kPeerClosed);
    bool write = events & event::kWritable;
    r_.process(read ? fd_ : ARES_SOCKET_BAD, write ? fd_ : ARES_SOCKET_BAD);
  }

 private:
  Resolver& r_;
  int fd_;
};

namespace {

struct QueryArg {
  Resolver* resolver;
  void* lookup;
  size_t part;
  std::string qname;
};

std::once_flag ares_init_once;

uint32_t negative_ttl(const Message& m) {
  for (const auto& r : m.authority) {
    if (r.type == kTypeSoa) return std::min(r.ttl, r.soa_minimum);
  }
  return 0;
}

CacheConfig cache_config(const ResolverConfig& c) {
  return CacheConfig{c.min_ttl, c.max_ttl, c.negative_min_ttl, c.negative_max_ttl, c.stale_ttl};
}

bool valid_query_name(std::string_view name) {
  if (name.empty() || name.size() > 253) return false;
  size_t label = 0;
  for (char c : name) {
    if (c == '.') {
      if (label == 0) return false;
      label = 0;
    } else if (++label > 63 || static_cast<unsigned char>(c) <= ' ') {
      return false;
    }
  }
  return label > 0;
}

std::string chain_text(const std::string& name, const std::vector<std::string>& chain) {
  std::string s = name;
  for (const auto& c : chain) s += " -> " + c;
  return s;
}

}  // namespace

// --- setup --------------------------------------------------------------------------------

Resolver::Resolver(event::Loop& loop, ResolverConfig config)
    : loop_(loop),
      config_(std::move(config)),
      timer_(loop.timers(), [this] { process(ARES_SOCKET_BAD, ARES_SOCKET_BAD); }),
      cache_(cache_config(config_)) {}

Result<std::unique_ptr<Resolver>> Resolver::create(event::Loop& loop, ResolverConfig config) {
  std::unique_ptr<Resolver> r(new Resolver(loop, std::move(config)));
  if (Status s = r->init(); !s) return s;
  return r;
}

Status Resolver::init() {
  int rc = ARES_SUCCESS;
  std::call_once(ares_init_once, [&] { rc = ares_library_init(ARES_LIB_INIT_ALL); });
  if (rc != ARES_SUCCESS) return Status::error(fmt::format("c-ares: {}", ares_strerror(rc)));
  ares_options opts{};
  int mask = ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES;
  opts.sock_state_cb = &Resolver::on_sock_state;
  opts.sock_state_cb_data = this;
  opts.timeout = static_cast<int>(
      std::chrono::duration_cast<std::chrono::milliseconds>(config_.timeout).count());
  opts.tries = static_cast<int>(config_.attempts);
  mask |= config_.rotate ? ARES_OPT_ROTATE : ARES_OPT_NOROTATE;
  ares_channel channel = nullptr;
  rc = ares_init_options(&channel, &opts, mask);
  if (rc != ARES_SUCCESS) {
    return Status::error(fmt::format("cannot start the DNS resolver: {}", ares_strerror(rc)));
  }
  channel_ = channel;
  if (!config_.servers.empty()) {
    std::string csv;
    for (const auto& a : config_.servers) {
      if (!csv.empty()) csv += ',';
      csv += a.to_string();
    }
    rc = ares_set_servers_ports_csv(channel, csv.c_str());
    if (rc != ARES_SUCCESS) {
      return Status::error(fmt::format("DNS servers {}: {}", csv, ares_strerror(rc)));
    }
  }
  return Status::ok();
}

Resolver::~Resolver() {
  destroying_ = true;
  timer_.cancel();
  if (channel_) ares_destroy(static_cast<ares_channel>(channel_));
  for (auto& [fd, s] : sockets_) loop_.poller().remove(fd);
}

std::string Resolver::servers_text() const {
  if (config_.servers.empty()) return "the servers of /etc/resolv.conf";
  std::string s;
  for (const auto& a : config_.servers) {
    if (!s.empty()) s += ", ";
    s += a.to_string();
  }
  return s;
}

// --- c-ares on our loop -------------------------------------------------------------------

void Resolver::on_sock_state(void* data, int fd, int readable, int writable) {
  auto* r = static_cast<Resolver*>(data);
  if (r->destroying_) return;
  auto it = r->sockets_.find(fd);
  if (!readable && !writable) {
    if (it == r->sockets_.end()) return;
    r->loop_.poller().remove(fd);
    // Possibly called from inside this socket's own on_io: destroy it after the iteration.
    struct Holder : event::DeferredDeletable {
      std::unique_ptr<Socket> s;
    };
    auto h = std::make_unique<Holder>();
    h->s = std::move(it->second);
    r->sockets_.erase(it);
    r->loop_.defer_delete(std::move(h));
    return;
  }
  uint32_t interest =
      (readable ? uint32_t{event::kReadable} : 0u) | (writable ? uint32_t{event::kWritable} : 0u);
  if (it == r->sockets_.end()) {
    auto s = std::make_unique<Socket>(*r, fd);
    if (Status st = r->loop_.poller().add(fd, interest, s.get()); !st) {
      LOG_WARN("dns: cannot watch a resolver socket: {}", st.message());
      return;
    }
    r->sockets_.emplace(fd, std::move(s));
  } else if (Status st = r->loop_.poller().modify(fd, interest, it->second.get()); !st) {
    LOG_WARN("dns: cannot watch a resolver socket: {}", st.message());
  }
}

void Resolver::process(int read_fd, int write_fd) {
  auto* channel = static_cast<ares_channel>(channel_);
  ares_process_fd(channel, read_fd, write_fd);
  // Our poller is edge-triggered and c-ares reads what it needs per call: drain whatever
  // is still waiting so that no answer sits unread until the next packet.
  for (int i = 0; read_fd != ARES_SOCKET_BAD && i < 64 && sockets_.count(read_fd); ++i) {
    pollfd p{read_fd, POLLIN, 0};
    if (::poll(&p, 1, 0) <= 0 || !(p.revents & POLLIN)) break;
    ares_process_fd(channel, read_fd, ARES_SOCKET_BAD);
  }
  rearm_timer();
}

void Resolver::rearm_timer() {
  if (destroying_) return;
  timeval tv{};
  if (!ares_timeout(static_cast<ares_channel>(channel_), nullptr, &tv)) {
    timer_.cancel();
    return;
  }
  timer_.arm_at(loop_.clock().now() + std::chrono::seconds(tv.tv_sec) +
                std::chrono::microseconds(tv.tv_usec));
}

// --- lookups ------------------------------------------------------------------------------

void Resolver::resolve(const std::string& raw_name, QueryType type, Callback cb, bool fresh) {
  ++stats_.lookups;
  std::string name = normalize_name(raw_name);
  Answer quick;
  quick.name = name;
  if (type == QueryType::kAddress) {
    if (auto literal = net::Address::parse_ip(name, 0)) {
      quick.addresses.push_back(*literal);
      quick.ttl = config_.max_ttl;
      return cb(quick);
    }
    if (answer_from_hosts(name, type, quick)) return cb(quick);
  }
  if (!valid_query_name(name)) {
    quick.error = ErrorKind::kOther;
    quick.error_text = "not a valid DNS name (labels of 1 to 63 bytes, 253 in all)";
    ++stats_.failures;
    return cb(quick);
  }
  std::string key = (type == QueryType::kSrv ? "srv:" : "addr:") + name;
  if (!fresh) {
    if (auto cached = cache_.find(key, loop_.now())) {
      ++stats_.cache_hits;
      return cb(*cached);
    }
    ++stats_.cache_misses;
  }
  InFlight& e = in_flight_[key];
  e.waiters.push_back(std::move(cb));
  if (e.lookup) return;  // one query serves everyone asking meanwhile
  start_lookup(key, name, type);
}

void Resolver::start_lookup(const std::string& key, const std::string& name, QueryType type) {
  auto lookup = std::make_unique<Lookup>();
  lookup->key = key;
  lookup->name = name;
  lookup->type = type;
  lookup->started = loop_.clock().now();
  if (type == QueryType::kSrv) {
    lookup->parts.push_back({kTypeSrv});
  } else {
    if (config_.family != Family::kV4) lookup->parts.push_back({kTypeAaaa});
    if (config_.family != Family::kV6) lookup->parts.push_back({kTypeA});
  }
  // One extra count while sending: c-ares may answer a query before ares_query() returns
  // (a bad name, no memory), and the last answer destroys the lookup.
  lookup->pending = lookup->parts.size() + 1;
  for (auto& p : lookup->parts) p.result.name = name;
  Lookup* raw = lookup.get();
  in_flight_[key].lookup = std::move(lookup);
  for (size_t i = 0; i < raw->parts.size(); ++i) {
    raw->parts[i].seen.push_back(name);
    send_query(raw, i, name);
  }
  finish_part(raw);
}

void Resolver::send_query(Lookup* lookup, size_t part, const std::string& qname) {
  ++stats_.queries;
  auto* arg = new QueryArg{this, lookup, part, qname};
  ares_query(
      static_cast<ares_channel>(channel_), qname.c_str(), 1 /* C_IN */, lookup->parts[part].qtype,
      [](void* a, int status, int, unsigned char* abuf, int alen) {
        std::unique_ptr<QueryArg> q(static_cast<QueryArg*>(a));
        if (status == ARES_EDESTRUCTION || q->resolver->destroying_) return;
        q->resolver->on_reply(static_cast<Lookup*>(q->lookup), q->part, q->qname, status, abuf,
                              alen);
      },
      arg);
  rearm_timer();
}

void Resolver::on_reply(Lookup* lookup, size_t part_index, const std::string& qname, int status,
                        const unsigned char* abuf, int alen) {
  Lookup::Part& part = lookup->parts[part_index];
  Answer& a = part.result;
  auto fail = [&](ErrorKind kind, std::string text) {
    a.error = kind;
    a.error_text = std::move(text);
    finish_part(lookup);
  };
  switch (status) {
    case ARES_SUCCESS:
    case ARES_ENOTFOUND:
    case ARES_ENODATA:
      break;
    case ARES_ETIMEOUT:
      return fail(ErrorKind::kTimeout,
                  fmt::format("no answer from {} ({} tries of {})", servers_text(),
                              config_.attempts, format_duration(config_.timeout)));
    case ARES_ESERVFAIL:
      return fail(ErrorKind::kServFail, fmt::format("SERVFAIL from {}", servers_text()));
    case ARES_EREFUSED:
      return fail(ErrorKind::kRefused, fmt::format("REFUSED by {}", servers_text()));
    case ARES_ECONNREFUSED:
      return fail(ErrorKind::kOther, fmt::format("connection refused by {}", servers_text()));
    default:
      return fail(ErrorKind::kOther, ares_strerror(status));
  }
  if (!abuf || alen <= 0) return fail(ErrorKind::kMalformed, "empty DNS response");
  auto msg = parse_message(std::span<const uint8_t>(abuf, static_cast<size_t>(alen)));
  if (!msg) return fail(ErrorKind::kMalformed, msg.status().message());

  std::string current = qname;
  for (;;) {
    bool found = false;
    for (const Record& r : msg->answers) {
      if (r.name != current || r.type != part.qtype) continue;
      found = true;
      part.ttl = std::min(part.ttl, r.ttl);
      if (r.type == kTypeSrv) {
        a.srv.push_back(SrvTarget{r.target, r.port, r.priority, r.weight});
      } else {
        a.addresses.push_back(r.address);
      }
    }
    if (found) {
      a.record_ttl = part.ttl;
      return finish_part(lookup);
    }
    const Record* cname = nullptr;
    for (const Record& r : msg->answers) {
      if (r.name == current && r.type == kTypeCname) cname = &r;
    }
    if (!cname) break;
    if (std::find(part.seen.begin(), part.seen.end(), cname->target) != part.seen.end()) {
      a.cname_chain.push_back(cname->target);
      return fail(ErrorKind::kCnameLoop,
                  fmt::format("CNAME loop: {}", chain_text(lookup->name, a.cname_chain)));
    }
    if (a.cname_chain.size() >= config_.max_cname_chain) {
      a.cname_chain.push_back(cname->target);
      return fail(ErrorKind::kCnameChainTooLong,
                  fmt::format("CNAME chain longer than {}: {}", config_.max_cname_chain,
                              chain_text(lookup->name, a.cname_chain)));
    }
    a.cname_chain.push_back(cname->target);
    part.seen.push_back(cname->target);
    part.ttl = std::min(part.ttl, cname->ttl);
    current = cname->target;
  }
  bool has_soa = std::any_of(msg->authority.begin(), msg->authority.end(),
                             [](const Record& r) { return r.type == kTypeSoa; });
  if (msg->rcode == kNxDomain) {
    a.error = ErrorKind::kNxDomain;
    a.error_text = a.cname_chain.empty() ? std::string("no such name (NXDOMAIN)")
                                         : fmt::format("no such name (NXDOMAIN) at the end of {}",
                                                       chain_text(lookup->name, a.cname_chain));
    a.record_ttl = std::min(part.ttl, negative_ttl(*msg));
    return finish_part(lookup);
  }
  if (current != qname && !has_soa) {
    // The server gave the CNAME but not what it points to (another zone): ask for that.
    if (!valid_query_name(current)) {
      return fail(ErrorKind::kMalformed, fmt::format("CNAME to an invalid name at the end of {}",
                                                     chain_text(lookup->name, a.cname_chain)));
    }
    return send_query(lookup, part_index, current);
  }
  a.error = ErrorKind::kNoData;
  const char* type_name = part.qtype == kTypeA ? "A" : part.qtype == kTypeAaaa ? "AAAA" : "SRV";
  a.error_text = a.cname_chain.empty()
                     ? fmt::format("no {} record (NODATA)", type_name)
                     : fmt::format("no {} record (NODATA) at the end of {}", type_name,
                                   chain_text(lookup->name, a.cname_chain));
  a.record_ttl = std::min(part.ttl, negative_ttl(*msg));
  finish_part(lookup);
}

void Resolver::finish_part(Lookup* lookup) {
  if (--lookup->pending > 0) return;
  Answer out;
  if (lookup->parts.size() == 1) {
    out = std::move(lookup->parts[0].result);
  } else {
    // AAAA and A: usable if either gave addresses (IPv6 first); otherwise a server failure
    // wins over a negative answer, which is only negative if both are.
    const Answer* error = nullptr;
    out.name = lookup->name;
    out.record_ttl = UINT32_MAX;
    bool any_ok = false;
    for (auto& p : lookup->parts) {
      const Answer& a = p.result;
      if (a.ok()) {
        any_ok = true;
        out.addresses.insert(out.addresses.end(), a.addresses.begin(), a.addresses.end());
        out.record_ttl = std::min(out.record_ttl, a.record_ttl);
        if (out.cname_chain.empty()) out.cname_chain = a.cname_chain;
      } else if (!error || (error->negative() && !a.negative())) {
        error = &a;
      }
    }
    if (!any_ok && error) out = *error;
    // Both negative: the smaller negative TTL.
    if (!any_ok) {
      for (auto& p : lookup->parts) {
        if (p.result.negative()) out.record_ttl = std::min(out.record_ttl, p.result.record_ttl);
      }
    }
  }
  out.name = lookup->name;
  auto elapsed = loop_.clock().now() - lookup->started;
  out.latency = std::chrono::duration_cast<Duration>(elapsed);
  uint64_t us =
      static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(elapsed).count());
  stats_.latency.observe(us);
  stats_.latency_us_max = std::max(stats_.latency_us_max, us);
  complete(lookup->key, std::move(out));
}

void Resolver::complete(const std::string& key, Answer a) {
  // The lookup's parts are done; it is destroyed when this returns (nothing touches it
  // after), and `key` is its own: copy it before the entry goes.
  auto node = in_flight_.extract(key);
  SLUICE_CHECK(!node.empty());
  InFlight done = std::move(node.mapped());
  if (a.negative()) {
    if (a.error == ErrorKind::kNxDomain) ++stats_.nxdomain;
  } else if (!a.ok()) {
    switch (a.error) {
      case ErrorKind::kTimeout:
        ++stats_.timeouts;
        break;
      case ErrorKind::kServFail:
        ++stats_.servfail;
        break;
      default:
        ++stats_.failures;
    }
  }
  a = cache_.store(node.key(), std::move(a), loop_.now());
  if (a.stale) ++stats_.stale_served;
  for (auto& cb : done.waiters) cb(a);
}

// --- hosts file ---------------------------------------------------------------------------

void Resolver::load_hosts_file() {
  struct stat st {};
  if (::stat(config_.hosts_file.c_str(), &st) != 0) {
    hosts_.clear();
    hosts_mtime_ = -1;
    return;
  }
  int64_t mtime = static_cast<int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec;
  if (mtime == hosts_mtime_) return;
  hosts_mtime_ = mtime;
  hosts_.clear();
  std::ifstream in(config_.hosts_file);
  std::string line;
  while (std::getline(in, line)) {
    line = line.substr(0, line.find('#'));
    std::istringstream words(line);
    std::string ip, name;
    if (!(words >> ip)) continue;
    auto addr = net::Address::parse_ip(ip, 0);
    if (!addr) continue;
    while (words >> name) hosts_[normalize_name(name)].push_back(*addr);
  }
}

bool Resolver::answer_from_hosts(const std::string& name, QueryType type, Answer& out) {
  if (config_.hosts_file.empty() || type != QueryType::kAddress) return false;
  load_hosts_file();
  auto it = hosts_.find(name);
  if (it == hosts_.end()) return false;
  for (const auto& a : it->second) {
    bool v6 = a.family() == AF_INET6;
    if ((v6 && config_.family == Family::kV4) || (!v6 && config_.family == Family::kV6)) continue;
    out.addresses.push_back(a);
  }
  if (out.addresses.empty()) return false;
  out.from_hosts_file = true;
  out.ttl = config_.min_ttl;  // the file is read again when it changes
  return true;
}

}  // namespace sluice::dns
