// Buffers a Stream reuses for serialising heads, chunks and error bodies: one per worker
// thread rather than one per stream, so an idle connection keeps no such memory.
#pragma once

#include <string>

namespace sluice::proxy::http {

// Heads and chunks on their way to a connection's output.
inline std::string& scratch() {
  thread_local std::string s;
  return s;
}

// The body of an error reply, before it is serialised into scratch().
inline std::string& scratch_body() {
  thread_local std::string s;
  return s;
}

}  // namespace sluice::proxy::http
