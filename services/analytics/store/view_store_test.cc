#include "services/analytics/store/view_store.h"

#include "absl/strings/str_cat.h"
#include "crm/v1/leads.pb.h"
#include "crm/v1/sales.pb.h"
#include "gtest/gtest.h"
#include "libs/common/testing/temp_dir.h"

namespace crm::analytics {
namespace {

ConsumedMessage Captured(const std::string& customer, int n, int64_t offset) {
  crm::v1::LeadCaptured lead;
  lead.set_lead_id(absl::StrCat("lead_", n));
  lead.set_customer_id(customer);
  lead.mutable_contact()->set_email(absl::StrCat("p", n, "@x.com"));
  crm::v1::EventEnvelope e;
  e.set_event_id(absl::StrCat("evt-", n));
  e.set_stream(absl::StrCat("lead-", n));
  e.set_stream_version(1);
  e.set_customer_id(customer);
  e.set_type("LeadCaptured");
  e.mutable_occurred_at()->set_seconds(1000 + n);
  e.mutable_payload()->PackFrom(lead);
  return {"crm.leads.v1", 0, offset, e.SerializeAsString()};
}

class ViewStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    db_ = std::move(*Database::Open(dir_.Sub("analytics"), ViewFamilies()));
    subscriber_ = std::make_unique<Subscriber>(*db_, projection_, SubscriberOptions{});
    views_ = std::make_unique<ViewStore>(*db_);
  }
  crm::testing::TempDir dir_;
  std::unique_ptr<Database> db_;
  Customer360Projection projection_;
  std::unique_ptr<Subscriber> subscriber_;
  std::unique_ptr<ViewStore> views_;
};

TEST_F(ViewStoreTest, RedeliveredEventsAreCountedOnce) {
  ASSERT_TRUE(subscriber_->ApplyBatch({Captured("cus_1", 1, 0), Captured("cus_1", 2, 1)}).ok());
  ASSERT_TRUE(subscriber_->ApplyBatch({Captured("cus_1", 1, 2), Captured("cus_1", 2, 3)}).ok());
  auto view = views_->GetCustomer360("cus_1", 0, "");
  ASSERT_TRUE(view.ok()) << view.status();
  EXPECT_EQ(view->event_count(), 2);
  EXPECT_EQ(view->timeline_size(), 2);
  EXPECT_EQ(view->lead_ids_size(), 2);
}

TEST_F(ViewStoreTest, TimelinePagesInOccurredOrderWithoutGapsOrRepeats) {
  std::vector<ConsumedMessage> batch;
  // Delivered newest first; the timeline still reads oldest first.
  for (int n = 25; n >= 1; --n) batch.push_back(Captured("cus_1", n, 25 - n));
  batch.push_back(Captured("cus_2", 99, 26));
  ASSERT_TRUE(subscriber_->ApplyBatch(batch).ok());

  std::vector<std::string> seen;
  std::string token;
  int pages = 0;
  do {
    auto view = views_->GetCustomer360("cus_1", 10, token);
    ASSERT_TRUE(view.ok()) << view.status();
    for (const auto& e : view->timeline()) seen.push_back(e.event_id());
    token = view->next_page_token();
    ++pages;
  } while (!token.empty() && pages < 10);
  EXPECT_EQ(pages, 3);
  ASSERT_EQ(seen.size(), 25u);
  for (int n = 1; n <= 25; ++n) EXPECT_EQ(seen[n - 1], absl::StrCat("evt-", n));
}

TEST_F(ViewStoreTest, ErrorsNameTheProblem) {
  EXPECT_EQ(views_->GetCustomer360("cus_none", 0, "").status().code(), absl::StatusCode::kNotFound);
  auto empty = views_->GetCustomer360("", 0, "");
  EXPECT_EQ(empty.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(empty.status().message().find("customer_id"), std::string::npos);
  ASSERT_TRUE(subscriber_->ApplyBatch({Captured("cus_1", 1, 0)}).ok());
  auto bad = views_->GetCustomer360("cus_1", 10, "!!not-a-token!!");
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("page_token"), std::string::npos);
  EXPECT_EQ(views_->GetCustomer360("cus_1", -1, "").status().code(),
            absl::StatusCode::kInvalidArgument);
}

ConsumedMessage Won(const std::string& customer, const std::string& opp, int64_t offset) {
  crm::v1::OpportunityStageChanged won;
  won.set_opportunity_id(opp);
  won.set_from_stage_id("proposal");
  won.set_to_stage_id("won");
  won.set_outcome(crm::v1::STAGE_OUTCOME_WON);
  won.mutable_amount()->set_currency("EUR");
  won.mutable_amount()->set_minor_units(700);
  won.mutable_time_in_previous_stage()->set_seconds(60);
  crm::v1::EventEnvelope e;
  e.set_event_id(absl::StrCat("evt-won-", opp));
  e.set_stream(absl::StrCat("opportunity-", opp));
  e.set_stream_version(2);
  e.set_customer_id(customer);
  e.set_type("OpportunityStageChanged");
  e.mutable_occurred_at()->set_seconds(5000);
  e.mutable_payload()->PackFrom(won);
  return {"crm.sales.v1", 0, offset, e.SerializeAsString()};
}

ConsumedMessage OpportunityOpened(const std::string& customer, const std::string& opp,
                                  const std::string& lead, int64_t offset) {
  crm::v1::OpportunityOpened opened;
  opened.set_opportunity_id(opp);
  opened.set_lead_id(lead);
  opened.set_stage_id("proposal");
  crm::v1::EventEnvelope e;
  e.set_event_id(absl::StrCat("evt-open-", opp));
  e.set_stream(absl::StrCat("opportunity-", opp));
  e.set_stream_version(1);
  e.set_customer_id(customer);
  e.set_type("OpportunityOpened");
  e.mutable_occurred_at()->set_seconds(4000);
  e.mutable_payload()->PackFrom(opened);
  return {"crm.sales.v1", 0, offset, e.SerializeAsString()};
}

TEST_F(ViewStoreTest, FunnelJoinsSalesEventsAcrossBatchesAndTopics) {
  // The sales topic is consumed before the leads topic, over separate batches.
  ASSERT_TRUE(
      subscriber_
          ->ApplyBatch({OpportunityOpened("cus_1", "opp_1", "lead_1", 0), Won("cus_1", "opp_1", 1)})
          .ok());
  ASSERT_TRUE(subscriber_->ApplyBatch({Captured("cus_1", 1, 0), Captured("cus_2", 2, 1)}).ok());
  ASSERT_TRUE(subscriber_->ApplyBatch({Won("cus_1", "opp_1", 1)}).ok());  // redelivered
  auto funnel = views_->GetFunnel({});
  ASSERT_TRUE(funnel.ok()) << funnel.status();
  EXPECT_EQ(funnel->total().leads(), 2);
  EXPECT_EQ(funnel->total().opportunities(), 1);
  EXPECT_EQ(funnel->total().won(), 1);
  ASSERT_EQ(funnel->total().won_revenue_size(), 1);
  EXPECT_EQ(funnel->total().won_revenue(0).minor_units(), 700);
  ASSERT_EQ(funnel->stage_times_size(), 1);
  EXPECT_EQ(funnel->stage_times(0).samples(), 1);
  EXPECT_DOUBLE_EQ(funnel->average_sales_cycle_seconds(), 1000);

  auto view = views_->GetCustomer360("cus_1", 0, "");
  ASSERT_TRUE(view.ok());
  EXPECT_EQ(view->lifecycle_stage(), crm::v1::LIFECYCLE_STAGE_CUSTOMER);
  EXPECT_EQ(view->open_opportunity_count(), 0);

  crm::v1::GetFunnelRequest bad;
  bad.set_period("May");
  EXPECT_EQ(views_->GetFunnel(bad).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace crm::analytics
