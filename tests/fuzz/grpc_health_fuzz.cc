// Fuzz target for the gRPC health check's decoders: the response body a health-checked
// endpoint (or anyone who can answer in its place) sends. Whatever the bytes, the message
// framing, the HealthCheckResponse decoder and the grpc-message decoder must not crash, must
// not read outside the input, and what they accept must keep their promises: the framed
// message is the body less its 5-byte prefix; an accepted response stays well-formed with one
// more status field, which then wins; a decoded grpc-message has no control characters and
// keeps its bound. Any violated invariant traps.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "upstream/health/grpc_health.h"

namespace {

namespace grpc = sluice::upstream::health::grpc;

void require(bool cond) {
  if (!cond) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);

  auto framed = grpc::unframe_message(in);
  if (framed.is_ok()) {
    require(in.size() >= 5 && in[0] == '\0');
    require(framed.value().data() == in.data() + 5);
    require(framed.value().size() == in.size() - 5);
    require(framed.value().size() <= grpc::kMaxResponseMessage);
  }

  for (std::string_view message : {in, framed.is_ok() ? framed.value() : std::string_view()}) {
    auto status = grpc::decode_check_response(message);
    if (!status.is_ok()) {
      require(!status.status().message().empty());
      continue;
    }
    std::string more(message);
    more += "\x08\x02";
    auto then = grpc::decode_check_response(more);
    require(then.is_ok() && then.value() == grpc::ServingStatus::kNotServing);
  }

  size_t pos = 0;
  uint64_t value = 0;
  while (pos < in.size()) {
    size_t before = pos;
    if (!grpc::read_varint(in, pos, value)) {
      require(pos == before);
      break;
    }
    require(pos > before && pos - before <= 10 && pos <= in.size());
  }

  std::string text = grpc::decode_grpc_message(in, 64);
  require(text.size() <= 64);
  for (char c : text) {
    auto u = static_cast<unsigned char>(c);
    require(u >= 0x20 && u != 0x7f);
  }
  return 0;
}
