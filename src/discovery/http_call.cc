#include "discovery/http_call.h"

#include <fmt/format.h>

#include "net/connect.h"
#include "net/socket_options.h"

namespace sluice::discovery {

std::shared_ptr<tls::ClientContext> make_call_tls(const std::optional<tls::ClientConfig>& config,
                                                  std::string* error) {
  if (!config) return nullptr;
  auto ctx = tls::ClientContext::create(*config);
  if (!ctx) {
    *error = "TLS: " + ctx.status().message();
    return nullptr;
  }
  return *ctx;
}

HttpCall::HttpCall(event::Loop& loop, HttpCallCallbacks& callbacks,
                   std::shared_ptr<tls::ClientContext> tls)
    : loop_(loop), callbacks_(&callbacks), tls_(std::move(tls)) {}

HttpCall::~HttpCall() {
  finished_ = true;
  if (conn_) conn_->close();
}

void HttpCall::post(const net::Address& to, const std::string& path, const std::string& body,
                    const std::string& headers) {
  request_ = fmt::format(
      "POST {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: sluice\r\nContent-Type: application/json\r\n"
      "Content-Length: {}\r\n{}\r\n{}",
      path, to.to_string(), body.size(), headers, body);
  net::SocketOptions options;
  auto pending = net::start_connect(to, options, std::nullopt, false);
  if (!pending) return done(pending.status().message());
  conn_ = std::make_unique<net::Connection>(loop_, *this);
  if (tls_) {
    // The configured name (sni), or the member's IP checked against the certificate's IP SANs.
    auto session = tls_->new_session(pending->fd.get(), tls_->config().sni, to);
    if (!session) return done("TLS: cannot make a session");
    conn_->set_transport(std::move(session));
  }
  if (Status s = conn_->adopt_connecting(std::move(pending->fd), pending->connected); !s) {
    return done(s.message());
  }
  if (pending->connected) on_connected();
}

void HttpCall::cancel() {
  finished_ = true;
  if (conn_) conn_->close();
}

void HttpCall::on_connected() {
  if (!tls_) send();  // with TLS: once the handshake is done (on_secured)
}

void HttpCall::on_secured() {
  send();
}

void HttpCall::send() {
  if (finished_ || sent_) return;
  sent_ = true;
  parser_ = std::make_unique<http::http1::Parser>(http::http1::Parser::Kind::kResponse,
                                                  http::http1::Parser::kDefaultLimits, *this);
  conn_->write(request_);
  request_.clear();
}

void HttpCall::on_read() {
  Buffer& in = conn_->input();
  if (finished_ || !parser_) {
    in.clear();
    return;
  }
  while (!finished_ && !in.empty()) {
    size_t used = 0;
    auto outcome = parser_->execute(in.view(), &used);
    in.consume(used);
    if (outcome == http::http1::Parser::Outcome::kError) {
      return done("invalid response: " + parser_->error().reason);
    }
    if (outcome == http::http1::Parser::Outcome::kMessageComplete) {
      if (!finished_) parser_->resume();
    } else if (outcome != http::http1::Parser::Outcome::kNeedMore) {
      return done("unexpected upgrade in the response");
    }
  }
}

void HttpCall::on_read_closed() {
  if (finished_) return;
  if (parser_ && parser_->finish() == http::http1::Parser::Outcome::kMessageComplete) return;
  done("connection closed before the response ended");
}

void HttpCall::on_error(int err) {
  if (finished_) return;
  // A failed handshake says why (a certificate not verified, a client certificate refused).
  const net::Transport* t = conn_ ? conn_->transport() : nullptr;
  if (t && !t->established() && !t->failure().empty()) {
    return done(fmt::format("TLS: {}", t->failure()));
  }
  done(net::error_text(err));
}

bool HttpCall::on_head(http::MessageHead& head) {
  if (head.status < 200) return true;
  if (!finished_) callbacks_->on_call_status(head.status);
  return !finished_;
}

void HttpCall::on_body(std::string_view data) {
  if (!finished_) callbacks_->on_call_body(data);
}

void HttpCall::on_message_complete(http::HeaderMap&) {
  if (!finished_) done("");
}

void HttpCall::done(const std::string& error) {
  if (finished_) return;  // cancelled, or already reported
  finished_ = true;
  if (conn_) conn_->close(!error.empty());
  callbacks_->on_call_done(error);
}

}  // namespace sluice::discovery
