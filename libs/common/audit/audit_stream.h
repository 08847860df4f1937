#pragma once

#include <string>

#include "absl/strings/match.h"
#include "absl/strings/string_view.h"

// Refusals and authentication-failure flags are appended to each service's
// own event log on streams of their own ("audit-<id>"): the relay publishes
// them on crm.audit.v1 rather than the service's domain topic, and
// projections of customer data leave them out.
namespace crm::audit {

inline constexpr char kAuditStreamPrefix[] = "audit-";

inline bool IsAuditStream(absl::string_view stream) {
  return absl::StartsWith(stream, kAuditStreamPrefix);
}

}  // namespace crm::audit
