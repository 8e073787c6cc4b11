#include "libs/common/loopback_port.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <fstream>
#include <random>
#include <set>

#include "absl/base/const_init.h"
#include "absl/synchronization/mutex.h"

namespace anchord {
namespace {

// Binds `port` on 127.0.0.1 (0: the kernel chooses) and closes again; the port bound, or -1.
int TryBind(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  socklen_t len = sizeof(addr);
  int bound = -1;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    bound = ntohs(addr.sin_port);
  }
  close(fd);
  return bound;
}

// The first port of the ephemeral range; 32768 (Linux's default) when it cannot be read.
int EphemeralLow() {
  std::ifstream in("/proc/sys/net/ipv4/ip_local_port_range");
  int low = 0, high = 0;
  if (in >> low >> high && low > 0 && low <= 65535) return low;
  return 32768;
}

}  // namespace

int ReserveLoopbackPort() {
  // Above the ports services are commonly configured on, below the ephemeral range.
  constexpr int kFirst = 16384;
  const int last = EphemeralLow() - 1;
  // Ports given out before are free until their process binds them: a second random pick of the
  // same number would pass TryBind too (two services of one test cluster were given one port).
  static absl::Mutex mu(absl::kConstInit);
  static auto* given = new std::set<int>();
  absl::MutexLock lock(&mu);
  if (last - kFirst >= 1024) {
    thread_local std::mt19937 rng{std::random_device{}()};
    std::uniform_int_distribution<int> pick(kFirst, last);
    for (int attempt = 0; attempt < 64; ++attempt) {
      const int candidate = pick(rng);
      if (given->count(candidate)) continue;
      const int port = TryBind(candidate);
      if (port > 0) {
        given->insert(port);
        return port;
      }
    }
  }
  const int port = TryBind(0);
  if (port > 0) given->insert(port);
  return port;
}

}  // namespace anchord
