#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "libs/common/event_store.h"
#include "libs/common/metrics.h"
#include "services/analytics/store/view_store.h"

namespace crm::analytics {

// Watches the churn risk of every customer and appends ChurnRiskRaised to
// analytics' own event log (published to crm.analytics.v1 by its relay)
// when a customer's score crosses the threshold. The alert state is
// written in the same synced batch as the event, and the append carries a
// deterministic request key (customer + cause event), so a crossing is
// raised once even across crashes. Both live in the event store, apart
// from the rebuildable views: rebuilding the views raises nothing again.
class ChurnMonitor {
 public:
  // Column families the EventStore must be opened with.
  static std::vector<std::string> Families();

  // `ready` gates a pass (e.g. the subscriber has caught up); none: always.
  ChurnMonitor(const ViewStore& views, EventStore& events, std::function<bool()> ready = {});
  ~ChurnMonitor();
  ChurnMonitor(const ChurnMonitor&) = delete;
  ChurnMonitor& operator=(const ChurnMonitor&) = delete;

  // One pass over every customer; returns how many alerts it raised. A
  // customer that cannot be evaluated is skipped (logged); the pass then
  // ends with the first such error, counting them, once every other
  // customer was evaluated.
  absl::StatusOr<int> RunOnce();

  // Runs a pass every `interval` on a thread of its own.
  void Start(absl::Duration interval);
  // Ends the pass under way at the next customer (CANCELLED; a pass over
  // many customers would hold a shutdown past its grace period) and the
  // thread.
  void Stop();

 private:
  // Decides one customer and stores the decision; true when it raised an
  // alert.
  absl::StatusOr<bool> Evaluate(const crm::v1::Customer360& view);
  // The alert state of `view`'s customer; for a merged group that has none
  // yet under its id, the raised state of a member, so that a merge does not
  // raise a second alert for a risk already raised.
  absl::StatusOr<crm::v1::ChurnAlertState> LoadAlert(const crm::v1::Customer360& view) const;
  // The writes storing a group's decision under each of its customers.
  static std::vector<ProjectionWrite> AlertWrites(const crm::v1::Customer360& view,
                                                  const crm::v1::ChurnAlertState& state);
  absl::Status StoreAlert(const crm::v1::Customer360& view, const crm::v1::ChurnAlertState& state);

  const ViewStore& views_;
  EventStore& events_;
  std::function<bool()> ready_;
  Counter& passes_;
  Counter& raised_;
  Counter& not_evaluated_;
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  // Set under mu_ (the thread waits on cv_ for it); a pass reads it at
  // each customer without mu_.
  std::atomic<bool> stopping_{false};
};

}  // namespace crm::analytics
