#include "http/http2/client_codec.h"

#include <nghttp2/nghttp2.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "event/loop.h"
#include "http/http2/request_fields.h"
#include "http/http2/server_codec.h"

namespace sluice::http::http2 {
namespace {

using Strings = std::vector<std::string>;

std::string fields_of(const HeaderMap& fields) {
  std::string out;
  for (const auto& h : fields) out += (out.empty() ? "" : ", ") + h.name + ": " + h.value;
  return out;
}

// One exchange's side of a stream: what the client codec delivered, in order.
struct Exchange final : ClientCodecCallbacks {
  bool on_head(StreamId, MessageHead& head) override {
    events.push_back("head " + std::to_string(head.status));
    heads.push_back(head);
    return true;
  }
  void on_data(StreamId stream, std::string_view data, bool end) override {
    body += data;
    if (end) events.push_back("end");
    if (codec && consume_eagerly && !data.empty()) codec->consumed(stream, data.size());
  }
  void on_trailers(StreamId, HeaderMap& trailers) override {
    events.push_back("trailers " + fields_of(trailers));
  }
  void on_stream_drained(StreamId stream) override {
    ++drained;
    if (codec && refills > 0) {
      --refills;
      codec->send_data(stream, std::string(20000, 'm'));
    }
  }
  void on_reset(StreamId, const StreamReset& reset) override {
    events.push_back("reset " + std::to_string(reset.code) + (reset.refused ? " refused " : " ") +
                     std::string(reset.reason));
  }
  Strings events;
  std::vector<MessageHead> heads;
  std::string body;
  int drained = 0;
  int refills = 0;  // on_stream_drained() sends more, this many times
  ClientCodec* codec = nullptr;
  bool consume_eagerly = false;
};

// The upstream server: the HTTP/2 server codec and what it received.
struct Server final : ServerCodecCallbacks {
  bool on_head(StreamId stream, MessageHead& head) override {
    events.push_back("head " + std::to_string(stream) + " " + head.method + " " + head.target);
    heads[stream] = head;
    return true;
  }
  void on_data(StreamId stream, std::string_view data, bool end) override {
    bodies[stream] += data;
    if (end) events.push_back("end " + std::to_string(stream));
  }
  void on_trailers(StreamId stream, HeaderMap& trailers) override {
    events.push_back("trailers " + std::to_string(stream) + " " + fields_of(trailers));
  }
  void on_reset(StreamId stream, std::string_view reason) override {
    events.push_back("reset " + std::to_string(stream) + " " + std::string(reason));
  }
  Strings events;
  std::map<StreamId, MessageHead> heads;
  std::map<StreamId, std::string> bodies;
};

// Feeds a connection's bytes to a codec, as the owning connection would.
template <typename Codec, typename Outcome>
struct Driver final : net::ConnectionCallbacks {
  void on_read() override {
    if (codec) outcome = codec->dispatch();
  }
  void on_read_closed() override { closed = true; }
  void on_write_drained() override {
    if (codec) codec->on_write_drained();
  }
  void on_error(int) override { closed = true; }
  Codec* codec = nullptr;
  Outcome outcome = Outcome::kContinue;
  bool closed = false;
};

size_t readable(int fd) {
  int n = 0;
  return ::ioctl(fd, FIONREAD, &n) == 0 ? static_cast<size_t>(n) : 0;
}

MessageHead request(std::string method, std::string target, std::vector<Header> fields = {}) {
  MessageHead h;
  h.method = std::move(method);
  h.target = std::move(target);
  for (auto& f : fields) h.headers.add(f.name, f.value);
  return h;
}

MessageHead response(int status, std::vector<Header> fields = {}) {
  MessageHead h;
  h.status = status;
  for (auto& f : fields) h.headers.add(f.name, f.value);
  return h;
}

// A client codec and a server codec on the two ends of a socket pair, in one event loop
// whose clock moves only by hand.
class Http2ClientCodecTest : public ::testing::Test {
 protected:
  void SetUp() override {
    int sv[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    ASSERT_TRUE(client_conn_.adopt(net::Fd(sv[0])).is_ok());
    ASSERT_TRUE(server_conn_.adopt(net::Fd(sv[1])).is_ok());
  }
  void TearDown() override {
    client_.reset();
    server_.reset();
  }

  void make(const ClientOptions& client = {}, const ServerOptions& server = {}) {
    client_ = std::make_unique<ClientCodec>(client_conn_, client, "https", clock_);
    server_ = std::make_unique<ServerCodec>(server_conn_, server, server_app_);
    client_driver_.codec = client_.get();
    server_driver_.codec = server_.get();
    server_->start();
    client_->start();
  }

  // Runs the loop until both sides are quiet: nothing queued, nothing unread.
  void pump() {
    for (int round = 0; round < 100; ++round) {
      loop_.run_until_idle();
      if (client_conn_.queued() == 0 && server_conn_.queued() == 0 &&
          readable(client_conn_.fd()) == 0 && readable(server_conn_.fd()) == 0) {
        return;
      }
    }
    FAIL() << "the peers kept talking";
  }

  // Opens a stream for `exchange` and sends `head`.
  StreamId send(Exchange& exchange, const MessageHead& head, bool end_stream) {
    StreamId id = client_->open_stream(exchange);
    exchange.codec = client_.get();
    if (id != 0) client_->send_head(id, head, end_stream);
    return id;
  }

  // The server answers `stream` with a whole response.
  void answer(StreamId stream, int status, std::string body, HeaderMap trailers = {}) {
    MessageHead r = response(status);
    r.content_length = trailers.empty() ? std::optional<uint64_t>(body.size()) : std::nullopt;
    server_->send_head(stream, r, ResponseOptions{});
    server_->send_data(stream, body);
    server_->send_trailers(stream, trailers);
  }

  ManualClock clock_;
  event::Loop loop_{clock_};
  Driver<ClientCodec, ClientCodec::Outcome> client_driver_;
  Driver<ServerCodec, ServerCodec::Outcome> server_driver_;
  net::Connection client_conn_{loop_, client_driver_};
  net::Connection server_conn_{loop_, server_driver_};
  Server server_app_;
  std::unique_ptr<ClientCodec> client_;
  std::unique_ptr<ServerCodec> server_;
};

TEST_F(Http2ClientCodecTest, GetAndItsResponse) {
  make();
  Exchange a;
  MessageHead get = request("GET", "/index.html?x=1",
                            {{"Host", "example.com"},
                             {"User-Agent", "t"},
                             {"Connection", "X-Hop"},
                             {"Transfer-Encoding", "chunked"},
                             {"Keep-Alive", "timeout=5"},
                             {"Proxy-Connection", "keep-alive"},
                             {"Upgrade", "h2c"},
                             {"TE", "gzip"},
                             {"X-Hop", "1"},
                             {"Accept", "*/*"}});
  StreamId id = send(a, get, true);
  EXPECT_EQ(id, 1u);
  EXPECT_EQ(client_->wire_id(id), 1u);
  EXPECT_EQ(client_->open_streams(), 1u);
  pump();
  // Host went as :authority (which the server turns back into a host field, first);
  // no connection-specific field, nor the one Connection named, was sent.
  EXPECT_EQ(server_app_.events, (Strings{"head 1 GET /index.html?x=1", "end 1"}));
  EXPECT_EQ(fields_of(server_app_.heads[1].headers),
            "host: example.com, user-agent: t, accept: */*");

  answer(1, 200, "hello");
  pump();
  EXPECT_EQ(a.events, (Strings{"head 200", "end"}));
  EXPECT_EQ(a.body, "hello");
  ASSERT_EQ(a.heads.size(), 1u);
  EXPECT_EQ(a.heads[0].status, 200);
  EXPECT_EQ(fields_of(a.heads[0].headers), "content-length: 5");
  EXPECT_EQ(a.heads[0].content_length, 5u);
  EXPECT_FALSE(a.heads[0].chunked);
  EXPECT_TRUE(a.heads[0].keep_alive);
  EXPECT_EQ(client_->open_streams(), 0u);
  EXPECT_EQ(client_->wire_id(id), 0u);
  EXPECT_EQ(client_driver_.outcome, ClientCodec::Outcome::kContinue);
  EXPECT_TRUE(client_->can_open());
}

TEST_F(Http2ClientCodecTest, TeTrailersIsKeptAndAbsoluteFormGivesTheAuthority) {
  make();
  Exchange a;
  send(a, request("GET", "http://origin.example:8080/p?q", {{"TE", "trailers"}}), true);
  pump();
  EXPECT_EQ(server_app_.events, (Strings{"head 1 GET /p?q", "end 1"}));
  EXPECT_EQ(fields_of(server_app_.heads[1].headers), "host: origin.example:8080, te: trailers");
}

TEST_F(Http2ClientCodecTest, PostWithBodyAndTrailers) {
  make();
  Exchange a;
  MessageHead post = request("POST", "/upload", {{"Host", "example.com"}});
  post.chunked = true;
  StreamId id = client_->open_stream(a);
  client_->send_head(id, post);  // chunked: a body follows
  client_->send_data(id, "hello ");
  pump();
  EXPECT_EQ(server_app_.events, (Strings{"head 1 POST /upload"}));
  EXPECT_EQ(server_app_.bodies[1], "hello ");
  EXPECT_TRUE(server_app_.heads[1].chunked);
  EXPECT_EQ(fields_of(server_app_.heads[1].headers), "host: example.com");

  client_->send_data(id, "world");
  HeaderMap trailers;
  trailers.add("X-Checksum", "abc");
  client_->send_trailers(id, trailers);
  pump();
  EXPECT_EQ(server_app_.events, (Strings{"head 1 POST /upload", "trailers 1 x-checksum: abc"}));
  EXPECT_EQ(server_app_.bodies[1], "hello world");
  EXPECT_EQ(client_->buffered(id), 0u);

  answer(1, 201, "");
  pump();
  EXPECT_EQ(a.events, (Strings{"head 201", "end"}));
  EXPECT_EQ(client_->open_streams(), 0u);
}

TEST_F(Http2ClientCodecTest, RequestBodyWaitsForTheServersWindow) {
  ServerOptions so;
  so.initial_stream_window = 16384;
  make({}, so);
  pump();  // the client learns the server's stream window
  Exchange a;
  MessageHead post = request("POST", "/big", {{"Host", "h"}});
  post.content_length = 40000;
  StreamId id = client_->open_stream(a);
  client_->send_head(id, post);
  const std::string body(40000, 'q');
  client_->send_data(id, body);
  pump();
  EXPECT_EQ(server_app_.bodies[1].size(), 16384u);
  EXPECT_EQ(client_->buffered(id), 40000u - 16384u);
  server_->consumed(1, 16384);
  pump();
  EXPECT_EQ(server_app_.bodies[1].size(), 32768u);
  EXPECT_EQ(client_->buffered(id), 40000u - 32768u);
  EXPECT_EQ(a.drained, 0);
  server_->consumed(1, 16384);
  pump();
  EXPECT_EQ(server_app_.bodies[1], body);
  EXPECT_EQ(client_->buffered(id), 0u);
  // The buffer emptied: the exchange may read more of the request body.
  EXPECT_EQ(a.drained, 1);
  client_->send_trailers(id, HeaderMap{});
  pump();
  EXPECT_EQ(server_app_.events, (Strings{"head 1 POST /big", "end 1"}));
  EXPECT_EQ(a.drained, 1);
}

TEST_F(Http2ClientCodecTest, ContentLengthBodyEndsWithItsLastData) {
  make();
  Exchange a;
  MessageHead put = request("PUT", "/k", {{"Host", "kv"}});
  put.content_length = 3;
  StreamId id = client_->open_stream(a);
  client_->send_head(id, put);
  client_->send_data(id, "abc");
  client_->send_trailers(id, HeaderMap{});
  pump();
  EXPECT_EQ(server_app_.events, (Strings{"head 1 PUT /k", "end 1"}));
  EXPECT_EQ(server_app_.heads[1].content_length, 3u);
  EXPECT_EQ(fields_of(server_app_.heads[1].headers), "host: kv, content-length: 3");
  EXPECT_EQ(server_app_.bodies[1], "abc");
}

TEST_F(Http2ClientCodecTest, ResponseTrailersGoToOnTrailers) {
  make();
  Exchange a;
  send(a,
       request("POST", "/pkg.Svc/Call", {{"Host", "grpc"}, {"Content-Type", "application/grpc"}}),
       true);
  pump();
  MessageHead r = response(200, {{"Content-Type", "application/grpc"}});
  server_->send_head(1, r, ResponseOptions{});
  server_->send_data(1, std::string("\0\0\0\0\0", 5));
  HeaderMap trailers;
  trailers.add("grpc-status", "0");
  trailers.add("grpc-message", "ok");
  server_->send_trailers(1, trailers);
  pump();
  EXPECT_EQ(a.events, (Strings{"head 200", "trailers grpc-status: 0, grpc-message: ok"}));
  EXPECT_EQ(a.body, std::string("\0\0\0\0\0", 5));
  ASSERT_EQ(a.heads.size(), 1u);
  EXPECT_FALSE(a.heads[0].content_length.has_value());
  // No length: the body ends with the stream (chunked to an HTTP/1 client).
  EXPECT_TRUE(a.heads[0].chunked);
  EXPECT_EQ(client_->open_streams(), 0u);
}

TEST_F(Http2ClientCodecTest, InterimHeadComesBeforeTheFinalOne) {
  make();
  Exchange a;
  send(a, request("GET", "/", {{"Host", "h"}}), true);
  pump();
  server_->send_interim(1, response(103, {{"Link", "</s.css>; rel=preload"}}));
  answer(1, 200, "ok");
  pump();
  EXPECT_EQ(a.events, (Strings{"head 103", "head 200", "end"}));
  ASSERT_EQ(a.heads.size(), 2u);
  EXPECT_EQ(fields_of(a.heads[0].headers), "link: </s.css>; rel=preload");
  EXPECT_EQ(fields_of(a.heads[1].headers), "content-length: 2");
  EXPECT_EQ(a.body, "ok");
}

TEST_F(Http2ClientCodecTest, TwoStreamsInterleave) {
  make();
  Exchange a, b;
  StreamId ida = send(a, request("GET", "/a", {{"Host", "h"}}), true);
  StreamId idb = send(b, request("GET", "/b", {{"Host", "h"}}), true);
  EXPECT_EQ(ida, 1u);
  EXPECT_EQ(idb, 2u);
  EXPECT_EQ(client_->wire_id(idb), 3u);
  EXPECT_EQ(client_->open_streams(), 2u);
  pump();
  EXPECT_EQ(server_app_.events, (Strings{"head 1 GET /a", "end 1", "head 3 GET /b", "end 3"}));

  MessageHead ra = response(200);
  MessageHead rb = response(404);
  server_->send_head(3, rb, ResponseOptions{});
  server_->send_head(1, ra, ResponseOptions{});
  server_->send_data(1, "a1");
  server_->send_data(3, "b1");
  pump();
  EXPECT_EQ(a.events, (Strings{"head 200"}));
  EXPECT_EQ(b.events, (Strings{"head 404"}));
  EXPECT_EQ(a.body, "a1");
  EXPECT_EQ(b.body, "b1");
  server_->send_data(1, "a2");
  server_->send_trailers(3, HeaderMap{});
  pump();
  EXPECT_EQ(b.events, (Strings{"head 404", "end"}));
  EXPECT_EQ(client_->open_streams(), 1u);
  server_->send_trailers(1, HeaderMap{});
  pump();
  EXPECT_EQ(a.events, (Strings{"head 200", "end"}));
  EXPECT_EQ(a.body, "a1a2");
  EXPECT_EQ(b.body, "b1");
  EXPECT_EQ(client_->open_streams(), 0u);
}

TEST_F(Http2ClientCodecTest, PeerConcurrencyLimitStopsNewStreams) {
  ServerOptions so;
  so.max_concurrent_streams = 1;
  make({}, so);
  pump();  // the server's SETTINGS arrive
  EXPECT_EQ(client_->peer_max_concurrent_streams(), 1u);
  EXPECT_TRUE(client_->can_open());
  Exchange a, b;
  StreamId id = send(a, request("GET", "/1", {{"Host", "h"}}), true);
  EXPECT_EQ(id, 1u);
  EXPECT_FALSE(client_->can_open());
  EXPECT_EQ(client_->open_stream(b), 0u);
  pump();
  answer(1, 200, "x");
  pump();
  EXPECT_EQ(a.events, (Strings{"head 200", "end"}));
  EXPECT_TRUE(client_->can_open());
  EXPECT_EQ(send(b, request("GET", "/2", {{"Host", "h"}}), true), 2u);
  EXPECT_EQ(client_->wire_id(2), 3u);
}

TEST_F(Http2ClientCodecTest, RefusedStreamIsReportedRetryable) {
  ServerOptions so;
  so.max_concurrent_streams = 1;
  make({}, so);
  // Both requests leave before the server's SETTINGS arrive: the second is refused.
  Exchange a, b;
  send(a, request("GET", "/1", {{"Host", "h"}}), true);
  send(b, request("GET", "/2", {{"Host", "h"}}), true);
  pump();
  EXPECT_EQ(b.events, (Strings{"reset 7 refused REFUSED_STREAM"}));
  EXPECT_TRUE(a.events.empty());
  EXPECT_EQ(client_->open_streams(), 1u);
}

TEST_F(Http2ClientCodecTest, GoAwayRefusesStreamsAboveItsLastStreamId) {
  make();
  Exchange a, b, c;
  send(a, request("GET", "/a", {{"Host", "h"}}), true);
  pump();
  EXPECT_EQ(server_app_.events, (Strings{"head 1 GET /a", "end 1"}));
  // The server's GOAWAY (last stream 1) and the client's stream 3 cross on the wire.
  server_->go_away(NGHTTP2_NO_ERROR);
  send(b, request("GET", "/b", {{"Host", "h"}}), true);
  StreamId idc = client_->open_stream(c);  // opened, head not sent yet
  ASSERT_NE(idc, 0u);
  pump();
  EXPECT_TRUE(client_->goaway_received());
  EXPECT_EQ(client_->goaway_last_stream_id(), 1u);
  EXPECT_EQ(b.events, (Strings{"reset 7 refused REFUSED_STREAM"}));
  EXPECT_EQ(c.events, (Strings{"reset 7 refused GOAWAY received"}));
  EXPECT_TRUE(a.events.empty());
  EXPECT_FALSE(client_->can_open());
  Exchange d;
  EXPECT_EQ(client_->open_stream(d), 0u);
  // The server never saw stream 3; stream 1 finishes.
  EXPECT_EQ(server_app_.events, (Strings{"head 1 GET /a", "end 1"}));
  client_->send_head(idc, request("GET", "/c", {{"Host", "h"}}), true);  // gone: a no-op
  EXPECT_EQ(client_->open_streams(), 1u);
  answer(1, 200, "last");
  pump();
  EXPECT_EQ(a.events, (Strings{"head 200", "end"}));
  EXPECT_EQ(a.body, "last");
  EXPECT_EQ(client_->open_streams(), 0u);
  EXPECT_EQ(client_->dispatch(), ClientCodec::Outcome::kFinished);
}

TEST_F(Http2ClientCodecTest, PeerResetReachesTheExchange) {
  make();
  Exchange a;
  send(a, request("GET", "/slow", {{"Host", "h"}}), true);
  pump();
  server_->reset(1, NGHTTP2_INTERNAL_ERROR);
  pump();
  EXPECT_EQ(a.events, (Strings{"reset 2 INTERNAL_ERROR"}));
  EXPECT_EQ(client_->open_streams(), 0u);
  EXPECT_TRUE(client_->can_open());
}

TEST_F(Http2ClientCodecTest, ResetAfterTheHeadIsReportedToo) {
  make();
  Exchange a;
  send(a, request("GET", "/", {{"Host", "h"}}), true);
  pump();
  MessageHead r = response(200);
  server_->send_head(1, r, ResponseOptions{});
  server_->send_data(1, "part");
  server_->reset(1, NGHTTP2_CANCEL);
  pump();
  EXPECT_EQ(a.events, (Strings{"head 200", "reset 8 CANCEL"}));
  EXPECT_EQ(a.body, "part");
}

TEST_F(Http2ClientCodecTest, OwnResetSendsRstStreamAndIsNotReported) {
  make();
  Exchange a;
  StreamId id = send(a, request("GET", "/", {{"Host", "h"}}), true);
  pump();
  client_->reset(id, NGHTTP2_CANCEL);
  EXPECT_EQ(client_->open_streams(), 0u);
  pump();
  EXPECT_EQ(server_app_.events, (Strings{"head 1 GET /", "end 1", "reset 1 CANCEL"}));
  EXPECT_TRUE(a.events.empty());
  // The server's late answer goes nowhere; the connection goes on.
  answer(1, 200, "late");
  pump();
  EXPECT_TRUE(a.events.empty());
  Exchange b;
  send(b, request("GET", "/next", {{"Host", "h"}}), true);
  pump();
  answer(3, 200, "ok");
  pump();
  EXPECT_EQ(b.events, (Strings{"head 200", "end"}));
}

TEST_F(Http2ClientCodecTest, ConsumedOpensTheWindow) {
  ClientOptions co;
  co.initial_stream_window = 16384;
  make(co);
  pump();  // the server learns the stream window
  Exchange slow, fast;
  fast.consume_eagerly = true;
  StreamId ids = send(slow, request("GET", "/big", {{"Host", "h"}}), true);
  send(fast, request("GET", "/big2", {{"Host", "h"}}), true);
  pump();
  const std::string big(40000, 'z');
  answer(1, 200, big);
  answer(3, 200, big);
  pump();
  // The stalled stream holds only its own window; the other one completes.
  EXPECT_EQ(slow.body.size(), 16384u);
  EXPECT_EQ(slow.events, (Strings{"head 200"}));
  EXPECT_EQ(fast.body, big);
  EXPECT_EQ(fast.events, (Strings{"head 200", "end"}));
  EXPECT_EQ(server_->buffered(1), 40000u - 16384u);

  client_->consumed(ids, 16384);
  pump();
  EXPECT_EQ(slow.body.size(), 32768u);
  // Acknowledging more than was delivered acknowledges what was.
  client_->consumed(ids, 100000);
  pump();
  EXPECT_EQ(slow.body, big);
  EXPECT_EQ(slow.events, (Strings{"head 200", "end"}));
  EXPECT_EQ(client_->open_streams(), 0u);
}

TEST_F(Http2ClientCodecTest, PausedStreamHoldsItsWindow) {
  ClientOptions co;
  co.initial_stream_window = 16384;
  make(co);
  pump();
  Exchange a;
  StreamId id = send(a, request("GET", "/p", {{"Host", "h"}}), true);
  pump();
  answer(1, 200, std::string(20000, 'p'));
  pump();
  EXPECT_EQ(a.body.size(), 16384u);
  client_->pause(id);
  client_->consumed(id, 16384);
  pump();
  EXPECT_EQ(a.body.size(), 16384u);
  client_->resume(id);
  pump();
  EXPECT_EQ(a.body.size(), 20000u);
  EXPECT_EQ(a.events, (Strings{"head 200", "end"}));
}

TEST_F(Http2ClientCodecTest, PingMeasuresTheRoundTrip) {
  make();
  pump();
  EXPECT_FALSE(client_->last_ping_rtt().has_value());
  EXPECT_TRUE(client_->ping());
  EXPECT_TRUE(client_->ping_outstanding());
  EXPECT_FALSE(client_->ping());  // one at a time
  clock_.advance(std::chrono::milliseconds(7));
  pump();
  EXPECT_FALSE(client_->ping_outstanding());
  ASSERT_TRUE(client_->last_ping_rtt().has_value());
  EXPECT_EQ(*client_->last_ping_rtt(), std::chrono::milliseconds(7));
}

TEST_F(Http2ClientCodecTest, LostConnectionFailsOpenStreams) {
  make();
  Exchange a, b;
  send(a, request("GET", "/a", {{"Host", "h"}}), true);
  pump();
  client_->open_stream(b);
  client_->fail_streams("upstream closed the connection");
  EXPECT_EQ(a.events, (Strings{"reset 8 upstream closed the connection"}));
  // b's request never left: it may be retried elsewhere.
  EXPECT_EQ(b.events, (Strings{"reset 8 refused upstream closed the connection"}));
  EXPECT_EQ(client_->open_streams(), 0u);
  EXPECT_FALSE(client_->can_open());
}

TEST_F(Http2ClientCodecTest, NotAnHttp2ServerIsAConnectionError) {
  make();
  Exchange a;
  send(a, request("GET", "/", {{"Host", "h"}}), true);
  client_conn_.input().append("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
  EXPECT_EQ(client_->dispatch(), ClientCodec::Outcome::kError);
  EXPECT_EQ(client_->goaway_code(), 1u);  // PROTOCOL_ERROR
  EXPECT_EQ(client_->error().status, 502);
  ASSERT_EQ(a.events.size(), 1u);
  EXPECT_EQ(a.events, (Strings{"reset 8 the upstream answered in HTTP/1, not HTTP/2"}));
  EXPECT_EQ(client_->error().reason, "the upstream answered in HTTP/1, not HTTP/2");
  EXPECT_FALSE(client_->can_open());
}

TEST_F(Http2ClientCodecTest, PrefaceOtherThanSettingsIsAConnectionError) {
  make();
  // A PING frame (type 6) where the server's SETTINGS must come first.
  client_conn_.input().append(
      std::string("\0\0\x08\x06\0\0\0\0\0"
                  "12345678",
                  17));
  EXPECT_EQ(client_->dispatch(), ClientCodec::Outcome::kError);
  EXPECT_EQ(client_->goaway_code(), 1u);
  EXPECT_EQ(client_->error().reason, "the upstream's preface is not a SETTINGS frame");
}

// A bare nghttp2 server session on a socket: frames exactly as the client codec sent them,
// and frames the server codec would never send.
class RawServer {
 public:
  explicit RawServer(int fd) : fd_(fd) {
    nghttp2_session_callbacks* cb = nullptr;
    nghttp2_session_callbacks_new(&cb);
    nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame);
    nghttp2_session_server_new(&session_, cb, this);
    nghttp2_session_callbacks_del(cb);
  }
  ~RawServer() {
    nghttp2_session_del(session_);
    ::close(fd_);
  }
  RawServer(const RawServer&) = delete;
  RawServer& operator=(const RawServer&) = delete;

  // Sends what the session queued and feeds it what arrived; whether anything moved.
  bool exchange() {
    bool moved = false;
    const uint8_t* p = nullptr;
    ssize_t n;
    while ((n = nghttp2_session_mem_send(session_, &p)) > 0) {
      EXPECT_EQ(::send(fd_, p, static_cast<size_t>(n), MSG_NOSIGNAL), n);
      moved = true;
    }
    char buf[65536];
    ssize_t r;
    while ((r = ::recv(fd_, buf, sizeof buf, MSG_DONTWAIT)) > 0) {
      moved = true;
      EXPECT_EQ(nghttp2_session_mem_recv(session_, reinterpret_cast<uint8_t*>(buf),
                                         static_cast<size_t>(r)),
                r);
    }
    return moved;
  }

  // A response head, with END_STREAM when `body` is empty.
  void respond(int32_t stream, std::vector<std::pair<std::string, std::string>> fields,
               std::string body = {}) {
    bodies_[stream] = std::move(body);
    std::vector<nghttp2_nv> nv;
    for (auto& [n, v] : fields) {
      nv.push_back({reinterpret_cast<uint8_t*>(n.data()), reinterpret_cast<uint8_t*>(v.data()),
                    n.size(), v.size(), NGHTTP2_NV_FLAG_NONE});
    }
    nghttp2_data_provider provider;
    provider.source.ptr = this;
    provider.read_callback = read_body;
    nghttp2_submit_response(session_, stream, nv.data(), nv.size(),
                            bodies_[stream].empty() ? nullptr : &provider);
  }

  nghttp2_session* session() { return session_; }
  std::map<int32_t, Strings> requests;  // "name value", pseudo-headers first, as sent
  Strings frames;                       // SETTINGS, WINDOW_UPDATE, GOAWAY and RST_STREAM received

 private:
  static RawServer& self(void* p) { return *static_cast<RawServer*>(p); }
  static int on_header(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name,
                       size_t namelen, const uint8_t* value, size_t valuelen, uint8_t, void* p) {
    self(p).requests[frame->hd.stream_id].push_back(
        std::string(reinterpret_cast<const char*>(name), namelen) + " " +
        std::string(reinterpret_cast<const char*>(value), valuelen));
    return 0;
  }
  static int on_frame(nghttp2_session*, const nghttp2_frame* frame, void* p) {
    Strings& frames = self(p).frames;
    if (frame->hd.type == NGHTTP2_SETTINGS && (frame->hd.flags & NGHTTP2_FLAG_ACK) == 0) {
      std::string s = "SETTINGS";
      for (size_t i = 0; i < frame->settings.niv; ++i) {
        s += ' ';
        s += std::to_string(frame->settings.iv[i].settings_id);
        s += '=';
        s += std::to_string(frame->settings.iv[i].value);
      }
      frames.push_back(s);
    } else if (frame->hd.type == NGHTTP2_WINDOW_UPDATE) {
      frames.push_back("WINDOW_UPDATE " + std::to_string(frame->hd.stream_id) + " " +
                       std::to_string(frame->window_update.window_size_increment));
    } else if (frame->hd.type == NGHTTP2_GOAWAY) {
      frames.push_back("GOAWAY " + std::to_string(frame->goaway.last_stream_id) + " " +
                       std::to_string(frame->goaway.error_code));
    } else if (frame->hd.type == NGHTTP2_RST_STREAM) {
      frames.push_back("RST_STREAM " + std::to_string(frame->hd.stream_id) + " " +
                       std::to_string(frame->rst_stream.error_code));
    }
    return 0;
  }
  static ssize_t read_body(nghttp2_session*, int32_t stream, uint8_t* buf, size_t length,
                           uint32_t* flags, nghttp2_data_source* source, void*) {
    auto& body = static_cast<RawServer*>(source->ptr)->bodies_[stream];
    size_t n = std::min(length, body.size());
    std::memcpy(buf, body.data(), n);
    body.erase(0, n);
    if (body.empty()) *flags |= NGHTTP2_DATA_FLAG_EOF;
    return static_cast<ssize_t>(n);
  }

  int fd_;
  nghttp2_session* session_ = nullptr;
  std::map<int32_t, std::string> bodies_;  // what is left to send, by stream
};

class Http2ClientCodecRawTest : public ::testing::Test {
 protected:
  void SetUp() override {
    int sv[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    ASSERT_TRUE(conn_.adopt(net::Fd(sv[0])).is_ok());
    server_ = std::make_unique<RawServer>(sv[1]);
    server_fd_ = sv[1];
  }

  void make(const ClientOptions& options = {}, std::string_view scheme = "https") {
    client_ = std::make_unique<ClientCodec>(conn_, options, scheme);
    driver_.codec = client_.get();
    client_->start();
    nghttp2_submit_settings(server_->session(), NGHTTP2_FLAG_NONE, nullptr, 0);
  }

  void pump() {
    for (int round = 0; round < 100; ++round) {
      loop_.run_until_idle();
      bool moved = server_->exchange();
      if (!moved && conn_.queued() == 0 && readable(conn_.fd()) == 0 && readable(server_fd_) == 0) {
        return;
      }
    }
    FAIL() << "the peers kept talking";
  }

  StreamId send(Exchange& exchange, const MessageHead& head, bool end_stream = true) {
    StreamId id = client_->open_stream(exchange);
    exchange.codec = client_.get();
    if (id != 0) client_->send_head(id, head, end_stream);
    return id;
  }

  event::Loop loop_;
  Driver<ClientCodec, ClientCodec::Outcome> driver_;
  net::Connection conn_{loop_, driver_};
  std::unique_ptr<RawServer> server_;
  int server_fd_ = -1;
  std::unique_ptr<ClientCodec> client_;
};

TEST_F(Http2ClientCodecRawTest, PrefaceSettingsAndConnectionWindow) {
  make();
  pump();
  // ENABLE_PUSH 0, INITIAL_WINDOW_SIZE 1 MiB, MAX_FRAME_SIZE 16 KiB, MAX_HEADER_LIST_SIZE
  // 64 KiB, NO_RFC7540_PRIORITIES 1; then the connection window grows to 4 MiB.
  EXPECT_EQ(server_->frames,
            (Strings{"SETTINGS 2=0 4=1048576 5=16384 6=65536 9=1", "WINDOW_UPDATE 0 4128769"}));
}

TEST_F(Http2ClientCodecRawTest, RequestPseudoHeadersAreExact) {
  make({}, "http");
  Exchange a, b, c;
  send(a, request("GET", "/x?y", {{"Host", "Example.com:8080"}, {"Accept", "*/*"}}));
  send(b, request("CONNECT", "backend:443", {{"Host", "backend:443"}}));
  send(c, request("OPTIONS", "*", {{"Host", "h"}, {"Cookie", "a=1"}}));
  Exchange d;
  send(d, request("GET", "https://origin.example?q=1", {}));
  pump();
  EXPECT_EQ(server_->requests[7],
            (Strings{":method GET", ":scheme http", ":authority origin.example", ":path /?q=1"}));
  EXPECT_EQ(server_->requests[1],
            (Strings{":method GET", ":scheme http", ":authority Example.com:8080", ":path /x?y",
                     "accept */*"}));
  EXPECT_EQ(server_->requests[3], (Strings{":method CONNECT", ":authority backend:443"}));
  EXPECT_EQ(server_->requests[5],
            (Strings{":method OPTIONS", ":scheme http", ":authority h", ":path *", "cookie a=1"}));
}

TEST_F(Http2ClientCodecRawTest, GoAwayBelowOpenStreamsRefusesThem) {
  make();
  Exchange a, b, c;
  send(a, request("GET", "/1", {{"Host", "h"}}));
  send(b, request("GET", "/2", {{"Host", "h"}}));
  send(c, request("GET", "/3", {{"Host", "h"}}));
  pump();
  ASSERT_EQ(server_->requests.size(), 3u);
  // The server processed stream 1 only.
  nghttp2_submit_goaway(server_->session(), NGHTTP2_FLAG_NONE, 1, NGHTTP2_NO_ERROR, nullptr, 0);
  pump();
  EXPECT_EQ(client_->goaway_last_stream_id(), 1u);
  EXPECT_EQ(b.events, (Strings{"reset 7 refused REFUSED_STREAM"}));
  EXPECT_EQ(c.events, (Strings{"reset 7 refused REFUSED_STREAM"}));
  EXPECT_TRUE(a.events.empty());
  EXPECT_EQ(client_->open_streams(), 1u);
  EXPECT_EQ(driver_.outcome, ClientCodec::Outcome::kContinue);
  server_->respond(1, {{":status", "200"}}, "done");
  pump();
  EXPECT_EQ(a.events, (Strings{"head 200", "end"}));
  EXPECT_EQ(a.body, "done");
  EXPECT_EQ(driver_.outcome, ClientCodec::Outcome::kFinished);
}

TEST_F(Http2ClientCodecRawTest, OwnGoAwayLetsTheOpenStreamFinish) {
  make();
  Exchange a;
  send(a, request("GET", "/", {{"Host", "h"}}));
  pump();
  server_->frames.clear();
  client_->go_away(NGHTTP2_NO_ERROR);
  EXPECT_FALSE(client_->can_open());
  pump();
  EXPECT_EQ(server_->frames, (Strings{"GOAWAY 0 0"}));
  EXPECT_EQ(client_->dispatch(), ClientCodec::Outcome::kContinue);
  server_->respond(1, {{":status", "200"}}, "bye");
  pump();
  EXPECT_EQ(a.events, (Strings{"head 200", "end"}));
  EXPECT_EQ(driver_.outcome, ClientCodec::Outcome::kFinished);
}

TEST_F(Http2ClientCodecRawTest, AStreamNotConsumingHoldsOnlyItsOwnWindow) {
  ClientOptions o;
  o.initial_stream_window = 16384;
  o.initial_connection_window = 65535;
  make(o);
  Exchange a, b;
  b.consume_eagerly = true;
  StreamId ida = send(a, request("GET", "/1", {{"Host", "h"}}));
  send(b, request("GET", "/2", {{"Host", "h"}}));
  pump();
  server_->respond(1, {{":status", "200"}}, std::string(100000, 'a'));
  pump();
  EXPECT_EQ(a.body.size(), 16384u);  // its stream window, never consumed
  server_->respond(3, {{":status", "200"}}, std::string(60000, 'b'));
  pump();
  // The connection window took a's bytes back on arrival: b is not held behind a.
  EXPECT_EQ(b.body.size(), 60000u);
  EXPECT_EQ(b.events, (Strings{"head 200", "end"}));
  client_->consumed(ida, 16384);
  pump();
  EXPECT_EQ(a.body.size(), 32768u);
  // Resetting the stalled stream leaves the connection usable.
  client_->reset(ida, NGHTTP2_CANCEL);
  pump();
  EXPECT_EQ(a.events, (Strings{"head 200"}));
}

TEST_F(Http2ClientCodecRawTest, CompletedStreamGivesItsUnconsumedBytesBack) {
  ClientOptions o;
  o.initial_connection_window = 65535;
  make(o);
  Exchange a, b;
  b.consume_eagerly = true;
  StreamId ida = send(a, request("GET", "/1", {{"Host", "h"}}));
  send(b, request("GET", "/2", {{"Host", "h"}}));
  pump();
  server_->respond(1, {{":status", "200"}}, std::string(60000, 'a'));
  pump();
  // Complete and never consumed: the stream's bytes no longer hold the connection window.
  EXPECT_EQ(a.events, (Strings{"head 200", "end"}));
  server_->respond(3, {{":status", "200"}}, std::string(60000, 'b'));
  pump();
  EXPECT_EQ(b.body.size(), 60000u);
  EXPECT_EQ(b.events, (Strings{"head 200", "end"}));
  client_->consumed(ida, 60000);  // late: a no-op
  EXPECT_EQ(client_->open_streams(), 0u);
}

TEST_F(Http2ClientCodecRawTest, RequestHeadTooLargeToSend) {
  make();
  Exchange a, b;
  send(a, request("GET", "/", {{"Host", "h"}, {"X-Huge", std::string(1100000, 'h')}}));
  pump();
  // Not retryable: it would not fit anywhere else either.
  EXPECT_EQ(a.events, (Strings{"reset 2 request header section too large"}));
  EXPECT_TRUE(server_->requests.empty());
  send(b, request("GET", "/small", {{"Host", "h"}}));
  pump();
  EXPECT_EQ(server_->requests.size(), 1u);
}

TEST_F(Http2ClientCodecRawTest, RefusedStreamFromThePeerIsRetryable) {
  make();
  Exchange a;
  send(a, request("POST", "/p", {{"Host", "h"}}), false);
  pump();
  nghttp2_submit_rst_stream(server_->session(), NGHTTP2_FLAG_NONE, 1, NGHTTP2_REFUSED_STREAM);
  pump();
  EXPECT_EQ(a.events, (Strings{"reset 7 refused REFUSED_STREAM"}));
  EXPECT_EQ(client_->open_streams(), 0u);
}

TEST_F(Http2ClientCodecRawTest, OversizedResponseHeadIsCancelled) {
  ClientOptions o;
  o.max_header_list_size = 1024;
  make(o);
  Exchange a;
  send(a, request("GET", "/", {{"Host", "h"}}));
  pump();
  server_->respond(1, {{":status", "200"}, {"x-big", std::string(2000, 'b')}}, "body");
  pump();
  EXPECT_EQ(a.events,
            (Strings{"reset 8 response header section larger than max_header_list_size"}));
  EXPECT_EQ(server_->frames.back(), "RST_STREAM 1 8");
  EXPECT_EQ(client_->open_streams(), 0u);
  // The connection goes on.
  Exchange b;
  send(b, request("GET", "/", {{"Host", "h"}}));
  pump();
  server_->respond(3, {{":status", "204"}});
  pump();
  EXPECT_EQ(b.events, (Strings{"head 204", "end"}));
}

TEST_F(Http2ClientCodecTest, OutputStopsAtTheConnectionsHighWatermark) {
  ServerOptions so;
  so.initial_stream_window = 16 << 20;
  so.initial_connection_window = 16 << 20;
  make({}, so);
  pump();  // the server's windows reach the client
  Exchange a;
  MessageHead post = request("POST", "/bulk", {{"Host", "h"}});
  post.content_length = 3 << 20;
  StreamId id = client_->open_stream(a);
  client_->send_head(id, post);
  const std::string body(3 << 20, 'w');
  client_->send_data(id, body);
  client_->send_trailers(id, HeaderMap{});
  // Frames stop once the connection holds its high watermark; the rest waits in the
  // stream's buffer until the connection drains.
  EXPECT_GE(client_conn_.queued(), net::Connection::kDefaultHighWatermark);
  EXPECT_LT(client_conn_.queued(), net::Connection::kDefaultHighWatermark + 16384 + 9);
  EXPECT_GT(client_->buffered(id), 0u);
  pump();
  EXPECT_EQ(client_->buffered(id), 0u);
  EXPECT_EQ(server_app_.bodies[1].size(), body.size());
  EXPECT_EQ(server_app_.events, (Strings{"head 1 POST /bulk", "end 1"}));
}

TEST(Http2RequestFields, LeftOut) {
  HeaderMap f;
  f.add("Connection", "close, X-Trace");
  f.add("X-Trace", "1");
  f.add("TE", " trailers ");
  f.add("Te", "gzip");
  f.add("Host", "h");
  f.add("Accept", "*/*");
  Strings kept;
  for (const auto& h : f) {
    if (!left_out(f, h)) kept.push_back(h.name);
  }
  EXPECT_EQ(kept, (Strings{"TE", "Accept"}));
}

TEST(Http2RequestFields, RequestNv) {
  auto names = [](const NvList& l) {
    Strings out;
    for (const auto& nv : l.nv) {
      out.push_back(std::string(reinterpret_cast<const char*>(nv.name), nv.namelen) + " " +
                    std::string(reinterpret_cast<const char*>(nv.value), nv.valuelen));
    }
    return out;
  };
  MessageHead h = request("POST", "", {{"Host", "a.example"}, {"X-Mixed-Case", "V"}});
  h.content_length = 12;
  EXPECT_EQ(names(request_nv(h, "https")),
            (Strings{":method POST", ":scheme https", ":authority a.example", ":path /",
                     "x-mixed-case V", "content-length 12"}));
  MessageHead t = request("GET", "http://b.example:81", {});
  EXPECT_EQ(names(request_nv(t, "http")),
            (Strings{":method GET", ":scheme http", ":authority b.example:81", ":path /"}));
  HeaderMap trailers;
  trailers.add("Grpc-Status", "0");
  trailers.add("Connection", "close");
  EXPECT_EQ(names(trailer_nv(trailers)), (Strings{"grpc-status 0"}));
}

TEST_F(Http2ClientCodecTest, ResponseCompleteBeforeTheRequestIsNotAReset) {
  make();
  Exchange a;
  MessageHead post = request("POST", "/early", {{"Host", "h"}});
  post.chunked = true;
  StreamId id = client_->open_stream(a);
  client_->send_head(id, post);
  client_->send_data(id, "part");
  pump();
  // The server answers before the request body ends (RFC 9113 §8.1).
  answer(1, 413, "");
  pump();
  EXPECT_EQ(a.events, (Strings{"head 413", "end"}));
  EXPECT_EQ(client_->open_streams(), 1u);  // the request side is still open
  client_->fail_streams("upstream closed the connection");
  EXPECT_EQ(a.events, (Strings{"head 413", "end"}));
  EXPECT_EQ(client_->open_streams(), 0u);
}

// Random peer frames and owner calls, from a fixed seed: every stream ends at most once
// (end, trailers or reset, nothing after), and failing the connection leaves none open.
TEST(Http2ClientCodecRandom, EveryStreamEndsOnce) {
  std::mt19937 rng(20261203);
  for (int iter = 0; iter < 400; ++iter) {
    SCOPED_TRACE(iter);
    event::Loop loop;
    int sv[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    Driver<ClientCodec, ClientCodec::Outcome> driver;
    net::Connection conn(loop, driver);
    ASSERT_TRUE(conn.adopt(net::Fd(sv[0])).is_ok());
    ClientOptions co;
    co.initial_stream_window = 1024 + rng() % 40000;
    co.max_header_list_size = 1024 + rng() % 2000;
    ClientCodec c(conn, co, "https");
    driver.codec = &c;
    c.start();
    RawServer server(sv[1]);
    const nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 1 + static_cast<uint32_t>(rng() % 4)},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 100 + static_cast<uint32_t>(rng() % 70000)}};
    nghttp2_submit_settings(server.session(), NGHTTP2_FLAG_NONE, iv, std::size(iv));
    std::vector<std::unique_ptr<Exchange>> exchanges;
    std::vector<StreamId> ids;
    auto pick = [&] { return ids[rng() % ids.size()]; };
    auto any_stream = [&] { return 1 + 2 * static_cast<int32_t>(rng() % 6); };
    auto pump = [&] {
      for (int round = 0; round < 50; ++round) {
        loop.run_until_idle();
        if (!server.exchange() && conn.queued() == 0 && readable(conn.fd()) == 0 &&
            readable(sv[1]) == 0) {
          return;
        }
      }
    };
    for (int step = 0; step < 30; ++step) {
      switch (rng() % 14) {
        case 0:
        case 1: {
          exchanges.push_back(std::make_unique<Exchange>());
          Exchange& e = *exchanges.back();
          e.codec = &c;
          e.consume_eagerly = rng() % 2 == 0;
          e.refills = static_cast<int>(rng() % 3);
          if (StreamId id = c.open_stream(e)) {
            ids.push_back(id);
            if (rng() % 5 != 0) c.send_head(id, request("POST", "/", {{"Host", "h"}}), rng() % 2);
          }
          break;
        }
        case 2:
          if (!ids.empty()) c.send_data(pick(), std::string(rng() % 70000, 'd'));
          break;
        case 3:
          if (!ids.empty()) {
            HeaderMap t;
            if (rng() % 2 == 0) t.add("x-t", "1");
            c.send_trailers(pick(), t);
          }
          break;
        case 4:
          if (!ids.empty()) c.consumed(pick(), rng() % 50000);
          break;
        case 5:
          if (!ids.empty()) c.reset(pick(), rng() % 14);
          break;
        case 6:
          if (!ids.empty()) rng() % 2 ? c.pause(pick()) : c.resume(pick());
          break;
        case 7:
          c.ping();
          break;
        case 8: {
          int status = rng() % 3 == 0 ? 100 + static_cast<int>(rng() % 4)
                                      : 200 + static_cast<int>(rng() % 300);
          std::vector<std::pair<std::string, std::string>> f = {
              {":status", std::to_string(status)}};
          if (rng() % 3 == 0) f.push_back({"x-big", std::string(rng() % 3000, 'b')});
          if (rng() % 3 == 0) f.push_back({"content-length", std::to_string(rng() % 100)});
          server.respond(any_stream(), f, std::string(rng() % 2 ? rng() % 80000 : 0, 'r'));
          break;
        }
        case 9: {
          nghttp2_nv nv[] = {{reinterpret_cast<uint8_t*>(const_cast<char*>("grpc-status")),
                              reinterpret_cast<uint8_t*>(const_cast<char*>("0")), 11, 1,
                              NGHTTP2_NV_FLAG_NONE}};
          nghttp2_submit_trailer(server.session(), any_stream(), nv, 1);
          break;
        }
        case 10:
          nghttp2_submit_rst_stream(server.session(), NGHTTP2_FLAG_NONE, any_stream(), rng() % 14);
          break;
        case 11:
          if (rng() % 4 == 0) {
            nghttp2_submit_goaway(server.session(), NGHTTP2_FLAG_NONE,
                                  static_cast<int32_t>(rng() % 8), rng() % 3, nullptr, 0);
          }
          break;
        case 12:
          if (rng() % 4 == 0) c.fail_streams("gone");
          break;
        default:
          pump();
          break;
      }
      if (rng() % 3 == 0) pump();
    }
    pump();
    c.fail_streams("end");
    ASSERT_EQ(c.open_streams(), 0u);
    for (const auto& e : exchanges) {
      bool ended = false;
      for (const std::string& ev : e->events) {
        ASSERT_FALSE(ended) << ev << " after the stream ended";
        ended = ev.starts_with("end") || ev.starts_with("trailers") || ev.starts_with("reset");
      }
    }
  }
}

TEST(Http2ClientOptions, Validate) {
  EXPECT_TRUE(ClientOptions{}.validate().empty());
  ClientOptions o;
  o.initial_stream_window = 100;
  o.max_frame_size = 1 << 24;
  ConfigIssues issues = o.validate();
  ASSERT_EQ(issues.size(), 2u);
  EXPECT_EQ(issues[0].path, "initial_stream_window");
  EXPECT_EQ(issues[1].path, "max_frame_size");
}

}  // namespace
}  // namespace sluice::http::http2
