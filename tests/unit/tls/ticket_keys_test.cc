#include "tls/ticket_keys.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>

#include "tls/replay_guard.h"

namespace sluice::tls {
namespace {

// A ticket made with the current key still resumes after one rotation (renewed: its key is
// no longer the current one) and not after two; the next key is known before it encrypts.
TEST(TicketKeys, RotationKeepsThePreviousKeyForDecryption) {
  TicketKeys keys;
  TicketKey first = keys.current();
  TicketKey found;
  bool current = false;
  ASSERT_TRUE(keys.find(first.name.data(), &found, &current));
  EXPECT_TRUE(current);
  EXPECT_EQ(found.aes_key, first.aes_key);

  keys.rotate();
  TicketKey second = keys.current();
  EXPECT_NE(second.name, first.name);
  ASSERT_TRUE(keys.find(first.name.data(), &found, &current));
  EXPECT_FALSE(current);  // decrypts, and the holder gets a new ticket
  EXPECT_EQ(found.hmac_key, first.hmac_key);

  keys.rotate();
  EXPECT_FALSE(keys.find(first.name.data(), &found, &current));
  ASSERT_TRUE(keys.find(second.name.data(), &found, &current));
  EXPECT_FALSE(current);
  EXPECT_EQ(keys.rotations(), 2u);
}

TEST(TicketKeys, FilesMustHoldEightyBytes) {
  auto r = TicketKeys::from_files({"/nonexistent/ticket.key"});
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().message(), "ticket key file /nonexistent/ticket.key: cannot read it");
}

TEST(TicketKeys, KeyFilesAreReadAgainWhenTheyChange) {
  char dir[] = "/tmp/sluice-keys-XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  std::string path = std::string(dir) + "/ticket.key";
  auto write = [&](char fill) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << std::string(80, fill);
  };
  write('a');
  auto keys = TicketKeys::from_files({path});
  ASSERT_TRUE(keys.is_ok()) << keys.status().message();
  std::array<unsigned char, 16> a_name;
  a_name.fill('a');
  TicketKey found;
  bool current = false;
  EXPECT_TRUE((*keys)->find(a_name.data(), &found, &current));
  EXPECT_TRUE(current);

  write('b');
  ASSERT_TRUE((*keys)->reload_files({path}).is_ok());
  std::array<unsigned char, 16> b_name;
  b_name.fill('b');
  EXPECT_TRUE((*keys)->find(b_name.data(), &found, &current));
  EXPECT_FALSE((*keys)->find(a_name.data(), &found, &current));

  // A bad file leaves the keys in use.
  { std::ofstream(path, std::ios::binary | std::ios::trunc) << "short"; }
  Status s = (*keys)->reload_files({path});
  EXPECT_EQ(s.message(), "ticket key file " + path + ": expected 80 bytes, got 5");
  EXPECT_TRUE((*keys)->find(b_name.data(), &found, &current));
  std::remove(path.c_str());
  rmdir(dir);
}

TEST(ReplayGuard, AKeyIsAcceptedOnceWithinTheWindow) {
  using namespace std::chrono_literals;
  ReplayGuard guard(3, 10s);
  auto t0 = ReplayGuard::Clock::time_point() + 1h;
  EXPECT_TRUE(guard.first_use("a", t0));
  EXPECT_FALSE(guard.first_use("a", t0 + 1s));  // the replay
  EXPECT_TRUE(guard.first_use("b", t0 + 2s));
  EXPECT_EQ(guard.replays(), 1u);
  // After the window the record forgets "a" (its ticket can no longer be used anyway).
  EXPECT_TRUE(guard.first_use("a", t0 + 11s));
  EXPECT_EQ(guard.size(), 2u);
}

TEST(ReplayGuard, AFullRecordRefusesRatherThanForgets) {
  using namespace std::chrono_literals;
  ReplayGuard guard(2, 10s);
  auto t0 = ReplayGuard::Clock::time_point() + 1h;
  EXPECT_TRUE(guard.first_use("a", t0));
  EXPECT_TRUE(guard.first_use("b", t0));
  EXPECT_FALSE(guard.first_use("c", t0));  // no room: early data refused
  EXPECT_FALSE(guard.first_use("a", t0));  // still a replay
  EXPECT_EQ(guard.replays(), 1u);
}

}  // namespace
}  // namespace sluice::tls
