#include "services/leads/domain/lead.h"

#include "gtest/gtest.h"
#include "libs/common/testing/given_when_then.h"

namespace crm::leads {
namespace {

using LeadScenario = crm::testing::Scenario<crm::v1::Lead, LeadEvent, CaptureLead>;

LeadScenario Lead() {
  return LeadScenario(
      [](const std::optional<crm::v1::Lead>& s, const CaptureLead& c) { return Decide(s, c); },
      [](crm::v1::Lead& s, const LeadEvent& e, absl::Time t) { Apply(s, e, t); });
}

crm::v1::CaptureLeadRequest ValidRequest() {
  crm::v1::CaptureLeadRequest r;
  r.set_request_id("req-1");
  r.set_channel(crm::v1::LEAD_CHANNEL_TRADE_SHOW);
  r.mutable_contact()->set_first_name("  Ada ");
  r.mutable_contact()->set_last_name("Lovelace");
  r.mutable_contact()->set_email(" Ada@Example.COM ");
  r.mutable_contact()->set_phone("+44 (20) 7946-0958");
  r.set_company("Analytical Engines");
  r.set_region("EMEA");
  r.add_product_interests("crm-suite");
  (*r.mutable_attributes())["booth"] = "B12";
  return r;
}

absl::Status Check(const std::function<void(crm::v1::CaptureLeadRequest&)>& mutate) {
  auto r = ValidRequest();
  mutate(r);
  return NormalizeCaptureRequest(r).status();
}

void ExpectInvalidField(const absl::Status& st, const std::string& field) {
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;
  EXPECT_EQ(st.message().substr(0, field.size() + 1), field + ":") << st;
}

TEST(NormalizeTest, EmailIsLowercasedAndTrimmed) {
  EXPECT_EQ(*NormalizeEmail("  Ada@Example.COM ", "e"), "ada@example.com");
  for (const char* bad : {"", "ada", "@example.com", "ada@", "ada@example", "ada@@example.com",
                          "ada@example..com", "a da@example.com", "ada@example.com."}) {
    EXPECT_FALSE(NormalizeEmail(bad, "e").ok()) << bad;
  }
}

TEST(NormalizeTest, PhoneBecomesE164) {
  EXPECT_EQ(*NormalizePhone("+44 (20) 7946-0958", "p"), "+442079460958");
  EXPECT_EQ(*NormalizePhone("0049 30 1234567", "p"), "+49301234567");
  EXPECT_EQ(*NormalizePhone("+1.415.555.0100", "p"), "+14155550100");
  for (const char* bad : {"", "2079460958", "+44 20 79x6", "+1234567", "+1234567890123456",
                          "+0123456789"}) {
    EXPECT_FALSE(NormalizePhone(bad, "p").ok()) << bad;
  }
}

TEST(ValidateCaptureTest, NormalizesContactData) {
  auto r = NormalizeCaptureRequest(ValidRequest());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->contact().email(), "ada@example.com");
  EXPECT_EQ(r->contact().phone(), "+442079460958");
  EXPECT_EQ(r->contact().first_name(), "Ada");
}

TEST(ValidateCaptureTest, BadInputNamesTheField) {
  ExpectInvalidField(Check([](auto& r) { r.clear_request_id(); }), "request_id");
  ExpectInvalidField(Check([](auto& r) { r.set_request_id(std::string(129, 'x')); }),
                     "request_id");
  ExpectInvalidField(Check([](auto& r) { r.clear_channel(); }), "channel");
  ExpectInvalidField(Check([](auto& r) { r.set_channel(static_cast<crm::v1::LeadChannel>(99)); }),
                     "channel");
  ExpectInvalidField(Check([](auto& r) { r.clear_contact(); }), "contact");
  ExpectInvalidField(Check([](auto& r) { r.mutable_contact()->set_email("nope"); }),
                     "contact.email");
  ExpectInvalidField(Check([](auto& r) { r.mutable_contact()->set_phone("12345"); }),
                     "contact.phone");
  ExpectInvalidField(
      Check([](auto& r) { r.mutable_contact()->set_first_name(std::string(101, 'a')); }),
      "contact.first_name");
  ExpectInvalidField(Check([](auto& r) { r.mutable_contact()->set_last_name("a\nb"); }),
                     "contact.last_name");
  ExpectInvalidField(Check([](auto& r) { r.set_company(std::string(201, 'c')); }), "company");
  ExpectInvalidField(Check([](auto& r) { r.set_region(std::string(65, 'r')); }), "region");
  ExpectInvalidField(Check([](auto& r) { r.add_product_interests(""); }), "product_interests");
  ExpectInvalidField(Check([](auto& r) {
                       for (int i = 0; i < 51; ++i) r.add_product_interests("p");
                     }),
                     "product_interests");
  ExpectInvalidField(Check([](auto& r) { (*r.mutable_attributes())[""] = "v"; }), "attributes");
  ExpectInvalidField(
      Check([](auto& r) { (*r.mutable_attributes())["k"] = std::string(1025, 'v'); }),
      "attributes[k]");
}

TEST(CaptureLeadTest, NewLeadIsCapturedWithEveryField) {
  CaptureLead cmd{*NormalizeCaptureRequest(ValidRequest()), "lead_1", "cus_1", ""};
  crm::v1::LeadCaptured expected;
  expected.set_lead_id("lead_1");
  expected.set_customer_id("cus_1");
  expected.set_channel(crm::v1::LEAD_CHANNEL_TRADE_SHOW);
  *expected.mutable_contact() = cmd.request.contact();
  expected.set_company("Analytical Engines");
  expected.set_region("EMEA");
  expected.add_product_interests("crm-suite");
  (*expected.mutable_attributes())["booth"] = "B12";
  Lead().Given({}).When(cmd).Then({expected});
}

TEST(CaptureLeadTest, DuplicateKeepsTheEarlierLeadReference) {
  CaptureLead cmd{*NormalizeCaptureRequest(ValidRequest()), "lead_2", "cus_1", "lead_1"};
  auto scenario = Lead();
  scenario.Given({}).When(cmd);
  crm::v1::LeadCaptured expected;
  expected.set_lead_id("lead_2");
  expected.set_customer_id("cus_1");
  expected.set_duplicate_of_lead_id("lead_1");
  expected.set_channel(crm::v1::LEAD_CHANNEL_TRADE_SHOW);
  *expected.mutable_contact() = cmd.request.contact();
  expected.set_company("Analytical Engines");
  expected.set_region("EMEA");
  expected.add_product_interests("crm-suite");
  (*expected.mutable_attributes())["booth"] = "B12";
  scenario.Then({expected});
}

TEST(CaptureLeadTest, CapturingAnExistingLeadAgainIsRejected) {
  crm::v1::LeadCaptured earlier;
  earlier.set_lead_id("lead_1");
  earlier.set_customer_id("cus_1");
  CaptureLead cmd{*NormalizeCaptureRequest(ValidRequest()), "lead_1", "cus_1", ""};
  Lead().Given({earlier}).When(cmd).ThenError(absl::StatusCode::kAlreadyExists, "lead_1");
}

TEST(ApplyTest, CapturedLeadIsNewAtVersionOne) {
  crm::v1::LeadCaptured e;
  e.set_lead_id("lead_1");
  e.set_customer_id("cus_1");
  e.mutable_contact()->set_email("a@b.co");
  crm::v1::Lead state;
  Apply(state, e, absl::FromUnixSeconds(100));
  EXPECT_EQ(state.status(), crm::v1::LEAD_STATUS_NEW);
  EXPECT_EQ(state.version(), 1);
  EXPECT_EQ(state.captured_at().seconds(), 100);
  EXPECT_EQ(state.contact().email(), "a@b.co");
}

}  // namespace
}  // namespace crm::leads
