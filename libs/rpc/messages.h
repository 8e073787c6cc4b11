// Plain C++ values into and out of the messages of common.proto that more than one service fills
// (google.protobuf.Timestamp, FileMetadata). They live here, beside status.h's mapping of
// absl::Status to grpc::Status and ItemStatus, because this is the library of "anchord values at
// the wire", which every service already links: a reader who wants to know how a time or a file
// goes into a Proof the submitter hands off, or comes back out of one in the poller, finds one
// copy here. Service-specific conversions (a submitter row into a Proof, a poller row into a
// Proof) stay with their service: their fields and rules differ.
#pragma once

#include "absl/time/time.h"
#include "anchord/v1/common.pb.h"
#include "google/protobuf/timestamp.pb.h"

namespace anchord::rpc {

// `t` at microsecond precision (the precision the stores keep), rounded towards the past, so
// nanos is always in [0, 999999999] as Timestamp requires, also before 1970.
void SetTimestamp(absl::Time t, google::protobuf::Timestamp* out);

// The time of a Timestamp a peer sent: the unset (all-zero) Timestamp is absl::InfinitePast()
// ("not known"), and values outside Timestamp's range (years 1 to 9999) are clamped to it, so a
// hostile value cannot overflow later arithmetic.
absl::Time FromTimestamp(const google::protobuf::Timestamp& ts);

// Fills `out` from a store's file row. `File` is any struct with the fields filename,
// size_bytes, mime_type, source_path and job (the submitter's FileRef, the poller's FileRow);
// modified_at is the hasher's and is left unset.
template <typename File>
void SetFileMetadata(const File& file, anchord::v1::FileMetadata* out) {
  out->set_filename(file.filename);
  out->set_size_bytes(file.size_bytes);
  out->set_mime_type(file.mime_type);
  out->set_source_path(file.source_path);
  out->set_job(file.job);
}

}  // namespace anchord::rpc
