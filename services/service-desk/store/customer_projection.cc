#include "services/service-desk/store/customer_projection.h"

#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "crm/v1/leads.pb.h"
#include "crm/v1/sales.pb.h"
#include "crm/v1/service_desk.pb.h"
#include "libs/common/ids.h"
#include "libs/common/status_macros.h"
#include "services/service-desk/domain/customer.h"
#include "services/service-desk/store/desk_store.h"

namespace crm::service_desk {

namespace {

template <typename Event>
absl::StatusOr<std::optional<Event>> Unpack(const crm::v1::EventEnvelope& envelope) {
  if (!envelope.payload().Is<Event>()) return std::nullopt;
  Event event;
  if (!envelope.payload().UnpackTo(&event)) {
    return absl::DataLossError(
        absl::StrCat("undecodable ", envelope.type(), " ", envelope.event_id()));
  }
  return event;
}

}  // namespace

absl::Status CustomerProjection::Apply(const crm::v1::EventEnvelope& event, ProjectionTxn& txn) {
  CRM_ASSIGN_OR_RETURN(auto lead, Unpack<crm::v1::LeadCaptured>(event));
  CRM_ASSIGN_OR_RETURN(auto opened, Unpack<crm::v1::CustomerOpened>(event));
  CRM_ASSIGN_OR_RETURN(auto tier, Unpack<crm::v1::CustomerTierChanged>(event));
  CRM_ASSIGN_OR_RETURN(auto order, Unpack<crm::v1::OrderPlaced>(event));
  if (!lead && !opened && !tier && !order) return absl::OkStatus();
  const std::string& customer_id = lead     ? lead->customer_id()
                                   : opened ? opened->customer_id()
                                   : tier   ? tier->customer_id()
                                            : order->customer_id();
  if (customer_id.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(event.type(), " ", event.event_id(), " has no customer_id"));
  }
  crm::v1::CustomerContext customer;
  CRM_ASSIGN_OR_RETURN(auto raw, txn.Get(DeskStore::kCustomersFamily, customer_id));
  if (raw.has_value() && !customer.ParseFromString(*raw)) {
    return absl::DataLossError(absl::StrCat("corrupt customer ", customer_id));
  }
  if (lead) ApplyLeadCaptured(customer, *lead, event.occurred_at());
  if (opened) ApplyCustomerOpened(customer, *opened);
  if (tier) ApplyCustomerTierChanged(customer, *tier);
  if (order) {
    std::set<std::pair<std::string, std::string>> known;  // (order, product)
    for (const auto& p : customer.purchases()) known.emplace(p.order_id(), p.product_id());
    ApplyOrderPlaced(customer, *order, event.occurred_at());
    for (const auto& p : customer.purchases()) {
      if (known.contains({p.order_id(), p.product_id()})) continue;
      const auto follow_up =
          settings_.WarrantyFollowUpFor(p.product_id(), FromProtoTimestamp(p.purchased_at()));
      if (!follow_up.has_value()) continue;
      crm::v1::WarrantyFollowUpRequested due;
      due.set_customer_id(customer_id);
      due.set_order_id(p.order_id());
      due.set_product_id(p.product_id());
      *due.mutable_purchased_at() = p.purchased_at();
      *due.mutable_warranty_ends_at() = ToProtoTimestamp(follow_up->warranty_ends_at);
      *due.mutable_due_at() = ToProtoTimestamp(follow_up->due_at);
      CRM_RETURN_IF_ERROR(txn.PutWriteOnly(DeskStore::kWarrantyFollowUpsFamily,
                                           DeskStore::WarrantyFollowUpKey(due),
                                           due.SerializeAsString()));
    }
  }
  return txn.Put(DeskStore::kCustomersFamily, customer_id, customer.SerializeAsString());
}

}  // namespace crm::service_desk
