#include "services/leads/api/lead_commands.h"

#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "libs/common/testing/temp_dir.h"

namespace crm::leads {
namespace {

class LeadCommandsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store_ = std::move(*LeadStore::Open(dir_.Sub("leads")));
    commands_ = std::make_unique<LeadCommands>(*store_);
  }
  static crm::v1::CaptureLeadRequest Request(const std::string& id, const std::string& email,
                                             const std::string& phone = "") {
    crm::v1::CaptureLeadRequest r;
    r.set_request_id(id);
    r.set_channel(crm::v1::LEAD_CHANNEL_WEB_FORM);
    r.mutable_contact()->set_email(email);
    r.mutable_contact()->set_phone(phone);
    return r;
  }
  EventContext Ctx() { return {"crm/leads", "user:test", "", "", absl::Now()}; }

  crm::testing::TempDir dir_;
  std::unique_ptr<LeadStore> store_;
  std::unique_ptr<LeadCommands> commands_;
};

TEST_F(LeadCommandsTest, CaptureAppendsOneEventReadableAsLead) {
  auto r = commands_->CaptureLead(Request("r1", "Ada@Example.com"), Ctx());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->duplicate());
  auto lead = commands_->GetLead([&] {
    crm::v1::GetLeadRequest g;
    g.set_lead_id(r->lead_id());
    return g;
  }());
  ASSERT_TRUE(lead.ok()) << lead.status();
  EXPECT_EQ(lead->contact().email(), "ada@example.com");
  EXPECT_EQ(lead->customer_id(), r->customer_id());
  auto events = store_->events().ReadStream(LeadStream(r->lead_id()));
  ASSERT_EQ(events->size(), 1u);
  EXPECT_EQ((*events)[0].type(), "LeadCaptured");
  EXPECT_EQ((*events)[0].customer_id(), r->customer_id());
  EXPECT_EQ((*events)[0].actor(), "user:test");
  EXPECT_EQ((*events)[0].correlation_id(), "r1");
}

TEST_F(LeadCommandsTest, SamePersonByEmailOrPhoneGetsSameCustomerId) {
  auto first = commands_->CaptureLead(Request("r1", "ada@example.com", "+442079460958"), Ctx());
  auto by_email = commands_->CaptureLead(Request("r2", "ADA@example.com"), Ctx());
  auto by_phone = commands_->CaptureLead(Request("r3", "", "+44 20 7946 0958"), Ctx());
  auto other = commands_->CaptureLead(Request("r4", "bob@example.com"), Ctx());
  ASSERT_TRUE(first.ok() && by_email.ok() && by_phone.ok() && other.ok());
  EXPECT_EQ(by_email->customer_id(), first->customer_id());
  EXPECT_TRUE(by_email->duplicate());
  EXPECT_EQ(by_email->duplicate_of_lead_id(), first->lead_id());
  EXPECT_EQ(by_phone->customer_id(), first->customer_id());
  EXPECT_NE(other->customer_id(), first->customer_id());
  EXPECT_FALSE(other->duplicate());
}

TEST_F(LeadCommandsTest, RetriedRequestReturnsFirstResultAndAppendsNothing) {
  auto first = commands_->CaptureLead(Request("r1", "ada@example.com"), Ctx());
  auto retry = commands_->CaptureLead(Request("r1", "ada@example.com"), Ctx());
  ASSERT_TRUE(first.ok() && retry.ok());
  EXPECT_EQ(retry->lead_id(), first->lead_id());
  EXPECT_EQ(retry->customer_id(), first->customer_id());
  EXPECT_FALSE(retry->duplicate());
  EXPECT_EQ(store_->events().LogSize(), 1u);
}

TEST_F(LeadCommandsTest, InvalidInputAppendsNothing) {
  auto r = commands_->CaptureLead(Request("r1", "not-an-email"), Ctx());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->events().LogSize(), 0u);
  EXPECT_TRUE(store_->events().ReadOutbox(0, 10)->empty());
}

TEST_F(LeadCommandsTest, UnknownLeadIsNotFound) {
  crm::v1::GetLeadRequest g;
  g.set_lead_id("lead_missing");
  EXPECT_EQ(commands_->GetLead(g).status().code(), absl::StatusCode::kNotFound);
  g.clear_lead_id();
  EXPECT_EQ(commands_->GetLead(g).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace crm::leads
