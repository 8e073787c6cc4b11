// anchorctl's proof check (services/anchorctl/proof_check.h) on RFC 3161 tokens in the Merkle-path
// form: every leaf of a batch carries its root's token, and a process remembers each token's
// check, so the tests here hold that what is remembered never answers for different bytes,
// another digest or other trust anchors.
#include "services/anchorctl/proof_check.h"

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "libs/digest/sha256.h"
#include "libs/merkle/merkle.h"
#include "libs/tsa/authority.h"
#include "libs/tsa/path_form.h"

namespace anchord::anchorctl {
namespace {

Digest Sha256(const std::string& data) { return digest::Sha256::Of(data); }

TEST(ProofCheckTest, ARootsTokenIsRememberedOnlyForTheSameBytesDigestAndTrust) {
  auto authority = tsa::Authority::Generate({});
  ASSERT_TRUE(authority.ok()) << authority.status();
  auto other = tsa::Authority::Generate({});
  ASSERT_TRUE(other.ok()) << other.status();
  std::vector<Digest> digests;
  std::vector<std::string> nonces;
  for (int i = 0; i < 6; ++i) {
    digests.push_back(Sha256(absl::StrCat("leaf ", i)));
    nonces.push_back(std::string(merkle::kNonceSize, static_cast<char>('k' + i)));
  }
  auto tree = merkle::Tree::Build(digests, nonces);
  ASSERT_TRUE(tree.ok()) << tree.status();
  auto req = tsa::BuildRequest(tree->root());
  ASSERT_TRUE(req.ok()) << req.status();
  auto root_tsr = (*authority)->Respond(req->der, absl::Now(), 77);
  ASSERT_TRUE(root_tsr.ok()) << root_tsr.status();
  const std::string ca = (*authority)->ca_pem();

  // Each leaf through the same token: all verified, each naming the root.
  std::vector<std::string> forms;
  for (size_t i = 0; i < digests.size(); ++i) {
    auto form = tsa::EncodePathForm(digests[i], tree->PathBytes(i), *root_tsr);
    ASSERT_TRUE(form.ok()) << form.status();
    forms.push_back(*form);
    TsaCheck c = CheckTsaProof(*form, digests[i], ca);
    EXPECT_EQ(c.exit, 0) << i << ": " << c.message;
    EXPECT_EQ(c.root_hex, tree->root().hex());
  }
  // A token with one byte of its signature changed, after the good one was remembered.
  std::string bad_tsr = *root_tsr;
  bad_tsr[bad_tsr.size() - 5] ^= 0x01;
  auto bad = tsa::EncodePathForm(digests[2], tree->PathBytes(2), bad_tsr);
  ASSERT_TRUE(bad.ok()) << bad.status();
  TsaCheck c = CheckTsaProof(*bad, digests[2], ca);
  EXPECT_NE(c.exit, 0) << c.message;
  // The right proof for another file.
  c = CheckTsaProof(forms[1], digests[4], ca);
  EXPECT_EQ(c.exit, 3) << c.message;
  EXPECT_NE(c.message.find("another file"), std::string::npos) << c.message;
  // The right proof against another authority's certificate.
  c = CheckTsaProof(forms[3], digests[3], (*other)->ca_pem());
  EXPECT_EQ(c.exit, 3) << c.message;
  // No trust anchors: matched, not checked.
  EXPECT_EQ(CheckTsaProof(forms[3], digests[3], "").exit, 1);
  // And the good proofs are still good.
  EXPECT_EQ(CheckTsaProof(forms[3], digests[3], ca).exit, 0);
  // A token over the file itself (not a Merkle path) is checked and remembered apart.
  auto file_req = tsa::BuildRequest(digests[5]);
  ASSERT_TRUE(file_req.ok());
  auto file_tsr = (*authority)->Respond(file_req->der, absl::Now(), 78);
  ASSERT_TRUE(file_tsr.ok());
  c = CheckTsaProof(*file_tsr, digests[5], ca);
  EXPECT_EQ(c.exit, 0) << c.message;
  EXPECT_TRUE(c.root_hex.empty());
  c = CheckTsaProof(*file_tsr, digests[4], ca);
  EXPECT_EQ(c.exit, 3) << c.message;
  EXPECT_NE(c.message.find("other data"), std::string::npos) << c.message;
}

}  // namespace
}  // namespace anchord::anchorctl
