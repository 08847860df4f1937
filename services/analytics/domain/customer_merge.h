#pragma once

// Customers found to be one person (MergeLeads of the leads of two
// customers: LeadsMerged) read as one 360 view. The views stay stored per
// customer as their events built them and are joined when read
// (JoinView), so the stored bytes still depend only on the set of events,
// whatever order a merge and the merged customer's events arrive in.
#include <string>
#include <vector>

#include "absl/container/btree_set.h"
#include "absl/container/flat_hash_map.h"

namespace crm::analytics {

// The customers merges joined into one, and the id the joined view
// answers with.
struct MergedGroup {
  // The customer no merge took away (the smallest id if several, or if
  // merges went both ways); alone, the customer itself.
  std::string primary;
  // Every customer of the group, the primary included, sorted by id.
  std::vector<std::string> members;
};

// The merge links known: `merged` went into `survivor`.
class CustomerMerges {
 public:
  void Link(const std::string& merged, const std::string& survivor);

  // The group `customer_id` belongs to, through merges in either direction
  // and any number of steps.
  MergedGroup GroupOf(const std::string& customer_id) const;

  bool empty() const { return links_.empty(); }

 private:
  struct Links {
    absl::btree_set<std::string> into;  // the customers this one went into
    absl::btree_set<std::string> from;  // the customers that went into this one
  };
  absl::flat_hash_map<std::string, Links> links_;
};

}  // namespace crm::analytics
