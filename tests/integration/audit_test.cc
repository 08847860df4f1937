// The security audit trail across real processes: refusals in the leads
// service (a rep reaching for another rep's lead, a role the method table
// does not allow, a caller with a bad token) are published on crm.audit.v1
// and, with the accepted commands, listed by analytics per actor and per
// record; repeated failed authentication raises one flag.
#include <chrono>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "crm/v1/analytics.grpc.pb.h"
#include "crm/v1/audit.pb.h"
#include "crm/v1/leads.grpc.pb.h"
#include "gtest/gtest.h"
#include "libs/common/auth/principal.h"
#include "tests/integration/process.h"
#include "tests/integration/stack.h"
#include "tests/integration/topic_io.h"

namespace crm::testing {
namespace {

const auth::Principal kAdmin{"admin-1", {auth::kRoleAdmin}, ""};
const auth::Principal kRepA{"rep-a", {auth::kRoleSalesRep}, "emea"};
const auth::Principal kAnalyst{"ana-1", {auth::kRoleAnalyst}, ""};
constexpr int kBadTokens = 6;  // the services flag the 5th in a minute

std::unique_ptr<grpc::ClientContext> Ctx() {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  return ctx;
}

// Every entry of one actor or record, page by page (page_size 2, so the
// paging is exercised too).
grpc::Status ListAll(crm::v1::AnalyticsService::Stub& stub, const std::string& actor,
                     const std::string& record, std::vector<crm::v1::AuditEntry>* out) {
  out->clear();
  std::string token;
  do {
    crm::v1::ListAuditEntriesRequest req;
    req.set_actor(actor);
    req.set_record_id(record);
    req.mutable_page()->set_page_size(2);
    req.mutable_page()->set_page_token(token);
    crm::v1::ListAuditEntriesResponse page;
    auto st = stub.ListAuditEntries(Ctx().get(), req, &page);
    if (!st.ok()) return st;
    for (auto& e : *page.mutable_entries()) out->push_back(std::move(e));
    token = page.next_page_token();
  } while (!token.empty());
  return grpc::Status::OK;
}

int Count(const std::vector<crm::v1::AuditEntry>& entries, crm::v1::AuditOutcome outcome) {
  int n = 0;
  for (const auto& e : entries) n += e.outcome() == outcome;
  return n;
}

TEST(AuditTrailTest, RefusalsAndAcceptedCommandsAreListedByActorAndByRecord) {
  Stack stack;
  ASSERT_TRUE(stack.StartBroker());
  ASSERT_TRUE(stack.Start("leads"));
  ASSERT_TRUE(stack.Start("analytics"));

  // Accepted: an admin captures a lead and gives it to rep-b.
  auto admin_leads = crm::v1::LeadsService::NewStub(stack.Channel("leads", kAdmin));
  crm::v1::CaptureLeadRequest capture;
  capture.set_request_id("audit-capture");
  capture.set_channel(crm::v1::LEAD_CHANNEL_WEB_FORM);
  capture.mutable_contact()->set_first_name("Bea");
  capture.mutable_contact()->set_email("bea@b.example");
  capture.set_region("emea");
  crm::v1::CaptureLeadResponse captured;
  ASSERT_TRUE(admin_leads->CaptureLead(Ctx().get(), capture, &captured).ok());
  const std::string lead_id = captured.lead_id();
  crm::v1::AssignLeadRequest assign;
  assign.set_request_id("audit-assign");
  assign.set_lead_id(lead_id);
  assign.set_owner_id("rep-b");
  crm::v1::Lead lead;
  ASSERT_TRUE(admin_leads->AssignLead(Ctx().get(), assign, &lead).ok());

  // Refused by the record check: rep-a reads and tries to qualify it.
  auto rep_leads = crm::v1::LeadsService::NewStub(stack.Channel("leads", kRepA));
  crm::v1::GetLeadRequest get;
  get.set_lead_id(lead_id);
  EXPECT_EQ(rep_leads->GetLead(Ctx().get(), get, &lead).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  crm::v1::QualifyLeadRequest qualify;
  qualify.set_request_id("audit-qualify");
  qualify.set_lead_id(lead_id);
  qualify.set_expected_version(lead.version());
  EXPECT_EQ(rep_leads->QualifyLead(Ctx().get(), qualify, &lead).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  // Refused by the method table: analysts capture no leads.
  auto analyst_leads = crm::v1::LeadsService::NewStub(stack.Channel("leads", kAnalyst));
  capture.set_request_id("audit-analyst");
  EXPECT_EQ(analyst_leads->CaptureLead(Ctx().get(), capture, &captured).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  // Refused before any identity: a forged token, again and again.
  auto anonymous = crm::v1::LeadsService::NewStub(stack.ChannelWithoutToken("leads"));
  for (int i = 0; i < kBadTokens; ++i) {
    auto ctx = Ctx();
    ctx->AddMetadata("authorization", "Bearer not.a.token");
    EXPECT_EQ(anonymous->GetLead(ctx.get(), get, &lead).error_code(),
              grpc::StatusCode::UNAUTHENTICATED);
  }

  // On the audit topic, as an outside security tool would read it.
  auto audit_events = ConsumeTopic(
      stack.brokers(), "crm.audit.v1", [](const crm::v1::EventEnvelope&) { return true; },
      [](const auto& seen) { return seen.size() >= 3 + kBadTokens + 1; }, absl::Seconds(30),
      /*linger=*/absl::Seconds(2));  // so that an extra record would be seen
  int denied_on_topic = 0, flagged_on_topic = 0;
  for (const auto& e : audit_events) {
    EXPECT_EQ(e.source(), "crm/leads");
    denied_on_topic += e.type() == "AccessDenied";
    flagged_on_topic += e.type() == "AuthenticationFailuresFlagged";
  }
  EXPECT_EQ(denied_on_topic, 3 + kBadTokens);
  EXPECT_EQ(flagged_on_topic, 1);
  // And never on the domain topic its consumers read.
  auto domain_events = ConsumeTopic(
      stack.brokers(), "crm.leads.v1", [](const crm::v1::EventEnvelope&) { return true; },
      [](const auto& seen) { return seen.size() >= 2; }, absl::Seconds(30),
      /*linger=*/absl::Seconds(2));
  ASSERT_GE(domain_events.size(), 2u);
  for (const auto& e : domain_events) EXPECT_NE(e.type(), "AccessDenied");

  auto analytics = crm::v1::AnalyticsService::NewStub(stack.Channel("analytics", kAdmin));
  std::vector<crm::v1::AuditEntry> entries;
  grpc::Status last;
  // By record: who did what to the lead, accepted and refused, in time order.
  // The refusals come from crm.audit.v1, the accepted commands from
  // crm.leads.v1: wait for both.
  ASSERT_TRUE(Eventually([&] {
    last = ListAll(*analytics, "", lead_id, &entries);
    return last.ok() && Count(entries, crm::v1::AUDIT_OUTCOME_DENIED) >= 2 + kBadTokens &&
           Count(entries, crm::v1::AUDIT_OUTCOME_ACCEPTED) >= 2;  // captured, assigned, ...
  })) << last.error_message()
      << " accepted " << Count(entries, crm::v1::AUDIT_OUTCOME_ACCEPTED) << ", denied "
      << Count(entries, crm::v1::AUDIT_OUTCOME_DENIED);
  for (size_t i = 1; i < entries.size(); ++i) {
    EXPECT_LE(entries[i - 1].occurred_at().seconds(), entries[i].occurred_at().seconds());
  }
  bool saw_capture = false, saw_qualify_refused = false;
  for (const auto& e : entries) {
    EXPECT_EQ(e.target(), lead_id);
    if (e.operation() == "LeadCaptured") {
      saw_capture = true;
      EXPECT_EQ(e.actor(), "admin-1");
      EXPECT_EQ(e.service(), "crm/leads");
    }
    if (e.operation() == "/crm.v1.LeadsService/QualifyLead") {
      saw_qualify_refused = true;
      EXPECT_EQ(e.actor(), "rep-a");
      EXPECT_EQ(e.outcome(), crm::v1::AUDIT_OUTCOME_DENIED);
      EXPECT_EQ(e.code(), "PERMISSION_DENIED");
      EXPECT_EQ(e.peer(), "127.0.0.1");
    }
  }
  EXPECT_TRUE(saw_capture);
  EXPECT_TRUE(saw_qualify_refused);

  // By actor: everything rep-a was refused. Each list waits for its
  // entries (they may be on other partitions than the ones above), then
  // holds exactly them.
  ASSERT_TRUE(Eventually([&] {
    last = ListAll(*analytics, "rep-a", "", &entries);
    return last.ok() && entries.size() >= 2;
  })) << last.error_message();
  ASSERT_EQ(entries.size(), 2u);
  EXPECT_EQ(entries[0].operation(), "/crm.v1.LeadsService/GetLead");
  EXPECT_EQ(entries[1].operation(), "/crm.v1.LeadsService/QualifyLead");
  ASSERT_TRUE(Eventually([&] {
    last = ListAll(*analytics, "ana-1", "", &entries);
    return last.ok() && !entries.empty();
  })) << last.error_message();
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_EQ(entries[0].operation(), "/crm.v1.LeadsService/CaptureLead");
  EXPECT_NE(entries[0].reason().find("not allowed for the caller's roles"), std::string::npos);
  // The caller without an identity, by its address: the failures and one flag.
  ASSERT_TRUE(Eventually([&] {
    last = ListAll(*analytics, "peer:127.0.0.1", "", &entries);
    return last.ok() && Count(entries, crm::v1::AUDIT_OUTCOME_DENIED) >= kBadTokens &&
           Count(entries, crm::v1::AUDIT_OUTCOME_FLAGGED) >= 1;
  })) << last.error_message();
  EXPECT_EQ(Count(entries, crm::v1::AUDIT_OUTCOME_DENIED), kBadTokens);
  ASSERT_EQ(Count(entries, crm::v1::AUDIT_OUTCOME_FLAGGED), 1);
  for (const auto& e : entries) {
    if (e.outcome() == crm::v1::AUDIT_OUTCOME_DENIED) {
      EXPECT_EQ(e.code(), "UNAUTHENTICATED");
    }
  }

  // The same trail from the command line.
  const std::string cli = RunCommand(absl::StrCat(
      CtlCommand(), " audit --actor=rep-a --analytics=", stack.Target("analytics"), " 2>&1"));
  EXPECT_NE(cli.find("\"operation\":\"/crm.v1.LeadsService/QualifyLead\""), std::string::npos)
      << cli;
  EXPECT_NE(cli.find("\"outcome\":\"AUDIT_OUTCOME_DENIED\""), std::string::npos) << cli;

  // The trail is for admins; asking for both or neither is a clear error.
  auto rep_analytics = crm::v1::AnalyticsService::NewStub(stack.Channel("analytics", kRepA));
  crm::v1::ListAuditEntriesRequest req;
  req.set_actor("rep-b");
  crm::v1::ListAuditEntriesResponse page;
  EXPECT_EQ(rep_analytics->ListAuditEntries(Ctx().get(), req, &page).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  req.set_record_id(lead_id);
  auto st = analytics->ListAuditEntries(Ctx().get(), req, &page);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(st.error_message().find("record_id"), std::string::npos) << st.error_message();
  // Analytics audits its own refusals too: rep-a's try just now.
  ASSERT_TRUE(Eventually([&] {
    last = ListAll(*analytics, "rep-a", "", &entries);
    return last.ok() && entries.size() == 3;
  })) << last.error_message();
  EXPECT_EQ(entries[2].operation(), "/crm.v1.AnalyticsService/ListAuditEntries");
  EXPECT_EQ(entries[2].service(), "crm/analytics");

  // rep-a's next page is no page of rep-b's trail.
  crm::v1::ListAuditEntriesRequest of_a;
  of_a.set_actor("rep-a");
  of_a.mutable_page()->set_page_size(2);
  ASSERT_TRUE(analytics->ListAuditEntries(Ctx().get(), of_a, &page).ok());
  ASSERT_FALSE(page.next_page_token().empty());
  crm::v1::ListAuditEntriesRequest of_b;
  of_b.set_actor("rep-b");
  of_b.mutable_page()->set_page_token(page.next_page_token());
  st = analytics->ListAuditEntries(Ctx().get(), of_b, &page);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(st.error_message().rfind("page.page_token: not a token of this query", 0), 0u)
      << st.error_message();
}

}  // namespace
}  // namespace crm::testing
