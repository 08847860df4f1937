#include "services/leads/api/assigner.h"

#include "absl/container/flat_hash_set.h"
#include "libs/common/status_macros.h"

namespace crm::leads {

absl::Status Assigner::Load() {
  CRM_ASSIGN_OR_RETURN(auto table, store_.LoadRules());
  // A lead counts for a rule's turns only with one of its team: one
  // converted for someone else before conversions handed leads over kept
  // the rule that first chose its owner.
  absl::flat_hash_set<std::pair<std::string, std::string>> members;
  for (const auto& rule : table.rules()) {
    for (const auto& m : rule.team_members()) members.insert({rule.rule_id(), m});
  }
  absl::flat_hash_map<std::string, OwnerCounts> counts;
  absl::flat_hash_map<std::pair<std::string, std::string>, int64_t> from_rule;
  CRM_RETURN_IF_ERROR(store_.ForEachOwnedLead([&](const crm::v1::Lead& lead) {
    OwnerCounts& c = counts[lead.owner_id()];
    ++c.assigned;
    if (IsOpen(lead.status())) ++c.open;
    std::pair<std::string, std::string> turn = {lead.assignment_rule_id(), lead.owner_id()};
    if (members.contains(turn)) ++from_rule[std::move(turn)];
  }));
  std::lock_guard<std::mutex> lock(mu_);
  rules_ = std::make_shared<const crm::v1::AssignmentRuleTable>(std::move(table));
  counts_ = std::move(counts);
  from_rule_ = std::move(from_rule);
  return absl::OkStatus();
}

std::vector<Assignment> Assigner::Choose(const std::vector<const crm::v1::Lead*>& leads) {
  std::vector<Assignment> out;
  out.reserve(leads.size());
  std::lock_guard<std::mutex> lock(mu_);
  const LoadView load = [this](const std::string& rule_id, const std::string& owner) {
    return CountsLocked(owner, rule_id);
  };
  for (const crm::v1::Lead* lead : leads) {
    Assignment a = ChooseAssignment(*rules_, *lead, load);
    if (!a.owner_id.empty()) AddLocked(a.owner_id, a.rule_id, 1, 1);
    out.push_back(std::move(a));
  }
  return out;
}

void Assigner::Undo(const Assignment& assignment) {
  if (assignment.owner_id.empty()) return;
  std::lock_guard<std::mutex> lock(mu_);
  AddLocked(assignment.owner_id, assignment.rule_id, -1, -1);
}

void Assigner::Moved(const crm::v1::Lead& before, const crm::v1::Lead& after) {
  const bool was_open = IsOpen(before.status());
  const bool is_open = IsOpen(after.status());
  if (before.owner_id() == after.owner_id() && was_open == is_open &&
      before.assignment_rule_id() == after.assignment_rule_id()) {
    return;
  }
  std::lock_guard<std::mutex> lock(mu_);
  if (!before.owner_id().empty()) {
    AddLocked(before.owner_id(), before.assignment_rule_id(), was_open ? -1 : 0, -1);
  }
  if (!after.owner_id().empty()) {
    AddLocked(after.owner_id(), after.assignment_rule_id(), is_open ? 1 : 0, 1);
  }
}

OwnerCounts Assigner::Counts(const std::string& owner_id, const std::string& rule_id) const {
  std::lock_guard<std::mutex> lock(mu_);
  return CountsLocked(owner_id, rule_id);
}

OwnerCounts Assigner::CountsLocked(const std::string& owner_id, const std::string& rule_id) const {
  auto it = counts_.find(owner_id);
  OwnerCounts c = it == counts_.end() ? OwnerCounts{} : it->second;
  if (auto r = from_rule_.find({rule_id, owner_id}); r != from_rule_.end()) c.from_rule = r->second;
  return c;
}

std::shared_ptr<const crm::v1::AssignmentRuleTable> Assigner::Rules() const {
  std::lock_guard<std::mutex> lock(mu_);
  return rules_;
}

void Assigner::SetRules(crm::v1::AssignmentRuleTable table) {
  auto next = std::make_shared<const crm::v1::AssignmentRuleTable>(std::move(table));
  std::lock_guard<std::mutex> lock(mu_);
  rules_ = std::move(next);
}

void Assigner::AddLocked(const std::string& owner, const std::string& rule_id, int64_t open,
                         int64_t assigned) {
  OwnerCounts& c = counts_[owner];
  c.open += open;
  c.assigned += assigned;
  if (!rule_id.empty()) from_rule_[{rule_id, owner}] += assigned;
}

}  // namespace crm::leads
