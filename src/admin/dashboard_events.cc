#include "admin/dashboard_events.h"

#include <fmt/format.h>

#include <algorithm>

namespace sluice::admin {

namespace {

AdminResponse refusal(std::string body) {
  return AdminResponse{503, "text/plain; charset=utf-8", std::move(body)};
}

}  // namespace

DashboardEvents::DashboardEvents(event::Loop& loop, DashboardEventsConfig config)
    : loop_(loop), config_(config), timer_(loop.timers(), [this] { tick(); }) {}

DashboardEvents::~DashboardEvents() {
  for (auto& s : subscribers_) s.stream->end();
}

void DashboardEvents::subscribe(const AdminRequest& request, AdminServer::Respond respond) {
  if (request.method != "GET") {
    return respond(AdminResponse{405, "text/plain; charset=utf-8", "use GET\n"});
  }
  if (closed_) {
    ++stats_.refused_draining;
    return respond(
        refusal("sluice is draining: no new event streams; GET /dashboard/data still answers\n"));
  }
  if (config_.max_subscribers == 0) {
    ++stats_.refused_full;
    return respond(
        refusal("event streams are off (admin.events.max_subscribers: 0); poll GET /dashboard/data "
                "instead\n"));
  }
  if (subscribers_.size() >= config_.max_subscribers) {
    ++stats_.refused_full;
    return respond(refusal(
        fmt::format("too many event streams open ({}, admin.events.max_subscribers); poll GET "
                    "/dashboard/data instead\n",
                    config_.max_subscribers)));
  }
  AdminResponse r{200, "text/event-stream; charset=utf-8", fmt::format("retry: {}\n\n", kRetryMs)};
  r.stream = [this](std::shared_ptr<AdminStream> stream) { add(std::move(stream)); };
  respond(std::move(r));
}

void DashboardEvents::add(std::shared_ptr<AdminStream> stream) {
  ++stats_.accepted;
  AdminStream* raw = stream.get();
  stream->on_closed([this, raw] {
    ++stats_.ended_client;
    remove(raw);
  });
  subscribers_.push_back(Subscriber{std::move(stream)});
  stats_.subscribers = subscribers_.size();
  // A frame of this interval is sent at once; none yet: one is built now, for every stream.
  if (!frame_.empty() && loop_.now() - frame_time_ < config_.interval) {
    walking_ = true;
    offer(subscribers_.back());
    walking_ = false;
    sweep();
  } else {
    start_build();
  }
  if (!timer_.armed()) timer_.arm_at(loop_.now() + config_.interval);
}

void DashboardEvents::remove(AdminStream* stream) {
  for (auto& s : subscribers_) {
    if (s.stream.get() == stream) s.gone = true;
  }
  if (!walking_) sweep();
}

void DashboardEvents::sweep() {
  std::erase_if(subscribers_, [](const Subscriber& s) { return s.gone; });
  stats_.subscribers = subscribers_.size();
  // Nobody listens: no builds. The last frame stays, so that a client coming and going
  // cannot make a build each time (at most one per interval).
  if (subscribers_.empty()) timer_.cancel();
}

template <typename F>
void DashboardEvents::for_each_subscriber(F f) {
  walking_ = true;
  // By index: nothing is added while the list is walked, but a reference would not say so.
  for (size_t i = 0; i < subscribers_.size(); ++i) {
    if (!subscribers_[i].gone) f(subscribers_[i]);
  }
  walking_ = false;
  sweep();
}

void DashboardEvents::tick() {
  if (subscribers_.empty()) return;
  timer_.arm_at(loop_.now() + config_.interval);
  if (building_) {
    // The last build is not done: this interval has no frame.
    heartbeat();
    if (loop_.now() - build_started_ < kStaleBuildIntervals * config_.interval) return;
    // It may never be (a worker that did not answer): another starts.
    building_ = false;
  }
  start_build();
}

void DashboardEvents::start_build() {
  // A build still running (the workers are slow to answer) serves this interval too.
  if (building_ || !build_) return;
  building_ = true;
  build_started_ = loop_.now();
  uint64_t build = ++builds_started_;
  std::weak_ptr<int> alive = alive_;
  build_([this, alive, build](std::string json) {
    if (alive.expired()) return;
    if (build == builds_started_) building_ = false;
    publish(build, std::move(json));
  });
}

void DashboardEvents::publish(uint64_t build, std::string json) {
  if (subscribers_.empty() || closed_) return;
  // A build given up on that ends after a later one brings older data: not shown.
  if (build <= build_shown_) return;
  build_shown_ = build;
  ++stats_.builds;
  while (!json.empty() && json.back() == '\n') json.pop_back();
  // One line: the JSON has no raw newline (nlohmann::json escapes them in strings).
  frame_.clear();
  frame_.reserve(json.size() + 8);
  frame_ += "data: ";
  frame_ += json;
  frame_ += "\n\n";
  frame_time_ = loop_.now();
  for_each_subscriber([this](Subscriber& s) { offer(s); });
}

void DashboardEvents::offer(Subscriber& s) {
  if (s.started && s.stream->queued() > 0) {
    // The client has not read the last frame: it misses this one rather than queueing it.
    ++stats_.frames_dropped;
    if (++s.missed < kMaxMissed) return;
    ++stats_.ended_slow;
    auto stream = s.stream;
    stream->end(/*now=*/true);
    remove(stream.get());
    return;
  }
  s.missed = 0;
  s.started = true;
  ++stats_.frames_sent;
  s.stream->write(frame_);  // last: a write that fails closes the stream and may remove `s`
}

void DashboardEvents::heartbeat() {
  for_each_subscriber([](Subscriber& s) {
    // A client still reading what came before does not need to hear the stream lives.
    if (s.stream->queued() == 0) s.stream->write(kHeartbeat);
  });
}

void DashboardEvents::close_all(std::string_view reason) {
  if (closed_) return;
  closed_ = true;
  timer_.cancel();
  std::string end = fmt::format("event: end\ndata: {{\"reason\":\"{}\"}}\n\n", reason);
  auto subscribers = std::move(subscribers_);
  subscribers_.clear();
  stats_.subscribers = 0;
  for (auto& s : subscribers) {
    ++stats_.ended_draining;
    s.stream->write(end);
    s.stream->end();
  }
  frame_ = std::string();
}

}  // namespace sluice::admin
