#include "services/analytics/domain/service_kpis.h"

#include <algorithm>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "crm/v1/service_desk.pb.h"
#include "google/protobuf/util/time_util.h"  // Timestamp comparison operators
#include "libs/common/ids.h"
#include "libs/common/status_macros.h"
#include "services/analytics/domain/event_fold.h"

namespace crm::analytics {
namespace {

using crm::v1::AsOf;
using crm::v1::EventEnvelope;
using crm::v1::KpiTicketRecord;
using crm::v1::ServiceKpiSlice;
using google::protobuf::Timestamp;

void SetStatus(KpiTicketRecord* r, const EventEnvelope& event, crm::v1::TicketStatus status) {
  if (TakeIfNewer(r->mutable_status_as_of(), event)) r->set_status(status);
}

// A TicketAssigned names the ticket's whole team, as the desk applies it: an
// empty one (reopened after its team was removed, no rule routing it) moves
// the ticket to the unassigned slice.
void SetTeam(KpiTicketRecord* r, const EventEnvelope& event, const std::string& team) {
  if (TakeIfNewer(r->mutable_team_as_of(), event)) r->set_team_id(team);
}

double Ratio(int64_t num, int64_t den) {
  return den == 0 ? 0.0 : static_cast<double>(num) / static_cast<double>(den);
}

crm::v1::DurationStats Stats(std::vector<int64_t>& seconds) {
  crm::v1::DurationStats s;
  s.set_samples(static_cast<int64_t>(seconds.size()));
  s.set_median_seconds(Percentile(seconds, 50));
  s.set_p90_seconds(Percentile(seconds, 90));
  return s;
}

struct Slice {
  int64_t tickets = 0, breached = 0, complaints = 0, csat_count = 0, csat_sum = 0;
  int64_t nps_count = 0, promoters = 0, detractors = 0;
  std::vector<int64_t> first_response, resolution;

  void Add(const KpiTicketRecord& r, bool complaint) {
    ++tickets;
    if (r.sla_breached()) ++breached;
    if (complaint) ++complaints;
    if (r.csat_score() > 0) {
      ++csat_count;
      csat_sum += r.csat_score();
    }
    if (r.has_nps()) {
      ++nps_count;
      promoters += r.nps() >= 9;
      detractors += r.nps() <= 6;
    }
    if (r.has_first_response_at()) {
      first_response.push_back(
          std::max<int64_t>(0, r.first_response_at().seconds() - r.opened_at().seconds()));
    }
    const bool done = r.status() == crm::v1::TICKET_STATUS_RESOLVED ||
                      r.status() == crm::v1::TICKET_STATUS_CLOSED;
    if (done && r.has_resolved()) {
      resolution.push_back(
          std::max<int64_t>(0, r.resolved().at().seconds() - r.opened_at().seconds()));
    }
  }

  ServiceKpiSlice Finish(const std::string& key) {
    ServiceKpiSlice s;
    s.set_key(key);
    s.set_tickets(tickets);
    *s.mutable_first_response() = Stats(first_response);
    *s.mutable_resolution() = Stats(resolution);
    s.set_breached(breached);
    s.set_sla_breach_rate(Ratio(breached, tickets));
    s.set_csat_count(csat_count);
    s.set_csat_average(Ratio(csat_sum, csat_count));
    s.set_complaints(complaints);
    s.set_complaint_rate(Ratio(complaints, tickets));
    s.set_nps_count(nps_count);
    s.set_nps(100.0 * Ratio(promoters - detractors, nps_count));
    return s;
  }
};

void Emit(std::map<std::string, Slice>& slices,
          google::protobuf::RepeatedPtrField<ServiceKpiSlice>* out) {
  for (auto& [key, slice] : slices) *out->Add() = slice.Finish(key);
}

std::string BucketKey(const Timestamp& t, crm::v1::KpiBucket bucket) {
  const absl::Time time = absl::FromUnixSeconds(t.seconds());
  if (bucket == crm::v1::KPI_BUCKET_WEEK) {
    const absl::CivilDay day = absl::ToCivilDay(time, absl::UTCTimeZone());
    // absl::Weekday counts from Monday = 0: the ISO week's first day.
    const absl::CivilDay monday = day - static_cast<int>(absl::GetWeekday(day));
    return absl::FormatCivilTime(monday);
  }
  return absl::FormatTime("%Y-%m", time, absl::UTCTimeZone());
}

absl::Status CheckTimestamp(const char* field, const Timestamp& t) {
  if (!IsValidProtoTimestamp(t)) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": not a valid timestamp"));
  }
  return absl::OkStatus();
}

// The first response is the earliest answer, whatever order they arrive in.
void TakeIfEarlier(crm::v1::KpiTicketRecord* r, const crm::v1::EventEnvelope& event) {
  if (!r->has_first_response_at() || event.occurred_at() < r->first_response_at()) {
    *r->mutable_first_response_at() = event.occurred_at();
  }
}

}  // namespace

int64_t Percentile(std::vector<int64_t>& values, int percent) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const size_t n = values.size();
  const size_t rank = (static_cast<size_t>(percent) * n + 99) / 100;  // ceil(p% of n)
  return values[std::clamp<size_t>(rank, 1, n) - 1];
}

absl::Status ApplyToKpis(const EventEnvelope& event, const Payload& payload,
                         const KpiTicketLookup& find) {
  using namespace crm::v1;
  KpiTicketRecord no_ticket;  // events without a ticket id name no record
  auto ticket = [&](const std::string& id) -> absl::StatusOr<KpiTicketRecord*> {
    if (id.empty()) return &no_ticket;
    CRM_ASSIGN_OR_RETURN(auto* r, find(id));
    r->set_ticket_id(id);
    return r;
  };
  if (const auto* m = payload.As<TicketOpened>()) {
    CRM_ASSIGN_OR_RETURN(auto* r, ticket(m->ticket_id()));
    r->set_customer_id(event.customer_id());
    *r->mutable_opened_at() = event.occurred_at();
    r->set_product(m->product());
    r->set_category(m->category());
    r->set_priority(m->priority());
    SetStatus(r, event, TICKET_STATUS_NEW);
  } else if (const auto* m = payload.As<TicketAssigned>()) {
    CRM_ASSIGN_OR_RETURN(auto* r, ticket(m->ticket_id()));
    SetTeam(r, event, m->team_id());
  } else if (const auto* m = payload.As<TicketReplied>()) {
    if (!m->first_response()) return absl::OkStatus();
    CRM_ASSIGN_OR_RETURN(auto* r, ticket(m->ticket_id()));
    TakeIfEarlier(r, event);
  } else if (const auto* m = payload.As<TicketStatusChanged>()) {
    CRM_ASSIGN_OR_RETURN(auto* r, ticket(m->ticket_id()));
    SetStatus(r, event, m->to_status());
  } else if (const auto* m = payload.As<TicketResolved>()) {
    CRM_ASSIGN_OR_RETURN(auto* r, ticket(m->ticket_id()));
    SetStatus(r, event, TICKET_STATUS_RESOLVED);
    TakeIfNewer(r->mutable_resolved(), event);
    // A resolution answers the customer, as the desk's first-response
    // clock counts it: a ticket solved without a reply was answered then.
    TakeIfEarlier(r, event);
  } else if (const auto* m = payload.As<TicketClosed>()) {
    CRM_ASSIGN_OR_RETURN(auto* r, ticket(m->ticket_id()));
    SetStatus(r, event, TICKET_STATUS_CLOSED);
  } else if (const auto* m = payload.As<TicketReopened>()) {
    CRM_ASSIGN_OR_RETURN(auto* r, ticket(m->ticket_id()));
    SetStatus(r, event, TICKET_STATUS_OPEN);
  } else if (const auto* m = payload.As<TicketSlaBreached>()) {
    CRM_ASSIGN_OR_RETURN(auto* r, ticket(m->ticket_id()));
    r->set_sla_breached(true);
    // Every team change is a TicketAssigned; a breach's team only stands in
    // until one is seen. It never outranks one: a breach owed before a
    // reassignment is recorded in the same instant, ahead of it.
    if (!r->has_team_as_of() && r->team_id().empty()) r->set_team_id(m->team_id());
  } else if (const auto* m = payload.As<CsatSubmitted>()) {
    CRM_ASSIGN_OR_RETURN(auto* r, ticket(m->ticket_id()));
    if (TakeIfNewer(r->mutable_csat_as_of(), event)) {
      r->set_csat_score(m->score());
      if (m->has_nps()) {
        r->set_nps(m->nps());
      } else {
        r->clear_nps();
      }
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateServiceKpisRequest(const crm::v1::GetServiceKpisRequest& request) {
  if (request.has_from()) CRM_RETURN_IF_ERROR(CheckTimestamp("from", request.from()));
  if (request.has_to()) CRM_RETURN_IF_ERROR(CheckTimestamp("to", request.to()));
  if (request.has_from() && request.has_to() && request.to() < request.from()) {
    return absl::InvalidArgumentError("to: before from");
  }
  if (!crm::v1::KpiBucket_IsValid(request.bucket())) {
    return absl::InvalidArgumentError("bucket: unknown value");
  }
  if (request.team_id().size() > 128) return absl::InvalidArgumentError("team_id: too long");
  if (request.product().size() > 128) return absl::InvalidArgumentError("product: too long");
  return absl::OkStatus();
}

struct ServiceKpiBuilder::State {
  State(const crm::v1::GetServiceKpisRequest& r, const AnalyticsConfig& c)
      : request(r), config(c) {}

  crm::v1::GetServiceKpisRequest request;
  const AnalyticsConfig& config;
  Slice total;
  std::map<std::string, Slice> by_team, by_product, trend;
};

ServiceKpiBuilder::ServiceKpiBuilder(const crm::v1::GetServiceKpisRequest& request,
                                     const AnalyticsConfig& config)
    : state_(std::make_unique<State>(request, config)) {}
ServiceKpiBuilder::~ServiceKpiBuilder() = default;

void ServiceKpiBuilder::Add(const KpiTicketRecord& r) {
  State& st = *state_;
  const auto& request = st.request;
  if (!r.has_opened_at()) return;  // its opening was not seen yet
  if (request.has_from() && r.opened_at() < request.from()) return;
  if (request.has_to() && !(r.opened_at() < request.to())) return;
  if (!request.team_id().empty() && r.team_id() != request.team_id()) return;
  if (!request.product().empty() && r.product() != request.product()) return;
  const bool complaint = st.config.IsComplaint(r.category(), r.priority());
  st.total.Add(r, complaint);
  st.by_team[r.team_id()].Add(r, complaint);
  st.by_product[r.product()].Add(r, complaint);
  st.trend[BucketKey(r.opened_at(), request.bucket())].Add(r, complaint);
}

crm::v1::ServiceKpis ServiceKpiBuilder::Finish() {
  State& st = *state_;
  crm::v1::ServiceKpis kpis;
  *kpis.mutable_total() = st.total.Finish("");
  Emit(st.by_team, kpis.mutable_by_team());
  Emit(st.by_product, kpis.mutable_by_product());
  Emit(st.trend, kpis.mutable_trend());
  return kpis;
}

crm::v1::ServiceKpis ComputeServiceKpis(const std::vector<KpiTicketRecord>& records,
                                        const crm::v1::GetServiceKpisRequest& request,
                                        const AnalyticsConfig& config) {
  ServiceKpiBuilder builder(request, config);
  for (const auto& r : records) builder.Add(r);
  return builder.Finish();
}

}  // namespace crm::analytics
