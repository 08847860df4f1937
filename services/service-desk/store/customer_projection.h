#pragma once

#include "libs/common/subscriber.h"

namespace crm::service_desk {

// Keeps the service desk's own view of customers from other services'
// topics — captured leads (crm.leads.v1), the sales account and orders
// (crm.sales.v1) — so agents see who they are helping and what they bought,
// and the unknown-customer policy and warranty checks need no call to
// another service. Events it has no use for are accepted and ignored.
class CustomerProjection final : public Projection {
 public:
  absl::Status Apply(const crm::v1::EventEnvelope& event, ProjectionTxn& txn) override;
};

}  // namespace crm::service_desk
