#include "services/sales/domain/forecast.h"

#include <algorithm>
#include <limits>

#include "gtest/gtest.h"
#include "libs/common/ids.h"
#include "services/sales/domain/validation.h"

namespace crm::sales {
namespace {

crm::v1::Opportunity Opp(const std::string& owner, const std::string& territory, int64_t amount,
                         int probability, const std::string& close_date,
                         crm::v1::StageOutcome outcome = crm::v1::STAGE_OUTCOME_OPEN,
                         const std::string& currency = "EUR") {
  crm::v1::Opportunity o;
  o.set_owner_id(owner);
  o.set_territory(territory);
  *o.mutable_amount() = MakeMoney(currency, amount);
  o.set_probability_percent(probability);
  o.set_outcome(outcome);
  if (outcome == crm::v1::STAGE_OUTCOME_OPEN) {
    o.set_expected_close_date(close_date);
  } else {
    absl::CivilDay day;
    EXPECT_TRUE(absl::ParseCivilTime(close_date, &day));
    *o.mutable_closed_at() = ToProtoTimestamp(absl::FromCivil(day, absl::UTCTimeZone()));
    o.set_expected_close_date("2020-01-01");  // ignored once closed
  }
  return o;
}

TEST(ForecastTest, WeightsOpenDealsAndSumsWonRevenuePerOwnerTerritoryAndMonth) {
  std::vector<crm::v1::Opportunity> book = {
      Opp("ada", "EMEA", 1'000'000, 50, "2025-03-10"),
      Opp("ada", "EMEA", 333, 10, "2025-03-31"),  // 33.3 rounds to 33
      Opp("ada", "EMEA", 2'000'000, 100, "2025-03-15", crm::v1::STAGE_OUTCOME_WON),
      Opp("ada", "EMEA", 9'000'000, 0, "2025-03-15", crm::v1::STAGE_OUTCOME_LOST),
      Opp("ada", "EMEA", 400'000, 80, "2025-04-02"),
      Opp("bob", "AMER", 100, 20, "2025-03-01"),
  };
  auto rows = Forecast(book, ForecastQuery{});
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[0].owner_id(), "ada");
  EXPECT_EQ(rows[0].period(), "2025-03");
  EXPECT_EQ(rows[0].currency(), "EUR");
  EXPECT_EQ(rows[0].open_opportunities(), 2);
  EXPECT_EQ(rows[0].pipeline_minor_units(), 1'000'333);
  EXPECT_EQ(rows[0].weighted_minor_units(), 500'033);
  EXPECT_EQ(rows[0].won_opportunities(), 1);
  EXPECT_EQ(rows[0].won_minor_units(), 2'000'000);
  EXPECT_EQ(rows[1].period(), "2025-04");
  EXPECT_EQ(rows[1].weighted_minor_units(), 320'000);
  EXPECT_EQ(rows[2].owner_id(), "bob");
  EXPECT_EQ(rows[2].territory(), "AMER");
  EXPECT_EQ(rows[2].weighted_minor_units(), 20);
}

TEST(ForecastTest, QuartersFiltersAndDateBounds) {
  std::vector<crm::v1::Opportunity> book = {
      Opp("ada", "EMEA", 100, 50, "2025-01-10"),
      Opp("ada", "EMEA", 100, 50, "2025-03-31"),
      Opp("ada", "EMEA", 100, 50, "2025-04-01"),
      Opp("bob", "EMEA", 100, 50, "2025-02-01"),
      Opp("ada", "APAC", 100, 50, "2025-02-01"),
      Opp("ada", "EMEA", 100, 50, "2025-02-01", crm::v1::STAGE_OUTCOME_OPEN, "USD")};
  ForecastQuery q;
  q.period = crm::v1::FORECAST_PERIOD_QUARTER;
  q.owner_id = "ada";
  q.territory = "EMEA";
  q.to = absl::CivilDay(2025, 3, 31);
  auto rows = Forecast(book, q);
  ASSERT_EQ(rows.size(), 2u);  // EUR and USD in 2025-Q1
  EXPECT_EQ(rows[0].period(), "2025-Q1");
  EXPECT_EQ(rows[0].currency(), "EUR");
  EXPECT_EQ(rows[0].open_opportunities(), 2);
  EXPECT_EQ(rows[1].currency(), "USD");
  EXPECT_EQ(PeriodOf(absl::CivilDay(2025, 12, 31), crm::v1::FORECAST_PERIOD_QUARTER), "2025-Q4");
}

TEST(ForecastTest, TerritoryFilterIgnoresCaseAsAccessDoes) {
  // A deal converted from a lead keeps the lead's spelling of the region.
  std::vector<crm::v1::Opportunity> book = {Opp("ada", "emea", 100, 50, "2025-02-01"),
                                            Opp("bob", "EMEA", 100, 50, "2025-02-01"),
                                            Opp("cy", "APAC", 100, 50, "2025-02-01")};
  ForecastQuery q;
  q.territory = "EMEA";
  auto rows = Forecast(book, q);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].owner_id(), "ada");
  EXPECT_EQ(rows[0].territory(), "emea");  // as the deal spells it
  EXPECT_EQ(rows[1].owner_id(), "bob");
}

TEST(ForecastTest, OneRowPerTerritoryHoweverItIsSpelled) {
  std::vector<crm::v1::Opportunity> book = {Opp("ada", "emea", 100, 50, "2025-02-01"),
                                            Opp("ada", "EMEA", 300, 50, "2025-02-10"),
                                            Opp("ada", "Emea", 500, 100, "2025-02-20")};
  for (int turn = 0; turn < 2; ++turn) {
    auto rows = Forecast(book, ForecastQuery{});
    ASSERT_EQ(rows.size(), 1u);
    EXPECT_EQ(rows[0].territory(), "EMEA");  // the same whatever the deals' order
    EXPECT_EQ(rows[0].open_opportunities(), 3);
    EXPECT_EQ(rows[0].pipeline_minor_units(), 900);
    std::reverse(book.begin(), book.end());
  }
}

TEST(ForecastTest, DealsWithoutAmountOrCloseDateAreLeftOut) {
  auto no_amount = Opp("ada", "EMEA", 100, 50, "2025-01-10");
  no_amount.clear_amount();
  auto no_date = Opp("ada", "EMEA", 100, 50, "2025-01-10");
  no_date.clear_expected_close_date();
  EXPECT_TRUE(Forecast({no_amount, no_date}, ForecastQuery{}).empty());
}

TEST(ForecastTest, AWonDealWithoutAmountStillCountsAsWon) {
  // A lead converted without an estimate may be won before anyone sets one.
  auto won = Opp("ada", "EMEA", 100, 100, "2025-01-10", crm::v1::STAGE_OUTCOME_WON);
  won.clear_amount();
  auto rows =
      Forecast({won, Opp("ada", "EMEA", 700, 100, "2025-01-20", crm::v1::STAGE_OUTCOME_WON)},
               ForecastQuery{});
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].currency(), "");  // no amount, no currency
  EXPECT_EQ(rows[0].won_opportunities(), 1);
  EXPECT_EQ(rows[0].won_minor_units(), 0);
  EXPECT_EQ(rows[1].currency(), "EUR");
  EXPECT_EQ(rows[1].won_opportunities(), 1);
  EXPECT_EQ(rows[1].won_minor_units(), 700);
}

TEST(ForecastTest, SumsOfLargeDealsSaturateInsteadOfWrapping) {
  // 10,000 deals at the largest amount pass int64 in one row.
  const int64_t largest = kMaxMinorUnits - 1;
  std::vector<crm::v1::Opportunity> book(
      10'000, Opp("ada", "EMEA", largest, 100, "2025-01-10", crm::v1::STAGE_OUTCOME_OPEN, "IDR"));
  auto rows = Forecast(book, ForecastQuery{});
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].pipeline_minor_units(), std::numeric_limits<int64_t>::max());
  EXPECT_EQ(rows[0].weighted_minor_units(), std::numeric_limits<int64_t>::max());
}

TEST(ForecastTest, QueryIsValidated) {
  crm::v1::GetForecastRequest r;
  r.set_from_date("2025-04-01");
  r.set_to_date("2025-03-01");
  EXPECT_EQ(ParseForecastQuery(r).status().message().substr(0, 8), "to_date:");
  r.set_from_date("April");
  EXPECT_EQ(ParseForecastQuery(r).status().message().substr(0, 10), "from_date:");
  r.Clear();
  auto q = ParseForecastQuery(r);
  ASSERT_TRUE(q.ok());
  EXPECT_EQ(q->period, crm::v1::FORECAST_PERIOD_MONTH);
}

}  // namespace
}  // namespace crm::sales
