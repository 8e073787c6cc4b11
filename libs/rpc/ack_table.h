// AckTable: the items a stream sent to a peer and not yet acknowledged, keyed by the request_id
// each was sent under, so that acknowledgements arriving in any order find their item.
//
//   rpc::AckTable<Item> sent("f");               // request ids "f0", "f1", ...
//   req.set_request_id(sent.Add(Item{...}));     // before sending
//   std::optional<Item> item = sent.Take(ack.request_id());  // on the acknowledgement
//   sent.TakeAll(ids, [](size_t k, Item item) {...});          // on a message of them
//
// An acknowledgement whose id is unknown (never sent, or already taken: a duplicate answer after a
// resend) yields nullopt and is ignored by the caller: only the first answer per item counts.
// Thread-safe: items are added by the sending threads and taken by the receiving one.
//
// Items are kept by their counter in a hash table: the hasher adds and takes one per file, tens of
// thousands in flight, and a tree of the id strings cost about 4% of its hash pool's CPU in a
// Merkle run (bench/RESULTS.md, issue 11 session 25). An id is found only in exactly the form Add
// gave it ("f7", never "f07" or "f+7").
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
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
    const uint64_t n = next_++;
    items_.emplace(n, std::move(item));
    return absl::StrCat(prefix_, n);
  }
  // Removes and returns the item sent under `request_id`; nullopt when there is none.
  std::optional<Item> Take(absl::string_view request_id) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    return TakeLocked(request_id);
  }
  // Take for several ids under one lock (an acknowledgement message answers many items): calls
  // found(k, item) for each ids[k] that names an item, in order, after the lock is released.
  template <typename Ids, typename Found>
  void TakeAll(const Ids& ids, Found found) ABSL_LOCKS_EXCLUDED(mu_) {
    std::vector<std::pair<size_t, Item>> taken;
    taken.reserve(ids.size());
    {
      absl::MutexLock lock(&mu_);
      for (size_t k = 0; k < ids.size(); ++k) {
        if (std::optional<Item> item = TakeLocked(ids[k])) taken.emplace_back(k, *std::move(item));
      }
    }
    for (auto& [k, item] : taken) found(k, std::move(item));
  }
  // Items sent and not yet acknowledged.
  size_t size() const ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    return items_.size();
  }

 private:
  // The counter of an id in Add's form (prefix_, then the counter in decimal without leading
  // zeros); nullopt for anything else.
  std::optional<uint64_t> CounterOf(absl::string_view id) const {
    if (id.size() <= prefix_.size() || id.substr(0, prefix_.size()) != prefix_) return std::nullopt;
    const absl::string_view digits = id.substr(prefix_.size());
    if (digits.size() > 20 || (digits.size() > 1 && digits[0] == '0')) return std::nullopt;
    for (char c : digits) {
      if (!absl::ascii_isdigit(static_cast<unsigned char>(c))) return std::nullopt;
    }
    uint64_t n = 0;
    if (!absl::SimpleAtoi(digits, &n)) return std::nullopt;
    return n;
  }

  std::optional<Item> TakeLocked(absl::string_view request_id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const std::optional<uint64_t> n = CounterOf(request_id);
    if (!n.has_value()) return std::nullopt;
    auto it = items_.find(*n);
    if (it == items_.end()) return std::nullopt;
    std::optional<Item> item(std::move(it->second));
    items_.erase(it);
    return item;
  }

  const std::string prefix_;
  mutable absl::Mutex mu_;
  absl::flat_hash_map<uint64_t, Item> items_ ABSL_GUARDED_BY(mu_);
  uint64_t next_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace anchord::rpc
