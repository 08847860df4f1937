#pragma once

#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "crm/v1/sales.pb.h"

namespace crm::sales {

// Field checks of the opportunity commands; the errors name the field.
absl::Status ValidateOpenOpportunity(const crm::v1::OpenOpportunityRequest& request);
absl::Status ValidateChangeStage(const crm::v1::ChangeOpportunityStageRequest& request);
absl::Status ValidateRevise(const crm::v1::ReviseOpportunityRequest& request);

// Commands of an opportunity. The caller resolves defaults (owner from the
// account, the pipeline) and passes the pipeline the opportunity follows.
struct OpenOpportunity {
  crm::v1::OpenOpportunityRequest request;  // validated, owner_id resolved
  std::string opportunity_id;
  std::string territory;
  std::string lead_id;
  crm::v1::Pipeline pipeline;
};
struct ChangeStage {
  std::string stage_id;
  std::string lost_reason;
  crm::v1::Pipeline pipeline;
  absl::Time at;
};
struct ReviseOpportunity {
  crm::v1::ReviseOpportunityRequest request;  // validated
};
// Raises the stale reminder of an open opportunity without activity for
// `stale_after`, once per period of inactivity.
struct FlagStale {
  absl::Time now;
  absl::Duration stale_after;
  // The latest activity logged against it; InfinitePast when none.
  absl::Time last_activity_at = absl::InfinitePast();
};
using OpportunityCommand = std::variant<OpenOpportunity, ChangeStage, ReviseOpportunity, FlagStale>;

using OpportunityEvent = std::variant<crm::v1::OpportunityOpened, crm::v1::OpportunityStageChanged,
                                      crm::v1::OpportunityRevised, crm::v1::OpportunityWentStale>;

absl::StatusOr<std::vector<OpportunityEvent>> Decide(
    const std::optional<crm::v1::Opportunity>& state, const OpportunityCommand& command);
void Apply(crm::v1::Opportunity& state, const OpportunityEvent& event, absl::Time occurred_at);

// Since when nothing happened on the opportunity: its last stage change or
// its latest activity, whichever is later.
absl::Time InactiveSince(const crm::v1::Opportunity& opportunity, absl::Time last_activity_at);
// Whether the stale reminder raised last covers the inactivity that began
// at `since`: it was raised for that very inactivity, or once that
// inactivity had lasted `stale_after`. An activity written up late inside
// a reminded inactivity leaves it covered; one less than a period before
// the reminder does not.
bool StaleReminderCovers(const crm::v1::Opportunity& opportunity, absl::Time since,
                         absl::Duration stale_after);
// Open and inactive for at least `stale_after` at `now`.
bool IsStale(const crm::v1::Opportunity& opportunity, absl::Time last_activity_at, absl::Time now,
             absl::Duration stale_after);

// "opportunity-<id>"
std::string OpportunityStream(absl::string_view opportunity_id);

}  // namespace crm::sales
