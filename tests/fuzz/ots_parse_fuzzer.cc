// libFuzzer target for the .ots parser (libs/ots/ots.h), and for what runs on a parsed proof:
// rendering (`anchorctl info`, text and JSON, libs/ots/info.h) and verification (libs/ots/verify.h
// against a header source that answers every height).
//
// Properties checked on every input, besides "no crash, no sanitizer report, bounded memory"
// (run.sh uses -rss_limit_mb=512, which an output or parse amplification would exceed):
//  - a parse error is InvalidArgument and names a byte offset inside the input;
//  - a parsed proof serializes, the serialization parses, and re-serializing that is identical
//    (canonical writing is a fixed point);
//  - the same bytes read as a calendar answer (a bare Timestamp on a 32-byte commitment, what
//    upgrade merges) never crash either;
//  - info output (text, verbose text, JSON) is at most kOutputPerInputByte bytes per input byte
//    (plus a constant), and the JSON parses;
//  - verification never looks up more than kMaxHeaderLookups heights, and a verdict of VERIFIED
//    has a verified attestation.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
#include "absl/strings/string_view.h"
#include "libs/ots/headers.h"
#include "libs/ots/info.h"
#include "libs/ots/ots.h"
#include "libs/ots/verify.h"

namespace {

constexpr size_t kOutputPerInputByte = 128;

// Block 358391's real header for every height: mainnet rules accept it below the floors after
// 358391 and refuse it above, so both paths run; lookups are counted.
class OneHeader : public anchord::ots::BlockHeaderSource {
 public:
  absl::StatusOr<anchord::ots::BlockHeader> HeaderAt(int64_t height) override {
    ++lookups;
    static const std::string raw = [] {
      const char* hex =
          "02000000b96394585a281b7e5f438fd1c9ed492645a1fd61cb3802040000000000000000007ee445d2"
          "3ad061af4a36b809501fab1ac4f2d7e7a739817dd0cbb7ec661b8a1e376755f58616186272def6";
      std::string out;
      for (size_t i = 0; hex[i] != 0 && hex[i + 1] != 0; i += 2) {
        auto nib = [](char c) { return c <= '9' ? c - '0' : c - 'a' + 10; };
        out.push_back(static_cast<char>(nib(hex[i]) << 4 | nib(hex[i + 1])));
      }
      return out;
    }();
    return anchord::ots::ParseBlockHeader(height, raw);
  }
  std::string Describe() const override { return "one header"; }
  size_t lookups = 0;
};

[[noreturn]] void Fail(const char* what) {
  fprintf(stderr, "ots_parse_fuzzer: property violated: %s\n", what);
  abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace anchord::ots;
  const absl::string_view in(reinterpret_cast<const char*>(data), size);

  auto parsed = ParseDetached(in);
  if (!parsed.ok()) {
    if (parsed.status().code() != absl::StatusCode::kInvalidArgument) Fail("error code");
    if (!absl::StrContains(parsed.status().message(), "at byte offset ")) Fail("error offset");
  } else {
    auto bytes = SerializeDetached(*parsed);
    if (!bytes.ok()) Fail("serialize parsed proof");
    auto again = ParseDetached(*bytes);
    if (!again.ok()) Fail("re-parse serialized proof");
    auto bytes2 = SerializeDetached(*again);
    if (!bytes2.ok() || *bytes2 != *bytes) Fail("serialization is not a fixed point");
    if (again->digest != parsed->digest) Fail("digest changed");
    if (again->timestamp->AllAttestations().size() != parsed->timestamp->AllAttestations().size()) {
      Fail("attestations changed");
    }

    const size_t bound = kOutputPerInputByte * size + 8192;
    if (RenderInfo(*parsed).size() > bound) Fail("info text not linear in the input");
    if (RenderInfo(*parsed, /*verbose=*/true).size() > bound) Fail("verbose info not linear");
    const std::string json = RenderInfoJson(*parsed);
    if (json.size() > bound) Fail("info JSON not linear in the input");
    if (nlohmann::json::parse(json, nullptr, false).is_discarded()) Fail("info JSON invalid");

    OneHeader headers;
    VerifyResult v = Verify(*parsed, parsed->digest, &headers);
    if (headers.lookups > kMaxHeaderLookups) Fail("too many header lookups");
    if (v.verified && !v.earliest) Fail("verified without a verified attestation");
    VerifyResult none = Verify(*parsed, "", nullptr);
    if (none.verified) Fail("verified without a digest or headers");
  }

  // As a calendar answer on a fixed commitment.
  size_t pos = 0;
  auto sub = Timestamp::Parse(in, &pos, std::string(32, '\x5a'));
  if (sub.ok()) {
    if (pos > size) Fail("position past the end");
    std::string out;
    if (!(*sub)->Serialize(&out).ok()) Fail("serialize answer");
  }
  return 0;
}
