#include "admin/admin_server.h"

#include <sys/socket.h>

#include <algorithm>

#include <fmt/format.h>

#include "base/check.h"
#include "base/log.h"
#include "event/timer.h"
#include "http/http1/encoder.h"
#include "http/http1/parser.h"
#include "net/connection.h"

namespace sluice::admin {

namespace h1 = sluice::http::http1;

// One operator connection. Requests are answered in order, one at a time.
class AdminConnection final : public net::ConnectionCallbacks, public h1::ParserCallbacks {
 public:
  static constexpr size_t kMaxBody = 64 * 1024;

  // An operator connection idle this long is closed, so idle clients cannot pin
  // descriptors on the main thread.
  static constexpr Duration kIdleTimeout = std::chrono::seconds(60);

  // `on_closed` runs once, when the connection ends; it may destroy it later, not at once.
  AdminConnection(const AdminServer& server, event::Loop& loop,
                  std::function<void(AdminConnection*)> on_closed)
      : server_(server),
        on_closed_(std::move(on_closed)),
        loop_(loop),
        conn_(loop, *this),
        parser_(h1::Parser::Kind::kRequest, kLimits, *this),
        idle_(loop.timers(), [this] { finish(); }) {}

  // A stream's socket buffers this much at most in the kernel: a client that stops reading
  // shows in AdminStream::queued() after a few frames, not after megabytes.
  static constexpr int kStreamSendBuffer = 64 * 1024;

  ~AdminConnection() { detach_stream(); }

  Status start(net::Fd fd) {
    idle_.arm_at(loop_.now() + kIdleTimeout);
    return conn_.adopt(std::move(fd));
  }

  size_t queued() const { return conn_.queued(); }
  void stream_write(std::string_view bytes) { conn_.write(bytes); }
  void stream_end(bool now) {
    stream_.reset();
    if (now) return finish();
    closing_ = true;
    conn_.shutdown_write();
    // A client that neither reads the rest nor closes is closed after the idle timeout.
    idle_.arm_at(loop_.now() + kIdleTimeout);
  }

  void on_read() override {
    Buffer& in = conn_.input();
    if (stream_ || closing_) {
      // Nothing more is asked on a stream's connection: what comes is dropped.
      in.consume(in.size());
      return;
    }
    idle_.arm_at(loop_.now() + kIdleTimeout);
    // A stream answered at once ends the parsing: nothing after it is asked.
    while (!closing_ && !waiting_ && !stream_ && !in.empty()) {
      size_t used = 0;
      auto outcome = parser_.execute(in.view(), &used);
      in.consume(used);
      if (outcome == h1::Parser::Outcome::kError) {
        const auto& e = parser_.error();
        return reply(AdminResponse{e.status, "text/plain; charset=utf-8", e.reason + "\n"}, true);
      }
      if (outcome == h1::Parser::Outcome::kMessageComplete) {
        parser_.resume();
      } else if (outcome != h1::Parser::Outcome::kNeedMore) {
        return reply(AdminResponse{400, "text/plain; charset=utf-8", "unsupported request\n"},
                     true);
      }
    }
    // Requests pipelined behind the one that started the stream are dropped.
    if (stream_) in.consume(in.size());
  }
  void on_read_closed() override { finish(); }
  void on_error(int) override { finish(); }

  bool on_head(sluice::http::MessageHead& head) override {
    request_ = AdminRequest{};
    request_.method = head.method;
    request_.headers = head.headers;
    std::string_view target = head.target;
    size_t q = target.find('?');
    request_.path = std::string(target.substr(0, q));
    if (q != std::string_view::npos) request_.query = std::string(target.substr(q + 1));
    keep_alive_ = head.keep_alive;
    too_large_ = false;
    return true;
  }
  void on_body(std::string_view data) override {
    if (request_.body.size() + data.size() > kMaxBody) {
      too_large_ = true;
      return;
    }
    request_.body.append(data);
  }
  void on_message_complete(sluice::http::HeaderMap&) override {
    if (too_large_) {
      return reply(AdminResponse{413, "text/plain; charset=utf-8", "request body too large\n"},
                   true);
    }
    waiting_ = true;
    std::weak_ptr<bool> alive = alive_;
    bool close = !keep_alive_;
    in_dispatch_ = true;
    server_.dispatch(request_, [this, alive, close](AdminResponse r) {
      if (alive.expired()) return;  // the client left while the answer was prepared
      waiting_ = false;
      reply(r, close);
      // An answer that came later (from the workers) resumes a pipelined request; one given
      // at once lets the parse loop that is running go on by itself.
      if (!in_dispatch_) on_read();
    });
    in_dispatch_ = false;
  }

 private:
  static inline const h1::ParserLimits kLimits{};

  void reply(const AdminResponse& r, bool close) {
    // Once the response is a stream, nothing else is written into it.
    if (closing_ || stream_) return;
    if (r.stream) return start_stream(r);
    sluice::http::MessageHead head;
    head.status = r.status;
    head.headers.add("Content-Type", r.content_type);
    head.headers.add("Content-Length", std::to_string(r.body.size()));
    head.headers.add("Cache-Control", "no-store");
    if (close) head.headers.add("Connection", "close");
    std::string out;
    h1::encode_response_head(head, out);
    if (request_.method != "HEAD") out += r.body;
    conn_.write(out);
    if (close) {
      closing_ = true;
      conn_.shutdown_write();
    }
  }
  // The body runs until the stream ends: no length, and the connection closes after it
  // (RFC 9112 §6.3: a response body delimited by the close).
  void start_stream(const AdminResponse& r) {
    SLUICE_CHECK(!stream_);
    sluice::http::MessageHead head;
    head.status = r.status;
    head.headers.add("Content-Type", r.content_type);
    head.headers.add("Cache-Control", "no-store");
    head.headers.add("Connection", "close");
    std::string out;
    h1::encode_response_head(head, out);
    out += r.body;
    conn_.write(out);
    idle_.cancel();  // the stream's owner decides when it ends
    int size = kStreamSendBuffer;
    ::setsockopt(conn_.fd(), SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
    stream_ = std::make_shared<AdminStream>();
    stream_->conn_ = this;
    r.stream(stream_);
  }
  // The stream hears that the connection ended, unless its owner ended it.
  void detach_stream() {
    if (!stream_) return;
    auto stream = std::move(stream_);
    stream->conn_ = nullptr;
    auto closed = std::move(stream->on_closed_);
    if (closed) closed();
  }
  void finish() {
    if (done_) return;
    done_ = true;
    idle_.cancel();
    alive_.reset();
    conn_.close();
    detach_stream();
    on_closed_(this);
  }

  const AdminServer& server_;
  std::function<void(AdminConnection*)> on_closed_;
  event::Loop& loop_;
  net::Connection conn_;
  h1::Parser parser_;
  event::Timer idle_;
  AdminRequest request_;
  bool keep_alive_ = true;
  bool too_large_ = false;
  bool closing_ = false;
  bool done_ = false;
  bool waiting_ = false;      // a handler has the request; later input waits
  bool in_dispatch_ = false;  // inside the handler call (and so inside the parser)
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  std::shared_ptr<AdminStream> stream_;  // while the response is a stream
};

size_t AdminStream::queued() const {
  return conn_ ? conn_->queued() : 0;
}

void AdminStream::write(std::string_view bytes) {
  if (conn_) conn_->stream_write(bytes);
}

void AdminStream::end(bool now) {
  on_closed_ = nullptr;
  if (!conn_) return;
  AdminConnection* c = conn_;
  conn_ = nullptr;
  c->stream_end(now);
}

AdminServer::AdminServer(event::Loop& loop) : loop_(loop) {}

AdminServer::~AdminServer() {
  stop();
}

void AdminServer::handle_sync(std::string path, SyncHandler handler) {
  handle(std::move(path), [handler = std::move(handler)](const AdminRequest& r, Respond respond) {
    respond(handler(r));
  });
}

void AdminServer::handle(std::string prefix, Handler handler) {
  handlers_.emplace_back(std::move(prefix), std::move(handler));
  // Longest prefix first, so that "/clusters/" wins over "/".
  std::stable_sort(handlers_.begin(), handlers_.end(),
                   [](const auto& a, const auto& b) { return a.first.size() > b.first.size(); });
}

Result<net::Address> AdminServer::start(const net::Address& address) {
  auto fd = net::bind_listener(address, 128, net::SocketOptions{}, /*reuse_port=*/false);
  if (!fd) return fd.status();
  return start(std::move(fd.value()));
}

Result<net::Address> AdminServer::start(net::Fd fd) {
  auto bound = net::local_address(fd.get());
  if (!bound) return bound.status();
  fd_ = fd.get();
  listener_ = std::make_unique<net::Listener>(loop_, std::move(fd), "admin", *this);
  if (Status s = listener_->start(); !s) return s;
  return *bound;
}

void AdminServer::stop() {
  listener_.reset();
  fd_ = -1;
  connections_.clear();
}

void AdminServer::on_accept(net::Fd fd, const net::Address&) {
  auto c = std::make_unique<AdminConnection>(*this, loop_,
                                             [this](AdminConnection* closed) { remove(closed); });
  if (Status s = c->start(std::move(fd)); !s) {
    LOG_WARN("admin: {}", s.message());
    return;
  }
  connections_.push_back(std::move(c));
}

AdminResponse AdminServer::token_refusal() {
  return AdminResponse{
      403, "text/plain; charset=utf-8",
      "this action needs the X-Sluice-Token header: the token sluice logged at startup\n"};
}

bool AdminServer::has_token(const AdminRequest& request) const {
  const std::string* given = request.headers.get("x-sluice-token");
  if (token_.empty() || !given || given->size() != token_.size()) return false;
  // In constant time: how long a wrong guess took tells nothing of the token.
  unsigned char diff = 0;
  for (size_t i = 0; i < token_.size(); ++i) {
    diff |= static_cast<unsigned char>((*given)[i] ^ token_[i]);
  }
  return diff == 0;
}

void AdminServer::dispatch(const AdminRequest& request, Respond respond) const {
  if (!token_.empty() && request.method == "POST" && request.headers.get("origin") &&
      !has_token(request)) {
    return respond(token_refusal());
  }
  for (const auto& [prefix, handler] : handlers_) {
    // "/ready" is that path only; "/clusters/" is everything below it.
    bool match = prefix.back() == '/' ? request.path.compare(0, prefix.size(), prefix) == 0
                                      : request.path == prefix;
    if (match) return handler(request, std::move(respond));
  }
  respond(AdminResponse{404, "text/plain; charset=utf-8", "no such admin endpoint\n"});
}

void AdminServer::remove(AdminConnection* c) {
  // Called from the connection's own callback: destroy it once the iteration is over.
  auto it = std::find_if(connections_.begin(), connections_.end(),
                         [c](const auto& p) { return p.get() == c; });
  if (it == connections_.end()) return;
  struct Holder : event::DeferredDeletable {
    std::unique_ptr<AdminConnection> c;
  };
  auto h = std::make_unique<Holder>();
  h->c = std::move(*it);
  connections_.erase(it);
  loop_.defer_delete(std::move(h));
}

}  // namespace sluice::admin
