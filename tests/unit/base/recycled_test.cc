#include "base/recycled.h"

#include <gtest/gtest.h>

#include <memory>
#include <thread>
#include <vector>

namespace sluice {
namespace {

// Kept even under AddressSanitizer, so that these tests run in the sanitizer build too.
struct Big final : Recycled<Big, 2, true> {
  char bytes[2000] = {};
};

TEST(Recycled, AFreedBlockServesTheNextObjectOfTheClass) {
  auto* a = new Big;
  void* where = a;
  delete a;
  auto* b = new Big;
  EXPECT_EQ(static_cast<void*>(b), where);
  EXPECT_EQ(b->bytes[0], 0);  // constructed afresh
  delete b;
}

TEST(Recycled, KeepsAtMostItsLimitAndEachThreadItsOwn) {
  std::vector<Big*> many;
  for (int i = 0; i < 5; ++i) many.push_back(new Big);
  std::vector<void*> where(many.begin(), many.end());
  for (Big* b : many) delete b;  // the first two freed are kept, the other three given back
  auto x = std::make_unique<Big>();
  auto y = std::make_unique<Big>();
  EXPECT_EQ(static_cast<void*>(x.get()), where[1]);
  EXPECT_EQ(static_cast<void*>(y.get()), where[0]);
  // Another thread starts with none kept, and gives its own back when it ends.
  void* other = nullptr;
  std::thread([&] {
    auto z = std::make_unique<Big>();
    other = z.get();
  }).join();
  EXPECT_NE(other, static_cast<void*>(x.get()));
  EXPECT_NE(other, static_cast<void*>(y.get()));
}

// What the proxy's classes get: nothing kept under AddressSanitizer, so a use after free
// is reported; kept otherwise.
struct Plain final : Recycled<Plain, 2> {
  char bytes[2000] = {};
};

TEST(Recycled, KeepsNothingUnderAddressSanitizer) {
  auto* a = new Plain;
  void* where = a;
  delete a;
  auto b = std::make_unique<Plain>();
  EXPECT_EQ(static_cast<void*>(b.get()) == where, !kSanitizedAddresses);
}

}  // namespace
}  // namespace sluice
