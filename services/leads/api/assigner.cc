#include "services/leads/api/assigner.h"

#include "libs/common/status_macros.h"

namespace crm::leads {

absl::Status Assigner::Load() {
  CRM_ASSIGN_OR_RETURN(auto table, store_.LoadRules());
  absl::flat_hash_map<std::string, OwnerCounts> counts;
  CRM_RETURN_IF_ERROR(store_.ForEachOwnedLead([&](const crm::v1::LeadSummary& lead) {
    OwnerCounts& c = counts[lead.owner_id()];
    ++c.assigned;
    if (IsOpen(lead.status())) ++c.open;
  }));
  std::lock_guard<std::mutex> lock(mu_);
  rules_ = std::make_shared<const crm::v1::AssignmentRuleTable>(std::move(table));
  counts_ = std::move(counts);
  return absl::OkStatus();
}

std::vector<Assignment> Assigner::Choose(const std::vector<const crm::v1::Lead*>& leads) {
  std::vector<Assignment> out;
  out.reserve(leads.size());
  std::lock_guard<std::mutex> lock(mu_);
  const LoadView load = [this](const std::string& owner) {
    auto it = counts_.find(owner);
    return it == counts_.end() ? OwnerCounts{} : it->second;
  };
  for (const crm::v1::Lead* lead : leads) {
    Assignment a = ChooseAssignment(*rules_, *lead, load);
    if (!a.owner_id.empty()) AddLocked(a.owner_id, 1, 1);
    out.push_back(std::move(a));
  }
  return out;
}

void Assigner::Undo(const Assignment& assignment) {
  if (assignment.owner_id.empty()) return;
  std::lock_guard<std::mutex> lock(mu_);
  AddLocked(assignment.owner_id, -1, -1);
}

void Assigner::Moved(const crm::v1::Lead& before, const crm::v1::Lead& after) {
  const bool was_open = IsOpen(before.status());
  const bool is_open = IsOpen(after.status());
  if (before.owner_id() == after.owner_id() && was_open == is_open) return;
  std::lock_guard<std::mutex> lock(mu_);
  if (!before.owner_id().empty()) AddLocked(before.owner_id(), was_open ? -1 : 0, -1);
  if (!after.owner_id().empty()) AddLocked(after.owner_id(), is_open ? 1 : 0, 1);
}

OwnerCounts Assigner::Counts(const std::string& owner_id) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = counts_.find(owner_id);
  return it == counts_.end() ? OwnerCounts{} : it->second;
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

void Assigner::AddLocked(const std::string& owner, int64_t open, int64_t assigned) {
  OwnerCounts& c = counts_[owner];
  c.open += open;
  c.assigned += assigned;
}

}  // namespace crm::leads
