#include "services/service-desk/store/customer_projection.h"

#include "crm/v1/leads.pb.h"
#include "crm/v1/sales.pb.h"
#include "gtest/gtest.h"
#include "libs/common/database.h"
#include "libs/common/ids.h"
#include "libs/common/testing/temp_dir.h"
#include "services/service-desk/store/desk_store.h"

namespace crm::service_desk {
namespace {

ConsumedMessage Captured(const std::string& lead_id, const std::string& customer_id,
                         const std::string& email, int64_t offset, int seconds) {
  crm::v1::LeadCaptured lead;
  lead.set_lead_id(lead_id);
  lead.set_customer_id(customer_id);
  lead.mutable_contact()->set_email(email);
  lead.set_company("Engines");
  crm::v1::EventEnvelope e;
  e.set_event_id("evt_" + lead_id);
  e.set_stream("lead-" + lead_id);
  e.set_stream_version(1);
  e.set_customer_id(customer_id);
  e.set_type("LeadCaptured");
  *e.mutable_occurred_at() = ToProtoTimestamp(absl::FromUnixSeconds(seconds));
  e.mutable_payload()->PackFrom(lead);
  return {"crm.leads.v1", 0, offset, e.SerializeAsString()};
}

class CustomerProjectionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store_ = std::move(*DeskStore::Open(dir_.Sub("desk")));
    subscriber_ = std::make_unique<Subscriber>(store_->db(), projection_, SubscriberOptions{});
  }
  crm::testing::TempDir dir_;
  std::unique_ptr<DeskStore> store_;
  DeskSettings settings_ = *DeskSettings::Create(DeskSettings::Defaults());
  CustomerProjection projection_{settings_};
  std::unique_ptr<Subscriber> subscriber_;
};

TEST_F(CustomerProjectionTest, CapturedLeadsMakeTheCustomerKnownOnce) {
  EXPECT_FALSE(*store_->IsKnownCustomer("cus_1"));
  ASSERT_TRUE(subscriber_
                  ->ApplyBatch({Captured("l1", "cus_1", "ada@example.com", 0, 100),
                                Captured("l2", "cus_1", "ada@new.example", 1, 200)})
                  .ok());
  // Redelivered (a re-published log): skipped, nothing counted twice.
  ASSERT_TRUE(subscriber_->ApplyBatch({Captured("l1", "cus_1", "ada@example.com", 2, 100)}).ok());
  EXPECT_EQ(subscriber_->skipped(), 1u);
  EXPECT_TRUE(*store_->IsKnownCustomer("cus_1"));
  auto c = store_->CustomerContextOf("cus_1");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(c->known());
  EXPECT_EQ(c->email(), "ada@new.example");
  EXPECT_EQ(c->company(), "Engines");
  EXPECT_EQ(c->lead_ids_size(), 2);
  EXPECT_EQ(c->ticket_count(), 0);
}

TEST_F(CustomerProjectionTest, OtherEventsAreIgnoredAndUnknownCustomersStayUnknown) {
  crm::v1::EventEnvelope other;
  other.set_event_id("evt_x");
  other.set_stream("opportunity-1");
  other.set_stream_version(1);
  other.set_customer_id("cus_2");
  other.set_type("SomethingElse");
  ASSERT_TRUE(subscriber_->ApplyBatch({{"crm.leads.v1", 0, 0, other.SerializeAsString()}}).ok());
  EXPECT_EQ(subscriber_->applied(), 1u);
  EXPECT_EQ(subscriber_->poisoned(), 0u);
  auto c = store_->CustomerContextOf("cus_2");
  ASSERT_TRUE(c.ok());
  EXPECT_FALSE(c->known());
  EXPECT_EQ(c->customer_id(), "cus_2");
}

TEST_F(CustomerProjectionTest, SalesAccountAndOrdersFromTheSalesTopic) {
  crm::v1::CustomerOpened opened;
  opened.set_customer_id("cus_3");
  opened.set_name("Engines Ltd");
  opened.set_tier("standard");
  crm::v1::OrderPlaced order;
  order.set_order_id("ord_1");
  order.set_customer_id("cus_3");
  order.add_lines()->set_product_id("printer-x");
  std::vector<ConsumedMessage> batch;
  int64_t offset = 0;
  for (const google::protobuf::Message* payload :
       std::initializer_list<const google::protobuf::Message*>{&opened, &order}) {
    crm::v1::EventEnvelope e;
    e.set_event_id("evt_" + std::to_string(offset));
    e.set_stream("sales-" + std::to_string(offset));
    e.set_stream_version(1);
    e.set_customer_id("cus_3");
    *e.mutable_occurred_at() = ToProtoTimestamp(absl::FromUnixSeconds(1000));
    e.mutable_payload()->PackFrom(*payload);
    batch.push_back({"crm.sales.v1", 0, offset++, e.SerializeAsString()});
  }
  ASSERT_TRUE(subscriber_->ApplyBatch(batch).ok());
  auto c = store_->CustomerContextOf("cus_3");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(c->known());
  EXPECT_EQ(c->account_name(), "Engines Ltd");
  ASSERT_EQ(c->purchases_size(), 1);
  EXPECT_EQ(c->purchases(0).product_id(), "printer-x");
  EXPECT_EQ(c->purchases(0).purchased_at().seconds(), 1000);
}

// A data dir from a build that kept merge links in a family of its own
// still opens (the family is dropped).
TEST(DeskStoreTest, ADataDirWithTheRetiredMergeFamilyOpens) {
  crm::testing::TempDir dir;
  {
    auto families = DeskStore::Families();
    families.push_back("customer_merges");
    auto db = Database::Open(dir.Sub("desk"), families);
    ASSERT_TRUE(db.ok()) << db.status();
  }
  auto store = DeskStore::Open(dir.Sub("desk"));
  ASSERT_TRUE(store.ok()) << store.status();
}

}  // namespace
}  // namespace crm::service_desk
