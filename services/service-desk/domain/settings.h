#pragma once

#include <optional>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "crm/v1/service_desk.pb.h"
#include "services/service-desk/domain/sla.h"

namespace crm::service_desk {

// When a purchase's warranty follow-up falls due and when the warranty ends.
struct WarrantyFollowUp {
  absl::Time due_at;
  absl::Time warranty_ends_at;
};

// The validated configuration of the service desk: calendar, SLA policies,
// teams and routing rules, reopen window and the unknown-customer policy.
class DeskSettings {
 public:
  // Errors are INVALID_ARGUMENT naming the field, e.g. "teams[1].team_id: ...".
  static absl::StatusOr<DeskSettings> Create(crm::v1::ServiceDeskSettings config);
  // Mon–Fri 09:00–17:00 UTC, a policy per priority, a one-week reopen
  // window, no teams (tickets stay unassigned), unknown customers accepted.
  static crm::v1::ServiceDeskSettings Defaults();
  // Protobuf text format; the error says line and column. A calendar or
  // SLA policies the text leaves out are the defaults'.
  static absl::StatusOr<crm::v1::ServiceDeskSettings> ParseText(absl::string_view text);

  const SlaRules& sla() const { return sla_; }
  const crm::v1::ServiceDeskSettings& config() const { return config_; }
  bool reject_unknown_customers() const { return config_.reject_unknown_customers(); }

  // nullptr for an unknown team.
  const crm::v1::Team* FindTeam(absl::string_view team_id) const;
  // The team an agent named alone works in: `preferred_team_id` (the
  // ticket's current team) when the agent is one of its members, so the
  // ticket stays there, else the first team the agent belongs to; nullptr
  // when none.
  const crm::v1::Team* TeamOfAgent(absl::string_view agent_id,
                                   absl::string_view preferred_team_id = "") const;
  // The team the first matching rule names, else the default team; nullptr
  // leaves the ticket unassigned. Category and product match ignoring case.
  const crm::v1::Team* Route(absl::string_view category, absl::string_view product,
                             crm::v1::TicketPriority priority) const;
  // When the warranty of `product` bought at `purchased_at` ends (calendar
  // months later, UTC); nullopt for a product without warranty.
  std::optional<absl::Time> WarrantyEnd(absl::string_view product, absl::Time purchased_at) const;
  // The follow-up of that warranty (warranty_follow_up_days before its
  // end, not before the purchase); nullopt without warranty or with
  // follow-ups turned off.
  std::optional<WarrantyFollowUp> WarrantyFollowUpFor(absl::string_view product,
                                                      absl::Time purchased_at) const;

 private:
  DeskSettings() = default;

  crm::v1::ServiceDeskSettings config_;
  SlaRules sla_;
  absl::flat_hash_map<std::string, int> team_index_;
  absl::flat_hash_map<std::string, int> warranty_months_;  // lowercased product id
};

// Active tickets (new, open, pending) per agent.
using AgentLoad = absl::flat_hash_map<std::string, int64_t>;

// Whether `agent_id` is one of the team's agents.
bool HasAgent(const crm::v1::Team& team, absl::string_view agent_id);

// The agent a new assignment to `team` goes to; empty for a team without
// agents. Round robin takes the agent after `last_agent` in team order;
// least loaded takes the agent with the fewest active tickets, ties going
// to the next one in round-robin order so equal agents still alternate.
// `except` (the current assignee of a reassigned ticket) is never picked
// unless the team has no one else.
std::string PickAgent(const crm::v1::Team& team, absl::string_view last_agent,
                      const AgentLoad& load, absl::string_view except = "");

}  // namespace crm::service_desk
