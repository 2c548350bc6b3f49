#include "tls/ticket_keys.h"

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <cstring>
#include <fstream>
#include <iterator>

#include <fmt/format.h>

namespace sluice::tls {
namespace {

TicketKey random_key() {
  TicketKey k;
  RAND_bytes(k.name.data(), static_cast<int>(k.name.size()));
  RAND_bytes(k.aes_key.data(), static_cast<int>(k.aes_key.size()));
  RAND_bytes(k.hmac_key.data(), static_cast<int>(k.hmac_key.size()));
  return k;
}

int keys_ex_index() {
  static int index = SSL_CTX_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}

// Fetched once: OpenSSL 3 looks algorithms up by name, which costs on every handshake.
const EVP_CIPHER* aes256_cbc() {
  static EVP_CIPHER* cipher = EVP_CIPHER_fetch(nullptr, "AES-256-CBC", nullptr);
  return cipher;
}

int ticket_callback(SSL* ssl, unsigned char* key_name, unsigned char* iv, EVP_CIPHER_CTX* cctx,
                    EVP_MAC_CTX* hctx, int enc) {
  auto* keys = static_cast<TicketKeys*>(SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), keys_ex_index()));
  if (!keys) return -1;
  TicketKey key;
  bool renew = false;
  if (enc) {
    key = keys->current();
    memcpy(key_name, key.name.data(), key.name.size());
    if (RAND_bytes(iv, EVP_CIPHER_get_iv_length(aes256_cbc())) != 1) return -1;
  } else {
    bool is_current = false;
    if (!keys->find(key_name, &key, &is_current)) return 0;  // unknown: a full handshake
    renew = !is_current;
  }
  char digest[] = "SHA256";
  OSSL_PARAM params[] = {OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, key.hmac_key.data(),
                                                           key.hmac_key.size()),
                         OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
                         OSSL_PARAM_construct_end()};
  if (EVP_MAC_CTX_set_params(hctx, params) != 1) return -1;
  int ok = enc ? EVP_EncryptInit_ex(cctx, aes256_cbc(), nullptr, key.aes_key.data(), iv)
               : EVP_DecryptInit_ex(cctx, aes256_cbc(), nullptr, key.aes_key.data(), iv);
  if (ok != 1) return -1;
  // A ticket made with an older key resumes, and its holder gets a new one.
  return renew ? 2 : 1;
}

}  // namespace

TicketKeys::TicketKeys() {
  keys_ = {random_key(), random_key(), random_key()};  // current, previous, next
}

TicketKeys::TicketKeys(std::vector<TicketKey> keys) : keys_(std::move(keys)) {
  while (keys_.size() < 3) keys_.push_back(random_key());
}

std::vector<TicketKey> TicketKeys::keys() const {
  std::lock_guard lock(mu_);
  return keys_;
}

namespace {

Result<std::vector<TicketKey>> read_key_files(const std::vector<std::string>& files) {
  std::vector<TicketKey> keys;
  for (const auto& f : files) {
    std::ifstream in(f, std::ios::binary);
    if (!in) return Status::error(fmt::format("ticket key file {}: cannot read it", f));
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (bytes.size() != 80)
      return Status::error(
          fmt::format("ticket key file {}: expected 80 bytes, got {}", f, bytes.size()));
    TicketKey k;
    memcpy(k.name.data(), bytes.data(), 16);
    memcpy(k.aes_key.data(), bytes.data() + 16, 32);
    memcpy(k.hmac_key.data(), bytes.data() + 48, 32);
    keys.push_back(k);
  }
  if (keys.empty()) return Status::error("ticket_key_files: no file");
  return keys;
}

}  // namespace

Result<std::shared_ptr<TicketKeys>> TicketKeys::from_files(const std::vector<std::string>& files) {
  auto read = read_key_files(files);
  if (!read) return read.status();
  auto keys = std::make_shared<TicketKeys>();
  keys->keys_ = std::move(read.value());
  keys->from_files_ = true;
  return keys;
}

Status TicketKeys::reload_files(const std::vector<std::string>& files) {
  auto read = read_key_files(files);
  if (!read) return read.status();
  std::lock_guard lock(mu_);
  keys_ = std::move(read.value());
  ++rotations_;
  return Status::ok();
}

void TicketKeys::rotate() {
  std::lock_guard lock(mu_);
  if (from_files_) return;
  // keys_[0] current, [1] previous, [2] next: next becomes current, a new next is made.
  TicketKey next = keys_[2];
  keys_[1] = keys_[0];
  keys_[0] = next;
  keys_[2] = random_key();
  ++rotations_;
}

void TicketKeys::install(SSL_CTX* ctx) {
  SSL_CTX_set_ex_data(ctx, keys_ex_index(), this);
  SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, &ticket_callback);
}

TicketKey TicketKeys::current() const {
  std::lock_guard lock(mu_);
  return keys_[0];
}

bool TicketKeys::find(const unsigned char* name, TicketKey* out, bool* is_current) const {
  std::lock_guard lock(mu_);
  for (size_t i = 0; i < keys_.size(); ++i) {
    if (memcmp(keys_[i].name.data(), name, keys_[i].name.size()) != 0) continue;
    *out = keys_[i];
    *is_current = i == 0;
    return true;
  }
  return false;
}

uint64_t TicketKeys::rotations() const {
  std::lock_guard lock(mu_);
  return rotations_;
}

}  // namespace sluice::tls
