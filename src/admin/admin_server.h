// AdminServer: sluice's operator endpoint (/ready, /live, endpoint drain, and more as the
// handlers registered by the server grow). It runs on the main thread's loop, never on a
// worker, and speaks HTTP/1.1 with sluice's own parser: one request at a time per
// connection, keep-alive, bodies up to 64 KiB. Bind it to loopback: it has no
// authentication.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "event/loop.h"
#include "http/message.h"
#include "net/address.h"
#include "net/listener.h"

namespace sluice::admin {

struct AdminRequest {
  std::string method;
  std::string path;  // without the query
  std::string query;
  sluice::http::HeaderMap headers;
  std::string body;
};

class AdminConnection;
class AdminStream;

struct AdminResponse {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
  // Set: a streamed body (text/event-stream). The head goes out without a length, then
  // `body`, and the connection is the stream's from then on (closed when it ends): `stream`
  // is called once with it, on the loop thread, before anything else is written.
  std::function<void(std::shared_ptr<AdminStream>)> stream;
};

// A response whose body goes on after its head: its owner writes to it until it ends it or
// the client leaves. A client that does not read fills the socket (its send buffer is kept
// small) and then queued(): the owner decides what to drop. Loop thread only.
class AdminStream {
 public:
  bool open() const { return conn_ != nullptr; }
  // Bytes written and not yet taken by the kernel.
  size_t queued() const;
  void write(std::string_view bytes);
  // Ends the body: what is queued is sent, then the connection closes. `now`: what is
  // queued is dropped and the connection closes at once (a client that does not read).
  void end(bool now = false);
  // Called once if the connection ends otherwise (the client left, an error, the admin
  // endpoint stopped); not after end().
  void on_closed(std::function<void()> f) { on_closed_ = std::move(f); }

 private:
  friend class AdminConnection;
  AdminConnection* conn_ = nullptr;
  std::function<void()> on_closed_;
};

class AdminServer final : public net::ListenerCallbacks {
 public:
  // A handler answers through `respond`, at once or later (after asking the workers);
  // `respond` may be called once, on the loop thread, and is safe after the client left.
  using Respond = std::function<void(AdminResponse)>;
  using Handler = std::function<void(const AdminRequest&, Respond)>;
  // For answers computed on the spot.
  using SyncHandler = std::function<AdminResponse(const AdminRequest&)>;

  explicit AdminServer(event::Loop& loop);
  ~AdminServer();

  // Handles requests for `path`; a path ending in '/' also takes everything below it
  // (longest first).
  void handle(std::string path, Handler handler);
  void handle_sync(std::string path, SyncHandler handler);
  // Binds (without SO_REUSEPORT: a second sluice must not share the port) and starts
  // accepting. Returns the bound address (port 0 picks one).
  Result<net::Address> start(const net::Address& address);
  // Serves on a listening socket already bound (handed over by the process this one
  // replaces in a binary upgrade).
  Result<net::Address> start(net::Fd fd);
  // The listening socket, for a hand-over (-1 before start).
  int listening_fd() const { return fd_; }
  bool listening() const { return listener_ != nullptr; }
  // Accepts on readiness from now on (net::Listener::accept_by_polling).
  void accept_by_polling() {
    if (listener_) listener_->accept_by_polling();
  }
  // Stops accepting; connections already open are answered (a binary upgrade's old process).
  void stop_accepting() {
    listener_.reset();
    fd_ = -1;
  }
  void stop();

  // Answers `request` with the handler registered for its path (404 when none).
  void dispatch(const AdminRequest& request, Respond respond) const;

  // From now on, a POST sent by a browser (it carries an Origin header) is refused with 403
  // unless its X-Sluice-Token header is `token`: another web site open in the operator's
  // browser cannot drain an endpoint or reload. Tools that send no Origin (curl, scripts)
  // are not asked for it.
  void require_browser_token(std::string token) { token_ = std::move(token); }
  // Whether `request` carries the token (false when none is required).
  bool has_token(const AdminRequest& request) const;
  // The answer to a request that needed the token and did not carry it (403).
  static AdminResponse token_refusal();

  void on_accept(net::Fd fd, const net::Address& peer) override;

 private:
  // A connection that ended: destroyed once the current callback returns.
  void remove(AdminConnection* c);

  event::Loop& loop_;
  std::vector<std::pair<std::string, Handler>> handlers_;
  std::unique_ptr<net::Listener> listener_;
  int fd_ = -1;  // listener_'s socket
  std::vector<std::unique_ptr<AdminConnection>> connections_;
  std::string token_;
};

}  // namespace sluice::admin
