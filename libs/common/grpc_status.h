#pragma once

#include <string>

#include "absl/status/status.h"
#include "grpcpp/support/status.h"

namespace crm {

// The one mapping from absl::Status to grpc::Status at the API edge; the
// canonical codes are the same numbers. INTERNAL and UNKNOWN are failures
// of the service, not of the request: their messages (RocksDB errors name
// files and paths) go to the service's log under a reference the caller
// gets instead, so support can find the cause and callers learn nothing
// of the host. So are the messages of statuses marked WithServiceDetail
// (a full disk is UNAVAILABLE), under their own code.
grpc::Status ToGrpcStatus(const absl::Status& s);

inline absl::Status FromGrpcStatus(const grpc::Status& s) {
  if (s.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()), s.error_message());
}

}  // namespace crm
