// The leads service as a real process on loopback, driven over gRPC: the
// trade-show import (assignment rules, duplicates, scores, an idempotent
// replay after a restart), the lifecycle up to conversion, and what scoped
// callers (a manager, a rep) are told.
#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/integration/stack.h"

namespace crm::testing {
namespace {

constexpr int kRows = 10'000;
constexpr int kRowsPerMessage = 500;

std::chrono::system_clock::time_point Deadline(int seconds) {
  return std::chrono::system_clock::now() + std::chrono::seconds(seconds);
}

// Every tenth row is the person of five rows before; every 997th row has a
// broken email. Regions and products cycle.
const char* Region(int row) {
  static const char* kRegions[] = {"EMEA", "NA", "APAC"};
  return kRegions[row % 3];
}
const char* Product(int row) { return row % 2 == 0 ? "analytics" : "crm-suite"; }
int PersonOf(int row) { return row % 10 == 0 ? row - 5 : row; }
bool Broken(int row) { return row % 997 == 0; }

crm::v1::ImportLeadRow Row(int row) {
  crm::v1::ImportLeadRow r;
  r.set_row_number(row);
  const int person = PersonOf(row);
  r.mutable_contact()->set_email(Broken(row) ? "broken-address"
                                             : absl::StrCat("visitor", person, "@expo.test"));
  r.mutable_contact()->set_first_name(absl::StrCat("Visitor", person));
  r.mutable_contact()->set_title(row % 4 == 0 ? "Head of IT" : "Engineer");
  r.set_company(absl::StrCat("Company ", person % 300));
  r.set_region(Region(row));
  r.add_product_interests(Product(row));
  if (row % 3 == 1) {
    r.mutable_bant()->mutable_budget()->set_currency("EUR");
    r.mutable_bant()->mutable_budget()->set_minor_units(5'000'000);
    r.mutable_bant()->set_timeline(crm::v1::PURCHASE_TIMELINE_QUARTER);
  }
  return r;
}

grpc::Status Import(crm::v1::LeadsService::Stub& stub, const std::string& import_id,
                    crm::v1::ImportLeadsResponse* response) {
  grpc::ClientContext ctx;
  ctx.set_deadline(Deadline(120));
  auto writer = stub.ImportLeads(&ctx, response);
  for (int first = 1; first <= kRows; first += kRowsPerMessage) {
    crm::v1::ImportLeadsRequest message;
    message.set_import_id(import_id);
    message.set_default_channel(crm::v1::LEAD_CHANNEL_TRADE_SHOW);
    for (int row = first; row < first + kRowsPerMessage; ++row) *message.add_rows() = Row(row);
    if (!writer->Write(message)) break;
  }
  writer->WritesDone();
  return writer->Finish();
}

void CreateRule(crm::v1::LeadsService::Stub& stub, const std::string& request_id,
                const crm::v1::AssignmentRule& rule) {
  grpc::ClientContext ctx;
  ctx.set_deadline(Deadline(10));
  crm::v1::CreateAssignmentRuleRequest req;
  req.set_request_id(request_id);
  *req.mutable_rule() = rule;
  crm::v1::AssignmentRule created;
  auto st = stub.CreateAssignmentRule(&ctx, req, &created);
  ASSERT_TRUE(st.ok()) << st.error_message();
}

// Every lead matching `req`, through all pages.
std::vector<crm::v1::LeadSummary> ListAll(crm::v1::LeadsService::Stub& stub,
                                          crm::v1::ListLeadsRequest req) {
  return Stack::ListAllLeads(stub, std::move(req));
}

crm::v1::Lead Get(crm::v1::LeadsService::Stub& stub, const std::string& lead_id) {
  grpc::ClientContext ctx;
  ctx.set_deadline(Deadline(10));
  crm::v1::GetLeadRequest req;
  req.set_lead_id(lead_id);
  crm::v1::Lead lead;
  EXPECT_TRUE(stub.GetLead(&ctx, req, &lead).ok()) << lead_id;
  return lead;
}

class LeadsServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(stack_.StartBroker());
    ASSERT_TRUE(stack_.StartLeads()) << stack_.leads().Log();
  }
  Stack stack_;
};

// A second process started on a port in use (a restored copy beside the
// live one) must fail to listen, not share the port's calls with it.
TEST_F(LeadsServiceTest, ASecondServiceOnATakenPortExitsInsteadOfSharingIt) {
  Process second({CRM_LEADS_BIN, "--listen=" + stack_.LeadsTarget(),
                  "--data-dir=" + stack_.dir() + "/leads-second", "--brokers=" + stack_.brokers(),
                  std::string("--jwt-hs256-key=") + auth::kDevHs256Key},
                 {}, stack_.dir() + "/leads-second.log");
  ASSERT_TRUE(second.Start());
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (second.running() && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(20));
  EXPECT_FALSE(second.running()) << second.Log();
  EXPECT_NE(second.Wait(absl::Seconds(5)), 0);
  EXPECT_TRUE(Stack::WaitServing(stack_.LeadsTarget())) << "the first one still serves";
}

// The embedded broker refuses what it does not read, as the services do.
TEST(EmbeddedBrokerTest, AMisspeltOrValuelessFlagIsRefused) {
  for (const char* flag : {"--partition=12", "--partitions"}) {
    Process broker({CRM_BROKER_BIN, flag}, {}, "/dev/null");
    ASSERT_TRUE(broker.Start());
    EXPECT_EQ(broker.Wait(absl::Seconds(30)), 2) << flag;
  }
}

// Whoever waits for the address file learns why it never comes.
TEST(EmbeddedBrokerTest, AnAddressFileThatCannotBeWrittenStopsTheBroker) {
  Process broker({CRM_BROKER_BIN, "--address-file=/nonexistent-dir/broker.addr"}, {}, "/dev/null");
  ASSERT_TRUE(broker.Start());
  EXPECT_EQ(broker.Wait(absl::Seconds(30)), 1);
}

TEST_F(LeadsServiceTest, TradeShowImportIsAssignedScoredDeduplicatedAndReplayable) {
  auto stub = stack_.LeadsStub();
  crm::v1::AssignmentRule emea_analytics;
  emea_analytics.set_name("EMEA analytics specialist");
  emea_analytics.add_regions("EMEA");
  emea_analytics.add_product_interests("analytics");
  emea_analytics.set_owner_id("usr_emea_analytics");
  CreateRule(*stub, "rule-1", emea_analytics);
  crm::v1::AssignmentRule emea_team;
  emea_team.set_name("EMEA team");
  emea_team.add_regions("EMEA");
  emea_team.set_team_id("team_emea");
  emea_team.add_team_members("usr_e1");
  emea_team.add_team_members("usr_e2");
  emea_team.set_strategy(crm::v1::TEAM_STRATEGY_ROUND_ROBIN);
  CreateRule(*stub, "rule-2", emea_team);
  crm::v1::AssignmentRule na;
  na.set_name("North America");
  na.add_regions("NA");
  na.set_owner_id("usr_na");
  CreateRule(*stub, "rule-3", na);  // APAC matches nothing: default queue

  crm::v1::ImportLeadsResponse first;
  auto st = Import(*stub, "expo-2026", &first);
  ASSERT_TRUE(st.ok()) << st.error_message() << stack_.leads().Log();
  ASSERT_EQ(first.results_size(), kRows);

  int expected_rejected = 0;
  int expected_duplicates = 0;
  std::map<int, const crm::v1::ImportRowResult*> by_row;
  for (const auto& r : first.results()) by_row[r.row_number()] = &r;
  int team_e1 = 0;
  int team_e2 = 0;
  for (int row = 1; row <= kRows; ++row) {
    const auto& r = *by_row.at(row);
    if (Broken(row)) {
      ++expected_rejected;
      EXPECT_EQ(r.outcome(), crm::v1::IMPORT_ROW_OUTCOME_REJECTED) << row;
      EXPECT_EQ(r.error().rfind("contact.email:", 0), 0u) << r.error();
      continue;
    }
    const int person = PersonOf(row);
    if (person != row && !Broken(person)) {
      ++expected_duplicates;
      ASSERT_EQ(r.outcome(), crm::v1::IMPORT_ROW_OUTCOME_DUPLICATE) << row;
      EXPECT_EQ(r.customer_id(), by_row.at(person)->customer_id()) << row;
      EXPECT_EQ(r.duplicate_of_lead_id(), by_row.at(person)->lead_id()) << row;
    } else {
      EXPECT_EQ(r.outcome(), crm::v1::IMPORT_ROW_OUTCOME_ACCEPTED) << row;
    }
    EXPECT_GT(r.score(), 0) << row;
    const std::string region = Region(row);
    if (region == "EMEA" && std::string(Product(row)) == "analytics") {
      EXPECT_EQ(r.owner_id(), "usr_emea_analytics") << row;
    } else if (region == "EMEA") {
      EXPECT_TRUE(r.owner_id() == "usr_e1" || r.owner_id() == "usr_e2") << row;
      (r.owner_id() == "usr_e1" ? team_e1 : team_e2)++;
    } else if (region == "NA") {
      EXPECT_EQ(r.owner_id(), "usr_na") << row;
    } else {
      EXPECT_EQ(r.owner_id(), "") << row;
      EXPECT_EQ(r.queue(), "default") << row;
    }
  }
  EXPECT_LE(std::abs(team_e1 - team_e2), 1) << "round robin: " << team_e1 << " vs " << team_e2;
  EXPECT_EQ(first.rejected(), expected_rejected);
  EXPECT_EQ(first.duplicates(), expected_duplicates);
  EXPECT_EQ(first.accepted(), kRows - expected_rejected - expected_duplicates);
  const int written = kRows - expected_rejected;

  // Queries see the import: every lead, and the owners' views.
  EXPECT_EQ(ListAll(*stub, {}).size(), static_cast<size_t>(written));
  crm::v1::ListLeadsRequest na_leads;
  na_leads.set_owner_id("usr_na");
  na_leads.set_sort(crm::v1::LEAD_SORT_SCORE_DESC);
  auto na_list = ListAll(*stub, na_leads);
  EXPECT_GT(na_list.size(), 3000u);
  EXPECT_TRUE(std::is_sorted(na_list.begin(), na_list.end(),
                             [](const auto& a, const auto& b) { return a.score() > b.score(); }));
  crm::v1::ListLeadsRequest hot;
  hot.set_min_score(40);
  hot.set_sort(crm::v1::LEAD_SORT_SCORE_DESC);
  size_t expected_hot = 0;
  for (int row = 1; row <= kRows; ++row) {
    expected_hot += !Broken(row) && by_row.at(row)->score() >= 40;
  }
  ASSERT_GT(expected_hot, 0u);
  const auto hot_list = ListAll(*stub, hot);
  EXPECT_EQ(hot_list.size(), expected_hot);
  for (const auto& l : hot_list) ASSERT_GE(l.score(), 40);
  const auto& sample = *by_row.at(1);  // NA, assigned to usr_na
  auto sample_lead = Get(*stub, sample.lead_id());
  EXPECT_EQ(sample_lead.owner_id(), "usr_na");
  EXPECT_EQ(sample_lead.import_id(), "expo-2026");
  EXPECT_EQ(sample_lead.score().total(), sample.score());
  EXPECT_EQ(sample_lead.version(), 3);  // captured, assigned, owner notified

  // The service restarts; replaying the whole import appends nothing.
  EXPECT_EQ(stack_.leads().Kill(SIGTERM), 0);
  ASSERT_TRUE(stack_.StartLeads()) << stack_.leads().Log();
  stub = stack_.LeadsStub();
  crm::v1::ImportLeadsResponse replay;
  st = Import(*stub, "expo-2026", &replay);
  ASSERT_TRUE(st.ok()) << st.error_message();
  ASSERT_EQ(replay.results_size(), kRows);
  EXPECT_EQ(replay.replayed(), written);
  EXPECT_EQ(replay.duplicates(), first.duplicates());
  for (int i = 0; i < kRows; ++i) {
    ASSERT_EQ(replay.results(i).lead_id(), first.results(i).lead_id()) << i;
    ASSERT_EQ(replay.results(i).customer_id(), first.results(i).customer_id()) << i;
  }
  EXPECT_EQ(ListAll(*stub, {}).size(), static_cast<size_t>(written));
  EXPECT_EQ(ListAll(*stub, na_leads).size(), na_list.size());
  EXPECT_EQ(Get(*stub, sample.lead_id()).version(), 3);

  // Qualify and convert the sample lead; converting it again fails.
  grpc::ClientContext qctx;
  crm::v1::QualifyLeadRequest qualify;
  qualify.set_request_id("qualify-1");
  qualify.set_lead_id(sample.lead_id());
  qualify.set_expected_version(3);
  qualify.mutable_bant()->set_decision_maker(true);
  crm::v1::Lead qualified;
  st = stub->QualifyLead(&qctx, qualify, &qualified);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(qualified.status(), crm::v1::LEAD_STATUS_QUALIFIED);
  EXPECT_GT(qualified.score().total(), sample.score());

  auto convert = [&](const std::string& request_id, int64_t expected_version,
                     crm::v1::ConvertLeadResponse* out) {
    grpc::ClientContext ctx;
    ctx.set_deadline(Deadline(10));
    crm::v1::ConvertLeadRequest req;
    req.set_request_id(request_id);
    req.set_lead_id(sample.lead_id());
    req.set_expected_version(expected_version);
    return stub->ConvertLead(&ctx, req, out);
  };
  crm::v1::ConvertLeadResponse converted;
  EXPECT_EQ(convert("convert-1", 3, &converted).error_code(), grpc::StatusCode::ABORTED);
  st = convert("convert-2", qualified.version(), &converted);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(converted.lead().status(), crm::v1::LEAD_STATUS_CONVERTED);
  EXPECT_FALSE(converted.conversion_event_id().empty());
  crm::v1::ConvertLeadResponse again;
  st = convert("convert-3", 0, &again);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << st.error_message();
  ASSERT_TRUE(convert("convert-2", qualified.version(), &again).ok());
  EXPECT_EQ(again.conversion_event_id(), converted.conversion_event_id());

  // The stream's history shows the whole life of the lead.
  grpc::ClientContext hctx;
  crm::v1::GetLeadHistoryRequest history;
  history.set_lead_id(sample.lead_id());
  crm::v1::GetLeadHistoryResponse h;
  ASSERT_TRUE(stub->GetLeadHistory(&hctx, history, &h).ok());
  std::vector<std::string> types;
  for (const auto& e : h.events()) types.push_back(e.type());
  EXPECT_EQ(types,
            (std::vector<std::string>{"LeadCaptured", "LeadAssigned", "OwnerNotified",
                                      "LeadQualified", "LeadScoreChanged", "LeadConverted"}));

  // Two imported people turn out to be one: merge them; the survivor's
  // history holds both leads' events.
  const auto& survivor = *by_row.at(4);
  const auto& merged = *by_row.at(7);
  ASSERT_NE(survivor.customer_id(), merged.customer_id());
  grpc::ClientContext mctx;
  crm::v1::MergeLeadsRequest merge;
  merge.set_request_id("merge-1");
  merge.set_survivor_lead_id(survivor.lead_id());
  merge.set_merged_lead_id(merged.lead_id());
  crm::v1::MergeLeadsResponse merge_response;
  st = stub->MergeLeads(&mctx, merge, &merge_response);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(merge_response.merged().status(), crm::v1::LEAD_STATUS_MERGED);
  grpc::ClientContext mhctx;
  crm::v1::GetLeadHistoryRequest merged_history;
  merged_history.set_lead_id(survivor.lead_id());
  crm::v1::GetLeadHistoryResponse mh;
  ASSERT_TRUE(stub->GetLeadHistory(&mhctx, merged_history, &mh).ok());
  int from_merged = 0;
  for (const auto& e : mh.events()) from_merged += e.stream() == "lead-" + merged.lead_id();
  EXPECT_GE(from_merged, 2);  // captured ... merged into

  // A stream without an import_id is refused, naming the field.
  grpc::ClientContext bad_ctx;
  crm::v1::ImportLeadsResponse bad_response;
  auto writer = stub->ImportLeads(&bad_ctx, &bad_response);
  crm::v1::ImportLeadsRequest no_id;
  *no_id.add_rows() = Row(1);
  writer->Write(no_id);
  writer->WritesDone();
  st = writer->Finish();
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(st.error_message().rfind("import_id:", 0), 0u) << st.error_message();

  // The first message's default channel is the stream's: a later message
  // naming another is refused rather than having its rows mislabelled.
  grpc::ClientContext channel_ctx;
  crm::v1::ImportLeadsResponse channel_response;
  auto channel_writer = stub->ImportLeads(&channel_ctx, &channel_response);
  crm::v1::ImportLeadsRequest opening;
  opening.set_import_id("two-channels");
  opening.set_default_channel(crm::v1::LEAD_CHANNEL_TRADE_SHOW);
  *opening.add_rows() = Row(1);
  crm::v1::ImportLeadsRequest second;
  second.set_default_channel(crm::v1::LEAD_CHANNEL_WEB_FORM);
  *second.add_rows() = Row(2);  // names no channel of its own
  channel_writer->Write(opening);
  channel_writer->Write(second);
  channel_writer->WritesDone();
  st = channel_writer->Finish();
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(st.error_message().rfind("default_channel:", 0), 0u) << st.error_message();
}

// ---- What a scoped caller sees (record_access.h, applied by the leads handlers) ----

const auth::Principal kManagerEmea{"mgr-emea", {auth::kRoleSalesManager}, "EMEA"};
const auth::Principal kManagerAmer{"mgr-amer", {auth::kRoleSalesManager}, "AMER"};
const auth::Principal kRep{"rep-1", {auth::kRoleSalesRep}, "EMEA"};

std::unique_ptr<grpc::ClientContext> Ctx() {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(Deadline(10));
  return ctx;
}

crm::v1::CaptureLeadResponse Capture(crm::v1::LeadsService::Stub& stub,
                                     const std::string& request_id, const std::string& email,
                                     const std::string& region, const std::string& phone = "") {
  crm::v1::CaptureLeadRequest r;
  r.set_request_id(request_id);
  r.set_channel(crm::v1::LEAD_CHANNEL_WEB_FORM);
  r.mutable_contact()->set_email(email);
  r.mutable_contact()->set_phone(phone);
  r.set_region(region);
  crm::v1::CaptureLeadResponse captured;
  auto st = stub.CaptureLead(Ctx().get(), r, &captured);
  EXPECT_TRUE(st.ok()) << st.error_message();
  return captured;
}

// Imports `rows` in one message.
grpc::Status ImportRows(crm::v1::LeadsService::Stub& stub, const std::string& import_id,
                        const std::vector<crm::v1::ImportLeadRow>& rows,
                        crm::v1::ImportLeadsResponse* response) {
  auto ctx = Ctx();
  auto writer = stub.ImportLeads(ctx.get(), response);
  crm::v1::ImportLeadsRequest message;
  message.set_import_id(import_id);
  message.set_default_channel(crm::v1::LEAD_CHANNEL_TRADE_SHOW);
  for (const auto& row : rows) *message.add_rows() = row;
  writer->Write(message);
  writer->WritesDone();
  return writer->Finish();
}

TEST_F(LeadsServiceTest, AManagerReadsEveryLeadItListsWhateverTheCaseOfItsRegion) {
  auto admin = stack_.LeadsStub();
  // Assignment rules match regions ignoring case; so does a manager's scope.
  const auto lead = Capture(*admin, "case-1", "case@emea.test", "emea");
  auto emea = crm::v1::LeadsService::NewStub(stack_.Channel("leads", kManagerEmea));
  auto amer = crm::v1::LeadsService::NewStub(stack_.Channel("leads", kManagerAmer));

  // The lead the manager lists (contact data included) is one it may read.
  crm::v1::ListLeadsRequest all;
  const auto listed = ListAll(*emea, all);
  ASSERT_EQ(listed.size(), 1u);
  EXPECT_EQ(listed[0].lead_id(), lead.lead_id());
  crm::v1::GetLeadRequest get;
  get.set_lead_id(lead.lead_id());
  crm::v1::Lead read;
  auto st = emea->GetLead(Ctx().get(), get, &read);
  EXPECT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(read.region(), "emea");
  // Asking for its territory in the lead's spelling narrows nothing away.
  crm::v1::ListLeadsRequest lower;
  lower.set_region("emea");
  EXPECT_EQ(ListAll(*emea, lower).size(), 1u);

  // Another territory sees it neither way.
  EXPECT_TRUE(ListAll(*amer, all).empty());
  EXPECT_EQ(amer->GetLead(Ctx().get(), get, &read).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
}

// What a manager lists is what it may read: its own leads in any region too.
TEST_F(LeadsServiceTest, AManagerListsItsOwnLeadsOutsideItsTerritory) {
  auto admin = stack_.LeadsStub();
  const auto lead = Capture(*admin, "own-apac", "own@apac.test", "APAC");
  crm::v1::AssignLeadRequest assign;
  assign.set_request_id("own-apac-assign");
  assign.set_lead_id(lead.lead_id());
  assign.set_owner_id(kManagerEmea.subject);
  crm::v1::Lead assigned;
  auto st = admin->AssignLead(Ctx().get(), assign, &assigned);
  ASSERT_TRUE(st.ok()) << st.error_message();
  auto emea = crm::v1::LeadsService::NewStub(stack_.Channel("leads", kManagerEmea));
  crm::v1::GetLeadRequest get;
  get.set_lead_id(lead.lead_id());
  crm::v1::Lead read;
  ASSERT_TRUE(emea->GetLead(Ctx().get(), get, &read).ok());

  crm::v1::ListLeadsRequest own;
  own.set_owner_id(kManagerEmea.subject);
  const auto listed = ListAll(*emea, own);
  ASSERT_EQ(listed.size(), 1u);
  EXPECT_EQ(listed[0].lead_id(), lead.lead_id());
  crm::v1::ListLeadsRequest in_apac;
  in_apac.set_region("APAC");
  ASSERT_EQ(ListAll(*emea, in_apac).size(), 1u) << "its own, not the region's";

  // A manager with no territory claim lists what it owns.
  const auth::Principal unplaced{kManagerEmea.subject, {auth::kRoleSalesManager}, ""};
  auto nowhere = crm::v1::LeadsService::NewStub(stack_.Channel("leads", unplaced));
  crm::v1::ListLeadsRequest all;
  const auto owned = ListAll(*nowhere, all);
  ASSERT_EQ(owned.size(), 1u);
  EXPECT_EQ(owned[0].lead_id(), lead.lead_id());
}

// A rep's call that went through but whose reply was lost is retried after
// the lead moved to another rep: the retry gets the first answer; only a
// new call is refused.
TEST_F(LeadsServiceTest, ARetryIsAnsweredAfterTheLeadMovedOutOfTheCallersReach) {
  auto admin = stack_.LeadsStub();
  const auto lead = Capture(*admin, "retry-1", "retry@emea.test", "emea");
  auto assign_to = [&](const std::string& request_id, const std::string& owner) {
    crm::v1::AssignLeadRequest assign;
    assign.set_request_id(request_id);
    assign.set_lead_id(lead.lead_id());
    assign.set_owner_id(owner);
    crm::v1::Lead assigned;
    auto st = admin->AssignLead(Ctx().get(), assign, &assigned);
    ASSERT_TRUE(st.ok()) << st.error_message();
  };
  assign_to("retry-assign-1", kRep.subject);
  auto rep = crm::v1::LeadsService::NewStub(stack_.Channel("leads", kRep));
  crm::v1::RecordLeadActivityRequest activity;
  activity.set_request_id("retry-act-1");
  activity.set_lead_id(lead.lead_id());
  activity.set_type(crm::v1::LEAD_ACTIVITY_TYPE_MEETING_HELD);
  crm::v1::Lead first, retried;
  auto st = rep->RecordLeadActivity(Ctx().get(), activity, &first);
  ASSERT_TRUE(st.ok()) << st.error_message();
  assign_to("retry-assign-2", "rep-2");

  st = rep->RecordLeadActivity(Ctx().get(), activity, &retried);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(retried.version(), first.version());
  EXPECT_EQ(retried.owner_id(), kRep.subject) << "the first answer";
  activity.set_request_id("retry-act-2");
  EXPECT_EQ(rep->RecordLeadActivity(Ctx().get(), activity, &retried).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);

  // The same for a merge the rep made of two of their leads.
  const auto other = Capture(*admin, "retry-2", "retry2@emea.test", "emea");
  assign_to("retry-assign-3", kRep.subject);
  crm::v1::AssignLeadRequest mine;
  mine.set_request_id("retry-assign-4");
  mine.set_lead_id(other.lead_id());
  mine.set_owner_id(kRep.subject);
  crm::v1::Lead assigned;
  ASSERT_TRUE(admin->AssignLead(Ctx().get(), mine, &assigned).ok());
  crm::v1::MergeLeadsRequest merge;
  merge.set_request_id("retry-merge-1");
  merge.set_survivor_lead_id(lead.lead_id());
  merge.set_merged_lead_id(other.lead_id());
  crm::v1::MergeLeadsResponse merged, merged_again;
  st = rep->MergeLeads(Ctx().get(), merge, &merged);
  ASSERT_TRUE(st.ok()) << st.error_message();
  assign_to("retry-assign-5", "rep-2");
  st = rep->MergeLeads(Ctx().get(), merge, &merged_again);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(merged_again.survivor().version(), merged.survivor().version());
}

TEST_F(LeadsServiceTest, AnImportNamesOnlyEarlierLeadsTheCallerMayAccess) {
  auto admin = stack_.LeadsStub();
  const auto foreign = Capture(*admin, "dup-apac", "apac@dup.test", "APAC");
  const auto own = Capture(*admin, "dup-emea", "emea@dup.test", "EMEA");
  std::vector<crm::v1::ImportLeadRow> rows(2);
  for (int i = 0; i < 2; ++i) {
    rows[i].set_row_number(i + 1);
    rows[i].set_region("EMEA");
  }
  rows[0].mutable_contact()->set_email("apac@dup.test");
  rows[1].mutable_contact()->set_email("emea@dup.test");

  auto emea = crm::v1::LeadsService::NewStub(stack_.Channel("leads", kManagerEmea));
  for (const char* attempt : {"first", "replay"}) {
    crm::v1::ImportLeadsResponse response;
    auto st = ImportRows(*emea, "dup-import-1", rows, &response);
    ASSERT_TRUE(st.ok()) << attempt << ": " << st.error_message();
    ASSERT_EQ(response.results_size(), 2) << attempt;
    // Still a duplicate of a known person, but the APAC lead is not named.
    EXPECT_EQ(response.results(0).outcome(), crm::v1::IMPORT_ROW_OUTCOME_DUPLICATE) << attempt;
    EXPECT_EQ(response.results(0).duplicate_of_lead_id(), "") << attempt;
    EXPECT_EQ(response.results(1).duplicate_of_lead_id(), own.lead_id()) << attempt;
  }
  // Nor when the new lead is read, or its history.
  crm::v1::ImportLeadsResponse imported;
  ASSERT_TRUE(ImportRows(*emea, "dup-import-1", rows, &imported).ok());
  crm::v1::GetLeadRequest get;
  get.set_lead_id(imported.results(0).lead_id());
  crm::v1::Lead read;
  auto read_st = emea->GetLead(Ctx().get(), get, &read);
  ASSERT_TRUE(read_st.ok()) << read_st.error_message();
  EXPECT_EQ(read.duplicate_of_lead_id(), "");
  auto captured_in_history = [&](crm::v1::LeadsService::Stub& stub) {
    crm::v1::GetLeadHistoryRequest history;
    history.set_lead_id(get.lead_id());
    crm::v1::GetLeadHistoryResponse events;
    auto st = stub.GetLeadHistory(Ctx().get(), history, &events);
    EXPECT_TRUE(st.ok()) << st.error_message();
    crm::v1::LeadCaptured captured;
    EXPECT_TRUE(events.events_size() > 0 && events.events(0).payload().UnpackTo(&captured));
    return captured;
  };
  EXPECT_EQ(captured_in_history(*emea).duplicate_of_lead_id(), "");
  // Nor in the lead a command answers with.
  crm::v1::RecordLeadActivityRequest activity;
  activity.set_request_id("dup-activity");
  activity.set_lead_id(get.lead_id());
  activity.set_type(crm::v1::LEAD_ACTIVITY_TYPE_MEETING_HELD);
  ASSERT_TRUE(emea->RecordLeadActivity(Ctx().get(), activity, &read).ok());
  EXPECT_EQ(read.duplicate_of_lead_id(), "");

  // The person is APAC's: converting the EMEA duplicate would open the
  // account (and its 360) for the EMEA manager, and so would merging it
  // into a lead of theirs.
  crm::v1::QualifyLeadRequest qualify;
  qualify.set_request_id("dup-qualify");
  qualify.set_lead_id(get.lead_id());
  qualify.mutable_bant()->set_decision_maker(true);
  auto qualified = emea->QualifyLead(Ctx().get(), qualify, &read);
  ASSERT_TRUE(qualified.ok()) << qualified.error_message();
  crm::v1::ConvertLeadRequest convert;
  convert.set_request_id("dup-convert");
  convert.set_lead_id(get.lead_id());
  crm::v1::ConvertLeadResponse converted;
  auto refused = emea->ConvertLead(Ctx().get(), convert, &converted);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::PERMISSION_DENIED) << refused.error_message();
  EXPECT_EQ(refused.error_message().rfind("lead_id:", 0), 0u) << refused.error_message();
  crm::v1::MergeLeadsRequest merge;
  merge.set_request_id("dup-merge");
  merge.set_survivor_lead_id(imported.results(1).lead_id());
  merge.set_merged_lead_id(get.lead_id());
  crm::v1::MergeLeadsResponse merged;
  refused = emea->MergeLeads(Ctx().get(), merge, &merged);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::PERMISSION_DENIED) << refused.error_message();
  EXPECT_EQ(refused.error_message().rfind("merged_lead_id:", 0), 0u) << refused.error_message();
  // A duplicate of the manager's own person converts.
  qualify.set_request_id("own-qualify");
  qualify.set_lead_id(imported.results(1).lead_id());
  ASSERT_TRUE(emea->QualifyLead(Ctx().get(), qualify, &read).ok());
  convert.set_request_id("own-convert");
  convert.set_lead_id(imported.results(1).lead_id());
  convert.set_owner_id(kManagerEmea.subject);
  auto own_converted = emea->ConvertLead(Ctx().get(), convert, &converted);
  EXPECT_TRUE(own_converted.ok()) << own_converted.error_message();

  // A caller who sees everything is told.
  EXPECT_EQ(captured_in_history(*admin).duplicate_of_lead_id(), foreign.lead_id());
  ASSERT_TRUE(admin->GetLead(Ctx().get(), get, &read).ok());
  EXPECT_EQ(read.duplicate_of_lead_id(), foreign.lead_id());
  crm::v1::ImportLeadsResponse response;
  auto st = ImportRows(*admin, "dup-import-2", rows, &response);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(response.results(0).duplicate_of_lead_id(), foreign.lead_id());
}

// The person of a later lead may have been merged into another territory's
// person since: a conversion would open that person's account.
TEST_F(LeadsServiceTest, ALeadOfAPersonMergedAwayIsConvertedByTheSurvivorsSide) {
  auto admin = stack_.LeadsStub();
  const auto apac = Capture(*admin, "merge-apac", "apac@merge.test", "APAC");
  const auto emea = Capture(*admin, "merge-emea", "emea@merge.test", "EMEA");
  auto manager = crm::v1::LeadsService::NewStub(stack_.Channel("leads", kManagerEmea));
  const auto later = Capture(*manager, "merge-later", "emea@merge.test", "EMEA");
  ASSERT_EQ(later.duplicate_of_lead_id(), emea.lead_id());
  crm::v1::MergeLeadsRequest merge;
  merge.set_request_id("merge-people");
  merge.set_survivor_lead_id(apac.lead_id());
  merge.set_merged_lead_id(emea.lead_id());
  crm::v1::MergeLeadsResponse merged;
  auto st = admin->MergeLeads(Ctx().get(), merge, &merged);
  ASSERT_TRUE(st.ok()) << st.error_message();

  crm::v1::Lead read;
  crm::v1::QualifyLeadRequest qualify;
  qualify.set_request_id("merge-qualify");
  qualify.set_lead_id(later.lead_id());
  qualify.mutable_bant()->set_decision_maker(true);
  st = manager->QualifyLead(Ctx().get(), qualify, &read);
  ASSERT_TRUE(st.ok()) << st.error_message();
  crm::v1::ConvertLeadRequest convert;
  convert.set_request_id("merge-convert");
  convert.set_lead_id(later.lead_id());
  convert.set_owner_id(kManagerEmea.subject);
  crm::v1::ConvertLeadResponse converted;
  st = manager->ConvertLead(Ctx().get(), convert, &converted);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED) << st.error_message();
  EXPECT_EQ(st.error_message().rfind("lead_id:", 0), 0u) << st.error_message();

  // Merges `merged` into `survivor` as the admin, then has the manager
  // qualify and convert `lead`: the conversion's status.
  auto convert_after_merge = [&](const std::string& key, const std::string& survivor,
                                 const std::string& merged_id, const std::string& lead) {
    merge.set_request_id(key + "-merge");
    merge.set_survivor_lead_id(survivor);
    merge.set_merged_lead_id(merged_id);
    auto status = admin->MergeLeads(Ctx().get(), merge, &merged);
    EXPECT_TRUE(status.ok()) << status.error_message();
    qualify.set_request_id(key + "-qualify");
    qualify.set_lead_id(lead);
    status = manager->QualifyLead(Ctx().get(), qualify, &read);
    EXPECT_TRUE(status.ok()) << status.error_message();
    convert.set_request_id(key + "-convert");
    convert.set_lead_id(lead);
    return manager->ConvertLead(Ctx().get(), convert, &converted);
  };

  // A later duplicate merged into another territory's person retires the
  // first lead's customer too: converting the first lead would open the
  // survivor's account on this side.
  const auto side = Capture(*admin, "side-first", "side@merge.test", "EMEA");
  const auto side_dup = Capture(*manager, "side-dup", "side@merge.test", "EMEA");
  ASSERT_EQ(side_dup.duplicate_of_lead_id(), side.lead_id());
  const auto side_apac = Capture(*admin, "side-apac", "side-apac@merge.test", "APAC");
  st = convert_after_merge("side", side_apac.lead_id(), side_dup.lead_id(), side.lead_id());
  EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED) << st.error_message();
  EXPECT_EQ(st.error_message().rfind("lead_id:", 0), 0u) << st.error_message();

  // The same with the person found by a phone only: the merge re-points the
  // keys the merged lead held, not the first lead's own email.
  const auto phoned = Capture(*admin, "phone-first", "phone-a@merge.test", "EMEA", "+442079460001");
  const auto phoned_dup =
      Capture(*manager, "phone-dup", "phone-b@merge.test", "EMEA", "+442079460001");
  ASSERT_EQ(phoned_dup.duplicate_of_lead_id(), phoned.lead_id());
  const auto phone_apac = Capture(*admin, "phone-apac", "phone-apac@merge.test", "APAC");
  st = convert_after_merge("phone", phone_apac.lead_id(), phoned_dup.lead_id(), phoned.lead_id());
  EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED) << st.error_message();

  // A first lead merged into its own later duplicate, all in the manager's
  // territory: the survivor still names the first lead, and converts.
  const auto first = Capture(*admin, "loop-first", "loop@merge.test", "EMEA");
  const auto again = Capture(*manager, "loop-again", "loop@merge.test", "EMEA");
  ASSERT_EQ(again.duplicate_of_lead_id(), first.lead_id());
  merge.set_request_id("merge-loop");
  merge.set_survivor_lead_id(again.lead_id());
  merge.set_merged_lead_id(first.lead_id());
  st = admin->MergeLeads(Ctx().get(), merge, &merged);
  ASSERT_TRUE(st.ok()) << st.error_message();
  qualify.set_request_id("loop-qualify");
  qualify.set_lead_id(again.lead_id());
  st = manager->QualifyLead(Ctx().get(), qualify, &read);
  ASSERT_TRUE(st.ok()) << st.error_message();
  convert.set_request_id("loop-convert");
  convert.set_lead_id(again.lead_id());
  st = manager->ConvertLead(Ctx().get(), convert, &converted);
  EXPECT_TRUE(st.ok()) << st.error_message();
}

TEST_F(LeadsServiceTest, AMergeWithoutASurvivorNamesSurvivorLeadId) {
  auto rep = crm::v1::LeadsService::NewStub(stack_.Channel("leads", kRep));
  crm::v1::MergeLeadsRequest merge;
  merge.set_request_id("merge-no-survivor");
  merge.set_merged_lead_id("lead-someone");
  crm::v1::MergeLeadsResponse response;
  auto st = rep->MergeLeads(Ctx().get(), merge, &response);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << st.error_message();
  EXPECT_EQ(st.error_message().rfind("survivor_lead_id:", 0), 0u) << st.error_message();
}

// On SIGTERM a service with a drain says NOT_SERVING and still answers
// calls until the drain ends, so balancers stop sending before it closes.
TEST_F(LeadsServiceTest, OnSigtermTheHealthCheckFailsWhileCallsAreStillServedForTheDrain) {
  EXPECT_EQ(stack_.leads().Kill(SIGTERM), 0);
  ASSERT_TRUE(stack_.Start("leads", {"--shutdown-drain-ms=12000"})) << stack_.leads().Log();
  const absl::Time signalled = absl::Now();
  stack_.leads().Signal(SIGTERM);
  ASSERT_TRUE(Eventually(
      [&] {
        return Stack::Health(stack_.LeadsTarget()) ==
               grpc::health::v1::HealthCheckResponse::NOT_SERVING;
      },
      absl::Seconds(3)));
  // Still answering, not for a moment but through the drain: captures go
  // on succeeding until shortly before it ends (however few a slow machine
  // fits in, the last one starts 5 s or more after the signal).
  auto stub = stack_.LeadsStub();
  absl::Time last_started = signalled;
  for (int i = 0; absl::Now() < signalled + absl::Seconds(8); ++i) {
    last_started = absl::Now();
    const auto lead =
        Capture(*stub, absl::StrCat("drain-", i), absl::StrCat("drain", i, "@example.com"), "EMEA");
    ASSERT_FALSE(lead.lead_id().empty())
        << "refused " << absl::Now() - signalled << " after SIGTERM";
    absl::SleepFor(absl::Milliseconds(100));
  }
  EXPECT_GE(last_started - signalled, absl::Seconds(5));
  EXPECT_EQ(stack_.leads().Wait(absl::Seconds(30)), 0);
}

}  // namespace
}  // namespace crm::testing
