#include "libs/common/thread_name.h"

#include <pthread.h>

#include <string>

namespace anchord {

void NameThisThread(absl::string_view name) {
  constexpr size_t kMaxName = 15;  // TASK_COMM_LEN - 1
  const std::string cut(name.substr(0, kMaxName));
  pthread_setname_np(pthread_self(), cut.c_str());
}

}  // namespace anchord
