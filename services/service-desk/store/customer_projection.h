#pragma once

#include "libs/common/subscriber.h"
#include "services/service-desk/domain/settings.h"

namespace crm::service_desk {

// Keeps the service desk's own view of customers from other services'
// topics — captured leads (crm.leads.v1), the sales account and orders
// (crm.sales.v1) — so agents see who they are helping and what they bought,
// and the unknown-customer policy and warranty checks need no call to
// another service. Events it has no use for are accepted and ignored.
// A purchase under warranty also schedules its warranty follow-up, written
// in the same batch so a follow-up is never lost nor scheduled twice.
class CustomerProjection final : public Projection {
 public:
  explicit CustomerProjection(const DeskSettings& settings) : settings_(settings) {}
  absl::Status Apply(const crm::v1::EventEnvelope& event, ProjectionTxn& txn) override;

 private:
  const DeskSettings& settings_;
};

}  // namespace crm::service_desk
