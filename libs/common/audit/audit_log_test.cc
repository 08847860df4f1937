#include "libs/common/audit/audit_log.h"

#include <memory>
#include <vector>

#include "crm/v1/audit.pb.h"
#include "gtest/gtest.h"
#include "libs/common/audit/audit_stream.h"
#include "libs/common/testing/temp_dir.h"

namespace crm::audit {
namespace {

class AuditLogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto s = EventStore::Open(dir_.Sub("db"), {});
    ASSERT_TRUE(s.ok()) << s.status();
    store_ = std::move(*s);
  }

  std::vector<crm::v1::EventEnvelope> Outbox() {
    auto entries = store_->ReadOutbox(0, 100000);
    EXPECT_TRUE(entries.ok()) << entries.status();
    std::vector<crm::v1::EventEnvelope> out;
    if (entries.ok()) {
      for (auto& e : *entries) out.push_back(e.envelope);
    }
    return out;
  }

  static Denial Refused(absl::StatusCode code, const std::string& subject,
                        const std::string& target = "") {
    Denial d;
    d.method = "/crm.v1.LeadsService/GetLead";
    d.target = target;
    d.subject = subject;
    d.peer = "10.1.2.3";
    d.correlation_id = "corr-1";
    d.status = absl::Status(code, "lead_id: no lead_1 that the caller may access");
    d.at = absl::FromUnixSeconds(1'800'000'000);
    return d;
  }

  testing::TempDir dir_;
  std::unique_ptr<EventStore> store_;
};

TEST_F(AuditLogTest, RefusalIsAppendedAsAccessDeniedOnAnAuditStream) {
  AuditLog log(*store_, "crm/leads");
  log.Record(Refused(absl::StatusCode::kPermissionDenied, "rep-2", "lead_1"));
  log.Flush();
  auto events = Outbox();
  ASSERT_EQ(events.size(), 1u);
  const auto& e = events[0];
  EXPECT_TRUE(IsAuditStream(e.stream())) << e.stream();
  EXPECT_EQ(e.type(), "AccessDenied");
  EXPECT_EQ(e.actor(), "rep-2");
  EXPECT_EQ(e.source(), "crm/leads");
  EXPECT_EQ(e.correlation_id(), "corr-1");
  EXPECT_TRUE(e.customer_id().empty());
  crm::v1::AccessDenied denied;
  ASSERT_TRUE(e.payload().UnpackTo(&denied));
  EXPECT_EQ(denied.method(), "/crm.v1.LeadsService/GetLead");
  EXPECT_EQ(denied.target(), "lead_1");
  EXPECT_EQ(denied.code(), "PERMISSION_DENIED");
  EXPECT_EQ(denied.peer(), "10.1.2.3");
  EXPECT_FALSE(denied.reason().empty());
  // Durable: it is in the log, not only the outbox.
  auto stream = store_->ReadStream(e.stream());
  ASSERT_TRUE(stream.ok()) << stream.status();
  EXPECT_EQ(stream->size(), 1u);
}

TEST_F(AuditLogTest, ARefusalOfAMethodNoServiceServesIsFiledUnderUnknown) {
  AuditLog log(*store_, "crm/leads");
  Denial d = Refused(absl::StatusCode::kUnauthenticated, "");
  d.method = "/crm.v1.LeadsService/NoSuchMethod-" + std::string(4000, 'x') + "\xff";
  log.Record(d);
  log.Flush();
  auto events = Outbox();
  ASSERT_EQ(events.size(), 1u);
  crm::v1::AccessDenied denied;
  ASSERT_TRUE(events[0].payload().UnpackTo(&denied));
  EXPECT_EQ(denied.method(), "unknown");
}

TEST_F(AuditLogTest, UnauthenticatedCallerIsNamedByAddressAndFlaggedOnce) {
  AuditLogOptions options;
  options.flag_threshold = 3;
  AuditLog log(*store_, "crm/sales", options);
  for (int i = 0; i < 10; ++i) log.Record(Refused(absl::StatusCode::kUnauthenticated, ""));
  log.Flush();
  int denied = 0, flagged = 0;
  for (const auto& e : Outbox()) {
    EXPECT_EQ(e.actor(), "peer:10.1.2.3");
    if (e.type() == "AccessDenied") ++denied;
    if (e.type() == "AuthenticationFailuresFlagged") {
      ++flagged;
      crm::v1::AuthenticationFailuresFlagged flag;
      ASSERT_TRUE(e.payload().UnpackTo(&flag));
      EXPECT_EQ(flag.peer(), "10.1.2.3");
      EXPECT_EQ(flag.failures(), 3);
      EXPECT_EQ(flag.window_seconds(), 60);
    }
  }
  EXPECT_EQ(denied, 10);
  EXPECT_EQ(flagged, 1);
}

TEST_F(AuditLogTest, PermissionDeniedDoesNotCountAsFailedAuthentication) {
  AuditLogOptions options;
  options.flag_threshold = 2;
  AuditLog log(*store_, "crm/leads", options);
  for (int i = 0; i < 5; ++i) log.Record(Refused(absl::StatusCode::kPermissionDenied, "rep-2"));
  log.Flush();
  const auto outbox = Outbox();
  ASSERT_EQ(outbox.size(), 5u);
  for (const auto& e : outbox) EXPECT_EQ(e.type(), "AccessDenied");
}

TEST_F(AuditLogTest, StopWritesWhatWasQueuedAndDropsLaterRecords) {
  auto log = std::make_unique<AuditLog>(*store_, "crm/leads");
  for (int i = 0; i < 50; ++i) log->Record(Refused(absl::StatusCode::kPermissionDenied, "rep-2"));
  log->Stop();
  EXPECT_EQ(Outbox().size(), 50u);
  log->Record(Refused(absl::StatusCode::kPermissionDenied, "rep-2"));
  log.reset();
  EXPECT_EQ(Outbox().size(), 50u);
}

TEST_F(AuditLogTest, RefusalsLeaveHalfTheOutboxToCommands) {
  // The broker is away and callers without a token keep knocking: their
  // refusals stop being written (and are counted) at half the outbox, and
  // commands still have the other half.
  store_->SetOutboxLimit(10);
  AuditLogOptions options;
  options.flag_threshold = 1000;  // refusals only, no flag among them
  AuditLog log(*store_, "crm/leads", options);
  for (int i = 0; i < 40; ++i) {
    log.Record(Refused(absl::StatusCode::kUnauthenticated, ""));
    log.Flush();
  }
  EXPECT_EQ(store_->OutboxSize(), 5u);
  EXPECT_EQ(log.written(), 5u);
  EXPECT_EQ(log.dropped(), 35u);
  for (int i = 0; i < 5; ++i) {
    AppendRequest command;
    command.stream = "lead-" + std::to_string(i);
    command.expected_version = EventStore::kNoStream;
    command.events.emplace_back().set_type("crm.v1.LeadCaptured");
    EXPECT_TRUE(store_->Append(std::move(command)).ok()) << i;
  }
  EXPECT_EQ(store_->OutboxSize(), 10u);
}

TEST_F(AuditLogTest, TheFlagOfAFloodIsWrittenWhenItsRefusalsAreShed) {
  store_->SetOutboxLimit(10);
  AuditLog log(*store_, "crm/leads");  // flags at 5 failures
  for (int i = 0; i < 20; ++i) {
    Denial d = Refused(absl::StatusCode::kUnauthenticated, "");
    d.peer = "10.9.9." + std::to_string(i % 2);
    log.Record(std::move(d));
    log.Flush();
  }
  int flags = 0, refusals = 0;
  for (const auto& e : Outbox()) {
    flags += e.type() == "AuthenticationFailuresFlagged";
    refusals += e.type() == "AccessDenied";
  }
  EXPECT_EQ(flags, 2);  // one per address, though refusals stopped at half the outbox
  EXPECT_EQ(refusals, 5);
}

// A flag refused by a full outbox is not lost: the caller's next failure
// in the window raises it again, once there is room.
TEST_F(AuditLogTest, AFlagRefusedByAFullOutboxIsRaisedAgainByTheNextFailure) {
  store_->SetOutboxLimit(4);
  for (int i = 0; i < 4; ++i) {
    AppendRequest command;
    command.stream = "lead-" + std::to_string(i);
    command.expected_version = EventStore::kNoStream;
    command.events.emplace_back().set_type("crm.v1.LeadCaptured");
    ASSERT_TRUE(store_->Append(std::move(command)).ok()) << i;
  }
  AuditLog log(*store_, "crm/leads");  // flags at 5 failures
  for (int i = 0; i < 5; ++i) {
    log.Record(Refused(absl::StatusCode::kUnauthenticated, ""));
    log.Flush();
  }
  EXPECT_EQ(store_->OutboxSize(), 4u) << "the flag found no room";
  // The broker is back and takes the commands.
  auto waiting = store_->ReadOutbox(0, 100);
  ASSERT_TRUE(waiting.ok()) << waiting.status();
  ASSERT_EQ(waiting->size(), 4u);
  ASSERT_TRUE(store_->MarkRelayed(waiting->back().position + 1).ok());
  Denial sixth = Refused(absl::StatusCode::kUnauthenticated, "");
  sixth.at += absl::Seconds(10);
  log.Record(std::move(sixth));
  log.Flush();
  std::vector<crm::v1::AuthenticationFailuresFlagged> flags;
  for (const auto& e : Outbox()) {
    if (e.type() != "AuthenticationFailuresFlagged") continue;
    ASSERT_TRUE(e.payload().UnpackTo(&flags.emplace_back()));
  }
  ASSERT_EQ(flags.size(), 1u);
  EXPECT_EQ(flags[0].peer(), "10.1.2.3");
  EXPECT_EQ(flags[0].failures(), 6);
}

TEST_F(AuditLogTest, QueueIsBounded) {
  AuditLogOptions options;
  options.max_queued = 10;
  AuditLog log(*store_, "crm/leads", options);
  // Far more, far faster than one writer can append them: the surplus is
  // dropped and counted instead of queued, and Record() never blocks.
  constexpr int kFlood = 50000;
  for (int i = 0; i < kFlood; ++i) {
    log.Record(Refused(absl::StatusCode::kPermissionDenied, "rep-2"));
  }
  log.Flush();
  const size_t kept = Outbox().size();
  EXPECT_GE(kept, 10u);
  EXPECT_GT(log.dropped(), 0u);
  EXPECT_EQ(log.written(), kept);
  EXPECT_EQ(log.written() + log.dropped(), static_cast<uint64_t>(kFlood));
}

}  // namespace
}  // namespace crm::audit
