// Choosing the event backend: the `event:` settings, the io_uring probe with its fallback to
// epoll, and the process-wide choice that every Loop made afterwards uses. The choice is made
// once, on the main thread, before any Loop that should use it is built; a reload cannot
// change it (the loops exist), a restart or a binary upgrade can.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "base/status.h"
#include "base/validation.h"
#include "event/poller.h"

namespace sluice::event {

// "auto", "epoll", "io_uring".
const char* backend_name(Backend b);
std::optional<Backend> parse_backend(std::string_view text);

// "completion", "readiness".
const char* receive_name(Receive r);
std::optional<Receive> parse_receive(std::string_view text);

// The top-level `event:` block.
struct EventConfig {
  Backend backend = Backend::kAuto;
  Receive receive = Receive::kCompletion;  // used on io_uring only
  // Every value of the enum is valid; kept for the shape every block has.
  ConfigIssues validate() const { return {}; }
  bool operator==(const EventConfig&) const = default;
};

// The backend this process runs on, and why io_uring is not it when it was wanted.
struct BackendChoice {
  Backend backend = Backend::kEpoll;  // never kAuto
  std::string fallback_reason;        // "" unless auto fell back to epoll
  // On io_uring, how its rings are set up (io_uring_ring_setup()), logged as
  // "io_uring ring: SETUP".
  std::string ring_setup;
  // "event backend: io_uring", "event backend: epoll (io_uring unavailable: REASON)".
  std::string describe() const;
};

// Resolves `configured` to a backend. The environment variable SLUICE_EVENT_BACKEND
// (epoll, io_uring or auto) overrides the configuration, so that a test suite can run on
// either backend. auto probes io_uring (probe_io_uring()) and falls back to epoll; io_uring
// asked for explicitly but unavailable is an error with the probe's reason.
Result<BackendChoice> choose_backend(Backend configured);

// Resolves `configured`; SLUICE_EVENT_RECEIVE (completion or readiness) in the environment
// overrides it, so that the same binary can be measured both ways.
Result<Receive> choose_receive(Receive configured);

// How the Loops built from now on receive where their backend allows it (completion until
// set). Any thread; set it before the threads that build Loops start.
void set_process_receive(Receive r);
Receive process_receive();

// The backend Loops built from now on use (epoll until set). Any thread; set it before the
// threads that build Loops start.
void set_process_backend(Backend b);
Backend process_backend();

// A poller of backend `b` (kAuto: the process's). When the kernel refuses a ring for this
// one loop (the probe passed, but, say, memory ran out), logs why and uses epoll.
std::unique_ptr<Poller> make_poller(Backend b);

}  // namespace sluice::event
