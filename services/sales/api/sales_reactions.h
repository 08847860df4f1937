#pragma once

#include "libs/common/subscriber.h"
#include "services/sales/api/sales_commands.h"

namespace crm::sales {

// What the sales service does when events happen elsewhere (choreography):
// LeadConverted on crm.leads.v1 opens the account and an opportunity;
// InvoiceRequested on its own crm.sales.v1 counts towards loyalty. Each
// reaction is a command whose request key is derived from the event id, so
// a redelivered event is answered from the idempotency record and appends
// nothing; the reactions write nothing else to the transaction.
class SalesReactions final : public Projection {
 public:
  explicit SalesReactions(SalesCommands& commands) : commands_(commands) {}

  absl::Status Apply(const crm::v1::EventEnvelope& event, ProjectionTxn& txn) override;

 private:
  SalesCommands& commands_;
};

}  // namespace crm::sales
