#include "tls/test_pki.h"

#include <fmt/format.h>
#include <openssl/ocsp.h>
#include <openssl/pem.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace sluice::tls::testing {
namespace {

constexpr const char* kOpenssl = "/usr/bin/openssl";

// `openssl ca` settings shared by both CAs: a database per CA under dir/<ca>.db, any
// subject, extensions from the -extfile given per certificate.
constexpr const char* kCaConfig = R"([ ca ]
default_ca = ca_default
[ ca_default ]
dir = .
database = $dir/index.txt
new_certs_dir = $dir
serial = $dir/serial
default_md = sha256
policy = policy_any
unique_subject = no
email_in_dn = no
[ policy_any ]
commonName = supplied
)";

std::string key_args(TestPki::Key key) {
  return key == TestPki::Key::kRsa ? "-newkey rsa:2048"
                                   : "-newkey ec -pkeyopt ec_paramgen_curve:P-256";
}

}  // namespace

TestPki::TestPki() {
  const char* tmp = getenv("TMPDIR");
  std::string templ = fmt::format("{}/sluice-pki-XXXXXX", tmp && *tmp ? tmp : "/tmp");
  if (mkdtemp(templ.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
  dir_ = templ;
  for (const char* ca : {"root", "intermediate"}) {
    std::filesystem::create_directory(fmt::format("{}/{}.db", dir_, ca));
    write(fmt::format("{}.db/ca.cnf", ca), kCaConfig);
    write(fmt::format("{}.db/index.txt", ca), "");
    write(fmt::format("{}.db/serial", ca), ca == std::string("root") ? "1000\n" : "2000\n");
  }
  write("ca.ext",
        "basicConstraints = critical,CA:true\nkeyUsage = critical,keyCertSign,cRLSign\n"
        "subjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid\n");
  run(
      fmt::format("{} req -x509 {} -nodes -keyout root.key -out root.pem -days 3650 "
                  "-subj '/CN=Sluice Test Root' -addext 'basicConstraints=critical,CA:true' "
                  "-addext 'keyUsage=critical,keyCertSign,cRLSign'",
                  kOpenssl, key_args(Key::kEcdsa)));
  run(
      fmt::format("{} req -new {} -nodes -keyout intermediate.key -out intermediate.csr "
                  "-subj '/CN=Sluice Test Intermediate'",
                  kOpenssl, key_args(Key::kEcdsa)));
  run(
      fmt::format("cd root.db && {} ca -batch -config ca.cnf -cert ../root.pem -keyfile "
                  "../root.key -in ../intermediate.csr -out ../intermediate.pem -extfile "
                  "../ca.ext -days 3650 -notext",
                  kOpenssl));
  run(
      fmt::format("{} req -x509 {} -nodes -keyout other.key -out other.pem -days 3650 "
                  "-subj '/CN=Sluice Unrelated CA' -addext 'basicConstraints=critical,CA:true' "
                  "-addext 'keyUsage=critical,keyCertSign,cRLSign,digitalSignature'",
                  kOpenssl, key_args(Key::kEcdsa)));
}

TestPki::~TestPki() {
  std::error_code ignored;
  std::filesystem::remove_all(dir_, ignored);
}

TestPki::Leaf TestPki::issue(const std::string& name, const LeafOptions& o) {
  std::string ext = "basicConstraints = CA:false\n";
  ext += o.key == Key::kRsa ? "keyUsage = critical,digitalSignature,keyEncipherment\n"
                            : "keyUsage = critical,digitalSignature\n";
  ext += o.client_auth ? "extendedKeyUsage = serverAuth,clientAuth\n"
                       : "extendedKeyUsage = serverAuth\n";
  ext += "subjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid\n";
  if (!o.dns_names.empty()) {
    std::string san;
    for (const std::string& n : o.dns_names) san += (san.empty() ? "DNS:" : ",DNS:") + n;
    ext += "subjectAltName = " + san + "\n";
  }
  write(name + ".ext", ext);
  std::string cn = o.common_name;
  if (cn.empty()) cn = o.dns_names.empty() ? "sluice test leaf" : o.dns_names[0];
  run(fmt::format("{} req -new {} -nodes -keyout {}.key -out {}.csr -subj '/CN={}'", kOpenssl,
                  key_args(o.key), name, name, cn));
  std::string validity = o.not_before.empty() && o.not_after.empty()
                             ? fmt::format("-days {}", o.days)
                             : fmt::format("-startdate {} -enddate {}", o.not_before, o.not_after);
  run(
      fmt::format("cd intermediate.db && {} ca -batch -config ca.cnf -cert ../intermediate.pem "
                  "-keyfile ../intermediate.key -in ../{}.csr -out ../{}.pem -extfile ../{}.ext "
                  "{} -notext",
                  kOpenssl, name, name, name, validity));
  Leaf leaf;
  leaf.cert = fmt::format("{}/{}.pem", dir_, name);
  leaf.key = fmt::format("{}/{}.key", dir_, name);
  leaf.chain = write(name + ".chain.pem", read(leaf.cert) + read(intermediate_cert()));
  return leaf;
}

std::string TestPki::ocsp_response(const std::string& name, const Leaf& leaf, int next_update_days,
                                   Signer signer) {
  if (signer == Signer::kDelegated && !have_responder_) {
    write("responder.ext",
          "basicConstraints = CA:false\nkeyUsage = critical,digitalSignature\n"
          "extendedKeyUsage = OCSPSigning\n");
    run(
        fmt::format("{} req -new {} -nodes -keyout responder.key -out responder.csr "
                    "-subj '/CN=Sluice Test OCSP Responder'",
                    kOpenssl, key_args(Key::kEcdsa)));
    run(
        fmt::format("cd intermediate.db && {} ca -batch -config ca.cnf -cert ../intermediate.pem "
                    "-keyfile ../intermediate.key -in ../responder.csr -out ../responder.pem "
                    "-extfile ../responder.ext -days 365 -notext",
                    kOpenssl));
    have_responder_ = true;
  }
  const char* who = signer == Signer::kIssuer      ? "intermediate"
                    : signer == Signer::kDelegated ? "responder"
                                                   : "other";
  run(fmt::format("{} ocsp -issuer intermediate.pem -cert {} -no_nonce -reqout {}.req", kOpenssl,
                  leaf.cert, name));
  std::string next = next_update_days > 0 ? fmt::format("-ndays {}", next_update_days) : "";
  run(
      fmt::format("{} ocsp -index intermediate.db/index.txt -CA intermediate.pem -rsigner {}.pem "
                  "-rkey {}.key -reqin {}.req -respout {}.der {}",
                  kOpenssl, who, who, name, name, next));
  return fmt::format("{}/{}.der", dir_, name);
}

std::string TestPki::stale_ocsp_response(const std::string& name, const Leaf& leaf) {
  auto pem = [](const std::string& path, auto reader) {
    std::string data = read(path);
    BIO* bio = BIO_new_mem_buf(data.data(), static_cast<int>(data.size()));
    auto* out = reader(bio, nullptr, nullptr, nullptr);
    BIO_free(bio);
    if (out == nullptr) throw std::runtime_error("cannot parse " + path);
    return out;
  };
  X509* cert = pem(leaf.cert, PEM_read_bio_X509);
  X509* issuer = pem(intermediate_cert(), PEM_read_bio_X509);
  EVP_PKEY* key = pem(intermediate_key(), PEM_read_bio_PrivateKey);
  OCSP_CERTID* id = OCSP_cert_to_id(nullptr, cert, issuer);
  OCSP_BASICRESP* basic = OCSP_BASICRESP_new();
  ASN1_TIME* this_update = X509_gmtime_adj(nullptr, -2 * 86400);
  ASN1_TIME* next_update = X509_gmtime_adj(nullptr, -86400);
  bool ok = id && basic && this_update && next_update &&
            OCSP_basic_add1_status(basic, id, V_OCSP_CERTSTATUS_GOOD, 0, nullptr, this_update,
                                   next_update) != nullptr &&
            OCSP_basic_sign(basic, issuer, key, EVP_sha256(), nullptr, 0) == 1;
  OCSP_RESPONSE* response =
      ok ? OCSP_response_create(OCSP_RESPONSE_STATUS_SUCCESSFUL, basic) : nullptr;
  unsigned char* der = nullptr;
  int n = response ? i2d_OCSP_RESPONSE(response, &der) : -1;
  std::string bytes = n > 0 ? std::string(reinterpret_cast<char*>(der), n) : "";
  OPENSSL_free(der);
  OCSP_RESPONSE_free(response);
  ASN1_TIME_free(next_update);
  ASN1_TIME_free(this_update);
  OCSP_BASICRESP_free(basic);
  OCSP_CERTID_free(id);
  EVP_PKEY_free(key);
  X509_free(issuer);
  X509_free(cert);
  if (bytes.empty()) throw std::runtime_error("cannot make a stale OCSP response");
  return write(name + ".der", bytes);
}

std::string TestPki::write(const std::string& name, const std::string& content) const {
  std::string path = fmt::format("{}/{}", dir_, name);
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << content;
  if (!out) throw std::runtime_error("cannot write " + path);
  return path;
}

std::string TestPki::read(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void TestPki::run(const std::string& command) const {
  std::string log = dir_ + "/last-command.log";
  std::string full = fmt::format("cd '{}' && ( {} ) > '{}' 2>&1", dir_, command, log);
  int rc = std::system(full.c_str());
  if (rc != 0) {
    std::string output;
    try {
      output = read(log);
    } catch (const std::exception&) {
    }
    throw std::runtime_error(fmt::format("`{}` failed ({}):\n{}", command, rc, output));
  }
}

}  // namespace sluice::tls::testing
