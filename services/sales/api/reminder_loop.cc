#include "services/sales/api/reminder_loop.h"

#include <chrono>

#include "absl/strings/str_cat.h"
#include "libs/common/log.h"
#include "libs/common/status_macros.h"
#include "libs/common/thread_name.h"

namespace crm::sales {

absl::StatusOr<int> ReminderLoop::Tick() {
  const absl::Time now = clock_();
  // A failed task pass must not hold up the stale-deal scan, nor the other
  // way round: each is tried, the first error returned.
  absl::StatusOr<int> tasks = commands_.RaiseTaskReminders(now);
  absl::StatusOr<SalesCommands::StalePass> deals = SalesCommands::StalePass{};
  if (now - last_stale_scan_ >= stale_scan_interval_) {
    deals = commands_.FlagStaleOpportunities(now, stale_flags_per_pass_);
    // A pass that stopped at its bound goes on at the next tick, unless it
    // flagged nothing (writes failing): then at the usual cadence.
    if (deals.ok() && (!deals->more || deals->raised == 0)) last_stale_scan_ = now;
  }
  CRM_RETURN_IF_ERROR(tasks.status());
  CRM_RETURN_IF_ERROR(deals.status());
  if (*tasks + deals->raised > 0) {
    log::Info("reminders raised",
              {{"tasks", absl::StrCat(*tasks)}, {"deals", absl::StrCat(deals->raised)}});
  }
  return *tasks + deals->raised;
}

void ReminderLoop::Start() {
  thread_ = std::thread([this] {
    NameThisThread("crm-reminders");
    std::unique_lock lock(mu_);
    while (!stopping_) {
      lock.unlock();
      if (auto raised = Tick(); !raised.ok()) {
        log::Warn("reminder pass", {{"error", raised.status().ToString()}});
      }
      lock.lock();
      cv_.wait_for(lock, absl::ToChronoMilliseconds(interval_), [this] { return stopping_; });
    }
  });
}

void ReminderLoop::Stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

}  // namespace crm::sales
