// Tests of libs/ots against the real OpenTimestamps vectors (tests/data/ots, see
// tests/data/MANIFEST.md) and byte-exact cases of the format (docs/ots-format.md).
#include "libs/ots/ots.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace anchord::ots {
namespace {

using ::testing::HasSubstr;

std::string VectorsDir() { return ANCHORD_OTS_VECTORS_DIR; }

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string Hex(absl::string_view b) { return absl::BytesToHexString(b); }
std::string Unhex(absl::string_view h) { return absl::HexStringToBytes(h); }

std::string Pend(absl::string_view uri) {
  std::string inner;
  AppendVarbytes(uri, &inner);
  std::string out = "\x83\xdf\xe3\x0d\x2e\xf9\x0c\x8e";
  AppendVarbytes(inner, &out);
  return out;
}

std::string MinimalFile() {
  return absl::StrCat(DetachedMagic(), "\x01\x08",
                      Unhex("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
                      std::string("\x00", 1), Pend("foobar"));
}

TEST(OtsVectors, EveryValidVectorParsesAndCanonicalOnesRoundTrip) {
  int parsed = 0;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(VectorsDir())) {
    const std::string path = entry.path().string();
    if (entry.path().extension() != ".ots" || path.find("/invalid/") != std::string::npos) continue;
    SCOPED_TRACE(path);
    const std::string raw = ReadFile(path);
    ASSERT_FALSE(raw.empty());
    auto file = ParseDetached(raw);
    ASSERT_TRUE(file.ok()) << file.status();
    ++parsed;
    EXPECT_FALSE(file->timestamp->AllAttestations().empty());
    // The stamped original, when present, hashes to the stored digest with the file hash op.
    std::string original = path.substr(0, path.size() - 4);
    if (path.find("a-or-b.ots") != std::string::npos) original = VectorsDir() + "/sha1/a";
    if (std::filesystem::exists(original)) {
      auto digest = FileDigest(file->file_hash_op, ReadFile(original));
      ASSERT_TRUE(digest.ok());
      EXPECT_EQ(Hex(*digest), Hex(file->digest));
    }
    auto again = SerializeDetached(*file);
    ASSERT_TRUE(again.ok()) << again.status();
    if (path.find("ripemd160/README.md.ots") != std::string::npos) {
      // Written by the JS client in a non-canonical branch order (docs/ots-format.md): the
      // canonical re-serialization differs, but must itself be stable.
      EXPECT_NE(*again, raw);
      auto reparsed = ParseDetached(*again);
      ASSERT_TRUE(reparsed.ok());
      EXPECT_EQ(*SerializeDetached(*reparsed), *again);
    } else {
      EXPECT_EQ(Hex(*again), Hex(raw));
    }
  }
  EXPECT_EQ(parsed, 17);
}

TEST(OtsVectors, HelloWorldCommitmentIsBlock358391MerkleRoot) {
  auto file = ParseDetached(ReadFile(VectorsDir() + "/hello-world.txt.ots"));
  ASSERT_TRUE(file.ok()) << file.status();
  auto all = file->timestamp->AllAttestations();
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0].second.kind, Attestation::Kind::kBitcoin);
  EXPECT_EQ(all[0].second.height, 358391u);
  EXPECT_EQ(Hex(all[0].first), "007ee445d23ad061af4a36b809501fab1ac4f2d7e7a739817dd0cbb7ec661b8a");
}

TEST(OtsVectors, UnknownAndEthereumAttestationsAreKept) {
  auto unknown = ParseDetached(ReadFile(VectorsDir() + "/unknown-notary.txt.ots"));
  ASSERT_TRUE(unknown.ok());
  auto all = unknown->timestamp->AllAttestations();
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0].second.kind, Attestation::Kind::kUnknown);
  EXPECT_EQ(Hex(all[0].second.tag), "0102030405060708");
  EXPECT_EQ(all[0].second.payload, std::string(46, 'x'));

  auto diff = ParseDetached(ReadFile(VectorsDir() + "/different-blockchains.txt.ots"));
  ASSERT_TRUE(diff.ok()) << diff.status();
  bool eth = false;
  for (const auto& [msg, a] : diff->timestamp->AllAttestations()) {
    if (a.kind == Attestation::Kind::kEthereum) {
      eth = true;
      EXPECT_EQ(a.height, 3283713u);
      EXPECT_EQ(Hex(msg), "c0909480bbefeca8c607fd169df2f57c7ec95e4c53484f24d73130c428fb208c");
    }
  }
  EXPECT_TRUE(eth);
}

TEST(OtsVectors, InvalidVectorsFailWithTheDocumentedReason) {
  auto bad_version = ParseDetached(ReadFile(VectorsDir() + "/invalid/bad-major-version.ots"));
  ASSERT_FALSE(bad_version.ok());
  EXPECT_THAT(bad_version.status().message(),
              HasSubstr("UnsupportedMajorVersion at byte offset 31"));

  auto too_long = ParseDetached(ReadFile(VectorsDir() + "/invalid/exceeds-max-msg-length.ots"));
  ASSERT_FALSE(too_long.ok());
  EXPECT_THAT(too_long.status().message(), HasSubstr(kReasonMsgValue));
  EXPECT_THAT(too_long.status().message(), HasSubstr("Result too long; 4112 > 4096"));

  auto bad_op = ParseDetached(ReadFile(VectorsDir() + "/invalid/invalid-file-digest-type.ots"));
  ASSERT_FALSE(bad_op.ok());
  EXPECT_THAT(bad_op.status().message(), HasSubstr("UnknownOp at byte offset 32"));
  EXPECT_THAT(bad_op.status().message(), HasSubstr("Unknown unary op tag 0xf3"));
}

TEST(OtsFormat, MinimalFileAndItsBrokenVariants) {
  const std::string minimal = MinimalFile();
  auto file = ParseDetached(minimal);
  ASSERT_TRUE(file.ok()) << file.status();
  auto all = file->timestamp->AllAttestations();
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0].second.kind, Attestation::Kind::kPending);
  EXPECT_EQ(all[0].second.uri, "foobar");
  EXPECT_EQ(*SerializeDetached(*file), minimal);

  auto trailing = ParseDetached(minimal + "x");
  ASSERT_FALSE(trailing.ok());
  EXPECT_THAT(trailing.status().message(),
              HasSubstr(absl::StrCat("TrailingGarbage at byte offset ", minimal.size())));

  std::string v0 = minimal;
  v0[31] = '\x00';
  EXPECT_THAT(ParseDetached(v0).status().message(), HasSubstr(kReasonUnsupportedMajorVersion));

  std::string op42 = minimal;
  op42[32] = '\x42';
  EXPECT_THAT(ParseDetached(op42).status().message(), HasSubstr("UnknownOp at byte offset 32"));

  EXPECT_THAT(ParseDetached("").status().message(), HasSubstr(kReasonBadMagic));
  EXPECT_THAT(ParseDetached(minimal.substr(0, 50)).status().message(),
              HasSubstr(kReasonTruncation));
}

TEST(OtsFormat, CanonicalOrderOfAttestationsAndOps) {
  // docs/ots-format.md: msg "foo", pendings barfoo/foobar/foobaz, sha256 child pending "deeper".
  auto root = std::make_shared<Timestamp>("foo");
  root->AddAttestation(Attestation::Pending("foobaz"));
  root->AddAttestation(Attestation::Pending("barfoo"));
  root->AddAttestation(Attestation::Pending("foobar"));
  auto child = root->AddOp(Op::Sha256());
  ASSERT_TRUE(child.ok());
  (*child)->AddAttestation(Attestation::Pending("deeper"));
  std::string out;
  ASSERT_TRUE(root->Serialize(&out).ok());
  std::string z("\x00", 1);
  const std::string expected = absl::StrCat("\xff", z, Pend("barfoo"), "\xff", z, Pend("foobar"),
                                            "\xff", z, Pend("foobaz"), "\x08", z, Pend("deeper"));
  EXPECT_EQ(Hex(out), Hex(expected));

  // The reader accepts another order and writes the canonical one back.
  const std::string shuffled =
      absl::StrCat("\xff\x08", z, Pend("deeper"), "\xff", z, Pend("foobaz"), "\xff", z,
                   Pend("barfoo"), z, Pend("foobar"));
  size_t pos = 0;
  auto parsed = Timestamp::Parse(shuffled, &pos, "foo");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(pos, shuffled.size());
  std::string rewritten;
  ASSERT_TRUE((*parsed)->Serialize(&rewritten).ok());
  EXPECT_EQ(Hex(rewritten), Hex(expected));
}

TEST(OtsFormat, MessageLengthLimit) {
  const std::string body = absl::StrCat(std::string("\xf0\x01\x00\x00", 4), Pend("x"));
  size_t pos = 0;
  EXPECT_TRUE(Timestamp::Parse(body, &pos, std::string(4095, 'a')).ok());
  pos = 0;
  auto too_long = Timestamp::Parse(body, &pos, std::string(4096, 'a'));
  ASSERT_FALSE(too_long.ok());
  EXPECT_THAT(too_long.status().message(), HasSubstr("Result too long; 4097 > 4096"));
}

TEST(OtsFormat, UnknownAttestationPayloadLimits) {
  const std::string z("\x00", 1);
  const std::string ok =
      absl::StrCat(z, "\x01\x02\x03\x04\x05\x06\x07\x08", "\x0c", "Hello World!");
  size_t pos = 0;
  auto parsed = Timestamp::Parse(ok, &pos, "m");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  std::string out;
  ASSERT_TRUE((*parsed)->Serialize(&out).ok());
  EXPECT_EQ(out, ok);

  const std::string big =
      absl::StrCat(z, "\x01\x02\x03\x04\x05\x06\x07\x08", "\x81\x40", std::string(8193, 'x'));
  pos = 0;
  auto rejected = Timestamp::Parse(big, &pos, "m");
  ASSERT_FALSE(rejected.ok());
  EXPECT_THAT(rejected.status().message(), HasSubstr("VarbytesLength at byte offset 9"));
}

TEST(OtsFormat, PendingUriLimitsAndCharset) {
  const std::string z("\x00", 1);
  auto with_uri = [&](const std::string& uri) { return absl::StrCat(z, Pend(uri)); };
  size_t pos = 0;
  auto thousand = with_uri(std::string(1000, 'x'));
  EXPECT_EQ(Hex(thousand.substr(9, 4)), "ea07e807");
  EXPECT_TRUE(Timestamp::Parse(thousand, &pos, "m").ok());
  pos = 0;
  EXPECT_THAT(Timestamp::Parse(with_uri(std::string(1001, 'x')), &pos, "m").status().message(),
              HasSubstr(kReasonVarbytesLength));
  pos = 0;
  EXPECT_THAT(Timestamp::Parse(with_uri("https://a.b/c?d"), &pos, "m").status().message(),
              HasSubstr(kReasonInvalidUri));
}

TEST(OtsFormat, KnownAttestationMustConsumeItsPayload) {
  const std::string z("\x00", 1);
  const std::string bad = absl::StrCat(z, "\x05\x88\x96\x0d\x73\xd7\x19\x01", "\x02", z, "\xff");
  size_t pos = 0;
  auto parsed = Timestamp::Parse(bad, &pos, "m");
  ASSERT_FALSE(parsed.ok());
  EXPECT_THAT(parsed.status().message(), HasSubstr("TrailingGarbage at byte offset 11"));

  const std::string eth = absl::StrCat(z, "\x30\xfe\x80\x87\xb5\xc7\xea\xd7", "\x01", z);
  pos = 0;
  auto e = Timestamp::Parse(eth, &pos, "m");
  ASSERT_TRUE(e.ok()) << e.status();
  ASSERT_EQ((*e)->attestations().size(), 1u);
  EXPECT_EQ(e->get()->attestations().begin()->kind, Attestation::Kind::kEthereum);
  EXPECT_EQ(e->get()->attestations().begin()->height, 0u);
}

TEST(OtsFormat, RecursionLimit) {
  const std::string z("\x00", 1);
  auto chain = [&](int n) { return absl::StrCat(std::string(n, '\x08'), z, Pend("x")); };
  size_t pos = 0;
  EXPECT_TRUE(Timestamp::Parse(chain(255), &pos, "m").ok());
  pos = 0;
  EXPECT_THAT(Timestamp::Parse(chain(256), &pos, "m").status().message(),
              HasSubstr(kReasonRecursionLimit));
}

TEST(OtsFormat, EmptyAppendArgumentAndBadVaruint) {
  size_t pos = 0;
  EXPECT_THAT(Timestamp::Parse(std::string("\xf0\x00", 2), &pos, "m").status().message(),
              HasSubstr("varbytes min length not met; 0 < 1"));
  pos = 0;
  EXPECT_THAT(
      Timestamp::Parse(absl::StrCat("\xf0", std::string(11, '\xff')), &pos, "m").status().message(),
      HasSubstr(kReasonVaruintOverflow));
  pos = 0;
  EXPECT_THAT(Timestamp::Parse("\x09", &pos, "m").status().message(),
              HasSubstr("UnknownOp at byte offset 0"));
}

TEST(OtsOps, VaruintEncoding) {
  auto enc = [](uint64_t v) {
    std::string s;
    AppendVaruint(v, &s);
    return Hex(s);
  };
  EXPECT_EQ(enc(0), "00");
  EXPECT_EQ(enc(6), "06");
  EXPECT_EQ(enc(200), "c801");
  EXPECT_EQ(enc(1000), "e807");
  EXPECT_EQ(enc(358391), "f7ef15");
}

TEST(OtsOps, DigestsAndUnaryOps) {
  EXPECT_EQ(Hex(Keccak256("")), "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470");
  EXPECT_EQ(Hex(*Op::Ripemd160().Apply("")), "9c1185a5c5e9fc54612808977ee8f548b2258d31");
  EXPECT_EQ(Hex(*Op::Sha1().Apply("abc")), "a9993e364706816aba3e25717850c26c9cd0d89d");
  EXPECT_EQ(*Op::Hexlify().Apply("\x01\xab"), "01ab");
  EXPECT_EQ(*Op::Reverse().Apply("abc"), "cba");
  EXPECT_FALSE(Op::Reverse().Apply("").ok());
  EXPECT_FALSE(Op::Hexlify().Apply(std::string(2049, 'a')).ok());
}

TEST(OtsMerkle, ReferenceTipsAndSharedNodes) {
  const char* expected[] = {"b413f47d13ee2fe6c845b2ee141af81de858df4ec549a58b7970bb96645bc8d2",
                            "e6aa639123d8aac95d13d365ec3779dade4b49c083a8fed97d7bfc0d89bb6a5e",
                            "7699a4fdd6b8b6908a344f73b8f05c8e1400f7253f544602c442ff5c65504b24",
                            "aaa9609d0c949fee22c1c941a4432f32dc1c2de939e4af25207f0dc62df0dbd8",
                            "ebdb4245f648b7e77b60f4f8a99a6d0529d1d372f98f35478b3284f16da93c06",
                            "ba4603a311279dea32e8958bfb660c86237157bf79e6bfee857803e811d91b8f"};
  for (int n = 2; n <= 7; ++n) {
    std::vector<std::shared_ptr<Timestamp>> leaves;
    for (int i = 0; i < n; ++i)
      leaves.push_back(std::make_shared<Timestamp>(std::string(1, char(i))));
    auto tip = MakeMerkleTree(leaves);
    ASSERT_TRUE(tip.ok());
    EXPECT_EQ(Hex((*tip)->msg()), expected[n - 2]) << n;
    // Every leaf reaches the tip's attestation.
    (*tip)->AddAttestation(Attestation::Bitcoin(1));
    for (const auto& leaf : leaves) {
      auto all = leaf->AllAttestations();
      ASSERT_EQ(all.size(), 1u);
      EXPECT_EQ(all[0].first, (*tip)->msg());
    }
  }
  EXPECT_FALSE(MakeMerkleTree({}).ok());
}

TEST(OtsFormat, GarbageNeverCrashes) {
  // Every prefix and single-byte corruption of a real proof either parses or fails cleanly.
  const std::string raw = ReadFile(VectorsDir() + "/extra-js/osdsp.txt.ots");
  ASSERT_FALSE(raw.empty());
  for (size_t i = 0; i < raw.size(); ++i) {
    (void)ParseDetached(raw.substr(0, i));
    std::string bad = raw;
    bad[i] = static_cast<char>(bad[i] ^ 0x5a);
    auto r = ParseDetached(bad);
    if (r.ok()) {
      EXPECT_TRUE(SerializeDetached(*r).ok());
    }
  }
}

}  // namespace
}  // namespace anchord::ots
