// DashboardEvents: GET /dashboard/events, the dashboard's data as Server-Sent Events (the
// same JSON as GET /dashboard/data, one `data:` frame per interval). The data is built once
// per interval for every open stream, not once per stream; the streams are bounded
// (max_subscribers, 503 past it); a stream whose client does not read misses frames (its
// socket buffer is full) and is closed after kMaxMissed of them in a row, so it never holds
// more than one frame. A drain or a binary upgrade ends every stream with an `end` event.
// Owned by the Server; main thread only.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "admin/admin_server.h"
#include "admin/dashboard_events_types.h"
#include "base/clock.h"
#include "event/loop.h"
#include "event/timer.h"

namespace sluice::admin {

class DashboardEvents {
 public:
  // Frames a stream may miss in a row (its client not reading) before it is closed.
  static constexpr uint32_t kMaxMissed = 10;
  // What the page's EventSource waits before it connects again after a network error.
  static constexpr int kRetryMs = 2000;
  // A build not done after this many intervals (a worker that never answered) no longer
  // holds the next ones back: a tick starts another.
  static constexpr uint32_t kStaleBuildIntervals = 3;
  // Sent instead of a frame an interval had none for (its build not done yet): an SSE
  // comment, which tells the client the stream lives.
  static constexpr std::string_view kHeartbeat = ":\n\n";

  // Builds the data once and calls `done` with the JSON (on the loop thread, later).
  using Build = std::function<void(std::function<void(std::string json)> done)>;

  DashboardEvents(event::Loop& loop, DashboardEventsConfig config);
  ~DashboardEvents();
  DashboardEvents(const DashboardEvents&) = delete;
  DashboardEvents& operator=(const DashboardEvents&) = delete;

  void set_build(Build build) { build_ = std::move(build); }
  // GET /dashboard/events: a stream, or 503 past max_subscribers or once draining.
  void subscribe(const AdminRequest& request, AdminServer::Respond respond);
  // Ends every stream with `event: end` naming `reason` ("draining", "upgrade") and refuses
  // new ones from now on.
  void close_all(std::string_view reason);

  const DashboardEventStats& stats() const { return stats_; }
  const DashboardEventsConfig& config() const { return config_; }

 private:
  struct Subscriber {
    std::shared_ptr<AdminStream> stream;
    uint32_t missed = 0;
    // Until its first frame its queue holds the response head, which says nothing of how
    // the client reads.
    bool started = false;
    // Closed while the list was walked: erased once the walk is over.
    bool gone = false;
  };
  void add(std::shared_ptr<AdminStream> stream);
  void remove(AdminStream* stream);
  void tick();
  void start_build();
  void publish(uint64_t build, std::string json);
  // Writes the frame to `s`, or counts it missed (and closes `s` after kMaxMissed).
  void offer(Subscriber& s);
  void heartbeat();
  // Calls `f` on every subscriber still open. A write that fails at once closes its stream
  // and removes it from the list: removals wait until the walk is over.
  template <typename F>
  void for_each_subscriber(F f);
  void sweep();

  event::Loop& loop_;
  DashboardEventsConfig config_;
  Build build_;
  event::Timer timer_;
  std::vector<Subscriber> subscribers_;
  std::string frame_;  // the last frame built ("data: {...}\n\n"); empty: none yet
  MonoTime frame_time_{};
  bool building_ = false;
  MonoTime build_started_{};
  uint64_t builds_started_ = 0;  // the number of the last build started
  uint64_t build_shown_ = 0;     // the number of the build frame_ holds
  bool walking_ = false;
  bool closed_ = false;  // draining: no new streams
  DashboardEventStats stats_;
  std::shared_ptr<int> alive_ = std::make_shared<int>(0);  // for builds that end later
};

}  // namespace sluice::admin
