#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "crm/v1/analytics.pb.h"
#include "crm/v1/envelope.pb.h"
#include "services/analytics/domain/customer_merge.h"
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

// Aggregates the funnel the request asks for from records streamed in:
// every lead first, then every opportunity. Per lead it keeps only the
// channel the opportunities join on, so a query holds no record list. With
// `merges`, an opportunity without a lead takes the first lead of its
// customer's whole merge group (the person's first touch).
class FunnelBuilder {
 public:
  explicit FunnelBuilder(const crm::v1::GetFunnelRequest& request,
                         const CustomerMerges* merges = nullptr);
  ~FunnelBuilder();
  FunnelBuilder(const FunnelBuilder&) = delete;
  FunnelBuilder& operator=(const FunnelBuilder&) = delete;

  void AddLead(const crm::v1::FunnelLeadRecord& lead);
  void AddOpportunity(const crm::v1::FunnelOpportunityRecord& opportunity);
  crm::v1::Funnel Finish();

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// The same over record lists.
crm::v1::Funnel ComputeFunnel(const std::vector<crm::v1::FunnelLeadRecord>& leads,
                              const std::vector<crm::v1::FunnelOpportunityRecord>& opportunities,
                              const crm::v1::GetFunnelRequest& request,
                              const CustomerMerges* merges = nullptr);

}  // namespace crm::analytics
