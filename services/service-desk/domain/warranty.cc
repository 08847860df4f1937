#include "services/service-desk/domain/warranty.h"

#include "absl/strings/str_cat.h"
#include "libs/common/ids.h"

namespace crm::service_desk {

FollowUpAction DecideWarrantyFollowUp(const crm::v1::WarrantyFollowUpRequested& follow_up,
                                      absl::Time now) {
  if (now < FromProtoTimestamp(follow_up.due_at())) return FollowUpAction::kNotDue;
  if (now >= FromProtoTimestamp(follow_up.warranty_ends_at())) return FollowUpAction::kLapsed;
  return FollowUpAction::kRaise;
}

std::string WarrantyFollowUpStream(const crm::v1::WarrantyFollowUpRequested& follow_up) {
  // Order ids are unique across customers; the product tells lines apart.
  return absl::StrCat("warranty-", follow_up.order_id(), "/", follow_up.product_id());
}

}  // namespace crm::service_desk
