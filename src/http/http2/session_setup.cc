#include "http/http2/session_setup.h"

#include "base/check.h"

namespace sluice::http::http2 {

namespace {

struct OptionDeleter {
  void operator()(nghttp2_option* o) const { nghttp2_option_del(o); }
};

}  // namespace

CallbacksPtr new_callbacks() {
  nghttp2_session_callbacks* p = nullptr;
  SLUICE_CHECK(nghttp2_session_callbacks_new(&p) == 0);
  return CallbacksPtr(p);
}

const nghttp2_option* session_option() {
  static const std::unique_ptr<nghttp2_option, OptionDeleter> opt = [] {
    nghttp2_option* p = nullptr;
    SLUICE_CHECK(nghttp2_option_new(&p) == 0);
    nghttp2_option_set_no_auto_window_update(p, 1);
    nghttp2_option_set_no_closed_streams(p, 1);
    // nghttp2 refuses to send a header block over 64 KiB by default, below what sluice's
    // HTTP/1.1 side accepts (a request head is checked against the listener's limits).
    nghttp2_option_set_max_send_header_block_length(p, 1024 * 1024);
    return std::unique_ptr<nghttp2_option, OptionDeleter>(p);
  }();
  return opt.get();
}

void check_limits(ConfigChecker& c, uint64_t stream_window, uint64_t connection_window,
                  uint64_t max_header_list_size, uint64_t max_frame_size) {
  c.check_size("initial_stream_window", stream_window, 1024, 0x7fffffff);
  c.check_size("initial_connection_window", connection_window, 65535, 0x7fffffff);
  c.check_size("max_header_list_size", max_header_list_size, 1024, 16 << 20);
  c.check_size("max_frame_size", max_frame_size, 16384, 16777215);
}

}  // namespace sluice::http::http2
