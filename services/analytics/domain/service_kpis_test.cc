#include "services/analytics/domain/service_kpis.h"

#include <algorithm>
#include <map>
#include <optional>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "services/analytics/testing/events.h"

namespace crm::analytics {
namespace {

using namespace crm::analytics::testing;
using crm::v1::EventEnvelope;
using crm::v1::KpiTicketRecord;

// Given events folded into ticket records (in the order given).
std::vector<KpiTicketRecord> Given(const std::vector<EventEnvelope>& events) {
  std::map<std::string, KpiTicketRecord> records;
  for (const auto& e : events) {
    auto st = ApplyToKpis(
        e, Payload(e),
        [&](const std::string& id) -> absl::StatusOr<KpiTicketRecord*> { return &records[id]; });
    EXPECT_TRUE(st.ok()) << st;
  }
  std::vector<KpiTicketRecord> out;
  for (auto& [id, r] : records) out.push_back(r);
  return out;
}

crm::v1::ServiceKpis When(const std::vector<KpiTicketRecord>& records,
                          const crm::v1::GetServiceKpisRequest& request = {},
                          const AnalyticsConfig& config = AnalyticsConfig::Defaults()) {
  return ComputeServiceKpis(records, request, config);
}

// A ticket of `team` opened at `opened`, first answered after
// `response_s`, resolved after `resolve_s` (0: never), rated `csat` (0: no).
std::vector<EventEnvelope> Ticket(const std::string& id, const std::string& team,
                                  const std::string& product, const std::string& category,
                                  int64_t opened, int64_t response_s, int64_t resolve_s,
                                  int32_t csat, bool breached = false) {
  std::vector<EventEnvelope> events = {
      TicketOpenedAt("cus_1", id, opened, product, category),
      TicketEvent(Assigned(id, team), "cus_1", id, 2, opened),
      TicketEvent(FirstReply(id), "cus_1", id, 3, opened + response_s),
  };
  if (resolve_s > 0)
    events.push_back(TicketEvent(Resolved(id), "cus_1", id, 4, opened + resolve_s));
  if (csat > 0)
    events.push_back(TicketEvent(Csat(id, csat), "cus_1", id, 5, opened + resolve_s + 1));
  if (breached) events.push_back(TicketEvent(Breached(id, team), "cus_1", id, 6, opened + 100));
  return events;
}

std::vector<EventEnvelope> Concat(std::vector<std::vector<EventEnvelope>> parts) {
  std::vector<EventEnvelope> all;
  for (auto& p : parts) all.insert(all.end(), p.begin(), p.end());
  return all;
}

TEST(PercentileTest, NearestRank) {
  std::vector<int64_t> v = {50, 10, 40, 20, 30, 60, 70, 80, 90, 100};
  EXPECT_EQ(Percentile(v, 50), 50);
  EXPECT_EQ(Percentile(v, 90), 90);
  std::vector<int64_t> one = {7};
  EXPECT_EQ(Percentile(one, 90), 7);
  std::vector<int64_t> none;
  EXPECT_EQ(Percentile(none, 50), 0);
}

TEST(ServiceKpisTest, TimesBreachRateAndCsatInTotalByTeamAndByProduct) {
  const auto records = Given(Concat({
      Ticket("t1", "red", "router", "question", 0, 60, 600, 5),
      Ticket("t2", "red", "router", "complaint", 1000, 120, 1200, 1, /*breached=*/true),
      Ticket("t3", "blue", "modem", "question", 2000, 300, 0, 0),
  }));
  const auto kpis = When(records);
  EXPECT_EQ(kpis.total().tickets(), 3);
  EXPECT_EQ(kpis.total().first_response().samples(), 3);
  EXPECT_EQ(kpis.total().first_response().median_seconds(), 120);
  EXPECT_EQ(kpis.total().first_response().p90_seconds(), 300);
  // t3 is not resolved.
  EXPECT_EQ(kpis.total().resolution().samples(), 2);
  EXPECT_EQ(kpis.total().resolution().median_seconds(), 600);
  EXPECT_EQ(kpis.total().resolution().p90_seconds(), 1200);
  EXPECT_EQ(kpis.total().breached(), 1);
  EXPECT_DOUBLE_EQ(kpis.total().sla_breach_rate(), 1.0 / 3);
  EXPECT_DOUBLE_EQ(kpis.total().csat_average(), 3.0);
  EXPECT_EQ(kpis.total().complaints(), 1);

  ASSERT_EQ(kpis.by_team_size(), 2);
  EXPECT_EQ(kpis.by_team(0).key(), "blue");
  EXPECT_EQ(kpis.by_team(1).key(), "red");
  EXPECT_EQ(kpis.by_team(1).tickets(), 2);
  EXPECT_DOUBLE_EQ(kpis.by_team(1).csat_average(), 3.0);
  EXPECT_DOUBLE_EQ(kpis.by_team(1).sla_breach_rate(), 0.5);
  ASSERT_EQ(kpis.by_product_size(), 2);
  EXPECT_EQ(kpis.by_product(0).key(), "modem");
  EXPECT_EQ(kpis.by_product(0).csat_count(), 0);
  EXPECT_EQ(kpis.by_product(1).key(), "router");
  EXPECT_DOUBLE_EQ(kpis.by_product(1).complaint_rate(), 0.5);
}

// Net promoter score from the surveys that asked: promoters (9, 10) minus
// detractors (0..6), in percent of the answers; the latest survey of a
// ticket counts, with or without its recommendation score.
TEST(ServiceKpisTest, NetPromoterScoreOverTheSurveysThatAskedForIt) {
  auto survey = [](const std::string& id, int32_t csat, std::optional<int32_t> nps, int64_t at,
                   int64_t version) {
    crm::v1::CsatSubmitted m = Csat(id, csat);
    if (nps.has_value()) m.set_nps(*nps);
    return TicketEvent(m, "cus_1", id, version, at);
  };
  std::vector<EventEnvelope> events = Concat({
      Ticket("t1", "red", "router", "question", 0, 60, 600, 0),
      Ticket("t2", "red", "router", "question", 0, 60, 600, 0),
      Ticket("t3", "blue", "modem", "question", 0, 60, 600, 0),
      Ticket("t4", "blue", "modem", "question", 0, 60, 600, 0),
      Ticket("t5", "blue", "modem", "question", 0, 60, 600, 0),
  });
  events.push_back(survey("t1", 5, 10, 700, 5));
  events.push_back(survey("t2", 4, 9, 700, 5));
  events.push_back(survey("t3", 2, 3, 700, 5));
  events.push_back(survey("t4", 4, 8, 700, 5));  // passive
  events.push_back(survey("t5", 5, 10, 700, 5));
  events.push_back(survey("t5", 3, std::nullopt, 800, 6));  // asked again, without it
  for (bool reversed : {false, true}) {
    if (reversed) std::reverse(events.begin(), events.end());
    const auto kpis = When(Given(events));
    EXPECT_EQ(kpis.total().nps_count(), 4) << reversed;
    EXPECT_DOUBLE_EQ(kpis.total().nps(), 100.0 * (2 - 1) / 4) << reversed;
    ASSERT_EQ(kpis.by_team_size(), 2);
    EXPECT_EQ(kpis.by_team(0).key(), "blue");
    EXPECT_EQ(kpis.by_team(0).nps_count(), 2);
    EXPECT_DOUBLE_EQ(kpis.by_team(0).nps(), -50.0);
    EXPECT_DOUBLE_EQ(kpis.by_team(1).nps(), 100.0);
  }
  EXPECT_EQ(When(Given(Ticket("t9", "red", "router", "question", 0, 60, 600, 4))).total().nps(),
            0.0);
}

TEST(ServiceKpisTest, ComplaintTrendPerWeekAndPerMonth) {
  // 2024-01-01 is a Monday.
  constexpr int64_t kJan1 = 1704067200;
  const auto records = Given(Concat({
      Ticket("t1", "red", "router", "complaint", kJan1 + 1 * kDay, 60, 0, 0),
      Ticket("t2", "red", "router", "question", kJan1 + 6 * kDay, 60, 0, 0),
      Ticket("t3", "red", "router", "Complaint", kJan1 + 7 * kDay, 60, 0, 0),
      Ticket("t4", "red", "router", "complaint", kJan1 + 40 * kDay, 60, 0, 0),
  }));
  crm::v1::GetServiceKpisRequest weekly;
  weekly.set_bucket(crm::v1::KPI_BUCKET_WEEK);
  const auto weeks = When(records, weekly);
  ASSERT_EQ(weeks.trend_size(), 3);
  EXPECT_EQ(weeks.trend(0).key(), "2024-01-01");
  EXPECT_EQ(weeks.trend(0).tickets(), 2);
  EXPECT_DOUBLE_EQ(weeks.trend(0).complaint_rate(), 0.5);
  EXPECT_EQ(weeks.trend(1).key(), "2024-01-08");
  EXPECT_EQ(weeks.trend(1).complaints(), 1);
  EXPECT_EQ(weeks.trend(2).key(), "2024-02-05");

  const auto months = When(records);
  ASSERT_EQ(months.trend_size(), 2);
  EXPECT_EQ(months.trend(0).key(), "2024-01");
  EXPECT_EQ(months.trend(0).tickets(), 3);
  EXPECT_EQ(months.trend(0).complaints(), 2);
  EXPECT_EQ(months.trend(1).key(), "2024-02");
}

TEST(ServiceKpisTest, PeriodTeamAndProductNarrowTheTickets) {
  const auto records = Given(Concat({
      Ticket("t1", "red", "router", "question", 100, 60, 0, 0),
      Ticket("t2", "blue", "router", "question", 200, 60, 0, 0),
      Ticket("t3", "red", "modem", "question", 300, 60, 0, 0),
  }));
  crm::v1::GetServiceKpisRequest period;
  period.mutable_from()->set_seconds(200);
  period.mutable_to()->set_seconds(300);  // exclusive
  EXPECT_EQ(When(records, period).total().tickets(), 1);
  crm::v1::GetServiceKpisRequest team;
  team.set_team_id("red");
  EXPECT_EQ(When(records, team).total().tickets(), 2);
  crm::v1::GetServiceKpisRequest product;
  product.set_product("router");
  EXPECT_EQ(When(records, product).total().tickets(), 2);
}

TEST(ServiceKpisTest, RecordsAreTheSameWhateverTheOrderAndDuplicates) {
  auto events = Concat({Ticket("t1", "red", "router", "complaint", 100, 60, 600, 4, true)});
  // A reassignment later than the breach and a second, later resolution
  // after a reopen.
  events.push_back(TicketEvent(Assigned("t1", "blue"), "cus_1", "t1", 7, 900));
  crm::v1::TicketReopened reopened;
  reopened.set_ticket_id("t1");
  events.push_back(TicketEvent(reopened, "cus_1", "t1", 8, 1000));
  events.push_back(TicketEvent(Resolved("t1"), "cus_1", "t1", 9, 2000));
  const std::string expected = Given(events).front().SerializeAsString();
  const auto record = Given(events).front();
  EXPECT_EQ(record.team_id(), "blue");
  EXPECT_EQ(record.resolved().at().seconds(), 2000);
  EXPECT_EQ(record.first_response_at().seconds(), 160);
  for (int seed = 0; seed < 20; ++seed) {
    auto shuffled = events;
    std::shuffle(shuffled.begin(), shuffled.end(), std::mt19937(seed));
    shuffled.push_back(shuffled[seed % shuffled.size()]);  // a redelivery
    EXPECT_EQ(Given(shuffled).front().SerializeAsString(), expected) << seed;
  }
}

// The desk records a breach owed before a reassignment in the same instant,
// ahead of it: the ticket is the new team's, whatever the event ids.
TEST(ServiceKpisTest, AReassignmentOutranksABreachOfTheSameInstant) {
  const std::vector<EventEnvelope> events = {
      TicketOpenedAt("cus_1", "t1", 100, "router", "fault"),
      TicketEvent(Assigned("t1", "red"), "cus_1", "t1", 2, 100),
      Envelope(Breached("t1", "red"), "cus_1", "evt-t1-zz", "ticket-t1", 3, 500),
      Envelope(Assigned("t1", "blue"), "cus_1", "evt-t1-aa", "ticket-t1", 4, 500),
  };
  for (int seed = 0; seed < 6; ++seed) {
    auto shuffled = events;
    std::shuffle(shuffled.begin(), shuffled.end(), std::mt19937(seed));
    const auto records = Given(shuffled);
    ASSERT_EQ(records.size(), 1u);
    EXPECT_EQ(records[0].team_id(), "blue") << seed;
    EXPECT_TRUE(records[0].sla_breached());
  }
  // Without any assignment seen, the breach names the team.
  const auto unassigned = Given({TicketOpenedAt("cus_1", "t2", 100, "router", "fault"),
                                 TicketEvent(Breached("t2", "red"), "cus_1", "t2", 2, 500)});
  EXPECT_EQ(unassigned[0].team_id(), "red");
}

// A ticket reopened after its team was removed, with no rule routing it
// again, has no team: it is counted as unassigned, not as the old team's.
TEST(ServiceKpisTest, AnAssignmentToNoTeamTakesTheTicketOutOfItsTeam) {
  crm::v1::TicketReopened reopened;
  reopened.set_ticket_id("t1");
  auto events = Ticket("t1", "red", "router", "fault", 100, 60, 600, 0);
  events.push_back(TicketEvent(reopened, "cus_1", "t1", 5, 900));
  events.push_back(TicketEvent(Assigned("t1", ""), "cus_1", "t1", 6, 900));
  events.push_back(TicketEvent(Breached("t1", ""), "cus_1", "t1", 7, 5000));
  for (int seed = 0; seed < 6; ++seed) {
    auto shuffled = events;
    std::shuffle(shuffled.begin(), shuffled.end(), std::mt19937(seed));
    const auto records = Given(shuffled);
    ASSERT_EQ(records.size(), 1u);
    EXPECT_EQ(records[0].team_id(), "") << seed;
  }
  crm::v1::GetServiceKpisRequest red;
  red.set_team_id("red");
  EXPECT_EQ(When(Given(events), red).total().tickets(), 0);
  const auto kpis = When(Given(events));
  ASSERT_EQ(kpis.by_team_size(), 1);
  EXPECT_EQ(kpis.by_team(0).key(), "");
  EXPECT_EQ(kpis.by_team(0).breached(), 1);
}

// A ticket solved without a reply was answered when it was resolved: a
// reply after it was reopened is not its first response.
TEST(ServiceKpisTest, AResolutionWithoutAReplyIsTheFirstResponse) {
  crm::v1::TicketReopened reopened;
  reopened.set_ticket_id("t1");
  const std::vector<EventEnvelope> events = {
      TicketOpenedAt("cus_1", "t1", 100, "router", "fault"),
      TicketEvent(Resolved("t1"), "cus_1", "t1", 2, 400),
      TicketEvent(reopened, "cus_1", "t1", 3, 5000),
      // Flagged by a desk that predates the rule.
      TicketEvent(FirstReply("t1"), "cus_1", "t1", 4, 9000),
  };
  for (int seed = 0; seed < 6; ++seed) {
    auto shuffled = events;
    std::shuffle(shuffled.begin(), shuffled.end(), std::mt19937(seed));
    const auto kpis = When(Given(shuffled));
    EXPECT_EQ(kpis.total().first_response().samples(), 1);
    EXPECT_EQ(kpis.total().first_response().median_seconds(), 300) << seed;
  }
}

TEST(ServiceKpisTest, BadRequestsNameTheField) {
  crm::v1::GetServiceKpisRequest r;
  r.mutable_from()->set_seconds(200);
  r.mutable_to()->set_seconds(100);
  auto st = ValidateServiceKpisRequest(r);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(st.message().substr(0, 3), "to:");
  crm::v1::GetServiceKpisRequest bucket;
  bucket.set_bucket(static_cast<crm::v1::KpiBucket>(17));
  EXPECT_EQ(ValidateServiceKpisRequest(bucket).message().substr(0, 7), "bucket:");
  crm::v1::GetServiceKpisRequest nanos;
  nanos.mutable_from()->set_nanos(-1);
  EXPECT_EQ(ValidateServiceKpisRequest(nanos).message().substr(0, 5), "from:");
  EXPECT_TRUE(ValidateServiceKpisRequest({}).ok());
}

}  // namespace
}  // namespace crm::analytics
