#include "services/analytics/domain/analytics_settings.h"

#include <functional>

#include "crm/v1/service_desk.pb.h"
#include "gtest/gtest.h"

namespace crm::analytics {
namespace {

void ExpectInvalid(const std::function<void(crm::v1::AnalyticsSettings&)>& mutate,
                   const std::string& field) {
  crm::v1::AnalyticsSettings s;
  mutate(s);
  auto config = AnalyticsConfig::Create(s);
  ASSERT_FALSE(config.ok()) << field;
  EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(config.status().message().substr(0, field.size() + 1), field + ":") << config.status();
}

TEST(AnalyticsSettingsTest, EmptySettingsTakeTheDocumentedDefaults) {
  const AnalyticsConfig config = AnalyticsConfig::Defaults();
  const auto& s = config.settings();
  EXPECT_EQ(s.high_value_minor_units(), 1000000);
  EXPECT_EQ(s.potential_min_lead_score(), 50);
  EXPECT_EQ(s.dormant_after_days(), 90);
  EXPECT_EQ(s.churned_after_days(), 365);
  EXPECT_EQ(s.churn_risk_threshold(), 60);
  EXPECT_EQ(s.order_recency_weight() + s.activity_recency_weight() + s.open_tickets_weight() +
                s.breached_tickets_weight() + s.falling_csat_weight(),
            100);
  EXPECT_EQ(s.clv_horizon_years(), 3);
  ASSERT_EQ(s.complaint_categories_size(), 1);
  EXPECT_EQ(s.complaint_categories(0), "complaint");
}

TEST(AnalyticsSettingsTest, BadValuesAreRejectedNamingTheField) {
  ExpectInvalid([](auto& s) { s.set_dormant_after_days(-1); }, "dormant_after_days");
  ExpectInvalid([](auto& s) { s.set_churn_risk_threshold(101); }, "churn_risk_threshold");
  ExpectInvalid([](auto& s) { s.set_open_tickets_weight(-5); }, "open_tickets_weight");
  ExpectInvalid(
      [](auto& s) {
        s.set_dormant_after_days(200);
        s.set_churned_after_days(100);
      },
      "churned_after_days");
  ExpectInvalid([](auto& s) { s.add_complaint_categories(""); }, "complaint_categories[0]");
  // No lead scores above 100.
  ExpectInvalid([](auto& s) { s.set_potential_min_lead_score(101); }, "potential_min_lead_score");
  // Without order recency the other factors add up to 55: a threshold of
  // 60 would make nobody at risk.
  ExpectInvalid([](auto& s) { s.set_order_recency_weight(0); }, "churn_risk_threshold");
  crm::v1::AnalyticsSettings reachable;
  reachable.set_order_recency_weight(0);
  reachable.set_churn_risk_threshold(55);
  EXPECT_TRUE(AnalyticsConfig::Create(reachable).ok());
  crm::v1::AnalyticsSettings off;
  off.set_order_recency_weight(0);
  off.set_activity_recency_weight(0);
  off.set_open_tickets_weight(0);
  off.set_breached_tickets_weight(0);
  off.set_falling_csat_weight(0);
  EXPECT_TRUE(AnalyticsConfig::Create(off).ok()) << "every weight 0 turns scoring off";
  ExpectInvalid([](auto& s) { s.set_complaint_min_priority(42); }, "complaint_min_priority");
  ExpectInvalid([](auto& s) { (*s.mutable_high_value_minor_units_by_currency())["yen"] = 5; },
                "high_value_minor_units_by_currency[yen]");
  ExpectInvalid([](auto& s) { (*s.mutable_high_value_minor_units_by_currency())["JPY"] = 0; },
                "high_value_minor_units_by_currency[JPY]");
}

TEST(AnalyticsSettingsTest, TextFormatParsesAndReportsWhereItFailed) {
  auto parsed = AnalyticsConfig::ParseText(
      "churn_risk_threshold: 70\ncomplaint_categories: \"Refund\"\nfalling_csat_weight: 0\n");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  auto config = AnalyticsConfig::Create(*parsed);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->settings().churn_risk_threshold(), 70);
  EXPECT_EQ(config->settings().falling_csat_weight(), 0);  // set to 0: the factor is off
  EXPECT_TRUE(config->IsComplaint("refund", crm::v1::TICKET_PRIORITY_LOW));
  EXPECT_FALSE(config->IsComplaint("complaint", crm::v1::TICKET_PRIORITY_URGENT));

  // Trimmed as tickets' categories are, and case ignored beyond ASCII.
  auto spaced = AnalyticsConfig::ParseText(
      "complaint_categories: \" Refund \"\ncomplaint_categories: \"RÉCLAMATION\"\n");
  ASSERT_TRUE(spaced.ok()) << spaced.status();
  auto trimmed = AnalyticsConfig::Create(*spaced);
  ASSERT_TRUE(trimmed.ok()) << trimmed.status();
  EXPECT_TRUE(trimmed->IsComplaint("refund", crm::v1::TICKET_PRIORITY_LOW));
  EXPECT_TRUE(trimmed->IsComplaint("réclamation", crm::v1::TICKET_PRIORITY_LOW));
  EXPECT_EQ(trimmed->settings().complaint_categories(0), "Refund");
  crm::v1::AnalyticsSettings blank;
  blank.add_complaint_categories("   ");
  EXPECT_EQ(AnalyticsConfig::Create(blank).status().code(), absl::StatusCode::kInvalidArgument);

  auto bad = AnalyticsConfig::ParseText("churn_risk_threshold: \"high\"");
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("line 1"), std::string::npos) << bad.status();
}

TEST(AnalyticsSettingsTest, PriorityMakesAComplaintOnlyWhenConfigured) {
  EXPECT_FALSE(
      AnalyticsConfig::Defaults().IsComplaint("question", crm::v1::TICKET_PRIORITY_URGENT));
  crm::v1::AnalyticsSettings s;
  s.set_complaint_min_priority(crm::v1::TICKET_PRIORITY_HIGH);
  auto config = AnalyticsConfig::Create(s);
  ASSERT_TRUE(config.ok());
  EXPECT_TRUE(config->IsComplaint("question", crm::v1::TICKET_PRIORITY_URGENT));
  EXPECT_FALSE(config->IsComplaint("question", crm::v1::TICKET_PRIORITY_NORMAL));
  EXPECT_TRUE(config->IsComplaint("COMPLAINT", crm::v1::TICKET_PRIORITY_LOW));
}

}  // namespace
}  // namespace crm::analytics
