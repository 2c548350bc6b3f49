// TicketKeys: the keys that encrypt and decrypt stateless TLS session tickets, shared by every
// worker of the process so a session made on one worker resumes on any other. Three keys
// are live: the current one encrypts new tickets; the previous one still decrypts tickets
// it made (their holders resume and get a fresh ticket); the next one is already known, so
// a rotation never leaves a worker without the key a ticket names. Keys live in memory only,
// unless a fleet shares them through files.
// rotate() runs on the main thread on a timer; workers read through install()'s callback
// under a short lock (a handshake reads one key). Thread-safe.
#pragma once

#include <openssl/ssl.h>

#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "base/status.h"

namespace sluice::tls {

struct TicketKey {
  std::array<unsigned char, 16> name;
  std::array<unsigned char, 32> aes_key;   // AES-256-CBC
  std::array<unsigned char, 32> hmac_key;  // HMAC-SHA256
};

class TicketKeys {
 public:
  // Three random keys.
  TicketKeys();
  // The keys another process used (a binary upgrade hands them over): sessions it issued
  // tickets for resume here. Rotated like random ones.
  explicit TicketKeys(std::vector<TicketKey> keys);
  // A copy of the keys in use, in their order (to hand over).
  std::vector<TicketKey> keys() const;
  // Keys read from files of 80 bytes each (name, AES key, HMAC key), the newest first: the
  // first encrypts, every one decrypts.
  static Result<std::shared_ptr<TicketKeys>> from_files(const std::vector<std::string>& files);

  // previous ← current ← next ← a new random key (not for keys from files).
  void rotate();
  // The files changed: their keys replace these, at once for every worker. On an error
  // (a file missing or not 80 bytes) the keys in use stay.
  Status reload_files(const std::vector<std::string>& files);
  // Encrypt/decrypt callbacks on `ctx` that use these keys. The TicketKeys must outlive
  // `ctx` (its owner keeps a reference).
  void install(SSL_CTX* ctx);

  // For the callback: the encrypting key, or the key named `name` (false when unknown).
  TicketKey current() const;
  bool find(const unsigned char* name, TicketKey* out, bool* is_current) const;
  uint64_t rotations() const;

 private:
  mutable std::mutex mu_;
  std::vector<TicketKey> keys_;  // [0] encrypts
  uint64_t rotations_ = 0;
  bool from_files_ = false;
};

}  // namespace sluice::tls
