#pragma once

#include "absl/status/status.h"
#include "absl/strings/cord.h"

namespace crm {

// Marks an UNAVAILABLE status whose message describes the host (RocksDB
// errors name files and paths) rather than the request, so the API edge
// logs it and answers the caller with a reference, as for INTERNAL.
inline constexpr char kServiceDetailPayload[] = "crm/service-detail";

inline absl::Status WithServiceDetail(absl::Status status) {
  if (!status.ok()) status.SetPayload(kServiceDetailPayload, absl::Cord());
  return status;
}

inline bool HasServiceDetail(const absl::Status& status) {
  return status.GetPayload(kServiceDetailPayload).has_value();
}

}  // namespace crm
