#include "tls/cert_store.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "base/log.h"
#include "tls/ocsp.h"
#include "tls/test_pki.h"

namespace sluice::tls {
namespace {

using std::chrono::system_clock;
using testing::TestPki;
using KeyType = LoadedCertificate::KeyType;

// One PKI for the suite: making keys is the slow part.
class CertStoreTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    pki_ = new TestPki();
    www_rsa_ = pki_->issue(
        "www_rsa", {.dns_names = {"www.example.com", "Example.COM"}, .key = TestPki::Key::kRsa});
    www_ec_ = pki_->issue("www_ec", {.dns_names = {"example.com", "www.example.com"}});
    api_ = pki_->issue("api", {.dns_names = {"api.example.com"}});
    wildcard_ = pki_->issue("wildcard", {.dns_names = {"*.example.org"}});
  }
  static void TearDownTestSuite() {
    delete pki_;
    pki_ = nullptr;
  }

  static CertificateConfig cert(const TestPki::Leaf& leaf) {
    return CertificateConfig{leaf.chain, leaf.key, ""};
  }
  static ServerConfig config(std::vector<CertificateConfig> certs) {
    ServerConfig c;
    c.certificates = std::move(certs);
    return c;
  }
  // The error of loading `c`, or "(loaded)".
  static std::string error_of(const ServerConfig& c) {
    std::vector<std::string> warnings;
    auto r = CertStore::load(c, &warnings);
    return r ? "(loaded)" : r.status().message();
  }

  static TestPki* pki_;
  static TestPki::Leaf www_rsa_, www_ec_, api_, wildcard_;
};

TestPki* CertStoreTest::pki_ = nullptr;
TestPki::Leaf CertStoreTest::www_rsa_, CertStoreTest::www_ec_, CertStoreTest::api_,
    CertStoreTest::wildcard_;

TEST_F(CertStoreTest, GroupsAnRsaAndAnEcdsaCertificateForTheSameNames) {
  std::vector<std::string> warnings;
  auto r = CertStore::load(config({cert(www_rsa_), cert(api_), cert(www_ec_), cert(wildcard_)}),
                           &warnings);
  ASSERT_TRUE(r) << r.status().message();
  const CertStore& store = **r;
  EXPECT_EQ(warnings, std::vector<std::string>{});
  ASSERT_EQ(store.certificates().size(), 4u);
  EXPECT_EQ(store.certificates()[0]->names,
            (std::vector<std::string>{"www.example.com", "example.com"}));
  EXPECT_EQ(store.certificates()[0]->key_type, KeyType::kRsa);
  EXPECT_EQ(store.certificates()[0]->subject, "CN=www.example.com");
  EXPECT_EQ(store.certificates()[0]->chain_file, www_rsa_.chain);
  EXPECT_EQ(store.certificates()[0]->intermediates.size(), 1u);
  EXPECT_EQ(store.certificates()[2]->key_type, KeyType::kEcdsa);
  ASSERT_EQ(store.groups().size(), 3u);
  EXPECT_EQ(store.groups()[0].names, (std::vector<std::string>{"www.example.com", "example.com"}));
  ASSERT_EQ(store.groups()[0].certs.size(), 2u);
  EXPECT_EQ(store.groups()[0].certs[0], store.certificates()[0].get());
  EXPECT_EQ(store.groups()[0].certs[1], store.certificates()[2].get());
  EXPECT_EQ(store.groups()[1].names, std::vector<std::string>{"api.example.com"});
  EXPECT_EQ(store.groups()[2].names, std::vector<std::string>{"*.example.org"});
  EXPECT_EQ(store.files(),
            (std::vector<std::string>{www_rsa_.chain, www_rsa_.key, api_.chain, api_.key,
                                      www_ec_.chain, www_ec_.key, wildcard_.chain, wildcard_.key}));
}

TEST_F(CertStoreTest, SelectsExactNameThenWildcardThenDefault) {
  auto r = CertStore::load(config({cert(www_rsa_), cert(api_), cert(wildcard_)}), nullptr);
  ASSERT_TRUE(r) << r.status().message();
  const CertStore& s = **r;
  const CertGroup* www = &s.groups()[0];
  const CertGroup* api = &s.groups()[1];
  const CertGroup* wild = &s.groups()[2];
  EXPECT_EQ(s.select("api.example.com", false), api);
  EXPECT_EQ(s.select("API.Example.Com.", true), api);  // case and a final dot ignored
  EXPECT_EQ(s.select("example.com", true), www);
  EXPECT_EQ(s.select("shop.example.org", true), wild);
  EXPECT_EQ(s.select("SHOP.example.org.", true), wild);
  // A wildcard stands for exactly one label.
  EXPECT_EQ(s.select("example.org", true), nullptr);
  EXPECT_EQ(s.select("a.shop.example.org", true), nullptr);
  EXPECT_EQ(s.select("a.shop.example.org", false), www);
  // No name, or an unknown one: the first certificate's group unless SNI is required.
  EXPECT_EQ(s.select("", false), www);
  EXPECT_EQ(s.select("", true), nullptr);
  EXPECT_EQ(s.select("other.test", false), www);
  EXPECT_EQ(s.select("other.test", true), nullptr);
  EXPECT_EQ(s.select(std::string(300, 'a'), false), www);
  EXPECT_EQ(s.select(std::string(300, 'a'), true), nullptr);
}

TEST_F(CertStoreTest, AnExactNameWinsOverAnEarlierWildcard) {
  auto shop = pki_->issue("shop", {.dns_names = {"shop.example.org"}});
  auto r = CertStore::load(config({cert(wildcard_), cert(shop)}), nullptr);
  ASSERT_TRUE(r) << r.status().message();
  EXPECT_EQ((*r)->select("shop.example.org", true), &(*r)->groups()[1]);
  EXPECT_EQ((*r)->select("cart.example.org", true), &(*r)->groups()[0]);
}

TEST_F(CertStoreTest, TwoCertificatesOfOneKeyTypeForTheSameNamesAreAnError) {
  auto again = pki_->issue("www_ec2", {.dns_names = {"www.example.com", "example.com"}});
  EXPECT_EQ(error_of(config({cert(www_ec_), cert(www_rsa_), cert(again)})),
            again.chain + ": serves the same names as " + www_ec_.chain +
                " with the same key type (ECDSA); list at most one RSA and one ECDSA "
                "certificate for a set of names");
}

TEST_F(CertStoreTest, NamesComeFromTheCommonNameWithoutSubjectAltName) {
  auto cn = pki_->issue("cn_only", {.common_name = "Legacy.Example.NET"});
  auto r = CertStore::load(config({cert(cn)}), nullptr);
  ASSERT_TRUE(r) << r.status().message();
  EXPECT_EQ((*r)->certificates()[0]->names, std::vector<std::string>{"legacy.example.net"});
}

TEST_F(CertStoreTest, ACertificateWithoutAnyDnsNameIsAnError) {
  auto none = pki_->issue("no_name", {.common_name = "Sluice Test Leaf"});
  EXPECT_EQ(error_of(config({cert(none)})),
            none.chain +
                ": the certificate (CN=Sluice Test Leaf) names no DNS name (no subjectAltName "
                "DNS entry and no host name as its CN)");
}

TEST_F(CertStoreTest, AKeyThatDoesNotMatchItsCertificateIsAnError) {
  EXPECT_EQ(error_of(config({{www_ec_.chain, api_.key, ""}})),
            api_.key + ": the private key does not match the certificate in " + www_ec_.chain +
                " (CN=example.com)");
}

TEST_F(CertStoreTest, AChainOutOfOrderIsAnError) {
  std::string reversed = pki_->write(
      "reversed.pem", TestPki::read(pki_->intermediate_cert()) + TestPki::read(api_.cert));
  EXPECT_EQ(error_of(config({{reversed, api_.key, ""}})),
            reversed +
                ": the chain is out of order: certificate 1 (CN=Sluice Test Intermediate) is not "
                "issued by certificate 2 (CN=api.example.com); list the leaf first, then each "
                "issuer in turn");
  // The root's key did not sign the leaf, though the names would fit.
  std::string skipped =
      pki_->write("skipped.pem", TestPki::read(api_.cert) + TestPki::read(pki_->root_cert()));
  EXPECT_EQ(error_of(config({{skipped, api_.key, ""}})),
            skipped +
                ": the chain is out of order: certificate 1 (CN=api.example.com) is not issued by "
                "certificate 2 (CN=Sluice Test Root); list the leaf first, then each issuer in "
                "turn");
}

TEST_F(CertStoreTest, AnExpiredCertificateIsAnError) {
  auto old = pki_->issue("expired", {.dns_names = {"old.example.com"},
                                     .not_before = "20200101000000Z",
                                     .not_after = "20210101000000Z"});
  EXPECT_EQ(
      error_of(config({cert(old)})),
      old.chain + ": the certificate (CN=old.example.com) expired at 2021-01-01T00:00:00.000Z");
}

TEST_F(CertStoreTest, ACertificateExpiringWithinTwoWeeksLoadsWithAWarning) {
  auto soon = pki_->issue("soon", {.dns_names = {"soon.example.com"}, .days = 3});
  std::vector<std::string> warnings;
  auto r = CertStore::load(config({cert(soon), cert(api_)}), &warnings);
  ASSERT_TRUE(r) << r.status().message();
  std::string at = log::format_time((*r)->certificates()[0]->not_after);
  EXPECT_EQ(warnings, std::vector<std::string>{soon.chain +
                                               ": the certificate (CN=soon.example.com) "
                                               "expires at " +
                                               at + ", in less than 14 days"});
  auto left = (*r)->certificates()[0]->not_after - system_clock::now();
  EXPECT_GT(left, std::chrono::hours(71));
  EXPECT_LE(left, std::chrono::hours(72));
}

TEST_F(CertStoreTest, ACertificateNotYetValidLoadsWithAWarning) {
  auto later = pki_->issue("later", {.dns_names = {"later.example.com"},
                                     .not_before = "20990101000000Z",
                                     .not_after = "21000101000000Z"});
  std::vector<std::string> warnings;
  auto r = CertStore::load(config({cert(later)}), &warnings);
  ASSERT_TRUE(r) << r.status().message();
  EXPECT_EQ(warnings, std::vector<std::string>{later.chain +
                                               ": the certificate (CN=later.example.com) is not "
                                               "valid before 2099-01-01T00:00:00.000Z"});
}

TEST_F(CertStoreTest, UnreadableFilesAreErrorsNamingTheFile) {
  std::string missing = pki_->dir() + "/missing.pem";
  EXPECT_EQ(error_of(config({{missing, api_.key, ""}})),
            missing + ": cannot read: No such file or directory");
  std::string empty = pki_->write("empty.pem", "");
  EXPECT_EQ(error_of(config({{empty, api_.key, ""}})), empty + ": the file is empty");
  std::string junk = pki_->write("junk.pem", "not a certificate\n");
  EXPECT_EQ(error_of(config({{junk, api_.key, ""}})), junk + ": no PEM certificate found");
  EXPECT_EQ(error_of(config({{api_.chain, junk, ""}})),
            junk + ": no PEM private key found (an encrypted key is not supported)");
  EXPECT_EQ(error_of(config({{pki_->dir(), api_.key, ""}})), pki_->dir() + ": not a regular file");
  EXPECT_EQ(error_of(config({{"/dev/zero", api_.key, ""}})), "/dev/zero: not a regular file");
  std::string huge = pki_->write("huge.pem", std::string((1 << 20) + 1, 'x'));
  EXPECT_EQ(error_of(config({{huge, api_.key, ""}})),
            huge + ": 1048577 bytes is too large (at most 1048576)");
  std::string broken = pki_->write("broken.pem", TestPki::read(api_.chain) +
                                                     "-----BEGIN CERTIFICATE-----\nAAAA\n"
                                                     "-----END CERTIFICATE-----\n");
  EXPECT_EQ(error_of(config({{broken, api_.key, ""}})),
            broken +
                ": certificate 3 is not a valid PEM certificate (wrong tag; nested asn1 error; "
                "ASN1 lib)");
  // Every certificate's error, one per line.
  EXPECT_EQ(error_of(config({{empty, api_.key, ""}, cert(www_ec_), {junk, api_.key, ""}})),
            empty + ": the file is empty\n" + junk + ": no PEM certificate found");
}

TEST_F(CertStoreTest, AnEncryptedKeyIsRefusedWithoutPrompting) {
  pki_->run("/usr/bin/openssl pkey -in api.key -aes256 -passout pass:secret -out api.enc.key");
  std::string key = pki_->dir() + "/api.enc.key";
  EXPECT_EQ(error_of(config({{api_.chain, key, ""}})),
            key + ": no PEM private key found (an encrypted key is not supported)");
}

TEST_F(CertStoreTest, AGoodOcspResponseIsStapled) {
  auto leaf = pki_->issue("stapled", {.dns_names = {"stapled.example.com"}});
  std::string der = pki_->ocsp_response("stapled_good", leaf);
  std::vector<std::string> warnings;
  auto r = CertStore::load(config({{leaf.chain, leaf.key, der}}), &warnings);
  ASSERT_TRUE(r) << r.status().message();
  EXPECT_EQ(warnings, std::vector<std::string>{});
  EXPECT_EQ((*r)->certificates()[0]->ocsp_der, TestPki::read(der));
  EXPECT_EQ((*r)->files(), (std::vector<std::string>{leaf.chain, leaf.key, der}));
}

TEST_F(CertStoreTest, AStaleOcspResponseIsAWarningAndNotStapled) {
  auto leaf = pki_->issue("stale", {.dns_names = {"stale.example.com"}});
  std::string der = pki_->ocsp_response("stale", leaf, /*next_update_days=*/1);
  std::vector<std::string> warnings;
  auto in_two_days = system_clock::now() + std::chrono::hours(48);
  auto r = CertStore::load(config({{leaf.chain, leaf.key, der}}), &warnings, in_two_days);
  ASSERT_TRUE(r) << r.status().message();
  EXPECT_EQ((*r)->certificates()[0]->ocsp_der, "");
  X509* issuer = (*r)->certificates()[0]->intermediates[0].get();
  auto now = check_ocsp_response(TestPki::read(der), (*r)->certificates()[0]->leaf.get(), issuer,
                                 system_clock::now());
  ASSERT_TRUE(now) << now.status().message();
  EXPECT_EQ(warnings, std::vector<std::string>{der +
                                               ": OCSP response not stapled: it is stale: its "
                                               "nextUpdate " +
                                               log::format_time(now->next_update) + " has passed"});
}

TEST_F(CertStoreTest, AnOcspResponseStaleNowIsAWarningAndNotStapled) {
  auto leaf = pki_->issue("stale_now", {.dns_names = {"stale-now.example.com"}});
  std::string der = pki_->stale_ocsp_response("stale_now", leaf);
  std::vector<std::string> warnings;
  auto r = CertStore::load(config({{leaf.chain, leaf.key, der}}), &warnings);
  ASSERT_TRUE(r) << r.status().message();
  EXPECT_EQ((*r)->certificates()[0]->ocsp_der, "");
  // Its nextUpdate, as the check sees it a day and a half earlier.
  auto earlier = check_ocsp_response(TestPki::read(der), (*r)->certificates()[0]->leaf.get(),
                                     (*r)->certificates()[0]->intermediates[0].get(),
                                     system_clock::now() - std::chrono::hours(36));
  ASSERT_TRUE(earlier) << earlier.status().message();
  EXPECT_EQ(earlier->next_update - earlier->this_update, std::chrono::hours(24));
  EXPECT_EQ(warnings,
            std::vector<std::string>{der +
                                     ": OCSP response not stapled: it is stale: its "
                                     "nextUpdate " +
                                     log::format_time(earlier->next_update) + " has passed"});
}

TEST_F(CertStoreTest, AnOcspResponseFromAnotherSignerIsAWarningAndNotStapled) {
  auto leaf = pki_->issue("forged", {.dns_names = {"forged.example.com"}});
  std::string der = pki_->ocsp_response("forged", leaf, 1, TestPki::Signer::kOtherCa);
  std::vector<std::string> warnings;
  auto r = CertStore::load(config({{leaf.chain, leaf.key, der}}), &warnings);
  ASSERT_TRUE(r) << r.status().message();
  EXPECT_EQ((*r)->certificates()[0]->ocsp_der, "");
  EXPECT_EQ(warnings, std::vector<std::string>{
                          der + ": OCSP response not stapled: its signature does not verify "
                                "against the issuer CN=Sluice Test Intermediate (certificate "
                                "verify error)"});
}

TEST_F(CertStoreTest, AnOcspResponseForAnotherCertificateOrUnreadableIsAWarning) {
  std::string other = pki_->ocsp_response("for_api", api_);
  std::string missing = pki_->dir() + "/missing.der";
  std::vector<std::string> warnings;
  auto r = CertStore::load(
      config({{www_ec_.chain, www_ec_.key, other}, {wildcard_.chain, wildcard_.key, missing}}),
      &warnings);
  ASSERT_TRUE(r) << r.status().message();
  EXPECT_EQ((*r)->certificates()[0]->ocsp_der, "");
  EXPECT_EQ(
      warnings,
      (std::vector<std::string>{
          other + ": OCSP response not stapled: it has no status for this certificate "
                  "(CN=example.com)",
          "OCSP response not stapled: " + missing + ": cannot read: No such file or directory"}));
}

TEST(NameMatches, OneLabelInPlaceOfTheStar) {
  EXPECT_TRUE(name_matches("a.example.com", "a.example.com"));
  EXPECT_FALSE(name_matches("a.example.com", "b.example.com"));
  EXPECT_TRUE(name_matches("*.example.com", "a.example.com"));
  EXPECT_TRUE(name_matches("*.example.com", "*.example.com"));
  EXPECT_FALSE(name_matches("*.example.com", "example.com"));
  EXPECT_FALSE(name_matches("*.example.com", ".example.com"));
  EXPECT_FALSE(name_matches("*.example.com", "a.b.example.com"));
  EXPECT_FALSE(name_matches("*.example.com", "aexample.com"));
  EXPECT_FALSE(name_matches("a*.example.com", "ab.example.com"));
}

TEST_F(CertStoreTest, CaFilesMustHoldCaCertificates) {
  EXPECT_TRUE(check_ca_file(pki_->root_cert()));
  std::string both = pki_->write(
      "cas.pem", TestPki::read(pki_->root_cert()) + TestPki::read(pki_->intermediate_cert()));
  EXPECT_TRUE(check_ca_file(both));
  Status leaf = check_ca_file(api_.chain);
  ASSERT_FALSE(leaf);
  EXPECT_EQ(leaf.message(), api_.chain +
                                ": certificate 1 (CN=api.example.com) is not a CA certificate (no "
                                "basicConstraints CA:TRUE)");
  std::string junk = pki_->write("junk_ca.pem", "-----BEGIN CERTIFICATE-----\nAAAA\n");
  Status bad = check_ca_file(junk);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.message(), junk + ": no PEM certificate found");
}

}  // namespace
}  // namespace sluice::tls
