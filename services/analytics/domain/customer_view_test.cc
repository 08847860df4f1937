#include "services/analytics/domain/customer_view.h"

#include <algorithm>
#include <vector>

#include "absl/strings/str_cat.h"
#include "crm/v1/leads.pb.h"
#include "gtest/gtest.h"

namespace crm::analytics {
namespace {

crm::v1::EventEnvelope Captured(const std::string& lead_id, int64_t seconds,
                                const std::string& email, const std::string& company) {
  crm::v1::LeadCaptured lead;
  lead.set_lead_id(lead_id);
  lead.set_customer_id("cus_1");
  lead.set_channel(crm::v1::LEAD_CHANNEL_TRADE_SHOW);
  lead.mutable_contact()->set_email(email);
  lead.mutable_contact()->set_first_name("Ada");
  lead.set_company(company);
  crm::v1::EventEnvelope e;
  e.set_event_id(absl::StrCat("evt-", lead_id));
  e.set_stream(absl::StrCat("lead-", lead_id));
  e.set_stream_version(1);
  e.set_customer_id("cus_1");
  e.set_type("LeadCaptured");
  e.mutable_occurred_at()->set_seconds(seconds);
  e.mutable_payload()->PackFrom(lead);
  return e;
}

TEST(CustomerViewTest, LeadCaptureMakesALeadWithProfileAndTimelineEntry) {
  crm::v1::Customer360 view;
  auto entry = ApplyToView(view, Captured("lead_a", 100, "ada@x.com", "Engines"));
  EXPECT_EQ(view.customer_id(), "cus_1");
  EXPECT_EQ(view.lifecycle_stage(), crm::v1::LIFECYCLE_STAGE_LEAD);
  EXPECT_EQ(view.profile().email(), "ada@x.com");
  EXPECT_EQ(view.profile().company(), "Engines");
  EXPECT_EQ(view.event_count(), 1);
  ASSERT_EQ(view.lead_ids_size(), 1);
  EXPECT_EQ(entry.type(), "LeadCaptured");
  EXPECT_EQ(entry.summary(), "Lead captured via trade show (ada@x.com)");
  EXPECT_EQ(entry.occurred_at().seconds(), 100);
}

TEST(CustomerViewTest, ViewIsTheSameWhateverTheDeliveryOrder) {
  std::vector<crm::v1::EventEnvelope> events = {
      Captured("lead_a", 100, "ada@x.com", "Old Co"),
      Captured("lead_b", 300, "ada@new.com", "New Co"),
      Captured("lead_c", 200, "ada@mid.com", "Mid Co"),
  };
  std::sort(events.begin(), events.end(),
            [](const auto& a, const auto& b) { return a.event_id() < b.event_id(); });
  std::string first;
  do {
    crm::v1::Customer360 view;
    for (const auto& e : events) ApplyToView(view, e);
    EXPECT_EQ(view.profile().company(), "New Co");
    EXPECT_EQ(view.first_seen().seconds(), 100);
    EXPECT_EQ(view.last_seen().seconds(), 300);
    const std::string bytes = view.SerializeAsString();
    if (first.empty()) first = bytes;
    EXPECT_EQ(bytes, first);
  } while (std::next_permutation(events.begin(), events.end(), [](const auto& a, const auto& b) {
    return a.event_id() < b.event_id();
  }));
}

TEST(CustomerViewTest, UnknownEventTypesStillCountAndShowOnTheTimeline) {
  crm::v1::EventEnvelope e;
  e.set_event_id("evt-x");
  e.set_customer_id("cus_1");
  e.set_type("SomethingNew");
  e.mutable_occurred_at()->set_seconds(5);
  crm::v1::Customer360 view;
  auto entry = ApplyToView(view, e);
  EXPECT_EQ(view.event_count(), 1);
  EXPECT_EQ(entry.summary(), "SomethingNew");
  EXPECT_EQ(view.lifecycle_stage(), crm::v1::LIFECYCLE_STAGE_UNSPECIFIED);
}

}  // namespace
}  // namespace crm::analytics
