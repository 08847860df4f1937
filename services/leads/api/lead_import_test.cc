#include "services/leads/api/lead_import.h"

#include <limits>
#include <map>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "libs/common/ids.h"
#include "libs/common/pii/cipher.h"
#include "libs/common/pii/field_sealer.h"
#include "libs/common/testing/temp_dir.h"

namespace crm::leads {
namespace {

using ::testing::ElementsAre;

class LeadImportTest : public ::testing::Test {
 protected:
  void SetUp() override { Open(); }

  void Open() {
    store_ = std::move(*LeadStore::Open(dir_.Sub("leads"), master_key_));
    commands_ = std::make_unique<LeadCommands>(*store_);
    ASSERT_TRUE(commands_->Recover().ok());
    // Small chunks so a test of a few dozen rows crosses chunk boundaries
    // and overlaps preparing one chunk with writing the one before.
    importer_ = std::make_unique<LeadImporter>(*commands_, ImportOptions{7, 500});
  }

  static EventContext Ctx() { return {kLeadsSource, "user:test", "", "", absl::Now()}; }

  static crm::v1::ImportLeadRow Row(int64_t row, const std::string& email,
                                    const std::string& region = "EMEA",
                                    const std::string& product = "crm") {
    crm::v1::ImportLeadRow r;
    r.set_row_number(row);
    r.mutable_contact()->set_email(email);
    r.mutable_contact()->set_first_name(absl::StrCat("Visitor", row));
    r.set_region(region);
    if (!product.empty()) r.add_product_interests(product);
    return r;
  }

  // Sends `rows` in messages of `per_message` rows, as the gRPC handler does.
  absl::StatusOr<crm::v1::ImportLeadsResponse> Import(const std::string& import_id,
                                                      std::vector<crm::v1::ImportLeadRow> rows,
                                                      size_t per_message = 5,
                                                      EventContext ctx = Ctx()) {
    auto session = importer_->Begin(import_id, crm::v1::LEAD_CHANNEL_TRADE_SHOW, std::move(ctx));
    if (!session.ok()) return session.status();
    for (size_t i = 0; i < rows.size(); i += per_message) {
      google::protobuf::RepeatedPtrField<crm::v1::ImportLeadRow> message;
      for (size_t j = i; j < std::min(rows.size(), i + per_message); ++j) *message.Add() = rows[j];
      if (auto st = (*session)->Add(&message); !st.ok()) return st;
    }
    return (*session)->Finish();
  }

  std::vector<std::string> Types(const std::string& lead_id) {
    std::vector<std::string> types;
    auto events = store_->events().ReadStream(LeadStream(lead_id));
    EXPECT_TRUE(events.ok()) << events.status();
    if (!events.ok()) return types;
    for (const auto& e : *events) types.push_back(e.type());
    return types;
  }

  int CountLeads() {
    crm::v1::ListLeadsRequest r;
    r.mutable_page()->set_page_size(1000);
    int n = 0;
    for (;;) {
      auto page = commands_->ListLeads(r);
      EXPECT_TRUE(page.ok()) << page.status();
      if (!page.ok()) return -1;
      n += page->leads_size();
      if (page->next_page_token().empty()) return n;
      r.mutable_page()->set_page_token(page->next_page_token());
    }
  }

  void CreateRule(const std::string& id, crm::v1::AssignmentRule rule) {
    crm::v1::CreateAssignmentRuleRequest r;
    r.set_request_id(id);
    *r.mutable_rule() = std::move(rule);
    ASSERT_TRUE(commands_->CreateAssignmentRule(r, Ctx()).ok());
  }

  crm::testing::TempDir dir_;
  const pii::Key master_key_ = pii::RandomKey();
  std::unique_ptr<LeadStore> store_;
  std::unique_ptr<LeadCommands> commands_;
  std::unique_ptr<LeadImporter> importer_;
};

// A caller who gives up mid-message (cancel, deadline) has no further
// chunk of it started: the chunks begun stay, the rest is not written.
TEST_F(LeadImportTest, ACancelledCallStartsNoFurtherChunk) {
  auto session = importer_->Begin("cancelled", crm::v1::LEAD_CHANNEL_TRADE_SHOW, Ctx());
  ASSERT_TRUE(session.ok()) << session.status();
  google::protobuf::RepeatedPtrField<crm::v1::ImportLeadRow> message;
  for (int i = 1; i <= 30; ++i) *message.Add() = Row(i, absl::StrCat("c", i, "@expo.test"));
  int asked = 0;
  // Cancelled once the first chunk (7 rows) is on its way.
  auto st = (*session)->Add(&message, [&] { return asked++ > 0; });
  EXPECT_EQ(st.code(), absl::StatusCode::kCancelled) << st;
  session->reset();  // the call ends; the chunk begun is written
  EXPECT_EQ(CountLeads(), 7);
}

// A stream that idled since it began: its rows are captured when written,
// so a person CaptureLead took meanwhile is not first seen after them.
TEST_F(LeadImportTest, RowsAreCapturedWhenWrittenNotWhenTheCallBegan) {
  EventContext opened_long_ago = Ctx();
  opened_long_ago.occurred_at -= absl::Hours(1);
  const absl::Time before = absl::Now();
  auto response = Import("idle", {Row(1, "idle@expo.test")}, 5, opened_long_ago);
  ASSERT_TRUE(response.ok()) << response.status();
  auto events = store_->events().ReadStream(LeadStream(response->results(0).lead_id()));
  ASSERT_TRUE(events.ok()) << events.status();
  ASSERT_FALSE(events->empty());
  EXPECT_GE(absl::FromUnixSeconds(events->front().occurred_at().seconds()),
            absl::FromUnixSeconds(absl::ToUnixSeconds(before)));
}

TEST_F(LeadImportTest, EveryRowIsReportedAcceptedDuplicateOrRejected) {
  crm::v1::CaptureLeadRequest known;
  known.set_request_id("known");
  known.set_channel(crm::v1::LEAD_CHANNEL_WEB_FORM);
  known.mutable_contact()->set_email("known@example.com");
  auto known_lead = *commands_->CaptureLead(known, Ctx());

  std::vector<crm::v1::ImportLeadRow> rows;
  for (int i = 1; i <= 20; ++i) rows.push_back(Row(i, absl::StrCat("p", i, "@expo.test")));
  rows[0].mutable_contact()->set_phone("+4930123456");
  rows[1].mutable_contact()->set_email("KNOWN@example.com");  // a known person
  rows[2].mutable_contact()->set_email("");                   // row 1's phone
  rows[2].mutable_contact()->set_phone("0049 30 123456");
  rows[3].mutable_contact()->set_email("not-an-email");
  rows[4].set_row_number(0);
  rows[5].mutable_contact()->set_last_name("pii1.k1.c2VhbGVk");  // copied from a topic
  rows[16].mutable_contact()->set_email("p9@expo.test");         // row 9, another chunk
  auto response = Import("expo-1", rows);
  ASSERT_TRUE(response.ok()) << response.status();
  ASSERT_EQ(response->results_size(), 20);
  const auto& r = response->results();

  EXPECT_EQ(r[0].outcome(), crm::v1::IMPORT_ROW_OUTCOME_ACCEPTED);
  EXPECT_EQ(r[1].outcome(), crm::v1::IMPORT_ROW_OUTCOME_DUPLICATE);
  EXPECT_EQ(r[1].customer_id(), known_lead.customer_id());
  EXPECT_EQ(r[1].duplicate_of_lead_id(), known_lead.lead_id());
  EXPECT_EQ(r[2].outcome(), crm::v1::IMPORT_ROW_OUTCOME_DUPLICATE);
  EXPECT_EQ(r[2].customer_id(), r[0].customer_id());
  EXPECT_EQ(r[2].duplicate_of_lead_id(), r[0].lead_id());
  EXPECT_EQ(r[3].outcome(), crm::v1::IMPORT_ROW_OUTCOME_REJECTED);
  EXPECT_EQ(r[3].error().rfind("contact.email:", 0), 0u) << r[3].error();
  EXPECT_TRUE(r[3].lead_id().empty());
  EXPECT_EQ(r[4].outcome(), crm::v1::IMPORT_ROW_OUTCOME_REJECTED);
  EXPECT_EQ(r[4].error().rfind("row_number:", 0), 0u) << r[4].error();
  EXPECT_EQ(r[5].outcome(), crm::v1::IMPORT_ROW_OUTCOME_REJECTED);
  EXPECT_EQ(r[5].error().rfind("contact.last_name:", 0), 0u) << r[5].error();
  EXPECT_EQ(r[16].outcome(), crm::v1::IMPORT_ROW_OUTCOME_DUPLICATE);
  EXPECT_EQ(r[16].customer_id(), r[8].customer_id());
  EXPECT_EQ(response->accepted(), 14);
  EXPECT_EQ(response->duplicates(), 3);
  EXPECT_EQ(response->rejected(), 3);
  EXPECT_EQ(response->replayed(), 0);

  // Written rows are whole: events, state and list entry; rejected rows
  // left nothing behind.
  for (const auto& row : r) {
    if (row.outcome() == crm::v1::IMPORT_ROW_OUTCOME_REJECTED) continue;
    EXPECT_EQ(Types(row.lead_id())[0], "LeadCaptured");
    crm::v1::GetLeadRequest get;
    get.set_lead_id(row.lead_id());
    auto lead = commands_->GetLead(get);
    ASSERT_TRUE(lead.ok());
    EXPECT_EQ(lead->import_id(), "expo-1");
    EXPECT_EQ(lead->import_row(), row.row_number());
    EXPECT_EQ(lead->channel(), crm::v1::LEAD_CHANNEL_TRADE_SHOW);
    EXPECT_GT(lead->score().total(), 0);
    EXPECT_EQ(row.score(), lead->score().total());
  }
  // The person index finds each accepted row's person by its contact.
  for (int i : {0, 8}) {
    crm::v1::Contact contact;
    contact.set_email(absl::StrCat("p", i + 1, "@expo.test"));
    auto match = store_->FindContact(contact);
    ASSERT_TRUE(match.ok()) << match.status();
    ASSERT_TRUE(match->has_value()) << contact.email();
    EXPECT_EQ((*match)->lead_id, r[i].lead_id());
    EXPECT_EQ((*match)->customer_id, r[i].customer_id());
  }
  EXPECT_EQ(CountLeads(), 1 + 17);
}

TEST_F(LeadImportTest, RowsAreAssignedByRegionAndProduct) {
  crm::v1::AssignmentRule analytics;
  analytics.set_name("emea analytics");
  analytics.add_regions("EMEA");
  analytics.add_product_interests("analytics");
  analytics.set_owner_id("usr_analytics");
  CreateRule("r1", analytics);
  crm::v1::AssignmentRule na;
  na.set_name("na team");
  na.add_regions("NA");
  na.set_team_id("team_na");
  na.add_team_members("usr_n1");
  na.add_team_members("usr_n2");
  na.set_strategy(crm::v1::TEAM_STRATEGY_ROUND_ROBIN);
  CreateRule("r2", na);

  std::vector<crm::v1::ImportLeadRow> rows = {Row(1, "a@x.test", "EMEA", "analytics"),
                                              Row(2, "b@x.test", "EMEA", "crm"),
                                              Row(3, "c@x.test", "NA", ""),
                                              Row(4, "d@x.test", "NA", ""),
                                              Row(5, "e@x.test", "NA", ""),
                                              Row(6, "f@x.test", "emea", "Analytics")};
  auto response = Import("assign-1", rows, 2);
  ASSERT_TRUE(response.ok()) << response.status();
  const auto& r = response->results();
  EXPECT_EQ(r[0].owner_id(), "usr_analytics");
  EXPECT_EQ(r[1].owner_id(), "");
  EXPECT_EQ(r[1].queue(), kDefaultQueue);
  EXPECT_EQ(r[2].owner_id(), "usr_n1");
  EXPECT_EQ(r[3].owner_id(), "usr_n2");
  EXPECT_EQ(r[4].owner_id(), "usr_n1");
  EXPECT_EQ(r[5].owner_id(), "usr_analytics");
  EXPECT_THAT(Types(r[0].lead_id()), ElementsAre("LeadCaptured", "LeadAssigned", "OwnerNotified"));
  EXPECT_THAT(Types(r[1].lead_id()), ElementsAre("LeadCaptured"));
  crm::v1::ListLeadsRequest mine;
  mine.set_owner_id("usr_n1");
  mine.set_sort(crm::v1::LEAD_SORT_SCORE_DESC);
  EXPECT_EQ(commands_->ListLeads(mine)->leads_size(), 2);
}

TEST_F(LeadImportTest, ReplayedImportReturnsTheFirstResultsAndAppendsNothing) {
  std::vector<crm::v1::ImportLeadRow> rows;
  for (int i = 1; i <= 30; ++i) rows.push_back(Row(i, absl::StrCat("r", i % 25, "@x.test")));
  rows[29].mutable_contact()->set_email("broken");
  auto first = Import("replay-1", rows);
  ASSERT_TRUE(first.ok()) << first.status();
  const uint64_t log_size = store_->events().LogSize();
  const int leads = CountLeads();

  // After a restart, so nothing comes from memory.
  importer_.reset();
  commands_.reset();
  store_.reset();
  Open();
  auto again = Import("replay-1", rows, 13);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(store_->events().LogSize(), log_size);
  EXPECT_EQ(CountLeads(), leads);
  ASSERT_EQ(again->results_size(), first->results_size());
  for (int i = 0; i < first->results_size(); ++i) {
    const auto& a = first->results(i);
    const auto& b = again->results(i);
    EXPECT_EQ(b.lead_id(), a.lead_id());
    EXPECT_EQ(b.customer_id(), a.customer_id());
    EXPECT_EQ(b.outcome(), a.outcome());
    EXPECT_EQ(b.replayed(), a.outcome() != crm::v1::IMPORT_ROW_OUTCOME_REJECTED);
  }
  EXPECT_EQ(again->replayed(), 29);
  EXPECT_EQ(again->duplicates(), first->duplicates());
  EXPECT_EQ(again->rejected(), 1);
}

// While the broker is away the outbox fills, and a chunk is refused as a
// whole: its new people's data keys do not land without their rows, to be
// issued again, for nothing, by every retry.
TEST_F(LeadImportTest, AChunkRefusedByAFullOutboxLeavesNoKeyBehind) {
  crm::v1::CaptureLeadRequest known;
  known.set_request_id("known");
  known.set_channel(crm::v1::LEAD_CHANNEL_WEB_FORM);
  known.mutable_contact()->set_email("known@example.com");
  ASSERT_TRUE(commands_->CaptureLead(known, Ctx()).ok());
  // Room for three more events: the three new people's keys would fit,
  // their rows not.
  const uint64_t written = store_->events().LogSize();
  store_->events().SetOutboxLimit(store_->events().BacklogSize() + 3);
  std::vector<crm::v1::ImportLeadRow> rows;
  for (int i = 1; i <= 3; ++i) rows.push_back(Row(i, absl::StrCat("full", i, "@x.test")));
  auto refused = Import("full-1", rows);
  EXPECT_TRUE(absl::IsResourceExhausted(refused.status())) << refused.status();
  EXPECT_EQ(store_->events().LogSize(), written) << "keys written for rows that were not";

  store_->events().SetOutboxLimit(1000000);
  auto retried = Import("full-1", rows);
  ASSERT_TRUE(retried.ok()) << retried.status();
  EXPECT_EQ(retried->accepted(), 3);
  auto lead = commands_->GetLead([&] {
    crm::v1::GetLeadRequest r;
    r.set_lead_id(retried->results(0).lead_id());
    return r;
  }());
  ASSERT_TRUE(lead.ok()) << lead.status();
  crm::v1::Contact contact = lead->contact();
  pii::OpenFields(contact, store_->vault());
  EXPECT_EQ(contact.email(), "full1@x.test") << "sealed with a key that was written";
}

TEST_F(LeadImportTest, AnImportContinuesInAnotherCall) {
  std::vector<crm::v1::ImportLeadRow> rows;
  for (int i = 1; i <= 20; ++i) rows.push_back(Row(i, absl::StrCat("s", i, "@x.test")));
  rows[14].mutable_contact()->set_email("s3@x.test");  // row 15 is row 3's person
  auto first = Import("split-1", {rows.begin(), rows.begin() + 10});
  ASSERT_TRUE(first.ok()) << first.status();
  // The second call overlaps the first by five rows (a resumed upload).
  auto second = Import("split-1", {rows.begin() + 5, rows.end()});
  ASSERT_TRUE(second.ok()) << second.status();
  ASSERT_EQ(second->results_size(), 15);
  EXPECT_EQ(second->replayed(), 5);
  EXPECT_EQ(second->results(0).lead_id(), first->results(5).lead_id());
  const auto& row15 = second->results(9);
  ASSERT_EQ(row15.row_number(), 15);
  EXPECT_EQ(row15.outcome(), crm::v1::IMPORT_ROW_OUTCOME_DUPLICATE);
  EXPECT_EQ(row15.customer_id(), first->results(2).customer_id());
  EXPECT_EQ(CountLeads(), 20);
}

TEST_F(LeadImportTest, AnotherCallersImportWithTheSameIdIsAnImportOfItsOwn) {
  EventContext a = Ctx();
  a.actor = "user:manager-a";
  EventContext b = Ctx();
  b.actor = "user:manager-b";
  auto rows_of = [](const std::string& who) {
    std::vector<crm::v1::ImportLeadRow> rows;
    for (int i = 1; i <= 10; ++i) rows.push_back(Row(i, absl::StrCat(who, i, "@x.test")));
    return rows;
  };
  auto first_a = Import("shared-1", rows_of("a"), 5, a);
  ASSERT_TRUE(first_a.ok()) << first_a.status();
  // B runs the same import_id while A's call is still open, and after it.
  auto open_a = importer_->Begin("shared-1", crm::v1::LEAD_CHANNEL_TRADE_SHOW, a);
  ASSERT_TRUE(open_a.ok()) << open_a.status();
  auto first_b = Import("shared-1", rows_of("b"), 5, b);
  ASSERT_TRUE(first_b.ok()) << first_b.status();
  open_a->reset();
  ASSERT_EQ(first_b->results_size(), 10);
  EXPECT_EQ(first_b->accepted(), 10);
  EXPECT_EQ(first_b->replayed(), 0);
  for (int i = 0; i < 10; ++i) {
    EXPECT_EQ(first_b->results(i).outcome(), crm::v1::IMPORT_ROW_OUTCOME_ACCEPTED);
    EXPECT_NE(first_b->results(i).lead_id(), first_a->results(i).lead_id());
    EXPECT_NE(first_b->results(i).customer_id(), first_a->results(i).customer_id());
  }
  EXPECT_EQ(CountLeads(), 20);

  // Each caller's replay, after a restart, returns that caller's results.
  const uint64_t log_size = store_->events().LogSize();
  importer_.reset();
  commands_.reset();
  store_.reset();
  Open();
  auto again_a = Import("shared-1", rows_of("a"), 5, a);
  auto again_b = Import("shared-1", rows_of("b"), 5, b);
  ASSERT_TRUE(again_a.ok() && again_b.ok());
  EXPECT_EQ(again_a->replayed(), 10);
  EXPECT_EQ(again_b->replayed(), 10);
  for (int i = 0; i < 10; ++i) {
    EXPECT_EQ(again_a->results(i).lead_id(), first_a->results(i).lead_id());
    EXPECT_EQ(again_b->results(i).lead_id(), first_b->results(i).lead_id());
  }
  EXPECT_EQ(store_->events().LogSize(), log_size);
}

TEST_F(LeadImportTest, AContactFirstSeenOnADuplicateRowFindsThePersonsFirstLead) {
  // Row 2 is row 1's person by email and brings a phone; row 3 has only
  // that phone (same chunk, so matched while row 2 is still in flight).
  std::vector<crm::v1::ImportLeadRow> rows = {Row(1, "ada@x.test"), Row(2, "ada@x.test"),
                                              Row(3, "")};
  rows[1].mutable_contact()->set_phone("+442079460958");
  rows[2].mutable_contact()->set_phone("+44 20 7946 0958");
  auto response = Import("phone-1", rows);
  ASSERT_TRUE(response.ok()) << response.status();
  const auto& r = response->results();
  ASSERT_EQ(r.size(), 3);
  EXPECT_EQ(r[1].duplicate_of_lead_id(), r[0].lead_id());
  EXPECT_EQ(r[2].outcome(), crm::v1::IMPORT_ROW_OUTCOME_DUPLICATE);
  EXPECT_EQ(r[2].duplicate_of_lead_id(), r[0].lead_id());
  EXPECT_EQ(r[2].customer_id(), r[0].customer_id());

  // Once written, the index names the first lead too.
  std::vector<crm::v1::ImportLeadRow> by_phone = {Row(1, "")};
  by_phone[0].mutable_contact()->set_phone("+442079460958");
  auto later = Import("phone-2", by_phone);
  ASSERT_TRUE(later.ok()) << later.status();
  EXPECT_EQ(later->results(0).duplicate_of_lead_id(), r[0].lead_id());
  EXPECT_EQ(later->results(0).customer_id(), r[0].customer_id());
}

TEST_F(LeadImportTest, ARowNumberRepeatedInOneCallIsTheSameRow) {
  auto response = Import("repeat-1", {Row(1, "a@x.test"), Row(2, "b@x.test"), Row(1, "a@x.test"),
                                      Row(2, "other@x.test")});
  ASSERT_TRUE(response.ok()) << response.status();
  ASSERT_EQ(response->results_size(), 4);
  EXPECT_EQ(response->results(2).lead_id(), response->results(0).lead_id());
  EXPECT_TRUE(response->results(2).replayed());
  // Other content under a row number already used is refused, not dropped
  // behind the first row's result.
  EXPECT_EQ(response->results(3).outcome(), crm::v1::IMPORT_ROW_OUTCOME_REJECTED);
  EXPECT_EQ(response->results(3).error(),
            "row_number: sent earlier in this call with other content; correct a rejected row "
            "in a later call");
  EXPECT_EQ(CountLeads(), 2);
}

// A row rejected and sent again corrected in the same call is refused as
// such (nothing was stored under its number); a later call takes it.
TEST_F(LeadImportTest, ARejectedRowIsCorrectedInALaterCall) {
  auto response = Import("correct-1", {Row(7, "not-an-email"), Row(7, "ada@x.test")});
  ASSERT_TRUE(response.ok()) << response.status();
  ASSERT_EQ(response->results_size(), 2);
  EXPECT_EQ(response->results(0).outcome(), crm::v1::IMPORT_ROW_OUTCOME_REJECTED);
  EXPECT_EQ(response->results(1).outcome(), crm::v1::IMPORT_ROW_OUTCOME_REJECTED);
  EXPECT_EQ(response->results(1).error(),
            "row_number: sent earlier in this call with other content; correct a rejected row "
            "in a later call");
  EXPECT_EQ(CountLeads(), 0);
  auto later = Import("correct-1", {Row(7, "ada@x.test")});
  ASSERT_TRUE(later.ok()) << later.status();
  EXPECT_EQ(later->results(0).outcome(), crm::v1::IMPORT_ROW_OUTCOME_ACCEPTED);
  EXPECT_EQ(CountLeads(), 1);
}

TEST_F(LeadImportTest, AReplayWithOtherContentUnderARowNumberIsRefused) {
  ASSERT_TRUE(Import("fix-1", {Row(1, "a@x.test"), Row(2, "b@x.test")}).ok());
  // The file was corrected and sent again: row 2 is someone else now.
  auto again = Import("fix-1", {Row(1, "a@x.test"), Row(2, "c@x.test")});
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_TRUE(again->results(0).replayed());
  EXPECT_EQ(again->results(0).row_fingerprint(), "") << "stored, never sent";
  EXPECT_EQ(again->results(1).outcome(), crm::v1::IMPORT_ROW_OUTCOME_REJECTED);
  EXPECT_EQ(again->results(1).error(),
            "row_number: already used in this import with other content");
  EXPECT_EQ(CountLeads(), 2);
}

// The default channel is part of a row that names none: a replay under
// another default is other content, not the stored result of a lead stored
// with the first default. A row naming its own channel is the same row.
TEST_F(LeadImportTest, AReplayUnderAnotherDefaultChannelIsOtherContent) {
  auto own = Row(2, "b@x.test");
  own.set_channel(crm::v1::LEAD_CHANNEL_PARTNER);
  ASSERT_TRUE(Import("chan-1", {Row(1, "a@x.test"), own}).ok());  // default: trade show
  auto session = importer_->Begin("chan-1", crm::v1::LEAD_CHANNEL_WEB_FORM, Ctx());
  ASSERT_TRUE(session.ok()) << session.status();
  google::protobuf::RepeatedPtrField<crm::v1::ImportLeadRow> message;
  *message.Add() = Row(1, "a@x.test");
  *message.Add() = own;
  ASSERT_TRUE((*session)->Add(&message).ok());
  auto again = (*session)->Finish();
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->results(0).outcome(), crm::v1::IMPORT_ROW_OUTCOME_REJECTED);
  EXPECT_EQ(again->results(0).error(),
            "row_number: already used in this import with other content");
  EXPECT_TRUE(again->results(1).replayed());
  session->reset();
  auto same = Import("chan-1", {Row(1, "a@x.test")});
  ASSERT_TRUE(same.ok()) << same.status();
  EXPECT_TRUE(same->results(0).replayed());
  EXPECT_EQ(CountLeads(), 2);
}

// 16,000 reasons quoting a long attribute key each must still fit a reply.
TEST_F(LeadImportTest, ARejectionReasonIsCutShort) {
  auto row = Row(1, "a@x.test");
  // "attributes[" and 188 bytes of key put the two bytes of the é at 199
  // and 200: the cut goes before it, not through it.
  (*row.mutable_attributes())[std::string(188, 'k') + "\u00e9" + std::string(200, 'k')] =
      "pii1.not-really-sealed";
  auto response = Import("reason-1", {row});
  ASSERT_TRUE(response.ok()) << response.status();
  ASSERT_EQ(response->results(0).outcome(), crm::v1::IMPORT_ROW_OUTCOME_REJECTED);
  EXPECT_EQ(response->results(0).error(), "attributes[" + std::string(188, 'k'));
}

// A person seen again in the next chunk, prepared while the chunk that
// issued their data key is still being written, is sealed with that key.
TEST_F(LeadImportTest, APersonAcrossChunksHasOneDataKey) {
  std::vector<crm::v1::ImportLeadRow> rows;
  for (int i = 1; i <= 14; ++i) rows.push_back(Row(i, absl::StrCat("k", i, "@x.test")));
  rows[7].mutable_contact()->set_email("k1@x.test");  // row 8, chunk two, is row 1's person
  auto response = Import("keys-1", rows, /*per_message=*/14);
  ASSERT_TRUE(response.ok()) << response.status();
  ASSERT_EQ(response->results(7).customer_id(), response->results(0).customer_id());
  auto events = store_->events().ReadCustomerEvents({response->results(0).customer_id()});
  ASSERT_TRUE(events.ok()) << events.status();
  int keys = 0;
  for (const auto& e : events->events) keys += e.type() == "DataKeyIssued";
  EXPECT_EQ(keys, 1);
  // Both rows read back in plaintext.
  for (int i : {0, 7}) {
    crm::v1::GetLeadRequest get;
    get.set_lead_id(response->results(i).lead_id());
    auto lead = commands_->GetLead(get);
    ASSERT_TRUE(lead.ok()) << lead.status();
    pii::OpenFields(*lead, store_->vault());
    EXPECT_EQ(lead->contact().email(), "k1@x.test");
  }
}

TEST_F(LeadImportTest, OneImportRunsInOneCallAtATime) {
  auto first = importer_->Begin("busy-1", crm::v1::LEAD_CHANNEL_TRADE_SHOW, Ctx());
  ASSERT_TRUE(first.ok());
  auto second = importer_->Begin("busy-1", crm::v1::LEAD_CHANNEL_TRADE_SHOW, Ctx());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kAborted);
  EXPECT_TRUE(importer_->Begin("other-1", crm::v1::LEAD_CHANNEL_TRADE_SHOW, Ctx()).ok());
  first->reset();
  EXPECT_TRUE(importer_->Begin("busy-1", crm::v1::LEAD_CHANNEL_TRADE_SHOW, Ctx()).ok());
}

TEST_F(LeadImportTest, ImportsOpenAtOnceAreBoundedPerCallerAndInAll) {
  ImportOptions options;
  options.max_calls_per_caller = 2;
  options.max_running_calls = 3;
  LeadImporter importer(*commands_, options);
  auto as = [&](const std::string& actor) {
    EventContext ctx = Ctx();
    ctx.actor = actor;
    return ctx;
  };
  constexpr auto kShow = crm::v1::LEAD_CHANNEL_TRADE_SHOW;
  auto first = importer.Begin("load-1", kShow, as("ada"));
  auto second = importer.Begin("load-2", kShow, as("ada"));
  ASSERT_TRUE(first.ok() && second.ok());
  // Ada's open (maybe idle) streams shut out only Ada.
  auto third = importer.Begin("load-3", kShow, as("ada"));
  EXPECT_EQ(third.status().code(), absl::StatusCode::kResourceExhausted) << third.status();
  auto bobs = importer.Begin("load-1", kShow, as("bob"));
  ASSERT_TRUE(bobs.ok()) << bobs.status();
  // Three open in all: the service is full for everyone.
  EXPECT_EQ(importer.Begin("load-1", kShow, as("cy")).status().code(),
            absl::StatusCode::kResourceExhausted);
  second->reset();
  EXPECT_TRUE(importer.Begin("load-3", kShow, as("ada")).ok());
  EXPECT_TRUE(importer.Begin("load-1", kShow, as("cy")).ok());
}

TEST_F(LeadImportTest, BadImportIdOrTooManyRowsIsInvalid) {
  EXPECT_EQ(importer_->Begin("", crm::v1::LEAD_CHANNEL_TRADE_SHOW, Ctx()).status().message(),
            "import_id: required");
  EXPECT_EQ(importer_->Begin("a b", crm::v1::LEAD_CHANNEL_TRADE_SHOW, Ctx()).status().code(),
            absl::StatusCode::kInvalidArgument);
  const auto sealed = importer_->Begin("pii1.batch7", crm::v1::LEAD_CHANNEL_TRADE_SHOW, Ctx());
  EXPECT_EQ(sealed.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(sealed.status().message().rfind("import_id:", 0), 0u) << sealed.status();
  std::vector<crm::v1::ImportLeadRow> rows;
  for (int i = 1; i <= 501; ++i) rows.push_back(Row(i, absl::StrCat("t", i, "@x.test")));
  auto response = Import("big-1", rows, 100);
  EXPECT_EQ(response.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(response.status().message().rfind("rows:", 0), 0u);
  // Every row before the refused message landed, those of a chunk not yet
  // full too: the client sends only the refused message on, as told.
  EXPECT_EQ(CountLeads(), 500);
  auto rest = Import("big-1", {rows.back()}, 100);
  ASSERT_TRUE(rest.ok()) << rest.status();
  EXPECT_EQ(rest->accepted(), 1);
  EXPECT_EQ(CountLeads(), 501);
}

TEST(ImportReplyTest, AFullCallsReplyFitsAClientsDefaultReceiveLimit) {
  // The largest result a row gets, for every row: a duplicate (three ids
  // as NewId makes them) with an owner and a queue of the 64 bytes ids may
  // have. A rejected row carries only its reason (under 200 bytes).
  crm::v1::ImportLeadsResponse reply;
  reply.set_import_id(std::string(64, 'i'));
  for (size_t i = 0; i < ImportOptions{}.max_rows_per_call; ++i) {
    auto* r = reply.add_results();
    r->set_row_number(std::numeric_limits<int64_t>::max() - static_cast<int64_t>(i));
    r->set_outcome(crm::v1::IMPORT_ROW_OUTCOME_DUPLICATE);
    r->set_lead_id(NewId("lead"));
    r->set_customer_id(NewId("cus"));
    r->set_duplicate_of_lead_id(NewId("lead"));
    r->set_owner_id(std::string(64, 'o'));
    r->set_queue(std::string(64, 'q'));
    r->set_score(100);
    r->set_replayed(true);
  }
  reply.set_accepted(1'000'000'000);
  reply.set_duplicates(1'000'000'000);
  reply.set_rejected(1'000'000'000);
  reply.set_replayed(1'000'000'000);
  EXPECT_LT(reply.ByteSizeLong(), size_t{4} << 20);
}

TEST_F(LeadImportTest, CapturesDuringAnImportAgreeOnThePerson) {
  constexpr int kPeople = 150;
  std::vector<crm::v1::ImportLeadRow> rows;
  for (int i = 1; i <= kPeople; ++i) rows.push_back(Row(i, absl::StrCat("both", i, "@x.test")));
  struct Captured {
    std::string customer_id;
    bool duplicate = false;
  };
  std::map<std::string, Captured> captured;  // by email
  std::thread capturer([&] {
    for (int i = kPeople; i >= 1; --i) {
      crm::v1::CaptureLeadRequest r;
      r.set_request_id(absl::StrCat("cap-", i));
      r.set_channel(crm::v1::LEAD_CHANNEL_WEB_FORM);
      r.mutable_contact()->set_email(absl::StrCat("both", i, "@x.test"));
      auto resp = commands_->CaptureLead(r, Ctx());
      ASSERT_TRUE(resp.ok()) << resp.status();
      captured[r.contact().email()] = {resp->customer_id(), resp->duplicate()};
    }
  });
  auto response = Import("race-1", rows, 10);
  capturer.join();
  ASSERT_TRUE(response.ok()) << response.status();
  for (const auto& r : response->results()) {
    const std::string email = absl::StrCat("both", r.row_number(), "@x.test");
    const Captured& c = captured[email];
    EXPECT_EQ(r.customer_id(), c.customer_id) << email;
    // Whoever came second for a person is its duplicate, never both or none.
    const bool row_first = r.outcome() == crm::v1::IMPORT_ROW_OUTCOME_ACCEPTED;
    EXPECT_NE(row_first, !c.duplicate) << email;
  }
  EXPECT_EQ(CountLeads(), 2 * kPeople);
}

}  // namespace
}  // namespace crm::leads
