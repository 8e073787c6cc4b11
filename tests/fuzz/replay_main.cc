// A plain main for the fuzz target so the default (g++) build runs it over the seed corpus and
// simple mutations of it in CI, without clang/libFuzzer: every file named on the command line (or
// every file under a directory) is fed as is, truncated at every length, and with each byte
// flipped. Prints "replayed N inputs".
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {
void Run(const std::string& s) {
  LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(s.data()), s.size());
}
}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> files;
  for (int i = 1; i < argc; ++i) {
    std::error_code ec;
    if (std::filesystem::is_directory(argv[i], ec)) {
      for (const auto& e : std::filesystem::recursive_directory_iterator(argv[i], ec)) {
        if (e.is_regular_file()) files.push_back(e.path().string());
      }
    } else {
      files.push_back(argv[i]);
    }
  }
  long n = 0;
  for (const auto& f : files) {
    std::ifstream in(f, std::ios::binary);
    std::ostringstream ss;
    ss << in.rdbuf();
    std::string s = ss.str();
    if (s.size() > 8192) s.resize(8192);  // the fuzzer's -max_len
    Run(s);
    ++n;
    for (size_t len = 0; len < s.size(); ++len, ++n) Run(s.substr(0, len));
    for (size_t i = 0; i < s.size(); ++i, ++n) {
      std::string m = s;
      m[i] = static_cast<char>(m[i] ^ 0xff);
      Run(m);
    }
  }
  std::printf("replayed %ld inputs from %zu files\n", n, files.size());
  return files.empty() ? 1 : 0;
}
