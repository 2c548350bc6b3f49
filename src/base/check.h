// Invariant checks. SLUICE_CHECK always runs and aborts with a message: a broken invariant
// is a bug that must not be served through. SLUICE_ASSERT is the debug-only variant for hot
// paths. Errors caused by input are never checked this way: they return a Status.
#pragma once

namespace sluice::detail {
[[noreturn]] void check_failed(const char* expr, const char* file, int line);
}

#define SLUICE_CHECK(expr) \
  ((expr) ? static_cast<void>(0) : ::sluice::detail::check_failed(#expr, __FILE__, __LINE__))

#ifdef NDEBUG
#define SLUICE_ASSERT(expr) static_cast<void>(0)
#else
#define SLUICE_ASSERT(expr) SLUICE_CHECK(expr)
#endif
