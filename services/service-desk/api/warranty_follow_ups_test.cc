#include "services/service-desk/api/warranty_follow_ups.h"

#include "crm/v1/sales.pb.h"
#include "gtest/gtest.h"
#include "libs/common/ids.h"
#include "libs/common/subscriber.h"
#include "libs/common/testing/temp_dir.h"
#include "services/service-desk/store/customer_projection.h"

namespace crm::service_desk {
namespace {

absl::Time Utc(int year, int month, int day) {
  return absl::FromCivil(absl::CivilDay(year, month, day), absl::UTCTimeZone());
}

crm::v1::EventEnvelope Order(const std::string& order_id, const std::string& customer_id,
                             std::vector<std::string> products, absl::Time when) {
  crm::v1::OrderPlaced order;
  order.set_order_id(order_id);
  order.set_customer_id(customer_id);
  for (const auto& p : products) order.add_lines()->set_product_id(p);
  crm::v1::EventEnvelope e;
  e.set_event_id("evt_" + order_id);
  e.set_stream("order-" + order_id);
  e.set_stream_version(1);
  e.set_customer_id(customer_id);
  e.set_type("OrderPlaced");
  *e.mutable_occurred_at() = ToProtoTimestamp(when);
  e.mutable_payload()->PackFrom(order);
  return e;
}

class WarrantyFollowUpsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto config = DeskSettings::Defaults();
    auto* w = config.add_warranties();
    w->set_product_id("printer-x");
    w->set_months(24);
    config.set_warranty_follow_up_days(30);
    settings_ = std::make_unique<DeskSettings>(*DeskSettings::Create(config));
    Reopen();
  }

  void Reopen() {
    follow_ups_.reset();
    store_.reset();
    store_ = std::move(*DeskStore::Open(dir_.Sub("desk")));
    follow_ups_ = std::make_unique<WarrantyFollowUps>(*store_, [this] { return now_; });
  }

  void Deliver(const crm::v1::EventEnvelope& e) {
    CustomerProjection projection(*settings_);
    Subscriber subscriber(store_->db(), projection, SubscriberOptions{});
    ASSERT_TRUE(
        subscriber.ApplyBatch({{"crm.sales.v1", 0, offset_++, e.SerializeAsString()}}).ok());
  }

  std::vector<crm::v1::WarrantyFollowUpRequested> Raised() {
    std::vector<crm::v1::WarrantyFollowUpRequested> out;
    auto outbox = store_->events().ReadOutbox(0, 100);
    EXPECT_TRUE(outbox.ok()) << outbox.status();
    for (const auto& entry : *outbox) {
      crm::v1::WarrantyFollowUpRequested f;
      if (entry.envelope.payload().UnpackTo(&f)) out.push_back(f);
    }
    return out;
  }

  int Run() {
    auto raised = follow_ups_->RunDue();
    EXPECT_TRUE(raised.ok()) << raised.status();
    return raised.value_or(-1);
  }

  crm::testing::TempDir dir_;
  std::unique_ptr<DeskSettings> settings_;
  std::unique_ptr<DeskStore> store_;
  std::unique_ptr<WarrantyFollowUps> follow_ups_;
  absl::Time now_ = Utc(2024, 3, 1);
  int64_t offset_ = 0;
};

TEST_F(WarrantyFollowUpsTest, RaisedOnceWhenDueAndNeverAgain) {
  Deliver(Order("ord_1", "cus_1", {"printer-x", "toner"}, Utc(2024, 3, 1)));
  EXPECT_EQ(Run(), 0) << "two years before the end nothing is due";
  now_ = Utc(2026, 1, 30);  // 30 days before 2026-03-01
  EXPECT_EQ(Run(), 1);
  auto raised = Raised();
  ASSERT_EQ(raised.size(), 1u) << "toner has no warranty";
  EXPECT_EQ(raised[0].customer_id(), "cus_1");
  EXPECT_EQ(raised[0].order_id(), "ord_1");
  EXPECT_EQ(raised[0].product_id(), "printer-x");
  EXPECT_EQ(FromProtoTimestamp(raised[0].warranty_ends_at()), Utc(2026, 3, 1));
  EXPECT_EQ(FromProtoTimestamp(raised[0].due_at()), Utc(2026, 1, 30));

  now_ = Utc(2026, 2, 10);
  EXPECT_EQ(Run(), 0);
  Reopen();
  EXPECT_EQ(Run(), 0) << "a restart raises nothing again";
  EXPECT_EQ(Raised().size(), 1u);
}

TEST_F(WarrantyFollowUpsTest, ARedeliveredOrderIsNotFollowedUpTwice) {
  const auto order = Order("ord_1", "cus_1", {"printer-x"}, Utc(2024, 3, 1));
  Deliver(order);
  now_ = Utc(2026, 2, 1);
  EXPECT_EQ(Run(), 1);
  // The same order again as a new message (a refilled topic): the
  // subscriber skips it by stream version.
  Deliver(order);
  // A different event naming the same order line (a corrected order) must
  // not raise the follow-up again either: the line's stream exists.
  auto corrected = Order("ord_1", "cus_2", {"printer-x"}, Utc(2024, 3, 1));
  corrected.set_stream("order-ord_1-correction");
  Deliver(corrected);
  EXPECT_EQ(Run(), 0);
  EXPECT_EQ(Raised().size(), 1u);
  auto left = store_->DueWarrantyFollowUps(Utc(2030, 1, 1), 10);
  ASSERT_TRUE(left.ok());
  EXPECT_TRUE(left->empty()) << "spent entries leave the schedule";
}

// A follow-up is there to contact the person: none for one erased since,
// but one for a purchase made after they came back.
TEST_F(WarrantyFollowUpsTest, AFollowUpOfAnErasedCustomerIsDroppedWithoutAnEvent) {
  auto vault =
      pii::KeyVault::Open(store_->db(), &store_->events(), pii::RandomKey(), "crm/service-desk");
  ASSERT_TRUE(vault.ok()) << vault.status();
  follow_ups_ = std::make_unique<WarrantyFollowUps>(
      *store_, [this] { return now_; }, vault->get());
  Deliver(Order("ord_1", "cus_1", {"printer-x"}, Utc(2024, 3, 1)));
  Deliver(Order("ord_2", "cus_2", {"printer-x"}, Utc(2024, 3, 1)));
  EventContext ctx;
  ctx.actor = "admin:ann";
  ctx.occurred_at = Utc(2025, 1, 1);
  ASSERT_TRUE((*vault)->EraseCustomer("cus_1", "asked to be forgotten", ctx).ok());
  now_ = Utc(2026, 2, 1);
  const uint64_t log = store_->events().LogSize();
  EXPECT_EQ(Run(), 1);
  EXPECT_EQ(store_->events().LogSize(), log + 1) << "cus_2's follow-up, nothing for cus_1";
  auto raised = Raised();
  ASSERT_EQ(raised.size(), 1u);
  EXPECT_EQ(raised[0].customer_id(), "cus_2");
  auto left = store_->DueWarrantyFollowUps(Utc(2030, 1, 1), 10);
  ASSERT_TRUE(left.ok());
  EXPECT_TRUE(left->empty()) << "the erased customer's entry left the schedule";

  // One stamped a minute after the erasure by a clock that may run ahead
  // is no purchase after it.
  Deliver(Order("ord_3", "cus_1", {"printer-x"}, Utc(2025, 6, 1)));
  Deliver(Order("ord_4", "cus_1", {"printer-x"}, Utc(2025, 1, 1) + absl::Minutes(1)));
  now_ = Utc(2026, 12, 15);  // ord_4's follow-up due, its warranty not ended
  EXPECT_EQ(Run(), 0);
  now_ = Utc(2027, 5, 15);
  EXPECT_EQ(Run(), 1);
  raised = Raised();
  ASSERT_EQ(raised.size(), 2u);
  EXPECT_EQ(raised[1].customer_id(), "cus_1");
  EXPECT_EQ(raised[1].order_id(), "ord_3");
}

// Started before the keys topic is read again, the vault may not know an
// erasure yet: the schedule waits, and then drops the erased customer's.
TEST_F(WarrantyFollowUpsTest, NothingIsRaisedUntilErasuresAreKnown) {
  auto vault =
      pii::KeyVault::Open(store_->db(), &store_->events(), pii::RandomKey(), "crm/service-desk");
  ASSERT_TRUE(vault.ok()) << vault.status();
  bool known = false;
  follow_ups_ = std::make_unique<WarrantyFollowUps>(
      *store_, [this] { return now_; }, vault->get(), [&known] { return known; });
  Deliver(Order("ord_1", "cus_1", {"printer-x"}, Utc(2024, 3, 1)));
  Deliver(Order("ord_2", "cus_2", {"printer-x"}, Utc(2024, 3, 1)));
  now_ = Utc(2026, 2, 1);
  EXPECT_EQ(Run(), 0);
  EXPECT_TRUE(Raised().empty());
  auto waiting = store_->DueWarrantyFollowUps(now_, 10);
  ASSERT_TRUE(waiting.ok());
  EXPECT_EQ(waiting->size(), 2u) << "the schedule is kept";

  EventContext ctx;
  ctx.actor = "admin:ann";
  ctx.occurred_at = Utc(2025, 1, 1);
  ASSERT_TRUE((*vault)->EraseCustomer("cus_1", "asked to be forgotten", ctx).ok());
  known = true;
  EXPECT_EQ(Run(), 1);
  auto raised = Raised();
  ASSERT_EQ(raised.size(), 1u);
  EXPECT_EQ(raised[0].customer_id(), "cus_2");
}

TEST_F(WarrantyFollowUpsTest, ALapsedWarrantyIsDroppedWithoutAnEvent) {
  Deliver(Order("ord_old", "cus_1", {"printer-x"}, Utc(2020, 1, 1)));
  const uint64_t log = store_->events().LogSize();
  EXPECT_EQ(Run(), 0) << "the warranty ended in 2022";
  EXPECT_EQ(store_->events().LogSize(), log);
  auto left = store_->DueWarrantyFollowUps(Utc(2030, 1, 1), 10);
  ASSERT_TRUE(left.ok());
  EXPECT_TRUE(left->empty());
}

TEST_F(WarrantyFollowUpsTest, EarliestFirstAcrossCustomers) {
  Deliver(Order("ord_b", "cus_b", {"printer-x"}, Utc(2024, 6, 1)));
  Deliver(Order("ord_a", "cus_a", {"printer-x"}, Utc(2024, 3, 1)));
  now_ = Utc(2026, 2, 1);
  EXPECT_EQ(Run(), 1) << "only ord_a is due";
  now_ = Utc(2026, 5, 15);
  EXPECT_EQ(Run(), 1);
  auto raised = Raised();
  ASSERT_EQ(raised.size(), 2u);
  EXPECT_EQ(raised[0].order_id(), "ord_a");
  EXPECT_EQ(raised[1].order_id(), "ord_b");
}

}  // namespace
}  // namespace crm::service_desk
