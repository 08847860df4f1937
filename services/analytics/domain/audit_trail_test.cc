#include "services/analytics/domain/audit_trail.h"

#include "crm/v1/leads.pb.h"
#include "gtest/gtest.h"

namespace crm::analytics {
namespace {

crm::v1::EventEnvelope Envelope(const std::string& stream, const google::protobuf::Message& payload,
                                const std::string& actor) {
  crm::v1::EventEnvelope e;
  e.set_event_id("evt_1");
  e.set_stream(stream);
  e.set_type(payload.GetDescriptor()->name());
  e.set_actor(actor);
  e.set_source("crm/leads");
  e.set_customer_id(stream.rfind("audit-", 0) == 0 ? "" : "cus_1");
  e.set_correlation_id("corr-1");
  e.mutable_occurred_at()->set_seconds(1'800'000'000);
  e.mutable_payload()->PackFrom(payload);
  return e;
}

std::optional<crm::v1::AuditEntry> Entry(const crm::v1::EventEnvelope& e) {
  return AuditEntryFor(e, Payload(e));
}

TEST(AuditTrailTest, DomainEventIsAnAcceptedCommandOnItsRecord) {
  crm::v1::LeadQualified qualified;
  auto entry = Entry(Envelope("lead-lead_01", qualified, "rep-1"));
  ASSERT_TRUE(entry.has_value());
  EXPECT_EQ(entry->outcome(), crm::v1::AUDIT_OUTCOME_ACCEPTED);
  EXPECT_EQ(entry->actor(), "rep-1");
  EXPECT_EQ(entry->operation(), "LeadQualified");
  EXPECT_EQ(entry->target(), "lead_01");
  EXPECT_EQ(entry->customer_id(), "cus_1");
  EXPECT_EQ(entry->service(), "crm/leads");
  EXPECT_EQ(entry->correlation_id(), "corr-1");
  EXPECT_EQ(entry->occurred_at().seconds(), 1'800'000'000);
}

TEST(AuditTrailTest, AccessDeniedIsARefusalOfTheNamedRecord) {
  crm::v1::AccessDenied denied;
  denied.set_method("/crm.v1.LeadsService/QualifyLead");
  denied.set_target("lead_01");
  denied.set_code("PERMISSION_DENIED");
  denied.set_reason("lead_id: no lead_01 that the caller may access");
  denied.set_peer("10.0.0.7");
  auto entry = Entry(Envelope("audit-aud_1", denied, "rep-2"));
  ASSERT_TRUE(entry.has_value());
  EXPECT_EQ(entry->outcome(), crm::v1::AUDIT_OUTCOME_DENIED);
  EXPECT_EQ(entry->actor(), "rep-2");
  EXPECT_EQ(entry->operation(), "/crm.v1.LeadsService/QualifyLead");
  EXPECT_EQ(entry->target(), "lead_01");
  EXPECT_EQ(entry->code(), "PERMISSION_DENIED");
  EXPECT_EQ(entry->peer(), "10.0.0.7");
  EXPECT_TRUE(entry->customer_id().empty());
}

TEST(AuditTrailTest, FlagNamesTheCallerAndTheCount) {
  crm::v1::AuthenticationFailuresFlagged flag;
  flag.set_peer("10.0.0.7");
  flag.set_failures(5);
  flag.set_window_seconds(60);
  auto entry = Entry(Envelope("audit-aud_2", flag, "peer:10.0.0.7"));
  ASSERT_TRUE(entry.has_value());
  EXPECT_EQ(entry->outcome(), crm::v1::AUDIT_OUTCOME_FLAGGED);
  EXPECT_EQ(entry->actor(), "peer:10.0.0.7");
  EXPECT_EQ(entry->reason(), "5 failed authentications within 60 s");
  EXPECT_TRUE(entry->target().empty());
}

TEST(AuditTrailTest, UnknownAuditEventIsLeftOut) {
  crm::v1::LeadQualified not_audit;
  EXPECT_FALSE(Entry(Envelope("audit-aud_3", not_audit, "x")).has_value());
}

TEST(AuditTrailTest, StreamRecordId) {
  EXPECT_EQ(StreamRecordId("lead-lead_01"), "lead_01");
  EXPECT_EQ(StreamRecordId("warranty-ord_1/prod_2"), "ord_1/prod_2");
  EXPECT_EQ(StreamRecordId("nodash"), "nodash");
}

}  // namespace
}  // namespace crm::analytics
