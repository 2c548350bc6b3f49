#include "http/http2/server_codec.h"

#include <nghttp2/nghttp2.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "event/loop.h"

namespace sluice::http::http2 {
namespace {

struct NoEvents final : net::ConnectionCallbacks {
  void on_read() override {}
  void on_read_closed() override {}
  void on_error(int) override {}
};

// The owner's side: what the codec delivered, in order.
struct Recorder final : ServerCodecCallbacks {
  bool on_head(StreamId stream, MessageHead& head) override {
    events.push_back("head " + std::to_string(stream) + " " + head.method + " " + head.target);
    heads[stream] = head;
    return true;
  }
  void on_data(StreamId stream, std::string_view data, bool end) override {
    bodies[stream] += data;
    if (!data.empty()) ++data_calls[stream];
    if (end) events.push_back("end " + std::to_string(stream));
  }
  void on_trailers(StreamId stream, HeaderMap& trailers) override {
    std::string t = "trailers " + std::to_string(stream);
    for (const auto& h : trailers) t += " " + h.name + "=" + h.value;
    events.push_back(t);
  }
  void on_reset(StreamId stream, std::string_view reason) override {
    events.push_back("reset " + std::to_string(stream) + " " + std::string(reason));
  }
  std::vector<std::string> events;
  std::map<StreamId, MessageHead> heads;
  std::map<StreamId, std::string> bodies;
  std::map<StreamId, int> data_calls;
};

// A request body the client sends from memory, with optional trailers.
struct Body {
  std::string data;
  size_t offset = 0;
  std::vector<std::pair<std::string, std::string>> trailers;
};

struct Response {
  std::vector<std::string> headers;  // "name value", :status first
  std::vector<std::string> trailers;
  std::string body;
  bool closed = false;
  uint32_t close_code = 0;
};

// An nghttp2 client session: the peer the server codec is tested against.
class Client {
 public:
  Client() {
    nghttp2_session_callbacks* cb = nullptr;
    nghttp2_session_callbacks_new(&cb);
    nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_close);
    nghttp2_session_client_new(&session_, cb, this);
    nghttp2_session_callbacks_del(cb);
    nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, nullptr, 0);
  }
  ~Client() { nghttp2_session_del(session_); }

  int32_t request(const std::vector<std::pair<std::string, std::string>>& fields,
                  Body* body = nullptr) {
    std::vector<nghttp2_nv> nv;
    for (const auto& [n, v] : fields) {
      nv.push_back({reinterpret_cast<uint8_t*>(const_cast<char*>(n.data())),
                    reinterpret_cast<uint8_t*>(const_cast<char*>(v.data())), n.size(), v.size(),
                    NGHTTP2_NV_FLAG_NONE});
    }
    nghttp2_data_provider provider;
    provider.source.ptr = body;
    provider.read_callback = read_body;
    return nghttp2_submit_request(session_, nullptr, nv.data(), nv.size(),
                                  body ? &provider : nullptr, this);
  }

  nghttp2_session* session() { return session_; }
  std::map<int32_t, Response> responses;
  std::vector<std::string> frames;  // RST_STREAM, GOAWAY, WINDOW_UPDATE as received
  std::vector<std::string> data_order;

 private:
  static Client& self(void* p) { return *static_cast<Client*>(p); }
  static int on_header(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name,
                       size_t namelen, const uint8_t* value, size_t valuelen, uint8_t, void* p) {
    std::string f = std::string(reinterpret_cast<const char*>(name), namelen) + " " +
                    std::string(reinterpret_cast<const char*>(value), valuelen);
    Response& r = self(p).responses[frame->hd.stream_id];
    (frame->headers.cat == NGHTTP2_HCAT_HEADERS ? r.trailers : r.headers).push_back(f);
    return 0;
  }
  static int on_data(nghttp2_session*, uint8_t, int32_t id, const uint8_t* data, size_t len,
                     void* p) {
    std::string d(reinterpret_cast<const char*>(data), len);
    self(p).responses[id].body += d;
    self(p).data_order.push_back(std::to_string(id) + ":" + d);
    return 0;
  }
  static int on_frame(nghttp2_session*, const nghttp2_frame* frame, void* p) {
    auto& frames = self(p).frames;
    int32_t id = frame->hd.stream_id;
    if (frame->hd.type == NGHTTP2_RST_STREAM) {
      frames.push_back("RST_STREAM " + std::to_string(id) + " " +
                       std::to_string(frame->rst_stream.error_code));
    } else if (frame->hd.type == NGHTTP2_GOAWAY) {
      frames.push_back("GOAWAY " + std::to_string(frame->goaway.error_code));
    } else if (frame->hd.type == NGHTTP2_WINDOW_UPDATE) {
      frames.push_back("WINDOW_UPDATE " + std::to_string(id) + " " +
                       std::to_string(frame->window_update.window_size_increment));
    }
    return 0;
  }
  static int on_close(nghttp2_session*, int32_t id, uint32_t code, void* p) {
    Response& r = self(p).responses[id];
    r.closed = true;
    r.close_code = code;
    return 0;
  }
  static ssize_t read_body(nghttp2_session* session, int32_t id, uint8_t* buf, size_t length,
                           uint32_t* flags, nghttp2_data_source* source, void*) {
    auto* b = static_cast<Body*>(source->ptr);
    size_t n = std::min(length, b->data.size() - b->offset);
    std::memcpy(buf, b->data.data() + b->offset, n);
    b->offset += n;
    if (b->offset == b->data.size()) {
      *flags |= NGHTTP2_DATA_FLAG_EOF;
      if (!b->trailers.empty()) {
        *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
        std::vector<nghttp2_nv> nv;
        for (auto& [k, v] : b->trailers) {
          nv.push_back({reinterpret_cast<uint8_t*>(k.data()), reinterpret_cast<uint8_t*>(v.data()),
                        k.size(), v.size(), NGHTTP2_NV_FLAG_NONE});
        }
        nghttp2_submit_trailer(session, id, nv.data(), nv.size());
      }
    }
    return static_cast<ssize_t>(n);
  }

  nghttp2_session* session_ = nullptr;
};

class Http2CodecTest : public ::testing::Test {
 protected:
  void SetUp() override {
    int sv[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    peer_ = sv[0];
    ASSERT_TRUE(conn_.adopt(net::Fd(sv[1])).is_ok());
  }
  void TearDown() override {
    codec_.reset();
    ::close(peer_);
  }

  void make(const ServerOptions& options = {}) {
    codec_ = std::make_unique<ServerCodec>(conn_, options, recorder_);
    codec_->start();
  }

  // Moves bytes both ways until neither side has anything to say.
  void pump() {
    for (int round = 0; round < 200; ++round) {
      bool moved = false;
      const uint8_t* p = nullptr;
      ssize_t n;
      while ((n = nghttp2_session_mem_send(client_.session(), &p)) > 0) {
        conn_.input().append({reinterpret_cast<const char*>(p), static_cast<size_t>(n)});
        moved = true;
      }
      if (!conn_.input().empty()) outcome_ = codec_->dispatch();
      conn_.flush();
      char buf[65536];
      ssize_t r;
      while ((r = ::recv(peer_, buf, sizeof buf, MSG_DONTWAIT)) > 0) {
        moved = true;
        ASSERT_EQ(nghttp2_session_mem_recv(client_.session(), reinterpret_cast<uint8_t*>(buf),
                                           static_cast<size_t>(r)),
                  r);
      }
      if (!moved) return;
    }
    FAIL() << "the peers kept talking";
  }

  static MessageHead response(int status, std::vector<Header> fields = {}) {
    MessageHead h;
    h.status = status;
    for (auto& f : fields) h.headers.add(f.name, f.value);
    return h;
  }

  using Fields = std::vector<std::pair<std::string, std::string>>;
  static Fields get(std::string path) {
    return {{":method", "GET"},
            {":scheme", "https"},
            {":authority", "example.com"},
            {":path", std::move(path)}};
  }

  event::Loop loop_;
  NoEvents events_;
  net::Connection conn_{loop_, events_};
  Recorder recorder_;
  std::unique_ptr<ServerCodec> codec_;
  Client client_;
  ServerCodec::Outcome outcome_ = ServerCodec::Outcome::kContinue;
  int peer_ = -1;
};

TEST_F(Http2CodecTest, GetAndItsResponse) {
  make();
  Fields f = get("/a?b=1");
  f.push_back({"user-agent", "t"});
  f.push_back({"cookie", "a=1"});
  f.push_back({"cookie", "b=2"});
  ASSERT_EQ(client_.request(f), 1);
  pump();
  EXPECT_EQ(recorder_.events, (std::vector<std::string>{"head 1 GET /a?b=1", "end 1"}));
  const MessageHead& h = recorder_.heads[1];
  std::vector<std::string> fields;
  for (const auto& x : h.headers) fields.push_back(x.name + ": " + x.value);
  EXPECT_EQ(fields,
            (std::vector<std::string>{"host: example.com", "user-agent: t", "cookie: a=1; b=2"}));
  EXPECT_FALSE(h.content_length.has_value());
  EXPECT_FALSE(h.chunked);

  MessageHead r = response(200, {{"Content-Type", "text/plain"}, {"Connection", "keep-alive"}});
  r.content_length = 5;
  EXPECT_FALSE(codec_->send_head(1, r, ResponseOptions{}));
  codec_->send_data(1, "hello");
  codec_->send_trailers(1, HeaderMap{});
  pump();
  const Response& got = client_.responses[1];
  EXPECT_EQ(got.headers, (std::vector<std::string>{":status 200", "content-type text/plain",
                                                   "content-length 5"}));
  EXPECT_EQ(got.body, "hello");
  EXPECT_TRUE(got.trailers.empty());
  EXPECT_TRUE(got.closed);
  EXPECT_EQ(got.close_code, 0u);
  EXPECT_EQ(codec_->open_streams(), 0u);
  EXPECT_EQ(outcome_, ServerCodec::Outcome::kContinue);
}

TEST_F(Http2CodecTest, PostBodyFlowsAsTheOwnerConsumesIt) {
  ServerOptions o;
  o.initial_stream_window = 16384;
  make(o);
  pump();  // the client learns the stream window before it sends
  client_.frames.clear();
  Body body{std::string(40000, 'x')};
  Fields f = get("/upload");
  f[0].second = "POST";
  f.push_back({"content-length", "40000"});
  ASSERT_EQ(client_.request(f, &body), 1);
  pump();
  EXPECT_EQ(recorder_.events, (std::vector<std::string>{"head 1 POST /upload"}));
  EXPECT_EQ(recorder_.heads[1].content_length, 40000u);
  EXPECT_FALSE(recorder_.heads[1].chunked);
  EXPECT_EQ(recorder_.bodies[1].size(), 16384u);
  EXPECT_TRUE(client_.frames.empty());

  codec_->consumed(1, 16384);
  pump();
  EXPECT_EQ(recorder_.bodies[1].size(), 32768u);
  codec_->consumed(1, 16384);
  pump();
  EXPECT_EQ(recorder_.bodies[1], body.data);
  EXPECT_EQ(recorder_.events, (std::vector<std::string>{"head 1 POST /upload", "end 1"}));
  codec_->consumed(1, 40000 - 32768);
  EXPECT_EQ(client_.frames,
            (std::vector<std::string>{"WINDOW_UPDATE 1 16384", "WINDOW_UPDATE 1 16384"}));

  MessageHead r = response(204);
  codec_->send_head(1, r, ResponseOptions{.no_body = true});
  pump();
  EXPECT_EQ(client_.responses[1].headers, (std::vector<std::string>{":status 204"}));
  EXPECT_TRUE(client_.responses[1].closed);
  EXPECT_EQ(client_.responses[1].close_code, 0u);
}

TEST_F(Http2CodecTest, TwoStreamsInterleave) {
  make();
  pump();
  Body body{"abc"};
  Fields post = get("/two");
  post[0].second = "POST";
  ASSERT_EQ(client_.request(get("/one")), 1);
  ASSERT_EQ(client_.request(post, &body), 3);
  pump();
  EXPECT_EQ(recorder_.events,
            (std::vector<std::string>{"head 1 GET /one", "end 1", "head 3 POST /two", "end 3"}));
  EXPECT_EQ(recorder_.bodies[3], "abc");
  // No length: the body ends with the stream (chunked to an HTTP/1 upstream).
  EXPECT_TRUE(recorder_.heads[3].chunked);

  MessageHead r3 = response(200);
  MessageHead r1 = response(200);
  codec_->send_head(3, r3, ResponseOptions{});
  codec_->send_head(1, r1, ResponseOptions{});
  codec_->send_data(1, "one-a");
  codec_->send_data(3, "two");
  codec_->send_data(1, "one-b");
  codec_->send_trailers(3, HeaderMap{});
  codec_->send_trailers(1, HeaderMap{});
  pump();
  EXPECT_EQ(client_.data_order, (std::vector<std::string>{"1:one-a", "3:two", "1:one-b"}));
  EXPECT_EQ(client_.responses[1].body, "one-aone-b");
  EXPECT_EQ(client_.responses[3].body, "two");
  EXPECT_TRUE(client_.responses[1].closed);
  EXPECT_TRUE(client_.responses[3].closed);
  EXPECT_EQ(codec_->open_streams(), 0u);
}

TEST_F(Http2CodecTest, TrailersBothWays) {
  make();
  Body body{"data", 0, {{"x-checksum", "abc"}}};
  Fields f = get("/t");
  f[0].second = "POST";
  ASSERT_EQ(client_.request(f, &body), 1);
  pump();
  EXPECT_EQ(recorder_.events,
            (std::vector<std::string>{"head 1 POST /t", "trailers 1 x-checksum=abc"}));
  EXPECT_EQ(recorder_.bodies[1], "data");

  MessageHead r = response(200, {{"Content-Type", "application/grpc"}});
  codec_->send_head(1, r, ResponseOptions{});
  codec_->send_data(1, "ok");
  HeaderMap trailers;
  trailers.add("Grpc-Status", "0");
  codec_->send_trailers(1, trailers);
  pump();
  const Response& got = client_.responses[1];
  EXPECT_EQ(got.headers,
            (std::vector<std::string>{":status 200", "content-type application/grpc"}));
  EXPECT_EQ(got.body, "ok");
  EXPECT_EQ(got.trailers, (std::vector<std::string>{"grpc-status 0"}));
  EXPECT_TRUE(got.closed);
  EXPECT_EQ(got.close_code, 0u);
}

TEST_F(Http2CodecTest, RequestWithoutPathIsReset) {
  make();
  ASSERT_EQ(client_.request({{":method", "GET"}, {":scheme", "https"}, {":authority", "x"}}), 1);
  pump();
  EXPECT_TRUE(recorder_.events.empty());
  // The connection window opens to 1 MiB; stream 1 ends with PROTOCOL_ERROR.
  EXPECT_EQ(client_.frames, (std::vector<std::string>{"WINDOW_UPDATE 0 983041", "RST_STREAM 1 1"}));
  EXPECT_EQ(codec_->open_streams(), 0u);
  EXPECT_EQ(outcome_, ServerCodec::Outcome::kContinue);
  // The connection serves the next request.
  ASSERT_EQ(client_.request(get("/ok")), 3);
  pump();
  EXPECT_EQ(recorder_.events, (std::vector<std::string>{"head 3 GET /ok", "end 3"}));
}

TEST_F(Http2CodecTest, StreamsBeyondTheLimitAreRefused) {
  ServerOptions o;
  o.max_concurrent_streams = 2;
  make(o);
  // All three leave before the client has seen the server's SETTINGS.
  ASSERT_EQ(client_.request(get("/1")), 1);
  ASSERT_EQ(client_.request(get("/2")), 3);
  ASSERT_EQ(client_.request(get("/3")), 5);
  pump();
  EXPECT_EQ(recorder_.events,
            (std::vector<std::string>{"head 1 GET /1", "end 1", "head 3 GET /2", "end 3"}));
  // Stream 5 ends with REFUSED_STREAM: the client may retry it.
  EXPECT_EQ(client_.frames, (std::vector<std::string>{"WINDOW_UPDATE 0 983041", "RST_STREAM 5 7"}));
  EXPECT_EQ(client_.responses[5].close_code, 7u);
  EXPECT_EQ(codec_->open_streams(), 2u);
}

TEST_F(Http2CodecTest, HugeHeaderListGets431) {
  ServerOptions o;
  o.max_header_list_size = 4096;
  make(o);
  pump();
  Fields f = get("/big");
  f.push_back({"x-big", std::string(5000, 'a')});
  ASSERT_EQ(client_.request(f), 1);
  pump();
  EXPECT_TRUE(recorder_.events.empty());
  EXPECT_EQ(client_.responses[1].headers, (std::vector<std::string>{":status 431"}));
  EXPECT_TRUE(client_.responses[1].closed);
  EXPECT_EQ(client_.responses[1].close_code, 0u);
  ASSERT_EQ(client_.request(get("/small")), 3);
  pump();
  EXPECT_EQ(recorder_.events, (std::vector<std::string>{"head 3 GET /small", "end 3"}));
}

TEST_F(Http2CodecTest, TrailersOverTheLimitResetTheStreamAndTellTheOwner) {
  ServerOptions o;
  o.max_header_list_size = 1024;
  make(o);
  pump();
  client_.frames.clear();
  Body body{"data", 0, {{"x-big", std::string(1100, 't')}}};
  Fields f = get("/t");
  f[0].second = "POST";
  ASSERT_EQ(client_.request(f, &body), 1);
  pump();
  EXPECT_EQ(recorder_.events,
            (std::vector<std::string>{"head 1 POST /t", "reset 1 trailer section too large"}));
  EXPECT_EQ(client_.frames, (std::vector<std::string>{"RST_STREAM 1 11"}));  // ENHANCE_YOUR_CALM
  EXPECT_EQ(codec_->open_streams(), 0u);
}

TEST_F(Http2CodecTest, PathNotOriginFormGets400) {
  make();
  // nghttp2 checks :path only for the http and https schemes.
  ASSERT_EQ(client_.request({{":method", "GET"},
                             {":scheme", "foo"},
                             {":authority", "example.com"},
                             {":path", "relative"}}),
            1);
  pump();
  EXPECT_TRUE(recorder_.events.empty());
  EXPECT_EQ(client_.responses[1].headers, (std::vector<std::string>{":status 400"}));
  EXPECT_TRUE(client_.responses[1].closed);
  EXPECT_EQ(codec_->open_streams(), 0u);
  ASSERT_EQ(client_.request(get("/ok")), 3);
  pump();
  EXPECT_EQ(recorder_.events, (std::vector<std::string>{"head 3 GET /ok", "end 3"}));
}

TEST_F(Http2CodecTest, ClientResetReachesTheOwner) {
  make();
  ASSERT_EQ(client_.request(get("/slow")), 1);
  pump();
  nghttp2_submit_rst_stream(client_.session(), NGHTTP2_FLAG_NONE, 1, NGHTTP2_CANCEL);
  pump();
  EXPECT_EQ(recorder_.events,
            (std::vector<std::string>{"head 1 GET /slow", "end 1", "reset 1 CANCEL"}));
  EXPECT_EQ(codec_->open_streams(), 0u);
  // A late answer for the gone stream goes nowhere.
  MessageHead r = response(200);
  codec_->send_head(1, r, ResponseOptions{});
  codec_->send_data(1, "late");
  pump();
  EXPECT_TRUE(client_.responses[1].headers.empty());
}

TEST_F(Http2CodecTest, NotAPrefaceIsAConnectionError) {
  make();
  conn_.input().append("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(codec_->dispatch(), ServerCodec::Outcome::kError);
  EXPECT_EQ(codec_->goaway_code(), 1u);  // PROTOCOL_ERROR
  EXPECT_EQ(codec_->error().reason, "not an HTTP/2 connection preface");
  pump();
  EXPECT_EQ(client_.frames, (std::vector<std::string>{"WINDOW_UPDATE 0 983041", "GOAWAY 1"}));
}

TEST_F(Http2CodecTest, HostThatDiffersFromAuthorityIsReset) {
  make();
  pump();
  client_.frames.clear();
  Fields f = get("/");
  f.push_back({"host", "other.example"});
  ASSERT_EQ(client_.request(f), 1);
  pump();
  EXPECT_TRUE(recorder_.events.empty());
  EXPECT_EQ(client_.frames, (std::vector<std::string>{"RST_STREAM 1 1"}));
}

TEST_F(Http2CodecTest, PausedStreamHoldsItsWindow) {
  ServerOptions o;
  o.initial_stream_window = 16384;
  make(o);
  pump();
  client_.frames.clear();
  Body body{std::string(20000, 'y')};
  Fields f = get("/p");
  f[0].second = "POST";
  ASSERT_EQ(client_.request(f, &body), 1);
  pump();
  EXPECT_EQ(recorder_.bodies[1].size(), 16384u);
  codec_->pause(1);
  codec_->consumed(1, 16384);
  pump();
  EXPECT_TRUE(client_.frames.empty());
  EXPECT_EQ(recorder_.bodies[1].size(), 16384u);
  codec_->resume(1);
  pump();
  EXPECT_EQ(client_.frames, (std::vector<std::string>{"WINDOW_UPDATE 1 16384"}));
  EXPECT_EQ(recorder_.bodies[1], body.data);
  EXPECT_EQ(recorder_.events, (std::vector<std::string>{"head 1 POST /p", "end 1"}));
}

TEST_F(Http2CodecTest, GoAwayLetsOpenStreamsFinish) {
  make();
  ASSERT_EQ(client_.request(get("/last")), 1);
  pump();
  client_.frames.clear();
  codec_->go_away(NGHTTP2_NO_ERROR);
  pump();
  EXPECT_EQ(client_.frames, (std::vector<std::string>{"GOAWAY 0"}));
  EXPECT_EQ(codec_->dispatch(), ServerCodec::Outcome::kContinue);  // stream 1 is open
  MessageHead r = response(200);
  codec_->send_head(1, r, ResponseOptions{});
  codec_->send_data(1, "bye");
  codec_->send_trailers(1, HeaderMap{});
  pump();
  EXPECT_EQ(client_.responses[1].body, "bye");
  EXPECT_EQ(client_.responses[1].close_code, 0u);
  EXPECT_EQ(codec_->dispatch(), ServerCodec::Outcome::kFinished);
}

TEST(Http2ServerOptions, Validate) {
  EXPECT_TRUE(ServerOptions{}.validate().empty());
  ServerOptions o;
  o.max_frame_size = 1000;
  o.initial_connection_window = 1000;
  ConfigIssues issues = o.validate();
  ASSERT_EQ(issues.size(), 2u);
  EXPECT_EQ(issues[0].path, "initial_connection_window");
  EXPECT_EQ(issues[1].path, "max_frame_size");
}

}  // namespace
}  // namespace sluice::http::http2
