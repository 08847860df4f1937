#include "services/leads/store/lead_store.h"

#include <algorithm>

#include "gtest/gtest.h"
#include "libs/common/envelope.h"
#include "libs/common/pii/cipher.h"
#include "libs/common/testing/temp_dir.h"
#include "rocksdb/db.h"

namespace crm::leads {
namespace {

class LeadStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store_ = std::move(*LeadStore::Open(dir_.Sub("leads"), pii::RandomKey()));
  }

  static crm::v1::Lead MakeLead(const std::string& id, int score, const std::string& owner) {
    crm::v1::Lead lead;
    lead.set_lead_id(id);
    lead.set_customer_id("cus_" + id);
    lead.set_status(crm::v1::LEAD_STATUS_NEW);
    lead.set_version(1);
    lead.mutable_score()->set_total(score);
    lead.set_owner_id(owner);
    if (owner.empty()) lead.set_queue(kDefaultQueue);
    return lead;
  }

  // Writes the lead's state and list entries as a command would.
  void Write(const crm::v1::Lead* before, const crm::v1::Lead& after) {
    AppendRequest append;
    append.stream = LeadStream(after.lead_id());
    append.expected_version = before == nullptr ? EventStore::kNoStream : before->version();
    crm::v1::LeadScoreChanged scored;
    scored.set_lead_id(after.lead_id());
    append.events.push_back(MakeEnvelope(scored, after.customer_id(), EventContext{}));
    append.state = after.SerializeAsString();
    append.projection_writes = LeadStore::ListWrites(before, after);
    ASSERT_TRUE(store_->events().Append(std::move(append)).ok());
  }

  std::vector<std::string> Ids(const LeadQuery& q) {
    std::vector<std::string> ids;
    LeadQuery page = q;
    for (;;) {
      auto r = store_->ListLeads(page);
      EXPECT_TRUE(r.ok()) << r.status();
      if (!r.ok()) return ids;
      for (const auto& l : r->leads()) ids.push_back(l.lead_id());
      if (r->next_page_token().empty()) return ids;
      page.page_token = r->next_page_token();
    }
  }

  crm::testing::TempDir dir_;
  std::unique_ptr<LeadStore> store_;
};

TEST_F(LeadStoreTest, ScoreOrderBothWaysAcrossPagesAndMovedEntriesAreSkipped) {
  auto a = MakeLead("lead_a", 30, "usr_1");
  auto b = MakeLead("lead_b", 70, "usr_1");
  auto c = MakeLead("lead_c", 50, "");
  for (const auto* l : {&a, &b, &c}) Write(nullptr, *l);
  // lead_a rises above everyone and moves to another owner.
  auto a2 = a;
  a2.mutable_score()->set_total(90);
  a2.set_owner_id("usr_2");
  a2.set_version(2);
  Write(&a, a2);

  LeadQuery q;
  q.page_size = 1;
  q.sort = crm::v1::LEAD_SORT_SCORE_DESC;
  EXPECT_EQ(Ids(q), (std::vector<std::string>{"lead_a", "lead_b", "lead_c"}));
  q.sort = crm::v1::LEAD_SORT_SCORE_ASC;
  EXPECT_EQ(Ids(q), (std::vector<std::string>{"lead_c", "lead_b", "lead_a"}));
  q.min_score = 40;
  q.max_score = 80;
  EXPECT_EQ(Ids(q), (std::vector<std::string>{"lead_c", "lead_b"}));

  LeadQuery owner;
  owner.owner_id = "usr_1";
  owner.sort = crm::v1::LEAD_SORT_SCORE_DESC;
  EXPECT_EQ(Ids(owner), (std::vector<std::string>{"lead_b"}));
  owner.owner_id = "usr_2";
  EXPECT_EQ(Ids(owner), (std::vector<std::string>{"lead_a"}));
  LeadQuery queue;
  queue.queue = kDefaultQueue;
  queue.sort = crm::v1::LEAD_SORT_SCORE_ASC;
  EXPECT_EQ(Ids(queue), (std::vector<std::string>{"lead_c"}));

  std::vector<std::string> summaries_owned;
  ASSERT_TRUE(store_
                  ->ForEachOwnedLead([&](const crm::v1::Lead& s) {
                    summaries_owned.push_back(s.lead_id() + "@" + s.owner_id());
                  })
                  .ok());
  EXPECT_EQ(summaries_owned, (std::vector<std::string>{"lead_a@usr_2", "lead_b@usr_1"}));

  // Capture order, from the leads' states: the current owner and version.
  LeadQuery all;
  all.page_size = 2;
  EXPECT_EQ(Ids(all), (std::vector<std::string>{"lead_a", "lead_b", "lead_c"}));
  auto listed = store_->ListLeads(all);
  ASSERT_TRUE(listed.ok());
  ASSERT_EQ(listed->leads_size(), 2);
  EXPECT_EQ(listed->leads(0).owner_id(), "usr_2");
  EXPECT_EQ(listed->leads(0).score(), 90);
  EXPECT_EQ(listed->leads(0).version(), 2);
  EXPECT_EQ(listed->leads(1).version(), 1);
}

TEST_F(LeadStoreTest, AStoreWithTheRetiredSummaryFamilyOpensAndLists) {
  const std::string path = dir_.Sub("older");
  {
    // As the service wrote it before lists read the states.
    std::vector<std::string> families = {
        "contacts", "leads_by_id", "leads_by_score",      "leads_by_owner",
        "imports",  "settings",    pii::KeyVault::kFamily};
    for (auto& f : Subscriber::Families()) families.push_back(std::move(f));
    auto older = EventStore::Open(path, families);
    ASSERT_TRUE(older.ok()) << older.status();
    rocksdb::WriteBatch batch;
    ASSERT_TRUE(batch.Put((*older)->db().Family("leads_by_id"), "lead_x", "summary").ok());
    ASSERT_TRUE((*older)->db().Write(&batch, true).ok());
  }
  {
    auto reopened = LeadStore::Open(path, pii::RandomKey());
    ASSERT_TRUE(reopened.ok()) << reopened.status();
    store_ = *std::move(reopened);
    Write(nullptr, MakeLead("lead_1", 10, "usr_1"));
    EXPECT_EQ(Ids(LeadQuery{}), (std::vector<std::string>{"lead_1"}));
    store_.reset();
  }
  std::vector<std::string> families;
  ASSERT_TRUE(rocksdb::DB::ListColumnFamilies(rocksdb::DBOptions(), path, &families).ok());
  EXPECT_EQ(std::count(families.begin(), families.end(), "leads_by_id"), 0) << "dropped";
  EXPECT_EQ(std::count(families.begin(), families.end(), "leads_by_owner"), 1);
}

TEST_F(LeadStoreTest, PageTokenOfAnotherQueryIsRejected) {
  for (int i = 0; i < 3; ++i) Write(nullptr, MakeLead("lead_" + std::to_string(i), 10 * i, ""));
  LeadQuery by_id;
  by_id.page_size = 1;
  auto first = store_->ListLeads(by_id);
  ASSERT_TRUE(first.ok());
  LeadQuery by_score;
  by_score.sort = crm::v1::LEAD_SORT_SCORE_DESC;
  by_score.min_score = 50;
  by_score.page_token = first->next_page_token();
  EXPECT_EQ(store_->ListLeads(by_score).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(LeadStoreTest, ContactsAndImportRowsAreFoundInBatches) {
  AppendRequest append;
  append.stream = "test-contacts";
  append.request_key = "test/contacts";
  append.projection_writes.push_back(
      LeadStore::ContactWrite("email:a@x.test", {"lead_1", "cus_1"}));
  crm::v1::ImportRowResult row;
  row.set_row_number(7);
  row.set_lead_id("lead_1");
  append.projection_writes.push_back(LeadStore::ImportRowWrite("imp-1", row));
  ASSERT_TRUE(store_->events().Append(std::move(append)).ok());

  auto found = store_->FindContactKeys({"email:b@x.test", "email:a@x.test"});
  ASSERT_TRUE(found.ok());
  EXPECT_FALSE((*found)[0].has_value());
  ASSERT_TRUE((*found)[1].has_value());
  EXPECT_EQ((*found)[1]->customer_id, "cus_1");

  auto rows = store_->FindImportRows("imp-1", {6, 7});
  ASSERT_TRUE(rows.ok());
  EXPECT_FALSE((*rows)[0].has_value());
  EXPECT_EQ((*rows)[1]->lead_id(), "lead_1");
  EXPECT_TRUE(*store_->HasImportRows("imp-1"));
  EXPECT_FALSE(*store_->HasImportRows("imp"));  // a prefix is another import
  EXPECT_FALSE(store_->FindImportRows("imp-2", {7}).value()[0].has_value());
}

}  // namespace
}  // namespace crm::leads
