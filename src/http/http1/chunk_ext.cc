#include "http/http1/chunk_ext.h"

#include <fmt/format.h>

#include "http/headers.h"

namespace sluice::http::http1 {

static_assert(ChunkExtScanner::kMaxBytes == 4096, "the message below says 4096");

namespace {

// RFC 9110 §5.6.4: qdtext = HTAB / SP / %x21 / %x23-5B / %x5D-7E / obs-text.
bool is_qdtext(unsigned char c) {
  return c == '\t' || c == ' ' || c == 0x21 || (c >= 0x23 && c <= 0x5b) ||
         (c >= 0x5d && c <= 0x7e) || c >= 0x80;
}

// quoted-pair = "\" ( HTAB / SP / VCHAR / obs-text ).
bool is_escapable(unsigned char c) {
  return c == '\t' || (c >= 0x20 && c != 0x7f);
}

}  // namespace

void ChunkExtScanner::start() {
  state_ = State::kName;
  bytes_ = 0;
  error_ = nullptr;
  has_byte_ = false;
}

std::string ChunkExtScanner::error() const {
  if (!error_) return {};
  if (has_byte_) return fmt::format(fmt::runtime(error_), bad_byte_);
  return error_;
}

size_t ChunkExtScanner::scan(std::string_view data) {
  size_t i = 0;
  for (; i < data.size() && state_ != State::kOff && ok(); ++i) {
    auto c = static_cast<unsigned char>(data[i]);
    if (c == '\r' && state_ != State::kQuoted && state_ != State::kEscape) {
      if (state_ == State::kName) {
        fail("chunk extension without a name");
      } else if (state_ == State::kValueStart) {
        fail("chunk extension '=' without a value");
      } else {
        state_ = State::kOff;  // the line ends here; the CR is llhttp's
      }
      return i;
    }
    if (++bytes_ > kMaxBytes) {
      fail("chunk extensions longer than 4096 bytes");
      return i;
    }
    if ((c == ' ' || c == '\t') && state_ != State::kQuoted && state_ != State::kEscape) {
      fail("whitespace in chunk extensions (around ';' or '=') is not accepted");
      return i;
    }
    switch (state_) {
      case State::kName:
        if (!is_tchar(c)) {
          fail("chunk extension without a name");
          return i;
        }
        state_ = State::kNameMore;
        break;
      case State::kNameMore:
        if (c == '=') {
          state_ = State::kValueStart;
        } else if (c == ';') {
          state_ = State::kName;
        } else if (!is_tchar(c)) {
          fail("invalid character 0x{:02x} in a chunk extension name", c);
          return i;
        }
        break;
      case State::kValueStart:
        if (c == '"') {
          state_ = State::kQuoted;
        } else if (is_tchar(c)) {
          state_ = State::kToken;
        } else {
          fail("invalid character 0x{:02x} in a chunk extension value", c);
          return i;
        }
        break;
      case State::kToken:
        if (c == ';') {
          state_ = State::kName;
        } else if (!is_tchar(c)) {
          fail("invalid character 0x{:02x} in a chunk extension value", c);
          return i;
        }
        break;
      case State::kQuoted:
        if (c == '"') {
          state_ = State::kAfterQuoted;
        } else if (c == '\\') {
          state_ = State::kEscape;
        } else if (!is_qdtext(c)) {
          fail("invalid character 0x{:02x} in a quoted chunk extension value", c);
          return i;
        }
        break;
      case State::kEscape:
        if (!is_escapable(c)) {
          fail("invalid escaped character 0x{:02x} in a chunk extension value", c);
          return i;
        }
        state_ = State::kQuoted;
        break;
      case State::kAfterQuoted:
        if (c != ';') {
          fail("invalid character 0x{:02x} after a quoted chunk extension value", c);
          return i;
        }
        state_ = State::kName;
        break;
      case State::kOff:
        break;
    }
  }
  return i;
}

}  // namespace sluice::http::http1
