// What both HTTP/2 codecs hand nghttp2 when they open a session: the session options (the
// same for both) and an empty callbacks table for each codec to fill once. nghttp2 copies
// both into every session, so each is built once per process.
#pragma once

#include <nghttp2/nghttp2.h>

#include <memory>

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

}  // namespace sluice::http::http2
