// libFuzzer target for the RFC 3161 parsers (libs/tsa): a .tsr (TimeStampResp), its Merkle-path
// form (.tsrm) and a TimeStampReq (what the sandbox parses). Properties besides "no crash, no
// sanitizer report, bounded memory":
//  - input over the size bounds is refused before OpenSSL sees it;
//  - errors are INVALID_ARGUMENT or FAILED_PRECONDITION (not granted) with a message;
//  - a decoded .tsrm re-encodes to the same bytes (the container is canonical).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/strings/string_view.h"
#include "libs/tsa/path_form.h"
#include "libs/tsa/tsa.h"

namespace {

[[noreturn]] void Fail(const char* what) {
  fprintf(stderr, "tsa_parse_fuzzer: property violated: %s\n", what);
  abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace anchord::tsa;
  const absl::string_view in(reinterpret_cast<const char*>(data), size);

  auto info = Inspect(in);
  if (!info.ok()) {
    if (!absl::IsInvalidArgument(info.status()) && !absl::IsFailedPrecondition(info.status())) {
      Fail("Inspect error code");
    }
    if (info.status().message().empty()) Fail("Inspect error without a message");
  } else {
    if (in.size() > kMaxTsrBytes) Fail("oversized .tsr accepted");
    (void)RenderInfo(*info);
    (void)TokenCertificatesPem(in);
  }

  auto form = DecodePathForm(in);
  if (form.ok()) {
    auto again = EncodePathForm(form->digest, form->path, form->tsr);
    if (!again.ok() || *again != in) Fail(".tsrm is not canonical");
    (void)Inspect(form->tsr);
  } else if (!absl::IsInvalidArgument(form.status())) {
    Fail("DecodePathForm error code");
  }

  auto req = ParseRequest(in);
  if (req.ok() && req->imprint.size() != 32) Fail("request imprint is not 32 bytes");
  return 0;
}
