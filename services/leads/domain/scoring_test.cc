#include "services/leads/domain/scoring.h"

#include "gtest/gtest.h"

namespace crm::leads {
namespace {

crm::v1::Lead Bare() {
  crm::v1::Lead lead;
  lead.set_channel(crm::v1::LEAD_CHANNEL_API);  // 1 engagement point
  return lead;
}

crm::v1::Money Eur(int64_t major) {
  crm::v1::Money m;
  m.set_currency("EUR");
  m.set_minor_units(major * 100);
  return m;
}

TEST(ScoreTest, NothingKnownScoresOnlyTheChannel) {
  auto s = ComputeScore(Bare());
  EXPECT_EQ(s.budget() + s.authority() + s.need() + s.timeline(), 0);
  EXPECT_EQ(s.engagement(), 1);
  EXPECT_EQ(s.total(), 1);
}

TEST(ScoreTest, BudgetThresholdsInMajorUnits) {
  for (auto [major, points] : {std::pair<int64_t, int>{0, 0},
                               {999, 5},
                               {1'000, 10},
                               {10'000, 15},
                               {99'999, 15},
                               {100'000, 20},
                               {5'000'000, 20}}) {
    auto lead = Bare();
    *lead.mutable_bant()->mutable_budget() = Eur(major);
    EXPECT_EQ(ComputeScore(lead).budget(), points) << major;
  }
}

TEST(ScoreTest, AuthorityFromDecisionMakerOrTitleWords) {
  auto lead = Bare();
  lead.mutable_bant()->set_decision_maker(true);
  EXPECT_EQ(ComputeScore(lead).authority(), 20);
  for (auto [title, points] : {std::pair<const char*, int>{"", 0},
                               {"Engineer", 5},
                               {"Head of Sales", 15},
                               {"VP, Marketing", 15},
                               {"CTO", 15},
                               {"Sales Manager", 10},
                               {"Headhunter", 5},
                               {"SVP Sales", 15},
                               {"EVP, Operations", 15},
                               {"Assistant to the CEO", 5},
                               {"Executive Assistant to the VP", 5},
                               {"Chief of Staff to the CTO", 15},
                               {"Go-to-Market Director", 15},
                               {"Go-To-Market Manager", 10},
                               {"Owner", 15},
                               {"Owner & CEO", 15},
                               {"Co-Owner", 15},
                               {"Business Owner", 15},
                               {"Managing Partner", 15},
                               {"Partner, Legal", 15},
                               {"Product Owner", 5},
                               {"Senior Product Owner", 5},
                               {"Channel Partner", 5},
                               {"Partner Manager", 10},
                               {"Partner Account Manager", 10},
                               {"Owner of Acme Plumbing", 15},
                               {"Owner - Acme", 15},
                               {"Restaurant Owner", 15},
                               {"Partner at Smith & Co", 15},
                               {"Associate Partner", 15},
                               {"Manager of Partner Programs", 10}}) {
    auto t = Bare();
    t.mutable_contact()->set_title(title);
    EXPECT_EQ(ComputeScore(t).authority(), points) << title;
  }
}

TEST(ScoreTest, NeedFromStatementAndInterests) {
  auto lead = Bare();
  lead.add_product_interests("crm");
  EXPECT_EQ(ComputeScore(lead).need(), 5);
  lead.add_product_interests("analytics");
  lead.add_product_interests("telephony");
  EXPECT_EQ(ComputeScore(lead).need(), 10);  // two interests count
  lead.mutable_bant()->set_need("replace spreadsheets");
  EXPECT_EQ(ComputeScore(lead).need(), 20);
}

TEST(ScoreTest, TimelineSoonerScoresHigher) {
  for (auto [t, points] : {std::pair{crm::v1::PURCHASE_TIMELINE_IMMEDIATE, 20},
                           {crm::v1::PURCHASE_TIMELINE_QUARTER, 15},
                           {crm::v1::PURCHASE_TIMELINE_YEAR, 10},
                           {crm::v1::PURCHASE_TIMELINE_LATER, 0}}) {
    auto lead = Bare();
    lead.mutable_bant()->set_timeline(t);
    EXPECT_EQ(ComputeScore(lead).timeline(), points);
  }
}

TEST(ScoreTest, EngagementAddsChannelAndActivityUpToTwenty) {
  auto lead = Bare();
  lead.set_channel(crm::v1::LEAD_CHANNEL_TRADE_SHOW);
  lead.set_engagement_points(8);
  EXPECT_EQ(ComputeScore(lead).engagement(), 13);
  lead.set_engagement_points(100);
  EXPECT_EQ(ComputeScore(lead).engagement(), 20);
}

TEST(ScoreTest, TotalIsTheSumAndAtMostHundred) {
  auto lead = Bare();
  *lead.mutable_bant()->mutable_budget() = Eur(250'000);
  lead.mutable_bant()->set_decision_maker(true);
  lead.mutable_bant()->set_need("now");
  lead.mutable_bant()->set_timeline(crm::v1::PURCHASE_TIMELINE_IMMEDIATE);
  lead.add_product_interests("a");
  lead.add_product_interests("b");
  lead.set_engagement_points(50);
  auto s = ComputeScore(lead);
  EXPECT_EQ(s.total(), 100);
  EXPECT_TRUE(SameScore(s, ComputeScore(lead)));
  lead.set_engagement_points(0);
  EXPECT_FALSE(SameScore(s, ComputeScore(lead)));
}

}  // namespace
}  // namespace crm::leads
