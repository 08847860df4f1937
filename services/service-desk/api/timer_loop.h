#pragma once

#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace crm::service_desk {

// Runs `tick` (TicketCommands::RunDueTimers) every `interval` on its own
// thread until stopped. What is due is decided by the commands' clock, so
// tests call the tick directly instead of running this loop.
class TimerLoop {
 public:
  TimerLoop(std::function<absl::StatusOr<int>()> tick, absl::Duration interval)
      : tick_(std::move(tick)), interval_(interval) {}
  ~TimerLoop() { Stop(); }
  TimerLoop(const TimerLoop&) = delete;
  TimerLoop& operator=(const TimerLoop&) = delete;

  void Start();
  // Waits for a tick in progress to finish.
  void Stop();

 private:
  void Run();

  std::function<absl::StatusOr<int>()> tick_;
  absl::Duration interval_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace crm::service_desk
