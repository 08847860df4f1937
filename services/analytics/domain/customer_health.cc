#include "services/analytics/domain/customer_health.h"

#include <algorithm>
#include <limits>
#include <map>
#include <vector>

#include "absl/algorithm/container.h"
#include "absl/strings/str_cat.h"
#include "crm/v1/sales.pb.h"
#include "crm/v1/service_desk.pb.h"
#include "google/protobuf/util/time_util.h"
#include "libs/common/arithmetic.h"

namespace crm::analytics {
namespace {

using crm::v1::Customer360;
using google::protobuf::Timestamp;

constexpr int64_t kDay = 86400;

// Whole days from `t` to `now`; 0 when `t` is later.
int64_t DaysSince(const Timestamp& t, const Timestamp& now) {
  return std::max<int64_t>(0, (now.seconds() - t.seconds()) / kDay);
}

// Days since the customer's latest event; 0 for a view without events.
int64_t IdleDays(const Customer360& view, const Timestamp& now) {
  return view.has_last_seen() ? DaysSince(view.last_seen(), now) : 0;
}

// `weight` scaled by how far `amount` went towards `full` (integers only, so
// the score is the same on every machine).
int32_t Scaled(int32_t weight, int64_t amount, int64_t full) {
  if (full <= 0 || weight == 0) return 0;
  return static_cast<int32_t>(weight * std::clamp<int64_t>(amount, 0, full) / full);
}

// The customer's latest purchase: an order, or a deal won (a deal won
// without a quote has no order, and its customer is a buying one).
const Timestamp* LatestPurchaseTime(const Customer360& view) {
  const Timestamp* latest = nullptr;
  auto take = [&](const Timestamp& t) {
    if (latest == nullptr || *latest < t) latest = &t;
  };
  for (const auto& o : view.orders()) take(o.placed_at());
  for (const auto& o : view.opportunities()) {
    if (o.outcome() == crm::v1::STAGE_OUTCOME_WON) take(o.as_of().at());
  }
  return latest;
}

// Points for a falling CSAT: the latest rating against the average of the
// earlier ones; a drop of 4 (5 -> 1) is the full weight.
int32_t FallingCsatPoints(const Customer360& view, int32_t weight) {
  std::vector<const crm::v1::TicketSummary*> rated;
  for (const auto& t : view.tickets()) {
    if (t.csat_score() > 0) rated.push_back(&t);
  }
  if (rated.size() < 2) return 0;
  std::sort(rated.begin(), rated.end(), [](const auto* a, const auto* b) {
    if (a->csat_as_of().at() != b->csat_as_of().at()) {
      return a->csat_as_of().at() < b->csat_as_of().at();
    }
    return a->csat_as_of().event_id() < b->csat_as_of().event_id();
  });
  const int64_t earlier_count = static_cast<int64_t>(rated.size()) - 1;
  int64_t earlier_sum = 0;
  for (size_t i = 0; i + 1 < rated.size(); ++i) earlier_sum += rated[i]->csat_score();
  const int64_t drop = earlier_sum - rated.back()->csat_score() * earlier_count;
  return Scaled(weight, drop, 4 * earlier_count);
}

void AddFactor(Customer360& view, const char* name, int32_t points) {
  if (points <= 0) return;
  auto* f = view.add_churn_risk_factors();
  f->set_name(name);
  f->set_points(points);
}

void Score(Customer360& view, const Timestamp& now, const crm::v1::AnalyticsSettings& s) {
  view.clear_churn_risk_factors();
  if (const Timestamp* last = LatestPurchaseTime(view); last != nullptr) {
    AddFactor(view, "order_recency",
              Scaled(s.order_recency_weight(), DaysSince(*last, now), s.order_recency_days()));
  }
  AddFactor(view, "activity_recency",
            Scaled(s.activity_recency_weight(), IdleDays(view, now), s.activity_recency_days()));
  AddFactor(view, "open_tickets", Scaled(s.open_tickets_weight(), view.open_ticket_count(), 3));
  AddFactor(view, "breached_tickets",
            Scaled(s.breached_tickets_weight(), view.breached_ticket_count(), 2));
  AddFactor(view, "falling_csat", FallingCsatPoints(view, s.falling_csat_weight()));
  int32_t total = 0;
  for (const auto& f : view.churn_risk_factors()) total += f.points();
  view.set_churn_risk_score(std::min(total, 100));
}

// Orders so far plus the expected ones: the customer's yearly order value
// (over at least a year, so one recent order does not extrapolate wildly)
// times the horizon, times the chance of staying (100 - risk) %.
void EstimateClv(Customer360& view, const Timestamp& now, const crm::v1::AnalyticsSettings& s,
                 bool churned) {
  struct Acc {
    int64_t sum = 0;
    Timestamp first;
  };
  std::map<std::string, Acc> by_currency;
  for (const auto& o : view.orders()) {
    auto [it, inserted] = by_currency.try_emplace(o.total().currency());
    it->second.sum = SaturatingAdd(it->second.sum, o.total().minor_units());
    if (inserted || o.placed_at() < it->second.first) it->second.first = o.placed_at();
  }
  view.clear_clv_estimate();
  const int64_t stay = churned ? 0 : 100 - view.churn_risk_score();
  for (const auto& [currency, acc] : by_currency) {
    const int64_t span_days = std::max<int64_t>(DaysSince(acc.first, now), 365);
    const __int128 future = static_cast<__int128>(acc.sum) * 365 * s.clv_horizon_years() * stay /
                            (static_cast<__int128>(span_days) * 100);
    auto* m = view.add_clv_estimate();
    m->set_currency(currency);
    // Held at the int64 bounds like the lifetime value it extends.
    const __int128 total = static_cast<__int128>(acc.sum) + future;
    m->set_minor_units(static_cast<int64_t>(std::clamp<__int128>(
        total, std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max())));
  }
}

}  // namespace

bool IsBuyingCustomer(const Customer360& stored_view) {
  return stored_view.orders_size() > 0 ||
         std::any_of(stored_view.opportunities().begin(), stored_view.opportunities().end(),
                     [](const auto& o) { return o.outcome() == crm::v1::STAGE_OUTCOME_WON; });
}

void DeriveHealth(Customer360& view, const Timestamp& now, const AnalyticsConfig& config) {
  const auto& s = config.settings();
  const bool customer = IsBuyingCustomer(view);
  // Views stored by earlier releases reached CUSTOMER on a win for good.
  if (customer) {
    view.set_lifecycle_stage(crm::v1::LIFECYCLE_STAGE_CUSTOMER);
  } else if (view.lifecycle_stage() >= crm::v1::LIFECYCLE_STAGE_CUSTOMER) {
    view.set_lifecycle_stage(crm::v1::LIFECYCLE_STAGE_PROSPECT);
  }
  const int64_t idle_days = IdleDays(view, now);
  const bool churned = customer && idle_days >= s.churned_after_days();
  Score(view, now, s);
  EstimateClv(view, now, s, churned);
  *view.mutable_scored_at() = now;

  view.clear_segments();
  if (churned) {
    view.add_segments(crm::v1::SEGMENT_CHURNED);
    view.set_lifecycle_stage(crm::v1::LIFECYCLE_STAGE_CHURNED);
    return;
  }
  const bool dormant = idle_days >= s.dormant_after_days();
  const bool high_value =
      std::any_of(view.lifetime_value().begin(), view.lifetime_value().end(), [&](const auto& m) {
        const auto& own = s.high_value_minor_units_by_currency();
        const auto it = own.find(m.currency());
        return m.minor_units() >= (it != own.end() ? it->second : s.high_value_minor_units());
      });
  // A lead score makes a prospect only while that lead is still in play:
  // a person whose scored lead sales disqualified is not one for the score
  // of a lead merged away, nor one fewer for a low-scored duplicate inquiry.
  // Counted among the view's own leads only: a merge names the merged lead
  // in the survivor's view too, which lists it once the group is joined.
  const auto& leads = view.lead_disqualifications();
  // In a view stored before leads kept their own scores the person's score
  // stands in. Elsewhere a lead not scored yet (its capture not read yet)
  // borrows no other lead's score.
  const bool scores_per_lead = view.tracks_lead_scores();
  const bool scored_lead_in_play =
      std::any_of(view.lead_ids().begin(), view.lead_ids().end(), [&](const std::string& id) {
        auto d =
            std::lower_bound(leads.begin(), leads.end(), id,
                             [](const auto& x, const std::string& k) { return x.lead_id() < k; });
        const bool found = d != leads.end() && d->lead_id() == id;
        if (found && (d->disqualified() || d->merged())) return false;
        if (!scores_per_lead) return view.lead_score() >= s.potential_min_lead_score();
        return found && d->has_score_as_of() && d->score() >= s.potential_min_lead_score();
      });
  // A buying customer (an order or a won deal) is no prospect: another deal
  // is an upsell.
  const bool potential =
      !customer && !dormant && (view.open_opportunity_count() > 0 || scored_lead_in_play);
  const bool at_risk = customer && view.churn_risk_score() >= s.churn_risk_threshold();
  if (high_value) view.add_segments(crm::v1::SEGMENT_HIGH_VALUE);
  if (potential) view.add_segments(crm::v1::SEGMENT_POTENTIAL);
  if (at_risk) view.add_segments(crm::v1::SEGMENT_AT_RISK);
  if (dormant) view.add_segments(crm::v1::SEGMENT_DORMANT);
  if (at_risk) view.set_lifecycle_stage(crm::v1::LIFECYCLE_STAGE_AT_RISK);
}

std::string SegmentName(crm::v1::Segment segment) {
  switch (segment) {
    case crm::v1::SEGMENT_HIGH_VALUE:
      return "high-value";
    case crm::v1::SEGMENT_POTENTIAL:
      return "potential";
    case crm::v1::SEGMENT_AT_RISK:
      return "at-risk";
    case crm::v1::SEGMENT_DORMANT:
      return "dormant";
    case crm::v1::SEGMENT_CHURNED:
      return "churned";
    default:
      return "unspecified";
  }
}

ChurnAlertDecision DecideChurnAlert(const crm::v1::ChurnAlertState& previous,
                                    const Customer360& view, const AnalyticsConfig& config) {
  ChurnAlertDecision d;
  d.state = previous;
  const int32_t threshold = config.settings().churn_risk_threshold();
  // At risk as the segments say (DeriveHealth): a churned customer, gone
  // past churned_after_days, is no longer one to keep, whatever the score.
  const bool risky = absl::c_linear_search(view.segments(), crm::v1::SEGMENT_AT_RISK) &&
                     view.churn_risk_score() >= threshold;
  if (!risky) {
    // Below the threshold again: the next crossing raises a new alert.
    if (previous.raised()) {
      d.state.set_raised(false);
      d.state.set_score(view.churn_risk_score());
      d.state_changed = true;
    }
    return d;
  }
  if (previous.raised()) return d;
  crm::v1::ChurnRiskRaised e;
  e.set_customer_id(view.customer_id());
  e.set_score(view.churn_risk_score());
  e.set_threshold(threshold);
  *e.mutable_factors() = view.churn_risk_factors();
  e.set_owner_id(view.owner_id());
  e.set_cause_event_id(view.last_event().event_id());
  *e.mutable_evaluated_at() = view.scored_at();
  *e.mutable_lifetime_value() = view.lifetime_value();
  *e.mutable_clv_estimate() = view.clv_estimate();
  *e.mutable_merged_customer_ids() = view.merged_customer_ids();
  d.state.set_raised(true);
  d.state.set_crossings(previous.crossings() + 1);
  d.state.set_cause_event_id(e.cause_event_id());
  d.state.set_score(e.score());
  d.state_changed = true;
  d.raised = std::move(e);
  return d;
}

std::string ChurnRequestKey(const crm::v1::ChurnRiskRaised& raised, int32_t crossing) {
  std::string key = absl::StrCat("churn-risk/", raised.customer_id(), "/", raised.cause_event_id());
  // The first crossing keeps the key it had before crossings were counted.
  if (crossing > 1) absl::StrAppend(&key, "/", crossing);
  return key;
}

}  // namespace crm::analytics
