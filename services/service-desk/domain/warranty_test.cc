#include "services/service-desk/domain/warranty.h"

#include "gtest/gtest.h"
#include "libs/common/ids.h"
#include "services/service-desk/domain/settings.h"

namespace crm::service_desk {
namespace {

absl::Time Utc(int year, int month, int day) {
  return absl::FromCivil(absl::CivilDay(year, month, day), absl::UTCTimeZone());
}

DeskSettings WithFollowUpDays(int days) {
  auto config = DeskSettings::Defaults();
  auto* printer = config.add_warranties();
  printer->set_product_id("printer-x");
  printer->set_months(24);
  auto* toner = config.add_warranties();
  toner->set_product_id("toner");
  toner->set_months(0);
  config.set_warranty_follow_up_days(days);
  auto settings = DeskSettings::Create(config);
  EXPECT_TRUE(settings.ok()) << settings.status();
  return *settings;
}

TEST(WarrantyFollowUpTest, FallsDueTheConfiguredDaysBeforeTheWarrantyEnds) {
  const auto follow_up = WithFollowUpDays(45).WarrantyFollowUpFor("Printer-X", Utc(2024, 3, 1));
  ASSERT_TRUE(follow_up.has_value());
  EXPECT_EQ(follow_up->warranty_ends_at, Utc(2026, 3, 1));
  EXPECT_EQ(follow_up->due_at, Utc(2026, 1, 15));
}

TEST(WarrantyFollowUpTest, DefaultsToThirtyDaysAndCanBeTurnedOff) {
  const auto by_default = WithFollowUpDays(0).WarrantyFollowUpFor("printer-x", Utc(2024, 3, 1));
  ASSERT_TRUE(by_default.has_value());
  EXPECT_EQ(by_default->due_at, Utc(2026, 1, 30));
  EXPECT_EQ(WithFollowUpDays(-1).WarrantyFollowUpFor("printer-x", Utc(2024, 3, 1)), std::nullopt);
}

TEST(WarrantyFollowUpTest, NoneForProductsWithoutWarranty) {
  const auto settings = WithFollowUpDays(30);
  EXPECT_EQ(settings.WarrantyFollowUpFor("toner", Utc(2024, 3, 1)), std::nullopt);
  EXPECT_EQ(settings.WarrantyFollowUpFor("unlisted", Utc(2024, 3, 1)), std::nullopt);
}

TEST(WarrantyFollowUpTest, AWarrantyShorterThanTheLeadTimeFallsDueAtPurchase) {
  auto config = DeskSettings::Defaults();
  config.set_default_warranty_months(1);
  config.set_warranty_follow_up_days(60);
  const auto follow_up = DeskSettings::Create(config)->WarrantyFollowUpFor("x", Utc(2024, 3, 1));
  ASSERT_TRUE(follow_up.has_value());
  EXPECT_EQ(follow_up->due_at, Utc(2024, 3, 1));
}

TEST(WarrantyFollowUpTest, SettingsRejectOutOfRangeDays) {
  auto config = DeskSettings::Defaults();
  config.set_warranty_follow_up_days(-2);
  auto settings = DeskSettings::Create(config);
  EXPECT_EQ(settings.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(settings.status().message().find("warranty_follow_up_days"), std::string::npos);
}

TEST(WarrantyFollowUpTest, RaisedFromDueUntilTheWarrantyEnds) {
  crm::v1::WarrantyFollowUpRequested f;
  *f.mutable_due_at() = ToProtoTimestamp(Utc(2026, 1, 30));
  *f.mutable_warranty_ends_at() = ToProtoTimestamp(Utc(2026, 3, 1));
  EXPECT_EQ(DecideWarrantyFollowUp(f, Utc(2026, 1, 29)), FollowUpAction::kNotDue);
  EXPECT_EQ(DecideWarrantyFollowUp(f, Utc(2026, 1, 30)), FollowUpAction::kRaise);
  EXPECT_EQ(DecideWarrantyFollowUp(f, Utc(2026, 2, 28)), FollowUpAction::kRaise);
  EXPECT_EQ(DecideWarrantyFollowUp(f, Utc(2026, 3, 1)), FollowUpAction::kLapsed);
}

TEST(WarrantyFollowUpTest, EachOrderLineHasItsOwnStream) {
  crm::v1::WarrantyFollowUpRequested a, b;
  a.set_order_id("ord_1");
  a.set_product_id("printer-x");
  b.set_order_id("ord_1");
  b.set_product_id("scanner");
  EXPECT_NE(WarrantyFollowUpStream(a), WarrantyFollowUpStream(b));
  // The line raised again (a later timer run, after the settings moved its
  // due date) names the same stream, so it is raised once.
  crm::v1::WarrantyFollowUpRequested again = a;
  again.mutable_due_at()->set_seconds(1700000000);
  again.set_customer_id("cus_1");
  EXPECT_EQ(WarrantyFollowUpStream(again), WarrantyFollowUpStream(a));
}

}  // namespace
}  // namespace crm::service_desk
