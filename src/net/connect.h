// Non-blocking outgoing TCP connects with sluice's upstream socket options: applied options,
// an optional source address (IP_BIND_ADDRESS_NO_PORT) and TCP Fast Open.
// Plain functions; any thread.
#pragma once

#include <optional>

#include "base/status.h"
#include "net/address.h"
#include "net/socket.h"
#include "net/socket_options.h"

namespace sluice::net {

struct PendingConnect {
  Fd fd;
  bool connected = false;  // true: connected already (loopback, or a deferred Fast Open SYN)
};

// Starts a connect. On error the message says what failed ("connection refused", ...).
// With `fastopen` (and options.fastopen_connect), the SYN waits for the first write and
// carries it: use it only when bytes to send are already at hand, or a peer that speaks
// first would wait forever.
Result<PendingConnect> start_connect(const Address& target, const SocketOptions& options,
                                     const std::optional<Address>& source, bool fastopen);

enum class ConnectState { kConnected, kInProgress, kFailed };
// After the socket reported writable or an error: where the connect stands. `err` is set
// when it failed.
ConnectState check_connect(int fd, int* err);

// strerror() in the lower case our log lines use ("connection refused").
std::string error_text(int err);

}  // namespace sluice::net
