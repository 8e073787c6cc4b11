// libs/tsa: what anchord sends, what it accepts, and what it refuses, judged also by the OpenSSL
// command line (`openssl ts -verify`), which nobody here wrote.
#include "libs/tsa/tsa.h"

#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "libs/digest/sha256.h"
#include "libs/common/hex.h"
#include "libs/merkle/merkle.h"
#include "libs/tsa/authority.h"
#include "libs/tsa/path_form.h"
#include "tests/testing/temp_dir.h"

namespace anchord::tsa {
namespace {

Digest Sha256(const std::string& data) { return digest::Sha256::Of(data); }

void WriteFile(const std::string& path, const std::string& data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
}

// Exit status of a shell command (its output goes to `log`).
int Shell(const std::string& cmd, const std::string& log) {
  int st = std::system(absl::StrCat(cmd, " >", log, " 2>&1").c_str());
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

class TsaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto a = Authority::Generate({});
    ASSERT_TRUE(a.ok()) << a.status();
    authority_ = *std::move(a);
    digest_ = Sha256("the evidence");
    auto req = BuildRequest(digest_);
    ASSERT_TRUE(req.ok()) << req.status();
    request_ = *req;
    auto resp = authority_->Respond(request_.der, absl::Now(), 4242);
    ASSERT_TRUE(resp.ok()) << resp.status();
    tsr_ = *resp;
  }

  VerifyOptions Options() const {
    VerifyOptions o;
    o.expected_digest = digest_;
    o.expected_nonce_hex = request_.nonce_hex;
    o.now = absl::Now();
    return o;
  }
  Trust TrustOf() const { return Trust{authority_->ca_pem(), ""}; }

  std::unique_ptr<Authority> authority_;
  Digest digest_;
  TsaRequest request_;
  std::string tsr_;
};

TEST_F(TsaTest, RequestIsSha256WithNonceAndCertReq) {
  auto parsed = ParseRequest(request_.der);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->imprint, digest_.raw());
  EXPECT_EQ(parsed->nonce_hex, request_.nonce_hex);
  EXPECT_FALSE(request_.nonce_hex.empty());
  EXPECT_TRUE(parsed->cert_req);
  // Two requests for the same digest carry different nonces.
  auto again = BuildRequest(digest_);
  ASSERT_TRUE(again.ok());
  EXPECT_NE(again->nonce_hex, request_.nonce_hex);
}

TEST_F(TsaTest, GrantedTokenVerifiesAndDescribesItself) {
  auto info = Verify(tsr_, TrustOf(), Options());
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->policy_oid, kSandboxPolicyOid);
  EXPECT_EQ(info->serial_hex, "1092");  // 4242
  EXPECT_EQ(info->imprint, digest_.raw());
  EXPECT_EQ(info->nonce_hex, request_.nonce_hex);
  EXPECT_NE(info->tsa_name.find("anchord sandbox TSA"), std::string::npos) << info->tsa_name;
  EXPECT_LT(absl::AbsDuration(info->gen_time - absl::Now()), absl::Minutes(1));
  const std::string text = RenderInfo(*info);
  EXPECT_NE(text.find("Policy OID:     1.2.3.4.1"), std::string::npos) << text;
  auto certs = TokenCertificatesPem(tsr_);
  ASSERT_TRUE(certs.ok());
  EXPECT_EQ(CountPemCertificates(*certs), 1);
}

TEST_F(TsaTest, OpensslCliAcceptsTheTokenAndRejectsTamperedOnes) {
  testing::TempDir dir("tsa_cli");
  WriteFile(dir.File("ca.pem"), authority_->ca_pem());
  WriteFile(dir.File("good.tsr"), tsr_);
  WriteFile(dir.File("data"), "the evidence");
  const std::string base = absl::StrCat("openssl ts -verify -CAfile ", dir.File("ca.pem"));
  EXPECT_EQ(Shell(absl::StrCat(base, " -in ", dir.File("good.tsr"), " -data ", dir.File("data")),
                  dir.File("log")),
            0)
      << ReadFile(dir.File("log"));
  EXPECT_EQ(Shell(absl::StrCat(base, " -in ", dir.File("good.tsr"), " -digest ", digest_.hex()),
                  dir.File("log")),
            0)
      << ReadFile(dir.File("log"));
  // Another file's data: both judges refuse.
  WriteFile(dir.File("other"), "other evidence");
  EXPECT_NE(Shell(absl::StrCat(base, " -in ", dir.File("good.tsr"), " -data ", dir.File("other")),
                  dir.File("log")),
            0);
  // A flipped byte in the signature (the last bytes of the DER): both refuse.
  std::string bad = tsr_;
  bad[bad.size() - 3] ^= 0x01;
  WriteFile(dir.File("bad.tsr"), bad);
  EXPECT_NE(Shell(absl::StrCat(base, " -in ", dir.File("bad.tsr"), " -data ", dir.File("data")),
                  dir.File("log")),
            0);
  EXPECT_FALSE(Verify(bad, TrustOf(), Options()).ok());
  // Another authority's CA: both refuse.
  auto other = Authority::Generate({});
  ASSERT_TRUE(other.ok());
  WriteFile(dir.File("other_ca.pem"), (*other)->ca_pem());
  EXPECT_NE(Shell(absl::StrCat("openssl ts -verify -CAfile ", dir.File("other_ca.pem"), " -in ",
                               dir.File("good.tsr"), " -data ", dir.File("data")),
                  dir.File("log")),
            0);
  auto v = Verify(tsr_, Trust{(*other)->ca_pem(), ""}, Options());
  ASSERT_FALSE(v.ok());
  EXPECT_NE(v.status().message().find("signature does not verify"), std::string::npos)
      << v.status();
}

TEST_F(TsaTest, VerifyWithoutAnExpectedDigestIsRefused) {
  VerifyOptions o = Options();
  o.expected_digest.reset();
  auto v = Verify(tsr_, TrustOf(), o);
  ASSERT_FALSE(v.ok());
  EXPECT_EQ(v.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(v.status().message(), "expected digest: required");
}

TEST_F(TsaTest, WrongImprintIsRefusedNamingIt) {
  VerifyOptions o = Options();
  o.expected_digest = Sha256("another file");
  auto v = Verify(tsr_, TrustOf(), o);
  ASSERT_FALSE(v.ok());
  EXPECT_TRUE(absl::IsFailedPrecondition(v.status()));
  EXPECT_NE(v.status().message().find("imprint"), std::string::npos) << v.status();
}

TEST_F(TsaTest, WrongNonceIsRefusedNamingIt) {
  VerifyOptions o = Options();
  o.expected_nonce_hex = "1234";
  auto v = Verify(tsr_, TrustOf(), o);
  ASSERT_FALSE(v.ok());
  EXPECT_NE(v.status().message().find("nonce"), std::string::npos) << v.status();
}

TEST_F(TsaTest, TimeOutsideTheWindowIsRefused) {
  VerifyOptions o = Options();
  o.now = absl::Now() - absl::Hours(2);  // the token looks two hours in the future
  auto v = Verify(tsr_, TrustOf(), o);
  ASSERT_FALSE(v.ok());
  EXPECT_NE(v.status().message().find("future"), std::string::npos) << v.status();
  o.now = absl::Now() + absl::Hours(2);
  v = Verify(tsr_, TrustOf(), o);
  ASSERT_FALSE(v.ok());
  EXPECT_NE(v.status().message().find("too old"), std::string::npos) << v.status();
}

TEST_F(TsaTest, ExpiredSignerCertificateIsRefused) {
  AuthorityOptions ao;
  ao.tsa_not_before = -absl::Hours(48);
  ao.tsa_not_after = -absl::Hours(24);
  auto expired = Authority::Generate(ao);
  ASSERT_TRUE(expired.ok()) << expired.status();
  auto resp = (*expired)->Respond(request_.der, absl::Now(), 7);
  ASSERT_TRUE(resp.ok()) << resp.status();
  auto v = Verify(*resp, Trust{(*expired)->ca_pem(), ""}, Options());
  ASSERT_FALSE(v.ok());
  EXPECT_NE(v.status().message().find("expired"), std::string::npos) << v.status();
}

TEST_F(TsaTest, SignerWithoutTimestampingEkuIsRefused) {
  auto twin = authority_->IssueTwinWithoutTimestampingEku();
  ASSERT_TRUE(twin.ok()) << twin.status();
  auto swapped = ReplaceTokenCertificates(tsr_, *twin);
  ASSERT_TRUE(swapped.ok()) << swapped.status();
  auto v = Verify(*swapped, TrustOf(), Options());
  ASSERT_FALSE(v.ok());
  EXPECT_NE(v.status().message().find("timeStamping"), std::string::npos) << v.status();
  // And the OpenSSL command line agrees.
  testing::TempDir dir("tsa_eku");
  WriteFile(dir.File("ca.pem"), authority_->ca_pem());
  WriteFile(dir.File("eku.tsr"), *swapped);
  EXPECT_NE(Shell(absl::StrCat("openssl ts -verify -CAfile ", dir.File("ca.pem"), " -in ",
                               dir.File("eku.tsr"), " -digest ", digest_.hex()),
                  dir.File("log")),
            0);
}

TEST_F(TsaTest, EveryTruncationAndByteFlipFailsCleanly) {
  for (size_t n = 0; n < tsr_.size(); ++n) {
    auto v = Verify(tsr_.substr(0, n), TrustOf(), Options());
    EXPECT_FALSE(v.ok()) << "prefix of " << n << " bytes verified";
    (void)Inspect(tsr_.substr(0, n));
  }
  int accepted = 0;
  for (size_t i = 0; i < tsr_.size(); ++i) {
    std::string flipped = tsr_;
    flipped[i] ^= 0x5a;
    if (Verify(flipped, TrustOf(), Options()).ok()) ++accepted;
  }
  // A flip inside an unsigned, unchecked field (e.g. an unused certificate bit) could survive;
  // anything signed or checked may not. Most flips must fail.
  EXPECT_LT(accepted, static_cast<int>(tsr_.size() / 20)) << accepted << " flips accepted";
}

TEST_F(TsaTest, HugeAndGarbageInputIsRefusedNamingTheProblem) {
  std::string huge(kMaxTsrBytes + 1, '\x30');
  auto v = Inspect(huge);
  ASSERT_FALSE(v.ok());
  EXPECT_NE(v.status().message().find("more than"), std::string::npos) << v.status();
  // A DER header declaring 2 GB of content.
  std::string liar = std::string("\x30\x84\x7f\xff\xff\xff", 6) + std::string(100, '\0');
  EXPECT_FALSE(Inspect(liar).ok());
  EXPECT_FALSE(Inspect("").ok());
  EXPECT_FALSE(Inspect("not DER at all").ok());
  EXPECT_FALSE(Inspect(tsr_ + "x").ok()) << "trailing bytes must be refused";
  EXPECT_FALSE(Verify(tsr_, Trust{"no pem here", ""}, Options()).ok());
}

TEST_F(TsaTest, RejectionIsNotGrantedAndSaysWhy) {
  // A SHA-1 request: the authority only accepts SHA-256, so it answers with a rejection.
  testing::TempDir dir("tsa_rej");
  ASSERT_EQ(Shell(absl::StrCat("openssl ts -query -sha1 -digest ", std::string(40, 'a'),
                               " -no_nonce -out ", dir.File("q.tsq")),
                  dir.File("log")),
            0)
      << ReadFile(dir.File("log"));
  auto resp = authority_->Respond(ReadFile(dir.File("q.tsq")), absl::Now(), 1);
  ASSERT_TRUE(resp.ok()) << resp.status();
  auto info = Inspect(*resp);
  ASSERT_FALSE(info.ok());
  EXPECT_TRUE(absl::IsFailedPrecondition(info.status()));
  EXPECT_NE(info.status().message().find("not granted"), std::string::npos) << info.status();
  EXPECT_NE(info.status().message().find("badAlg"), std::string::npos) << info.status();
  // The sandbox's request parser refuses it too, naming the algorithm.
  auto parsed = ParseRequest(ReadFile(dir.File("q.tsq")));
  ASSERT_FALSE(parsed.ok());
  EXPECT_NE(parsed.status().message().find("SHA-256"), std::string::npos);
}

TEST_F(TsaTest, MerklePathFormCarriesPathAndRootToken) {
  std::vector<Digest> digests;
  std::vector<std::string> nonces;
  for (int i = 0; i < 5; ++i) {
    digests.push_back(Sha256(absl::StrCat("file ", i)));
    nonces.push_back(std::string(merkle::kNonceSize, static_cast<char>('a' + i)));
  }
  auto tree = merkle::Tree::Build(digests, nonces);
  ASSERT_TRUE(tree.ok()) << tree.status();
  auto req = BuildRequest(tree->root());
  ASSERT_TRUE(req.ok());
  auto root_tsr = authority_->Respond(req->der, absl::Now(), 9);
  ASSERT_TRUE(root_tsr.ok());
  auto form = EncodePathForm(digests[3], tree->PathBytes(3), *root_tsr);
  ASSERT_TRUE(form.ok()) << form.status();
  ASSERT_TRUE(IsPathForm(*form));
  auto decoded = DecodePathForm(*form);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(decoded->digest, digests[3]);
  EXPECT_EQ(decoded->root, tree->root());
  VerifyOptions o;
  o.expected_digest = decoded->root;
  EXPECT_TRUE(Verify(decoded->tsr, TrustOf(), o).ok());
  // Another file's path does not lead to the root.
  EXPECT_FALSE(EncodePathForm(digests[2], std::string(), *root_tsr).ok());
  auto wrong = EncodePathForm(digests[2], tree->PathBytes(3), *root_tsr);
  ASSERT_TRUE(wrong.ok());
  auto wrong_decoded = DecodePathForm(*wrong);
  ASSERT_TRUE(wrong_decoded.ok());
  EXPECT_NE(wrong_decoded->root, tree->root());
  // Truncations never crash and never decode.
  for (size_t n = 0; n < form->size(); ++n)
    EXPECT_FALSE(DecodePathForm(form->substr(0, n)).ok()) << n;
  EXPECT_FALSE(DecodePathForm(*form + "x").ok());
}

}  // namespace
}  // namespace anchord::tsa
