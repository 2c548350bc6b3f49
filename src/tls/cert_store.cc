#include "tls/cert_store.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>

#include "base/log.h"
#include "tls/ocsp.h"
#include "tls/openssl_util.h"

namespace sluice::tls {
namespace {

using std::chrono::system_clock;

// A certificate this close to its end is loaded with a warning: renewal has failed.
constexpr auto kExpiryWarning = std::chrono::hours(24 * 14);

struct BioDeleter {
  void operator()(BIO* b) const { BIO_free(b); }
};
using BioPtr = std::unique_ptr<BIO, BioDeleter>;

// Certificates, keys and OCSP responses are small; a larger file is a mistake (or a device
// that never ends), not something to read.
constexpr off_t kMaxFileSize = 1 << 20;

Result<std::string> read_file(const std::string& file) {
  int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Status::error(fmt::format("{}: cannot read: {}", file, std::strerror(errno)));
  struct stat st;
  std::string data;
  Status status;
  if (::fstat(fd, &st) != 0) {
    status = Status::error(fmt::format("{}: cannot read: {}", file, std::strerror(errno)));
  } else if (!S_ISREG(st.st_mode)) {
    status = Status::error(fmt::format("{}: not a regular file", file));
  } else if (st.st_size > kMaxFileSize) {
    status = Status::error(
        fmt::format("{}: {} bytes is too large (at most {})", file, st.st_size, kMaxFileSize));
  } else {
    data.resize(static_cast<size_t>(st.st_size));
    size_t got = 0;
    while (got < data.size()) {
      ssize_t n = ::read(fd, data.data() + got, data.size() - got);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        status = Status::error(fmt::format("{}: cannot read: {}", file, std::strerror(errno)));
        break;
      }
      if (n == 0) break;  // shrank while being read
      got += static_cast<size_t>(n);
    }
    data.resize(got);
  }
  ::close(fd);
  if (!status) return status;
  if (data.empty()) return Status::error(fmt::format("{}: the file is empty", file));
  return data;
}

BioPtr memory_bio(const std::string& data) {
  return BioPtr(BIO_new_mem_buf(data.data(), static_cast<int>(data.size())));
}

// An encrypted key would make OpenSSL prompt on the terminal; refuse instead.
int no_passphrase(char*, int, int, void*) {
  return -1;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

bool valid_pattern(std::string_view name) {
  if (name.starts_with("*.")) name.remove_prefix(2);
  return valid_host_name(name);
}

// RFC 6125 §6.4.4: the CN only when there is no subjectAltName dNSName.
std::vector<std::string> names_of(X509* cert) {
  std::vector<std::string> names;
  auto* sans =
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  if (sans) {
    for (int i = 0; i < sk_GENERAL_NAME_num(sans); ++i) {
      const GENERAL_NAME* gn = sk_GENERAL_NAME_value(sans, i);
      if (gn->type != GEN_DNS) continue;
      const ASN1_IA5STRING* s = gn->d.dNSName;
      std::string name =
          lower(std::string_view(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                                 static_cast<size_t>(ASN1_STRING_length(s))));
      if (valid_pattern(name) && std::find(names.begin(), names.end(), name) == names.end()) {
        names.push_back(std::move(name));
      }
    }
    GENERAL_NAMES_free(sans);
  }
  if (!names.empty()) return names;
  X509_NAME* subject = X509_get_subject_name(cert);
  int at = X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
  if (at < 0) return names;
  unsigned char* utf8 = nullptr;
  int n = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, at)));
  if (n > 0) {
    std::string cn = lower(std::string_view(reinterpret_cast<char*>(utf8), n));
    if (valid_pattern(cn)) names.push_back(std::move(cn));
  }
  OPENSSL_free(utf8);
  return names;
}

LoadedCertificate::KeyType key_type_of(EVP_PKEY* key) {
  switch (EVP_PKEY_get_base_id(key)) {
    case EVP_PKEY_RSA:
    case EVP_PKEY_RSA_PSS:
      return LoadedCertificate::KeyType::kRsa;
    case EVP_PKEY_EC:
      return LoadedCertificate::KeyType::kEcdsa;
    default:
      return LoadedCertificate::KeyType::kOther;
  }
}

const char* key_type_name(LoadedCertificate::KeyType t) {
  switch (t) {
    case LoadedCertificate::KeyType::kRsa:
      return "RSA";
    case LoadedCertificate::KeyType::kEcdsa:
      return "ECDSA";
    case LoadedCertificate::KeyType::kOther:
      return "non-RSA, non-ECDSA";
  }
  return "?";
}

std::string when(system_clock::time_point t) {
  return log::format_time(t);
}

Result<PkeyPtr> read_private_key(const std::string& file) {
  auto data = read_file(file);
  if (!data) return data.status();
  ERR_clear_error();
  BioPtr bio = memory_bio(*data);
  PkeyPtr key(PEM_read_bio_PrivateKey(bio.get(), nullptr, no_passphrase, nullptr));
  if (!key) {
    take_openssl_errors();
    return Status::error(
        fmt::format("{}: no PEM private key found (an encrypted key is not supported)", file));
  }
  return key;
}

// The chain must run leaf → issuer → issuer's issuer: each certificate names the next as
// its issuer and carries its signature.
Status check_chain_order(const std::string& file, const std::vector<X509*>& chain) {
  for (size_t i = 0; i + 1 < chain.size(); ++i) {
    X509* cert = chain[i];
    X509* next = chain[i + 1];
    bool issued = X509_NAME_cmp(X509_get_issuer_name(cert), X509_get_subject_name(next)) == 0 &&
                  X509_verify(cert, X509_get0_pubkey(next)) == 1;
    take_openssl_errors();
    if (!issued) {
      return Status::error(fmt::format(
          "{}: the chain is out of order: certificate {} ({}) is not issued by certificate {} "
          "({}); list the leaf first, then each issuer in turn",
          file, i + 1, subject_of(cert), i + 2, subject_of(next)));
    }
  }
  return Status::ok();
}

Result<std::unique_ptr<LoadedCertificate>> load_one(const CertificateConfig& config,
                                                    system_clock::time_point now,
                                                    std::vector<std::string>* warnings) {
  auto loaded = load_certificate(config.certificate_chain, config.private_key, now, warnings);
  if (!loaded) return loaded.status();
  std::unique_ptr<LoadedCertificate> out = std::move(*loaded);
  X509* leaf = out->leaf.get();
  if (out->names.empty()) {
    return Status::error(fmt::format(
        "{}: the certificate ({}) names no DNS name (no subjectAltName DNS entry and no host "
        "name as its CN)",
        config.certificate_chain, out->subject));
  }
  if (!config.ocsp_response.empty()) {
    auto fail = [&](const std::string& why) {
      warnings->push_back(
          fmt::format("{}: OCSP response not stapled: {}", config.ocsp_response, why));
    };
    auto der = read_file(config.ocsp_response);
    if (!der) {
      // read_file's message already names the file.
      warnings->push_back(fmt::format("OCSP response not stapled: {}", der.status().message()));
    } else if (out->intermediates.empty()) {
      fail(fmt::format("{} holds no issuer certificate to check it against",
                       config.certificate_chain));
    } else {
      auto checked = check_ocsp_response(*der, leaf, out->intermediates[0].get(), now);
      if (checked) {
        out->ocsp_der = std::move(*der);
      } else {
        fail(checked.status().message());
      }
    }
  }
  return out;
}

}  // namespace

Result<std::unique_ptr<LoadedCertificate>> load_certificate(const std::string& chain_file,
                                                            const std::string& key_file,
                                                            system_clock::time_point now,
                                                            std::vector<std::string>* warnings) {
  std::vector<std::string> ignored;
  if (warnings == nullptr) warnings = &ignored;
  auto certs = read_pem_certificates(chain_file);
  if (!certs) return certs.status();
  auto key = read_private_key(key_file);
  if (!key) return key.status();

  std::vector<X509*> chain;
  for (auto& c : *certs) chain.push_back(c.get());
  Status order = check_chain_order(chain_file, chain);
  if (!order) return order;

  auto out = std::make_unique<LoadedCertificate>();
  out->chain_file = chain_file;
  X509* leaf = chain[0];
  out->subject = subject_of(leaf);
  if (X509_check_private_key(leaf, key->get()) != 1) {
    take_openssl_errors();
    return Status::error(
        fmt::format("{}: the private key does not match the certificate in {} ({})", key_file,
                    chain_file, out->subject));
  }
  for (size_t i = 0; i < chain.size(); ++i) {
    std::string which =
        i == 0 ? "the certificate" : fmt::format("certificate {} of the chain", i + 1);
    std::string subject = subject_of(chain[i]);
    auto not_before = to_time_point(X509_get0_notBefore(chain[i]));
    auto not_after = to_time_point(X509_get0_notAfter(chain[i]));
    if (!not_before || !not_after) {
      return Status::error(
          fmt::format("{}: {} ({}) has an unreadable validity period", chain_file, which, subject));
    }
    if (i == 0) out->not_after = *not_after;
    if (*not_after <= now) {
      return Status::error(
          fmt::format("{}: {} ({}) expired at {}", chain_file, which, subject, when(*not_after)));
    }
    if (*not_before > now) {
      warnings->push_back(fmt::format("{}: {} ({}) is not valid before {}", chain_file, which,
                                      subject, when(*not_before)));
    }
    if (*not_after - now < kExpiryWarning) {
      warnings->push_back(fmt::format("{}: {} ({}) expires at {}, in less than 14 days", chain_file,
                                      which, subject, when(*not_after)));
    }
  }
  out->names = names_of(leaf);
  out->key_type = key_type_of(key->get());
  out->leaf = std::move((*certs)[0]);
  for (size_t i = 1; i < certs->size(); ++i) out->intermediates.push_back(std::move((*certs)[i]));
  out->key = std::move(*key);
  return out;
}

Result<std::vector<X509Ptr>> read_pem_certificates(const std::string& file) {
  auto data = read_file(file);
  if (!data) return data.status();
  ERR_clear_error();
  BioPtr bio = memory_bio(*data);
  std::vector<X509Ptr> certs;
  while (X509* x = PEM_read_bio_X509(bio.get(), nullptr, no_passphrase, nullptr)) {
    certs.emplace_back(x);
  }
  // The loop ends at the end of the data ("no start line"); anything else is a broken block.
  unsigned long last = ERR_peek_last_error();
  bool at_end = ERR_GET_LIB(last) == ERR_LIB_PEM && ERR_GET_REASON(last) == PEM_R_NO_START_LINE;
  std::string why = take_openssl_errors();
  if (certs.empty()) {
    return Status::error(fmt::format("{}: no PEM certificate found", file));
  }
  if (!at_end) {
    return Status::error(fmt::format("{}: certificate {} is not a valid PEM certificate ({})", file,
                                     certs.size() + 1, why));
  }
  return certs;
}

Status check_ca_file(const std::string& file) {
  auto certs = read_pem_certificates(file);
  if (!certs) return certs.status();
  for (size_t i = 0; i < certs->size(); ++i) {
    X509* c = (*certs)[i].get();
    if (X509_check_ca(c) == 0) {
      return Status::error(fmt::format(
          "{}: certificate {} ({}) is not a CA certificate (no basicConstraints CA:TRUE)", file,
          i + 1, subject_of(c)));
    }
  }
  return Status::ok();
}

bool name_matches(std::string_view pattern, std::string_view name) {
  if (pattern == name) return true;
  if (!pattern.starts_with("*.")) return false;
  std::string_view rest = pattern.substr(1);  // ".example.com"
  if (name.size() <= rest.size() || !name.ends_with(rest)) return false;
  std::string_view label = name.substr(0, name.size() - rest.size());
  return label.find('.') == std::string_view::npos;
}

Result<std::shared_ptr<const CertStore>> CertStore::load(const ServerConfig& config,
                                                         std::vector<std::string>* warnings) {
  return load(config, warnings, system_clock::now());
}

Result<std::shared_ptr<const CertStore>> CertStore::load(const ServerConfig& config,
                                                         std::vector<std::string>* warnings,
                                                         system_clock::time_point now) {
  std::vector<std::string> ignored;
  if (warnings == nullptr) warnings = &ignored;
  auto store = std::make_shared<CertStore>();
  std::string errors;
  auto add_error = [&](const std::string& message) {
    errors += errors.empty() ? message : "\n" + message;
  };
  auto watch = [&](const std::string& file) {
    if (!file.empty() &&
        std::find(store->files_.begin(), store->files_.end(), file) == store->files_.end()) {
      store->files_.push_back(file);
    }
  };
  for (const CertificateConfig& c : config.certificates) {
    watch(c.certificate_chain);
    watch(c.private_key);
    watch(c.ocsp_response);
    auto loaded = load_one(c, now, warnings);
    if (!loaded) {
      add_error(loaded.status().message());
      continue;
    }
    store->certs_.push_back(std::move(*loaded));
  }
  if (!errors.empty()) return Status::error(errors);
  if (store->certs_.empty()) return Status::error("no certificate configured");

  // One group per set of names, in the order of the first certificate of each.
  for (const auto& cert : store->certs_) {
    std::vector<std::string> sorted = cert->names;
    std::sort(sorted.begin(), sorted.end());
    CertGroup* group = nullptr;
    for (CertGroup& g : store->groups_) {
      std::vector<std::string> theirs = g.names;
      std::sort(theirs.begin(), theirs.end());
      if (theirs == sorted) group = &g;
    }
    if (group == nullptr) {
      store->groups_.push_back(CertGroup{cert->names, {}});
      group = &store->groups_.back();
    }
    for (const LoadedCertificate* other : group->certs) {
      if (other->key_type == cert->key_type) {
        add_error(fmt::format(
            "{}: serves the same names as {} with the same key type ({}); list at most one "
            "RSA and one ECDSA certificate for a set of names",
            cert->chain_file, other->chain_file, key_type_name(cert->key_type)));
      }
    }
    group->certs.push_back(cert.get());
  }
  if (!errors.empty()) return Status::error(errors);
  return std::shared_ptr<const CertStore>(std::move(store));
}

const CertGroup* CertStore::select(std::string_view server_name, bool require_sni) const {
  // RFC 6066 §3: a host name is at most 255 bytes; compared without case, a final dot
  // ignored. Lower-cased on the stack: this runs in every handshake.
  if (!server_name.empty() && server_name.back() == '.') server_name.remove_suffix(1);
  if (server_name.empty() || server_name.size() > 255) {
    return require_sni || groups_.empty() ? nullptr : &groups_.front();
  }
  char buf[255];
  for (size_t i = 0; i < server_name.size(); ++i) {
    buf[i] = static_cast<char>(std::tolower(static_cast<unsigned char>(server_name[i])));
  }
  std::string_view name(buf, server_name.size());
  for (const CertGroup& g : groups_) {
    for (const std::string& n : g.names) {
      if (n == name) return &g;
    }
  }
  for (const CertGroup& g : groups_) {
    for (const std::string& n : g.names) {
      if (n.starts_with("*.") && name_matches(n, name)) return &g;
    }
  }
  return require_sni || groups_.empty() ? nullptr : &groups_.front();
}

}  // namespace sluice::tls
