#include "services/analytics/domain/customer_health.h"

#include <algorithm>
#include <limits>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "services/analytics/domain/customer_view.h"
#include "services/analytics/testing/events.h"

namespace crm::analytics {
namespace {

using namespace crm::analytics::testing;
using crm::v1::Customer360;
using crm::v1::EventEnvelope;

// Given events folded into a stored view, when derived at day `day`.
Customer360 DerivedAt(const std::vector<EventEnvelope>& given, int64_t day,
                      const AnalyticsConfig& config = AnalyticsConfig::Defaults()) {
  Customer360 view;
  for (const auto& e : given) ApplyToView(view, e);
  google::protobuf::Timestamp now;
  now.set_seconds(day * kDay);
  DeriveHealth(view, now, config);
  return view;
}

std::vector<crm::v1::Segment> Segments(const Customer360& view) {
  std::vector<crm::v1::Segment> out;
  for (int s : view.segments()) out.push_back(static_cast<crm::v1::Segment>(s));
  return out;
}

int32_t Factor(const Customer360& view, const std::string& name) {
  for (const auto& f : view.churn_risk_factors()) {
    if (f.name() == name) return f.points();
  }
  return 0;
}

TEST(CustomerHealthTest, RecentBigBuyerIsHighValueWithLowRiskAndAClvAboveItsOrders) {
  const auto view = DerivedAt({OrderPlacedAt("cus_1", "o1", 2000000, 0)}, 10);
  // order 45*10/180 = 2, activity 25*10/90 = 2.
  EXPECT_EQ(view.churn_risk_score(), 4);
  EXPECT_EQ(Segments(view), std::vector{crm::v1::SEGMENT_HIGH_VALUE});
  EXPECT_EQ(view.lifecycle_stage(), crm::v1::LIFECYCLE_STAGE_CUSTOMER);
  ASSERT_EQ(view.clv_estimate_size(), 1);
  // 2,000,000 so far + 2,000,000 a year * 3 years * 96 % staying.
  EXPECT_EQ(view.clv_estimate(0).minor_units(), 2000000 + 5760000);
  EXPECT_EQ(view.scored_at().seconds(), 10 * kDay);
}

TEST(CustomerHealthTest, SilentCustomerCrossesIntoAtRiskAsEventTimePasses) {
  const std::vector<EventEnvelope> given = {OrderPlacedAt("cus_1", "o1", 500, 0)};
  const auto day120 = DerivedAt(given, 120);
  EXPECT_EQ(day120.churn_risk_score(), 30 + 25);
  EXPECT_EQ(day120.lifecycle_stage(), crm::v1::LIFECYCLE_STAGE_CUSTOMER);
  EXPECT_EQ(Segments(day120), std::vector{crm::v1::SEGMENT_DORMANT});

  const auto day150 = DerivedAt(given, 150);
  EXPECT_EQ(Factor(day150, "order_recency"), 37);
  EXPECT_EQ(Factor(day150, "activity_recency"), 25);
  EXPECT_EQ(day150.churn_risk_score(), 62);
  EXPECT_EQ(day150.lifecycle_stage(), crm::v1::LIFECYCLE_STAGE_AT_RISK);
  EXPECT_EQ(Segments(day150), (std::vector{crm::v1::SEGMENT_AT_RISK, crm::v1::SEGMENT_DORMANT}));
}

TEST(CustomerHealthTest, CustomerSilentPastTheChurnWindowIsOnlyChurnedAndKeepsNoFutureValue) {
  const auto view = DerivedAt({OrderPlacedAt("cus_1", "o1", 2000000, 0)}, 400);
  EXPECT_EQ(Segments(view), std::vector{crm::v1::SEGMENT_CHURNED});
  EXPECT_EQ(view.lifecycle_stage(), crm::v1::LIFECYCLE_STAGE_CHURNED);
  ASSERT_EQ(view.clv_estimate_size(), 1);
  EXPECT_EQ(view.clv_estimate(0).minor_units(), 2000000);
  // Gone, not at risk: no retention call for a customer lost a month ago,
  // and an alert raised while at risk is cleared.
  EXPECT_GE(view.churn_risk_score(), 60);
  EXPECT_FALSE(DecideChurnAlert({}, view, AnalyticsConfig::Defaults()).raised.has_value());
  crm::v1::ChurnAlertState raised;
  raised.set_raised(true);
  EXPECT_FALSE(DecideChurnAlert(raised, view, AnalyticsConfig::Defaults()).state.raised());
}

crm::v1::EventEnvelope StageChangedAt(const std::string& to_stage, crm::v1::StageOutcome outcome,
                                      int64_t version, int64_t day, bool reopened = false) {
  crm::v1::OpportunityStageChanged m;
  m.set_opportunity_id("opp_1");
  m.set_to_stage_id(to_stage);
  m.set_outcome(outcome);
  m.set_reopened(reopened);
  return Envelope(m, "cus_1", absl::StrCat("e", version), "opportunity-opp_1", version, day * kDay);
}

// A pipeline may reopen a won deal: the person bought nothing, so a year
// later they are a prospect gone quiet, not a churned customer, and no
// churn alert may name them.
TEST(CustomerHealthTest, AWonDealReopenedAndLostLeavesAProspect) {
  crm::v1::OpportunityOpened opened;
  opened.set_opportunity_id("opp_1");
  opened.set_stage_id("qualify");
  std::vector<EventEnvelope> given = {Envelope(opened, "cus_1", "e1", "opportunity-opp_1", 1, 0),
                                      StageChangedAt("won", crm::v1::STAGE_OUTCOME_WON, 2, 1)};
  const auto won = DerivedAt(given, 2);
  EXPECT_TRUE(IsBuyingCustomer(won));
  EXPECT_EQ(won.lifecycle_stage(), crm::v1::LIFECYCLE_STAGE_CUSTOMER);

  given.push_back(StageChangedAt("qualify", crm::v1::STAGE_OUTCOME_OPEN, 3, 3, /*reopened=*/true));
  given.push_back(StageChangedAt("lost", crm::v1::STAGE_OUTCOME_LOST, 4, 4));
  for (const auto& order : {given, std::vector<EventEnvelope>(given.rbegin(), given.rend())}) {
    const auto view = DerivedAt(order, 400);
    EXPECT_FALSE(IsBuyingCustomer(view));
    EXPECT_EQ(view.lifecycle_stage(), crm::v1::LIFECYCLE_STAGE_PROSPECT);
    EXPECT_EQ(Segments(view), std::vector{crm::v1::SEGMENT_DORMANT});
    EXPECT_FALSE(DecideChurnAlert({}, view, AnalyticsConfig::Defaults()).raised.has_value());
  }
}

// A deal won without a quote has no order: its customer still buys, and
// goes at risk as time passes since the win.
TEST(CustomerHealthTest, ACustomerWhoseOnlyPurchaseIsAWonDealGoesAtRisk) {
  crm::v1::OpportunityOpened opened;
  opened.set_opportunity_id("opp_1");
  opened.set_stage_id("qualify");
  const std::vector<EventEnvelope> given = {
      Envelope(opened, "cus_1", "e1", "opportunity-opp_1", 1, 0),
      StageChangedAt("won", crm::v1::STAGE_OUTCOME_WON, 2, 1)};
  const auto view = DerivedAt(given, 151);
  // order 45*150/180 = 37, activity 25*150/90 capped = 25.
  EXPECT_EQ(Factor(view, "order_recency"), 37);
  EXPECT_EQ(view.churn_risk_score(), 62);
  EXPECT_EQ(view.lifecycle_stage(), crm::v1::LIFECYCLE_STAGE_AT_RISK);
  EXPECT_TRUE(DecideChurnAlert({}, view, AnalyticsConfig::Defaults()).raised.has_value());
}

// A won deal makes a buying customer, order or not: another deal still
// open is an upsell, not a prospect's, and the customer going quiet is at
// risk, never potential and at risk at once.
TEST(CustomerHealthTest, ACustomerWithAWonDealIsNotPotentialWhileAnotherIsOpen) {
  std::vector<EventEnvelope> given;
  for (const char* id : {"opp_1", "opp_2"}) {
    crm::v1::OpportunityOpened opened;
    opened.set_opportunity_id(id);
    opened.set_stage_id("qualify");
    given.push_back(Envelope(opened, "cus_1", absl::StrCat("open-", id),
                             absl::StrCat("opportunity-", id), 1, 0));
  }
  EXPECT_EQ(Segments(DerivedAt(given, 1)), std::vector{crm::v1::SEGMENT_POTENTIAL});
  given.push_back(StageChangedAt("won", crm::v1::STAGE_OUTCOME_WON, 2, 1));
  const auto won = DerivedAt(given, 2);
  EXPECT_EQ(won.open_opportunity_count(), 1);
  EXPECT_EQ(won.lifecycle_stage(), crm::v1::LIFECYCLE_STAGE_CUSTOMER);
  EXPECT_TRUE(won.segments().empty());
  EXPECT_EQ(Segments(DerivedAt(given, 151)),
            (std::vector{crm::v1::SEGMENT_AT_RISK, crm::v1::SEGMENT_DORMANT}));
}

// The estimate extends the lifetime value and holds at the same bound.
TEST(CustomerHealthTest, ClvEstimateOfAHugeBuyerHoldsAtTheLargestAmount) {
  const auto view = DerivedAt({OrderPlacedAt("cus_1", "o1", int64_t{1} << 61, 0)}, 1);
  ASSERT_EQ(view.clv_estimate_size(), 1);
  EXPECT_EQ(view.clv_estimate(0).minor_units(), std::numeric_limits<int64_t>::max());
}

TEST(CustomerHealthTest, WarmLeadIsPotentialUntilItGoesDormantAndNeverAtRisk) {
  const std::vector<EventEnvelope> given = {LeadCapturedAt("cus_1", "lead_1", 70, 0)};
  const auto fresh = DerivedAt(given, 1);
  EXPECT_EQ(Segments(fresh), std::vector{crm::v1::SEGMENT_POTENTIAL});
  EXPECT_EQ(fresh.lifecycle_stage(), crm::v1::LIFECYCLE_STAGE_LEAD);
  const auto cold = DerivedAt(given, 400);
  EXPECT_EQ(Segments(cold), std::vector{crm::v1::SEGMENT_DORMANT});
  EXPECT_EQ(cold.lifecycle_stage(), crm::v1::LIFECYCLE_STAGE_LEAD);
  EXPECT_TRUE(DerivedAt({LeadCapturedAt("cus_1", "lead_1", 10, 0)}, 1).segments().empty());
}

// A lead sales disqualified is no prospect, whatever its score; taken back
// into nurture it is one again, and a second lead still in play is one too.
// In any order the events arrive, and across a merged group.
TEST(CustomerHealthTest, ALeadDisqualifiedIsNotPotentialByItsScore) {
  crm::v1::LeadDisqualified disqualified;
  disqualified.set_lead_id("lead_1");
  disqualified.set_reason("no budget");
  crm::v1::LeadNurtureStarted nurtured;
  nurtured.set_lead_id("lead_1");
  const auto captured = LeadCapturedAt("cus_1", "lead_1", 70, 0);
  const auto out = Envelope(disqualified, "cus_1", "evt-disq", "lead-lead_1", 2, kDay);
  const auto back = Envelope(nurtured, "cus_1", "evt-nurture", "lead-lead_1", 3, 2 * kDay);
  for (const auto& given :
       {std::vector<EventEnvelope>{captured, out}, std::vector<EventEnvelope>{out, captured}}) {
    EXPECT_TRUE(DerivedAt(given, 3).segments().empty());
  }
  for (const auto& given : {std::vector<EventEnvelope>{captured, out, back},
                            std::vector<EventEnvelope>{back, out, captured}}) {
    EXPECT_EQ(Segments(DerivedAt(given, 3)), std::vector{crm::v1::SEGMENT_POTENTIAL});
  }
  EXPECT_EQ(
      Segments(DerivedAt({captured, out, LeadCapturedAt("cus_1", "lead_2", 70, 2 * kDay)}, 3)),
      std::vector{crm::v1::SEGMENT_POTENTIAL});
  // A duplicate merged into the disqualified lead is no lead in play; the
  // survivor's view alone (naming the merged lead it does not list) is.
  crm::v1::LeadsMerged merged;
  merged.set_survivor_lead_id("lead_1");
  merged.set_merged_lead_id("lead_2");
  const auto merge = Envelope(merged, "cus_1", "evt-merge", "lead-lead_1", 4, 2 * kDay);
  EXPECT_TRUE(DerivedAt({captured, LeadCapturedAt("cus_1", "lead_2", 70, kDay), merge, out}, 3)
                  .segments()
                  .empty());
  EXPECT_EQ(Segments(DerivedAt({captured, merge}, 3)), std::vector{crm::v1::SEGMENT_POTENTIAL});
  // Merged: the group's views joined keep the disqualification.
  Customer360 group = DerivedAt({captured}, 3);
  const Customer360 other = DerivedAt({out}, 3);
  JoinView(group, other);
  google::protobuf::Timestamp now;
  now.set_seconds(3 * kDay);
  DeriveHealth(group, now, AnalyticsConfig::Defaults());
  EXPECT_TRUE(group.segments().empty());
}

// The score that makes a person potential is that of a lead still in play,
// not whichever of their leads scored last.
TEST(CustomerHealthTest, PotentialGoesByTheScoreOfALeadInPlay) {
  crm::v1::LeadDisqualified disqualified;
  disqualified.set_lead_id("lead_2");
  const auto low_open = LeadCapturedAt("cus_1", "lead_1", 20, 0);
  const auto high_later = LeadCapturedAt("cus_1", "lead_2", 80, kDay);
  const auto out = Envelope(disqualified, "cus_1", "evt-disq", "lead-lead_2", 2, 2 * kDay);
  for (const auto& given : {std::vector<EventEnvelope>{low_open, high_later, out},
                            std::vector<EventEnvelope>{out, high_later, low_open}}) {
    const Customer360 view = DerivedAt(given, 3);
    EXPECT_EQ(view.lead_score(), 80);
    EXPECT_TRUE(view.segments().empty()) << "the only lead in play scores 20";
  }
  // A low-scored duplicate inquiry does not hide a high-scored open lead.
  const auto high_open = LeadCapturedAt("cus_1", "lead_1", 85, 0);
  const auto low_later = LeadCapturedAt("cus_1", "lead_2", 15, kDay);
  for (const auto& given : {std::vector<EventEnvelope>{high_open, low_later},
                            std::vector<EventEnvelope>{low_later, high_open}}) {
    EXPECT_EQ(Segments(DerivedAt(given, 3)), std::vector{crm::v1::SEGMENT_POTENTIAL});
  }
  // Joined views keep each lead's own score.
  Customer360 group = DerivedAt({low_later}, 3);
  JoinView(group, DerivedAt({high_open}, 3));
  google::protobuf::Timestamp now;
  now.set_seconds(3 * kDay);
  DeriveHealth(group, now, AnalyticsConfig::Defaults());
  EXPECT_EQ(Segments(group), std::vector{crm::v1::SEGMENT_POTENTIAL});
  // A lead whose capture was not read yet borrows no other lead's score.
  crm::v1::LeadQualified qualified;
  qualified.set_lead_id("lead_1");
  const auto early = Envelope(qualified, "cus_1", "evt-qual", "lead-lead_1", 2, kDay);
  EXPECT_TRUE(DerivedAt({early, high_later, out}, 3).segments().empty());
  // A view stored before leads kept their scores goes by the view's score.
  Customer360 stored = DerivedAt({high_open}, 3);
  for (auto& d : *stored.mutable_lead_disqualifications()) d.clear_score_as_of();
  stored.set_tracks_lead_scores(false);
  stored.set_lead_score(10);
  DeriveHealth(stored, now, AnalyticsConfig::Defaults());
  EXPECT_TRUE(stored.segments().empty());
}

TEST(CustomerHealthTest, OpenAndBreachedTicketsAndAFallingCsatAddRisk) {
  const auto view = DerivedAt(
      {
          OrderPlacedAt("cus_1", "o1", 500, 0),
          TicketOpenedAt("cus_1", "t1", 1 * kDay),
          TicketEvent(Resolved("t1"), "cus_1", "t1", 2, 1 * kDay + 10),
          TicketEvent(Csat("t1", 5), "cus_1", "t1", 3, 1 * kDay + 20),
          TicketOpenedAt("cus_1", "t2", 2 * kDay),
          TicketEvent(Breached("t2", "team"), "cus_1", "t2", 2, 2 * kDay + 5),
          TicketEvent(Resolved("t2"), "cus_1", "t2", 3, 2 * kDay + 10),
          TicketEvent(Csat("t2", 1), "cus_1", "t2", 4, 2 * kDay + 20),
          TicketOpenedAt("cus_1", "t3", 3 * kDay),
          TicketEvent(Breached("t3", "team"), "cus_1", "t3", 2, 3 * kDay + 5),
      },
      3);
  EXPECT_EQ(Factor(view, "open_tickets"), 3);       // 1 of 3
  EXPECT_EQ(Factor(view, "breached_tickets"), 10);  // 2 of 2
  EXPECT_EQ(Factor(view, "falling_csat"), 10);      // 5 -> 1
  EXPECT_EQ(Factor(view, "order_recency"), 0);
  EXPECT_EQ(view.churn_risk_score(), 23);
}

TEST(CustomerHealthTest, RisingCsatAddsNoRisk) {
  const auto view = DerivedAt(
      {
          TicketOpenedAt("cus_1", "t1", 0),
          TicketEvent(Csat("t1", 2), "cus_1", "t1", 2, 10),
          TicketOpenedAt("cus_1", "t2", 20),
          TicketEvent(Csat("t2", 5), "cus_1", "t2", 2, 30),
      },
      0);
  EXPECT_EQ(Factor(view, "falling_csat"), 0);
}

TEST(CustomerHealthTest, OwnChurnAlertIsOnTheTimelineButIsNoActivity) {
  crm::v1::ChurnRiskRaised raised;
  raised.set_customer_id("cus_1");
  raised.set_score(62);
  raised.set_threshold(60);
  Customer360 view;
  ApplyToView(view, OrderPlacedAt("cus_1", "o1", 500, 0));
  const auto entry =
      ApplyToView(view, Envelope(raised, "cus_1", "evt-churn", "churnrisk-cus_1", 1, 150 * kDay));
  EXPECT_EQ(entry.summary(), "Churn risk raised: score 62 (threshold 60)");
  EXPECT_EQ(view.event_count(), 2);
  EXPECT_EQ(view.last_seen().seconds(), 0);
  EXPECT_EQ(view.last_event().event_id(), "evt-order-o1");
}

// Timers report that nothing happened: a stale deal, a breached SLA, a
// reminder, a warranty running out. A customer silent for 150 days stays at
// risk and dormant however many of them arrive.
TEST(CustomerHealthTest, EventsRaisedByTimersAreNoActivity) {
  crm::v1::OpportunityWentStale stale;
  stale.set_opportunity_id("opp_1");
  crm::v1::TaskReminderRaised reminder;
  reminder.set_task_id("task_1");
  crm::v1::TicketSlaWarningRaised warning;
  warning.set_ticket_id("t1");
  crm::v1::TicketSlaBreached breached;
  breached.set_ticket_id("t1");
  crm::v1::TicketEscalated escalated;
  escalated.set_ticket_id("t1");
  crm::v1::TeamLeadNotified notified;
  notified.set_ticket_id("t1");
  crm::v1::WarrantyFollowUpRequested warranty;
  warranty.set_order_id("o1");
  const std::vector<EventEnvelope> signals = {
      Envelope(stale, "cus_1", "evt-stale", "opportunity-opp_1", 2, 100 * kDay),
      Envelope(reminder, "cus_1", "evt-reminder", "task-task_1", 2, 110 * kDay),
      Envelope(warning, "cus_1", "evt-warning", "ticket-t1", 2, 120 * kDay),
      Envelope(breached, "cus_1", "evt-breached", "ticket-t1", 3, 130 * kDay),
      Envelope(escalated, "cus_1", "evt-escalated", "ticket-t1", 4, 130 * kDay),
      Envelope(notified, "cus_1", "evt-notified", "ticket-t1", 5, 130 * kDay),
      Envelope(warranty, "cus_1", "evt-warranty", "warranty-o1", 1, 140 * kDay),
  };
  crm::v1::TicketClosed closed;
  closed.set_ticket_id("t1");
  std::vector<EventEnvelope> given = {OrderPlacedAt("cus_1", "o1", 500, 0)};
  given.insert(given.end(), signals.begin(), signals.end());
  // Closed by the desk's timer when the reopen window ended.
  given.push_back(Envelope(closed, "cus_1", "evt-closed", "ticket-t1", 6, 145 * kDay));
  given.back().set_actor("system:timer");
  const auto view = DerivedAt(given, 150);
  EXPECT_EQ(view.event_count(), 9);
  EXPECT_EQ(view.last_seen().seconds(), 0);
  EXPECT_EQ(view.last_event().event_id(), "evt-order-o1");
  EXPECT_EQ(Factor(view, "activity_recency"), 25);
  EXPECT_EQ(view.lifecycle_stage(), crm::v1::LIFECYCLE_STAGE_AT_RISK);
  EXPECT_EQ(Segments(view), (std::vector{crm::v1::SEGMENT_AT_RISK, crm::v1::SEGMENT_DORMANT}));

  // Closed by an agent, it is.
  given.back().set_actor("agent:ann");
  EXPECT_EQ(DerivedAt(given, 150).last_seen().seconds(), 145 * kDay);
}

// Sales answers a churn alert with a retention-call task, stamped at the
// alert's time: were that activity, the alert would clear itself.
TEST(CustomerHealthTest, ATaskSalesOpensForAnAlertIsNoActivity) {
  crm::v1::TaskCreated task;
  task.set_task_id("task_1");
  task.set_customer_id("cus_1");
  std::vector<EventEnvelope> given = {
      OrderPlacedAt("cus_1", "o1", 500, 0),
      Envelope(task, "cus_1", "evt-task", "task-task_1", 1, 140 * kDay)};
  given.back().set_actor("system:sales");
  const auto view = DerivedAt(given, 150);
  EXPECT_EQ(view.event_count(), 2);
  EXPECT_EQ(view.last_seen().seconds(), 0);
  EXPECT_EQ(Factor(view, "activity_recency"), 25);
  EXPECT_EQ(view.lifecycle_stage(), crm::v1::LIFECYCLE_STAGE_AT_RISK);

  // A task a rep creates for the customer is.
  given.back().set_actor("user:rep-1");
  EXPECT_EQ(DerivedAt(given, 150).last_seen().seconds(), 140 * kDay);
}

// A rep writing up an old call: the call is the activity, at its own time.
TEST(CustomerHealthTest, AnActivityWrittenUpLaterCountsAtItsOwnTime) {
  crm::v1::ActivityLogged call;
  call.set_activity_id("act_1");
  call.set_customer_id("cus_1");
  call.set_kind(crm::v1::ACTIVITY_KIND_CALL);
  call.mutable_occurred_at()->set_seconds(20 * kDay);
  crm::v1::LeadActivityRecorded visit;
  visit.set_lead_id("lead_1");
  visit.set_customer_id("cus_1");
  visit.mutable_activity_at()->set_seconds(30 * kDay);
  std::vector<EventEnvelope> given = {
      OrderPlacedAt("cus_1", "o1", 500, 10 * kDay),
      Envelope(call, "cus_1", "evt-call", "activity-act_1", 1, 149 * kDay),
      Envelope(visit, "cus_1", "evt-visit", "lead-lead_1", 2, 148 * kDay)};
  const auto view = DerivedAt(given, 150);
  EXPECT_EQ(view.last_seen().seconds(), 30 * kDay);
  EXPECT_EQ(view.first_seen().seconds(), 10 * kDay);
  EXPECT_EQ(Factor(view, "activity_recency"), 25);  // 120 days, past the 90
  EXPECT_EQ(view.lifecycle_stage(), crm::v1::LIFECYCLE_STAGE_AT_RISK);
  EXPECT_EQ(Segments(view), (std::vector{crm::v1::SEGMENT_AT_RISK, crm::v1::SEGMENT_DORMANT}));

  // Dated after it was logged (a clock ahead), it counts when it was logged.
  given[1].mutable_occurred_at()->set_seconds(100 * kDay);
  call.mutable_occurred_at()->set_seconds(140 * kDay);
  given[1].mutable_payload()->PackFrom(call);
  EXPECT_EQ(DerivedAt(given, 150).last_seen().seconds(), 100 * kDay);
}

TEST(CustomerHealthTest, ThresholdsComeFromTheSettings) {
  crm::v1::AnalyticsSettings s;
  s.set_churn_risk_threshold(30);
  s.set_high_value_minor_units(400);
  s.set_activity_recency_weight(0);
  auto config = AnalyticsConfig::Create(s);
  ASSERT_TRUE(config.ok()) << config.status();
  const auto view = DerivedAt({OrderPlacedAt("cus_1", "o1", 500, 0)}, 120, *config);
  EXPECT_EQ(view.churn_risk_score(), 30);
  EXPECT_EQ(Factor(view, "activity_recency"), 0);
  EXPECT_EQ(Segments(view), (std::vector{crm::v1::SEGMENT_HIGH_VALUE, crm::v1::SEGMENT_AT_RISK,
                                         crm::v1::SEGMENT_DORMANT}));
}

// A currency with a threshold of its own is measured by it: ¥1,000,000 is
// not $10,000.00, though both are 1,000,000 minor units.
TEST(CustomerHealthTest, ACurrencyWithAThresholdOfItsOwnIsMeasuredByIt) {
  crm::v1::AnalyticsSettings s;
  (*s.mutable_high_value_minor_units_by_currency())["JPY"] = 1'500'000;
  auto config = AnalyticsConfig::Create(s);
  ASSERT_TRUE(config.ok()) << config.status();
  auto high_value = [&](const EventEnvelope& order) {
    const auto segments = Segments(DerivedAt({order}, 1, *config));
    return std::find(segments.begin(), segments.end(), crm::v1::SEGMENT_HIGH_VALUE) !=
           segments.end();
  };
  EXPECT_FALSE(high_value(OrderPlacedAt("cus_1", "o1", 1'000'000, 0, "JPY")));
  EXPECT_TRUE(high_value(OrderPlacedAt("cus_1", "o1", 1'500'000, 0, "JPY")));
  EXPECT_TRUE(high_value(OrderPlacedAt("cus_1", "o1", 1'000'000, 0, "USD")));
}

TEST(CustomerHealthTest, DerivedViewIsTheSameWhateverTheDeliveryOrder) {
  std::vector<EventEnvelope> events = {
      OrderPlacedAt("cus_1", "o1", 500, 0),
      OrderPlacedAt("cus_1", "o2", 700, 5 * kDay, "USD"),
      TicketOpenedAt("cus_1", "t1", 6 * kDay),
      TicketEvent(Csat("t1", 4), "cus_1", "t1", 2, 7 * kDay),
      TicketEvent(Breached("t1", "team"), "cus_1", "t1", 3, 8 * kDay),
  };
  auto by_id = [](const auto& a, const auto& b) { return a.event_id() < b.event_id(); };
  std::sort(events.begin(), events.end(), by_id);
  std::string first;
  do {
    const std::string bytes = DerivedAt(events, 100).SerializeAsString();
    if (first.empty()) first = bytes;
    EXPECT_EQ(bytes, first);
  } while (std::next_permutation(events.begin(), events.end(), by_id));
}

// ---- Churn alerts: Given(previous state).When(derived view).Then(decision)

TEST(ChurnAlertTest, CrossingRaisesOnceWithTheCauseAndTheEventTimeClock) {
  const auto view = DerivedAt({OrderPlacedAt("cus_1", "o1", 500, 0)}, 150);
  const auto d = DecideChurnAlert({}, view, AnalyticsConfig::Defaults());
  ASSERT_TRUE(d.raised.has_value());
  EXPECT_EQ(d.raised->customer_id(), "cus_1");
  EXPECT_EQ(d.raised->score(), 62);
  EXPECT_EQ(d.raised->threshold(), 60);
  EXPECT_EQ(d.raised->cause_event_id(), "evt-order-o1");
  EXPECT_EQ(d.raised->evaluated_at().seconds(), 150 * kDay);
  EXPECT_EQ(d.raised->factors_size(), 2);
  EXPECT_TRUE(d.state.raised());
  EXPECT_EQ(d.state.crossings(), 1);
  EXPECT_EQ(ChurnRequestKey(*d.raised, d.state.crossings()), "churn-risk/cus_1/evt-order-o1");

  // Still at risk a day later: nothing new.
  const auto later = DerivedAt({OrderPlacedAt("cus_1", "o1", 500, 0)}, 151);
  const auto again = DecideChurnAlert(d.state, later, AnalyticsConfig::Defaults());
  EXPECT_FALSE(again.raised.has_value());
  EXPECT_FALSE(again.state_changed);
}

// A merged person's alert names the customers merged into it: the sales
// account may be on any of them.
TEST(ChurnAlertTest, TheAlertOfAMergedPersonNamesItsMergedCustomers) {
  auto view = DerivedAt({OrderPlacedAt("cus_1", "o1", 500, 0)}, 150);
  view.add_merged_customer_ids("cus_0");
  view.add_merged_customer_ids("cus_2");
  const auto d = DecideChurnAlert({}, view, AnalyticsConfig::Defaults());
  ASSERT_TRUE(d.raised.has_value());
  EXPECT_EQ(std::vector<std::string>(d.raised->merged_customer_ids().begin(),
                                     d.raised->merged_customer_ids().end()),
            (std::vector<std::string>{"cus_0", "cus_2"}));
}

TEST(ChurnAlertTest, FallingBelowClearsSoTheNextCrossingRaisesAgainWithANewCause) {
  crm::v1::ChurnAlertState raised;
  raised.set_raised(true);
  raised.set_cause_event_id("evt-order-o1");
  const std::vector<EventEnvelope> history = {OrderPlacedAt("cus_1", "o1", 500, 0),
                                              OrderPlacedAt("cus_1", "o2", 500, 150 * kDay)};
  const auto recovered =
      DecideChurnAlert(raised, DerivedAt(history, 151), AnalyticsConfig::Defaults());
  EXPECT_FALSE(recovered.raised.has_value());
  EXPECT_TRUE(recovered.state_changed);
  EXPECT_FALSE(recovered.state.raised());

  const auto relapse =
      DecideChurnAlert(recovered.state, DerivedAt(history, 300), AnalyticsConfig::Defaults());
  ASSERT_TRUE(relapse.raised.has_value());
  EXPECT_EQ(relapse.raised->cause_event_id(), "evt-order-o2");
}

// The threshold moved up (the customer cleared), then back: the same
// cause crosses again and must raise again, under a key of its own.
TEST(ChurnAlertTest, ASecondCrossingWithTheSameCauseRaisesUnderANewKey) {
  const std::vector<EventEnvelope> history = {OrderPlacedAt("cus_1", "o1", 500, 0)};
  const auto first = DecideChurnAlert({}, DerivedAt(history, 150), AnalyticsConfig::Defaults());
  ASSERT_TRUE(first.raised.has_value());
  crm::v1::AnalyticsSettings strict;
  strict.set_churn_risk_threshold(90);
  auto config = AnalyticsConfig::Create(strict);
  ASSERT_TRUE(config.ok()) << config.status();
  const auto cleared = DecideChurnAlert(first.state, DerivedAt(history, 150, *config), *config);
  EXPECT_FALSE(cleared.state.raised());
  const auto second =
      DecideChurnAlert(cleared.state, DerivedAt(history, 150), AnalyticsConfig::Defaults());
  ASSERT_TRUE(second.raised.has_value());
  EXPECT_EQ(second.raised->cause_event_id(), first.raised->cause_event_id());
  EXPECT_EQ(second.state.crossings(), 2);
  EXPECT_NE(ChurnRequestKey(*second.raised, second.state.crossings()),
            ChurnRequestKey(*first.raised, first.state.crossings()));
}

TEST(ChurnAlertTest, ProspectsAreNeverRaised) {
  const auto view = DerivedAt({LeadCapturedAt("cus_1", "lead_1", 0, 0)}, 1000);
  EXPECT_FALSE(DecideChurnAlert({}, view, AnalyticsConfig::Defaults()).raised.has_value());
}

}  // namespace
}  // namespace crm::analytics
