// ChunkExtScanner: checks the chunk extensions of one chunk-size line against RFC 9112
// §7.1.1, byte by byte, across reads:
//
//   chunk-ext      = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
//   chunk-ext-name = token
//   chunk-ext-val  = token / quoted-string      (quoted-pair escapes included)
//
// BWS (whitespace around ";" and "=") is refused, as llhttp's strict mode refuses it: no
// sender needs it, and recipients disagree on it, which is what smuggling feeds on. The
// Parser uses it because llhttp 8 refuses valid extensions (a quoted-pair; a token value
// followed by another extension): the Parser checks the extensions here and hands llhttp
// one plain name of the same length in their place. Extensions are not forwarded: the body
// is re-chunked on its way out. Plain value; loop thread only.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace sluice::http::http1 {

class ChunkExtScanner {
 public:
  // Longest extension text on one chunk-size line.
  static constexpr size_t kMaxBytes = 4096;

  // Starts a line's extensions: the ';' that opens them was just read.
  void start();
  bool active() const { return state_ != State::kOff; }
  // Reads extension bytes from `data` up to the CR that ends the line (not consumed) or the
  // end of `data`. Returns how many bytes it consumed; when the line ended, active() turns
  // false. On a malformed extension returns false from ok() with error() set.
  size_t scan(std::string_view data);
  bool ok() const { return error_ == nullptr; }
  // Why the extensions were refused (empty while ok()).
  std::string error() const;

 private:
  enum class State : uint8_t {
    kOff,
    kName,        // after ';': the first tchar of a name
    kNameMore,    // in a name
    kValueStart,  // after '='
    kToken,       // in a token value
    kQuoted,      // in a quoted-string
    kEscape,      // after '\' in a quoted-string
    kAfterQuoted  // after the closing '"'
  };
  void fail(const char* why) { error_ = why; }
  // `why` holds one {:02x} for the offending byte.
  void fail(const char* why, unsigned char c) {
    error_ = why;
    bad_byte_ = c;
    has_byte_ = true;
  }

  // Every connection's parser holds one: 16 bytes, the error's text made only when asked.
  State state_ = State::kOff;
  bool has_byte_ = false;
  unsigned char bad_byte_ = 0;
  uint16_t bytes_ = 0;
  const char* error_ = nullptr;  // a constant (with a {:02x} when has_byte_)
};
static_assert(ChunkExtScanner::kMaxBytes < UINT16_MAX);

}  // namespace sluice::http::http1
