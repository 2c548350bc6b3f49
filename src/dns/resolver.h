// Resolver: asynchronous DNS with a TTL-respecting cache, on one event loop (the main
// thread's: workers never resolve). c-ares sends the queries; its sockets and timeouts are
// driven by our poller and timer queue, never by a blocking call.
//
// - Answers are cached by the rules of dns::Cache (cache.h): positive answers for their
//   TTL, negative answers (NXDOMAIN, NODATA) for the SOA's negative TTL per RFC 2308
//   (min(SOA TTL, SOA MINIMUM)), and serve-stale (RFC 8767) when a refresh fails. Time is
//   the loop's.
// - CNAME chains are followed, also across queries when a server answers with the CNAME
//   alone, up to max_cname_chain links; a loop or a longer chain is an error naming it.
// - Concurrent lookups of one name share one query.
// - An IP literal answers itself; names in the hosts file (when configured) answer from it.
// Loop thread only; must not be destroyed from inside one of its callbacks.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "base/histogram.h"
#include "base/metric.h"
#include "base/status.h"
#include "base/units.h"
#include "base/validation.h"
#include "dns/answer.h"
#include "dns/cache.h"
#include "event/loop.h"
#include "event/timer.h"
#include "net/address.h"

namespace sluice::dns {

enum class Family { kV4, kV6, kBoth };

struct ResolverConfig {
  std::vector<net::Address> servers;           // empty: the nameservers of /etc/resolv.conf
  Duration timeout = std::chrono::seconds(2);  // per try
  uint32_t attempts = 2;
  bool rotate = false;  // spread queries over the servers instead of trying them in order
  std::string hosts_file = "/etc/hosts";  // empty: not consulted
  Family family = Family::kV4;            // kBoth: AAAA and A, IPv6 first
  Duration min_ttl = std::chrono::seconds(1);
  Duration max_ttl = std::chrono::hours(1);
  Duration negative_min_ttl = std::chrono::seconds(1);
  Duration negative_max_ttl = std::chrono::minutes(5);
  Duration stale_ttl = std::chrono::minutes(5);
  uint32_t max_cname_chain = 8;

  ConfigIssues validate() const;  // resolver_config.cc

  bool operator==(const ResolverConfig&) const = default;
};

// The resolver's counters (main thread), declared once (base/metric.h says how to add one).
// clang-format off
#define SLUICE_RESOLVER_STATS(COUNTER, GAUGE, HISTOGRAM, COUNTERS, GAUGES)                         \
  COUNTER(lookups, "sluice_dns_lookups_total", "", "lookups",                                      \
          "Name lookups asked of the resolver.")                                                   \
  COUNTER(queries, "sluice_dns_queries_total", "", "queries", "DNS queries sent to servers.")      \
  COUNTER(cache_hits, "sluice_dns_cache_hits_total", "", "cache hits",                             \
          "Lookups answered from the cache.")                                                      \
  COUNTER(cache_misses, "sluice_dns_cache_misses_total", "", "cache misses",                       \
          "Lookups the cache could not answer.")                                                   \
  COUNTER(timeouts, "sluice_dns_timeouts_total", "", "timeouts", "Lookups that timed out.")        \
  COUNTER(nxdomain, "sluice_dns_nxdomain_total", "", "NXDOMAIN", "NXDOMAIN answers.")              \
  COUNTER(servfail, "sluice_dns_servfail_total", "", "SERVFAIL", "SERVFAIL answers.")              \
  COUNTER(failures, "sluice_dns_failures_total", "", "failures",                                   \
          "Lookups that failed otherwise.")                                                        \
  COUNTER(stale_served, "sluice_dns_stale_answers_total", "", "stale answers",                     \
          "Stale answers served after a failed refresh.")                                          \
  HISTOGRAM(latency, "sluice_dns_resolution_seconds", "", "resolution time",                       \
            "Time to resolve a name, for lookups that went to the servers.")                       \
  GAUGE(latency_us_max, "sluice_dns_resolution_seconds_max", "", "slowest resolution",             \
        "The slowest resolution so far.")
// clang-format on

struct ResolverStats {
  SLUICE_METRIC_MEMBERS(SLUICE_RESOLVER_STATS)
};

class Resolver {
 public:
  using Callback = std::function<void(const Answer&)>;

  static Result<std::unique_ptr<Resolver>> create(event::Loop& loop, ResolverConfig config);
  ~Resolver();

  // Calls `cb` with the answer, maybe before returning (cache, literal, hosts file).
  // `fresh`: ask the servers even if the cache holds an unexpired answer (a refresh).
  void resolve(const std::string& name, QueryType type, Callback cb, bool fresh = false);

  const ResolverConfig& config() const { return config_; }
  const ResolverStats& stats() const { return stats_; }
  // The cache's good answers, to hand to a binary upgrade's new process; and taking them.
  std::vector<Cache::Saved> save_cache() const { return cache_.save(loop_.now()); }
  // Every name in the cache with its latest answer and TTL left (Cache::report).
  std::vector<Cache::Saved> report_cache() const { return cache_.report(loop_.now()); }
  void restore_cache(const std::vector<Cache::Saved>& saved) {
    for (const auto& s : saved) cache_.restore(s, loop_.now());
  }
  // Which servers are asked, for logs ("127.0.0.1:5353" or "/etc/resolv.conf").
  std::string servers_text() const;

 private:
  struct Lookup;
  struct InFlight;
  class Socket;
  Resolver(event::Loop& loop, ResolverConfig config);
  Status init();

  void start_lookup(const std::string& key, const std::string& name, QueryType type);
  void send_query(Lookup* lookup, size_t part, const std::string& qname);
  void on_reply(Lookup* lookup, size_t part, const std::string& qname, int status,
                const unsigned char* abuf, int alen);
  void finish_part(Lookup* lookup);
  void complete(const std::string& key, Answer answer);
  bool answer_from_hosts(const std::string& name, QueryType type, Answer& out);
  void load_hosts_file();
  static void on_sock_state(void* data, int fd, int readable, int writable);
  void process(int read_fd, int write_fd);
  void rearm_timer();

  event::Loop& loop_;
  ResolverConfig config_;
  void* channel_ = nullptr;  // ares_channel
  std::map<int, std::unique_ptr<Socket>> sockets_;
  event::Timer timer_;
  Cache cache_;
  std::map<std::string, InFlight> in_flight_;  // by cache key
  std::map<std::string, std::vector<net::Address>> hosts_;
  int64_t hosts_mtime_ = -1;
  bool destroying_ = false;
  ResolverStats stats_;
};

}  // namespace sluice::dns
