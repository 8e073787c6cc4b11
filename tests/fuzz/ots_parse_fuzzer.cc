// libFuzzer target for the .ots parser (libs/ots/ots.h).
//
// Properties checked on every input, besides "no crash, no sanitizer report, bounded memory"
// (run with -rss_limit_mb):
//  - a parse error is InvalidArgument and names a byte offset inside the input;
//  - a parsed proof serializes, the serialization parses, and re-serializing that is identical
//    (canonical writing is a fixed point);
//  - the same bytes read as a calendar answer (a bare Timestamp on a 32-byte commitment, what
//    upgrade merges) never crash either.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/string_view.h"
#include "libs/ots/ots.h"

namespace {

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
