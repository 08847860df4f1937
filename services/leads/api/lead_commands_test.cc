#include "services/leads/api/lead_commands.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <future>
#include <numeric>
#include <set>
#include <thread>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "crm/v1/pii.pb.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "libs/common/ids.h"
#include "libs/common/page_token.h"
#include "libs/common/pii/field_sealer.h"
#include "libs/common/pii/key_stream.h"
#include "libs/common/reply_budget.h"
#include "libs/common/testing/temp_dir.h"

namespace crm::leads {
namespace {

// A contact as stored (sealed), opened with the service's keys.
crm::v1::Contact Opened(const LeadStore& store, crm::v1::Contact contact) {
  pii::OpenFields(contact, store.vault());
  return contact;
}

class LeadCommandsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store_ = std::move(*LeadStore::Open(dir_.Sub("leads"), master_key_));
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
  const pii::Key master_key_ = pii::RandomKey();
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
  EXPECT_TRUE(pii::IsSealed(lead->contact().email())) << "stored encrypted";
  EXPECT_EQ(Opened(*store_, lead->contact()).email(), "ada@example.com");
  EXPECT_EQ(lead->customer_id(), r->customer_id());
  auto events = store_->events().ReadStream(LeadStream(r->lead_id()));
  ASSERT_EQ(events->size(), 1u);
  EXPECT_EQ((*events)[0].type(), "LeadCaptured");
  EXPECT_EQ((*events)[0].customer_id(), r->customer_id());
  EXPECT_EQ((*events)[0].actor(), "user:test");
  EXPECT_EQ((*events)[0].correlation_id(), "r1");
}

// A retry is answered with the first result before the request is checked:
// a capture an earlier version took (here a value the rules now refuse)
// gets its answer, not INVALID_ARGUMENT.
TEST_F(LeadCommandsTest, ARetryIsAnsweredEvenWhereTheRulesNowRefuseItsRequest) {
  auto request = Request("r-old", "old@example.com");
  (*request.mutable_attributes())["note"] = "vertical\x0btab";
  ASSERT_FALSE(NormalizeCaptureRequest(request).ok());
  crm::v1::CaptureLeadResponse first;
  first.set_lead_id("lead_taken_before");
  AppendRequest stored;
  stored.stream = "lead-lead_taken_before";
  stored.request_key = CallerRequestKey(Ctx(), "CaptureLead/r-old", request);
  stored.response = first.SerializeAsString();
  ASSERT_TRUE(store_->events().Append(std::move(stored)).ok());
  auto retry = commands_->CaptureLead(request, Ctx());
  ASSERT_TRUE(retry.ok()) << retry.status();
  EXPECT_EQ(retry->lead_id(), "lead_taken_before");
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

TEST_F(LeadCommandsTest, AContactFirstSeenOnADuplicateFindsThePersonsFirstLead) {
  auto first = commands_->CaptureLead(Request("r1", "ada@example.com"), Ctx());
  // A duplicate by email that brings a phone nobody had.
  auto with_phone =
      commands_->CaptureLead(Request("r2", "ada@example.com", "+442079460958"), Ctx());
  auto by_phone = commands_->CaptureLead(Request("r3", "", "+44 20 7946 0958"), Ctx());
  ASSERT_TRUE(first.ok() && with_phone.ok() && by_phone.ok());
  EXPECT_EQ(with_phone->duplicate_of_lead_id(), first->lead_id());
  EXPECT_TRUE(by_phone->duplicate());
  EXPECT_EQ(by_phone->duplicate_of_lead_id(), first->lead_id());
  EXPECT_EQ(by_phone->customer_id(), first->customer_id());
}

TEST_F(LeadCommandsTest, AnErasedPersonWhoComesBackIsANewCustomer) {
  auto erased = *commands_->CaptureLead(Request("r1", "ada@example.com", "+442079460958"), Ctx());
  ASSERT_TRUE(store_->vault().EraseCustomer(erased.customer_id(), "GDPR request", Ctx()).ok());

  // Neither the email nor the phone names the erased lead any more.
  auto by_email = commands_->CaptureLead(Request("r2", "ada@example.com"), Ctx());
  ASSERT_TRUE(by_email.ok()) << by_email.status();
  EXPECT_FALSE(by_email->duplicate());
  EXPECT_NE(by_email->customer_id(), erased.customer_id());
  auto by_phone = commands_->CaptureLead(Request("r3", "", "+44 20 7946 0958"), Ctx());
  ASSERT_TRUE(by_phone.ok()) << by_phone.status();
  EXPECT_FALSE(by_phone->duplicate());
  EXPECT_NE(by_phone->customer_id(), erased.customer_id());
  // The new person's keys are indexed again: a later lead is their duplicate.
  auto again = commands_->CaptureLead(Request("r4", "ADA@example.com"), Ctx());
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->customer_id(), by_email->customer_id());
  EXPECT_EQ(again->duplicate_of_lead_id(), by_email->lead_id());
}

TEST_F(LeadCommandsTest, RetriedRequestReturnsFirstResultAndAppendsNothing) {
  auto first = commands_->CaptureLead(Request("r1", "ada@example.com"), Ctx());
  auto retry = commands_->CaptureLead(Request("r1", "ada@example.com"), Ctx());
  ASSERT_TRUE(first.ok() && retry.ok());
  EXPECT_EQ(retry->lead_id(), first->lead_id());
  EXPECT_EQ(retry->customer_id(), first->customer_id());
  EXPECT_FALSE(retry->duplicate());
  // LeadCaptured and the new customer's DataKeyIssued.
  EXPECT_EQ(store_->events().LogSize(), 2u);
}

TEST_F(LeadCommandsTest, SameRequestIdFromAnotherCallerIsAnotherRequest) {
  auto mine = commands_->CaptureLead(Request("r1", "ada@example.com"), Ctx());
  EventContext other = Ctx();
  other.actor = "user:other";
  auto theirs = commands_->CaptureLead(Request("r1", "bob@example.com"), other);
  ASSERT_TRUE(mine.ok() && theirs.ok());
  // Not the first caller's stored result: a lead of its own.
  EXPECT_NE(theirs->lead_id(), mine->lead_id());
  EXPECT_NE(theirs->customer_id(), mine->customer_id());
  EXPECT_EQ(store_->events().LogSize(), 4u);  // two leads, two customers' keys
  // Each caller's retry still gets that caller's first result.
  auto retry = commands_->CaptureLead(Request("r1", "bob@example.com"), other);
  ASSERT_TRUE(retry.ok());
  EXPECT_EQ(retry->lead_id(), theirs->lead_id());
  EXPECT_EQ(store_->events().LogSize(), 4u);
}

TEST_F(LeadCommandsTest, NoPlaintextContactDataIsStoredAnywhere) {
  auto request = Request("r1", "ada@example.com", "+4930123456");
  request.mutable_contact()->set_first_name("Adalinde");
  auto r = commands_->CaptureLead(request, Ctx());
  ASSERT_TRUE(r.ok()) << r.status();
  // Found again by its email, through the blind index.
  auto again = commands_->CaptureLead(Request("r2", "ADA@example.com"), Ctx());
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(again->duplicate());
  EXPECT_EQ(again->customer_id(), r->customer_id());
  ASSERT_TRUE(store_->events().db().Flush().ok());
  size_t rows = 0;
  for (const char* family :
       {"events", "state", "log", "contacts", "leads_by_owner", "leads_by_score", "requests"}) {
    auto it = store_->events().db().NewIterator(family);
    for (it->SeekToFirst(); it->Valid(); it->Next(), ++rows) {
      const std::string row = it->key().ToString() + it->value().ToString();
      EXPECT_EQ(row.find("ada@example.com"), std::string::npos) << family;
      EXPECT_EQ(row.find("4930123456"), std::string::npos) << family;
      EXPECT_EQ(row.find("Adalinde"), std::string::npos) << family;
    }
  }
  EXPECT_GT(rows, 5u);
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
  EXPECT_EQ(commands_->GetLead(g).status().message(), "lead_id: lead lead_missing not found");
  g.clear_lead_id();
  EXPECT_EQ(commands_->GetLead(g).status().code(), absl::StatusCode::kInvalidArgument);
}

// ---- Rules, assignment, lifecycle, scoring, merge ----

class LeadUseCaseTest : public LeadCommandsTest {
 protected:
  std::vector<std::string> Types(const std::string& lead_id) {
    std::vector<std::string> types;
    auto events = store_->events().ReadStream(LeadStream(lead_id));
    EXPECT_TRUE(events.ok()) << events.status();
    if (!events.ok()) return types;
    for (const auto& e : *events) types.push_back(e.type());
    return types;
  }
  crm::v1::AssignmentRule CreateRule(const std::string& id, crm::v1::AssignmentRule rule) {
    crm::v1::CreateAssignmentRuleRequest r;
    r.set_request_id(id);
    *r.mutable_rule() = std::move(rule);
    auto created = commands_->CreateAssignmentRule(r, Ctx());
    EXPECT_TRUE(created.ok()) << created.status();
    return created.value_or(crm::v1::AssignmentRule());
  }
  static crm::v1::AssignmentRule OwnerRule(const std::string& region, const std::string& product,
                                           const std::string& owner) {
    crm::v1::AssignmentRule r;
    r.set_name(absl::StrCat(region, "/", product));
    if (!region.empty()) r.add_regions(region);
    if (!product.empty()) r.add_product_interests(product);
    r.set_owner_id(owner);
    return r;
  }
  static crm::v1::AssignmentRule TeamRule(const std::string& region,
                                          std::vector<std::string> members,
                                          crm::v1::TeamStrategy strategy) {
    crm::v1::AssignmentRule r;
    r.set_name("team " + region);
    r.add_regions(region);
    r.set_team_id("team_" + region);
    for (auto& m : members) r.add_team_members(m);
    r.set_strategy(strategy);
    return r;
  }
  crm::v1::CaptureLeadResponse CaptureIn(const std::string& id, const std::string& region,
                                         const std::string& product) {
    auto r = Request(id, absl::StrCat(id, "@example.com"));
    r.set_region(region);
    if (!product.empty()) r.add_product_interests(product);
    auto resp = commands_->CaptureLead(r, Ctx());
    EXPECT_TRUE(resp.ok()) << resp.status();
    return resp.value_or(crm::v1::CaptureLeadResponse());
  }
  crm::v1::Lead Get(const std::string& lead_id) {
    crm::v1::GetLeadRequest g;
    g.set_lead_id(lead_id);
    return *commands_->GetLead(g);
  }
  absl::StatusOr<crm::v1::Lead> Qualify(const std::string& request_id, const std::string& lead_id,
                                        int64_t expected_version = 0) {
    crm::v1::QualifyLeadRequest q;
    q.set_request_id(request_id);
    q.set_lead_id(lead_id);
    q.set_expected_version(expected_version);
    return commands_->QualifyLead(q, Ctx());
  }
  absl::StatusOr<crm::v1::ConvertLeadResponse> Convert(const std::string& request_id,
                                                       const std::string& lead_id) {
    crm::v1::ConvertLeadRequest c;
    c.set_request_id(request_id);
    c.set_lead_id(lead_id);
    return commands_->ConvertLead(c, Ctx());
  }
  absl::StatusOr<crm::v1::Lead> Disqualify(const std::string& request_id,
                                           const std::string& lead_id) {
    crm::v1::DisqualifyLeadRequest d;
    d.set_request_id(request_id);
    d.set_lead_id(lead_id);
    d.set_reason("no budget");
    return commands_->DisqualifyLead(d, Ctx());
  }
  // The streams whose events the lead's history (first page) shows.
  std::set<std::string> HistoryStreams(const std::string& lead_id) {
    crm::v1::GetLeadHistoryRequest history;
    history.set_lead_id(lead_id);
    auto h = commands_->GetLeadHistory(history);
    EXPECT_TRUE(h.ok()) << h.status();
    std::set<std::string> streams;
    if (h.ok()) {
      for (const auto& e : h->events()) streams.insert(e.stream());
    }
    return streams;
  }
  crm::v1::ListLeadsResponse List(crm::v1::ListLeadsRequest r) {
    auto resp = commands_->ListLeads(r);
    EXPECT_TRUE(resp.ok()) << resp.status();
    return resp.value_or(crm::v1::ListLeadsResponse());
  }
  // Reopens the store as a restarted process would.
  // A capture of the person with `email`, resolved and not written yet: a
  // merge retiring their customer waits for it until Land.
  ContactRegistry::Resolution CaptureInFlight(const std::string& email) {
    const auto keys = store_->ContactKeys(Request("x", email).contact());
    auto in_flight = commands_->contacts().Resolve(
        {{keys, "cus_unused"}}, [](const std::string&) { return std::string("lead_in_flight"); },
        commands_->contacts().NewOwner());
    EXPECT_TRUE(in_flight.ok()) << in_flight.status();
    return in_flight.ok() ? in_flight->front() : ContactRegistry::Resolution{};
  }
  void Land(const ContactRegistry::Resolution& in_flight) {
    ContactRegistry::Hold hold;
    hold.Add(in_flight);
    commands_->contacts().Release(hold);
  }
  // Whether `callers` come to be blocked in the contact registry (waiting
  // for a lead in flight, a merge, leads joining a customer) within 30 s.
  bool Waiting(int callers) {
    for (const absl::Time give_up = absl::Now() + absl::Seconds(30); absl::Now() < give_up;
         absl::SleepFor(absl::Milliseconds(5))) {
      if (commands_->contacts().waiting() >= callers) return true;
    }
    return false;
  }
  // MergeLeads on another thread, expected to succeed.
  std::thread MergeInBackground(const std::string& survivor_lead_id,
                                const std::string& merged_lead_id) {
    return std::thread([this, survivor_lead_id, merged_lead_id] {
      crm::v1::MergeLeadsRequest r;
      r.set_request_id("merge");
      r.set_survivor_lead_id(survivor_lead_id);
      r.set_merged_lead_id(merged_lead_id);
      auto result = commands_->MergeLeads(r, Ctx());
      EXPECT_TRUE(result.ok()) << result.status();
    });
  }

  void Restart() {
    commands_.reset();
    store_.reset();
    store_ = std::move(*LeadStore::Open(dir_.Sub("leads"), master_key_));
    commands_ = std::make_unique<LeadCommands>(*store_);
    ASSERT_TRUE(commands_->Recover().ok());
  }
};

TEST_F(LeadUseCaseTest, RuleTableIsManagedIdempotentlyAndSurvivesRestart) {
  auto a = CreateRule("rule-req-1", OwnerRule("EMEA", "", "usr_a"));
  auto b = CreateRule("rule-req-2", OwnerRule("NA", "", "usr_b"));
  EXPECT_EQ(a.position(), 1);
  EXPECT_EQ(b.position(), 2);
  // A retried create returns the first rule and adds none.
  EXPECT_EQ(CreateRule("rule-req-1", OwnerRule("EMEA", "", "usr_a")).rule_id(), a.rule_id());
  auto list = commands_->ListAssignmentRules({});
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->rules_size(), 2);
  EXPECT_EQ(list->table_version(), 2);

  crm::v1::ReorderAssignmentRulesRequest reorder;
  reorder.set_request_id("reorder-1");
  reorder.add_rule_ids(b.rule_id());
  reorder.add_rule_ids(a.rule_id());
  reorder.set_expected_table_version(1);
  EXPECT_EQ(commands_->ReorderAssignmentRules(reorder, Ctx()).status().code(),
            absl::StatusCode::kAborted);
  reorder.set_request_id("reorder-2");
  reorder.set_expected_table_version(2);
  auto reordered = commands_->ReorderAssignmentRules(reorder, Ctx());
  ASSERT_TRUE(reordered.ok()) << reordered.status();
  EXPECT_EQ(reordered->rules(0).rule_id(), b.rule_id());

  crm::v1::SetAssignmentRuleEnabledRequest disable;
  disable.set_request_id("disable-1");
  disable.set_rule_id(a.rule_id());
  auto disabled = commands_->SetAssignmentRuleEnabled(disable, false, Ctx());
  ASSERT_TRUE(disabled.ok()) << disabled.status();
  EXPECT_FALSE(disabled->enabled());
  EXPECT_EQ(commands_->ListAssignmentRules({})->rules_size(), 1);
  crm::v1::ListAssignmentRulesRequest all;
  all.set_include_disabled(true);
  all.mutable_page()->set_page_size(1);
  auto page = commands_->ListAssignmentRules(all);
  ASSERT_EQ(page->rules_size(), 1);
  ASSERT_FALSE(page->next_page_token().empty());
  all.mutable_page()->set_page_token(page->next_page_token());
  EXPECT_EQ(commands_->ListAssignmentRules(all)->rules(0).rule_id(), a.rule_id());

  Restart();
  all.clear_page();
  auto after = commands_->ListAssignmentRules(all);
  ASSERT_EQ(after->rules_size(), 2);
  EXPECT_EQ(after->rules(0).rule_id(), b.rule_id());
  EXPECT_FALSE(after->rules(1).enabled());
  EXPECT_EQ(after->table_version(), 4);
  // Disabled rules no longer assign.
  EXPECT_EQ(CaptureIn("emea-1", "EMEA", "").queue(), kDefaultQueue);
  EXPECT_EQ(CaptureIn("na-1", "NA", "").owner_id(), "usr_b");
}

// A page token names the table it paged: after a change the next page of
// the old table is not served from the new one (it skipped a rule).
TEST_F(LeadUseCaseTest, ARulePageTokenOfATableChangedSinceIsAborted) {
  std::vector<std::string> ids;
  for (const char* region : {"EMEA", "NA", "APAC", "LATAM"}) {
    ids.push_back(
        CreateRule(absl::StrCat("page-", region), OwnerRule(region, "", "usr_a")).rule_id());
  }
  crm::v1::ListAssignmentRulesRequest list;
  list.mutable_page()->set_page_size(2);
  auto first = commands_->ListAssignmentRules(list);
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_EQ(first->rules_size(), 2);
  list.mutable_page()->set_page_token(first->next_page_token());
  auto second = commands_->ListAssignmentRules(list);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(second->rules(0).rule_id(), ids[2]);

  crm::v1::SetAssignmentRuleEnabledRequest disable;
  disable.set_request_id("page-disable");
  disable.set_rule_id(ids[0]);
  ASSERT_TRUE(commands_->SetAssignmentRuleEnabled(disable, false, Ctx()).ok());
  auto stale = commands_->ListAssignmentRules(list);
  EXPECT_EQ(stale.status().code(), absl::StatusCode::kAborted) << stale.status();
  EXPECT_EQ(stale.status().message().rfind("page.page_token:", 0), 0u) << stale.status();
}

// A table of rules with long member lists would make a reply a default
// gRPC client refuses (over 4 MiB).
TEST_F(LeadUseCaseTest, RulePagesStopShortOfTheReplyBound) {
  constexpr int kRules = 260;
  std::vector<std::string> ids;
  for (int i = 0; i < kRules; ++i) {
    std::vector<std::string> members;
    for (int m = 0; m < 100; ++m) members.push_back(absl::StrCat("usr_", m, std::string(56, 'm')));
    auto rule = TeamRule(absl::StrCat("R", i), members, crm::v1::TEAM_STRATEGY_ROUND_ROBIN);
    for (int x = 0; x < 49; ++x) {
      rule.add_regions(absl::StrCat("region-", x, "-", std::string(50, 'r')));
      rule.add_product_interests(absl::StrCat("product-", x, "-", std::string(50, 'p')));
    }
    ids.push_back(CreateRule(absl::StrCat("big-", i), std::move(rule)).rule_id());
  }
  auto read_all = [&](crm::v1::ListAssignmentRulesResponse first) {
    std::vector<std::string> seen;
    int pages = 0;
    crm::v1::ListAssignmentRulesRequest next;
    next.set_include_disabled(true);
    for (;;) {
      EXPECT_LE(first.ByteSizeLong(), kMaxReplyBytes);
      for (const auto& r : first.rules()) seen.push_back(r.rule_id());
      ++pages;
      if (first.next_page_token().empty() || pages == 10) break;
      next.mutable_page()->set_page_token(first.next_page_token());
      auto page = commands_->ListAssignmentRules(next);
      EXPECT_TRUE(page.ok()) << page.status();
      first = page.value_or(crm::v1::ListAssignmentRulesResponse());
    }
    return std::make_pair(seen, pages);
  };
  crm::v1::ListAssignmentRulesRequest list;
  list.set_include_disabled(true);  // the query the pages go on with
  list.mutable_page()->set_page_size(1000);
  auto listed = read_all(*commands_->ListAssignmentRules(list));
  EXPECT_EQ(listed.first, ids);
  EXPECT_EQ(listed.second, 2);

  // A reorder answers with the first page; the token goes on in the list.
  crm::v1::ReorderAssignmentRulesRequest reorder;
  reorder.set_request_id("reverse");
  std::vector<std::string> reversed(ids.rbegin(), ids.rend());
  for (const auto& id : reversed) reorder.add_rule_ids(id);
  reorder.set_expected_table_version(kRules);
  auto reordered = commands_->ReorderAssignmentRules(reorder, Ctx());
  ASSERT_TRUE(reordered.ok()) << reordered.status();
  auto after = read_all(*reordered);
  EXPECT_EQ(after.first, reversed);
  EXPECT_EQ(after.second, 2);
}

TEST_F(LeadUseCaseTest, CaptureIsAssignedByRegionAndProductWithEvents) {
  CreateRule("r1", OwnerRule("EMEA", "analytics", "usr_analytics"));
  CreateRule("r2", OwnerRule("EMEA", "", "usr_emea"));
  // An owner named by an identity provider's subject ("provider|id").
  CreateRule("r3", OwnerRule("LATAM", "", "auth0|5f7c8ec7c33c6c004bbafe82"));
  EXPECT_EQ(CaptureIn("l4", "LATAM", "crm").owner_id(), "auth0|5f7c8ec7c33c6c004bbafe82");
  auto analytics = CaptureIn("l1", "emea", "Analytics");
  EXPECT_EQ(analytics.owner_id(), "usr_analytics");
  EXPECT_EQ(analytics.queue(), "");
  EXPECT_EQ(CaptureIn("l2", "EMEA", "crm").owner_id(), "usr_emea");
  auto unmatched = CaptureIn("l3", "APAC", "crm");
  EXPECT_EQ(unmatched.owner_id(), "");
  EXPECT_EQ(unmatched.queue(), kDefaultQueue);
  EXPECT_THAT(Types(analytics.lead_id()),
              ::testing::ElementsAre("LeadCaptured", "LeadAssigned", "OwnerNotified"));
  EXPECT_THAT(Types(unmatched.lead_id()), ::testing::ElementsAre("LeadCaptured"));
  auto lead = Get(analytics.lead_id());
  EXPECT_EQ(lead.owner_id(), "usr_analytics");
  EXPECT_EQ(lead.version(), 3);
  EXPECT_GT(lead.score().total(), 0);
  EXPECT_EQ(analytics.score().total(), lead.score().total());
}

TEST_F(LeadUseCaseTest, TeamsShareLeadsRoundRobinOrByLoad) {
  CreateRule("rr",
             TeamRule("EMEA", {"usr_1", "usr_2", "usr_3"}, crm::v1::TEAM_STRATEGY_ROUND_ROBIN));
  CreateRule("ll", TeamRule("NA", {"usr_x", "usr_y"}, crm::v1::TEAM_STRATEGY_LEAST_LOADED));
  std::vector<std::string> owners;
  for (int i = 0; i < 6; ++i)
    owners.push_back(CaptureIn(absl::StrCat("rr", i), "EMEA", "").owner_id());
  EXPECT_THAT(owners, ::testing::ElementsAre("usr_1", "usr_2", "usr_3", "usr_1", "usr_2", "usr_3"));

  auto x1 = CaptureIn("na1", "NA", "");
  auto y1 = CaptureIn("na2", "NA", "");
  EXPECT_EQ(x1.owner_id(), "usr_x");
  EXPECT_EQ(y1.owner_id(), "usr_y");
  // usr_x's lead closes: usr_x has fewer open leads and gets the next one.
  ASSERT_TRUE(Disqualify("dq-1", x1.lead_id()).ok());
  EXPECT_EQ(CaptureIn("na3", "NA", "").owner_id(), "usr_x");
  // The load is rebuilt from the store after a restart: one open lead
  // each, but usr_x holds two leads in all (one closed), usr_y one.
  Restart();
  EXPECT_EQ(CaptureIn("na4", "NA", "").owner_id(), "usr_y");
  EXPECT_EQ(CaptureIn("na5", "NA", "").owner_id(), "usr_x");
}

// Round robin takes turns within the team: leads a member got from another
// rule do not count, before or after a restart.
TEST_F(LeadUseCaseTest, RoundRobinTakesTurnsWithinTheTeamWhateverElseMembersHold) {
  CreateRule("own", OwnerRule("EMEA", "analytics", "usr_a"));
  CreateRule("team", TeamRule("EMEA", {"usr_a", "usr_b"}, crm::v1::TEAM_STRATEGY_ROUND_ROBIN));
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(CaptureIn(absl::StrCat("an", i), "EMEA", "analytics").owner_id(), "usr_a");
  }
  std::vector<std::string> owners;
  for (int i = 0; i < 3; ++i)
    owners.push_back(CaptureIn(absl::StrCat("t", i), "EMEA", "").owner_id());
  Restart();
  for (int i = 3; i < 5; ++i)
    owners.push_back(CaptureIn(absl::StrCat("t", i), "EMEA", "").owner_id());
  EXPECT_THAT(owners, ::testing::ElementsAre("usr_a", "usr_b", "usr_a", "usr_b", "usr_a"));
}

// The need is sealed before scoring: a blank one must score as none, on
// capture and on qualification, and move no score.
TEST_F(LeadUseCaseTest, ABlankNeedScoresAsNoneThoughItIsSealed) {
  auto request = Request("blank-need", "need@example.com");
  request.mutable_bant()->set_need("   ");
  auto captured = commands_->CaptureLead(request, Ctx());
  ASSERT_TRUE(captured.ok()) << captured.status();
  EXPECT_EQ(captured->score().need(), 0);

  crm::v1::QualifyLeadRequest q;
  q.set_request_id("q-blank");
  q.set_lead_id(captured->lead_id());
  q.mutable_bant()->set_need("  ");
  ASSERT_TRUE(commands_->QualifyLead(q, Ctx()).ok());
  const auto types = Types(captured->lead_id());
  EXPECT_EQ(std::count(types.begin(), types.end(), "LeadScoreChanged"), 0);

  request = Request("stated-need", "need2@example.com");
  request.mutable_bant()->set_need(" a CRM ");
  EXPECT_EQ(commands_->CaptureLead(request, Ctx())->score().need(), 10);
}

// The need is stored sealed; a rep sending back the one on file (as
// GetLead showed it) confirms the BANT, which LeadQualified then leaves
// unset. A different need is a change.
TEST_F(LeadUseCaseTest, QualifyingWithTheNeedOnFileChangesNoBant) {
  auto request = Request("known-need", "known@example.com");
  request.mutable_bant()->set_need("replace the legacy CRM");
  auto captured = commands_->CaptureLead(request, Ctx());
  ASSERT_TRUE(captured.ok()) << captured.status();
  auto qualified_bant = [&](const std::string& request_id, const std::string& lead_id,
                            const std::string& need) -> std::optional<crm::v1::LeadQualified> {
    crm::v1::QualifyLeadRequest q;
    q.set_request_id(request_id);
    q.set_lead_id(lead_id);
    q.mutable_bant()->set_need(need);
    EXPECT_TRUE(commands_->QualifyLead(q, Ctx()).ok());
    auto events = store_->events().ReadStream(LeadStream(lead_id));
    for (const auto& e : *events) {
      crm::v1::LeadQualified m;
      if (e.payload().UnpackTo(&m)) return m;
    }
    return std::nullopt;
  };
  auto same = qualified_bant("q-same", captured->lead_id(), "replace the legacy CRM");
  ASSERT_TRUE(same.has_value());
  EXPECT_FALSE(same->has_bant());

  request = Request("other-need", "other@example.com");
  request.mutable_bant()->set_need("replace the legacy CRM");
  captured = commands_->CaptureLead(request, Ctx());
  ASSERT_TRUE(captured.ok()) << captured.status();
  auto changed = qualified_bant("q-changed", captured->lead_id(), "a helpdesk");
  ASSERT_TRUE(changed.has_value());
  ASSERT_TRUE(changed->has_bant());
  crm::v1::Bant bant = changed->bant();
  pii::OpenFields(bant, store_->vault());
  EXPECT_EQ(bant.need(), "a helpdesk");
}

// A lead still being written (a capture waiting for its fsync, an import
// chunk) may fail or turn out a replay: a capture of the same person waits
// for it rather than name a lead and customer that may never exist.
TEST_F(LeadUseCaseTest, ACaptureWaitsForAnInFlightLeadOfThePersonAndNamesNoneThatFailed) {
  const auto keys = store_->ContactKeys(Request("x", "p@example.com").contact());
  ASSERT_FALSE(keys.empty());
  auto in_flight = commands_->contacts().Resolve(
      {{keys, "cus_in_flight"}}, [](const std::string&) { return std::string("lead_in_flight"); },
      commands_->contacts().NewOwner());
  ASSERT_TRUE(in_flight.ok()) << in_flight.status();
  ASSERT_FALSE(in_flight->front().claimed.empty());

  std::atomic<bool> done{false};
  absl::StatusOr<crm::v1::CaptureLeadResponse> captured;
  std::thread capture([&] {
    captured = commands_->CaptureLead(Request("c1", "p@example.com"), Ctx());
    done = true;
  });
  EXPECT_TRUE(Waiting(1));
  EXPECT_FALSE(done.load()) << "decided while the other lead was in flight";
  ContactRegistry::Hold hold;
  hold.Add(in_flight->front());
  commands_->contacts().Release(hold);  // it never landed
  capture.join();
  ASSERT_TRUE(captured.ok()) << captured.status();
  EXPECT_NE(captured->customer_id(), "cus_in_flight");
  EXPECT_TRUE(captured->duplicate_of_lead_id().empty());
  // Its contact is in the index now.
  auto again = commands_->CaptureLead(Request("c2", "p@example.com"), Ctx());
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->customer_id(), captured->customer_id());
  EXPECT_EQ(again->duplicate_of_lead_id(), captured->lead_id());
}

// A capture refused at its append (its request_id was taken by another
// request meanwhile) leaves nothing behind: not the key it minted for its
// new customer either.
TEST_F(LeadUseCaseTest, ACaptureRefusedAtItsAppendIssuesNoKey) {
  const auto in_flight = CaptureInFlight("p@example.com");
  absl::StatusOr<crm::v1::CaptureLeadResponse> late;
  // Past the retry lookup, waiting for the contact held above.
  std::thread capture([&] { late = commands_->CaptureLead(Request("r", "p@example.com"), Ctx()); });
  if (!Waiting(1)) {
    Land(in_flight);
    capture.join();
    FAIL() << "the capture never waited for the lead in flight: " << late.status();
  }
  auto first = commands_->CaptureLead(Request("r", "q@example.com"), Ctx());
  ASSERT_TRUE(first.ok()) << first.status();
  const uint64_t written = store_->events().LogSize();  // q's lead and key
  Land(in_flight);                                      // it never landed: p is a new customer
  capture.join();
  EXPECT_TRUE(absl::IsInvalidArgument(late.status())) << late.status();
  EXPECT_THAT(late.status().message(), ::testing::HasSubstr("request_id"));
  EXPECT_EQ(store_->events().LogSize(), written) << "a key for a customer that never came to be";
}

// A capture that found the person under the merged lead's customer and is
// still being written when MergeLeads runs: the merge waits for it, and a
// capture arriving during the merge waits for the merge, then finds the
// survivor.
TEST_F(LeadUseCaseTest, AMergeWaitsForLeadsJoiningTheMergedCustomer) {
  auto merged = *commands_->CaptureLead(Request("m", "m@example.com"), Ctx());
  auto survivor = *commands_->CaptureLead(Request("s", "s@example.com"), Ctx());
  const auto in_flight = CaptureInFlight("m@example.com");
  ASSERT_EQ(in_flight.customer_id, merged.customer_id());

  std::atomic<bool> merge_done{false};
  std::thread merge([&] {
    MergeInBackground(survivor.lead_id(), merged.lead_id()).join();
    merge_done = true;
  });
  if (!Waiting(1)) {
    Land(in_flight);
    merge.join();
    FAIL() << "the merge never waited for the lead joining the merged customer";
  }
  EXPECT_FALSE(merge_done.load()) << "merged while a lead was joining the merged customer";
  // The capture below comes while the merge waits, holding the customer.
  EXPECT_TRUE(commands_->contacts().retiring(merged.customer_id()));

  std::atomic<bool> capture_done{false};
  absl::StatusOr<crm::v1::CaptureLeadResponse> during;
  std::thread capture([&] {
    during = commands_->CaptureLead(Request("during", "m@example.com"), Ctx());
    capture_done = true;
  });
  EXPECT_TRUE(Waiting(2)) << "the capture waits beside the merge";
  EXPECT_FALSE(capture_done.load()) << "joined a customer being merged away";

  Land(in_flight);
  merge.join();
  capture.join();
  ASSERT_TRUE(during.ok()) << during.status();
  EXPECT_EQ(during->customer_id(), survivor.customer_id());
  EXPECT_EQ(during->duplicate_of_lead_id(), survivor.lead_id());
}

// A merge that cannot happen is refused at once, naming the field: it does
// not hold either person (making their captures wait) meanwhile.
TEST_F(LeadUseCaseTest, ABadMergeIsRefusedWithoutWaitingForLeadsInFlight) {
  auto first = *commands_->CaptureLead(Request("a", "a@example.com"), Ctx());
  auto retired = *commands_->CaptureLead(Request("b", "b@example.com"), Ctx());
  auto other = *commands_->CaptureLead(Request("c", "c@example.com"), Ctx());
  MergeInBackground(first.lead_id(), retired.lead_id()).join();
  crm::v1::MergeLeadsRequest r;
  r.set_request_id("merge-again");
  r.set_survivor_lead_id(other.lead_id());
  r.set_merged_lead_id("lead_missing");
  auto missing = commands_->MergeLeads(r, Ctx());
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(missing.status().message(), "merged_lead_id: lead lead_missing not found");
  r.set_survivor_lead_id("lead_gone");
  missing = commands_->MergeLeads(r, Ctx());
  EXPECT_EQ(missing.status().message(), "survivor_lead_id: lead lead_gone not found");

  // A capture of the first person is on its way while the already merged
  // lead is named again.
  const auto in_flight = CaptureInFlight("a@example.com");
  r.set_survivor_lead_id(other.lead_id());
  r.set_merged_lead_id(retired.lead_id());
  auto again = std::async(std::launch::async, [&] { return commands_->MergeLeads(r, Ctx()); });
  const bool answered = again.wait_for(std::chrono::seconds(10)) == std::future_status::ready;
  Land(in_flight);
  ASSERT_TRUE(answered) << "the refused merge waited for the capture in flight";
  EXPECT_EQ(again.get().status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(LeadUseCaseTest, NoLeadMergesIntoALeadOfAnErasedCustomer) {
  auto erased = *commands_->CaptureLead(Request("e", "e@example.com"), Ctx());
  auto other = *commands_->CaptureLead(Request("o", "o@example.com"), Ctx());
  ASSERT_TRUE(store_->vault().EraseCustomer(erased.customer_id(), "GDPR request", Ctx()).ok());
  crm::v1::MergeLeadsRequest r;
  r.set_request_id("merge");
  r.set_survivor_lead_id(erased.lead_id());
  r.set_merged_lead_id(other.lead_id());
  auto result = commands_->MergeLeads(r, Ctx());
  EXPECT_EQ(result.status().code(), absl::StatusCode::kFailedPrecondition) << result.status();
  EXPECT_THAT(std::string(result.status().message()), ::testing::HasSubstr("survivor_lead_id"));
  EXPECT_EQ(Types(other.lead_id()).back(), "LeadCaptured") << "the other lead is untouched";
  EXPECT_FALSE(store_->vault().Erased(other.customer_id()));
}

// A merge decided on leads as the caller read them: one changed since
// (here converted) is a version conflict to re-read, whatever the change.
TEST_F(LeadUseCaseTest, AMergeOfALeadChangedSinceItWasReadIsAVersionConflict) {
  CreateRule("r", OwnerRule("", "", "usr_owner"));
  auto survivor = *commands_->CaptureLead(Request("s", "s@example.com"), Ctx());
  auto merged = *commands_->CaptureLead(Request("m", "m@example.com"), Ctx());
  crm::v1::GetLeadRequest get;
  get.set_lead_id(merged.lead_id());
  const int64_t read_at = commands_->GetLead(get)->version();
  ASSERT_TRUE(Qualify("q", merged.lead_id()).ok());
  ASSERT_TRUE(Convert("c", merged.lead_id()).ok());
  crm::v1::MergeLeadsRequest r;
  r.set_request_id("merge");
  r.set_survivor_lead_id(survivor.lead_id());
  r.set_merged_lead_id(merged.lead_id());
  r.set_merged_expected_version(read_at);
  auto result = commands_->MergeLeads(r, Ctx());
  EXPECT_EQ(result.status().code(), absl::StatusCode::kAborted) << result.status();
  // Read again, the lead is what it is: converted, not mergeable.
  r.set_merged_expected_version(commands_->GetLead(get)->version());
  EXPECT_EQ(commands_->MergeLeads(r, Ctx()).status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(LeadUseCaseTest, AnErasedLeadIsNotMergedAndItsContactMatchesNobody) {
  auto erased = *commands_->CaptureLead(Request("e", "e@example.com"), Ctx());
  auto other = *commands_->CaptureLead(Request("o", "o@example.com"), Ctx());
  ASSERT_TRUE(store_->vault().EraseCustomer(erased.customer_id(), "GDPR request", Ctx()).ok());
  crm::v1::MergeLeadsRequest r;
  r.set_request_id("merge");
  r.set_survivor_lead_id(other.lead_id());
  r.set_merged_lead_id(erased.lead_id());
  auto result = commands_->MergeLeads(r, Ctx());
  EXPECT_EQ(result.status().code(), absl::StatusCode::kFailedPrecondition) << result.status();
  EXPECT_THAT(std::string(result.status().message()), ::testing::HasSubstr("merged_lead_id"));
  EXPECT_EQ(Types(other.lead_id()).back(), "LeadCaptured") << "the survivor is untouched";
  // The person comes back: a new customer, not the other lead's.
  auto back = commands_->CaptureLead(Request("back", "e@example.com"), Ctx());
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_FALSE(back->duplicate());
  EXPECT_NE(back->customer_id(), other.customer_id());
  EXPECT_NE(back->customer_id(), erased.customer_id());
}

TEST_F(LeadUseCaseTest, QualifyConvertAndConvertAgainFails) {
  CreateRule("r", OwnerRule("", "", "usr_owner"));
  auto captured = CaptureIn("c1", "EMEA", "crm");
  auto stale = Qualify("q-stale", captured.lead_id(), /*expected_version=*/1);
  EXPECT_EQ(stale.status().code(), absl::StatusCode::kAborted) << stale.status();
  auto qualified = Qualify("q-1", captured.lead_id(), /*expected_version=*/3);
  ASSERT_TRUE(qualified.ok()) << qualified.status();
  EXPECT_EQ(qualified->status(), crm::v1::LEAD_STATUS_QUALIFIED);

  auto converted = Convert("conv-1", captured.lead_id());
  ASSERT_TRUE(converted.ok()) << converted.status();
  EXPECT_EQ(converted->lead().status(), crm::v1::LEAD_STATUS_CONVERTED);
  EXPECT_FALSE(converted->conversion_event_id().empty());
  const uint64_t log_size = store_->events().LogSize();
  // The same request again: the first result, nothing appended.
  auto retried = Convert("conv-1", captured.lead_id());
  ASSERT_TRUE(retried.ok());
  EXPECT_EQ(retried->conversion_event_id(), converted->conversion_event_id());
  EXPECT_EQ(store_->events().LogSize(), log_size);
  // A new request to convert again is refused.
  EXPECT_EQ(Convert("conv-2", captured.lead_id()).status().code(),
            absl::StatusCode::kFailedPrecondition);

  auto events = *store_->events().ReadStream(LeadStream(captured.lead_id()));
  const auto& last = events.back();
  ASSERT_EQ(last.type(), "LeadConverted");
  EXPECT_EQ(last.event_id(), converted->conversion_event_id());
  EXPECT_EQ(last.customer_id(), captured.customer_id());
  crm::v1::LeadConverted payload;
  ASSERT_TRUE(last.payload().UnpackTo(&payload));
  EXPECT_EQ(payload.owner_id(), "usr_owner");
  EXPECT_TRUE(pii::IsSealed(payload.contact().email())) << "published encrypted";
  EXPECT_EQ(Opened(*store_, payload.contact()).email(), "c1@example.com");
  EXPECT_EQ(Convert("conv-3", "lead_missing").status().code(), absl::StatusCode::kNotFound);
}

// A call stamped when it arrived that took the lead's lock after a later
// one: its events are stamped after those it follows, so consumers keeping
// the latest value by time end where the lead did.
TEST_F(LeadUseCaseTest, ACallThatWaitedForTheLeadIsStampedAfterTheChangeItFollows) {
  auto captured = CaptureIn("w1", "EMEA", "crm");
  auto other = CaptureIn("w2", "EMEA", "crm");
  ASSERT_TRUE(Qualify("q-w", captured.lead_id()).ok());
  crm::v1::DisqualifyLeadRequest d;
  d.set_request_id("dq-w");
  d.set_lead_id(captured.lead_id());
  d.set_reason("no budget");
  EventContext waited = Ctx();
  waited.occurred_at -= absl::Minutes(1);
  auto disqualified = commands_->DisqualifyLead(d, waited);
  ASSERT_TRUE(disqualified.ok()) << disqualified.status();
  crm::v1::MergeLeadsRequest merge;
  merge.set_request_id("merge-w");
  merge.set_survivor_lead_id(other.lead_id());
  merge.set_merged_lead_id(captured.lead_id());
  ASSERT_TRUE(commands_->MergeLeads(merge, waited).ok());

  for (const auto& lead : {captured.lead_id(), other.lead_id()}) {
    const auto events = *store_->events().ReadStream(LeadStream(lead));
    ASSERT_GE(events.size(), 2u);
    for (size_t i = 1; i < events.size(); ++i) {
      EXPECT_GT(FromProtoTimestamp(events[i].occurred_at()),
                FromProtoTimestamp(events[i - 1].occurred_at()))
          << lead << ": " << events[i].type() << " after " << events[i - 1].type();
    }
  }
  const auto events = *store_->events().ReadStream(LeadStream(other.lead_id()));
  EXPECT_GT(FromProtoTimestamp(events.back().occurred_at()),
            FromProtoTimestamp(disqualified->updated_at()))
      << "the merge follows both leads' changes";
}

TEST_F(LeadUseCaseTest, ActivityRescoresAndListsFollowTheScore) {
  auto a = CaptureIn("a", "EMEA", "crm");
  auto b = CaptureIn("b", "EMEA", "crm");
  crm::v1::RecordLeadActivityRequest activity;
  activity.set_request_id("act-1");
  activity.set_lead_id(b.lead_id());
  activity.set_type(crm::v1::LEAD_ACTIVITY_TYPE_MEETING_HELD);
  auto after = commands_->RecordLeadActivity(activity, Ctx());
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ(after->score().total(), b.score().total() + 8);
  EXPECT_THAT(Types(b.lead_id()),
              ::testing::ElementsAre("LeadCaptured", "LeadActivityRecorded", "LeadScoreChanged"));
  // Retried: same result, no second activity.
  EXPECT_EQ(commands_->RecordLeadActivity(activity, Ctx())->activity_count(), 1);

  crm::v1::ListLeadsRequest by_score;
  by_score.set_sort(crm::v1::LEAD_SORT_SCORE_DESC);
  auto list = List(by_score);
  ASSERT_EQ(list.leads_size(), 2);  // the old score entry of b is gone
  EXPECT_EQ(list.leads(0).lead_id(), b.lead_id());
  EXPECT_EQ(list.leads(0).score(), after->score().total());
  EXPECT_EQ(list.leads(1).lead_id(), a.lead_id());
  by_score.set_min_score(after->score().total());
  list = List(by_score);
  ASSERT_EQ(list.leads_size(), 1);
  EXPECT_EQ(list.leads(0).lead_id(), b.lead_id());
}

TEST_F(LeadUseCaseTest, ListFiltersByOwnerStatusSourceRegionAndPages) {
  CreateRule("r", OwnerRule("EMEA", "", "usr_emea"));
  std::vector<std::string> emea;
  for (int i = 0; i < 5; ++i) emea.push_back(CaptureIn(absl::StrCat("e", i), "EMEA", "").lead_id());
  auto na = CaptureIn("n0", "NA", "");
  ASSERT_TRUE(Disqualify("dq", emea[0]).ok());
  auto phone = Request("p0", "", "+14155550100");
  phone.set_channel(crm::v1::LEAD_CHANNEL_STORE);
  auto store_lead = *commands_->CaptureLead(phone, Ctx());

  crm::v1::ListLeadsRequest r;
  r.set_owner_id("usr_emea");
  EXPECT_EQ(List(r).leads_size(), 5);
  r.add_statuses(crm::v1::LEAD_STATUS_NEW);
  EXPECT_EQ(List(r).leads_size(), 4);
  r.set_sort(crm::v1::LEAD_SORT_SCORE_DESC);  // the owner index
  EXPECT_EQ(List(r).leads_size(), 4);
  r.Clear();
  r.set_queue(kDefaultQueue);
  auto queued = List(r);
  ASSERT_EQ(queued.leads_size(), 2);
  r.Clear();
  r.set_channel(crm::v1::LEAD_CHANNEL_STORE);
  ASSERT_EQ(List(r).leads_size(), 1);
  EXPECT_EQ(List(r).leads(0).lead_id(), store_lead.lead_id());
  r.Clear();
  r.set_region("na");
  ASSERT_EQ(List(r).leads_size(), 1);
  EXPECT_EQ(List(r).leads(0).lead_id(), na.lead_id());
  r.set_region(" NA ");  // trimmed as captured regions are, any case
  ASSERT_EQ(List(r).leads_size(), 1);
  EXPECT_EQ(List(r).leads(0).lead_id(), na.lead_id());

  // Pages of two in capture order cover every lead once.
  r.Clear();
  r.mutable_page()->set_page_size(2);
  std::vector<std::string> seen;
  for (int pages = 0; pages < 10; ++pages) {
    auto page = List(r);
    for (const auto& l : page.leads()) seen.push_back(l.lead_id());
    if (page.next_page_token().empty()) break;
    r.mutable_page()->set_page_token(page.next_page_token());
  }
  EXPECT_EQ(seen.size(), 7u);
  EXPECT_TRUE(std::is_sorted(seen.begin(), seen.end()));

  crm::v1::ListLeadsRequest bad;
  bad.set_owner_id("usr_emea");
  bad.set_queue(kDefaultQueue);
  EXPECT_EQ(commands_->ListLeads(bad).status().code(), absl::StatusCode::kInvalidArgument);
  bad.Clear();
  bad.set_min_score(50);
  bad.set_max_score(10);
  EXPECT_EQ(commands_->ListLeads(bad).status().message().substr(0, 10), "min_score:");
  bad.Clear();
  bad.mutable_page()->set_page_token("not-a-token!");
  EXPECT_EQ(commands_->ListLeads(bad).status().code(), absl::StatusCode::kInvalidArgument);
  bad.Clear();
  bad.add_statuses(crm::v1::LEAD_STATUS_NEW);
  bad.add_statuses(static_cast<crm::v1::LeadStatus>(99));
  EXPECT_EQ(commands_->ListLeads(bad).status().message().substr(0, 12), "statuses[1]:");
  bad.Clear();
  for (int i = 0; i < 1000; ++i) bad.add_statuses(crm::v1::LEAD_STATUS_NEW);
  EXPECT_EQ(commands_->ListLeads(bad).status().message().substr(0, 9), "statuses:");
}

TEST_F(LeadUseCaseTest, ManualAssignmentNotifiesTheNewOwner) {
  auto lead = CaptureIn("m1", "APAC", "");
  crm::v1::AssignLeadRequest assign;
  assign.set_request_id("assign-1");
  assign.set_lead_id(lead.lead_id());
  assign.set_owner_id("usr_apac");
  auto assigned = commands_->AssignLead(assign, Ctx());
  ASSERT_TRUE(assigned.ok()) << assigned.status();
  EXPECT_EQ(assigned->owner_id(), "usr_apac");
  EXPECT_EQ(assigned->queue(), "");
  EXPECT_THAT(Types(lead.lead_id()),
              ::testing::ElementsAre("LeadCaptured", "LeadAssigned", "OwnerNotified"));
  crm::v1::ListLeadsRequest mine;
  mine.set_owner_id("usr_apac");
  EXPECT_EQ(List(mine).leads_size(), 1);
  mine.set_owner_id("");
  mine.set_queue(kDefaultQueue);
  EXPECT_EQ(List(mine).leads_size(), 0);
}

// Contacts the index points at a lead merged before, or at another lead of
// the merged customer, find the last survivor too.
TEST_F(LeadUseCaseTest, MergesRepointEveryContactOfTheMergedPerson) {
  auto merge = [&](const crm::v1::CaptureLeadResponse& survivor,
                   const crm::v1::CaptureLeadResponse& merged, const std::string& id) {
    crm::v1::MergeLeadsRequest r;
    r.set_request_id(id);
    r.set_survivor_lead_id(survivor.lead_id());
    r.set_merged_lead_id(merged.lead_id());
    auto result = commands_->MergeLeads(r, Ctx());
    ASSERT_TRUE(result.ok()) << result.status();
  };
  // A chain: b into a, then a into c.
  auto b = *commands_->CaptureLead(Request("b", "b@example.com"), Ctx());
  auto a = *commands_->CaptureLead(Request("a", "a@example.com"), Ctx());
  auto c = *commands_->CaptureLead(Request("c", "c@example.com"), Ctx());
  merge(a, b, "merge-ba");
  merge(c, a, "merge-ac");
  for (const auto* email : {"a@example.com", "b@example.com"}) {
    auto again = *commands_->CaptureLead(Request(absl::StrCat("again-", email), email), Ctx());
    EXPECT_EQ(again.customer_id(), c.customer_id()) << email;
    EXPECT_EQ(again.duplicate_of_lead_id(), c.lead_id()) << email;
  }

  // A duplicate lead of a person merged away: the person's first lead
  // still holds the email in the index.
  auto m1 = *commands_->CaptureLead(Request("m1", "p@example.com"), Ctx());
  auto m2 = *commands_->CaptureLead(Request("m2", "p@example.com", "+14155550100"), Ctx());
  ASSERT_EQ(m2.customer_id(), m1.customer_id());
  auto s = *commands_->CaptureLead(Request("s", "s@example.com"), Ctx());
  merge(s, m2, "merge-m2s");
  auto by_email = *commands_->CaptureLead(Request("by-email", "p@example.com"), Ctx());
  auto by_phone =
      *commands_->CaptureLead(Request("by-phone", "q@example.com", "+14155550100"), Ctx());
  EXPECT_EQ(by_email.customer_id(), s.customer_id());
  EXPECT_EQ(by_phone.customer_id(), s.customer_id());

  // A phone first seen on a duplicate of the merged lead: its row names the
  // merged lead, which the merge does not read, yet finds the survivor.
  auto f = *commands_->CaptureLead(Request("f", "f@example.com"), Ctx());
  auto dup = *commands_->CaptureLead(Request("dup", "f@example.com", "+14155550111"), Ctx());
  ASSERT_EQ(dup.duplicate_of_lead_id(), f.lead_id());
  auto t = *commands_->CaptureLead(Request("t", "t@example.com"), Ctx());
  merge(t, f, "merge-ft");
  auto by_dup_phone = *commands_->CaptureLead(Request("by-dup-phone", "", "+14155550111"), Ctx());
  EXPECT_EQ(by_dup_phone.customer_id(), t.customer_id());
  EXPECT_TRUE(by_dup_phone.duplicate());
  // A duplicate of the survivor, not of the merged lead (which takes no
  // commands), and so is a new key that comes with the phone.
  EXPECT_EQ(by_dup_phone.duplicate_of_lead_id(), t.lead_id());
  auto new_email =
      *commands_->CaptureLead(Request("new-email", "e2@example.com", "+14155550111"), Ctx());
  EXPECT_EQ(new_email.duplicate_of_lead_id(), t.lead_id());
  auto by_new_email = *commands_->CaptureLead(Request("by-new-email", "e2@example.com"), Ctx());
  EXPECT_EQ(by_new_email.duplicate_of_lead_id(), t.lead_id());

  // The same within one customer: a lead merged into its own duplicate.
  auto g = *commands_->CaptureLead(Request("g", "g@example.com"), Ctx());
  auto g_dup = *commands_->CaptureLead(Request("g-dup", "g@example.com", "+14155550122"), Ctx());
  ASSERT_EQ(g_dup.duplicate_of_lead_id(), g.lead_id());
  merge(g_dup, g, "merge-g-into-dup");
  auto by_g_phone = *commands_->CaptureLead(Request("by-g-phone", "", "+14155550122"), Ctx());
  EXPECT_EQ(by_g_phone.customer_id(), g.customer_id());
  EXPECT_EQ(by_g_phone.duplicate_of_lead_id(), g_dup.lead_id());

  // A later lead merged into another later lead of the person: the
  // person's first lead stays the one the next capture names.
  auto h = *commands_->CaptureLead(Request("h", "h@example.com"), Ctx());
  auto h_kept = *commands_->CaptureLead(Request("h-kept", "h@example.com"), Ctx());
  auto h_gone = *commands_->CaptureLead(Request("h-gone", "h@example.com"), Ctx());
  ASSERT_EQ(h_gone.duplicate_of_lead_id(), h.lead_id());
  merge(h_kept, h_gone, "merge-h-later-leads");
  auto by_h_email = *commands_->CaptureLead(Request("by-h-email", "h@example.com"), Ctx());
  EXPECT_EQ(by_h_email.customer_id(), h.customer_id());
  EXPECT_EQ(by_h_email.duplicate_of_lead_id(), h.lead_id());
}

// Two leads of one person under customer Y; one of them is merged into a
// lead of customer X. Converting the other opens X's account, not Y's
// (which the merge retired): one person, one account in sales.
// A conversion arriving while a merge retires the lead's customer waits for
// the merge and converts for the survivor: converted before the merge
// landed, its LeadConverted came after LeadsMerged naming the retired id.
TEST_F(LeadUseCaseTest, AConversionDuringAMergeOfItsCustomerConvertsForTheSurvivor) {
  CreateRule("r1", OwnerRule("", "", "usr_owner"));
  auto lead = *commands_->CaptureLead(Request("a", "ada@example.com"), Ctx());
  auto other = *commands_->CaptureLead(Request("b", "ada@example.com"), Ctx());
  auto target = *commands_->CaptureLead(Request("t", "lovelace@engines.example"), Ctx());
  ASSERT_TRUE(Qualify("q", lead.lead_id()).ok());
  // A capture of the person in flight holds the merge at its start.
  const auto in_flight = CaptureInFlight("ada@example.com");
  std::thread merge = MergeInBackground(target.lead_id(), other.lead_id());
  for (const absl::Time give_up = absl::Now() + absl::Seconds(30);
       !commands_->contacts().retiring(lead.customer_id()) && absl::Now() < give_up;) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  if (!commands_->contacts().retiring(lead.customer_id())) {
    Land(in_flight);
    merge.join();
    FAIL() << "the merge never began retiring the customer";
  }

  std::atomic<bool> convert_done{false};
  absl::StatusOr<crm::v1::ConvertLeadResponse> converted;
  std::thread convert([&] {
    converted = Convert("c", lead.lead_id());
    convert_done = true;
  });
  EXPECT_TRUE(Waiting(2)) << "the conversion waits beside the merge";
  EXPECT_FALSE(convert_done.load()) << "converted under a customer being merged away";

  Land(in_flight);
  merge.join();
  convert.join();
  ASSERT_TRUE(converted.ok()) << converted.status();
  EXPECT_EQ(converted->lead().converted_customer_id(), target.customer_id());
  const auto events = *store_->events().ReadStream(LeadStream(lead.lead_id()));
  crm::v1::LeadConverted payload;
  ASSERT_TRUE(events.back().payload().UnpackTo(&payload));
  EXPECT_EQ(payload.customer_id(), target.customer_id());
}

TEST_F(LeadUseCaseTest, ALeadOfAMergedAwayCustomerConvertsForTheSurvivingCustomer) {
  CreateRule("r1", OwnerRule("", "", "usr_owner"));
  auto first = *commands_->CaptureLead(Request("y1", "ada@example.com"), Ctx());
  auto second = *commands_->CaptureLead(Request("y2", "ada@example.com", "+442079460958"), Ctx());
  ASSERT_EQ(second.customer_id(), first.customer_id());
  auto survivor = *commands_->CaptureLead(Request("x1", "lovelace@engines.example"), Ctx());
  ASSERT_NE(survivor.customer_id(), first.customer_id());
  crm::v1::MergeLeadsRequest merge;
  merge.set_request_id("merge-1");
  merge.set_survivor_lead_id(survivor.lead_id());
  merge.set_merged_lead_id(first.lead_id());
  ASSERT_TRUE(commands_->MergeLeads(merge, Ctx()).ok());

  ASSERT_TRUE(Qualify("q-2", second.lead_id()).ok());
  auto converted = Convert("c-2", second.lead_id());
  ASSERT_TRUE(converted.ok()) << converted.status();
  const auto events = *store_->events().ReadStream(LeadStream(second.lead_id()));
  crm::v1::LeadConverted payload;
  ASSERT_TRUE(events.back().payload().UnpackTo(&payload));
  EXPECT_EQ(payload.customer_id(), survivor.customer_id());
  EXPECT_EQ(converted->lead().converted_customer_id(), survivor.customer_id());
  EXPECT_EQ(Get(second.lead_id()).converted_customer_id(), survivor.customer_id());
  EXPECT_EQ(LeadStore::Summarize(Get(second.lead_id())).converted_customer_id(),
            survivor.customer_id());
  // Every event of the lead keeps its partition key: one keyed by the
  // survivor would land on another partition, and a consumer reading that
  // one first would skip the earlier versions as applied.
  auto absorbed = *commands_->CaptureLead(Request("z1", "babbage@engines.example"), Ctx());
  merge.set_request_id("merge-2");
  merge.set_survivor_lead_id(second.lead_id());
  merge.set_merged_lead_id(absorbed.lead_id());
  ASSERT_TRUE(commands_->MergeLeads(merge, Ctx()).ok());
  const auto all = *store_->events().ReadStream(LeadStream(second.lead_id()));
  ASSERT_EQ(all.back().type(), "LeadsMerged");
  for (const auto& e : all) EXPECT_EQ(e.customer_id(), second.customer_id()) << e.type();

  // After a restart too: the vault learns merges from the log.
  Restart();
  auto third = *commands_->CaptureLead(Request("y3", "", "+442079460958"), Ctx());
  EXPECT_EQ(third.customer_id(), survivor.customer_id());
}

// A person's customer retired twice (Y into X, then X into Z): the rows of
// the person's contacts still name X or Y, and lead to a home under Z, so a
// rep's conversion of the person's later lead is not refused as out of
// reach.
TEST_F(LeadUseCaseTest, ALeadRetiredTwiceStillFindsItsSurvivingHome) {
  auto capture = [&](const std::string& id, const std::string& email,
                     const std::string& phone = "") {
    return *commands_->CaptureLead(Request(id, email, phone), Ctx());
  };
  auto merge = [&](const std::string& id, const std::string& survivor, const std::string& merged) {
    crm::v1::MergeLeadsRequest r;
    r.set_request_id(id);
    r.set_survivor_lead_id(survivor);
    r.set_merged_lead_id(merged);
    ASSERT_TRUE(commands_->MergeLeads(r, Ctx()).ok());
  };
  auto y1 = capture("y1", "ada@example.com");
  auto y2 = capture("y2", "ada@example.com", "+442079460958");
  auto x1 = capture("x1", "lovelace@engines.example");
  auto x2 = capture("x2", "lovelace@engines.example", "+442079460959");
  auto z1 = capture("z1", "babbage@engines.example");
  merge("m1", x1.lead_id(), y1.lead_id());
  merge("m2", z1.lead_id(), x2.lead_id());
  ASSERT_EQ(store_->vault().SurvivorOf(y2.customer_id()), z1.customer_id());
  // y2 -> x1 (whose customer X is Z's now) -> z1, whose customer stands.
  auto home = commands_->SurvivingHomeOf(Get(y2.lead_id()));
  ASSERT_TRUE(home.ok()) << home.status();
  ASSERT_TRUE(home->has_value());
  EXPECT_EQ(**home, x1.lead_id());
  home = commands_->SurvivingHomeOf(Get(x1.lead_id()));
  ASSERT_TRUE(home.ok() && home->has_value());
  EXPECT_EQ(**home, z1.lead_id());
  home = commands_->SurvivingHomeOf(Get(z1.lead_id()));
  ASSERT_TRUE(home.ok());
  EXPECT_FALSE(home->has_value()) << "Z stands";
}

// Merges of one person's leads in both directions: the second merge finds
// both leads standing for one customer already and links nothing, so every
// contact of the person still finds the one surviving customer.
TEST_F(LeadUseCaseTest, MergingBackIntoALeadOfARetiredCustomerKeepsOneSurvivor) {
  CreateRule("r1", OwnerRule("", "", "usr_owner"));
  auto a = *commands_->CaptureLead(Request("a", "ada@example.com"), Ctx());
  auto a2 = *commands_->CaptureLead(Request("a2", "ada@example.com", "+442079460958"), Ctx());
  auto b = *commands_->CaptureLead(Request("b", "lovelace@engines.example"), Ctx());
  // A duplicate of b with a phone of its own: the merges leave its index row
  // naming b's customer.
  auto b2 =
      *commands_->CaptureLead(Request("b2", "lovelace@engines.example", "+14155550100"), Ctx());
  ASSERT_EQ(a2.customer_id(), a.customer_id());
  ASSERT_EQ(b2.customer_id(), b.customer_id());
  crm::v1::MergeLeadsRequest merge;
  merge.set_request_id("merge-1");
  merge.set_survivor_lead_id(b.lead_id());
  merge.set_merged_lead_id(a.lead_id());
  ASSERT_TRUE(commands_->MergeLeads(merge, Ctx()).ok());
  merge.set_request_id("merge-2");
  merge.set_survivor_lead_id(a2.lead_id());
  merge.set_merged_lead_id(b.lead_id());
  auto second = commands_->MergeLeads(merge, Ctx());
  ASSERT_TRUE(second.ok()) << second.status();
  // The events say so too: analytics links nothing the other way round.
  crm::v1::LeadsMerged absorbed;
  const auto a2_events = *store_->events().ReadStream(LeadStream(a2.lead_id()));
  for (const auto& e : a2_events) {
    if (e.payload().Is<crm::v1::LeadsMerged>()) {
      ASSERT_TRUE(e.payload().UnpackTo(&absorbed));
    }
  }
  EXPECT_EQ(absorbed.survivor_customer_id(), b.customer_id());
  EXPECT_EQ(absorbed.merged_customer_id(), b.customer_id());
  crm::v1::LeadMergedInto retired;
  ASSERT_TRUE(
      store_->events().ReadStream(LeadStream(b.lead_id()))->back().payload().UnpackTo(&retired));
  EXPECT_EQ(retired.survivor_customer_id(), b.customer_id());

  for (int round = 0; round < 2; ++round) {
    auto by_a =
        *commands_->CaptureLead(Request(absl::StrCat("n1-", round), "ada@example.com"), Ctx());
    auto by_b = *commands_->CaptureLead(
        Request(absl::StrCat("n2-", round), "lovelace@engines.example"), Ctx());
    auto by_phone =
        *commands_->CaptureLead(Request(absl::StrCat("n3-", round), "", "+442079460958"), Ctx());
    EXPECT_EQ(by_a.customer_id(), b.customer_id()) << "round " << round;
    EXPECT_EQ(by_b.customer_id(), b.customer_id()) << "round " << round;
    EXPECT_EQ(by_phone.customer_id(), b.customer_id()) << "round " << round;
    auto by_b2 =
        *commands_->CaptureLead(Request(absl::StrCat("n4-", round), "", "+14155550100"), Ctx());
    EXPECT_EQ(by_b2.customer_id(), b.customer_id()) << "round " << round;
    Restart();  // the vault learns the links from the log
  }
  // Converted, the person's surviving lead opens the account for that customer.
  ASSERT_TRUE(Qualify("q-a2", a2.lead_id()).ok());
  auto converted = Convert("c-a2", a2.lead_id());
  ASSERT_TRUE(converted.ok()) << converted.status();
  EXPECT_EQ(converted->lead().converted_customer_id(), b.customer_id());
}

// Two merges the opposite way round (a lead of each person into one of the
// other's) must not each retire one customer: they would link the two both
// ways. A merge holds both customers at once; the second waits.
TEST_F(LeadUseCaseTest, AMergeHoldsBothCustomersSoOppositeMergesTakeTurns) {
  auto& contacts = commands_->contacts();
  std::optional<ContactRegistry::Retirement> first(contacts.Retire("cus_a", "cus_b"));
  std::atomic<bool> second_held{false};
  std::thread opposite([&] {
    auto second = contacts.Retire("cus_b", "cus_a");
    second_held = true;
  });
  EXPECT_TRUE(Waiting(1));
  EXPECT_FALSE(second_held.load()) << "both merges held a customer of the other";
  EXPECT_TRUE(contacts.retiring("cus_b")) << "the survivor's customer is held too";
  first.reset();
  opposite.join();
  EXPECT_TRUE(second_held.load());
  EXPECT_FALSE(contacts.retiring("cus_a"));
  EXPECT_FALSE(contacts.retiring("cus_b"));
}

// A log from before events were stamped after the change they follow may
// hold one stamped earlier: the history follows the lead's versions, not
// the stamps.
TEST_F(LeadUseCaseTest, HistoryFollowsTheLeadsVersionsWhateverTheirStamps) {
  auto lead = *commands_->CaptureLead(Request("a", "ada@example.com"), Ctx());
  const std::string stream = LeadStream(lead.lead_id());
  auto state = store_->events().LoadState(stream);
  ASSERT_TRUE(state.ok()) << state.status();
  auto stored = store_->events().ReadStream(stream);
  ASSERT_TRUE(stored.ok() && !stored->empty()) << stored.status();
  crm::v1::EventEnvelope early = stored->back();
  early.set_event_id("evt-stamped-early");
  *early.mutable_occurred_at() =
      ToProtoTimestamp(FromProtoTimestamp(stored->front().occurred_at()) - absl::Hours(1));
  AppendRequest append;
  append.stream = stream;
  append.expected_version = state->version;
  append.events = {early};
  append.state = state->state;
  ASSERT_TRUE(store_->events().Append(std::move(append)).ok());
  auto other = *commands_->CaptureLead(Request("b", "bob@example.com"), Ctx());
  crm::v1::MergeLeadsRequest merge;
  merge.set_request_id("merge-b");
  merge.set_survivor_lead_id(lead.lead_id());
  merge.set_merged_lead_id(other.lead_id());
  ASSERT_TRUE(commands_->MergeLeads(merge, Ctx()).ok());

  crm::v1::GetLeadHistoryRequest history;
  history.set_lead_id(lead.lead_id());
  auto h = commands_->GetLeadHistory(history);
  ASSERT_TRUE(h.ok()) << h.status();
  absl::flat_hash_map<std::string, int64_t> last_version;
  for (const auto& e : h->events()) {
    EXPECT_GT(e.stream_version(), last_version[e.stream()]) << e.stream() << " " << e.type();
    last_version[e.stream()] = e.stream_version();
  }
  EXPECT_EQ(h->events(0).type(), "LeadCaptured");
}

// A merge landing between the read of the survivor's state and of its
// events: the history shows the merge, so it shows the merged lead's events.
TEST_F(LeadUseCaseTest, AHistoryShowingAMergeHoldsTheMergedLeadsEvents) {
  auto survivor = *commands_->CaptureLead(Request("s", "s@example.com"), Ctx());
  auto merged = *commands_->CaptureLead(Request("m", "m@example.com"), Ctx());
  const std::string key = LeadStream(survivor.lead_id());
  auto& db = store_->events().db();
  auto before = db.Get(EventStore::kStateFamily, key);
  ASSERT_TRUE(before.ok() && before->has_value());
  crm::v1::MergeLeadsRequest merge;
  merge.set_request_id("merge");
  merge.set_survivor_lead_id(survivor.lead_id());
  merge.set_merged_lead_id(merged.lead_id());
  ASSERT_TRUE(commands_->MergeLeads(merge, Ctx()).ok());
  // The state as the history read it, just before the merge was written.
  ASSERT_TRUE(db.raw()
                  ->Put(rocksdb::WriteOptions(), db.Family(EventStore::kStateFamily), key, **before)
                  .ok());

  EXPECT_TRUE(HistoryStreams(survivor.lead_id()).contains(LeadStream(merged.lead_id())));
}

// A lead that absorbed many large ones has a history of many megabytes.
TEST_F(LeadUseCaseTest, HistoryPagesStopShortOfTheReplyBound) {
  auto big = [&](const std::string& id) {
    auto r = Request(id, absl::StrCat(id, "@example.com"));
    for (int a = 0; a < 50; ++a)
      (*r.mutable_attributes())[absl::StrCat("k", a)] = std::string(1000, 'v');
    auto captured = commands_->CaptureLead(r, Ctx());
    EXPECT_TRUE(captured.ok()) << captured.status();
    return captured.value_or(crm::v1::CaptureLeadResponse()).lead_id();
  };
  const std::string survivor = big("s");
  constexpr int kMerged = 60;
  for (int i = 0; i < kMerged; ++i) {
    crm::v1::MergeLeadsRequest merge;
    merge.set_request_id(absl::StrCat("merge-", i));
    merge.set_survivor_lead_id(survivor);
    merge.set_merged_lead_id(big(absl::StrCat("m", i)));
    ASSERT_TRUE(commands_->MergeLeads(merge, Ctx()).ok());
  }
  crm::v1::GetLeadHistoryRequest history;
  history.set_lead_id(survivor);
  history.mutable_page()->set_page_size(1000);
  std::set<std::string> seen;
  size_t events = 0;
  int pages = 0;
  do {
    auto page = commands_->GetLeadHistory(history);
    ASSERT_TRUE(page.ok()) << page.status();
    EXPECT_LE(page->ByteSizeLong(), kMaxReplyBytes);
    for (const auto& e : page->events())
      seen.insert(absl::StrCat(e.stream(), "/", e.stream_version()));
    events += page->events_size();
    history.mutable_page()->set_page_token(page->next_page_token());
    ++pages;
  } while (!history.page().page_token().empty() && pages < 20);
  EXPECT_GT(pages, 1);
  EXPECT_EQ(seen.size(), events) << "no event twice";
  size_t logged = 0;
  const crm::v1::Lead lead = Get(survivor);
  for (const std::string& merged : lead.merged_lead_ids()) logged += Types(merged).size();
  EXPECT_EQ(events, logged + Types(survivor).size());
}

// A lead that absorbed none is paged as ranges of its stream: every event
// once, in order, and no token after the last page, even one that ends
// exactly at the end.
TEST_F(LeadUseCaseTest, AHistoryWithoutMergesPagesInOrderEveryEventOnce) {
  auto lead = *commands_->CaptureLead(Request("h", "history@example.com"), Ctx());
  for (int i = 0; i < 4; ++i) {
    crm::v1::RecordLeadActivityRequest activity;
    activity.set_request_id(absl::StrCat("act-", i));
    activity.set_lead_id(lead.lead_id());
    activity.set_type(crm::v1::LEAD_ACTIVITY_TYPE_WEB_VISIT);
    ASSERT_TRUE(commands_->RecordLeadActivity(activity, Ctx()).ok());
  }
  const size_t logged = Types(lead.lead_id()).size();
  for (int page_size : {1, 3, static_cast<int>(logged)}) {
    crm::v1::GetLeadHistoryRequest history;
    history.set_lead_id(lead.lead_id());
    history.mutable_page()->set_page_size(page_size);
    std::vector<int64_t> versions;
    int pages = 0;
    do {
      auto page = commands_->GetLeadHistory(history);
      ASSERT_TRUE(page.ok()) << page.status();
      for (const auto& e : page->events()) versions.push_back(e.stream_version());
      history.mutable_page()->set_page_token(page->next_page_token());
      ++pages;
    } while (!history.page().page_token().empty() && pages < 20);
    std::vector<int64_t> expected(logged);
    std::iota(expected.begin(), expected.end(), 1);
    EXPECT_EQ(versions, expected) << page_size;
    EXPECT_EQ(pages, (static_cast<int>(logged) + page_size - 1) / page_size) << page_size;
  }
}

// A page token's fingerprint is no secret, so a client can seal any
// offset: one past any list is refused, not added to (2^63 - 1 + 1).
TEST_F(LeadUseCaseTest, AHistoryTokenWithAnOffsetPastAnyListIsRefused) {
  auto lead = *commands_->CaptureLead(Request("h", "crafted@example.com"), Ctx());
  crm::v1::RecordLeadActivityRequest activity;
  activity.set_request_id("act");
  activity.set_lead_id(lead.lead_id());
  activity.set_type(crm::v1::LEAD_ACTIVITY_TYPE_WEB_VISIT);
  ASSERT_TRUE(commands_->RecordLeadActivity(activity, Ctx()).ok());
  crm::v1::GetLeadHistoryRequest history;
  history.set_lead_id(lead.lead_id());
  for (const char* position : {"9223372036854775807", "18446744073709551615@0"}) {
    history.mutable_page()->set_page_token(SealPageToken(history, position));
    auto page = commands_->GetLeadHistory(history);
    EXPECT_EQ(page.status().code(), absl::StatusCode::kInvalidArgument) << position;
    EXPECT_EQ(page.status().message().rfind("page.page_token:", 0), 0u) << page.status();
  }
  history.mutable_page()->set_page_token(SealPageToken(history, "1@0"));
  auto page = commands_->GetLeadHistory(history);
  ASSERT_TRUE(page.ok()) << page.status();
  ASSERT_GT(page->events_size(), 0);
  EXPECT_EQ(page->events(0).stream_version(), 2) << "the offset is the events before the page";
}

// A merge between pages puts the merged lead's older events before the
// offset: the next page would repeat what the reader has seen.
TEST_F(LeadUseCaseTest, HistoryPagingEndsWhenALeadIsMergedInBetween) {
  EventContext earlier = Ctx();
  earlier.occurred_at -= absl::Hours(1);
  auto older = *commands_->CaptureLead(Request("m", "lovelace@engines.example"), earlier);
  auto survivor = *commands_->CaptureLead(Request("s", "ada@example.com"), Ctx());
  ASSERT_TRUE(Qualify("q-s", survivor.lead_id()).ok());
  crm::v1::GetLeadHistoryRequest history;
  history.set_lead_id(survivor.lead_id());
  history.mutable_page()->set_page_size(1);
  auto first = commands_->GetLeadHistory(history);
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_EQ(first->events_size(), 1);
  ASSERT_FALSE(first->next_page_token().empty());
  // Nothing merged yet: the token pages on.
  history.mutable_page()->set_page_token(first->next_page_token());
  ASSERT_TRUE(commands_->GetLeadHistory(history).ok());

  crm::v1::MergeLeadsRequest merge;
  merge.set_request_id("merge-between-pages");
  merge.set_survivor_lead_id(survivor.lead_id());
  merge.set_merged_lead_id(older.lead_id());
  ASSERT_TRUE(commands_->MergeLeads(merge, Ctx()).ok());
  auto next = commands_->GetLeadHistory(history);
  EXPECT_EQ(next.status().code(), absl::StatusCode::kAborted) << next.status();
  EXPECT_TRUE(absl::StrContains(next.status().message(), "page.page_token"));
  // A token from before merge counts were in it (the offset alone) still
  // pages, as it did.
  crm::v1::GetLeadHistoryRequest legacy = history;
  legacy.mutable_page()->clear_page_token();
  legacy.mutable_page()->set_page_token(SealPageToken(legacy, "1"));
  auto legacy_page = commands_->GetLeadHistory(legacy);
  ASSERT_TRUE(legacy_page.ok()) << legacy_page.status();
  EXPECT_EQ(legacy_page->events_size(), 1);
  // From the first page again, every event once, the merged lead's first.
  history.mutable_page()->clear_page_token();
  std::vector<std::string> seen;
  do {
    auto page = commands_->GetLeadHistory(history);
    ASSERT_TRUE(page.ok()) << page.status();
    for (const auto& e : page->events())
      seen.push_back(absl::StrCat(e.stream(), "/", e.stream_version()));
    history.mutable_page()->set_page_token(page->next_page_token());
  } while (!history.page().page_token().empty() && seen.size() < 20);
  ASSERT_FALSE(seen.empty());
  EXPECT_EQ(seen.front(), LeadStream(older.lead_id()) + "/1");
  EXPECT_EQ(std::set<std::string>(seen.begin(), seen.end()).size(), seen.size());
  EXPECT_EQ(seen.size(), Types(older.lead_id()).size() + Types(survivor.lead_id()).size());
}

TEST_F(LeadUseCaseTest, MergeKeepsBothHistoriesAndRepointsTheContact) {
  auto survivor = *commands_->CaptureLead(Request("s", "ada@example.com", "+442079460958"), Ctx());
  auto merged = *commands_->CaptureLead(Request("m", "lovelace@engines.example"), Ctx());
  ASSERT_NE(survivor.customer_id(), merged.customer_id());
  crm::v1::MergeLeadsRequest merge;
  merge.set_request_id("merge-1");
  merge.set_survivor_lead_id(survivor.lead_id());
  merge.set_merged_lead_id(merged.lead_id());
  merge.set_merged_expected_version(1);
  auto result = commands_->MergeLeads(merge, Ctx());
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_THAT(result->survivor().merged_lead_ids(), ::testing::ElementsAre(merged.lead_id()));
  EXPECT_EQ(result->merged().status(), crm::v1::LEAD_STATUS_MERGED);
  EXPECT_EQ(result->merged().merged_into_lead_id(), survivor.lead_id());
  EXPECT_EQ(Types(merged.lead_id()).back(), "LeadMergedInto");
  // The merged lead is nobody's work any more: out of the queue it waited in.
  EXPECT_EQ(result->merged().queue(), "");
  crm::v1::ListLeadsRequest queued;
  queued.set_queue(kDefaultQueue);
  for (const auto sort : {crm::v1::LEAD_SORT_UNSPECIFIED, crm::v1::LEAD_SORT_SCORE_DESC}) {
    queued.set_sort(sort);
    const crm::v1::ListLeadsResponse listed = List(queued);
    std::vector<std::string> waiting;
    for (const auto& l : listed.leads()) waiting.push_back(l.lead_id());
    EXPECT_THAT(waiting, ::testing::ElementsAre(survivor.lead_id())) << sort;
  }
  auto survivor_events = *store_->events().ReadStream(LeadStream(survivor.lead_id()));
  crm::v1::LeadsMerged payload;
  ASSERT_TRUE(survivor_events[1].payload().UnpackTo(&payload));
  EXPECT_EQ(payload.merged_customer_id(), merged.customer_id());
  EXPECT_EQ(payload.survivor_customer_id(), survivor.customer_id());
  // The customers are linked on crm.keys.v1, for an erasure of the survivor.
  auto link = store_->events().ReadStream(pii::kMergeStreamPrefix + merged.lead_id());
  ASSERT_TRUE(link.ok() && link->size() == 1) << link.status();
  crm::v1::CustomersMerged linked;
  ASSERT_TRUE(link->front().payload().UnpackTo(&linked));
  EXPECT_EQ(linked.merged_customer_id(), merged.customer_id());
  EXPECT_EQ(linked.survivor_customer_id(), survivor.customer_id());

  // The merged person's email now finds the survivor.
  auto again = *commands_->CaptureLead(Request("again", "lovelace@engines.example"), Ctx());
  EXPECT_EQ(again.customer_id(), survivor.customer_id());
  EXPECT_EQ(again.duplicate_of_lead_id(), survivor.lead_id());

  // History under the survivor holds both leads' events.
  crm::v1::GetLeadHistoryRequest history;
  history.set_lead_id(survivor.lead_id());
  auto h = commands_->GetLeadHistory(history);
  ASSERT_TRUE(h.ok()) << h.status();
  EXPECT_THAT(HistoryStreams(survivor.lead_id()),
              ::testing::UnorderedElementsAre(LeadStream(survivor.lead_id()),
                                              LeadStream(merged.lead_id())));
  // Personal data reads in plaintext, as in GetLead (stored sealed).
  crm::v1::LeadCaptured first;
  ASSERT_TRUE(h->events(0).payload().UnpackTo(&first));
  EXPECT_FALSE(pii::IsSealed(first.contact().email())) << first.contact().email();
  EXPECT_TRUE(absl::StrContains(first.contact().email(), "@")) << first.contact().email();
  history.mutable_page()->set_page_size(1);
  EXPECT_FALSE(commands_->GetLeadHistory(history)->next_page_token().empty());

  const uint64_t log_size = store_->events().LogSize();
  EXPECT_EQ(commands_->MergeLeads(merge, Ctx())->survivor().version(),
            result->survivor().version());
  EXPECT_EQ(store_->events().LogSize(), log_size);
  merge.set_request_id("merge-2");
  merge.clear_merged_expected_version();
  EXPECT_EQ(commands_->MergeLeads(merge, Ctx()).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(Qualify("q-merged", merged.lead_id()).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace crm::leads
