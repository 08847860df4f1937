#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "crm/v1/analytics.pb.h"
#include "crm/v1/envelope.pb.h"
#include "services/analytics/domain/analytics_settings.h"
#include "services/analytics/domain/event_fold.h"

namespace crm::analytics {

// Finds (loading or creating) the stored KPI record of a ticket.
using KpiTicketLookup =
    std::function<absl::StatusOr<crm::v1::KpiTicketRecord*>(const std::string&)>;

// Pure fold of service-desk ticket events into per-ticket KPI records;
// other events are ignored. Every field is set once, by a minimum, by a
// last-writer-wins stamp or is a flag, so redelivery and the order of
// delivery do not change a record.
absl::Status ApplyToKpis(const crm::v1::EventEnvelope& event, const Payload& payload,
                         const KpiTicketLookup& ticket);

// INVALID_ARGUMENT naming the field: from after to, unknown bucket, ...
absl::Status ValidateServiceKpisRequest(const crm::v1::GetServiceKpisRequest& request);

// Aggregates the records the request selects (opened in [from, to), of the
// team and product if given). Complaints are judged with `config`, at read
// time, so changing the complaint categories needs no rebuild.
// Records are streamed in one at a time: a query keeps the durations of
// the tickets it selects, never the records. `config` must outlive it.
class ServiceKpiBuilder {
 public:
  ServiceKpiBuilder(const crm::v1::GetServiceKpisRequest& request, const AnalyticsConfig& config);
  ~ServiceKpiBuilder();
  ServiceKpiBuilder(const ServiceKpiBuilder&) = delete;
  ServiceKpiBuilder& operator=(const ServiceKpiBuilder&) = delete;

  void Add(const crm::v1::KpiTicketRecord& record);
  crm::v1::ServiceKpis Finish();

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// The same over a record list.
crm::v1::ServiceKpis ComputeServiceKpis(const std::vector<crm::v1::KpiTicketRecord>& records,
                                        const crm::v1::GetServiceKpisRequest& request,
                                        const AnalyticsConfig& config);

// Nearest-rank percentile (1..100) of `values`, which it sorts; 0 if empty.
int64_t Percentile(std::vector<int64_t>& values, int percent);

}  // namespace crm::analytics
