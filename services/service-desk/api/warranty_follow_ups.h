#pragma once

#include <functional>

#include "absl/status/statusor.h"
#include "libs/common/pii/key_vault.h"
#include "services/service-desk/api/ticket_commands.h"
#include "services/service-desk/store/desk_store.h"

namespace crm::service_desk {

// Raises the warranty follow-ups that CustomerProjection scheduled once
// they fall due by the clock: WarrantyFollowUpRequested on the order line's
// own stream, appended with the schedule entry's removal in one batch.
class WarrantyFollowUps {
 public:
  // With `vault`, a follow-up of a customer erased since the purchase leaves
  // the schedule unraised: its purpose is to contact the person. With
  // `erasures_known`, nothing is raised until it holds: the vault learns
  // erasures made while the service was down (or since the backup it was
  // restored from) only as it reads the keys topic again.
  WarrantyFollowUps(DeskStore& store, Clock clock, const pii::KeyVault* vault = nullptr,
                    std::function<bool()> erasures_known = nullptr)
      : store_(store),
        clock_(std::move(clock)),
        vault_(vault),
        erasures_known_(std::move(erasures_known)) {}

  // Returns the number of follow-ups raised. Follow-ups whose warranty has
  // already ended, of a customer erased since the purchase, or that were
  // raised before, leave the schedule quietly.
  absl::StatusOr<int> RunDue();

 private:
  DeskStore& store_;
  Clock clock_;
  const pii::KeyVault* vault_;
  std::function<bool()> erasures_known_;
};

}  // namespace crm::service_desk
