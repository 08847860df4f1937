#include "services/service-desk/api/warranty_follow_ups.h"

#include "absl/strings/str_cat.h"
#include "libs/common/envelope.h"
#include "libs/common/event_store.h"
#include "libs/common/ids.h"
#include "libs/common/status_macros.h"
#include "services/service-desk/domain/warranty.h"

namespace crm::service_desk {

absl::StatusOr<int> WarrantyFollowUps::RunDue() {
  constexpr size_t kBatch = 1000;
  if (erasures_known_ && !erasures_known_()) return 0;  // the schedule waits
  const absl::Time now = clock_();
  CRM_ASSIGN_OR_RETURN(auto due, store_.DueWarrantyFollowUps(now, kBatch));
  int raised = 0;
  for (const auto& [key, follow_up] : due) {
    // Erased since the purchase; one who came back and bought again after
    // an erasure is followed up on that purchase. The two times come from
    // two services' clocks: a purchase within their skew of the erasure
    // counts as before it.
    const auto erased =
        vault_ != nullptr ? vault_->LatestErasure(follow_up.customer_id()) : std::nullopt;
    if (erased.has_value() &&
        *erased + pii::kErasureClockSkew >= FromProtoTimestamp(follow_up.purchased_at())) {
      CRM_RETURN_IF_ERROR(store_.DropWarrantyFollowUp(key));
      continue;
    }
    switch (DecideWarrantyFollowUp(follow_up, now)) {
      case FollowUpAction::kNotDue:
        continue;
      case FollowUpAction::kLapsed:
        CRM_RETURN_IF_ERROR(store_.DropWarrantyFollowUp(key));
        continue;
      case FollowUpAction::kRaise:
        break;
    }
    EventContext ctx;
    ctx.source = "crm/service-desk";
    ctx.actor = "system:timer";
    ctx.correlation_id = absl::StrCat("order/", follow_up.order_id());
    ctx.occurred_at = now;
    AppendRequest append;
    append.stream = WarrantyFollowUpStream(follow_up);
    append.expected_version = EventStore::kNoStream;
    append.events.push_back(MakeEnvelope(follow_up, follow_up.customer_id(), ctx));
    append.projection_writes.push_back(DeskStore::DropWarrantyFollowUpWrite(key));
    auto result = store_.events().Append(std::move(append));
    if (absl::IsAborted(result.status())) {
      // Raised before (the order was delivered again): only the entry is left.
      CRM_RETURN_IF_ERROR(store_.DropWarrantyFollowUp(key));
      continue;
    }
    CRM_RETURN_IF_ERROR(result.status());
    ++raised;
  }
  return raised;
}

}  // namespace crm::service_desk
