#pragma once

#include <cstddef>
#include <optional>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/time/time.h"

namespace crm::audit {

// Counts failed authentications per caller in fixed windows that open at a
// caller's first failure; the failure that reaches the threshold raises one
// flag, and further failures in that window raise none. Pure: the caller
// passes the time.
class FailedAuthTracker {
 public:
  struct Flag {
    std::string caller;
    int failures = 0;
    absl::Time first_failure_at;
    absl::Time last_failure_at;
  };

  // `max_callers` bounds memory under a spray from many addresses: past it,
  // callers whose window has ended are forgotten first, then all.
  FailedAuthTracker(int threshold, absl::Duration window, size_t max_callers = 10000);

  std::optional<Flag> RecordFailure(const std::string& caller, absl::Time at);
  // The caller's flag was not written: the next failure in its window
  // raises it again.
  void Unflag(const std::string& caller);

  int threshold() const { return threshold_; }
  absl::Duration window() const { return window_; }

 private:
  struct Window {
    absl::Time opened;
    int failures = 0;
    bool flagged = false;
  };
  void Evict(absl::Time now);

  int threshold_;
  absl::Duration window_;
  size_t max_callers_;
  absl::flat_hash_map<std::string, Window> callers_;
};

}  // namespace crm::audit
