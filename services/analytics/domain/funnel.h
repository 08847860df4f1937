#pragma once

#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "crm/v1/analytics.pb.h"
#include "crm/v1/envelope.pb.h"
#include "services/analytics/domain/event_fold.h"

namespace crm::analytics {

// Finds (loading or creating) the stored record of a lead or opportunity.
using LeadRecordLookup =
    std::function<absl::StatusOr<crm::v1::FunnelLeadRecord*>(const std::string&)>;
using OpportunityRecordLookup =
    std::function<absl::StatusOr<crm::v1::FunnelOpportunityRecord*>(const std::string&)>;

// Pure fold of lead and opportunity events into their funnel records; other
// events are ignored. Every field is set by one event type, by a
// last-writer-wins stamp or by a set, so the records do not depend on
// delivery order or redelivery.
absl::Status ApplyToFunnel(const crm::v1::EventEnvelope& event, const Payload& payload,
                           const LeadRecordLookup& lead,
                           const OpportunityRecordLookup& opportunity);

// Validates the filter: INVALID_ARGUMENT naming the field.
absl::Status ValidateFunnelRequest(const crm::v1::GetFunnelRequest& request);

// Aggregates the records into the funnel the request asks for.
crm::v1::Funnel ComputeFunnel(const std::vector<crm::v1::FunnelLeadRecord>& leads,
                              const std::vector<crm::v1::FunnelOpportunityRecord>& opportunities,
                              const crm::v1::GetFunnelRequest& request);

}  // namespace crm::analytics
