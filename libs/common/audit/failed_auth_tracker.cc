#include "libs/common/audit/failed_auth_tracker.h"

#include <vector>

namespace crm::audit {

FailedAuthTracker::FailedAuthTracker(int threshold, absl::Duration window, size_t max_callers)
    : threshold_(threshold < 1 ? 1 : threshold), window_(window), max_callers_(max_callers) {}

std::optional<FailedAuthTracker::Flag> FailedAuthTracker::RecordFailure(const std::string& caller,
                                                                        absl::Time at) {
  auto it = callers_.find(caller);
  if (it == callers_.end()) {
    if (callers_.size() >= max_callers_) Evict(at);
    it = callers_.emplace(caller, Window{at, 0, false}).first;
  } else if (at - it->second.opened >= window_) {
    it->second = Window{at, 0, false};
  }
  Window& w = it->second;
  ++w.failures;
  if (w.flagged || w.failures < threshold_) return std::nullopt;
  w.flagged = true;
  return Flag{caller, w.failures, w.opened, at};
}

void FailedAuthTracker::Unflag(const std::string& caller) {
  if (auto it = callers_.find(caller); it != callers_.end()) it->second.flagged = false;
}

void FailedAuthTracker::Evict(absl::Time now) {
  std::vector<std::string> ended;
  for (const auto& [caller, w] : callers_) {
    if (now - w.opened >= window_) ended.push_back(caller);
  }
  for (const auto& caller : ended) callers_.erase(caller);
  if (callers_.size() >= max_callers_) callers_.clear();
}

}  // namespace crm::audit
