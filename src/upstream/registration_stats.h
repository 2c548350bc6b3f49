// The counters of sluice's own registration in etcd (discovery/etcd_registration.h), declared
// here, below both the discovery layer that counts them and the admin layer that exports them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <iterator>

#include "base/metric.h"

namespace sluice::upstream {

enum class RegistrationState : uint8_t {
  kIdle,
  kGranting,
  kPutting,
  kRegistered,
  kRevoking,
  kDone
};
inline constexpr const char* kRegistrationStates[] = {"idle",       "granting", "putting",
                                                      "registered", "revoking", "done"};
inline constexpr size_t kRegistrationStateCount = 6;
static_assert(std::size(kRegistrationStates) == kRegistrationStateCount);
inline constexpr metric::Dimension kRegistrationStateDimension{"state", kRegistrationStates};
constexpr const char* to_string(RegistrationState s) {
  return kRegistrationStates[static_cast<size_t>(s)];
}

// clang-format off
#define SLUICE_REGISTRATION_STATS(COUNTER, GAUGE, HISTOGRAM, COUNTERS, GAUGES)                     \
  GAUGES(state, ::sluice::upstream::kRegistrationStateCount, "sluice_registration_state",          \
         ::sluice::upstream::kRegistrationStateDimension, "state",                                \
         "1 for the state sluice's own registration in etcd is in.")                               \
  COUNTER(grants, "sluice_registration_grants_total", "", "leases granted",                        \
          "Leases granted for sluice's own key (one at start, one more per lease lost).")          \
  COUNTER(puts, "sluice_registration_puts_total", "", "puts",                                      \
          "Times sluice's own key was put under its lease.")                                       \
  COUNTER(keepalives, "sluice_registration_keepalives_total", "", "keepalives",                    \
          "Lease keepalives etcd answered.")                                                       \
  COUNTER(leases_lost, "sluice_registration_leases_lost_total", "", "leases lost",                 \
          "Leases etcd no longer knew (revoked, or expired while it could not be reached).")       \
  COUNTER(failures, "sluice_registration_failures_total", "", "failures",                          \
          "Registration calls that failed (connect, timeout, error answer) and were made again.")  \
  GAUGE(lease_ttl_ns, "sluice_registration_lease_ttl_seconds", "", "lease TTL",                    \
        "The TTL etcd granted the lease sluice's key is under (0: no lease).")                    \
  COUNTER(auth_renewals, "sluice_registration_auth_renewals_total", "", "auth renewals",          \
          "Auth tokens etcd refused (expired, or lost when a member restarted) or that went "      \
          "unanswered, and replaced by authenticating again.")
// clang-format on

struct RegistrationStats {
  SLUICE_METRIC_MEMBERS(SLUICE_REGISTRATION_STATS)
  void set_state(RegistrationState s) {
    for (size_t i = 0; i < std::size(state); ++i) state[i] = i == static_cast<size_t>(s);
  }
};

}  // namespace sluice::upstream
