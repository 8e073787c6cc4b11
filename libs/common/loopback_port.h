// A loopback TCP port to give a process before it starts (a peer must know the address first, or
// a restarted process must come back on the same one).
#pragma once

namespace anchord {

// A port that was free on 127.0.0.1 a moment ago, or -1. It is chosen below the kernel's range of
// ephemeral ports (/proc/sys/net/ipv4/ip_local_port_range): the kernel hands ports of that range
// to every outgoing connection, so a port taken from it (by binding port 0) could be given to
// some other process's connection before the intended process binds it, as happened to the
// chaos test's replicas under a parallel ctest. Below it, only a process binding that very
// number can collide, and each candidate is checked by binding it first. When the range leaves no
// room below it, the kernel's choice (port 0) is the fallback.
int ReserveLoopbackPort();

}  // namespace anchord
