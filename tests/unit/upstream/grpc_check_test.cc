#include "upstream/health/grpc_check.h"

#include <sys/ioctl.h>
#include <sys/socket.h>

#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "event/loop.h"
#include "http/http2/server_codec.h"

namespace sluice::upstream::health {
namespace {

using namespace std::string_literals;
using sluice::http::HeaderMap;
using sluice::http::MessageHead;
using sluice::http::ResponseOptions;
using sluice::http::StreamId;
namespace http2 = sluice::http::http2;

// The gRPC server's side: what the HTTP/2 server codec delivered.
struct Server final : sluice::http::ServerCodecCallbacks {
  bool on_head(StreamId stream, MessageHead& head) override {
    heads[stream] = head;
    last = stream;
    return true;
  }
  void on_data(StreamId stream, std::string_view data, bool end) override {
    bodies[stream] += data;
    if (end) ended = true;
  }
  void on_trailers(StreamId, HeaderMap&) override { ended = true; }
  std::map<StreamId, MessageHead> heads;
  std::map<StreamId, std::string> bodies;
  StreamId last = 0;
  bool ended = false;
};

// Feeds the server connection's bytes to the server codec.
struct ServerDriver final : net::ConnectionCallbacks {
  void on_read() override {
    if (codec) codec->dispatch();
  }
  void on_read_closed() override {}
  void on_error(int) override {}
  http2::ServerCodec* codec = nullptr;
};

// Forwards the check connection's events to the GrpcCheck, as the HealthChecker does.
struct CheckDriver final : net::ConnectionCallbacks {
  void on_read() override {
    if (check) check->on_read();
  }
  void on_read_closed() override {
    if (check) check->on_read_closed();
  }
  void on_write_drained() override {
    if (check) check->on_write_drained();
  }
  void on_error(int) override {}
  GrpcCheck* check = nullptr;
};

size_t readable(int fd) {
  int n = 0;
  return ::ioctl(fd, FIONREAD, &n) == 0 ? static_cast<size_t>(n) : 0;
}

struct CheckResult {
  bool passed;
  std::string detail;
};

// A GrpcCheck and an HTTP/2 server codec on the two ends of a socket pair.
class GrpcCheckTest : public ::testing::Test {
 protected:
  void SetUp() override { fresh(); }
  void TearDown() override { clear(); }
  void clear() {
    check_.reset();
    server_.reset();
    check_conn_.reset();
    server_conn_.reset();
    results_.clear();
    app_ = Server{};
  }
  // New connections, a new check; the server codec is made by start_server().
  void fresh() {
    clear();
    check_conn_ = std::make_unique<net::Connection>(loop_, check_driver_);
    server_conn_ = std::make_unique<net::Connection>(loop_, server_driver_);
    int sv[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    ASSERT_TRUE(check_conn_->adopt(net::Fd(sv[0])).is_ok());
    ASSERT_TRUE(server_conn_->adopt(net::Fd(sv[1])).is_ok());
    check_ = std::make_unique<GrpcCheck>(*check_conn_, false,
                                         [this](bool passed, const std::string& detail) {
                                           results_.push_back({passed, detail});
                                           check_conn_->close(!passed);
                                         });
    check_driver_.check = check_.get();
    server_driver_.codec = nullptr;
  }
  void start_server() {
    server_ = std::make_unique<http2::ServerCodec>(*server_conn_, http2::ServerOptions{}, app_);
    server_driver_.codec = server_.get();
    server_->start();
  }
  void pump() {
    for (int round = 0; round < 100; ++round) {
      loop_.run_until_idle();
      bool quiet = check_conn_->queued() == 0 && server_conn_->queued() == 0 &&
                   (!check_conn_->open() || readable(check_conn_->fd()) == 0) &&
                   (!server_conn_->open() || readable(server_conn_->fd()) == 0);
      if (quiet) return;
    }
    FAIL() << "the peers kept talking";
  }
  // Starts the check and lets the request reach the server.
  StreamId request(const std::string& service = "") {
    start_server();
    check_->start("api.example:443", service);
    pump();
    EXPECT_TRUE(app_.ended) << "the request ended";
    return app_.last;
  }
  void respond(StreamId stream, int status, HeaderMap head_fields, std::optional<std::string> body,
               HeaderMap trailers) {
    MessageHead r;
    r.status = status;
    r.headers = std::move(head_fields);
    if (!body) {
      // Trailers-only: the head ends the stream.
      r.content_length = 0;
      server_->send_head(stream, r, ResponseOptions{.no_body = true});
    } else {
      server_->send_head(stream, r, ResponseOptions{});
      server_->send_data(stream, *body);
      server_->send_trailers(stream, trailers);
    }
    pump();
  }
  static HeaderMap fields(std::vector<sluice::http::Header> list) {
    HeaderMap m;
    for (auto& h : list) m.add(h.name, h.value);
    return m;
  }
  static HeaderMap grpc_type() { return fields({{"content-type", "application/grpc"}}); }
  static std::string framed(std::string message) {
    std::string out = "\0\0\0\0"s;
    out.push_back(static_cast<char>(message.size()));
    return out + message;
  }

  ManualClock clock_;
  event::Loop loop_{clock_};
  CheckDriver check_driver_;
  ServerDriver server_driver_;
  std::unique_ptr<net::Connection> check_conn_;
  std::unique_ptr<net::Connection> server_conn_;
  Server app_;
  std::unique_ptr<http2::ServerCodec> server_;
  std::unique_ptr<GrpcCheck> check_;
  std::vector<CheckResult> results_;
};

TEST_F(GrpcCheckTest, TheRequest) {
  StreamId s = request("app.Api");
  const MessageHead& h = app_.heads[s];
  EXPECT_EQ(h.method, "POST");
  EXPECT_EQ(h.target, "/grpc.health.v1.Health/Check");
  std::vector<std::string> got;
  for (const auto& f : h.headers) got.push_back(f.name + ": " + f.value);
  EXPECT_EQ(got,
            (std::vector<std::string>{"host: api.example:443", "content-type: application/grpc",
                                      "te: trailers", "user-agent: sluice-health"}));
  EXPECT_EQ(app_.bodies[s],
            "\0\0\0\0\x09\x0a\x07"
            "app.Api"s);
  EXPECT_TRUE(results_.empty());
}

TEST_F(GrpcCheckTest, ServingInTrailersPasses) {
  StreamId s = request();
  EXPECT_EQ(app_.bodies[s], "\0\0\0\0\0"s);  // the whole server: an empty message
  respond(s, 200, grpc_type(), framed("\x08\x01"), fields({{"grpc-status", "0"}}));
  ASSERT_EQ(results_.size(), 1u);
  EXPECT_TRUE(results_[0].passed);
  EXPECT_EQ(results_[0].detail, "SERVING");
}

struct Case {
  const char* name;
  int status;
  HeaderMap head;
  std::optional<std::string> body;  // nullopt: trailers-only
  HeaderMap trailers;
  std::string detail;
};

TEST_F(GrpcCheckTest, EveryOtherAnswerFailsWithWhatItWas) {
  auto grpc = [](std::vector<sluice::http::Header> more) {
    HeaderMap m = grpc_type();
    for (auto& h : more) m.add(h.name, h.value);
    return m;
  };
  auto ok = [] { return fields({{"grpc-status", "0"}}); };
  const std::vector<Case> cases = {
      {"not serving", 200, grpc({}), framed("\x08\x02"), ok(), "NOT_SERVING"},
      {"unknown status", 200, grpc({}), framed(""), ok(), "UNKNOWN"},
      {"undefined status", 200, grpc({}), framed("\x08\x09"), ok(), "serving status 9"},
      {"trailers-only not found",
       200,
       grpc({{"grpc-status", "5"}, {"grpc-message", "unknown%20service"}}),
       std::nullopt,
       {},
       "grpc-status 5 (NOT_FOUND): unknown service"},
      {"unimplemented in trailers", 200, grpc({}), ""s,
       fields({{"grpc-status", "12"}, {"grpc-message", "Method not found!"}}),
       "grpc-status 12 (UNIMPLEMENTED): Method not found!"},
      {"undefined grpc-status", 200, grpc({}), ""s, fields({{"grpc-status", "99"}}),
       "grpc-status 99"},
      {"bad grpc-status", 200, grpc({}), ""s, fields({{"grpc-status", "x1"}}),
       "invalid grpc-status 'x1'"},
      {"no grpc-status", 200, grpc({}), framed("\x08\x01"), fields({{"x-other", "1"}}),
       "HTTP 200 without grpc-status"},
      {"http 503", 503, grpc({}), "down"s, {}, "HTTP status 503"},
      {"not grpc",
       200,
       fields({{"content-type", "text/html"}}),
       "<html>"s,
       {},
       "content-type 'text/html' is not application/grpc"},
      {"no message", 200, grpc({}), ""s, ok(), "no response message"},
      {"compressed", 200, grpc({}), "\x01\0\0\0\x02\x08\x01"s, ok(),
       "compressed response message (none was accepted)"},
      {"malformed", 200, grpc({}), framed("\x08"), ok(),
       "malformed HealthCheckResponse: field 1 at byte 0 is cut"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    fresh();
    StreamId s = request();
    respond(s, c.status, c.head, c.body, c.trailers);
    ASSERT_EQ(results_.size(), 1u);
    EXPECT_FALSE(results_[0].passed);
    EXPECT_EQ(results_[0].detail, c.detail);
  }
}

TEST_F(GrpcCheckTest, AnHttp1AnswerIsNoHttp2) {
  check_->start("api.example:443", "");
  pump();
  server_conn_->write("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
  pump();
  ASSERT_EQ(results_.size(), 1u);
  EXPECT_FALSE(results_[0].passed);
  EXPECT_EQ(results_[0].detail, "no HTTP/2: the upstream answered in HTTP/1, not HTTP/2");
}

TEST_F(GrpcCheckTest, ClosedWithoutAWordIsNoHttp2) {
  check_->start("api.example:443", "");
  pump();
  server_conn_->close();
  pump();
  ASSERT_EQ(results_.size(), 1u);
  EXPECT_FALSE(results_[0].passed);
  EXPECT_EQ(results_[0].detail, "no HTTP/2: connection closed before the endpoint's SETTINGS");
}

TEST_F(GrpcCheckTest, ClosedMidResponse) {
  StreamId s = request();
  MessageHead r;
  r.status = 200;
  r.headers = grpc_type();
  server_->send_head(s, r, ResponseOptions{});
  pump();
  server_conn_->close();
  pump();
  ASSERT_EQ(results_.size(), 1u);
  EXPECT_FALSE(results_[0].passed);
  EXPECT_EQ(results_[0].detail, "connection closed before a complete response");
}

TEST_F(GrpcCheckTest, OversizedBodyFails) {
  StreamId s = request();
  respond(s, 200, grpc_type(), std::string(5000, 'x'), fields({{"grpc-status", "0"}}));
  ASSERT_EQ(results_.size(), 1u);
  EXPECT_FALSE(results_[0].passed);
  EXPECT_EQ(results_[0].detail, "response body longer than 4101 bytes");
}

}  // namespace
}  // namespace sluice::upstream::health
