#include "services/analytics/domain/funnel.h"

#include <algorithm>
#include <map>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "crm/v1/leads.pb.h"
#include "crm/v1/sales.pb.h"
#include "google/protobuf/util/time_util.h"
#include "libs/common/arithmetic.h"
#include "libs/common/auth/record_access.h"
#include "libs/common/status_macros.h"
#include "services/analytics/domain/event_fold.h"

namespace crm::analytics {
namespace {

using crm::v1::AsOf;
using crm::v1::EventEnvelope;
using crm::v1::FunnelCounts;
using crm::v1::FunnelLeadRecord;
using crm::v1::FunnelOpportunityRecord;
using google::protobuf::Timestamp;

// The lead's owner; none once it went into a queue.
void SetLeadOwner(FunnelLeadRecord* r, const EventEnvelope& event, const std::string& owner) {
  if (TakeIfNewer(r->mutable_owner_as_of(), event)) r->set_owner_id(owner);
}

std::string Month(const Timestamp& t) {
  return absl::FormatTime("%Y-%m", absl::FromUnixSeconds(t.seconds()), absl::UTCTimeZone());
}

std::string ChannelKey(crm::v1::LeadChannel c) {
  std::string name = crm::v1::LeadChannel_Name(c);
  constexpr std::string_view kPrefix = "LEAD_CHANNEL_";
  if (name.rfind(kPrefix, 0) == 0) name = name.substr(kPrefix.size());
  std::transform(name.begin(), name.end(), name.begin(),
                 [](char ch) { return static_cast<char>(std::tolower(ch)); });
  return name;
}

double Ratio(int64_t num, int64_t den) {
  return den == 0 ? 0.0 : static_cast<double>(num) / static_cast<double>(den);
}

// Accumulates one slice; revenue per currency in a sorted map so the output
// is deterministic.
struct Slice {
  FunnelCounts counts;
  std::map<std::string, int64_t> revenue;

  // `key` unless the slice was labelled when filled (TerritorySlice).
  FunnelCounts Finish(const std::string& key) {
    FunnelCounts c = counts;
    if (c.key().empty()) c.set_key(key);
    for (const auto& [currency, units] : revenue) {
      auto* m = c.add_won_revenue();
      m->set_currency(currency);
      m->set_minor_units(units);
    }
    c.set_qualification_rate(Ratio(c.qualified(), c.leads()));
    c.set_conversion_rate(Ratio(c.converted(), c.qualified()));
    c.set_close_rate(Ratio(c.won(), c.converted()));
    c.set_lead_to_win_rate(Ratio(c.won(), c.leads()));
    c.set_win_rate(Ratio(c.won(), c.won() + c.lost()));
    return c;
  }
};

// Territories compare as access compares them, ignoring case (a lead's
// region keeps its capture's spelling, "emea" or "EMEA"): one slice each,
// labelled with the first spelling in byte order, whatever the order seen.
Slice& TerritorySlice(std::map<std::string, Slice>& slices, const std::string& territory) {
  Slice& s = slices[auth::TerritoryKey(territory)];
  auth::KeepFirstSpelling(*s.counts.mutable_key(), territory);
  return s;
}

// A disqualified lead can be nurtured and qualified again: the latest of
// those events decides, whatever order they arrive in.
void SetDisqualified(FunnelLeadRecord* r, const EventEnvelope& event, bool disqualified) {
  if (TakeIfNewer(r->mutable_disqualified_as_of(), event)) r->set_disqualified(disqualified);
}

void AddLead(Slice& s, const FunnelLeadRecord& r) {
  auto& c = s.counts;
  c.set_leads(c.leads() + 1);
  // Converting implies qualifying, even when no LeadQualified was emitted.
  if (r.qualified() || r.converted()) c.set_qualified(c.qualified() + 1);
  if (r.converted()) c.set_converted(c.converted() + 1);
  if (r.disqualified()) c.set_disqualified(c.disqualified() + 1);
}

void AddOpportunity(Slice& s, const FunnelOpportunityRecord& r) {
  auto& c = s.counts;
  c.set_opportunities(c.opportunities() + 1);
  if (r.outcome() == crm::v1::STAGE_OUTCOME_WON) {
    c.set_won(c.won() + 1);
    // A deal opened without an amount adds none: no entry without a
    // currency.
    if (!r.amount().currency().empty()) {
      int64_t& sum = s.revenue[r.amount().currency()];
      sum = SaturatingAdd(sum, r.amount().minor_units());
    }
  }
  if (r.outcome() == crm::v1::STAGE_OUTCOME_LOST) c.set_lost(c.lost() + 1);
}

void Emit(std::map<std::string, Slice>& slices,
          google::protobuf::RepeatedPtrField<FunnelCounts>* out) {
  for (auto& [key, slice] : slices) *out->Add() = slice.Finish(key);
}

}  // namespace

absl::Status ApplyToFunnel(const EventEnvelope& event, const Payload& payload,
                           const LeadRecordLookup& find_lead,
                           const OpportunityRecordLookup& find_opportunity) {
  using namespace crm::v1;
  // An event without an id names no record: fold it into a throwaway one.
  FunnelLeadRecord no_lead;
  FunnelOpportunityRecord no_opportunity;
  auto lead = [&](const std::string& id) -> absl::StatusOr<FunnelLeadRecord*> {
    if (id.empty()) return &no_lead;
    return find_lead(id);
  };
  auto opportunity = [&](const std::string& id) -> absl::StatusOr<FunnelOpportunityRecord*> {
    if (id.empty()) return &no_opportunity;
    return find_opportunity(id);
  };
  if (const auto* m = payload.As<LeadCaptured>()) {
    CRM_ASSIGN_OR_RETURN(auto* r, lead(m->lead_id()));
    r->set_lead_id(m->lead_id());
    r->set_customer_id(event.customer_id());
    r->set_channel(m->channel());
    *r->mutable_captured_at() = event.occurred_at();
    if (TakeIfNewer(r->mutable_region_as_of(), event)) r->set_region(m->region());
  } else if (const auto* m = payload.As<LeadAssigned>()) {
    CRM_ASSIGN_OR_RETURN(auto* r, lead(m->lead_id()));
    r->set_lead_id(m->lead_id());
    SetLeadOwner(r, event, m->owner_id());
  } else if (const auto* m = payload.As<LeadQualified>()) {
    CRM_ASSIGN_OR_RETURN(auto* r, lead(m->lead_id()));
    r->set_lead_id(m->lead_id());
    r->set_qualified(true);
    SetDisqualified(r, event, false);
  } else if (const auto* m = payload.As<LeadNurtureStarted>()) {
    CRM_ASSIGN_OR_RETURN(auto* r, lead(m->lead_id()));
    r->set_lead_id(m->lead_id());
    SetDisqualified(r, event, false);
  } else if (const auto* m = payload.As<LeadDisqualified>()) {
    CRM_ASSIGN_OR_RETURN(auto* r, lead(m->lead_id()));
    r->set_lead_id(m->lead_id());
    SetDisqualified(r, event, true);
  } else if (const auto* m = payload.As<LeadConverted>()) {
    CRM_ASSIGN_OR_RETURN(auto* r, lead(m->lead_id()));
    r->set_lead_id(m->lead_id());
    r->set_converted(true);
    SetDisqualified(r, event, false);
    // The lead stands where its deal does: a converted lead without a
    // region took the converting manager's territory.
    if (!m->region().empty() && TakeIfNewer(r->mutable_region_as_of(), event)) {
      r->set_region(m->region());
    }
    if (!m->owner_id().empty()) SetLeadOwner(r, event, m->owner_id());
  } else if (const auto* m = payload.As<LeadMergedInto>()) {
    CRM_ASSIGN_OR_RETURN(auto* r, lead(m->lead_id()));
    r->set_lead_id(m->lead_id());
    r->set_merged(true);
  } else if (const auto* m = payload.As<LeadsMerged>()) {
    CRM_ASSIGN_OR_RETURN(auto* r, lead(m->merged_lead_id()));
    r->set_lead_id(m->merged_lead_id());
    r->set_merged(true);
    // Kept apart from the capture's region, which it must not override in
    // whatever order the two are read.
    CRM_ASSIGN_OR_RETURN(auto* survivor, lead(m->survivor_lead_id()));
    survivor->set_lead_id(m->survivor_lead_id());
    if (survivor->merged_region().empty()) {
      survivor->set_merged_region(m->merged_lead().region());
    }
  } else if (const auto* m = payload.As<OpportunityOpened>()) {
    CRM_ASSIGN_OR_RETURN(auto* r, opportunity(m->opportunity_id()));
    r->set_opportunity_id(m->opportunity_id());
    r->set_customer_id(event.customer_id());
    r->set_lead_id(m->lead_id());
    r->set_owner_id(m->owner_id());
    r->set_territory(m->territory());
    r->set_pipeline_id(m->pipeline_id());
    *r->mutable_opened_at() = event.occurred_at();
    if (TakeIfNewer(r->mutable_outcome_as_of(), event)) r->set_outcome(STAGE_OUTCOME_OPEN);
    if (TakeIfNewer(r->mutable_amount_as_of(), event)) *r->mutable_amount() = m->amount();
  } else if (const auto* m = payload.As<OpportunityStageChanged>()) {
    CRM_ASSIGN_OR_RETURN(auto* r, opportunity(m->opportunity_id()));
    r->set_opportunity_id(m->opportunity_id());
    r->set_customer_id(event.customer_id());
    if (TakeIfNewer(r->mutable_outcome_as_of(), event)) r->set_outcome(m->outcome());
    if (m->has_amount() && TakeIfNewer(r->mutable_amount_as_of(), event)) {
      *r->mutable_amount() = m->amount();
    }
    // A reopening's time is the time the deal sat closed: kept apart, as no
    // time in a stage of the pipeline and none of the sales cycle.
    if (m->has_time_in_previous_stage() && !m->from_stage_id().empty()) {
      auto* visits = r->mutable_stage_visits();
      auto pos = std::lower_bound(
          visits->begin(), visits->end(), event.event_id(),
          [](const StageVisit& v, const std::string& id) { return v.event_id() < id; });
      if (pos == visits->end() || pos->event_id() != event.event_id()) {
        const int index = static_cast<int>(pos - visits->begin());
        auto* v = visits->Add();
        v->set_event_id(event.event_id());
        v->set_stage_id(m->from_stage_id());
        v->set_seconds(m->time_in_previous_stage().seconds());
        v->set_closed(m->reopened());
        for (int i = visits->size() - 1; i > index; --i) visits->SwapElements(i, i - 1);
      }
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateFunnelRequest(const crm::v1::GetFunnelRequest& request) {
  const std::string& p = request.period();
  if (!p.empty()) {
    // absl's test takes any char: std::isdigit of a UTF-8 byte (negative
    // char) is undefined.
    const bool shaped = p.size() == 7 && p[4] == '-' &&
                        std::all_of(p.begin(), p.begin() + 4, absl::ascii_isdigit) &&
                        absl::ascii_isdigit(p[5]) && absl::ascii_isdigit(p[6]);
    const int month = shaped ? (p[5] - '0') * 10 + (p[6] - '0') : 0;
    if (!shaped || month < 1 || month > 12) {
      return absl::InvalidArgumentError("period: must be YYYY-MM");
    }
  }
  if (!crm::v1::LeadChannel_IsValid(request.channel())) {
    return absl::InvalidArgumentError("channel: unknown value");
  }
  if (request.territory().size() > 128) return absl::InvalidArgumentError("territory: too long");
  if (request.owner_id().size() > 128) return absl::InvalidArgumentError("owner_id: too long");
  return absl::OkStatus();
}

// What the opportunities' channel join needs of the leads, and the slices.
struct FunnelBuilder::State {
  State(const crm::v1::GetFunnelRequest& r, const CustomerMerges* m) : request(r), merges(m) {}

  // The id a customer's merge group is known by.
  std::string Person(const std::string& customer_id) const {
    if (merges == nullptr || merges->empty()) return customer_id;
    return merges->GroupOf(customer_id).primary;
  }

  bool Keep(const std::string& month, crm::v1::LeadChannel channel, const std::string& territory,
            const std::string& owner) const {
    return (request.period().empty() || month == request.period()) &&
           (request.channel() == crm::v1::LEAD_CHANNEL_UNSPECIFIED ||
            channel == request.channel()) &&
           (request.territory().empty() || auth::SameTerritory(territory, request.territory())) &&
           (request.owner_id().empty() || owner == request.owner_id());
  }

  crm::v1::GetFunnelRequest request;
  const CustomerMerges* merges;
  // Each captured lead's channel, and each person's (merge group's) source
  // channel taken from its first captured lead (ties: smaller lead id).
  struct FirstLead {
    Timestamp captured_at;
    std::string lead_id;
    crm::v1::LeadChannel channel = crm::v1::LEAD_CHANNEL_UNSPECIFIED;
  };
  absl::flat_hash_map<std::string, crm::v1::LeadChannel> channel_of_lead;
  absl::flat_hash_map<std::string, FirstLead> first_of_customer;
  Slice total;
  std::map<std::string, Slice> by_month, by_channel, by_territory, by_owner;
  // (pipeline, stage) -> (sum, samples)
  std::map<std::pair<std::string, std::string>, std::pair<int64_t, int64_t>> stage_seconds;
  int64_t cycle_sum = 0, cycle_samples = 0;
  // Leads disqualified (and not converted) before and after qualifying:
  // the funnel's real losses at those steps, unlike leads still in them.
  int64_t lost_at_qualification = 0, lost_at_conversion = 0;
};

FunnelBuilder::FunnelBuilder(const crm::v1::GetFunnelRequest& request, const CustomerMerges* merges)
    : state_(std::make_unique<State>(request, merges)) {}
FunnelBuilder::~FunnelBuilder() = default;

void FunnelBuilder::AddLead(const FunnelLeadRecord& r) {
  State& st = *state_;
  if (!r.has_captured_at()) return;  // a lead whose capture was not seen yet
  st.channel_of_lead[r.lead_id()] = r.channel();
  auto [it, inserted] = st.first_of_customer.try_emplace(st.Person(r.customer_id()));
  State::FirstLead& first = it->second;
  if (inserted || r.captured_at() < first.captured_at ||
      (r.captured_at() == first.captured_at && r.lead_id() < first.lead_id)) {
    first = {r.captured_at(), r.lead_id(), r.channel()};
  }
  if (r.merged()) return;
  const std::string month = Month(r.captured_at());
  const std::string& region = r.region().empty() ? r.merged_region() : r.region();
  if (!st.Keep(month, r.channel(), region, r.owner_id())) return;
  crm::analytics::AddLead(st.total, r);
  if (r.disqualified() && !r.converted()) {
    ++(r.qualified() ? st.lost_at_conversion : st.lost_at_qualification);
  }
  crm::analytics::AddLead(st.by_month[month], r);
  crm::analytics::AddLead(st.by_channel[ChannelKey(r.channel())], r);
  crm::analytics::AddLead(TerritorySlice(st.by_territory, region), r);
  crm::analytics::AddLead(st.by_owner[r.owner_id()], r);
}

void FunnelBuilder::AddOpportunity(const FunnelOpportunityRecord& o) {
  State& st = *state_;
  if (!o.has_opened_at()) return;  // its opening was not seen yet
  crm::v1::LeadChannel channel = crm::v1::LEAD_CHANNEL_UNSPECIFIED;
  if (auto it = st.channel_of_lead.find(o.lead_id()); it != st.channel_of_lead.end()) {
    channel = it->second;
  } else if (auto first = st.first_of_customer.find(st.Person(o.customer_id()));
             first != st.first_of_customer.end()) {
    channel = first->second.channel;
  }
  const std::string month = Month(o.opened_at());
  if (!st.Keep(month, channel, o.territory(), o.owner_id())) return;
  crm::analytics::AddOpportunity(st.total, o);
  crm::analytics::AddOpportunity(st.by_month[month], o);
  crm::analytics::AddOpportunity(st.by_channel[ChannelKey(channel)], o);
  crm::analytics::AddOpportunity(TerritorySlice(st.by_territory, o.territory()), o);
  crm::analytics::AddOpportunity(st.by_owner[o.owner_id()], o);
  int64_t closed_seconds = 0;
  for (const auto& v : o.stage_visits()) {
    // Held to a Duration's range and not negative, whatever a producer sent
    // (and a record stored before kept): the averages sum these.
    const int64_t seconds =
        std::clamp<int64_t>(v.seconds(), 0, google::protobuf::util::TimeUtil::kDurationMaxSeconds);
    if (v.closed()) {
      closed_seconds = SaturatingAdd(closed_seconds, seconds);
      continue;
    }
    auto& [sum, samples] = st.stage_seconds[{o.pipeline_id(), v.stage_id()}];
    sum = SaturatingAdd(sum, seconds);
    ++samples;
  }
  if (o.outcome() == crm::v1::STAGE_OUTCOME_WON) {
    // Times the envelope check bounds, less the time spent closed.
    const int64_t cycle =
        SaturatingAdd(o.outcome_as_of().at().seconds() - o.opened_at().seconds(), -closed_seconds);
    st.cycle_sum = SaturatingAdd(st.cycle_sum, cycle);
    ++st.cycle_samples;
  }
}

crm::v1::Funnel FunnelBuilder::Finish() {
  State& st = *state_;
  crm::v1::Funnel funnel;
  *funnel.mutable_total() = st.total.Finish("");
  for (const auto& [stage, acc] : st.stage_seconds) {
    auto* stage_time = funnel.add_stage_times();
    stage_time->set_pipeline_id(stage.first);
    stage_time->set_stage_id(stage.second);
    stage_time->set_average_seconds(Ratio(acc.first, acc.second));
    stage_time->set_samples(acc.second);
  }
  funnel.set_average_sales_cycle_seconds(Ratio(st.cycle_sum, st.cycle_samples));
  // What each step lost for good: leads disqualified there and deals lost.
  // Leads and deals still in a step are not lost (a month's new leads made
  // "qualification" the biggest drop by their number).
  const std::pair<const char*, int64_t> drops[] = {
      {"qualification", st.lost_at_qualification},
      {"conversion", st.lost_at_conversion},
      {"close", funnel.total().lost()},
  };
  for (const auto& [step, lost] : drops) {
    if (lost > funnel.biggest_drop_count()) {
      funnel.set_biggest_drop_step(step);
      funnel.set_biggest_drop_count(lost);
    }
  }
  Emit(st.by_month, funnel.mutable_by_month());
  Emit(st.by_channel, funnel.mutable_by_channel());
  Emit(st.by_territory, funnel.mutable_by_territory());
  Emit(st.by_owner, funnel.mutable_by_owner());
  return funnel;
}

crm::v1::Funnel ComputeFunnel(const std::vector<FunnelLeadRecord>& leads,
                              const std::vector<FunnelOpportunityRecord>& opportunities,
                              const crm::v1::GetFunnelRequest& request,
                              const CustomerMerges* merges) {
  FunnelBuilder builder(request, merges);
  for (const auto& r : leads) builder.AddLead(r);
  for (const auto& o : opportunities) builder.AddOpportunity(o);
  return builder.Finish();
}

}  // namespace crm::analytics
