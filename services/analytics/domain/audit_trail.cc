#include "services/analytics/domain/audit_trail.h"

#include "absl/strings/str_cat.h"
#include "libs/common/audit/audit_stream.h"
#include "services/analytics/domain/event_fold.h"

namespace crm::analytics {

absl::string_view StreamRecordId(absl::string_view stream) {
  const size_t dash = stream.find('-');
  return dash == absl::string_view::npos ? stream : stream.substr(dash + 1);
}

std::optional<crm::v1::AuditEntry> AuditEntryFor(const crm::v1::EventEnvelope& event,
                                                 const Payload& payload) {
  crm::v1::AuditEntry entry;
  *entry.mutable_occurred_at() = event.occurred_at();
  entry.set_actor(event.actor());
  entry.set_service(event.source());
  entry.set_customer_id(event.customer_id());
  entry.set_event_id(event.event_id());
  entry.set_correlation_id(event.correlation_id());
  if (!audit::IsAuditStream(event.stream())) {
    entry.set_outcome(crm::v1::AUDIT_OUTCOME_ACCEPTED);
    entry.set_operation(event.type());
    entry.set_target(std::string(StreamRecordId(event.stream())));
    return entry;
  }
  if (const auto* denied = payload.As<crm::v1::AccessDenied>()) {
    entry.set_outcome(crm::v1::AUDIT_OUTCOME_DENIED);
    entry.set_operation(denied->method());
    entry.set_target(denied->target());
    entry.set_code(denied->code());
    entry.set_reason(denied->reason());
    entry.set_peer(denied->peer());
    return entry;
  }
  if (const auto* flag = payload.As<crm::v1::AuthenticationFailuresFlagged>()) {
    entry.set_outcome(crm::v1::AUDIT_OUTCOME_FLAGGED);
    entry.set_operation(event.type());
    entry.set_reason(absl::StrCat(flag->failures(), " failed authentications within ",
                                  flag->window_seconds(), " s"));
    entry.set_peer(flag->peer());
    return entry;
  }
  return std::nullopt;
}

}  // namespace crm::analytics
