#include "tls/ocsp.h"

#include <gtest/gtest.h>

#include <string>

#include "base/log.h"
#include "tls/cert_store.h"
#include "tls/test_pki.h"

namespace sluice::tls {
namespace {

using std::chrono::hours;
using std::chrono::minutes;
using std::chrono::system_clock;
using testing::TestPki;

class OcspTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    pki_ = new TestPki();
    leaf_ = pki_->issue("leaf", {.dns_names = {"leaf.example.com"}});
    other_leaf_ = pki_->issue("other_leaf", {.dns_names = {"other.example.com"}});
    good_ = TestPki::read(pki_->ocsp_response("good", leaf_, /*next_update_days=*/1));
  }
  static void TearDownTestSuite() {
    delete pki_;
    pki_ = nullptr;
  }
  void SetUp() override {
    leaf_cert_ = load(leaf_.cert);
    other_cert_ = load(other_leaf_.cert);
    issuer_ = load(pki_->intermediate_cert());
    root_ = load(pki_->root_cert());
  }
  static X509Ptr load(const std::string& file) {
    auto certs = read_pem_certificates(file);
    EXPECT_TRUE(certs) << certs.status().message();
    return std::move((*certs)[0]);
  }
  std::string error_of(const std::string& der, system_clock::time_point now) {
    auto r = check_ocsp_response(der, leaf_cert_.get(), issuer_.get(), now);
    return r ? "(good)" : r.status().message();
  }

  static TestPki* pki_;
  static TestPki::Leaf leaf_, other_leaf_;
  static std::string good_;
  X509Ptr leaf_cert_, other_cert_, issuer_, root_;
};

TestPki* OcspTest::pki_ = nullptr;
TestPki::Leaf OcspTest::leaf_, OcspTest::other_leaf_;
std::string OcspTest::good_;

TEST_F(OcspTest, AGoodResponseSignedByTheIssuerIsAccepted) {
  auto r = check_ocsp_response(good_, leaf_cert_.get(), issuer_.get(), system_clock::now());
  ASSERT_TRUE(r) << r.status().message();
  EXPECT_EQ(r->next_update - r->this_update, hours(24));
  EXPECT_LE(r->this_update, system_clock::now());
  EXPECT_GT(r->this_update, system_clock::now() - hours(1));
}

TEST_F(OcspTest, AResponseFromAResponderTheIssuerDelegatedToIsAccepted) {
  std::string der =
      TestPki::read(pki_->ocsp_response("delegated", leaf_, 1, TestPki::Signer::kDelegated));
  EXPECT_EQ(error_of(der, system_clock::now()), "(good)");
}

TEST_F(OcspTest, AResponseSignedByAnUnrelatedCaIsRefused) {
  std::string der =
      TestPki::read(pki_->ocsp_response("forged", leaf_, 1, TestPki::Signer::kOtherCa));
  EXPECT_EQ(error_of(der, system_clock::now()),
            "its signature does not verify against the issuer CN=Sluice Test Intermediate "
            "(certificate verify error)");
}

TEST_F(OcspTest, AResponseCheckedAgainstTheWrongIssuerIsRefused) {
  // The root signed the intermediate, not the leaf: the response, about the leaf as the
  // intermediate issued it, says nothing of a leaf the root would have issued.
  auto r = check_ocsp_response(good_, leaf_cert_.get(), root_.get(), system_clock::now());
  ASSERT_FALSE(r);
  EXPECT_EQ(r.status().message(), "it has no status for this certificate (CN=leaf.example.com)");
}

TEST_F(OcspTest, AResponseForAnotherCertificateIsRefused) {
  auto r = check_ocsp_response(good_, other_cert_.get(), issuer_.get(), system_clock::now());
  ASSERT_FALSE(r);
  EXPECT_EQ(r.status().message(), "it has no status for this certificate (CN=other.example.com)");
}

TEST_F(OcspTest, StaleAndFutureResponsesAreRefused) {
  auto r = check_ocsp_response(good_, leaf_cert_.get(), issuer_.get(), system_clock::now());
  ASSERT_TRUE(r) << r.status().message();
  EXPECT_EQ(error_of(good_, r->next_update),
            "it is stale: its nextUpdate " + log::format_time(r->next_update) + " has passed");
  EXPECT_EQ(error_of(good_, r->next_update - std::chrono::seconds(1)), "(good)");
  // Five minutes of clock difference are tolerated.
  EXPECT_EQ(error_of(good_, r->this_update - minutes(5)), "(good)");
  EXPECT_EQ(error_of(good_, r->this_update - minutes(5) - std::chrono::seconds(1)),
            "its thisUpdate " + log::format_time(r->this_update) + " is in the future");
}

TEST_F(OcspTest, AResponseWithoutNextUpdateIsRefused) {
  std::string der = TestPki::read(pki_->ocsp_response("no_next", leaf_, 0));
  EXPECT_EQ(error_of(der, system_clock::now()),
            "it has no nextUpdate, so nothing says until when it holds");
}

TEST_F(OcspTest, ARevokedCertificateIsRefused) {
  auto revoked = pki_->issue("revoked", {.dns_names = {"revoked.example.com"}});
  pki_->run(
      "cd intermediate.db && /usr/bin/openssl ca -config ca.cnf -cert ../intermediate.pem "
      "-keyfile ../intermediate.key -revoke ../revoked.pem");
  std::string der = TestPki::read(pki_->ocsp_response("revoked", revoked));
  X509Ptr cert = load(revoked.cert);
  auto r = check_ocsp_response(der, cert.get(), issuer_.get(), system_clock::now());
  ASSERT_FALSE(r);
  EXPECT_EQ(r.status().message(), "the certificate's status is revoked, not good");
}

TEST_F(OcspTest, MalformedAndUnsuccessfulResponsesAreRefused) {
  EXPECT_EQ(error_of("", system_clock::now()), "not a DER-encoded OCSP response");
  EXPECT_EQ(error_of("not der at all", system_clock::now()), "not a DER-encoded OCSP response");
  EXPECT_EQ(error_of(good_.substr(0, good_.size() - 1), system_clock::now()),
            "not a DER-encoded OCSP response");
  EXPECT_EQ(error_of(good_ + "x", system_clock::now()), "not a DER-encoded OCSP response");
  // OCSPResponse { responseStatus tryLater(3) } without a body (RFC 6960 §4.2.1).
  EXPECT_EQ(error_of(std::string("\x30\x03\x0a\x01\x03", 5), system_clock::now()),
            "the responder answered 'trylater', not successful");
}

}  // namespace
}  // namespace sluice::tls
