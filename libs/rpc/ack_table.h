// AckTable: the items a stream sent to a peer and not yet acknowledged, keyed by the request_id
// each was sent under, so that acknowledgements arriving in any order find their item.
//
//   rpc::AckTable<Item> sent("f");               // request ids "f0", "f1", ...
//   req.set_request_id(sent.Add(Item{...}));     // before sending
//   std::optional<Item> item = sent.Take(ack.request_id());  // on the acknowledgement
//
// An acknowledgement whose id is unknown (never sent, or already taken: a duplicate answer after a
// resend) yields nullopt and is ignored by the caller: only the first answer per item counts.
// Thread-safe: items are added by the sending threads and taken by the receiving one.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"

namespace anchord::rpc {

template <typename Item>
class AckTable {
 public:
  // Request ids are `prefix` followed by a counter, unique within this table.
  explicit AckTable(std::string prefix) : prefix_(std::move(prefix)) {}
  AckTable(const AckTable&) = delete;
  AckTable& operator=(const AckTable&) = delete;

  // Records `item` as sent; returns the request_id to send it under.
  std::string Add(Item item) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    std::string id = absl::StrCat(prefix_, next_++);
    items_.emplace(id, std::move(item));
    return id;
  }
  // Removes and returns the item sent under `request_id`; nullopt when there is none.
  std::optional<Item> Take(absl::string_view request_id) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    auto it = items_.find(request_id);
    if (it == items_.end()) return std::nullopt;
    std::optional<Item> item(std::move(it->second));
    items_.erase(it);
    return item;
  }
  // Items sent and not yet acknowledged.
  size_t size() const ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    return items_.size();
  }

 private:
  const std::string prefix_;
  mutable absl::Mutex mu_;
  std::map<std::string, Item, std::less<>> items_ ABSL_GUARDED_BY(mu_);
  uint64_t next_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace anchord::rpc
