#include "services/service-desk/store/customer_projection.h"

#include "absl/strings/str_cat.h"
#include "crm/v1/leads.pb.h"
#include "crm/v1/sales.pb.h"
#include "crm/v1/service_desk.pb.h"
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
  if (order) ApplyOrderPlaced(customer, *order, event.occurred_at());
  return txn.Put(DeskStore::kCustomersFamily, customer_id, customer.SerializeAsString());
}

}  // namespace crm::service_desk
