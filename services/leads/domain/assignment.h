#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "crm/v1/leads.pb.h"
#include "services/leads/domain/lead.h"

namespace crm::leads {

// The assignment rule table, pure: every change returns a new table with
// its version increased, or an error; matching a lead to an owner reads the
// owners' load through a callback.

// Leads an owner holds: `open` counts new, qualified and nurturing leads,
// `assigned` all of them, `from_rule` those the rule asked about gave them.
struct OwnerCounts {
  int64_t open = 0;
  int64_t assigned = 0;
  int64_t from_rule = 0;
};
using LoadView =
    std::function<OwnerCounts(const std::string& rule_id, const std::string& owner_id)>;

// Validates a rule from CreateAssignmentRule (field paths start "rule.")
// and returns it trimmed, without duplicates in its lists.
absl::StatusOr<crm::v1::AssignmentRule> NormalizeRule(const crm::v1::AssignmentRule& rule);

// Appends `rule` (normalized) enabled at the end with the given id.
absl::StatusOr<crm::v1::AssignmentRuleTable> AddRule(const crm::v1::AssignmentRuleTable& table,
                                                     crm::v1::AssignmentRule rule,
                                                     const std::string& rule_id);
// `rule_ids` must name every rule once. ABORTED when the table is not at
// `expected_version` (0 = any).
absl::StatusOr<crm::v1::AssignmentRuleTable> ReorderRules(const crm::v1::AssignmentRuleTable& table,
                                                          const std::vector<std::string>& rule_ids,
                                                          int64_t expected_version);
// NOT_FOUND for an unknown rule; FAILED_PRECONDITION when already so.
absl::StatusOr<crm::v1::AssignmentRuleTable> SetRuleEnabled(
    const crm::v1::AssignmentRuleTable& table, const std::string& rule_id, bool enabled,
    int64_t expected_version);

// The first enabled rule whose regions and product interests match the
// lead decides: its owner, or a member of its team (round robin: the
// fewest leads from this rule, so members take turns whatever else they
// hold; least loaded: fewest open, then fewest held; ties go to the member
// listed first). No match: empty (the lead stays in the
// default queue).
Assignment ChooseAssignment(const crm::v1::AssignmentRuleTable& table, const crm::v1::Lead& lead,
                            const LoadView& load);

}  // namespace crm::leads
