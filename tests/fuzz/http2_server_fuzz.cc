// Fuzz target for the HTTP/2 server codec: what a client sends on an HTTP/2 connection
// (frames, HPACK, flow control), and the responses an owner sends back meanwhile.
//
// Input: byte 0 picks the codec's limits, how the rest is cut into reads, and whether the
// client connection preface is put in front (it is, but for one value in eight); byte 1
// salts which owner behaviour each stream gets; the rest are the client's bytes. The codec
// serves a real (socketpair) connection, as in the unit tests. The owner answers some
// streams at once, some after their request ends, some over several reads; it resets some,
// pauses and resumes some, and acknowledges body bytes early or late, so the response and
// flow-control paths run too. Whatever the bytes, the codec must not crash, and what it
// delivers and sends must keep its promises (see the require() calls). Any violation traps.
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "event/loop.h"
#include "http/codec.h"
#include "http/headers.h"
#include "http/http2/server_codec.h"
#include "http/message.h"
#include "net/connection.h"

namespace {

using sluice::http::HeaderMap;
using sluice::http::MessageHead;
using sluice::http::ResponseOptions;
using sluice::http::StreamId;
using sluice::http::http2::ServerCodec;
using sluice::http::http2::ServerOptions;

constexpr std::string_view kPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
// open_streams() may run ahead of SETTINGS_MAX_CONCURRENT_STREAMS by a stream whose HEADERS
// is being refused.
constexpr size_t kStreamSlack = 2;
// The owner's response body sizes. Small enough that what the codec writes between two
// drains stays under the connection's high watermark (see drain()); a client that makes its
// windows smaller than these still holds them back.
constexpr size_t kLargeBody = 1500;
constexpr size_t kPieceBody = 400;
constexpr int kSlowRounds = 3;

void require(bool cond) {
  if (!cond) __builtin_trap();
}

// Limits small enough for short inputs to reach them, and the defaults.
ServerOptions options_for(uint8_t selector) {
  ServerOptions o;
  switch (selector & 3) {
    case 0:
      o.max_concurrent_streams = 4;
      o.initial_stream_window = 1024;
      o.initial_connection_window = 65535;
      o.max_header_list_size = 1024;
      break;
    case 1:
      o.max_concurrent_streams = 8;
      o.initial_stream_window = 4096;
      o.max_header_list_size = 2048;
      break;
    case 2:
      o.max_concurrent_streams = 1;
      o.max_header_list_size = 1024;
      break;
    default:
      break;
  }
  require(!sluice::has_errors(o.validate()));
  return o;
}

// RFC 9113 §6.5.2: the size of a field section.
size_t field_bytes(std::string_view name, std::string_view value) {
  return name.size() + value.size() + 32;
}

bool is_tchar(unsigned char c) {
  if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return true;
  return std::string_view("!#$%&'*+-.^_`|~").find(static_cast<char>(c)) != std::string_view::npos;
}

// What an HTTP/1 upstream would be told: a field must not be able to break the framing.
void check_field(const std::string& name, const std::string& value) {
  require(!name.empty());
  require(name[0] != ':');
  for (unsigned char c : name) require(is_tchar(c) && !(c >= 'A' && c <= 'Z'));
  for (unsigned char c : value) require(c != 0 && c != '\r' && c != '\n');
  // RFC 9113 §8.2.2: no connection-specific fields.
  require(name != "connection" && name != "keep-alive" && name != "proxy-connection" &&
          name != "transfer-encoding" && name != "upgrade");
  if (name == "te") require(value == "trailers");
}

// How the owner treats a stream, chosen by its id and the input's salt.
enum class Behaviour {
  kAnswerAtOnce,  // a whole response from inside on_head()
  kNoBody,        // a 204 from inside on_head()
  kReset,         // RST_STREAM from inside on_head()
  kPausedByHead,  // on_head() returns false; resumed on the next read
  kAnswerAtEnd,   // a large response with trailers once the request is complete
  kHold,          // never answered; bytes acknowledged at once
  kSlow,          // 103, paused, then a head and a piece of body per read
  kCloseAfter,    // a response that ends the connection (graceful GOAWAY)
};
constexpr int kBehaviours = 8;

struct StreamModel {
  Behaviour behaviour = Behaviour::kHold;
  bool connect = false;
  std::optional<uint64_t> content_length;
  uint64_t body = 0;
  size_t unacknowledged = 0;  // delivered, not yet passed to consumed()
  bool request_ended = false;
  bool reset = false;       // on_reset() was called
  bool responding = false;  // a head with a body went out
  bool finished = false;    // the owner ended the response or reset the stream
  bool paused = false;
  int rounds = 0;
};

class Owner final : public sluice::http::ServerCodecCallbacks {
 public:
  Owner(const ServerOptions& options, uint8_t salt) : options_(options), salt_(salt) {}
  void attach(ServerCodec& codec) { codec_ = &codec; }

  bool on_head(StreamId id, MessageHead& head) override {
    check_open_streams();
    // Client streams are odd and opened in increasing order (RFC 9113 §5.1.1).
    require(id % 2 == 1 && id > last_id_);
    last_id_ = id;
    require(streams_.count(id) == 0);
    check_head(head);
    StreamModel& m = streams_[id];
    m.behaviour = static_cast<Behaviour>(((id >> 1) + salt_) % kBehaviours);
    m.connect = head.method == "CONNECT";
    m.content_length = head.content_length;
    switch (m.behaviour) {
      case Behaviour::kAnswerAtOnce:
        answer(id, m, 200, "hello", true);
        return true;
      case Behaviour::kNoBody:
        respond_no_body(id, m);
        return true;
      case Behaviour::kReset:
        reset(id, m);
        return true;
      case Behaviour::kPausedByHead:
        m.paused = true;
        return false;
      case Behaviour::kSlow: {
        MessageHead early;
        early.status = 103;
        early.headers.add("Link", "</a.css>; rel=preload");
        codec_->send_interim(id, early);
        codec_->pause(id);
        m.paused = true;
        return true;
      }
      case Behaviour::kCloseAfter: {
        MessageHead r;
        r.status = 200;
        r.content_length = 3;
        ResponseOptions o;
        o.close_after = true;
        require(!codec_->send_head(id, r, o));
        m.responding = true;
        codec_->send_data(id, "bye");
        if (!m.reset) finish(id, m, {});
        return true;
      }
      case Behaviour::kAnswerAtEnd:
      case Behaviour::kHold:
        return true;
    }
    return true;
  }

  void on_data(StreamId id, std::string_view data, bool end) override {
    auto it = streams_.find(id);
    require(it != streams_.end());
    StreamModel& m = it->second;
    require(!m.request_ended && !m.reset);
    m.body += data.size();
    m.unacknowledged += data.size();
    // nghttp2 holds the body to its content-length (RFC 9113 §8.1.1).
    if (m.content_length && !m.connect) require(m.body <= *m.content_length);
    if (end) {
      m.request_ended = true;
      if (m.content_length && !m.connect) require(m.body == *m.content_length);
    }
    if (m.behaviour == Behaviour::kHold) acknowledge(id, m);
    if (end) on_request_end(id, m);
  }

  void on_trailers(StreamId id, HeaderMap& trailers) override {
    auto it = streams_.find(id);
    require(it != streams_.end());
    StreamModel& m = it->second;
    require(!m.request_ended && !m.reset);
    if (m.content_length && !m.connect) require(m.body == *m.content_length);
    size_t bytes = 0;
    for (const auto& f : trailers) {
      check_field(f.name, f.value);
      bytes += field_bytes(f.name, f.value);
    }
    require(bytes <= options_.max_header_list_size);
    m.request_ended = true;
    on_request_end(id, m);
  }

  void on_reset(StreamId id, std::string_view reason) override {
    auto it = streams_.find(id);
    require(it != streams_.end());
    StreamModel& m = it->second;
    // Only a stream whose response the owner has not ended is reported, and only once.
    require(!m.reset && !m.finished);
    require(!reason.empty());
    m.reset = true;
  }

  // Between two reads: paused streams resume, slow responses make progress, delivered
  // bytes are acknowledged (on gone streams too: the connection window still counts them).
  void between_reads() {
    for (auto& [id, m] : streams_) {
      // Acknowledged while paused: the codec holds these until resume().
      acknowledge(id, m);
      if (m.paused && !m.reset) {
        m.paused = false;
        codec_->resume(id);
      }
      if (m.behaviour == Behaviour::kSlow && !m.reset && !m.finished) {
        if (!m.responding) {
          answer(id, m, 200, {}, false);
        } else if (m.rounds < kSlowRounds) {
          codec_->send_data(id, std::string(kPieceBody, static_cast<char>('a' + m.rounds)));
        } else {
          HeaderMap t;
          t.add("x-rounds", std::to_string(m.rounds));
          finish(id, m, t);
        }
        ++m.rounds;
      }
      // What the client's windows hold back is at most what the owner gave.
      require(codec_->buffered(id) <= kLargeBody + kSlowRounds * kPieceBody + 8);
    }
  }

  // The end of the input: every stream still open gets its answer.
  void at_end() {
    for (auto& [id, m] : streams_) {
      if (m.paused && !m.reset) {
        m.paused = false;
        codec_->resume(id);
      }
      acknowledge(id, m);
      if (m.reset || m.finished) continue;
      if (m.behaviour == Behaviour::kHold && id % 4 == 1) {
        reset(id, m);
      } else if (!m.responding) {
        answer(id, m, 200, "late", true);
      } else {
        finish(id, m, {});
      }
    }
  }

  void check_open_streams() const {
    require(codec_->open_streams() <= options_.max_concurrent_streams + kStreamSlack);
    // A stream the owner has neither ended nor been told about is still the codec's: the
    // codec never forgets a stream silently.
    size_t owned = 0;
    for (const auto& [id, m] : streams_) owned += !m.reset && !m.finished;
    require(owned <= codec_->open_streams());
  }

 private:
  void check_head(const MessageHead& head) const {
    require(!head.method.empty());
    for (unsigned char c : head.method) require(is_tchar(c));
    if (head.method == "CONNECT") {
      require(!head.target.empty());
    } else {
      // RFC 9113 §8.3.1: origin-form, or "*" (OPTIONS); nothing an HTTP/1 request line
      // would read differently.
      require(head.target == "*" || (!head.target.empty() && head.target[0] == '/'));
    }
    for (unsigned char c : head.target) require(c > 0x20 && c != 0x7f);
    require(head.version_minor == 1);
    size_t bytes = field_bytes(":method", head.method);
    if (head.method != "CONNECT") bytes += field_bytes(":path", head.target);
    for (const auto& f : head.headers) {
      check_field(f.name, f.value);
      bytes += field_bytes(f.name, f.value);
    }
    // What the codec delivers is no larger than the section it accepted (Host stands in
    // for :authority, crumbs joined into one cookie are smaller).
    require(bytes <= options_.max_header_list_size);
    // Exactly one Host, from :authority or the client's own.
    require(head.headers.count("host") == 1);
    if (head.headers.get("content-length")) require(head.content_length.has_value());
    require(!(head.chunked && head.content_length));
  }

  void on_request_end(StreamId id, StreamModel& m) {
    if (m.behaviour == Behaviour::kAnswerAtEnd && !m.reset && !m.finished) {
      MessageHead r;
      r.status = 200;
      r.headers.add("content-type", "application/grpc");
      require(!codec_->send_head(id, r, ResponseOptions{}));
      m.responding = true;
      codec_->send_data(id, std::string(kLargeBody, 'x'));
      HeaderMap t;
      t.add("grpc-status", "0");
      if (!m.reset) finish(id, m, t);
    }
  }

  void answer(StreamId id, StreamModel& m, int status, std::string_view body, bool end) {
    MessageHead r;
    r.status = status;
    r.headers.add("Content-Type", "text/plain");
    r.headers.add("Connection", "keep-alive");  // dropped by the codec
    if (end) r.content_length = body.size();
    require(!codec_->send_head(id, r, ResponseOptions{}));
    m.responding = true;
    if (m.reset) return;
    codec_->send_data(id, body);
    if (end && !m.reset) finish(id, m, {});
  }

  void respond_no_body(StreamId id, StreamModel& m) {
    MessageHead r;
    r.status = 204;
    ResponseOptions o;
    o.no_body = true;
    m.finished = true;
    require(!codec_->send_head(id, r, o));
  }

  void reset(StreamId id, StreamModel& m) {
    m.finished = true;
    codec_->reset(id, 8);  // CANCEL
  }

  void finish(StreamId id, StreamModel& m, const HeaderMap& trailers) {
    m.finished = true;
    codec_->send_trailers(id, trailers);
  }

  void acknowledge(StreamId id, StreamModel& m) {
    if (m.unacknowledged == 0) return;
    size_t n = std::exchange(m.unacknowledged, 0);
    codec_->consumed(id, n);
  }

  const ServerOptions& options_;
  uint8_t salt_;
  ServerCodec* codec_ = nullptr;
  StreamId last_id_ = 0;
  std::map<StreamId, StreamModel> streams_;
};

// The frames the server sent, walked as the client would (RFC 9113 §4.1).
class OutputChecker {
 public:
  void feed(std::string_view bytes) {
    pending_.append(bytes);
    size_t at = 0;
    while (pending_.size() - at >= 9) {
      auto b = [&](size_t i) { return static_cast<uint8_t>(pending_[at + i]); };
      size_t length = (size_t{b(0)} << 16) | (size_t{b(1)} << 8) | b(2);
      uint8_t type = b(3);
      uint32_t stream =
          ((uint32_t{b(5)} & 0x7f) << 24) | (uint32_t{b(6)} << 16) | (uint32_t{b(7)} << 8) | b(8);
      // Nothing larger than the smallest SETTINGS_MAX_FRAME_SIZE a client may announce.
      require(length <= 16384);
      if (pending_.size() - at < 9 + length) break;
      if (frames_ == 0) require(type == 0x4 && stream == 0);  // the server preface: SETTINGS
      switch (type) {
        case 0x0:  // DATA
        case 0x1:  // HEADERS
        case 0x3:  // RST_STREAM
        case 0x9:  // CONTINUATION
          require(stream % 2 == 1);
          break;
        case 0x4:  // SETTINGS
        case 0x6:  // PING
          require(stream == 0);
          break;
        case 0x7:  // GOAWAY
          require(stream == 0 && length >= 8);
          if (b(13) | b(14) | b(15) | b(16)) error_goaway_ = true;
          break;
        case 0x8:  // WINDOW_UPDATE
          require(length == 4);
          break;
        default:  // no PRIORITY, PUSH_PROMISE or extension frames from this server
          require(false);
      }
      ++frames_;
      at += 9 + length;
    }
    pending_.erase(0, at);
  }
  // A GOAWAY with an error code went out.
  bool error_goaway() const { return error_goaway_; }

 private:
  std::string pending_;
  size_t frames_ = 0;
  bool error_goaway_ = false;
};

struct ConnectionEvents final : sluice::net::ConnectionCallbacks {
  void on_read() override {}
  void on_read_closed() override {}
  void on_error(int) override { failed = true; }
  bool failed = false;
};

// Moves what the codec wrote to the peer's end and reads it back into the checker. How much
// of it the connection had already sent depends on the kernel's socket buffer; the codec
// would see that only through the high watermark, so the target keeps what is written
// between two drains below it: then no machine runs an input differently.
void drain(sluice::net::Connection& conn, int peer, OutputChecker& out) {
  char buf[65536];
  size_t total = 0;
  for (int round = 0; round < 1000; ++round) {
    conn.flush();
    ssize_t n;
    bool got = false;
    while ((n = ::recv(peer, buf, sizeof buf, MSG_DONTWAIT)) > 0) {
      out.feed({buf, static_cast<size_t>(n)});
      total += static_cast<size_t>(n);
      got = true;
    }
    if (conn.output().empty() && !got) {
      require(total < sluice::net::Connection::kDefaultHighWatermark);
      return;
    }
  }
  require(false);  // the output never drained
}

// Where the client's bytes are cut into reads.
std::vector<size_t> pieces_for(uint8_t selector, uint8_t salt, std::string_view input) {
  std::vector<size_t> sizes;
  size_t left = input.size();
  auto take = [&](size_t n) {
    n = std::clamp<size_t>(n, 1, left);
    sizes.push_back(n);
    left -= n;
  };
  switch ((selector >> 2) & 7) {
    case 0:
    case 1:  // one read
      break;
    case 2:  // two reads, split at a point set by the salt
      if (left > 1) take(left * salt / 256 + 1);
      break;
    case 3:  // fixed-size reads
      while (left > 0) take(salt % 13 + 1);
      break;
    case 4:  // one frame header (9 bytes) at a time, then the rest
      while (left > 0 && sizes.size() < 64) take(9);
      break;
    case 5:
    case 6:  // sizes read from the input itself
      for (size_t i = 0; left > 0 && sizes.size() < 256; ++i) {
        take(static_cast<uint8_t>(input[i % input.size()]) % 64 + 1);
      }
      break;
    default:  // byte by byte, at most 1024 reads
      while (left > 0 && sizes.size() < 1024) take(1);
      break;
  }
  if (left > 0) sizes.push_back(left);
  return sizes;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const uint8_t selector = data[0];
  const uint8_t salt = data[1];
  std::string input;
  if ((selector >> 5) != 0) input.append(kPreface);
  input.append(reinterpret_cast<const char*>(data) + 2, size - 2);

  int sv[2];
  require(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == 0);
  const int peer = sv[0];
  ConnectionEvents events;
  OutputChecker out;
  {
    // A loop per input, never run: nothing of one input (not even the loop's queue of
    // connections to flush) is left for the next.
    sluice::event::Loop loop;
    sluice::net::Connection conn(loop, events);
    require(conn.adopt(sluice::net::Fd(sv[1])).is_ok());
    const ServerOptions options = options_for(selector);
    Owner owner(options, salt);
    ServerCodec codec(conn, options, owner);
    owner.attach(codec);
    codec.start();
    drain(conn, peer, out);

    ServerCodec::Outcome outcome = ServerCodec::Outcome::kContinue;
    // After each dispatch() and what it sent: a connection error is known to the codec, and
    // one the codec reported on the wire is one it reports to its owner.
    auto dispatch = [&] {
      outcome = codec.dispatch();
      drain(conn, peer, out);
      require(!events.failed);
      owner.check_open_streams();
      if (outcome == ServerCodec::Outcome::kError) {
        require(codec.goaway_code() != 0);
        require(!codec.error().reason.empty());
      }
      if (out.error_goaway()) require(outcome == ServerCodec::Outcome::kError);
    };
    std::string_view rest = input;
    for (size_t n : pieces_for(selector, salt, input)) {
      conn.input().append(rest.substr(0, n));
      rest.remove_prefix(n);
      dispatch();
      if (outcome != ServerCodec::Outcome::kContinue) break;
      owner.between_reads();
      drain(conn, peer, out);
    }
    if (outcome == ServerCodec::Outcome::kContinue) {
      owner.at_end();
      dispatch();
    }
  }
  ::close(peer);
  return 0;
}
