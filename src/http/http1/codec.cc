#include "http/http1/codec.h"

#include <algorithm>

#include "http/http1/encoder.h"

namespace sluice::http::http1 {
namespace {

// Heads and chunks on their way to the connection: one buffer per worker thread.
std::string& scratch() {
  thread_local std::string s;
  return s;
}

}  // namespace

ServerCodec::ServerCodec(net::Connection& conn, const ParserLimits& limits,
                         ServerCodecCallbacks& callbacks)
    : conn_(conn), callbacks_(callbacks), parser_(Parser::Kind::kRequest, limits, *this) {}

Parser::Outcome ServerCodec::dispatch() {
  size_t consumed = 0;
  Parser::Outcome o = parser_.execute(conn_.input().view(), &consumed);
  // A callback may have closed the connection (and emptied its input).
  conn_.input().consume(std::min(consumed, conn_.input().size()));
  return o;
}

bool ServerCodec::on_head(MessageHead& head) {
  request_minor_ = static_cast<uint8_t>(head.version_minor);
  return callbacks_.on_head(stream_, head);
}

void ServerCodec::on_body(std::string_view data) {
  callbacks_.on_data(stream_, data, false);
}

void ServerCodec::on_message_complete(HeaderMap& trailers) {
  StreamId s = stream_++;
  if (trailers.empty()) {
    callbacks_.on_data(s, {}, true);
  } else {
    callbacks_.on_trailers(s, trailers);
  }
}

bool ServerCodec::send_head(StreamId, MessageHead& head, const ResponseOptions& o) {
  bool client_11 = request_minor_ >= 1;
  bool close = o.close_after;
  chunked_ = false;
  no_body_ = o.no_body;
  if (head.content_length) {
    std::string cl = std::to_string(*head.content_length);
    const std::string* have = head.headers.get("content-length");
    if (!have || *have != cl) head.headers.set("Content-Length", std::move(cl));
  } else if (!o.no_body) {
    if (client_11) {
      chunked_ = true;
      head.headers.add("Transfer-Encoding", "chunked");
    } else {
      // An HTTP/1.0 client without a length: the body ends when we close.
      close = true;
    }
  }
  if (o.upgrade) {
    if (!o.connect) head.headers.set("Connection", "upgrade");
    close = false;
  } else if (close) {
    head.headers.add("Connection", "close");
  } else if (!client_11) {
    head.headers.add("Connection", "keep-alive");
  }
  std::string& out = scratch();
  out.clear();
  encode_response_head(head, out);
  conn_.write(out);
  return close;
}

void ServerCodec::send_interim(StreamId, const MessageHead& head) {
  std::string& out = scratch();
  out.clear();
  encode_response_head(head, out);
  conn_.write(out);
}

void ServerCodec::send_data(StreamId, std::string_view data) {
  if (no_body_ || data.empty()) return;
  if (!chunked_) return conn_.write(data);
  std::string& out = scratch();
  out.clear();
  encode_chunk(data, out);
  conn_.write(out);
}

void ServerCodec::send_trailers(StreamId, const HeaderMap& trailers) {
  if (!chunked_ || no_body_) return;
  std::string& out = scratch();
  out.clear();
  encode_last_chunk(trailers, out);
  conn_.write(out);
}

ClientCodec::ClientCodec(ClientCodecCallbacks& callbacks)
    : callbacks_(callbacks), parser_(Parser::Kind::kResponse, Parser::kDefaultLimits, *this) {}

Parser::Outcome ClientCodec::dispatch() {
  // A callback may detach the connection (given back to its pool, which deletes it only
  // once the loop iteration ends): what was parsed is consumed from it all the same.
  net::Connection* c = conn_;
  size_t consumed = 0;
  Parser::Outcome o = parser_.execute(c->input().view(), &consumed);
  c->input().consume(std::min(consumed, c->input().size()));
  return o;
}

void ClientCodec::on_message_complete(HeaderMap& trailers) {
  if (trailers.empty()) {
    callbacks_.on_data(kStream, {}, true);
  } else {
    callbacks_.on_trailers(kStream, trailers);
  }
}

void ClientCodec::send_head(StreamId, const MessageHead& head) {
  std::string& out = scratch();
  out.clear();
  encode_request_head(head, out);
  if (conn_) conn_->write(out);
}

void ClientCodec::send_data(StreamId, std::string_view data) {
  if (conn_ && !data.empty()) conn_->write(data);
}

}  // namespace sluice::http::http1
