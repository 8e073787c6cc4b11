// One error model: absl::Status inside, grpc::Status at the edge, mapped 1:1 by canonical code.
#pragma once

#include <grpcpp/support/status.h>

#include "absl/strings/string_view.h"

#include "absl/status/status.h"
#include "anchord/v1/common.pb.h"

namespace anchord::rpc {

grpc::Status ToGrpcStatus(const absl::Status& status);
absl::Status FromGrpcStatus(const grpc::Status& status);

// The per-item status of a stream response. `reason` is an UPPER_SNAKE machine-readable cause
// (empty for OK); retry_delay is set only when positive.
anchord::v1::ItemStatus ToItemStatus(const absl::Status& status, absl::string_view reason = "",
                                     absl::Duration retry_delay = absl::ZeroDuration());
absl::Status FromItemStatus(const anchord::v1::ItemStatus& item);

}  // namespace anchord::rpc
