#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "crm/v1/leads.pb.h"
#include "services/leads/domain/assignment.h"
#include "services/leads/store/lead_store.h"

namespace crm::leads {

// The rule table and the owners' load as the running service sees them.
// The table is cached from the store and replaced after each committed
// change; the load counters are rebuilt from the owner index at start and
// kept up to date as leads are assigned, closed and reassigned, so team
// strategies cost no read per lead.
class Assigner {
 public:
  explicit Assigner(LeadStore& store) : store_(store) {}

  // Reads the rule table and counts every owner's leads.
  absl::Status Load();

  // Decides for each lead (its region and product interests are read) and
  // counts the chosen owners' new leads at once, so the next lead of the
  // same batch sees them. Undo() takes a reservation back when its append
  // did not happen.
  std::vector<Assignment> Choose(const std::vector<const crm::v1::Lead*>& leads);
  void Undo(const Assignment& assignment);
  // A committed change of an existing lead (owner, status): moves counts.
  void Moved(const crm::v1::Lead& before, const crm::v1::Lead& after);

  // `from_rule`: the leads `rule_id` gave the owner that they still hold.
  OwnerCounts Counts(const std::string& owner_id, const std::string& rule_id = "") const;

  std::shared_ptr<const crm::v1::AssignmentRuleTable> Rules() const;
  void SetRules(crm::v1::AssignmentRuleTable table);
  // Held while a rule change is decided and appended: one change at a time.
  std::mutex& rule_change_mutex() { return rule_change_mu_; }

 private:
  void AddLocked(const std::string& owner, const std::string& rule_id, int64_t open,
                 int64_t assigned);
  OwnerCounts CountsLocked(const std::string& owner_id, const std::string& rule_id) const;

  LeadStore& store_;
  mutable std::mutex mu_;
  std::shared_ptr<const crm::v1::AssignmentRuleTable> rules_ =
      std::make_shared<crm::v1::AssignmentRuleTable>();
  absl::flat_hash_map<std::string, OwnerCounts> counts_;
  // Per (rule, owner): the leads the rule gave the owner, still theirs.
  absl::flat_hash_map<std::pair<std::string, std::string>, int64_t> from_rule_;
  std::mutex rule_change_mu_;
};

}  // namespace crm::leads
