#include "tls/cert_watcher.h"

#include <gtest/gtest.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "base/clock.h"
#include "event/loop.h"

namespace sluice::tls {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;

constexpr Duration kSettle = milliseconds(200);

// inotify events are queued by the system call that makes the change, so after it returns
// run_until_idle() sees them; time moves only with the manual clock.
class CertWatcherTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string templ = (fs::temp_directory_path() / "sluice-watch-XXXXXX").string();
    ASSERT_NE(mkdtemp(templ.data()), nullptr);
    dir_ = templ;
  }
  void TearDown() override {
    watcher_.reset();
    std::error_code ignored;
    fs::remove_all(dir_, ignored);
  }

  void write(const std::string& path, const std::string& content) {
    std::ofstream out(path, std::ios::trunc);
    out << content;
    out.close();
    ASSERT_TRUE(out) << path;
  }
  void watch(std::vector<std::string> files) {
    auto w = CertWatcher::create(
        loop_, std::move(files), [this] { ++calls_; }, kSettle);
    ASSERT_TRUE(w) << w.status().message();
    watcher_ = std::move(*w);
  }
  // Handles what is pending, then lets the settle time pass.
  void settle() {
    loop_.run_until_idle();
    clock_.advance(kSettle);
    loop_.run_until_idle();
  }

  std::string dir_;
  ManualClock clock_;
  event::Loop loop_{clock_};
  std::unique_ptr<CertWatcher> watcher_;
  int calls_ = 0;
};

TEST_F(CertWatcherTest, FiresOnceAfterAFileIsRewrittenAndTheChangesSettle) {
  std::string cert = dir_ + "/tls.crt";
  std::string key = dir_ + "/tls.key";
  write(cert, "one");
  write(key, "one");
  watch({cert, key});
  EXPECT_EQ(watcher_->directories(), std::vector<std::string>{dir_});
  settle();
  EXPECT_EQ(calls_, 0);

  write(cert, "two");
  loop_.run_until_idle();
  clock_.advance(kSettle / 2);
  write(key, "two");  // the same update: postpones the call
  loop_.run_until_idle();
  clock_.advance(kSettle / 2);
  loop_.run_until_idle();
  EXPECT_EQ(calls_, 0);
  clock_.advance(kSettle / 2);
  loop_.run_until_idle();
  EXPECT_EQ(calls_, 1);
  settle();
  EXPECT_EQ(calls_, 1);

  // Replaced by a rename, as editors and atomic writers do.
  write(dir_ + "/tls.crt.tmp", "three");
  ASSERT_EQ(::rename((dir_ + "/tls.crt.tmp").c_str(), cert.c_str()), 0);
  settle();
  EXPECT_EQ(calls_, 2);
}

TEST_F(CertWatcherTest, ChangesKeepComingAtMostTenSettleTimes) {
  std::string cert = dir_ + "/tls.crt";
  write(cert, "0");
  watch({cert});
  // A change every 199 ms, each postponing the call, until 2 s after the first.
  for (int i = 1; i <= 10; ++i) {
    write(cert, std::to_string(i));
    loop_.run_until_idle();
    clock_.advance(kSettle - milliseconds(1));
    loop_.run_until_idle();
    EXPECT_EQ(calls_, 0) << i;
  }
  write(cert, "11");  // at 1990 ms
  loop_.run_until_idle();
  clock_.advance(milliseconds(9));
  loop_.run_until_idle();
  EXPECT_EQ(calls_, 0);
  clock_.advance(milliseconds(1));
  loop_.run_until_idle();
  EXPECT_EQ(calls_, 1);
}

TEST_F(CertWatcherTest, IgnoresOtherFilesOfTheDirectory) {
  std::string cert = dir_ + "/tls.crt";
  write(cert, "one");
  watch({cert});
  write(dir_ + "/other.txt", "x");
  write(dir_ + "/tls.crt.bak", "x");
  fs::create_directory(dir_ + "/sub");
  write(dir_ + "/sub/tls.crt", "x");
  ::unlink((dir_ + "/other.txt").c_str());
  settle();
  EXPECT_EQ(calls_, 0);
  // Read but not written: nothing changed.
  { std::ifstream in(cert); }
  settle();
  EXPECT_EQ(calls_, 0);
}

TEST_F(CertWatcherTest, FiresWhenAKubernetesDataDirectoryIsFlipped) {
  // The layout of a mounted Secret: tls.crt → ..data/tls.crt, ..data → ..<timestamp>.
  fs::create_directory(dir_ + "/..2026_01");
  write(dir_ + "/..2026_01/tls.crt", "one");
  fs::create_directory_symlink("..2026_01", dir_ + "/..data");
  fs::create_symlink("..data/tls.crt", dir_ + "/tls.crt");
  watch({dir_ + "/tls.crt"});
  EXPECT_EQ(watcher_->directories(), (std::vector<std::string>{dir_, dir_ + "/..2026_01"}));

  // The update: a new data directory, a new link to it renamed over ..data, the old one
  // removed.
  fs::create_directory(dir_ + "/..2026_02");
  write(dir_ + "/..2026_02/tls.crt", "two");
  loop_.run_until_idle();
  clock_.advance(kSettle);
  loop_.run_until_idle();
  EXPECT_EQ(calls_, 0);  // nothing points at the new directory yet
  fs::create_directory_symlink("..2026_02", dir_ + "/..data_tmp");
  ASSERT_EQ(::rename((dir_ + "/..data_tmp").c_str(), (dir_ + "/..data").c_str()), 0);
  fs::remove_all(dir_ + "/..2026_01");
  settle();
  EXPECT_EQ(calls_, 1);
  EXPECT_EQ(watcher_->directories(), (std::vector<std::string>{dir_, dir_ + "/..2026_02"}));

  // Watching where the link points now.
  write(dir_ + "/..2026_02/tls.crt", "three");
  settle();
  EXPECT_EQ(calls_, 2);
  write(dir_ + "/..2026_02/unrelated", "x");
  settle();
  EXPECT_EQ(calls_, 2);
}

TEST_F(CertWatcherTest, FiresWhenAMissingFileAppears) {
  std::string cert = dir_ + "/later/tls.crt";
  watch({cert});
  EXPECT_EQ(watcher_->directories(), std::vector<std::string>{dir_});
  fs::create_directory(dir_ + "/later");
  settle();
  EXPECT_EQ(calls_, 1);
  // Now its own directory; the parent, an ordinary directory above it, no longer.
  EXPECT_EQ(watcher_->directories(), std::vector<std::string>{dir_ + "/later"});
  write(cert, "one");
  settle();
  EXPECT_EQ(calls_, 2);
}

}  // namespace
}  // namespace sluice::tls
