#include "services/analytics/domain/funnel.h"

#include <algorithm>
#include <limits>
#include <map>
#include <random>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "crm/v1/leads.pb.h"
#include "crm/v1/sales.pb.h"
#include "google/protobuf/util/time_util.h"
#include "gtest/gtest.h"
#include "services/analytics/testing/events.h"

namespace crm::analytics {
namespace {

using crm::v1::FunnelLeadRecord;
using crm::v1::FunnelOpportunityRecord;

constexpr int64_t kJan = 1767225600;  // 2026-01-01T00:00:00Z
constexpr int64_t kFeb = 1769904000;  // 2026-02-01T00:00:00Z
constexpr int64_t kDay = 86400;

template <typename T>
crm::v1::EventEnvelope Event(const std::string& event_id, const std::string& customer,
                             int64_t seconds, const T& payload) {
  crm::v1::EventEnvelope e;
  e.set_event_id(event_id);
  e.set_customer_id(customer);
  e.set_type(std::string(T::descriptor()->name()));
  e.mutable_occurred_at()->set_seconds(seconds);
  e.mutable_payload()->PackFrom(payload);
  return e;
}

crm::v1::EventEnvelope Captured(const std::string& lead, const std::string& customer,
                                crm::v1::LeadChannel channel, int64_t at,
                                const std::string& region) {
  crm::v1::LeadCaptured m;
  m.set_lead_id(lead);
  m.set_customer_id(customer);
  m.set_channel(channel);
  m.set_region(region);
  return Event(absl::StrCat("cap-", lead), customer, at, m);
}

crm::v1::EventEnvelope Qualified(const std::string& lead, const std::string& customer, int64_t at) {
  crm::v1::LeadQualified m;
  m.set_lead_id(lead);
  return Event(absl::StrCat("qual-", lead), customer, at, m);
}

crm::v1::EventEnvelope Disqualified(const std::string& lead, const std::string& customer,
                                    int64_t at) {
  crm::v1::LeadDisqualified m;
  m.set_lead_id(lead);
  m.set_reason("no budget");
  return Event(absl::StrCat("disq-", lead), customer, at, m);
}

crm::v1::EventEnvelope Converted(const std::string& lead, const std::string& customer,
                                 const std::string& owner, int64_t at) {
  crm::v1::LeadConverted m;
  m.set_lead_id(lead);
  m.set_owner_id(owner);
  return Event(absl::StrCat("conv-", lead), customer, at, m);
}

crm::v1::EventEnvelope Opened(const std::string& opp, const std::string& customer,
                              const std::string& lead, const std::string& owner,
                              const std::string& territory, int64_t minor, int64_t at) {
  crm::v1::OpportunityOpened m;
  m.set_opportunity_id(opp);
  m.set_lead_id(lead);
  m.set_owner_id(owner);
  m.set_territory(territory);
  m.set_stage_id("discovery");
  m.mutable_amount()->set_currency("EUR");
  m.mutable_amount()->set_minor_units(minor);
  return Event(absl::StrCat("open-", opp), customer, at, m);
}

crm::v1::EventEnvelope Moved(const std::string& opp, const std::string& customer,
                             const std::string& from, const std::string& to,
                             crm::v1::StageOutcome outcome, int64_t in_stage, int64_t at) {
  crm::v1::OpportunityStageChanged m;
  m.set_opportunity_id(opp);
  m.set_from_stage_id(from);
  m.set_to_stage_id(to);
  m.set_outcome(outcome);
  m.mutable_time_in_previous_stage()->set_seconds(in_stage);
  return Event(absl::StrCat("move-", opp, "-", to), customer, at, m);
}

// In-memory record store standing in for the projection's RocksDB families.
struct Records {
  std::map<std::string, FunnelLeadRecord> leads;
  std::map<std::string, FunnelOpportunityRecord> opportunities;

  void Apply(const crm::v1::EventEnvelope& e) {
    ASSERT_TRUE(
        ApplyToFunnel(
            e, Payload(e),
            [&](const std::string& id) -> absl::StatusOr<FunnelLeadRecord*> { return &leads[id]; },
            [&](const std::string& id) -> absl::StatusOr<FunnelOpportunityRecord*> {
              return &opportunities[id];
            })
            .ok());
  }
  crm::v1::Funnel Funnel(const crm::v1::GetFunnelRequest& request = {}) const {
    std::vector<FunnelLeadRecord> l;
    std::vector<FunnelOpportunityRecord> o;
    for (const auto& [id, r] : leads) l.push_back(r);
    for (const auto& [id, r] : opportunities) o.push_back(r);
    return ComputeFunnel(l, o, request);
  }
  std::string Bytes() const {
    std::string out;
    for (const auto& [id, r] : leads) out += r.SerializeAsString();
    for (const auto& [id, r] : opportunities) out += r.SerializeAsString();
    return out;
  }
};

// Four web leads and one partner lead in January, one web lead in February; two
// conversions, one won deal (from the partner lead) and one lost.
std::vector<crm::v1::EventEnvelope> History() {
  using namespace crm::v1;
  std::vector<EventEnvelope> e;
  for (int i = 1; i <= 4; ++i) {
    e.push_back(Captured(absl::StrCat("l", i), absl::StrCat("c", i), LEAD_CHANNEL_WEB_FORM,
                         kJan + i * kDay, "emea"));
  }
  e.push_back(Captured("l5", "c5", LEAD_CHANNEL_PARTNER, kJan + 5 * kDay, "amer"));
  e.push_back(Captured("l6", "c6", LEAD_CHANNEL_WEB_FORM, kFeb + kDay, "emea"));
  e.push_back(Qualified("l1", "c1", kJan + 6 * kDay));
  e.push_back(Qualified("l2", "c2", kJan + 6 * kDay));
  e.push_back(Converted("l1", "c1", "rep_a", kJan + 7 * kDay));
  e.push_back(Converted("l5", "c5", "rep_b", kJan + 7 * kDay));
  e.push_back(Opened("o1", "c1", "l1", "rep_a", "emea", 5000, kJan + 7 * kDay));
  // The partner lead's opportunity does not name its lead: joined via customer.
  e.push_back(Opened("o5", "c5", "", "rep_b", "amer", 20000, kJan + 7 * kDay));
  e.push_back(
      Moved("o5", "c5", "discovery", "proposal", STAGE_OUTCOME_OPEN, 2 * kDay, kJan + 9 * kDay));
  e.push_back(Moved("o5", "c5", "proposal", "won", STAGE_OUTCOME_WON, 4 * kDay, kJan + 13 * kDay));
  e.push_back(
      Moved("o1", "c1", "discovery", "lost", STAGE_OUTCOME_LOST, 4 * kDay, kJan + 11 * kDay));
  return e;
}

// A deal won, reopened a month later and won again: the month it sat
// closed is no time in the "won" stage, nor in its sales cycle.
TEST(FunnelTest, TheTimeADealSatClosedIsNoStageTime) {
  Records records;
  for (const auto& e : History()) records.Apply(e);
  auto reopened = Moved("o5", "c5", "won", "proposal", crm::v1::STAGE_OUTCOME_OPEN, 30 * kDay,
                        kFeb + 12 * kDay);
  crm::v1::OpportunityStageChanged m;
  ASSERT_TRUE(reopened.payload().UnpackTo(&m));
  m.set_reopened(true);
  reopened.mutable_payload()->PackFrom(m);
  reopened.set_event_id("reopen-o5");
  records.Apply(reopened);
  records.Apply(reopened);  // delivered twice
  auto won_again =
      Moved("o5", "c5", "proposal", "won", crm::v1::STAGE_OUTCOME_WON, 2 * kDay, kFeb + 14 * kDay);
  won_again.set_event_id("move-o5-won-again");
  records.Apply(won_again);
  const auto f = records.Funnel();
  for (const auto& stage : f.stage_times()) EXPECT_NE(stage.stage_id(), "won");
  EXPECT_EQ(f.stage_times_size(), 2);
  // Opened Jan 7, won Jan 13 (6 days), reopened Feb 12, won Feb 14 (2 days).
  EXPECT_EQ(f.total().won(), 1);
  EXPECT_DOUBLE_EQ(f.average_sales_cycle_seconds(), 8.0 * kDay);
}

// Where the funnel loses most counts what each step lost for good: leads
// disqualified before qualifying, after qualifying, and lost deals.
TEST(FunnelTest, TheBiggestDropIsWhatAStepLostNotWhatIsStillInIt) {
  Records records;
  for (const auto& e : History()) records.Apply(e);
  records.Apply(Disqualified("l3", "c3", kJan + 8 * kDay));
  records.Apply(Disqualified("l4", "c4", kJan + 8 * kDay));
  auto f = records.Funnel();
  EXPECT_EQ(f.biggest_drop_step(), "qualification");
  EXPECT_EQ(f.biggest_drop_count(), 2);
  // l2 was qualified; disqualified now, it is lost at conversion.
  records.Apply(Disqualified("l2", "c2", kJan + 9 * kDay));
  records.Apply(Captured("l7", "c7", crm::v1::LEAD_CHANNEL_WEB_FORM, kJan + 3 * kDay, "emea"));
  records.Apply(Qualified("l7", "c7", kJan + 4 * kDay));
  records.Apply(Disqualified("l7", "c7", kJan + 10 * kDay));
  records.Apply(Captured("l8", "c8", crm::v1::LEAD_CHANNEL_WEB_FORM, kJan + 3 * kDay, "emea"));
  records.Apply(Qualified("l8", "c8", kJan + 4 * kDay));
  records.Apply(Disqualified("l8", "c8", kJan + 10 * kDay));
  f = records.Funnel();
  EXPECT_EQ(f.biggest_drop_step(), "conversion");
  EXPECT_EQ(f.biggest_drop_count(), 3);
  // Nothing lost yet: no step named.
  Records fresh;
  fresh.Apply(Captured("n1", "d1", crm::v1::LEAD_CHANNEL_WEB_FORM, kJan + kDay, "emea"));
  EXPECT_EQ(fresh.Funnel().biggest_drop_step(), "");
}

TEST(FunnelTest, CountsRatesTimingsAndChannelRoi) {
  Records records;
  for (const auto& e : History()) records.Apply(e);
  const auto f = records.Funnel();
  EXPECT_EQ(f.total().leads(), 6);
  EXPECT_EQ(f.total().qualified(), 3);  // l1, l2 and the converted l5
  EXPECT_EQ(f.total().converted(), 2);
  EXPECT_EQ(f.total().opportunities(), 2);
  EXPECT_EQ(f.total().won(), 1);
  EXPECT_EQ(f.total().lost(), 1);
  EXPECT_DOUBLE_EQ(f.total().win_rate(), 0.5);
  EXPECT_DOUBLE_EQ(f.total().qualification_rate(), 0.5);
  // Leads still new or qualified are no loss: the one lost deal is.
  EXPECT_EQ(f.biggest_drop_step(), "close");
  EXPECT_EQ(f.biggest_drop_count(), 1);
  EXPECT_DOUBLE_EQ(f.average_sales_cycle_seconds(), 6.0 * kDay);
  ASSERT_EQ(f.stage_times_size(), 2);
  EXPECT_EQ(f.stage_times(0).stage_id(), "discovery");
  EXPECT_DOUBLE_EQ(f.stage_times(0).average_seconds(), 3.0 * kDay);
  EXPECT_EQ(f.stage_times(0).samples(), 2);
  EXPECT_EQ(f.stage_times(1).stage_id(), "proposal");

  ASSERT_EQ(f.by_channel_size(), 2);
  EXPECT_EQ(f.by_channel(0).key(), "partner");
  EXPECT_EQ(f.by_channel(0).won(), 1);
  ASSERT_EQ(f.by_channel(0).won_revenue_size(), 1);
  EXPECT_EQ(f.by_channel(0).won_revenue(0).minor_units(), 20000);
  EXPECT_DOUBLE_EQ(f.by_channel(0).lead_to_win_rate(), 1.0);
  EXPECT_EQ(f.by_channel(1).key(), "web_form");
  EXPECT_EQ(f.by_channel(1).leads(), 5);
  EXPECT_EQ(f.by_channel(1).won(), 0);

  ASSERT_EQ(f.by_month_size(), 2);
  EXPECT_EQ(f.by_month(0).key(), "2026-01");
  EXPECT_EQ(f.by_month(0).leads(), 5);
  EXPECT_EQ(f.by_month(1).key(), "2026-02");
  EXPECT_EQ(f.by_month(1).leads(), 1);
}

TEST(FunnelTest, FiltersNarrowLeadsAndOpportunitiesAlike) {
  Records records;
  for (const auto& e : History()) records.Apply(e);
  crm::v1::GetFunnelRequest by_channel;
  by_channel.set_channel(crm::v1::LEAD_CHANNEL_PARTNER);
  auto f = records.Funnel(by_channel);
  EXPECT_EQ(f.total().leads(), 1);
  EXPECT_EQ(f.total().opportunities(), 1);
  EXPECT_EQ(f.total().won(), 1);

  crm::v1::GetFunnelRequest by_period;
  by_period.set_period("2026-02");
  f = records.Funnel(by_period);
  EXPECT_EQ(f.total().leads(), 1);
  EXPECT_EQ(f.total().opportunities(), 0);

  crm::v1::GetFunnelRequest by_owner;
  by_owner.set_owner_id("rep_a");
  f = records.Funnel(by_owner);
  EXPECT_EQ(f.total().leads(), 1);  // l1, owned since its conversion
  EXPECT_EQ(f.total().lost(), 1);

  crm::v1::GetFunnelRequest by_territory;
  by_territory.set_territory("amer");
  f = records.Funnel(by_territory);
  EXPECT_EQ(f.total().leads(), 1);
  EXPECT_EQ(f.total().won(), 1);
}

// A lead's region keeps its capture's spelling and a deal opened by a
// manager takes the token's: one territory however it is spelled, as
// access and the sales forecast compare territories.
TEST(FunnelTest, TerritoriesCompareIgnoringCase) {
  Records records;
  records.Apply(Captured("l1", "c1", crm::v1::LEAD_CHANNEL_WEB_FORM, kJan, "emea"));
  records.Apply(Captured("l2", "c2", crm::v1::LEAD_CHANNEL_WEB_FORM, kJan, "EMEA"));
  records.Apply(Opened("o1", "c2", "l2", "rep_a", "Emea", 100, kJan + kDay));
  records.Apply(Captured("l3", "c3", crm::v1::LEAD_CHANNEL_WEB_FORM, kJan, "apac"));
  crm::v1::GetFunnelRequest by_territory;
  by_territory.set_territory("EMEA");
  auto f = records.Funnel(by_territory);
  EXPECT_EQ(f.total().leads(), 2);
  EXPECT_EQ(f.total().opportunities(), 1);
  f = records.Funnel();
  ASSERT_EQ(f.by_territory_size(), 2);
  EXPECT_EQ(f.by_territory(0).key(), "apac");
  EXPECT_EQ(f.by_territory(1).key(), "EMEA");  // the first spelling in byte order
  EXPECT_EQ(f.by_territory(1).leads(), 2);
  EXPECT_EQ(f.by_territory(1).opportunities(), 1);
}

// A lead captured without a region and converted by an EMEA manager took
// that territory, as its account and deal did: it counts there, in any
// delivery order, so the territory's close rate holds its lead.
TEST(FunnelTest, AConvertedLeadStandsInTheTerritoryItWasConvertedIn) {
  crm::v1::LeadConverted converted;
  converted.set_lead_id("l1");
  converted.set_owner_id("mgr_emea");
  converted.set_region("emea");
  const std::vector<crm::v1::EventEnvelope> events = {
      Captured("l1", "c1", crm::v1::LEAD_CHANNEL_WEB_FORM, kJan, ""),
      Qualified("l1", "c1", kJan + kDay), Event("conv-l1", "c1", kJan + 2 * kDay, converted),
      Opened("o1", "c1", "l1", "mgr_emea", "emea", 100, kJan + 2 * kDay),
      Moved("o1", "c1", "discovery", "won", crm::v1::STAGE_OUTCOME_WON, kDay, kJan + 3 * kDay)};
  for (const bool reversed : {false, true}) {
    Records records;
    if (reversed) {
      for (auto it = events.rbegin(); it != events.rend(); ++it) records.Apply(*it);
    } else {
      for (const auto& e : events) records.Apply(e);
    }
    crm::v1::GetFunnelRequest emea;
    emea.set_territory("emea");
    const auto f = records.Funnel(emea);
    EXPECT_EQ(f.total().leads(), 1) << reversed;
    EXPECT_EQ(f.total().converted(), 1) << reversed;
    EXPECT_EQ(f.total().won(), 1) << reversed;
    EXPECT_DOUBLE_EQ(f.total().lead_to_win_rate(), 1.0) << reversed;
  }
}

// Stage ids are each pipeline's own: a day in the SMB pipeline's
// "proposal" is not averaged with a month in the enterprise one's.
TEST(FunnelTest, StageTimesAreKeptApartPerPipeline) {
  Records records;
  for (const auto& [opp, pipeline, days] :
       {std::tuple{"o1", "smb", 1}, std::tuple{"o2", "enterprise", 30}}) {
    crm::v1::EventEnvelope opened = Opened(opp, "c1", "", "rep_a", "emea", 100, kJan);
    crm::v1::OpportunityOpened m;
    ASSERT_TRUE(opened.payload().UnpackTo(&m));
    m.set_pipeline_id(pipeline);
    opened.mutable_payload()->PackFrom(m);
    records.Apply(opened);
    records.Apply(Moved(opp, "c1", "proposal", "negotiation", crm::v1::STAGE_OUTCOME_OPEN,
                        days * kDay, kJan + days * kDay));
  }
  const auto f = records.Funnel();
  ASSERT_EQ(f.stage_times_size(), 2);
  EXPECT_EQ(f.stage_times(0).pipeline_id(), "enterprise");
  EXPECT_EQ(f.stage_times(0).stage_id(), "proposal");
  EXPECT_DOUBLE_EQ(f.stage_times(0).average_seconds(), 30.0 * kDay);
  EXPECT_EQ(f.stage_times(1).pipeline_id(), "smb");
  EXPECT_DOUBLE_EQ(f.stage_times(1).average_seconds(), 1.0 * kDay);
}

// A stage time no Duration holds, or a negative one, from an outside
// producer: held to the range instead of overflowing the stage's sum or
// shrinking its average.
TEST(FunnelTest, StageTimesOutOfADurationsRangeAreHeldToIt) {
  Records records;
  records.Apply(Opened("o1", "c1", "", "rep_a", "emea", 100, kJan));
  records.Apply(Opened("o2", "c1", "", "rep_a", "emea", 100, kJan));
  records.Apply(Opened("o3", "c1", "", "rep_a", "emea", 100, kJan));
  for (const char* opp : {"o1", "o2"}) {
    records.Apply(Moved(opp, "c1", "proposal", "negotiation", crm::v1::STAGE_OUTCOME_OPEN,
                        std::numeric_limits<int64_t>::max(), kJan + kDay));
  }
  records.Apply(Moved("o3", "c1", "needs_analysis", "proposal", crm::v1::STAGE_OUTCOME_OPEN,
                      -30 * kDay, kJan + kDay));
  // Reopened after a "time closed" no Duration holds, then won: the sales
  // cycle is its days from opening to winning.
  records.Apply(Opened("o4", "c1", "", "rep_a", "emea", 100, kJan));
  crm::v1::EventEnvelope reopened =
      Moved("o4", "c1", "lost", "closing", crm::v1::STAGE_OUTCOME_OPEN,
            std::numeric_limits<int64_t>::min(), kJan + kDay);
  crm::v1::OpportunityStageChanged m;
  ASSERT_TRUE(reopened.payload().UnpackTo(&m));
  m.set_reopened(true);
  reopened.mutable_payload()->PackFrom(m);
  records.Apply(reopened);
  records.Apply(
      Moved("o4", "c1", "closing", "won", crm::v1::STAGE_OUTCOME_WON, 2 * kDay, kJan + 3 * kDay));
  const auto f = records.Funnel();
  ASSERT_EQ(f.stage_times_size(), 3);
  EXPECT_EQ(f.stage_times(0).stage_id(), "closing");
  EXPECT_DOUBLE_EQ(f.stage_times(0).average_seconds(), 2.0 * kDay);
  EXPECT_EQ(f.stage_times(1).stage_id(), "needs_analysis");
  EXPECT_DOUBLE_EQ(f.stage_times(1).average_seconds(), 0.0);
  EXPECT_EQ(f.stage_times(2).stage_id(), "proposal");
  EXPECT_DOUBLE_EQ(f.stage_times(2).average_seconds(),
                   static_cast<double>(google::protobuf::util::TimeUtil::kDurationMaxSeconds));
  EXPECT_DOUBLE_EQ(f.average_sales_cycle_seconds(), 3.0 * kDay);
}

// A lead taken from its rep into a queue no longer counts as the rep's.
TEST(FunnelTest, ALeadMovedToAQueueLeavesItsOwnersFunnel) {
  Records records;
  records.Apply(Captured("l1", "c1", crm::v1::LEAD_CHANNEL_WEB_FORM, kJan, "emea"));
  using testing::LeadAssignment;
  const auto assigned = Event("as-1", "c1", kJan + kDay, LeadAssignment("l1", "rep_a"));
  const auto queued =
      Event("as-2", "c1", kJan + 2 * kDay, LeadAssignment("l1", "", "inbound", "rep_a"));
  crm::v1::GetFunnelRequest by_owner;
  by_owner.set_owner_id("rep_a");
  records.Apply(assigned);
  EXPECT_EQ(records.Funnel(by_owner).total().leads(), 1);
  records.Apply(queued);
  EXPECT_EQ(records.Funnel(by_owner).total().leads(), 0);
  EXPECT_EQ(records.Funnel().total().leads(), 1);

  Records reversed;  // the same, delivered the other way round
  reversed.Apply(queued);
  reversed.Apply(assigned);
  reversed.Apply(Captured("l1", "c1", crm::v1::LEAD_CHANNEL_WEB_FORM, kJan, "emea"));
  EXPECT_EQ(reversed.Bytes(), records.Bytes());
}

TEST(FunnelTest, RecordsAreByteIdenticalWhateverTheDeliveryOrderAndRedelivery) {
  auto events = History();
  Records expected;
  for (const auto& e : events) expected.Apply(e);
  std::mt19937 rng(7);
  for (int round = 0; round < 200; ++round) {
    std::shuffle(events.begin(), events.end(), rng);
    Records records;
    for (const auto& e : events) records.Apply(e);
    // A redelivered stage change must not add a second stage visit.
    records.Apply(events.front());
    ASSERT_EQ(records.Bytes(), expected.Bytes()) << "round " << round;
  }
}

// A duplicate lead merged into another is the same person: the funnel counts
// the survivor only, whichever of the two merge events arrives, and before
// or after the merged lead's capture.
TEST(FunnelTest, AMergedLeadIsCountedOnceAsItsSurvivor) {
  crm::v1::LeadMergedInto merged_into;
  merged_into.set_lead_id("l3");
  merged_into.set_survivor_lead_id("l4");
  crm::v1::LeadsMerged merged;
  merged.set_survivor_lead_id("l4");
  merged.set_merged_lead_id("l3");
  const auto on_merged_stream = Event("merged-into-l3", "c3", kJan + 8 * kDay, merged_into);
  const auto on_survivor_stream = Event("merged-l3", "c4", kJan + 8 * kDay, merged);
  for (const auto& merge : {on_merged_stream, on_survivor_stream}) {
    for (const bool merge_first : {false, true}) {
      Records records;
      if (merge_first) records.Apply(merge);
      for (const auto& e : History()) records.Apply(e);
      if (!merge_first) records.Apply(merge);
      const auto f = records.Funnel();
      EXPECT_EQ(f.total().leads(), 5) << merge.event_id() << merge_first;
      ASSERT_EQ(f.by_channel_size(), 2);
      EXPECT_EQ(f.by_channel(1).key(), "web_form");
      EXPECT_EQ(f.by_channel(1).leads(), 4);
      EXPECT_EQ(f.by_month(0).leads(), 4);
    }
  }
}

// The leads service gives a survivor captured without a region the merged
// lead's: the funnel counts it there too, whichever event is read first,
// and a survivor's own region is kept.
TEST(FunnelTest, ASurvivorWithoutARegionStandsInTheMergedLeadsRegion) {
  for (const std::string survivor_region : {"", "apac"}) {
    crm::v1::LeadsMerged merged;
    merged.set_survivor_lead_id("l1");
    merged.set_merged_lead_id("l2");
    merged.set_survivor_customer_id("c1");
    merged.set_merged_customer_id("c2");
    merged.mutable_merged_lead()->set_region("emea");
    const std::vector<crm::v1::EventEnvelope> events = {
        Captured("l1", "c1", crm::v1::LEAD_CHANNEL_WEB_FORM, kJan + kDay, survivor_region),
        Captured("l2", "c2", crm::v1::LEAD_CHANNEL_WEB_FORM, kJan + 2 * kDay, "emea"),
        Event("merge-l2", "c1", kJan + 3 * kDay, merged)};
    for (const bool merge_first : {false, true}) {
      Records records;
      if (merge_first) records.Apply(events[2]);
      for (size_t i = 0; i < 2; ++i) records.Apply(events[i]);
      if (!merge_first) records.Apply(events[2]);
      crm::v1::GetFunnelRequest emea;
      emea.set_territory("EMEA");
      EXPECT_EQ(records.Funnel(emea).total().leads(), survivor_region.empty() ? 1 : 0)
          << survivor_region << merge_first;
      const auto f = records.Funnel();
      ASSERT_EQ(f.by_territory_size(), 1) << survivor_region << merge_first;
      EXPECT_EQ(f.by_territory(0).key(), survivor_region.empty() ? "emea" : "apac");
    }
  }
}

// A deal may be opened and won without an amount: it counts as won and adds
// no revenue entry (one without a currency).
TEST(FunnelTest, ADealWonWithoutAnAmountAddsNoRevenue) {
  Records records;
  crm::v1::OpportunityOpened opened;
  opened.set_opportunity_id("o1");
  opened.set_owner_id("rep_a");
  opened.set_stage_id("discovery");
  records.Apply(Event("open-o1", "c1", kJan, opened));
  records.Apply(Opened("o2", "c2", "", "rep_a", "emea", 500, kJan));
  records.Apply(
      Moved("o1", "c1", "discovery", "won", crm::v1::STAGE_OUTCOME_WON, kDay, kJan + kDay));
  records.Apply(
      Moved("o2", "c2", "discovery", "won", crm::v1::STAGE_OUTCOME_WON, kDay, kJan + kDay));
  const auto f = records.Funnel();
  EXPECT_EQ(f.total().won(), 2);
  ASSERT_EQ(f.total().won_revenue_size(), 1);
  EXPECT_EQ(f.total().won_revenue(0).currency(), "EUR");
  EXPECT_EQ(f.total().won_revenue(0).minor_units(), 500);
}

// A repeat deal without a lead, on the account of a person whose first lead
// came in under another customer id merged with it since: the person's
// first touch is that lead's channel.
TEST(FunnelTest, ADealWithoutALeadTakesTheFirstTouchOfTheWholeMergeGroup) {
  Records records;
  records.Apply(Captured("la", "c_a", crm::v1::LEAD_CHANNEL_WEB_FORM, kJan + kDay, "emea"));
  records.Apply(Captured("lb", "c_b", crm::v1::LEAD_CHANNEL_TRADE_SHOW, kJan + 5 * kDay, "emea"));
  records.Apply(Opened("o_r", "c_b", "", "rep_a", "emea", 9000, kFeb));
  std::vector<FunnelLeadRecord> leads;
  std::vector<FunnelOpportunityRecord> opportunities;
  for (const auto& [id, r] : records.leads) leads.push_back(r);
  for (const auto& [id, o] : records.opportunities) opportunities.push_back(o);
  auto deal_channel = [&](const CustomerMerges* merges) {
    crm::v1::GetFunnelRequest feb;
    feb.set_period("2026-02");
    const auto f = ComputeFunnel(leads, opportunities, feb, merges);
    for (const auto& slice : f.by_channel()) {
      if (slice.opportunities() > 0) return slice.key();
    }
    return std::string("none");
  };
  EXPECT_EQ(deal_channel(nullptr), "trade_show") << "its own customer's first lead";
  CustomerMerges merges;
  merges.Link("c_a", "c_b");
  EXPECT_EQ(deal_channel(&merges), "web_form");
  CustomerMerges other_way;
  other_way.Link("c_b", "c_a");
  EXPECT_EQ(deal_channel(&other_way), "web_form");
}

// A lead disqualified, then nurtured, qualified and converted is back in
// the funnel: counted as converted, not also as disqualified. The latest
// event decides in whatever order they arrive.
TEST(FunnelTest, ALeadTakenBackAfterDisqualificationIsNotCountedAsDisqualified) {
  crm::v1::LeadDisqualified disqualified;
  disqualified.set_lead_id("l1");
  crm::v1::LeadNurtureStarted nurtured;
  nurtured.set_lead_id("l1");
  const std::vector<crm::v1::EventEnvelope> history = {
      Captured("l1", "c1", crm::v1::LEAD_CHANNEL_WEB_FORM, kJan, "EMEA"),
      Event("disq-l1", "c1", kJan + kDay, disqualified),
      Event("nurt-l1", "c1", kJan + 2 * kDay, nurtured),
      Qualified("l1", "c1", kJan + 3 * kDay),
      Converted("l1", "c1", "rep_ann", kJan + 4 * kDay),
  };
  for (size_t end : {size_t{2}, size_t{3}, history.size()}) {
    std::vector<crm::v1::EventEnvelope> events(history.begin(), history.begin() + end);
    std::sort(events.begin(), events.end(),
              [](const auto& a, const auto& b) { return a.event_id() < b.event_id(); });
    do {
      Records records;
      for (const auto& e : events) records.Apply(e);
      const auto total = records.Funnel().total();
      EXPECT_EQ(total.leads(), 1);
      // Disqualified until a later event takes the lead back.
      EXPECT_EQ(total.disqualified(), end == 2 ? 1 : 0) << end;
      EXPECT_EQ(total.converted(), end == history.size() ? 1 : 0) << end;
    } while (std::next_permutation(events.begin(), events.end(), [](const auto& a, const auto& b) {
      return a.event_id() < b.event_id();
    }));
  }
  // Disqualified after being qualified: it reached qualification, and left.
  Records records;
  for (const auto& e : {history[0], history[3]}) records.Apply(e);
  records.Apply(Event("disq-again-l1", "c1", kJan + 5 * kDay, disqualified));
  EXPECT_EQ(records.Funnel().total().qualified(), 1);
  EXPECT_EQ(records.Funnel().total().disqualified(), 1);
}

TEST(FunnelTest, BadFiltersNameTheField) {
  crm::v1::GetFunnelRequest r;
  r.set_period("2026-13");
  EXPECT_EQ(ValidateFunnelRequest(r).message(), "period: must be YYYY-MM");
  r.set_period("26-01");
  EXPECT_EQ(ValidateFunnelRequest(r).code(), absl::StatusCode::kInvalidArgument);
  r.set_period("2026-\xc3\xa9");  // "2026-é": seven bytes, two of them not digits
  EXPECT_EQ(ValidateFunnelRequest(r).message(), "period: must be YYYY-MM");
  r.set_period("2026-01");
  EXPECT_TRUE(ValidateFunnelRequest(r).ok());
  r.set_channel(static_cast<crm::v1::LeadChannel>(999));
  EXPECT_EQ(ValidateFunnelRequest(r).message(), "channel: unknown value");
}

}  // namespace
}  // namespace crm::analytics
