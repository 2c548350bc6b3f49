#include "event/backend.h"

#include <atomic>
#include <cstdlib>

#include <fmt/format.h>

#include "base/log.h"

namespace sluice::event {
namespace {
std::atomic<Backend> g_process_backend{Backend::kEpoll};
std::atomic<Receive> g_process_receive{Receive::kCompletion};
}  // namespace

const char* backend_name(Backend b) {
  switch (b) {
    case Backend::kAuto:
      return "auto";
    case Backend::kEpoll:
      return "epoll";
    case Backend::kIoUring:
      return "io_uring";
  }
  return "?";
}

std::optional<Backend> parse_backend(std::string_view text) {
  for (Backend b : {Backend::kAuto, Backend::kEpoll, Backend::kIoUring}) {
    if (text == backend_name(b)) return b;
  }
  return std::nullopt;
}

const char* receive_name(Receive r) {
  switch (r) {
    case Receive::kCompletion:
      return "completion";
    case Receive::kReadiness:
      return "readiness";
  }
  return "?";
}

std::optional<Receive> parse_receive(std::string_view text) {
  for (Receive r : {Receive::kCompletion, Receive::kReadiness}) {
    if (text == receive_name(r)) return r;
  }
  return std::nullopt;
}

Result<Receive> choose_receive(Receive configured) {
  const char* env = std::getenv("SLUICE_EVENT_RECEIVE");
  if (!env || !*env) return configured;
  std::optional<Receive> r = parse_receive(env);
  if (!r) {
    return Status::error(
        fmt::format("SLUICE_EVENT_RECEIVE: expected one of: completion, readiness, got '{}'", env));
  }
  return *r;
}

void set_process_receive(Receive r) {
  g_process_receive.store(r, std::memory_order_relaxed);
}

Receive process_receive() {
  return g_process_receive.load(std::memory_order_relaxed);
}

std::string BackendChoice::describe() const {
  if (fallback_reason.empty()) return fmt::format("event backend: {}", backend_name(backend));
  return fmt::format("event backend: {} (io_uring unavailable: {})", backend_name(backend),
                     fallback_reason);
}

Result<BackendChoice> choose_backend(Backend configured) {
  Backend wanted = configured;
  if (const char* env = std::getenv("SLUICE_EVENT_BACKEND"); env && *env) {
    std::optional<Backend> b = parse_backend(env);
    if (!b) {
      return Status::error(fmt::format(
          "SLUICE_EVENT_BACKEND: expected one of: epoll, io_uring, auto, got '{}'", env));
    }
    wanted = *b;
  }
  BackendChoice choice;
  if (wanted == Backend::kEpoll) return choice;
  Status probe = probe_io_uring(&choice.ring_setup);
  if (probe) {
    choice.backend = Backend::kIoUring;
    return choice;
  }
  if (wanted == Backend::kIoUring) {
    return Status::error(
        fmt::format("event.backend: io_uring is not available: {}", probe.message()));
  }
  choice.ring_setup.clear();
  choice.fallback_reason = probe.message();
  return choice;
}

void set_process_backend(Backend b) {
  g_process_backend.store(b == Backend::kAuto ? Backend::kEpoll : b, std::memory_order_relaxed);
}

Backend process_backend() {
  return g_process_backend.load(std::memory_order_relaxed);
}

std::unique_ptr<Poller> make_poller(Backend b) {
  if (b == Backend::kAuto) b = process_backend();
  if (b == Backend::kIoUring) {
    auto poller = make_io_uring_poller();
    if (poller) return std::move(*poller);
    LOG_WARN("event backend: this loop uses epoll: {}", poller.status().message());
  }
  return make_epoll_poller();
}

}  // namespace sluice::event
