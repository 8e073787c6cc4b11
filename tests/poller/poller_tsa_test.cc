// The poller's side of RFC 3161 proofs: evidence checks accept a granted .tsr for the digest and
// refuse one for another digest, a rejection, a truncation or garbage; a Merkle leaf whose root
// carries a token gets the Merkle-path form, which leads from the leaf to the token's imprint.
#include <openssl/evp.h>

#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "libs/merkle/merkle.h"
#include "libs/tsa/authority.h"
#include "libs/tsa/path_form.h"
#include "libs/tsa/tsa.h"
#include "services/poller/ots_check.h"

namespace anchord::poller {
namespace {

std::string Sha256(const std::string& data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr);
  return std::string(reinterpret_cast<char*>(md), len);
}

TEST(PollerTsaEvidence, GrantedTokenForTheDigestOnly) {
  auto authority = tsa::Authority::Generate({});
  ASSERT_TRUE(authority.ok());
  const std::string digest = Sha256("a file");
  const anchord::Digest file = *anchord::Digest::FromBytes(digest);
  auto req = tsa::BuildRequest(file);
  ASSERT_TRUE(req.ok());
  auto tsr = (*authority)->Respond(req->der, absl::Now(), 1);
  ASSERT_TRUE(tsr.ok());
  EXPECT_TRUE(CheckEvidence(*tsr, file).ok());
  absl::Status other = CheckEvidence(*tsr, *anchord::Digest::FromBytes(Sha256("another file")));
  EXPECT_TRUE(absl::IsDataLoss(other)) << other;
  EXPECT_NE(other.message().find("different digest"), std::string::npos) << other;
  EXPECT_FALSE(CheckEvidence(tsr->substr(0, tsr->size() / 2), file).ok());
  EXPECT_FALSE(CheckEvidence(std::string("\x30\x03garbage"), file).ok());
  EXPECT_FALSE(CheckEvidence(std::string(70000, '\x30'), file).ok());
  EXPECT_FALSE(CheckEvidence("", file).ok());
}

TEST(PollerTsaEvidence, PathFormOfALeafLeadsToTheRootToken) {
  auto authority = tsa::Authority::Generate({});
  ASSERT_TRUE(authority.ok());
  std::vector<std::string> digests = {Sha256("a"), Sha256("b"), Sha256("c")};
  auto tree =
      merkle::Tree::BuildFlat(digests[0] + digests[1] + digests[2], merkle::RandomNonces(3));
  ASSERT_TRUE(tree.ok()) << tree.status();
  auto req = tsa::BuildRequest(tree->root());
  ASSERT_TRUE(req.ok());
  auto root_tsr = (*authority)->Respond(req->der, absl::Now(), 2);
  ASSERT_TRUE(root_tsr.ok());
  // The root's evidence is a token over the root: accepted for the root, not for a leaf.
  EXPECT_TRUE(CheckEvidence(*root_tsr, tree->root()).ok());
  EXPECT_FALSE(CheckEvidence(*root_tsr, *anchord::Digest::FromBytes(digests[1])).ok());
  auto form =
      tsa::EncodePathForm(*anchord::Digest::FromBytes(digests[1]), tree->PathBytes(1), *root_tsr);
  ASSERT_TRUE(form.ok()) << form.status();
  auto decoded = tsa::DecodePathForm(*form);
  ASSERT_TRUE(decoded.ok());
  tsa::VerifyOptions vo;
  vo.expected_digest = decoded->root;
  EXPECT_TRUE(tsa::Verify(decoded->tsr, tsa::Trust{(*authority)->ca_pem(), ""}, vo).ok());
}

}  // namespace
}  // namespace anchord::poller
