#include "proxy/tls_info.h"

#include <gtest/gtest.h>

namespace sluice::proxy {
namespace {

tls::PeerIdentity identity() {
  tls::PeerIdentity id;
  id.present = true;
  id.verified = true;
  id.subject = "CN=web,O=example";
  id.sha256 = "ab12";
  return id;
}

TEST(ClientCertHeader, Format) {
  struct Case {
    const char* name;
    std::vector<std::string> uris, dns;
    const char* want;
  };
  const Case cases[] = {
      {"subject only", {}, {}, "Hash=ab12;Subject=\"CN=web,O=example\""},
      {"URI and DNS",
       {"spiffe://example.org/ns/a/sa/b"},
       {"web.example.org", "alt.example.org"},
       "Hash=ab12;Subject=\"CN=web,O=example\";URI=spiffe://example.org/ns/a/sa/b;"
       "DNS=web.example.org;DNS=alt.example.org"},
      {"separators are quoted",
       {"urn:a;b=c"},
       {},
       "Hash=ab12;Subject=\"CN=web,O=example\";URI=\"urn:a;b=c\""},
      {"a value with a line break is left out",
       {"spiffe://x/y\r\nX-Injected: yes", "spiffe://x/ok"},
       {"a\tb"},
       "Hash=ab12;Subject=\"CN=web,O=example\";URI=spiffe://x/ok"},
  };
  for (const Case& c : cases) {
    tls::PeerIdentity id = identity();
    id.uris = c.uris;
    id.dns = c.dns;
    EXPECT_EQ(client_cert_header(id), c.want) << c.name;
  }
}

TEST(ClientCertHeader, OnlyVerifiedCertificates) {
  tls::PeerIdentity id = identity();
  id.verified = false;
  EXPECT_EQ(client_cert_header(id), "");
  EXPECT_EQ(client_cert_header(tls::PeerIdentity{}), "");
  id = identity();
  id.subject = "CN=a\"b";
  EXPECT_EQ(client_cert_header(id), "Hash=ab12;Subject=\"CN=a\\\"b\"");
}

}  // namespace
}  // namespace sluice::proxy
