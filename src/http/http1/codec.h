// The HTTP/1 server codec: requests parsed by the strict Parser (llhttp), responses framed
// for HTTP/1.1 (Content-Length when known, else chunked for HTTP/1.1 clients, else the body
// ends with the connection) and written to the connection. One stream at a time: the parser
// stops after each request and resume_next() lets it read the next, so pipelined requests
// are answered in order. Owned by the connection it serves; loop thread only.
#pragma once

#include <cstdint>
#include <string>

#include "http/codec.h"
#include "http/http1/parser.h"
#include "net/connection.h"

namespace sluice::http::http1 {

class ServerCodec final : public http::ServerCodec, private ParserCallbacks {
 public:
  ServerCodec(net::Connection& conn, const ParserLimits& limits, ServerCodecCallbacks& callbacks);

  // Parses what the connection's input holds (consuming it) and delivers what completes.
  Parser::Outcome dispatch();
  // The current request's response is done: the next request may be parsed.
  void resume_next() { parser_.resume(); }
  // The stream the next request opens (the current one while a request is being read).
  StreamId current_stream() const { return stream_; }
  bool mid_message() const { return parser_.mid_message(); }
  bool in_head() const { return parser_.in_head(); }
  const ParseError& error() const { return parser_.error(); }

  // http::ServerCodec
  bool send_head(StreamId stream, MessageHead& head, const ResponseOptions& options) override;
  void send_interim(StreamId stream, const MessageHead& head) override;
  void send_data(StreamId stream, std::string_view data) override;
  void send_trailers(StreamId stream, const HeaderMap& trailers) override;
  void pause(StreamId) override { conn_.set_read_enabled(false); }
  void resume(StreamId) override {
    if (conn_.open()) conn_.set_read_enabled(true);
  }
  void consumed(StreamId, size_t) override {}

 private:
  // ParserCallbacks
  bool on_head(MessageHead& head) override;
  void on_body(std::string_view data) override;
  void on_message_complete(HeaderMap& trailers) override;

  net::Connection& conn_;
  ServerCodecCallbacks& callbacks_;
  Parser parser_;
  StreamId stream_ = 1;
  uint8_t request_minor_ = 1;  // the current request's HTTP/1.<minor>
  bool chunked_ = false;       // the current response is chunked
  bool no_body_ = false;
};

// The HTTP/1 client codec: responses parsed by the strict Parser and delivered as one
// stream's head, data and trailers; requests written to the connection the pool lent.
// Interim (1xx) heads are delivered like final ones (their status says which); after one,
// resume_next() lets the final response be parsed. Owned by its UpstreamExchange.
class ClientCodec final : public http::ClientCodec, private ParserCallbacks {
 public:
  static constexpr StreamId kStream = 1;  // HTTP/1: one exchange, one stream

  explicit ClientCodec(ClientCodecCallbacks& callbacks);

  // The connection requests go out on and responses come from (null: none).
  void attach(net::Connection* conn) { conn_ = conn; }
  // The request was HEAD (no body follows a response head) or CONNECT (a 2xx head is
  // followed by the tunnel).
  void expect(bool head_request, bool connect_request) {
    parser_.set_no_body_expected(head_request);
    parser_.set_connect_request(connect_request);
  }
  // Parses what the connection's input holds (consuming it).
  Parser::Outcome dispatch();
  // The upstream closed: completes a response delimited by the close.
  Parser::Outcome finish() { return parser_.finish(); }
  void resume_next() { parser_.resume(); }
  bool mid_message() const { return parser_.mid_message(); }
  bool in_head() const { return parser_.in_head(); }
  const ParseError& error() const { return parser_.error(); }

  // http::ClientCodec
  void send_head(StreamId stream, const MessageHead& head) override;
  // HTTP/1 body bytes, already framed as the head announced.
  void send_data(StreamId stream, std::string_view data) override;
  void pause(StreamId) override {
    if (conn_) conn_->set_read_enabled(false);
  }
  void resume(StreamId) override {
    if (conn_ && conn_->open()) conn_->set_read_enabled(true);
  }

 private:
  // ParserCallbacks
  bool on_head(MessageHead& head) override { return callbacks_.on_head(kStream, head); }
  void on_body(std::string_view data) override { callbacks_.on_data(kStream, data, false); }
  void on_message_complete(HeaderMap& trailers) override;

  ClientCodecCallbacks& callbacks_;
  Parser parser_;
  net::Connection* conn_ = nullptr;
};

}  // namespace sluice::http::http1
