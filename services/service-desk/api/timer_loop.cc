#include "services/service-desk/api/timer_loop.h"

#include <chrono>

#include "absl/strings/str_cat.h"
#include "libs/common/log.h"
#include "libs/common/thread_name.h"

namespace crm::service_desk {

void TimerLoop::Start() {
  thread_ = std::thread([this] {
    NameThisThread("crm-timers");
    Run();
  });
}

void TimerLoop::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void TimerLoop::Run() {
  const auto interval = absl::ToChronoMilliseconds(interval_);
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_) {
    lock.unlock();
    auto appended = tick_();
    if (!appended.ok()) {
      log::Warn("timer tick failed", {{"error", appended.status().ToString()}});
    } else if (*appended > 0) {
      log::Info("timer tick", {{"events", absl::StrCat(*appended)}});
    }
    lock.lock();
    cv_.wait_for(lock, interval, [this] { return stopping_; });
  }
}

}  // namespace crm::service_desk
