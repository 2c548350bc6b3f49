// The types of the dashboard's Server-Sent Events (admin/dashboard_events.h): admin.events,
// its settings (defaults and rules; config/ reads them from YAML; they change only with a
// restart), and its counters.
#pragma once

#include <chrono>
#include <cstdint>

#include "base/metric.h"
#include "base/units.h"
#include "base/validation.h"

namespace sluice::admin {

struct DashboardEventsConfig {
  static constexpr uint32_t kMaxSubscribersLimit = 1024;
  static constexpr Duration kMinInterval = std::chrono::milliseconds(100);
  static constexpr Duration kMaxInterval = std::chrono::seconds(60);

  // How often the data is built and sent to every open stream.
  Duration interval = std::chrono::seconds(1);
  // Open streams at most; past it GET /dashboard/events answers 503 (the page polls
  // instead). 0: no streams at all.
  uint32_t max_subscribers = 8;

  ConfigIssues validate() const {
    ConfigChecker c;
    c.check_duration("interval", interval, kMinInterval, kMaxInterval);
    c.check_uint("max_subscribers", max_subscribers, 0, kMaxSubscribersLimit);
    return c.take();
  }
  bool operator==(const DashboardEventsConfig&) const = default;
};

#define SLUICE_DASHBOARD_EVENTS_SUBSCRIPTIONS_HELP "Requests for /dashboard/events, by outcome."
#define SLUICE_DASHBOARD_EVENTS_FRAMES_HELP                                                    \
  "Frames of dashboard data for the open /dashboard/events streams: sent, or dropped because " \
  "the client had not read the previous one."
#define SLUICE_DASHBOARD_EVENTS_ENDS_HELP "/dashboard/events streams that ended, by reason."
// clang-format off
#define SLUICE_DASHBOARD_EVENT_STATS(COUNTER, GAUGE, HISTOGRAM, COUNTERS, GAUGES)                  \
  GAUGE(subscribers, "sluice_dashboard_event_subscribers", "", "subscribers",                      \
        "Open /dashboard/events streams.")                                                         \
  COUNTER(accepted, "sluice_dashboard_event_subscriptions_total", "result=\"accepted\"",           \
          "accepted", SLUICE_DASHBOARD_EVENTS_SUBSCRIPTIONS_HELP)                                  \
  COUNTER(refused_full, "sluice_dashboard_event_subscriptions_total", "result=\"refused_full\"",   \
          "refused (full)", SLUICE_DASHBOARD_EVENTS_SUBSCRIPTIONS_HELP)                            \
  COUNTER(refused_draining, "sluice_dashboard_event_subscriptions_total",                          \
          "result=\"refused_draining\"", "refused (draining)",                                     \
          SLUICE_DASHBOARD_EVENTS_SUBSCRIPTIONS_HELP)                                              \
  COUNTER(builds, "sluice_dashboard_event_builds_total", "", "data builds",                        \
          "Times the dashboard's data was built for the open /dashboard/events streams (once "     \
          "per interval, whatever their number).")                                                 \
  COUNTER(frames_sent, "sluice_dashboard_event_frames_total", "result=\"sent\"", "frames sent",    \
          SLUICE_DASHBOARD_EVENTS_FRAMES_HELP)                                                     \
  COUNTER(frames_dropped, "sluice_dashboard_event_frames_total", "result=\"dropped\"",             \
          "frames dropped", SLUICE_DASHBOARD_EVENTS_FRAMES_HELP)                                   \
  COUNTER(ended_client, "sluice_dashboard_event_ends_total", "reason=\"client\"",                  \
          "ended by the client", SLUICE_DASHBOARD_EVENTS_ENDS_HELP)                                \
  COUNTER(ended_slow, "sluice_dashboard_event_ends_total", "reason=\"not_reading\"",               \
          "closed (not reading)", SLUICE_DASHBOARD_EVENTS_ENDS_HELP)                               \
  COUNTER(ended_draining, "sluice_dashboard_event_ends_total", "reason=\"draining\"",              \
          "ended (draining)", SLUICE_DASHBOARD_EVENTS_ENDS_HELP)
// clang-format on

struct DashboardEventStats {
  SLUICE_METRIC_MEMBERS(SLUICE_DASHBOARD_EVENT_STATS)
};

}  // namespace sluice::admin
