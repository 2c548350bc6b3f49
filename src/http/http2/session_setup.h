// What both HTTP/2 codecs hand nghttp2 when they open a session: the session options (the
// same for both) and an empty callbacks table for each codec to fill once. nghttp2 copies
// both into every session, so each is built once per process.
#pragma once

#include <nghttp2/nghttp2.h>

#include <sys/types.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>

#include "base/buffer.h"
#include "base/validation.h"

namespace sluice::http::http2 {

struct CallbacksDeleter {
  void operator()(nghttp2_session_callbacks* cb) const { nghttp2_session_callbacks_del(cb); }
};
using CallbacksPtr = std::unique_ptr<nghttp2_session_callbacks, CallbacksDeleter>;

// A new, empty callbacks table.
CallbacksPtr new_callbacks();

// No automatic WINDOW_UPDATE (the owner's consumed() acknowledges what it passed on) and no
// RFC 7540 priority tree (so closed streams need not be kept for it).
const nghttp2_option* session_option();

// The flow-control and size limits both codecs announce, checked alike (RFC 9113 §6.5.2 and
// §6.9.1: windows up to 2^31-1, frames from 2^14 to 2^24-1; a connection window below
// 65535 could be overrun, as every connection starts with one of 65535).
void check_limits(ConfigChecker& c, uint64_t stream_window, uint64_t connection_window,
                  uint64_t max_header_list_size, uint64_t max_frame_size);

// The body of a data provider reading a stream's buffered bytes: copies what `length`
// allows from `out`; once `out` is empty and `ended`, sets EOF and, when trailers follow,
// submits them (`trailer_nv()` gives their list); with nothing to send yet, marks the
// stream `deferred`. Returns what nghttp2 expects of a data source read callback.
template <typename TrailerNv>
ssize_t read_buffered_body(nghttp2_session* session, int32_t stream_id, Buffer& out, bool ended,
                           bool has_trailers, TrailerNv trailer_nv, bool& deferred, uint8_t* buf,
                           size_t length, uint32_t* flags) {
  size_t n = std::min(length, out.size());
  if (n > 0) {
    std::memcpy(buf, out.data(), n);
    out.consume(n);
    out.release();  // no-op unless it emptied
  }
  if (out.empty() && ended) {
    *flags |= NGHTTP2_DATA_FLAG_EOF;
    if (has_trailers) {
      *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
      const auto& nv = trailer_nv();
      if (nghttp2_submit_trailer(session, stream_id, nv.data(), nv.size()) != 0) {
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
      }
    }
    return static_cast<ssize_t>(n);
  }
  if (n == 0) {
    deferred = true;
    return NGHTTP2_ERR_DEFERRED;
  }
  return static_cast<ssize_t>(n);
}

}  // namespace sluice::http::http2
