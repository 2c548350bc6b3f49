// HttpCall: one HTTP/1.1 request from the main thread's loop to a control-plane server (an
// etcd member's JSON gateway), without blocking: connect, send, and hear the response as it
// streams (a watch's response never ends by itself). Plain TCP, or TLS with a client context
// (the server's certificate verified, a client certificate when the context has one). The owner
// destroys the call from its callbacks only through the loop (defer_delete) or after they return.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "event/loop.h"
#include "http/http1/parser.h"
#include "net/address.h"
#include "net/connection.h"
#include "tls/context.h"

namespace sluice::discovery {

// The client context for `config` (null: none asked for); `error` says why one could not be
// made (a file that cannot be read): every call then fails with it.
std::shared_ptr<tls::ClientContext> make_call_tls(const std::optional<tls::ClientConfig>& config,
                                                  std::string* error);

class HttpCallCallbacks {
 public:
  // The response's status line arrived.
  virtual void on_call_status(int status) = 0;
  // Body bytes (chunked framing removed), as they come.
  virtual void on_call_body(std::string_view data) = 0;
  // The response ended (`error` empty) or the call failed (connect, reset, invalid response).
  virtual void on_call_done(const std::string& error) = 0;

 protected:
  ~HttpCallCallbacks() = default;
};

class HttpCall final : public net::ConnectionCallbacks,
                       public http::http1::ParserCallbacks,
                       public event::DeferredDeletable {
 public:
  // `tls`: null for plain HTTP.
  HttpCall(event::Loop& loop, HttpCallCallbacks& callbacks,
           std::shared_ptr<tls::ClientContext> tls = nullptr);
  ~HttpCall() override;

  // POSTs `body` (JSON) to `path` on `to`; `headers` are extra "Name: value\r\n" lines.
  void post(const net::Address& to, const std::string& path, const std::string& body,
            const std::string& headers);
  // No more callbacks; closes the connection.
  void cancel();

  // ConnectionCallbacks
  void on_connected() override;
  void on_secured() override;
  void on_read() override;
  void on_read_closed() override;
  void on_error(int err) override;
  void on_write_drained() override {}
  // ParserCallbacks
  bool on_head(http::MessageHead& head) override;
  void on_body(std::string_view data) override;
  void on_message_complete(http::HeaderMap& trailers) override;

 private:
  void done(const std::string& error);
  void send();

  event::Loop& loop_;
  HttpCallCallbacks* callbacks_;
  std::shared_ptr<tls::ClientContext> tls_;
  std::unique_ptr<net::Connection> conn_;
  std::unique_ptr<http::http1::Parser> parser_;
  std::string request_;
  bool sent_ = false;
  bool finished_ = false;
};

}  // namespace sluice::discovery
