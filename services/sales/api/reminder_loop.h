#pragma once

#include <condition_variable>
#include <mutex>
#include <thread>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "services/sales/api/sales_commands.h"

namespace crm::sales {

// Raises due-task and stale-deal reminders on a timer. Time comes from the
// injected clock, so tests drive it with Tick() and a fake clock; main runs
// the loop on a thread. Due tasks are found through an index every pass;
// staleness is measured in days and needs a scan of the open deals, so it
// runs at its own, slower cadence, and a scan that found more stale deals
// than one pass flags goes on at the next tick.
class ReminderLoop {
 public:
  ReminderLoop(SalesCommands& commands, Clock clock, absl::Duration interval,
               absl::Duration stale_scan_interval = absl::Minutes(1),
               size_t stale_flags_per_pass = SalesCommands::kMaxStaleFlagsPerPass)
      : commands_(commands),
        clock_(std::move(clock)),
        interval_(interval),
        stale_scan_interval_(stale_scan_interval),
        stale_flags_per_pass_(stale_flags_per_pass) {}
  ~ReminderLoop() { Stop(); }
  ReminderLoop(const ReminderLoop&) = delete;
  ReminderLoop& operator=(const ReminderLoop&) = delete;

  // One pass at the clock's now; returns how many reminders were raised.
  // Not for concurrent use: the loop's thread (or a test) calls it.
  absl::StatusOr<int> Tick();

  void Start();
  void Stop();

 private:
  SalesCommands& commands_;
  Clock clock_;
  absl::Duration interval_;
  absl::Duration stale_scan_interval_;
  size_t stale_flags_per_pass_;
  absl::Time last_stale_scan_ = absl::InfinitePast();
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace crm::sales
