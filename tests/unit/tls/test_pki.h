// TestPki: a throwaway PKI for tests, made with the openssl command line in a fresh
// temporary directory that the destructor removes: a root CA, an intermediate CA issued by
// it, server certificates issued by the intermediate (RSA or ECDSA, any names and validity
// period), OCSP responses for them, and an unrelated CA. A failing openssl command throws
// (the test then fails with its output). Not thread-safe; one per test or test suite.
#pragma once

#include <string>
#include <vector>

namespace sluice::tls::testing {

class TestPki {
 public:
  enum class Key { kRsa, kEcdsa };
  struct LeafOptions {
    // subjectAltName DNS entries; none: the certificate has no subjectAltName.
    std::vector<std::string> dns_names;
    // The subject's CN; "" = the first DNS name, or "sluice test leaf".
    std::string common_name;
    Key key = Key::kEcdsa;
    // Valid from now for `days`, unless explicit dates are given ("YYYYMMDDHHMMSSZ", UTC).
    int days = 365;
    std::string not_before;
    std::string not_after;
    // Also usable as a client certificate (extendedKeyUsage clientAuth).
    bool client_auth = false;
  };
  // Files of one issued certificate, all in dir().
  struct Leaf {
    std::string cert;   // the certificate alone (PEM)
    std::string chain;  // the certificate, then the intermediate (PEM)
    std::string key;    // its private key (PEM, unencrypted)
  };
  // Who signs an OCSP response.
  enum class Signer {
    kIssuer,     // the intermediate itself
    kDelegated,  // a responder certificate the intermediate issued for OCSP signing
    kOtherCa,    // the unrelated CA: a forgery as far as the chain is concerned
  };

  TestPki();
  ~TestPki();
  TestPki(const TestPki&) = delete;
  TestPki& operator=(const TestPki&) = delete;

  const std::string& dir() const { return dir_; }
  std::string root_cert() const { return dir_ + "/root.pem"; }
  std::string intermediate_cert() const { return dir_ + "/intermediate.pem"; }
  std::string intermediate_key() const { return dir_ + "/intermediate.key"; }
  // A self-signed CA that has nothing to do with the others.
  std::string other_ca_cert() const { return dir_ + "/other.pem"; }

  // Issues a certificate named `name` (the file names' stem) from the intermediate.
  Leaf issue(const std::string& name, const LeafOptions& options);

  // A DER OCSP response saying `leaf` is good, written to dir()/<name>.der (its path is
  // returned). next_update_days 0: without nextUpdate.
  std::string ocsp_response(const std::string& name, const Leaf& leaf, int next_update_days = 1,
                            Signer signer = Signer::kIssuer);

  // A DER OCSP response saying `leaf` is good, signed by the intermediate, but stale now:
  // thisUpdate two days ago, nextUpdate one day ago (made with the library: the command
  // cannot date a response in the past). Written to dir()/<name>.der; returns the path.
  std::string stale_ocsp_response(const std::string& name, const Leaf& leaf);

  // Writes `content` to dir()/name; returns the path.
  std::string write(const std::string& name, const std::string& content) const;
  static std::string read(const std::string& path);

  // Runs a shell command in dir(); throws with its output when it exits non-zero.
  void run(const std::string& command) const;

 private:
  std::string dir_;
  bool have_responder_ = false;
};

}  // namespace sluice::tls::testing
