#include "services/sales/api/sales_reactions.h"

#include "crm/v1/analytics.pb.h"
#include "crm/v1/leads.pb.h"
#include "crm/v1/sales.pb.h"

namespace crm::sales {

absl::Status SalesReactions::Apply(const crm::v1::EventEnvelope& event, ProjectionTxn& /*txn*/) {
  if (event.payload().Is<crm::v1::LeadConverted>()) return commands_.OpenAccountFromLead(event);
  if (event.payload().Is<crm::v1::InvoiceRequested>()) {
    return commands_.RecordSpendFromInvoice(event);
  }
  if (event.payload().Is<crm::v1::ChurnRiskRaised>()) return commands_.OpenRetentionTask(event);
  return absl::OkStatus();  // not ours to react to
}

}  // namespace crm::sales
