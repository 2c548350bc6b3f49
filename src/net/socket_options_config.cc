// SocketOptions::validate(): the ranges of each knob, and whether this kernel offers what
// is asked for (congestion control, Fast Open).
#include <fmt/format.h>

#include "net/socket_options.h"

namespace sluice::net {

ConfigIssues SocketOptions::validate(bool listener) const {
  using std::chrono::seconds;
  ConfigChecker c;
  if (keepalive) {
    c.check_duration("keepalive.idle", keepalive->idle, seconds(1), std::chrono::hours(24));
    c.check_duration("keepalive.interval", keepalive->interval, seconds(1), std::chrono::hours(24));
    c.check_uint("keepalive.count", static_cast<uint64_t>(std::max(keepalive->count, 0)), 1, 127);
  }
  if (!congestion.empty()) {
    if (Status s = check_congestion_available(congestion); !s) c.error("congestion", s.message());
  }
  // 0 leaves the kernel's autotuned default.
  if (send_buffer != 0) c.check_size("send_buffer", send_buffer, 4096, 256ull << 20);
  if (receive_buffer != 0) c.check_size("receive_buffer", receive_buffer, 4096, 256ull << 20);
  // 0 leaves the kernel's default (no limit); below a segment or two it only costs wake-ups.
  if (notsent_lowat != 0) c.check_size("notsent_lowat", notsent_lowat, 4096, 256ull << 20);
  if (listener) {
    // 0 is off; the kernel counts whole seconds.
    c.check_duration("defer_accept", defer_accept, Duration{0}, std::chrono::minutes(10));
    if (defer_accept.count() != 0 && defer_accept % seconds(1) != Duration{0}) {
      c.error("defer_accept", "the kernel counts whole seconds: write 1s, 2s... (or 0 for off)");
    }
    c.check_uint("fastopen", fastopen_queue, 0, 65535);
    if (fastopen_connect) {
      c.error("fastopen",
              "a listener's fastopen is a queue length (fastopen_connect is for "
              "upstream connects)");
    }
  } else {
    if (fastopen_queue != 0) {
      c.error("fastopen", "upstream connects take fastopen: true or false, not a queue length");
    }
    if (defer_accept.count() != 0) c.error("defer_accept", "only for listeners");
  }
  bool fastopen = listener ? fastopen_queue > 0 : fastopen_connect;
  if (fastopen && fastopen_queue <= 65535) {
    if (Status s = check_fastopen_enabled(listener); !s) c.error("fastopen", s.message());
  }
  return c.take();
}

}  // namespace sluice::net
