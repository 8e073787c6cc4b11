#include "libs/rpc/status.h"

namespace anchord::rpc {

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

absl::Status FromGrpcStatus(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
}

anchord::v1::ItemStatus ToItemStatus(const absl::Status& status, absl::string_view reason,
                                     absl::Duration retry_delay) {
  anchord::v1::ItemStatus out;
  out.set_code(static_cast<int>(status.code()));
  out.set_message(std::string(status.message()));
  if (!status.ok()) out.set_reason(std::string(reason));
  if (retry_delay > absl::ZeroDuration()) {
    int64_t ms = absl::ToInt64Milliseconds(retry_delay);
    out.mutable_retry_delay()->set_seconds(ms / 1000);
    out.mutable_retry_delay()->set_nanos(static_cast<int32_t>((ms % 1000) * 1000000));
  }
  return out;
}

absl::Status FromItemStatus(const anchord::v1::ItemStatus& item) {
  if (item.code() == 0) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(item.code()), item.message());
}

}  // namespace anchord::rpc
