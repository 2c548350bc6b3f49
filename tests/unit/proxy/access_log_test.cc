#include "proxy/access_log.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

namespace sluice::proxy {
namespace {

std::vector<std::string> lines_of(const std::string& path) {
  std::vector<std::string> out;
  std::ifstream f(path);
  for (std::string line; std::getline(f, line);) out.push_back(line);
  return out;
}

class AccessLogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/sluice-access-log-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    path_ = dir_ + "/access.log";
  }
  void TearDown() override {
    std::remove(path_.c_str());
    std::remove((path_ + ".1").c_str());
    ::rmdir(dir_.c_str());
  }
  std::string dir_;
  std::string path_;
};

TEST_F(AccessLogTest, EveryLineHandedOverIsWrittenInOrderWhenTheLogCloses) {
  {
    auto log = AccessLog::open(path_);
    ASSERT_TRUE(log.is_ok());
    for (int i = 0; i < 5000; ++i) (*log)->write("{\"n\":" + std::to_string(i) + "}");
  }
  auto got = lines_of(path_);
  ASSERT_EQ(got.size(), 5000u);
  for (int i = 0; i < 5000; ++i) ASSERT_EQ(got[i], "{\"n\":" + std::to_string(i) + "}");
}

TEST_F(AccessLogTest, ALoneLineReachesTheFileWithinTheFlushInterval) {
  auto log = AccessLog::open(path_);
  ASSERT_TRUE(log.is_ok());
  (*log)->write("{\"only\":1}");
  // Nothing else is written: the batch goes out on its own timer, not at close.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(3);
  while (lines_of(path_).empty() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_EQ(lines_of(path_), std::vector<std::string>{"{\"only\":1}"});
}

TEST_F(AccessLogTest, AReopenSendsEarlierLinesToTheMovedFileAndLaterOnesToTheNewOne) {
  auto log = AccessLog::open(path_);
  ASSERT_TRUE(log.is_ok());
  (*log)->write("{\"before\":1}");
  ASSERT_EQ(std::rename(path_.c_str(), (path_ + ".1").c_str()), 0);
  ASSERT_TRUE((*log)->reopen().is_ok());
  (*log)->write("{\"after\":1}");
  log->reset();  // writes what is pending
  EXPECT_EQ(lines_of(path_ + ".1"), std::vector<std::string>{"{\"before\":1}"});
  EXPECT_EQ(lines_of(path_), std::vector<std::string>{"{\"after\":1}"});
}

}  // namespace
}  // namespace sluice::proxy
