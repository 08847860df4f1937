#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "libs/common/auth/principal.h"

// Which roles may call which RPC: the one role x operation table of the
// system (policy.cc), keyed by full gRPC method name
// ("/crm.v1.LeadsService/CaptureLead"). The auth interceptor enforces it;
// the handlers add record checks (whose lead, which territory) on top.
namespace crm::auth {

// Health checks and server reflection: open to callers without a token.
bool IsOpenMethod(absl::string_view full_method);

// OK when one of the principal's roles may call the method; otherwise
// PERMISSION_DENIED, also for a method the table does not list (deny by
// default, so a new RPC is closed until someone decides who may call it).
absl::Status Authorize(absl::string_view full_method, const Principal& principal);

// A method some server of the system serves: listed in the table, or one
// of the open methods. Anything else is a client's typo or probe.
bool IsKnownMethod(absl::string_view full_method);

// `full_method` as metrics, logs and the audit trail name it: itself when
// known, else "unknown". The path of an unknown one is the client's to
// choose (any bytes, up to gRPC's metadata limit): a name per path would
// grow without bound.
std::string RecordedMethod(absl::string_view full_method);

// The roles the table lets call `full_method`; empty when it is not listed.
std::vector<std::string> AllowedRoles(absl::string_view full_method);

}  // namespace crm::auth
