#include "libs/ledger/prefix_filter.h"

#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "libs/common/status_macros.h"

namespace anchord::ledger {

PrefixFilter::PrefixFilter(std::string table, std::string key, std::string digest, int64_t max_rows)
    : table_(std::move(table)),
      key_(std::move(key)),
      digest_(std::move(digest)),
      max_rows_(max_rows) {}

uint64_t PrefixFilter::PrefixOf(absl::string_view digest) {
  // A digest shorter than 8 bytes (none is: callers check digests first) is padded with zeros.
  uint64_t p = 0;
  std::memcpy(&p, digest.data(), digest.size() < sizeof(p) ? digest.size() : sizeof(p));
  return p;
}

absl::StatusOr<int64_t> PrefixFilter::MaxKey(Transaction& tx) {
  ANCHORD_ASSIGN_OR_RETURN(Statement st,
                           tx.Prepare(absl::StrCat("SELECT MAX(", key_, ") FROM ", table_)));
  ANCHORD_ASSIGN_OR_RETURN(bool row, st.Step());
  return row && !st.ColumnIsNull(0) ? st.ColumnInt(0) : 0;
}

void PrefixFilter::TurnOff() {
  enabled_ = false;
  absl::flat_hash_set<uint64_t>().swap(prefixes_);  // its memory, not only its elements
}

absl::Status PrefixFilter::Load(Transaction& tx, int64_t after) {
  ANCHORD_ASSIGN_OR_RETURN(
      Statement st, tx.Prepare(absl::StrCat("SELECT substr(", digest_, ", 1, 8) FROM ", table_,
                                            " WHERE ", key_, " > ?1")));
  st.Bind(1, after);
  for (;;) {
    ANCHORD_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    prefixes_.insert(PrefixOf(st.ColumnText(0)));
  }
  return absl::OkStatus();
}

absl::Status PrefixFilter::Sync(Transaction& tx) {
  settled_ = -1;  // a rolled-back transaction's note, if any
  if (!enabled_) return absl::OkStatus();
  ANCHORD_ASSIGN_OR_RETURN(const int64_t max, MaxKey(tx));
  if (max > max_rows_) {  // keys are never reused: there are at most `max` rows
    TurnOff();
    return absl::OkStatus();
  }
  if (!loaded_ || max < seen_) {  // max < seen_: not the table the set was made from
    prefixes_.clear();
    seen_ = 0;
    loaded_ = true;
  }
  if (max > seen_) ANCHORD_RETURN_IF_ERROR(Load(tx, seen_));
  seen_ = max;
  return absl::OkStatus();
}

bool PrefixFilter::MayHold(absl::string_view digest) const {
  return !enabled_ || !loaded_ || prefixes_.contains(PrefixOf(digest));
}

void PrefixFilter::Add(absl::string_view digest) {
  if (enabled_ && loaded_) prefixes_.insert(PrefixOf(digest));
}

absl::Status PrefixFilter::Settle(Transaction& tx, int64_t rows_added) {
  settled_ = -1;
  if (!enabled_ || !loaded_ || rows_added <= 0) return absl::OkStatus();
  ANCHORD_ASSIGN_OR_RETURN(const int64_t max, MaxKey(tx));
  // The added rows took the keys right after the last one seen (AUTOINCREMENT, one writer at a
  // time): then no other row is among them. Anything else is read by the next Sync.
  if (max - seen_ == rows_added) settled_ = max;
  return absl::OkStatus();
}

void PrefixFilter::Committed() {
  if (settled_ > seen_) seen_ = settled_;
  settled_ = -1;
}

absl::Status KeepThoseItMayHold(Transaction& tx, PrefixFilter* known,
                                std::vector<absl::string_view>* digests) {
  if (known == nullptr) return absl::OkStatus();
  ANCHORD_RETURN_IF_ERROR(known->Sync(tx));
  size_t kept = 0;
  for (absl::string_view d : *digests) {
    if (known->MayHold(d)) (*digests)[kept++] = d;
    known->Add(d);
  }
  digests->resize(kept);
  return absl::OkStatus();
}

}  // namespace anchord::ledger
