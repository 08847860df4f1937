#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "crm/v1/leads.pb.h"
#include "libs/common/envelope.h"
#include "libs/common/striped_mutex.h"
#include "services/leads/store/lead_store.h"

namespace crm::leads {

// The use cases of the leads service: validate, load, Decide, Apply and
// append in one batch. Transport-free so it is tested without gRPC.
class LeadCommands {
 public:
  explicit LeadCommands(LeadStore& store) : store_(store) {}

  // `ctx` carries actor and correlation; its occurred_at is the capture time.
  absl::StatusOr<crm::v1::CaptureLeadResponse> CaptureLead(
      const crm::v1::CaptureLeadRequest& request, EventContext ctx);
  absl::StatusOr<crm::v1::Lead> GetLead(const crm::v1::GetLeadRequest& request) const;

 private:
  LeadStore& store_;
  // Serializes captures of the same person so two concurrent first
  // contacts cannot mint two customer_ids.
  StripedMutex contact_locks_;
};

}  // namespace crm::leads
