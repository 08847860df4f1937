#pragma once

#include "absl/strings/string_view.h"
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "crm/v1/leads.pb.h"

namespace crm::leads {

// Pure domain of a lead: validation, normalization, Decide and Apply.
// Nothing here does I/O; ids and matches are decided by the caller.

// Lowercased, trimmed; INVALID_ARGUMENT naming `field` when malformed.
absl::StatusOr<std::string> NormalizeEmail(absl::string_view raw, absl::string_view field);
// E.164: "+" then 8 to 15 digits; separators (space . - ( )) dropped and a
// leading "00" read as "+".
absl::StatusOr<std::string> NormalizePhone(absl::string_view raw, absl::string_view field);

// Validates every field and returns the request with contact data
// normalized. The error names the first offending field.
absl::StatusOr<crm::v1::CaptureLeadRequest> NormalizeCaptureRequest(
    const crm::v1::CaptureLeadRequest& request);

// Commands.
struct CaptureLead {
  crm::v1::CaptureLeadRequest request;  // normalized
  std::string lead_id;
  std::string customer_id;
  // The person's earlier lead when the contact matched one.
  std::string duplicate_of_lead_id;
};

// Events of a lead stream.
using LeadEvent = std::variant<crm::v1::LeadCaptured>;

absl::StatusOr<std::vector<LeadEvent>> Decide(const std::optional<crm::v1::Lead>& state,
                                              const CaptureLead& command);

// Folds one event into the state; `occurred_at` is the event's time.
void Apply(crm::v1::Lead& state, const LeadEvent& event, absl::Time occurred_at);

// The stream of a lead: "lead-<id>".
std::string LeadStream(absl::string_view lead_id);

}  // namespace crm::leads
