#include "http/http1/codec.h"

#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "event/loop.h"
#include "http/http1/encoder.h"

namespace sluice::http::http1 {
namespace {

struct NoEvents final : net::ConnectionCallbacks {
  void on_read() override {}
  void on_read_closed() override {}
  void on_error(int) override {}
};

struct Recorder final : ServerCodecCallbacks {
  bool on_head(StreamId stream, MessageHead& head) override {
    events.push_back("head " + std::to_string(stream) + " " + head.method + " " + head.target);
    return true;
  }
  void on_data(StreamId stream, std::string_view data, bool end) override {
    events.push_back("data " + std::to_string(stream) + " " + std::string(data) +
                     (end ? " end" : ""));
  }
  void on_trailers(StreamId stream, HeaderMap& trailers) override {
    events.push_back("trailers " + std::to_string(stream) + " " + std::to_string(trailers.size()));
  }
  std::vector<std::string> events;
};

class CodecTest : public ::testing::Test {
 protected:
  void SetUp() override {
    int sv[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    peer_ = sv[0];
    ASSERT_TRUE(conn_.adopt(net::Fd(sv[1])).is_ok());
  }
  void TearDown() override { ::close(peer_); }

  // Feeds `bytes` as if read from the client and parses them.
  Parser::Outcome feed(std::string_view bytes) {
    conn_.input().append(bytes);
    return codec_.dispatch();
  }
  std::string written() {
    conn_.flush();
    std::string out;
    char buf[4096];
    ssize_t n;
    while ((n = ::recv(peer_, buf, sizeof buf, MSG_DONTWAIT)) > 0) out.append(buf, n);
    return out;
  }

  event::Loop loop_;
  NoEvents events_;
  net::Connection conn_{loop_, events_};
  Recorder recorder_;
  ServerCodec codec_{conn_, Parser::kDefaultLimits, recorder_};
  int peer_ = -1;
};

TEST_F(CodecTest, RequestsBecomeStreamsInOrder) {
  EXPECT_EQ(feed("POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi"
                 "GET /b HTTP/1.1\r\nHost: x\r\n\r\n"),
            Parser::Outcome::kMessageComplete);
  codec_.resume_next();
  EXPECT_EQ(codec_.dispatch(), Parser::Outcome::kMessageComplete);
  codec_.resume_next();
  EXPECT_EQ(feed("POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                 "1\r\nz\r\n0\r\nX-T: 1\r\n\r\n"),
            Parser::Outcome::kMessageComplete);
  std::vector<std::string> want = {"head 1 POST /a", "data 1 hi",   "data 1  end",
                                   "head 2 GET /b",  "data 2  end", "head 3 POST /c",
                                   "data 3 z",       "trailers 3 1"};
  EXPECT_EQ(recorder_.events, want);
}

TEST_F(CodecTest, FramesResponses) {
  struct Case {
    const char* name;
    const char* request;
    std::optional<uint64_t> length;
    ResponseOptions options;
    bool closes;
    const char* head;  // the head written, without the status line
  };
  const Case cases[] = {
      {"length known, HTTP/1.1",
       "GET / HTTP/1.1\r\nHost: x\r\n\r\n",
       5,
       {},
       false,
       "Content-Length: 5\r\n\r\n"},
      {"no length, HTTP/1.1: chunked",
       "GET / HTTP/1.1\r\nHost: x\r\n\r\n",
       std::nullopt,
       {},
       false,
       "Transfer-Encoding: chunked\r\n\r\n"},
      {"no length, HTTP/1.0: the close ends it",
       "GET / HTTP/1.0\r\n\r\n",
       std::nullopt,
       {},
       true,
       "Connection: close\r\n\r\n"},
      {"HTTP/1.0 keep-alive",
       "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
       1,
       {},
       false,
       "Content-Length: 1\r\nConnection: keep-alive\r\n\r\n"},
      {"close asked",
       "GET / HTTP/1.1\r\nHost: x\r\n\r\n",
       1,
       {false, false, false, true},
       true,
       "Content-Length: 1\r\nConnection: close\r\n\r\n"},
      {"HEAD: no body, no chunking",
       "HEAD / HTTP/1.1\r\nHost: x\r\n\r\n",
       std::nullopt,
       {true, false, false, false},
       false,
       "\r\n"},
      {"101",
       "GET / HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: ws\r\n\r\n",
       std::nullopt,
       {true, true, false, true},
       false,
       "Connection: upgrade\r\n\r\n"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    // A fresh codec per case: an HTTP/1.0 request without keep-alive ends its connection.
    ServerCodec codec(conn_, Parser::kDefaultLimits, recorder_);
    conn_.input().append(c.request);
    EXPECT_EQ(codec.dispatch(), Parser::Outcome::kMessageComplete);
    MessageHead head;
    head.status = 200;
    head.content_length = c.length;
    EXPECT_EQ(codec.send_head(codec.current_stream(), head, c.options), c.closes);
    std::string out = written();
    ASSERT_EQ(out.substr(0, 17), "HTTP/1.1 200 OK\r\n") << out;
    EXPECT_EQ(out.substr(17), c.head);
    conn_.input().clear();
  }
}

TEST_F(CodecTest, ChunksBodyAndTrailers) {
  feed("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
  MessageHead head;
  head.status = 200;
  codec_.send_head(1, head, {});
  written();
  codec_.send_data(1, "hello");
  HeaderMap trailers;
  trailers.add("X-Sum", "1");
  codec_.send_trailers(1, trailers);
  EXPECT_EQ(written(), "5\r\nhello\r\n0\r\nX-Sum: 1\r\n\r\n");
}

struct ClientRecorder final : ClientCodecCallbacks {
  bool on_head(StreamId stream, MessageHead& head) override {
    events.push_back("head " + std::to_string(stream) + " " + std::to_string(head.status));
    return true;
  }
  void on_data(StreamId stream, std::string_view data, bool end) override {
    events.push_back("data " + std::to_string(stream) + " " + std::string(data) +
                     (end ? " end" : ""));
  }
  void on_trailers(StreamId stream, HeaderMap& trailers) override {
    events.push_back("trailers " + std::to_string(stream) + " " + std::to_string(trailers.size()));
  }
  std::vector<std::string> events;
};

TEST_F(CodecTest, ClientSendsRequestsAndParsesResponses) {
  ClientRecorder recorder;
  ClientCodec client(recorder);
  client.attach(&conn_);
  MessageHead req;
  req.method = "GET";
  req.target = "/x";
  req.headers.add("Host", "up");
  client.send_head(ClientCodec::kStream, req);
  client.send_data(ClientCodec::kStream, "body");
  EXPECT_EQ(written(), "GET /x HTTP/1.1\r\nHost: up\r\n\r\nbody");
  conn_.input().append("HTTP/1.1 100 Continue\r\n\r\n");
  EXPECT_EQ(client.dispatch(), Parser::Outcome::kMessageComplete);
  client.resume_next();
  conn_.input().append(
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n"
      "X-Sum: 1\r\n\r\n");
  EXPECT_EQ(client.dispatch(), Parser::Outcome::kMessageComplete);
  EXPECT_TRUE(conn_.input().empty());
  std::vector<std::string> want = {"head 1 100", "data 1  end", "head 1 200", "data 1 ok",
                                   "trailers 1 1"};
  EXPECT_EQ(recorder.events, want);
  // A response to HEAD has no body, whatever its head says.
  ClientRecorder head_recorder;
  ClientCodec head_client(head_recorder);
  head_client.attach(&conn_);
  head_client.expect(/*head_request=*/true, /*connect_request=*/false);
  conn_.input().append("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n");
  EXPECT_EQ(head_client.dispatch(), Parser::Outcome::kMessageComplete);
  std::vector<std::string> head_want = {"head 1 200", "data 1  end"};
  EXPECT_EQ(head_recorder.events, head_want);
}

TEST(Http1Encoder, HeadsAndTrailersByteForByte) {
  MessageHead req;
  req.method = "GET";
  req.target = "/a?b";
  req.headers.add("Host", "x");
  req.headers.add("X-Long", std::string(40, 'v'));
  req.headers.add("Empty", "");
  std::string out = "before|";
  encode_request_head(req, out);
  EXPECT_EQ(out, "before|GET /a?b HTTP/1.1\r\nHost: x\r\nX-Long: " + std::string(40, 'v') +
                     "\r\nEmpty: \r\n\r\n");
  MessageHead resp;
  resp.status = 204;
  out.clear();
  encode_response_head(resp, out);
  EXPECT_EQ(out, "HTTP/1.1 204 No Content\r\n\r\n");
  HeaderMap trailers;
  trailers.add("X-Sum", "5");
  out.clear();
  encode_last_chunk(trailers, out);
  EXPECT_EQ(out, "0\r\nX-Sum: 5\r\n\r\n");
}

}  // namespace
}  // namespace sluice::http::http1
