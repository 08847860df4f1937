#pragma once

#include <string>

#include "absl/time/time.h"
#include "crm/v1/service_desk.pb.h"

namespace crm::service_desk {

// What the timer does with a scheduled warranty follow-up at `now`.
enum class FollowUpAction {
  kNotDue,  // before due_at: leave it scheduled
  kRaise,   // due and the warranty still runs: raise WarrantyFollowUpRequested
  kLapsed,  // the warranty ended before anyone could follow up: drop it
};

FollowUpAction DecideWarrantyFollowUp(const crm::v1::WarrantyFollowUpRequested& follow_up,
                                      absl::Time now);

// One stream per order line, so an append that must create it (expected
// version kNoStream) raises the follow-up at most once, across restarts and
// redelivered orders alike.
std::string WarrantyFollowUpStream(const crm::v1::WarrantyFollowUpRequested& follow_up);

}  // namespace crm::service_desk
