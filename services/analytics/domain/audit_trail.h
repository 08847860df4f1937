#pragma once

#include <optional>
#include <string>

#include "absl/strings/string_view.h"
#include "crm/v1/audit.pb.h"
#include "crm/v1/envelope.pb.h"
#include "services/analytics/domain/event_fold.h"

namespace crm::analytics {

// The audit entry an event stands for: a domain event is an accepted
// command (by its actor, on the record of its stream); AccessDenied and
// AuthenticationFailuresFlagged on audit streams are refusals and flags.
// nullopt for an audit event of a type this build does not know. Pure.
std::optional<crm::v1::AuditEntry> AuditEntryFor(const crm::v1::EventEnvelope& event,
                                                 const Payload& payload);

// The record a stream is about: "lead-lead_01J…" -> "lead_01J…".
absl::string_view StreamRecordId(absl::string_view stream);

}  // namespace crm::analytics
