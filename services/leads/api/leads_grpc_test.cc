#include "services/leads/api/leads_grpc.h"

#include <memory>
#include <string>

#include "absl/strings/match.h"
#include "absl/synchronization/notification.h"
#include "crm/v1/leads.grpc.pb.h"
#include "gtest/gtest.h"
#include "libs/common/auth/principal.h"
#include "libs/common/blocking_executor.h"
#include "libs/common/event_store.h"
#include "libs/common/key_codec.h"
#include "libs/common/pii/key_stream.h"
#include "libs/common/testing/auth_server.h"
#include "libs/common/testing/temp_dir.h"
#include "rocksdb/write_batch.h"
#include "services/leads/api/lead_commands.h"
#include "services/leads/api/lead_import.h"
#include "services/leads/domain/lead.h"
#include "services/leads/store/lead_store.h"

namespace crm::leads {
namespace {

using crm::testing::AuthServer;

// The leads service over gRPC with the auth interceptor, on an executor
// of `threads` workers and a queue of `max_queued` calls.
class LeadsGrpcServerTest : public ::testing::Test {
 protected:
  LeadsGrpcServerTest(int threads, size_t max_queued) : executor_(threads, max_queued) {}

  void StartServer() {
    store_ = std::move(*LeadStore::Open(dir_.Sub("leads"), pii::RandomKey()));
    commands_ = std::make_unique<LeadCommands>(*store_);
    ASSERT_TRUE(commands_->Recover().ok());
    importer_ = std::make_unique<LeadImporter>(*commands_);
    service_ = std::make_unique<LeadsGrpc>(*commands_, *importer_, executor_);
    server_ = std::make_unique<AuthServer>(*service_, clock_skew_);
    stub_ = crm::v1::LeadsService::NewStub(server_->channel());
  }

  // The token verifier's allowance, for tests of a token's expiry.
  absl::Duration clock_skew_ = absl::Seconds(60);
  crm::testing::TempDir dir_;
  // Let go before the executor joins its workers.
  absl::Notification release_;
  BlockingExecutor executor_;
  std::unique_ptr<LeadStore> store_;
  std::unique_ptr<LeadCommands> commands_;
  std::unique_ptr<LeadImporter> importer_;
  std::unique_ptr<LeadsGrpc> service_;
  std::unique_ptr<AuthServer> server_;
  std::unique_ptr<crm::v1::LeadsService::Stub> stub_;
};

// A sales manager of EMEA works on a returning person whose first lead is
// also in EMEA.
class LeadsGrpcTest : public LeadsGrpcServerTest {
 protected:
  LeadsGrpcTest() : LeadsGrpcServerTest(4, SIZE_MAX) {}

  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(StartServer());
    first_ = Capture("first", "ada@example.com");
    later_ = Capture("later", "ADA@example.com");
    ASSERT_EQ(later_.duplicate_of_lead_id(), first_.lead_id());
  }

  static std::unique_ptr<grpc::ClientContext> Manager() {
    return AuthServer::As("mia", {auth::kRoleSalesManager}, "emea");
  }

  static std::unique_ptr<grpc::ClientContext> Admin() {
    return AuthServer::As("root", {auth::kRoleAdmin}, "");
  }

  // A lead of `region` captured by `caller` (EMEA's manager by default).
  crm::v1::CaptureLeadResponse Capture(const std::string& request_id, const std::string& email,
                                       const std::string& region = "emea",
                                       std::unique_ptr<grpc::ClientContext> caller = Manager(),
                                       const std::string& phone = "") {
    crm::v1::CaptureLeadRequest r;
    r.set_request_id(request_id);
    r.set_channel(crm::v1::LEAD_CHANNEL_WEB_FORM);
    r.mutable_contact()->set_email(email);
    r.mutable_contact()->set_phone(phone);
    r.set_region(region);
    crm::v1::CaptureLeadResponse response;
    const grpc::Status st = stub_->CaptureLead(caller.get(), r, &response);
    EXPECT_TRUE(st.ok()) << st.error_message();
    return response;
  }

  // What duplicate_of_lead_id names, as an admin sees it (a scoped caller
  // is not told of a first lead out of reach).
  std::string FirstOf(const std::string& lead_id) {
    crm::v1::GetLeadRequest get;
    get.set_lead_id(lead_id);
    crm::v1::Lead lead;
    EXPECT_TRUE(stub_->GetLead(Admin().get(), get, &lead).ok());
    return lead.duplicate_of_lead_id();
  }

  // Merges as an admin.
  void Merge(const std::string& request_id, const std::string& survivor,
             const std::string& merged) {
    crm::v1::MergeLeadsRequest merge;
    merge.set_request_id(request_id);
    merge.set_survivor_lead_id(survivor);
    merge.set_merged_lead_id(merged);
    crm::v1::MergeLeadsResponse response;
    const grpc::Status st = stub_->MergeLeads(Admin().get(), merge, &response);
    ASSERT_TRUE(st.ok()) << st.error_message();
  }

  // Qualifies as an admin, then converts as EMEA's manager.
  grpc::Status QualifyAndConvert(const std::string& lead_id) {
    crm::v1::QualifyLeadRequest qualify;
    qualify.set_request_id("qualify-" + lead_id);
    qualify.set_lead_id(lead_id);
    crm::v1::Lead qualified;
    const grpc::Status st = stub_->QualifyLead(Admin().get(), qualify, &qualified);
    EXPECT_TRUE(st.ok()) << st.error_message();
    crm::v1::ConvertLeadRequest convert;
    convert.set_request_id("convert-" + lead_id);
    convert.set_lead_id(lead_id);
    convert.set_owner_id("mia");
    crm::v1::ConvertLeadResponse response;
    return stub_->ConvertLead(Manager().get(), convert, &response);
  }

  // Reads of the first lead fail from now on, as a storage fault would.
  void FailFirstLeadReads() {
    store_->events().db().FailReadsForTest(EventStore::kStateFamily, LeadStream(first_.lead_id()));
  }

  crm::v1::CaptureLeadResponse first_;
  crm::v1::CaptureLeadResponse later_;
};

TEST_F(LeadsGrpcTest, AScopedCallerSeesTheFirstLeadItMayAccess) {
  crm::v1::GetLeadRequest get;
  get.set_lead_id(later_.lead_id());
  crm::v1::Lead lead;
  ASSERT_TRUE(stub_->GetLead(Manager().get(), get, &lead).ok());
  EXPECT_EQ(lead.duplicate_of_lead_id(), first_.lead_id());

  // A manager of another territory may not learn it.
  auto other = AuthServer::As("oz", {auth::kRoleSalesManager}, "apac");
  EXPECT_EQ(stub_->GetLead(other.get(), get, &lead).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
}

TEST_F(LeadsGrpcTest, AMergeOfLaterLeadsKeepsThePersonsFirstLeadOutOfAnotherTerritorysReach) {
  // The person was first captured in APAC; EMEA's manager captures them
  // twice more, and an admin merges those two later leads.
  const auto first = Capture("apac-first", "grace@example.com", "apac", Admin());
  ASSERT_FALSE(first.lead_id().empty());
  const auto kept = Capture("emea-kept", "grace@example.com");
  const auto gone = Capture("emea-gone", "grace@example.com");
  ASSERT_EQ(FirstOf(gone.lead_id()), first.lead_id());
  ASSERT_NO_FATAL_FAILURE(Merge("merge-later-leads", kept.lead_id(), gone.lead_id()));

  // The next capture is still a later lead of the APAC person: EMEA's
  // manager may not convert it.
  const auto next = Capture("emea-next", "grace@example.com");
  EXPECT_EQ(FirstOf(next.lead_id()), first.lead_id());
  crm::v1::ConvertLeadRequest convert;
  convert.set_request_id("convert-next");
  convert.set_lead_id(next.lead_id());
  crm::v1::ConvertLeadResponse response;
  const grpc::Status st = stub_->ConvertLead(Manager().get(), convert, &response);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED) << st.error_message();
}

TEST_F(LeadsGrpcTest, AContactFirstSeenOnALaterLeadOfAMergedPersonFindsTheFirstLead) {
  // The person was first captured in APAC; EMEA's manager captures them
  // again (`later`). Another person, captured by EMEA's manager, comes
  // back with a phone number too, and an admin merges that person's first
  // lead into `later`: the phone, first seen on the duplicate, still names
  // the merged lead.
  const auto first = Capture("apac-first", "grace@example.com", "apac", Admin());
  const auto later = Capture("emea-later", "grace@example.com");
  const auto merged = Capture("emea-merged", "gh@example.com");
  const auto again = Capture("emea-again", "gh@example.com", "emea", Manager(), "+4915112345678");
  ASSERT_EQ(FirstOf(again.lead_id()), merged.lead_id());
  ASSERT_NO_FATAL_FAILURE(Merge("merge-into-later", later.lead_id(), merged.lead_id()));

  // A capture by that phone alone is a later lead of the APAC person, as one
  // by either email is, and not EMEA's manager's to convert.
  const auto by_phone = Capture("emea-phone", "", "emea", Manager(), "+4915112345678");
  EXPECT_EQ(by_phone.customer_id(), first.customer_id());
  EXPECT_EQ(FirstOf(by_phone.lead_id()), first.lead_id());
  const auto by_email = Capture("emea-email", "gh@example.com");
  EXPECT_EQ(FirstOf(by_email.lead_id()), first.lead_id());
  EXPECT_EQ(QualifyAndConvert(by_phone.lead_id()).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
}

TEST_F(LeadsGrpcTest, AFirstLeadMergedIntoALaterOneLeavesThatLeadToItsOwner) {
  // An admin merges the person's APAC first lead into EMEA's later one: the
  // person is EMEA's now, through either lead.
  const auto first = Capture("apac-first", "grace@example.com", "apac", Admin());
  const auto later = Capture("emea-later", "grace@example.com");
  ASSERT_NO_FATAL_FAILURE(Merge("merge-first", later.lead_id(), first.lead_id()));
  const auto next = Capture("emea-next", "grace@example.com");
  EXPECT_EQ(FirstOf(next.lead_id()), later.lead_id());

  const grpc::Status st = QualifyAndConvert(later.lead_id());
  EXPECT_TRUE(st.ok()) << st.error_message();
}

TEST_F(LeadsGrpcTest, AFirstLeadMergedTwiceOverLeavesTheLastSurvivorToItsOwner) {
  const auto first = Capture("apac-first", "grace@example.com", "apac", Admin());
  const auto one = Capture("emea-one", "grace@example.com");
  const auto two = Capture("emea-two", "grace@example.com");
  ASSERT_NO_FATAL_FAILURE(Merge("merge-first", one.lead_id(), first.lead_id()));
  ASSERT_NO_FATAL_FAILURE(Merge("merge-one", two.lead_id(), one.lead_id()));
  const grpc::Status st = QualifyAndConvert(two.lead_id());
  EXPECT_TRUE(st.ok()) << st.error_message();
}

TEST_F(LeadsGrpcTest, ALeadMergedIntoAnotherTerritorysPersonIsNoLongerItsOwnersToConvert) {
  // The APAC first lead was merged into EMEA's later one, which made the
  // person EMEA's; then a later lead of the person was merged into the
  // first lead of another person, in APAC: the person is that one's now.
  const auto first = Capture("apac-first", "grace@example.com", "apac", Admin());
  const auto later = Capture("emea-later", "grace@example.com");
  ASSERT_NO_FATAL_FAILURE(Merge("merge-first", later.lead_id(), first.lead_id()));
  const auto next = Capture("emea-next", "grace@example.com");
  const auto other = Capture("apac-other", "gh@example.com", "apac", Admin());
  ASSERT_NO_FATAL_FAILURE(Merge("merge-next", other.lead_id(), next.lead_id()));
  EXPECT_EQ(QualifyAndConvert(later.lead_id()).error_code(), grpc::StatusCode::PERMISSION_DENIED);
}

TEST_F(LeadsGrpcTest, ALeadMergedIntoAnotherTerritorysLeadIsRefusedAsMergedNotAsOutOfReach) {
  // EMEA's lead went into an APAC lead: converting or merging it is refused
  // for its status, as for an admin, whoever owns the survivor.
  const auto emea = Capture("emea-own", "lin@example.com");
  const auto apac = Capture("apac-other", "kim@example.com", "apac", Admin());
  ASSERT_NO_FATAL_FAILURE(Merge("merge-away", apac.lead_id(), emea.lead_id()));
  crm::v1::ConvertLeadRequest convert;
  convert.set_request_id("convert-merged");
  convert.set_lead_id(emea.lead_id());
  crm::v1::ConvertLeadResponse converted;
  grpc::Status st = stub_->ConvertLead(Manager().get(), convert, &converted);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << st.error_message();
  EXPECT_TRUE(absl::StrContains(st.error_message(), "merged into")) << st.error_message();

  crm::v1::MergeLeadsRequest merge;
  merge.set_request_id("merge-merged");
  merge.set_survivor_lead_id(first_.lead_id());
  merge.set_merged_lead_id(emea.lead_id());
  crm::v1::MergeLeadsResponse merged;
  st = stub_->MergeLeads(Manager().get(), merge, &merged);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << st.error_message();
}

TEST_F(LeadsGrpcTest, AConvertedSurvivorStillActsForItsWholePerson) {
  // A converted lead takes merges in: its person, first captured in APAC,
  // stays out of EMEA's reach.
  const auto first = Capture("apac-first", "grace@example.com", "apac", Admin());
  const auto later = Capture("emea-later", "grace@example.com");
  crm::v1::QualifyLeadRequest qualify;
  qualify.set_request_id("qualify-later");
  qualify.set_lead_id(later.lead_id());
  crm::v1::Lead qualified;
  ASSERT_TRUE(stub_->QualifyLead(Admin().get(), qualify, &qualified).ok());
  crm::v1::ConvertLeadRequest convert;
  convert.set_request_id("convert-later");
  convert.set_lead_id(later.lead_id());
  convert.set_owner_id("root");
  crm::v1::ConvertLeadResponse converted;
  const grpc::Status converting = stub_->ConvertLead(Admin().get(), convert, &converted);
  ASSERT_TRUE(converting.ok()) << converting.error_message();

  const auto stray = Capture("emea-stray", "other@example.com");
  crm::v1::MergeLeadsRequest merge;
  merge.set_request_id("merge-into-converted");
  merge.set_survivor_lead_id(later.lead_id());
  merge.set_merged_lead_id(stray.lead_id());
  crm::v1::MergeLeadsResponse merged;
  const grpc::Status st = stub_->MergeLeads(Manager().get(), merge, &merged);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED) << st.error_message();
}

TEST_F(LeadsGrpcTest, EachLeadTheChainNamesIsCheckedForTheFirstLeadItNames) {
  // A lead stored naming a later lead of its person (as captures did when a
  // contact first seen on a duplicate still named a merged lead): the
  // later lead's own first lead is out of EMEA's reach.
  const auto first = Capture("apac-first", "grace@example.com", "apac", Admin());
  const auto later = Capture("emea-later", "grace@example.com");
  const auto next = Capture("emea-next", "grace@example.com");
  auto state = store_->events().LoadState(LeadStream(next.lead_id()));
  ASSERT_TRUE(state.ok()) << state.status();
  crm::v1::Lead stored;
  ASSERT_TRUE(stored.ParseFromString(state->state));
  stored.set_duplicate_of_lead_id(later.lead_id());
  rocksdb::WriteBatch rewrite;
  rewrite.Put(store_->events().db().Family(EventStore::kStateFamily), LeadStream(next.lead_id()),
              BigEndian64(static_cast<uint64_t>(state->version)) + stored.SerializeAsString());
  ASSERT_TRUE(store_->events().db().Write(&rewrite, /*sync=*/false).ok());
  ASSERT_EQ(FirstOf(next.lead_id()), later.lead_id());
  EXPECT_EQ(QualifyAndConvert(next.lead_id()).error_code(), grpc::StatusCode::PERMISSION_DENIED);
}

TEST_F(LeadsGrpcTest, AFirstLeadThatCannotBeReadFailsTheReplyInsteadOfVanishing) {
  FailFirstLeadReads();
  crm::v1::GetLeadRequest get;
  get.set_lead_id(later_.lead_id());
  crm::v1::Lead lead;
  const grpc::Status st = stub_->GetLead(Manager().get(), get, &lead);
  // Not a lead of a new person (duplicate_of_lead_id cleared): no answer.
  EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAVAILABLE) << st.error_message();

  store_->events().db().FailReadsForTest("");
  ASSERT_TRUE(stub_->GetLead(Manager().get(), get, &lead).ok());
  EXPECT_EQ(lead.duplicate_of_lead_id(), first_.lead_id());
}

TEST_F(LeadsGrpcTest, AReplayedImportWhoseFirstLeadCannotBeReadFails) {
  auto import = [&] {
    auto ctx = Manager();
    crm::v1::ImportLeadsResponse response;
    auto writer = stub_->ImportLeads(ctx.get(), &response);
    crm::v1::ImportLeadsRequest r;
    r.set_import_id("fair");
    r.set_default_channel(crm::v1::LEAD_CHANNEL_TRADE_SHOW);
    auto* row = r.add_rows();
    row->set_row_number(1);
    row->mutable_contact()->set_email("ada@example.com");
    row->set_region("emea");
    writer->Write(r);
    writer->WritesDone();
    const grpc::Status st = writer->Finish();
    return std::make_pair(st, response);
  };
  auto [first, response] = import();
  ASSERT_TRUE(first.ok()) << first.error_message();
  ASSERT_EQ(response.results_size(), 1);
  EXPECT_EQ(response.results(0).duplicate_of_lead_id(), first_.lead_id());

  FailFirstLeadReads();
  auto [replay, replayed] = import();
  EXPECT_EQ(replay.error_code(), grpc::StatusCode::UNAVAILABLE) << replay.error_message();
}

TEST_F(LeadsGrpcTest, ConvertingWhenTheFirstLeadCannotBeReadIsAStorageErrorNotARefusal) {
  FailFirstLeadReads();
  crm::v1::ConvertLeadRequest convert;
  convert.set_request_id("convert");
  convert.set_lead_id(later_.lead_id());
  crm::v1::ConvertLeadResponse response;
  const grpc::Status st = stub_->ConvertLead(Manager().get(), convert, &response);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAVAILABLE) << st.error_message();
}

// Tokens expire when their exp says, without a clock skew allowance.
class LeadsGrpcExactClockTest : public LeadsGrpcServerTest {
 protected:
  LeadsGrpcExactClockTest() : LeadsGrpcServerTest(4, SIZE_MAX) {
    clock_skew_ = absl::ZeroDuration();
  }
  void SetUp() override { ASSERT_NO_FATAL_FAILURE(StartServer()); }
};

// The token is checked when the call starts: an import stream that
// outlives it takes no message once the token would be refused.
TEST_F(LeadsGrpcExactClockTest, AnImportTakesNoMessageAfterItsTokenExpires) {
  // exp is in whole seconds: this token lasts 4 to 5 s.
  auto ctx = AuthServer::As("root", {auth::kRoleAdmin}, "", absl::Seconds(5));
  crm::v1::ImportLeadsResponse response;
  auto writer = stub_->ImportLeads(ctx.get(), &response);
  auto message = [](int row_number, const std::string& email) {
    crm::v1::ImportLeadsRequest r;
    r.set_import_id("fair");
    r.set_default_channel(crm::v1::LEAD_CHANNEL_TRADE_SHOW);
    auto* row = r.add_rows();
    row->set_row_number(row_number);
    row->mutable_contact()->set_email(email);
    row->set_region("emea");
    return r;
  };
  ASSERT_TRUE(writer->Write(message(1, "early@example.com")));
  absl::SleepFor(absl::Seconds(6));
  // Its write fails if the refusal has already ended the call.
  writer->Write(message(2, "late@example.com"));
  writer->WritesDone();
  const grpc::Status st = writer->Finish();
  EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAUTHENTICATED) << st.error_message();
  EXPECT_TRUE(absl::StrContains(st.error_message(), "expired during the import"))
      << st.error_message();
  auto listed = commands_->ListLeads(crm::v1::ListLeadsRequest());
  ASSERT_TRUE(listed.ok()) << listed.status();
  // Nor rows still held for a chunk: the import is sent again, as after
  // any failed call.
  EXPECT_EQ(listed->leads_size(), 0);
}

// The service with one worker, kept busy, and a queue of one place: a
// call answered without a worker leaves that place free.
class LeadsGrpcBusyTest : public LeadsGrpcServerTest {
 protected:
  LeadsGrpcBusyTest() : LeadsGrpcServerTest(/*threads=*/1, /*max_queued=*/1) {}

  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(StartServer());
    absl::Notification busy;
    executor_.Run([&] {
      busy.Notify();
      release_.WaitForNotification();
    });
    busy.WaitForNotification();
  }

  void TearDown() override {
    if (!release_.HasBeenNotified()) release_.Notify();
  }

  // Whether the queue's one place is still free (then the worker is let go).
  bool QueueFree() {
    absl::Notification ran;
    const bool queued = executor_.TryRun([&] { ran.Notify(); });
    release_.Notify();
    if (queued) ran.WaitForNotificationWithTimeout(absl::Seconds(10));
    return queued;
  }
};

// Calls without a valid token are answered at once: they never wait in the
// executor's bounded queue, where a flood of them would turn callers with a
// token away as "server busy".
TEST_F(LeadsGrpcBusyTest, RefusedCallsTakeNoPlaceInTheQueue) {
  crm::v1::GetLeadRequest get;
  get.set_lead_id("lead_1");
  for (int i = 0; i < 3; ++i) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
    crm::v1::Lead lead;
    EXPECT_EQ(stub_->GetLead(&ctx, get, &lead).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  }
  EXPECT_TRUE(QueueFree()) << "a refused call took a place a caller with a token needs";
}

// An import stream closed before its first message holds nothing to
// write: it is answered at once, not queued behind busy workers, where
// many of them would pass the queue's bound.
TEST_F(LeadsGrpcBusyTest, AnEmptyImportIsAnsweredWithoutWaitingForAWorker) {
  for (int i = 0; i < 3; ++i) {
    auto ctx = AuthServer::As("mia", {auth::kRoleSalesManager}, "emea");
    ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
    crm::v1::ImportLeadsResponse response;
    auto writer = stub_->ImportLeads(ctx.get(), &response);
    ASSERT_TRUE(writer->WritesDone());
    const grpc::Status st = writer->Finish();
    EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << st.error_message();
    EXPECT_EQ(st.error_message(), "import_id: required");
  }
  EXPECT_TRUE(QueueFree()) << "an empty import was queued";
}

}  // namespace
}  // namespace crm::leads
