#include "services/analytics/domain/customer_merge.h"

#include <algorithm>
#include <deque>

#include "absl/container/btree_set.h"

namespace crm::analytics {

void CustomerMerges::Link(const std::string& merged, const std::string& survivor) {
  if (merged.empty() || survivor.empty() || merged == survivor) return;
  links_[merged].into.insert(survivor);
  links_[survivor].from.insert(merged);
}

MergedGroup CustomerMerges::GroupOf(const std::string& customer_id) const {
  absl::btree_set<std::string> members = {customer_id};
  std::deque<std::string> todo = {customer_id};
  while (!todo.empty()) {
    const auto it = links_.find(todo.front());
    todo.pop_front();
    if (it == links_.end()) continue;
    for (const auto* side : {&it->second.into, &it->second.from}) {
      for (const auto& other : *side) {
        if (members.insert(other).second) todo.push_back(other);
      }
    }
  }
  MergedGroup group;
  group.members.assign(members.begin(), members.end());
  // Sorted, so the first survivor found is the smallest.
  for (const auto& m : group.members) {
    const auto it = links_.find(m);
    if (it == links_.end() || it->second.into.empty()) {
      group.primary = m;
      break;
    }
  }
  if (group.primary.empty()) group.primary = group.members.front();
  return group;
}

}  // namespace crm::analytics
