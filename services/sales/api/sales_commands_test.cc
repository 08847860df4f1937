#include "services/sales/api/sales_commands.h"

#include <algorithm>
#include <latch>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "crm/v1/analytics.pb.h"
#include "gtest/gtest.h"
#include "libs/common/ids.h"
#include "libs/common/kafka.h"
#include "libs/common/pii/field_sealer.h"
#include "libs/common/reply_budget.h"
#include "libs/common/status_macros.h"
#include "libs/common/subscriber.h"
#include "libs/common/testing/temp_dir.h"
#include "services/sales/api/reminder_loop.h"
#include "services/sales/api/sales_reactions.h"
#include "services/sales/domain/opportunity.h"
#include "services/sales/domain/quote.h"
#include "services/sales/domain/task.h"
#include "services/sales/domain/validation.h"

namespace crm::sales {
namespace {

const absl::Time kT0 = absl::FromCivil(absl::CivilSecond(2025, 3, 3, 9, 0, 0), absl::UTCTimeZone());

class SalesCommandsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store_ = std::move(*SalesStore::Open(dir_.Sub("sales")));
    SalesSettings settings;
    settings.stale_after = absl::Hours(24);
    settings.clock = [this] { return now_; };
    commands_ = std::make_unique<SalesCommands>(*store_, std::move(settings));
    reactions_ = std::make_unique<SalesReactions>(*commands_);
    subscriber_ = std::make_unique<Subscriber>(store_->db(), *reactions_, SubscriberOptions{});
  }

  // The context of a call made at the test's current time.
  EventContext Ctx(const std::string& actor = "rep_ada") {
    return {kSalesSource, actor, "", "", now_};
  }

  std::vector<crm::v1::EventEnvelope> Stream(const std::string& stream) {
    auto events = store_->events().ReadStream(stream);
    EXPECT_TRUE(events.ok()) << events.status();
    return events.ok() ? *events : std::vector<crm::v1::EventEnvelope>{};
  }
  std::vector<std::string> Types(const std::string& stream) {
    std::vector<std::string> types;
    for (const auto& e : Stream(stream)) types.push_back(e.type());
    return types;
  }

  // Through `commands` when given (another store's), else the fixture's.
  crm::v1::Customer Open(const std::string& customer_id, const std::string& owner = "rep_ada",
                         const std::string& territory = "EMEA", SalesCommands* commands = nullptr) {
    crm::v1::OpenCustomerRequest r;
    r.set_request_id(absl::StrCat("open-", customer_id));
    r.set_customer_id(customer_id);
    r.set_name("Analytical Engines");
    r.set_owner_id(owner);
    r.set_territory(territory);
    auto c = (commands != nullptr ? *commands : *commands_).OpenCustomer(r, Ctx());
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? *c : crm::v1::Customer{};
  }

  crm::v1::Opportunity OpenOpp(const std::string& customer_id, const std::string& request_id,
                               int64_t amount = 1'000'000, const std::string& close = "2025-06-30",
                               const std::string& owner = "") {
    crm::v1::OpenOpportunityRequest r;
    r.set_request_id(request_id);
    r.set_customer_id(customer_id);
    r.set_name("Engines");
    r.set_owner_id(owner);
    *r.mutable_amount() = MakeMoney("EUR", amount);
    r.set_expected_close_date(close);
    auto o = commands_->OpenOpportunity(r, Ctx());
    EXPECT_TRUE(o.ok()) << o.status();
    return o.ok() ? *o : crm::v1::Opportunity{};
  }

  absl::StatusOr<crm::v1::Opportunity> Move(const crm::v1::Opportunity& o, const std::string& stage,
                                            const std::string& request_id,
                                            const std::string& reason = "") {
    crm::v1::ChangeOpportunityStageRequest r;
    r.set_request_id(request_id);
    r.set_opportunity_id(o.opportunity_id());
    r.set_expected_version(o.version());
    r.set_stage_id(stage);
    r.set_lost_reason(reason);
    return commands_->ChangeOpportunityStage(r, Ctx());
  }

  // An event of another service as the subscriber receives it.
  static ConsumedMessage Message(const google::protobuf::Message& payload,
                                 const std::string& customer_id, const std::string& stream,
                                 int64_t version, int64_t offset, const std::string& topic) {
    EventContext ctx{"crm/leads", "rep_ada", "corr-1", "", kT0};
    auto envelope = MakeEnvelope(payload, customer_id, ctx);
    envelope.set_stream(stream);
    envelope.set_stream_version(version);
    return ConsumedMessage{topic, 0, offset, envelope.SerializeAsString()};
  }

  // Closes the service and opens it again on the same database.
  void Restart() {
    commands_.reset();
    reactions_.reset();
    subscriber_.reset();
    store_.reset();
    SetUp();
  }

  crm::testing::TempDir dir_;
  absl::Time now_ = kT0;
  std::unique_ptr<SalesStore> store_;
  std::unique_ptr<SalesCommands> commands_;
  std::unique_ptr<SalesReactions> reactions_;
  std::unique_ptr<Subscriber> subscriber_;
};

TEST_F(SalesCommandsTest, OpenCustomerSealsContactsWithTheCustomersDataKey) {
  auto vault = pii::KeyVault::Open(store_->db(), &store_->events(), pii::RandomKey(), kSalesSource);
  ASSERT_TRUE(vault.ok()) << vault.status();
  commands_->SealPiiWith(**vault);
  crm::v1::OpenCustomerRequest r;
  r.set_request_id("open-sealed");
  r.set_customer_id("cus_s");
  r.set_name("Analytical Engines");
  r.set_owner_id("rep_ada");
  r.set_territory("EMEA");
  auto* contact = r.add_contacts();
  contact->set_first_name("Ada");
  contact->set_last_name("Lovelace");
  contact->set_email("Ada@Engines.example");
  auto opened = commands_->OpenCustomer(r, Ctx());
  ASSERT_TRUE(opened.ok()) << opened.status();

  // Stored and answered as ciphertext (the edge interceptor opens answers).
  ASSERT_EQ(opened->contacts_size(), 1);
  EXPECT_TRUE(pii::IsSealed(opened->contacts(0).email()));
  auto stored = store_->events().ReadCustomerEvents({"cus_s"});
  ASSERT_TRUE(stored.ok()) << stored.status();
  const auto& events = stored->events;
  ASSERT_EQ(events.size(), 2u) << "the key record, then the customer";
  EXPECT_EQ(events[0].type(), "DataKeyIssued");
  EXPECT_EQ(events[1].type(), "CustomerOpened");
  for (const auto& e : events) {
    EXPECT_EQ(e.SerializeAsString().find("Lovelace"), std::string::npos) << e.type();
    EXPECT_EQ(e.SerializeAsString().find("engines.example"), std::string::npos) << e.type();
  }
  // The vault opens what was sealed, normalized.
  crm::v1::Customer read = *opened;
  pii::OpenFields(read, **vault);
  EXPECT_EQ(read.contacts(0).last_name(), "Lovelace");
  EXPECT_EQ(read.contacts(0).email(), "ada@engines.example");
  // The event opens the same way (what an export returns).
  crm::v1::EventEnvelope event = events[1];
  pii::OpenEvent(event, **vault);
  EXPECT_NE(event.SerializeAsString().find("Lovelace"), std::string::npos);
  // A retry seals nothing new and appends nothing.
  ASSERT_TRUE(commands_->OpenCustomer(r, Ctx()).ok());
  EXPECT_EQ(store_->events().LogSize(), 2u);
}

TEST_F(SalesCommandsTest, OpenCustomerAppendsOneEventAndARetryReturnsTheFirstResult) {
  auto first = Open("cus_1");
  EXPECT_EQ(first.tier(), "standard");
  EXPECT_EQ(first.version(), 1);
  const auto events = Stream(CustomerStream("cus_1"));
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].type(), "CustomerOpened");
  EXPECT_EQ(events[0].customer_id(), "cus_1");
  EXPECT_EQ(events[0].source(), "crm/sales");
  EXPECT_EQ(events[0].actor(), "rep_ada");
  EXPECT_EQ(events[0].correlation_id(), "open-cus_1");

  EXPECT_EQ(Open("cus_1").version(), 1) << "a retry gets the first result";
  EXPECT_EQ(store_->events().LogSize(), 1u);
  // The same request_id on a different request: refused, not answered with
  // the first request's result.
  crm::v1::OpenCustomerRequest again;
  again.set_request_id("open-cus_1");
  again.set_customer_id("cus_1");
  again.set_name("Something else entirely");
  auto reused = commands_->OpenCustomer(again, Ctx());
  EXPECT_EQ(reused.status().code(), absl::StatusCode::kInvalidArgument) << reused.status();
  EXPECT_TRUE(absl::StartsWith(reused.status().message(), "request_id:"));
  EXPECT_EQ(store_->events().LogSize(), 1u);

  again.set_request_id("another");
  EXPECT_EQ(commands_->OpenCustomer(again, Ctx()).status().code(),
            absl::StatusCode::kAlreadyExists);
  crm::v1::GetCustomerRequest get;
  get.set_customer_id("cus_1");
  EXPECT_EQ(commands_->GetCustomer(get)->name(), "Analytical Engines");
  get.set_customer_id("cus_unknown");
  EXPECT_EQ(commands_->GetCustomer(get).status().code(), absl::StatusCode::kNotFound);
}

// The server mints the id of an account opened without one: a retry of
// that request is the same request and gets the same account.
TEST_F(SalesCommandsTest, ARetryOfAnOpenWithoutCustomerIdGetsTheSameAccount) {
  crm::v1::OpenCustomerRequest r;
  r.set_request_id("open-new");
  r.set_name("Analytical Engines");
  r.set_owner_id("rep_ada");
  r.set_territory("EMEA");
  auto first = commands_->OpenCustomer(r, Ctx());
  ASSERT_TRUE(first.ok()) << first.status();
  auto retry = commands_->OpenCustomer(r, Ctx());
  ASSERT_TRUE(retry.ok()) << retry.status();
  EXPECT_EQ(retry->customer_id(), first->customer_id());
  EXPECT_EQ(store_->events().LogSize(), 1u);
}

// A retry is matched by the request as sent, before the caller's token
// filled in territory and owner; answers stored when the filled-in request
// was the key still answer it.
TEST_F(SalesCommandsTest, AnOpenIsRetriedByTheRequestAsSent) {
  crm::v1::OpenCustomerRequest sent;
  sent.set_request_id("open-as-sent");
  sent.set_name("Analytical Engines");
  crm::v1::OpenCustomerRequest scoped = sent;
  scoped.set_owner_id("rep_ada");
  scoped.set_territory("EMEA");
  auto first = commands_->OpenCustomer(scoped, Ctx(), &sent);
  ASSERT_TRUE(first.ok()) << first.status();
  crm::v1::OpenCustomerRequest moved = sent;
  moved.set_owner_id("rep_ada");
  moved.set_territory("APAC");
  auto retry = commands_->OpenCustomer(moved, Ctx(), &sent);
  ASSERT_TRUE(retry.ok()) << retry.status();
  EXPECT_EQ(retry->customer_id(), first->customer_id());
  EXPECT_EQ(retry->territory(), "EMEA");

  sent.set_request_id("open-stored-scoped");
  scoped.set_request_id("open-stored-scoped");
  auto stored = commands_->OpenCustomer(scoped, Ctx());
  ASSERT_TRUE(stored.ok()) << stored.status();
  auto again = commands_->OpenCustomer(scoped, Ctx(), &sent);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->customer_id(), stored->customer_id());
  EXPECT_EQ(store_->events().LogSize(), 2u);
  // Other content under the same request id is still refused.
  sent.set_name("Difference Engines");
  scoped.set_name("Difference Engines");
  EXPECT_EQ(commands_->OpenCustomer(scoped, Ctx(), &sent).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// With PII sealed, an open without customer_id issues a data key for the
// id it mints: a retry must neither mint another id nor issue a key for it.
TEST_F(SalesCommandsTest, ARetryOfASealedOpenWithoutCustomerIdIssuesNoSecondKey) {
  auto vault = pii::KeyVault::Open(store_->db(), &store_->events(), pii::RandomKey(), kSalesSource);
  ASSERT_TRUE(vault.ok()) << vault.status();
  commands_->SealPiiWith(**vault);
  crm::v1::OpenCustomerRequest r;
  r.set_request_id("open-new-sealed");
  r.set_name("Analytical Engines");
  r.set_owner_id("rep_ada");
  r.set_territory("EMEA");
  auto first = commands_->OpenCustomer(r, Ctx());
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_EQ(store_->events().LogSize(), 2u) << "the key record, then the customer";
  auto retry = commands_->OpenCustomer(r, Ctx());
  ASSERT_TRUE(retry.ok()) << retry.status();
  EXPECT_EQ(retry->customer_id(), first->customer_id());
  EXPECT_EQ(store_->events().LogSize(), 2u);
  // The same request id with other content is refused, and issues nothing.
  r.set_name("Difference Engines");
  EXPECT_EQ(commands_->OpenCustomer(r, Ctx()).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->events().LogSize(), 2u);

  // A retry racing its first call (the client timed out meanwhile).
  for (int round = 0; round < 10; ++round) {
    r.set_request_id(absl::StrCat("open-raced-", round));
    const uint64_t before = store_->events().LogSize();
    absl::StatusOr<crm::v1::Customer> a, b;
    std::thread first([&] { a = commands_->OpenCustomer(r, Ctx()); });
    b = commands_->OpenCustomer(r, Ctx());
    first.join();
    ASSERT_TRUE(a.ok() && b.ok()) << a.status() << " " << b.status();
    EXPECT_EQ(a->customer_id(), b->customer_id());
    EXPECT_EQ(store_->events().LogSize(), before + 2) << "one key, one customer; round " << round;
  }
}

// Owners are token subjects, and identity providers write those as
// "provider|id".
TEST_F(SalesCommandsTest, AnOwnerNamedByAnIdentityProvidersSubjectOwnsTheAccount) {
  const std::string rep = "google-oauth2|104857600123456789012";
  EXPECT_EQ(Open("cus_sub", rep).owner_id(), rep);
}

TEST_F(SalesCommandsTest, SameRequestIdFromAnotherCallerIsNotAnsweredWithTheFirstResult) {
  Open("cus_1");
  // rep_bob reuses rep_ada's request id for another customer: his own
  // request, not a replay of hers.
  crm::v1::OpenCustomerRequest bobs;
  bobs.set_request_id("open-cus_1");
  bobs.set_customer_id("cus_2");
  bobs.set_name("Difference Engines");
  bobs.set_owner_id("rep_bob");
  bobs.set_territory("EMEA");
  auto opened = commands_->OpenCustomer(bobs, Ctx("rep_bob"));
  ASSERT_TRUE(opened.ok()) << opened.status();
  EXPECT_EQ(opened->customer_id(), "cus_2");
  EXPECT_EQ(opened->name(), "Difference Engines");
  EXPECT_EQ(store_->events().LogSize(), 2u);
}

TEST_F(SalesCommandsTest, InvalidInputAppendsNothing) {
  crm::v1::OpenCustomerRequest r;
  r.set_request_id("r1");
  r.set_name("");
  auto st = commands_->OpenCustomer(r, Ctx()).status();
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(st.message().substr(0, 5), "name:");
  crm::v1::OpenOpportunityRequest o;
  o.set_request_id("r2");
  o.set_customer_id("cus_missing");
  o.set_name("x");
  EXPECT_EQ(commands_->OpenOpportunity(o, Ctx()).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->events().LogSize(), 0u);
  EXPECT_TRUE(store_->events().ReadOutbox(0, 10)->empty());
}

TEST_F(SalesCommandsTest, OpportunityMovesThroughEveryStageToWonWithExpectedVersions) {
  Open("cus_1");
  auto o = OpenOpp("cus_1", "opp-1");
  EXPECT_EQ(o.stage_id(), "prospecting");
  EXPECT_EQ(o.owner_id(), "rep_ada");  // the account's owner
  EXPECT_EQ(o.territory(), "EMEA");
  int step = 0;
  for (const char* stage : {"needs_analysis", "proposal", "negotiation", "contract_signed"}) {
    now_ += absl::Hours(24);
    auto moved = Move(o, stage, absl::StrCat("move-", ++step));
    ASSERT_TRUE(moved.ok()) << stage << ": " << moved.status();
    EXPECT_EQ(moved->version(), o.version() + 1);
    o = *moved;
  }
  EXPECT_EQ(o.outcome(), crm::v1::STAGE_OUTCOME_WON);
  EXPECT_EQ(o.probability_percent(), 100);
  const auto events = Stream(OpportunityStream(o.opportunity_id()));
  ASSERT_EQ(events.size(), 5u);
  crm::v1::OpportunityStageChanged last;
  ASSERT_TRUE(events[4].payload().UnpackTo(&last));
  EXPECT_EQ(last.from_stage_id(), "negotiation");
  EXPECT_EQ(last.time_in_previous_stage().seconds(), 24 * 3600);
  EXPECT_EQ(o.closed_at().seconds(), absl::ToUnixSeconds(now_));

  crm::v1::GetOpportunityRequest get;
  get.set_opportunity_id(o.opportunity_id());
  EXPECT_EQ(commands_->GetOpportunity(get)->stage_id(), "contract_signed");
}

// A call stamped when it arrived and decided after a later one on the same
// deal: its event is stamped after that one's, so analytics (which keeps a
// deal's latest stage by time) ends on the stage the deal is in.
TEST_F(SalesCommandsTest, AChangeDecidedAfterALaterOneIsStampedAfterIt) {
  Open("cus_1");
  auto o = OpenOpp("cus_1", "opp-1");
  now_ += absl::Hours(1);
  auto moved = Move(o, "needs_analysis", "move-1");
  ASSERT_TRUE(moved.ok()) << moved.status();
  now_ -= absl::Minutes(30);  // arrived before the move above, decided after it
  auto lost = Move(*moved, "lost", "move-2", "budget");
  ASSERT_TRUE(lost.ok()) << lost.status();
  const auto events = Stream(OpportunityStream(o.opportunity_id()));
  ASSERT_EQ(events.size(), 3u);
  EXPECT_GT(FromProtoTimestamp(events[2].occurred_at()),
            FromProtoTimestamp(events[1].occurred_at()));
}

TEST_F(SalesCommandsTest, AStaleExpectedVersionIsAbortedAndARetryIsAnsweredFromTheFirstResult) {
  Open("cus_1");
  auto o = OpenOpp("cus_1", "opp-1");
  auto moved = Move(o, "needs_analysis", "move-1");
  ASSERT_TRUE(moved.ok());
  // Someone else still holding version 1.
  auto stale = Move(o, "lost", "move-2", "budget");
  EXPECT_EQ(stale.status().code(), absl::StatusCode::kAborted);
  EXPECT_EQ(stale.status().message().substr(0, 17), "expected_version:");
  // The first caller retries its request after a timeout: same answer, no append.
  const uint64_t before = store_->events().LogSize();
  auto retry = Move(o, "needs_analysis", "move-1");
  ASSERT_TRUE(retry.ok()) << retry.status();
  EXPECT_EQ(retry->version(), moved->version());
  EXPECT_EQ(store_->events().LogSize(), before);
  // Skipping is a rule of the pipeline.
  EXPECT_EQ(Move(*moved, "contract_signed", "move-3").status().code(),
            absl::StatusCode::kFailedPrecondition);
  crm::v1::Opportunity missing = *moved;
  missing.set_opportunity_id("opp_missing");
  EXPECT_EQ(Move(missing, "proposal", "move-4").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(SalesCommandsTest, ReviseChangesAmountAndDateWithExpectedVersion) {
  Open("cus_1");
  auto o = OpenOpp("cus_1", "opp-1");
  crm::v1::ReviseOpportunityRequest r;
  r.set_request_id("rev-1");
  r.set_opportunity_id(o.opportunity_id());
  r.set_expected_version(o.version());
  *r.mutable_amount() = MakeMoney("USD", 42);
  auto revised = commands_->ReviseOpportunity(r, Ctx());
  ASSERT_TRUE(revised.ok()) << revised.status();
  EXPECT_EQ(revised->amount().currency(), "USD");
  EXPECT_EQ(revised->expected_close_date(), "2025-06-30");
  r.set_request_id("rev-2");
  EXPECT_EQ(commands_->ReviseOpportunity(r, Ctx()).status().code(), absl::StatusCode::kAborted);
}

TEST_F(SalesCommandsTest, ListOpportunitiesFiltersAndPages) {
  Open("cus_1", "rep_ada");
  Open("cus_2", "rep_bob");
  std::vector<std::string> ada;
  for (int i = 0; i < 5; ++i) {
    ada.push_back(OpenOpp("cus_1", absl::StrCat("a", i), 100, absl::StrCat("2025-0", i + 1, "-15"))
                      .opportunity_id());
  }
  auto bob = OpenOpp("cus_2", "b0", 100, "2025-02-01");
  ASSERT_TRUE(Move(bob, "needs_analysis", "bob-move").ok());

  crm::v1::ListOpportunitiesRequest r;
  r.set_owner_id("rep_ada");
  r.mutable_page()->set_page_size(2);
  std::vector<std::string> seen;
  for (int page = 0; page < 5; ++page) {
    auto resp = commands_->ListOpportunities(r);
    ASSERT_TRUE(resp.ok()) << resp.status();
    for (const auto& o : resp->opportunities()) seen.push_back(o.opportunity_id());
    if (resp->next_page_token().empty()) break;
    r.mutable_page()->set_page_token(resp->next_page_token());
  }
  // Id order, which is creation order across milliseconds.
  std::sort(ada.begin(), ada.end());
  EXPECT_EQ(seen, ada);

  // A token continues only its own query: with another owner it would
  // have skipped their opportunities before it, and a made-up one ended
  // the list with an empty page.
  r.mutable_page()->clear_page_token();
  auto first = commands_->ListOpportunities(r);
  ASSERT_TRUE(first.ok() && !first->next_page_token().empty());
  crm::v1::ListOpportunitiesRequest other = r;
  other.set_owner_id("rep_bob");
  other.mutable_page()->set_page_token(first->next_page_token());
  auto refused = commands_->ListOpportunities(other);
  EXPECT_TRUE(absl::IsInvalidArgument(refused.status())) << refused.status();
  EXPECT_EQ(refused.status().message().rfind("page.page_token: not a token of this query", 0), 0u);
  other.mutable_page()->set_page_token("zzz");
  EXPECT_TRUE(absl::IsInvalidArgument(commands_->ListOpportunities(other).status()));

  crm::v1::ListOpportunitiesRequest by_stage;
  by_stage.set_stage_id("needs_analysis");
  auto staged = commands_->ListOpportunities(by_stage);
  ASSERT_EQ(staged->opportunities_size(), 1);
  EXPECT_EQ(staged->opportunities(0).opportunity_id(), bob.opportunity_id());

  crm::v1::ListOpportunitiesRequest by_date;
  by_date.set_close_date_from("2025-02-01");
  by_date.set_close_date_to("2025-03-31");
  auto dated = commands_->ListOpportunities(by_date);
  ASSERT_EQ(dated->opportunities_size(), 3);  // ada's Feb and Mar, bob's Feb 1st
  by_date.set_close_date_to("March");
  EXPECT_EQ(commands_->ListOpportunities(by_date).status().code(),
            absl::StatusCode::kInvalidArgument);
  crm::v1::ListOpportunitiesRequest bad_page;
  bad_page.mutable_page()->set_page_size(-1);
  EXPECT_EQ(commands_->ListOpportunities(bad_page).status().message().substr(0, 15),
            "page.page_size:");
}

TEST_F(SalesCommandsTest, ListOpportunitiesRefusesACloseDateRangeEndingBeforeItStarts) {
  Open("cus_1");
  OpenOpp("cus_1", "a0", 100, "2025-03-15");
  crm::v1::ListOpportunitiesRequest r;
  r.set_close_date_from("2025-04-01");
  r.set_close_date_to("2025-03-01");
  auto st = commands_->ListOpportunities(r).status();
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;
  EXPECT_EQ(st.message().substr(0, 14), "close_date_to:") << st;
  // A single day is a range.
  r.set_close_date_from("2025-03-15");
  r.set_close_date_to("2025-03-15");
  auto page = commands_->ListOpportunities(r);
  ASSERT_TRUE(page.ok()) << page.status();
  EXPECT_EQ(page->opportunities_size(), 1);
}

TEST_F(SalesCommandsTest, ListCustomersTerritoryFilterIgnoresCaseAsAccessDoes) {
  Open("cus_1", "rep_ada", "emea");  // a converted lead's spelling
  Open("cus_2", "rep_bob", "EMEA");
  Open("cus_3", "rep_cy", "APAC");
  crm::v1::ListCustomersRequest r;
  r.set_territory("EMEA");
  auto page = commands_->ListCustomers(r);
  ASSERT_TRUE(page.ok()) << page.status();
  std::vector<std::string> seen;
  for (const auto& c : page->customers()) seen.push_back(c.customer_id());
  EXPECT_EQ(seen, (std::vector<std::string>{"cus_1", "cus_2"}));
  // Trimmed, as accounts store theirs; one line.
  r.set_territory(" EMEA ");
  page = commands_->ListCustomers(r);
  ASSERT_TRUE(page.ok()) << page.status();
  EXPECT_EQ(page->customers_size(), 2);
  r.set_territory("EM\nEA");
  EXPECT_EQ(commands_->ListCustomers(r).status().code(), absl::StatusCode::kInvalidArgument);
}

// A selective filter examines a bounded number of rows per call: pages cut
// by that budget may be short or empty, and following the tokens still
// lists every match once, in order.
TEST_F(SalesCommandsTest, AListExaminesABoundedNumberOfRowsPerPage) {
  std::vector<std::string> wanted;
  for (int i = 0; i < 12; ++i) {
    const std::string id = absl::StrCat("cus_", 10 + i);
    const bool mine = i % 5 == 0;
    Open(id, mine ? "rep_ada" : "rep_bob");
    if (mine) wanted.push_back(id);
  }
  crm::v1::PageRequest page;
  page.set_page_size(2);
  std::vector<std::string> seen;
  int pages = 0, short_pages = 0;
  do {
    auto out = store_->List<crm::v1::Customer>(
        kCustomersFamily, "", page,
        [](const crm::v1::Customer& c) { return c.owner_id() == "rep_ada"; },
        /*scan_budget=*/3);
    ASSERT_TRUE(out.ok()) << out.status();
    for (const auto& c : out->rows) seen.push_back(c.customer_id());
    short_pages += out->rows.size() < 2 && !out->next_page_token.empty();
    page.set_page_token(out->next_page_token);
  } while (!page.page_token().empty() && ++pages < 100);
  EXPECT_EQ(seen, wanted);
  EXPECT_GT(short_pages, 0) << "the budget cut some pages";
}

// 500 accounts of 20 long contacts each would be a reply of several MB,
// which a default gRPC client refuses.
TEST_F(SalesCommandsTest, ACustomerPageStopsShortOfTheReplyBound) {
  constexpr int kCustomers = 500;
  std::vector<std::string> ids;
  for (int i = 0; i < kCustomers; ++i) {
    crm::v1::OpenCustomerRequest r;
    r.set_request_id(absl::StrCat("open-big-", i));
    r.set_customer_id(absl::StrCat("cus_big_", 1000 + i));
    r.set_name(std::string(200, 'n'));
    r.set_owner_id("rep_ada");
    r.set_territory("EMEA");
    for (int c = 0; c < 20; ++c) {
      auto* contact = r.add_contacts();
      contact->set_first_name(std::string(100, 'f'));
      contact->set_last_name(std::string(100, 'l'));
      contact->set_title(std::string(100, 't'));
      contact->set_email(
          absl::StrCat(c, std::string(60, 'e'), "@", std::string(60, 'd'), ".example"));
    }
    auto opened = commands_->OpenCustomer(r, Ctx());
    ASSERT_TRUE(opened.ok()) << opened.status();
    ids.push_back(r.customer_id());
  }
  crm::v1::ListCustomersRequest list;
  list.mutable_page()->set_page_size(kCustomers);
  std::vector<std::string> seen;
  int pages = 0;
  do {
    auto page = commands_->ListCustomers(list);
    ASSERT_TRUE(page.ok()) << page.status();
    EXPECT_LE(page->ByteSizeLong(), kMaxReplyBytes);
    for (const auto& c : page->customers()) seen.push_back(c.customer_id());
    list.mutable_page()->set_page_token(page->next_page_token());
    ++pages;
  } while (!list.page().page_token().empty() && pages < 10);
  EXPECT_EQ(seen, ids);
  EXPECT_GT(pages, 1);
}

crm::v1::LeadConverted Conversion(const std::string& lead_id) {
  crm::v1::LeadConverted lc;
  lc.set_lead_id(lead_id);
  lc.set_customer_id("cus_lead");
  lc.set_owner_id("rep_grace");
  lc.mutable_contact()->set_first_name("Grace");
  lc.mutable_contact()->set_email("grace@example.com");
  lc.set_company("Navy");
  lc.set_region("AMER");
  lc.set_opportunity_name("Compilers for the Navy");
  *lc.mutable_estimated_amount() = MakeMoney("EUR", 2'500'000);
  return lc;
}

TEST_F(SalesCommandsTest, LeadConvertedDeliveredTwiceOpensOneAccountAndOneOpportunity) {
  const auto message = Message(Conversion("lead_1"), "cus_lead", "lead-lead_1", 2, 7, kLeadsTopic);
  ASSERT_TRUE(subscriber_->ApplyBatch({message}).ok());
  ASSERT_TRUE(subscriber_->ApplyBatch({message}).ok());
  // A redelivery the subscriber cannot recognise (a crash before its offsets
  // were stored) reaches the reaction itself: answered from the request key.
  crm::v1::EventEnvelope envelope;
  ASSERT_TRUE(envelope.ParseFromString(message.value));
  ProjectionTxn txn(store_->db());
  ASSERT_TRUE(reactions_->Apply(envelope, txn).ok());

  EXPECT_EQ(subscriber_->applied(), 1u);
  EXPECT_EQ(subscriber_->skipped(), 1u);
  crm::v1::GetCustomerRequest get;
  get.set_customer_id("cus_lead");
  auto customer = commands_->GetCustomer(get);
  ASSERT_TRUE(customer.ok()) << customer.status();
  EXPECT_EQ(customer->name(), "Navy");
  EXPECT_EQ(customer->owner_id(), "rep_grace");
  EXPECT_EQ(customer->territory(), "AMER");
  EXPECT_EQ(customer->lead_id(), "lead_1");
  ASSERT_EQ(customer->contacts_size(), 1);
  EXPECT_EQ(customer->contacts(0).email(), "grace@example.com");
  EXPECT_EQ(Types(CustomerStream("cus_lead")), std::vector<std::string>{"CustomerOpened"});

  crm::v1::ListOpportunitiesRequest list;
  list.set_customer_id("cus_lead");
  auto opportunities = commands_->ListOpportunities(list);
  ASSERT_EQ(opportunities->opportunities_size(), 1);
  const auto& o = opportunities->opportunities(0);
  EXPECT_EQ(o.name(), "Compilers for the Navy");
  EXPECT_EQ(o.amount().minor_units(), 2'500'000);
  EXPECT_EQ(o.owner_id(), "rep_grace");
  EXPECT_EQ(o.lead_id(), "lead_1");
  EXPECT_EQ(store_->events().LogSize(), 2u);
  const auto opened = Stream(OpportunityStream(o.opportunity_id()));
  ASSERT_EQ(opened.size(), 1u);
  EXPECT_EQ(opened[0].causation_id(), envelope.event_id());
  EXPECT_EQ(opened[0].correlation_id(), "corr-1");
  // Dated just after the conversion: a timeline in time order shows the
  // conversion first.
  const absl::Time converted_at = FromProtoTimestamp(envelope.occurred_at());
  EXPECT_EQ(FromProtoTimestamp(opened[0].occurred_at()), converted_at + absl::Microseconds(1));
  const auto account = Stream(CustomerStream("cus_lead"));
  ASSERT_EQ(account.size(), 1u);
  EXPECT_EQ(FromProtoTimestamp(account[0].occurred_at()), converted_at + absl::Microseconds(1));
}

// Conversions as sales consumes them.
class SalesConversionTest : public SalesCommandsTest {
 protected:
  // Applies `converted` (of customer cus_lead) and reads the account and the
  // one opportunity it opened.
  void ExpectOpenedFrom(const crm::v1::LeadConverted& converted, crm::v1::Customer* customer,
                        crm::v1::Opportunity* opportunity) {
    ASSERT_TRUE(
        subscriber_->ApplyBatch({Message(converted, "cus_lead", "lead-lead_1", 2, 0, kLeadsTopic)})
            .ok());
    EXPECT_EQ(subscriber_->poisoned(), 0u);
    crm::v1::GetCustomerRequest get;
    get.set_customer_id("cus_lead");
    auto opened = commands_->GetCustomer(get);
    ASSERT_TRUE(opened.ok()) << opened.status();
    *customer = *std::move(opened);
    crm::v1::ListOpportunitiesRequest list;
    list.set_customer_id("cus_lead");
    auto opportunities = commands_->ListOpportunities(list);
    ASSERT_TRUE(opportunities.ok());
    ASSERT_EQ(opportunities->opportunities_size(), 1);
    *opportunity = opportunities->opportunities(0);
  }
};

// Leads keeps a company as typed: one of only spaces names nothing, and the
// conversion still opens the account (named after the person) and the
// opportunity instead of being parked as refused.
TEST_F(SalesConversionTest, AConversionWithABlankCompanyOpensAccountAndOpportunity) {
  auto converted = Conversion("lead_1");
  converted.set_company("   ");
  converted.set_opportunity_name("   ");
  crm::v1::Customer customer;
  crm::v1::Opportunity opportunity;
  ASSERT_NO_FATAL_FAILURE(ExpectOpenedFrom(converted, &customer, &opportunity));
  EXPECT_EQ(customer.name(), "Grace");
  EXPECT_EQ(opportunity.name(), "Grace (lead lead_1)");
}

// A conversion whose names exceed sales' bounds (an older leads service
// derived longer ones) or whose estimate is out of bounds still opens both
// the account and the opportunity.
TEST_F(SalesConversionTest, AConversionWithOversizedNamesOrEstimateOpensAccountAndOpportunity) {
  auto converted = Conversion("lead_1");
  std::string company;
  while (company.size() < 200) company += "Sch\xc3\xb6n ";  // 7 bytes; byte 200 is in an "ö"
  converted.set_company(company);
  converted.set_opportunity_name(company + " - crm-suite, analytics, telephony");
  converted.mutable_estimated_amount()->set_minor_units(int64_t{10} * kMaxMinorUnits);
  crm::v1::Customer customer;
  crm::v1::Opportunity opportunity;
  ASSERT_NO_FATAL_FAILURE(ExpectOpenedFrom(converted, &customer, &opportunity));
  // Cut before the two-byte letter that would cross byte 200.
  EXPECT_EQ(customer.name(), company.substr(0, 199));
  EXPECT_EQ(opportunity.name(), company.substr(0, 199));
  EXPECT_FALSE(opportunity.has_amount());
}

// Values an older leads service, or the converter's token, let through
// (a territory claim of any length, Unicode line breaks) are taken in on
// one line and cut to the account's bounds, not refused.
TEST_F(SalesConversionTest, AConversionWithLineBreaksOrALongTerritoryOpensAccountAndOpportunity) {
  auto converted = Conversion("lead_1");
  converted.set_region("EMEA\tNorth/" + std::string(80, 'x'));
  converted.set_company(
      "Analytical\xe2\x80\xa8"
      "Engines");
  converted.set_opportunity_name("Engines\nrenewal");
  converted.mutable_contact()->set_title("Head\xc2\x85of R&D");
  crm::v1::Customer customer;
  crm::v1::Opportunity opportunity;
  ASSERT_NO_FATAL_FAILURE(ExpectOpenedFrom(converted, &customer, &opportunity));
  EXPECT_EQ(customer.territory(), ("EMEA North/" + std::string(80, 'x')).substr(0, 64));
  EXPECT_EQ(customer.name(), "Analytical Engines");
  EXPECT_EQ(opportunity.name(), "Engines renewal");
  ASSERT_EQ(customer.contacts_size(), 1);
  EXPECT_EQ(customer.contacts(0).title(), "Head of R&D");
}

TEST_F(SalesCommandsTest, ASecondConversionOfTheSameCustomerAddsOnlyAnOpportunity) {
  ASSERT_TRUE(subscriber_
                  ->ApplyBatch(
                      {Message(Conversion("lead_1"), "cus_lead", "lead-lead_1", 2, 0, kLeadsTopic),
                       Message(Conversion("lead_2"), "cus_lead", "lead-lead_2", 2, 1, kLeadsTopic)})
                  .ok());
  EXPECT_EQ(subscriber_->applied(), 2u);
  EXPECT_EQ(subscriber_->poisoned(), 0u);
  EXPECT_EQ(Types(CustomerStream("cus_lead")).size(), 1u);
  crm::v1::ListOpportunitiesRequest list;
  list.set_customer_id("cus_lead");
  EXPECT_EQ(commands_->ListOpportunities(list)->opportunities_size(), 2);
}

TEST_F(SalesCommandsTest, ActivitiesAreListedAndMoveTheOpportunitysLastActivity) {
  Open("cus_1");
  auto o = OpenOpp("cus_1", "opp-1");
  crm::v1::LogActivityRequest r;
  r.set_request_id("call-1");
  r.set_opportunity_id(o.opportunity_id());
  r.set_kind(crm::v1::ACTIVITY_KIND_CALL);
  r.set_subject("Discovery call");
  now_ += absl::Hours(2);
  auto call = commands_->LogActivity(r, Ctx());
  ASSERT_TRUE(call.ok()) << call.status();
  EXPECT_EQ(call->customer_id(), "cus_1");  // taken from the opportunity
  EXPECT_EQ(call->logged_by(), "rep_ada");
  // An older note does not move the last activity back.
  r.set_request_id("note-1");
  r.set_kind(crm::v1::ACTIVITY_KIND_NOTE);
  *r.mutable_occurred_at() = ToProtoTimestamp(kT0 - absl::Hours(5));
  ASSERT_TRUE(commands_->LogActivity(r, Ctx()).ok());
  crm::v1::LogActivityRequest visit;
  visit.set_request_id("visit-1");
  visit.set_customer_id("cus_1");
  visit.set_kind(crm::v1::ACTIVITY_KIND_VISIT);
  visit.set_subject("On site");
  ASSERT_TRUE(commands_->LogActivity(visit, Ctx()).ok());

  crm::v1::GetOpportunityRequest get;
  get.set_opportunity_id(o.opportunity_id());
  EXPECT_EQ(commands_->GetOpportunity(get)->last_activity_at().seconds(),
            absl::ToUnixSeconds(now_));
  crm::v1::ListActivitiesRequest by_customer;
  by_customer.set_customer_id("cus_1");
  EXPECT_EQ(commands_->ListActivities(by_customer)->activities_size(), 3);
  crm::v1::ListActivitiesRequest by_opportunity;
  by_opportunity.set_opportunity_id(o.opportunity_id());
  EXPECT_EQ(commands_->ListActivities(by_opportunity)->activities_size(), 2);

  r.set_request_id("wrong-customer");
  r.set_customer_id("cus_other");
  EXPECT_EQ(commands_->LogActivity(r, Ctx()).status().message().substr(0, 15), "opportunity_id:");
}

TEST_F(SalesCommandsTest, ListActivitiesAppliesVisibilityBeforeThePageIsCut) {
  Open("cus_1");
  auto hidden = OpenOpp("cus_1", "opp-hidden");
  crm::v1::LogActivityRequest r;
  r.set_kind(crm::v1::ACTIVITY_KIND_NOTE);
  r.set_subject("Note");
  r.set_opportunity_id(hidden.opportunity_id());
  for (const char* id : {"hidden-1", "hidden-2"}) {
    r.set_request_id(id);
    ASSERT_TRUE(commands_->LogActivity(r, Ctx()).ok());
  }
  r.clear_opportunity_id();
  r.set_customer_id("cus_1");
  r.set_request_id("account-note");
  auto shown = commands_->LogActivity(r, Ctx());
  ASSERT_TRUE(shown.ok()) << shown.status();

  crm::v1::ListActivitiesRequest list;
  list.set_customer_id("cus_1");
  list.mutable_page()->set_page_size(1);
  auto page = commands_->ListActivities(list, [&](const crm::v1::Activity& a) {
    return a.opportunity_id() != hidden.opportunity_id();
  });
  ASSERT_TRUE(page.ok()) << page.status();
  ASSERT_EQ(page->activities_size(), 1);
  EXPECT_EQ(page->activities(0).activity_id(), shown->activity_id());
  EXPECT_EQ(page->next_page_token(), "");
}

TEST_F(SalesCommandsTest, ATaskDueBeyondTheTimestampRangeIsRefusedAndAppendsNothing) {
  Open("cus_1");
  const uint64_t before = store_->events().LogSize();
  crm::v1::CreateTaskRequest r;
  r.set_request_id("task-1");
  r.set_customer_id("cus_1");
  r.set_title("Send the proposal");
  r.mutable_due_at()->set_seconds(253'402'300'800);  // 10000-01-01
  auto st = commands_->CreateTask(r, Ctx()).status();
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;
  EXPECT_EQ(st.message(), "due_at: out of range");
  EXPECT_EQ(store_->events().LogSize(), before);
}

TEST_F(SalesCommandsTest, DueTasksRaiseOneReminderAndAreListedAsOverdue) {
  Open("cus_1");
  crm::v1::CreateTaskRequest r;
  r.set_request_id("task-1");
  r.set_customer_id("cus_1");
  r.set_title("Send the proposal");
  *r.mutable_due_at() = ToProtoTimestamp(kT0 + absl::Hours(4));
  auto task = commands_->CreateTask(r, Ctx());
  ASSERT_TRUE(task.ok()) << task.status();
  EXPECT_EQ(task->owner_id(), "rep_ada");
  r.set_request_id("task-2");
  r.set_title("Call back");
  *r.mutable_due_at() = ToProtoTimestamp(kT0 + absl::Hours(8));
  auto later = commands_->CreateTask(r, Ctx());

  ReminderLoop loop(
      *commands_, [this] { return now_; }, absl::Seconds(1));
  crm::v1::ListTasksRequest overdue;
  overdue.set_overdue_only(true);
  EXPECT_EQ(*loop.Tick(), 0);
  EXPECT_EQ(commands_->ListTasks(overdue)->tasks_size(), 0);

  now_ = kT0 + absl::Hours(5);
  EXPECT_EQ(*loop.Tick(), 1);
  EXPECT_EQ(*loop.Tick(), 0);  // once
  EXPECT_EQ(Types(TaskStream(task->task_id())),
            (std::vector<std::string>{"TaskCreated", "TaskReminderRaised"}));
  auto listed = commands_->ListTasks(overdue);
  ASSERT_EQ(listed->tasks_size(), 1);
  EXPECT_EQ(listed->tasks(0).task_id(), task->task_id());
  EXPECT_TRUE(listed->tasks(0).has_reminded_at());

  // Completed before it fell due: no reminder.
  crm::v1::CompleteTaskRequest complete;
  complete.set_request_id("done-2");
  complete.set_task_id(later->task_id());
  ASSERT_TRUE(commands_->CompleteTask(complete, Ctx()).ok());
  now_ = kT0 + absl::Hours(10);
  EXPECT_EQ(*loop.Tick(), 0);
  EXPECT_EQ(Types(TaskStream(later->task_id())),
            (std::vector<std::string>{"TaskCreated", "TaskCompleted"}));
  EXPECT_EQ(commands_->ListTasks(overdue)->tasks_size(), 1);
  crm::v1::ListTasksRequest completed;
  completed.set_status(crm::v1::TASK_STATUS_COMPLETED);
  EXPECT_EQ(commands_->ListTasks(completed)->tasks_size(), 1);
  EXPECT_EQ(store_->DueTaskIds(now_, 10)->size(), 0u);
}

TEST_F(SalesCommandsTest, AFailedCleanupOfOneDueTaskHoldsUpNoOtherReminder) {
  Open("cus_1");
  auto o = OpenOpp("cus_1", "opp-1");
  std::vector<std::string> tasks;
  for (int i = 1; i <= 2; ++i) {
    crm::v1::CreateTaskRequest r;
    r.set_request_id(absl::StrCat("task-", i));
    r.set_customer_id("cus_1");
    r.set_title("Call back");
    *r.mutable_due_at() = ToProtoTimestamp(kT0 + absl::Hours(i));
    auto task = commands_->CreateTask(r, Ctx());
    ASSERT_TRUE(task.ok()) << task.status();
    tasks.push_back(task->task_id());
  }
  ReminderLoop loop(
      *commands_, [this] { return now_; }, absl::Seconds(1));
  now_ = kT0 + absl::Hours(25);
  // The first task's reminder is written, taking it out of the due index
  // is not.
  store_->db().FailWritesForTest(2, 1);
  EXPECT_TRUE(loop.Tick().ok());
  for (const auto& id : tasks) {
    EXPECT_EQ(Types(TaskStream(id)),
              (std::vector<std::string>{"TaskCreated", "TaskReminderRaised"}));
  }
  EXPECT_EQ(Types(OpportunityStream(o.opportunity_id())),
            (std::vector<std::string>{"OpportunityOpened", "OpportunityWentStale"}));
  // The next pass decides nothing new and forgets the task.
  EXPECT_EQ(*loop.Tick(), 0);
  EXPECT_EQ(store_->DueTaskIds(now_, 10)->size(), 0u);
}

TEST_F(SalesCommandsTest, TheLoopThreadRaisesRemindersOnItsOwnAndStops) {
  Open("cus_1");
  crm::v1::CreateTaskRequest r;
  r.set_request_id("task-1");
  r.set_customer_id("cus_1");
  r.set_title("Overdue already");
  *r.mutable_due_at() = ToProtoTimestamp(kT0 - absl::Hours(1));
  auto task = commands_->CreateTask(r, Ctx());
  ASSERT_TRUE(task.ok()) << task.status();
  ReminderLoop loop(
      *commands_, [this] { return now_; }, absl::Milliseconds(10));
  loop.Start();
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (Stream(TaskStream(task->task_id())).size() < 2 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  loop.Stop();
  EXPECT_EQ(Types(TaskStream(task->task_id())),
            (std::vector<std::string>{"TaskCreated", "TaskReminderRaised"}));

  // Stopped, it raises nothing more: a task overdue since waits.
  r.set_request_id("task-2");
  auto later = commands_->CreateTask(r, Ctx());
  ASSERT_TRUE(later.ok()) << later.status();
  absl::SleepFor(absl::Milliseconds(100));  // ten of its intervals
  EXPECT_EQ(Types(TaskStream(later->task_id())), (std::vector<std::string>{"TaskCreated"}));
}

// A deal's last activity that cannot be read fails the read: the deal is
// neither shown without it nor left out of a stale listing. A command on
// the deal still answers with what it stored.
TEST_F(SalesCommandsTest, AnUnreadableLastActivityFailsTheReadInsteadOfSkippingTheDeal) {
  Open("cus_1");
  auto o = OpenOpp("cus_1", "opp-1");
  now_ = kT0 + absl::Hours(25);
  crm::v1::ListOpportunitiesRequest stale;
  stale.set_stale_only(true);
  ASSERT_EQ(commands_->ListOpportunities(stale)->opportunities_size(), 1);

  store_->db().FailReadsForTest(kLastActivityFamily);
  EXPECT_EQ(commands_->ListOpportunities(stale).status().code(), absl::StatusCode::kUnavailable);
  crm::v1::GetOpportunityRequest get;
  get.set_opportunity_id(o.opportunity_id());
  EXPECT_EQ(commands_->GetOpportunity(get).status().code(), absl::StatusCode::kUnavailable);
  // A change is stored all the same and answered without the activity: a
  // failure would have the caller make it again.
  auto moved = Move(o, "needs_analysis", "m-unreadable");
  ASSERT_TRUE(moved.ok()) << moved.status();
  EXPECT_EQ(moved->stage_id(), "needs_analysis");
  store_->db().FailReadsForTest("");
  EXPECT_TRUE(commands_->GetOpportunity(get).ok());
}

// Deals gone stale at once are flagged a bounded number per pass, the rest
// at the next ticks, not after the next scan interval.
TEST_F(SalesCommandsTest, AStaleScanFlagsABoundedNumberOfDealsPerPassAndGoesOnAtTheNextTick) {
  Open("cus_1");
  std::vector<std::string> opps;
  for (int i = 1; i <= 3; ++i)
    opps.push_back(OpenOpp("cus_1", absl::StrCat("opp-", i)).opportunity_id());
  ReminderLoop loop(
      *commands_, [this] { return now_; }, absl::Seconds(1), absl::Hours(1),
      /*stale_flags_per_pass=*/2);
  now_ = kT0 + absl::Hours(25);
  EXPECT_EQ(*loop.Tick(), 2);
  EXPECT_EQ(*loop.Tick(), 1) << "the rest, before the scan interval is up";
  EXPECT_EQ(*loop.Tick(), 0);
  for (const auto& id : opps) {
    EXPECT_EQ(Types(OpportunityStream(id)),
              (std::vector<std::string>{"OpportunityOpened", "OpportunityWentStale"}));
  }
}

// A bounded pass whose flags all fail (the disk refusing writes) waits for
// the scan interval instead of rescanning every tick, and the next pass
// starts after the deals it tried, so they do not hold back the rest.
TEST_F(SalesCommandsTest, AStaleScanWhoseFlagsFailWaitsAndThenTriesTheOtherDealsFirst) {
  Open("cus_1");
  std::vector<std::string> opps;
  for (int i = 1; i <= 3; ++i) {
    opps.push_back(OpenOpp("cus_1", absl::StrCat("opp-", i)).opportunity_id());
  }
  std::sort(opps.begin(), opps.end());
  ReminderLoop loop(
      *commands_, [this] { return now_; }, absl::Seconds(1), absl::Hours(1),
      /*stale_flags_per_pass=*/2);
  now_ = kT0 + absl::Hours(25);
  store_->db().FailWritesForTest(1, 2);
  EXPECT_EQ(*loop.Tick(), 0);
  EXPECT_EQ(*loop.Tick(), 0) << "no rescan before the interval";
  now_ += absl::Hours(2);
  EXPECT_EQ(*loop.Tick(), 2);
  EXPECT_EQ(Types(OpportunityStream(opps[2])),
            (std::vector<std::string>{"OpportunityOpened", "OpportunityWentStale"}))
      << "the deal not tried before comes first";
  EXPECT_EQ(*loop.Tick(), 1);
  for (const auto& id : opps) {
    EXPECT_EQ(Types(OpportunityStream(id)),
              (std::vector<std::string>{"OpportunityOpened", "OpportunityWentStale"}));
  }
}

// One deal whose last activity cannot be read does not keep the others
// from being flagged; it is flagged once it reads again.
TEST_F(SalesCommandsTest, ADealWhoseLastActivityCannotBeReadDoesNotHoldBackTheOthers) {
  Open("cus_1");
  const std::string unreadable = OpenOpp("cus_1", "opp-1").opportunity_id();
  const std::string readable = OpenOpp("cus_1", "opp-2").opportunity_id();
  ReminderLoop loop(
      *commands_, [this] { return now_; }, absl::Seconds(1), absl::Hours(1),
      /*stale_flags_per_pass=*/10);
  now_ = kT0 + absl::Hours(25);
  store_->db().FailReadsForTest(kLastActivityFamily, unreadable);
  auto raised = loop.Tick();
  ASSERT_TRUE(raised.ok()) << raised.status();
  EXPECT_EQ(*raised, 1);
  EXPECT_EQ(Types(OpportunityStream(readable)),
            (std::vector<std::string>{"OpportunityOpened", "OpportunityWentStale"}));
  EXPECT_EQ(Types(OpportunityStream(unreadable)), (std::vector<std::string>{"OpportunityOpened"}));
  store_->db().FailReadsForTest("");
  now_ += absl::Hours(2);
  EXPECT_EQ(*loop.Tick(), 1);
  EXPECT_EQ(Types(OpportunityStream(unreadable)),
            (std::vector<std::string>{"OpportunityOpened", "OpportunityWentStale"}));
}

TEST_F(SalesCommandsTest, StaleDealsRaiseOneReminderPerPeriodWithoutActivity) {
  Open("cus_1");
  auto o = OpenOpp("cus_1", "opp-1");
  ReminderLoop loop(
      *commands_, [this] { return now_; }, absl::Seconds(1));
  crm::v1::ListOpportunitiesRequest stale;
  stale.set_stale_only(true);

  now_ = kT0 + absl::Hours(23);
  EXPECT_EQ(*loop.Tick(), 0);
  EXPECT_EQ(commands_->ListOpportunities(stale)->opportunities_size(), 0);
  now_ = kT0 + absl::Hours(25);
  EXPECT_EQ(*loop.Tick(), 1);
  EXPECT_EQ(*loop.Tick(), 0);
  EXPECT_EQ(commands_->ListOpportunities(stale)->opportunities_size(), 1);
  EXPECT_EQ(Types(OpportunityStream(o.opportunity_id())),
            (std::vector<std::string>{"OpportunityOpened", "OpportunityWentStale"}));

  crm::v1::LogActivityRequest call;
  call.set_request_id("call-1");
  call.set_opportunity_id(o.opportunity_id());
  call.set_kind(crm::v1::ACTIVITY_KIND_CALL);
  call.set_subject("Follow-up");
  crm::v1::GetOpportunityRequest get;
  get.set_opportunity_id(o.opportunity_id());
  EXPECT_TRUE(commands_->GetOpportunity(get)->has_stale_since());
  ASSERT_TRUE(commands_->LogActivity(call, Ctx()).ok());
  EXPECT_EQ(commands_->ListOpportunities(stale)->opportunities_size(), 0);
  EXPECT_FALSE(commands_->GetOpportunity(get)->has_stale_since()) << "answered by the call";
  now_ += absl::Hours(24);
  EXPECT_EQ(*loop.Tick(), 1);
  EXPECT_EQ(Stream(OpportunityStream(o.opportunity_id())).size(), 3u);
}

// The stale reminder is the timer's note, not someone's change: a rep who
// read the deal before it saves without a version conflict, while a real
// change in between still conflicts.
TEST_F(SalesCommandsTest, AStaleReminderIsNoVersionConflictForTheRepsSave) {
  Open("cus_1");
  auto o = OpenOpp("cus_1", "opp-1");
  ReminderLoop loop(
      *commands_, [this] { return now_; }, absl::Seconds(1));
  now_ = kT0 + absl::Hours(25);
  ASSERT_EQ(*loop.Tick(), 1);

  crm::v1::ReviseOpportunityRequest r;
  r.set_request_id("rev-after-reminder");
  r.set_opportunity_id(o.opportunity_id());
  r.set_expected_version(o.version());  // read before the reminder
  r.set_name("Renamed");
  auto revised = commands_->ReviseOpportunity(r, Ctx());
  ASSERT_TRUE(revised.ok()) << revised.status();
  EXPECT_EQ(revised->name(), "Renamed");
  EXPECT_EQ(revised->version(), o.version() + 2);

  r.set_request_id("rev-stale-read");  // read before the rename
  r.set_name("Renamed again");
  EXPECT_EQ(commands_->ReviseOpportunity(r, Ctx()).status().code(), absl::StatusCode::kAborted);
}

// A call logged after the reminder with an earlier occurred_at (written up
// late) falls in the inactivity the reminder covered: no second reminder,
// and the reminder is still the deal's.
TEST_F(SalesCommandsTest, ABackdatedActivityRaisesNoSecondStaleReminder) {
  Open("cus_1");
  auto o = OpenOpp("cus_1", "opp-1");
  ReminderLoop loop(
      *commands_, [this] { return now_; }, absl::Seconds(1));
  now_ = kT0 + absl::Hours(25);
  ASSERT_EQ(*loop.Tick(), 1);

  crm::v1::LogActivityRequest call;
  call.set_request_id("call-late");
  call.set_opportunity_id(o.opportunity_id());
  call.set_kind(crm::v1::ACTIVITY_KIND_CALL);
  call.set_subject("Intro call, written up late");
  *call.mutable_occurred_at() = ToProtoTimestamp(kT0 + absl::Hours(1));
  ASSERT_TRUE(commands_->LogActivity(call, Ctx()).ok());
  now_ += absl::Minutes(5);
  EXPECT_EQ(*loop.Tick(), 0);
  EXPECT_EQ(Types(OpportunityStream(o.opportunity_id())),
            (std::vector<std::string>{"OpportunityOpened", "OpportunityWentStale"}));
  crm::v1::GetOpportunityRequest get;
  get.set_opportunity_id(o.opportunity_id());
  EXPECT_TRUE(commands_->GetOpportunity(get)->has_stale_since());
  crm::v1::ListOpportunitiesRequest stale;
  stale.set_stale_only(true);
  EXPECT_EQ(commands_->ListOpportunities(stale)->opportunities_size(), 1);

  // An activity after the reminder answers it; the next one comes after a
  // whole period without activity.
  call.set_request_id("call-now");
  *call.mutable_occurred_at() = ToProtoTimestamp(now_);
  ASSERT_TRUE(commands_->LogActivity(call, Ctx()).ok());
  EXPECT_FALSE(commands_->GetOpportunity(get)->has_stale_since());
  now_ += absl::Hours(23);
  EXPECT_EQ(*loop.Tick(), 0);
  now_ += absl::Hours(2);
  EXPECT_EQ(*loop.Tick(), 1);

  // Written up late, but less than a period before that reminder: a new
  // inactivity, reminded of once it has lasted a period.
  call.set_request_id("call-late-2");
  *call.mutable_occurred_at() = ToProtoTimestamp(now_ - absl::Hours(1));
  ASSERT_TRUE(commands_->LogActivity(call, Ctx()).ok());
  EXPECT_FALSE(commands_->GetOpportunity(get)->has_stale_since());
  EXPECT_EQ(commands_->ListOpportunities(stale)->opportunities_size(), 0);
  now_ += absl::Hours(22);
  EXPECT_EQ(*loop.Tick(), 0);
  now_ += absl::Hours(2);
  EXPECT_EQ(*loop.Tick(), 1);
}

crm::v1::DraftQuoteRequest QuoteFor(const std::string& opportunity_id, int64_t unit_price) {
  crm::v1::DraftQuoteRequest r;
  r.set_request_id("quote-1");
  r.set_opportunity_id(opportunity_id);
  r.set_currency("EUR");
  auto* line = r.add_lines();
  line->set_product_id("engine");
  line->set_quantity(2);
  *line->mutable_unit_price() = MakeMoney("EUR", unit_price);
  line->set_discount_bps(500);
  line->set_tax_rate_bps(2000);
  return r;
}

// A quote of the opportunity, accepted and ordered.
absl::StatusOr<crm::v1::Order> OrderedQuote(SalesCommands& commands,
                                            const std::string& opportunity_id,
                                            const EventContext& ctx) {
  CRM_ASSIGN_OR_RETURN(auto quote, commands.DraftQuote(QuoteFor(opportunity_id, 500'000), ctx));
  crm::v1::AcceptQuoteRequest accept;
  accept.set_request_id("accept-" + quote.quote_id());
  accept.set_quote_id(quote.quote_id());
  CRM_RETURN_IF_ERROR(commands.AcceptQuote(accept, ctx).status());
  crm::v1::PlaceOrderRequest place;
  place.set_request_id("order-" + quote.quote_id());
  place.set_quote_id(quote.quote_id());
  return commands.PlaceOrder(place, ctx);
}

// Quote, acceptance, order and contract on the opportunity, then the
// contract submitted by `submitter`.
absl::StatusOr<crm::v1::Contract> SubmittedContract(SalesCommands& commands,
                                                    const std::string& opportunity_id,
                                                    const EventContext& ctx,
                                                    const EventContext& submitter,
                                                    const std::string& terms = "") {
  CRM_ASSIGN_OR_RETURN(auto order, OrderedQuote(commands, opportunity_id, ctx));
  crm::v1::DraftContractRequest draft;
  draft.set_request_id("contract-" + order.quote_id());
  draft.set_order_id(order.order_id());
  draft.set_start_date("2025-04-01");
  draft.set_terms(terms);
  CRM_ASSIGN_OR_RETURN(auto contract, commands.DraftContract(draft, ctx));
  crm::v1::SubmitContractRequest submit;
  submit.set_request_id("submit-" + order.quote_id());
  submit.set_contract_id(contract.contract_id());
  return commands.SubmitContract(submit, submitter);
}

// A revised quote does not retire the first: once one is accepted, the
// other cannot be, or the deal would be ordered and invoiced twice.
TEST_F(SalesCommandsTest, ADealAcceptsOneQuote) {
  Open("cus_1");
  auto o = OpenOpp("cus_1", "opp-1");
  auto first = commands_->DraftQuote(QuoteFor(o.opportunity_id(), 500'000), Ctx());
  ASSERT_TRUE(first.ok()) << first.status();
  auto revised_request = QuoteFor(o.opportunity_id(), 450'000);
  revised_request.set_request_id("quote-revised");
  auto revised = commands_->DraftQuote(revised_request, Ctx());
  ASSERT_TRUE(revised.ok()) << revised.status();
  crm::v1::AcceptQuoteRequest accept;
  accept.set_request_id("accept-revised");
  accept.set_quote_id(revised->quote_id());
  ASSERT_TRUE(commands_->AcceptQuote(accept, Ctx()).ok());

  crm::v1::AcceptQuoteRequest late;
  late.set_request_id("accept-first");
  late.set_quote_id(first->quote_id());
  auto st = commands_->AcceptQuote(late, Ctx()).status();
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition) << st;
  EXPECT_EQ(st.message().rfind("quote_id:", 0), 0u) << st;
  EXPECT_EQ(Types(QuoteStream(first->quote_id())), (std::vector<std::string>{"QuoteDrafted"}));
  // The accepted one's retry is answered; the other can still be declined.
  EXPECT_TRUE(commands_->AcceptQuote(accept, Ctx()).ok());
  crm::v1::DeclineQuoteRequest decline;
  decline.set_request_id("decline-first");
  decline.set_quote_id(first->quote_id());
  decline.set_reason("superseded");
  EXPECT_TRUE(commands_->DeclineQuote(decline, Ctx()).ok());

  // A database from before the index: it is built from the quotes at start.
  rocksdb::WriteBatch forget;
  auto* family = store_->db().Family(kAcceptedQuotesFamily);
  forget.Delete(family, o.opportunity_id());
  forget.Delete(family, rocksdb::Slice("\0indexed", 8));
  ASSERT_TRUE(store_->db().Write(&forget, /*sync=*/false).ok());
  Restart();
  auto indexed = store_->AcceptedQuoteOf(o.opportunity_id());
  ASSERT_TRUE(indexed.ok()) << indexed.status();
  EXPECT_EQ(indexed->value_or(""), revised->quote_id());
}

TEST_F(SalesCommandsTest, QuoteToOrderToApprovedContractRequestsInvoiceAndFulfilment) {
  Open("cus_1");
  auto o = OpenOpp("cus_1", "opp-1");
  auto quote = commands_->DraftQuote(QuoteFor(o.opportunity_id(), 500'000), Ctx());
  ASSERT_TRUE(quote.ok()) << quote.status();
  EXPECT_EQ(quote->customer_id(), "cus_1");
  // 2 x 5 000.00 = 10 000.00, -5 % = 9 500.00, +20 % = 11 400.00
  EXPECT_EQ(quote->totals().total().minor_units(), 1'140'000);

  crm::v1::PlaceOrderRequest place;
  place.set_request_id("order-1");
  place.set_quote_id(quote->quote_id());
  EXPECT_EQ(commands_->PlaceOrder(place, Ctx()).status().code(),
            absl::StatusCode::kFailedPrecondition);
  crm::v1::AcceptQuoteRequest accept;
  accept.set_request_id("accept-1");
  accept.set_quote_id(quote->quote_id());
  ASSERT_TRUE(commands_->AcceptQuote(accept, Ctx()).ok());
  place.set_request_id("order-2");
  auto order = commands_->PlaceOrder(place, Ctx());
  ASSERT_TRUE(order.ok()) << order.status();
  EXPECT_EQ(order->totals().total().minor_units(), 1'140'000);
  place.set_request_id("order-3");
  EXPECT_EQ(commands_->PlaceOrder(place, Ctx()).status().code(), absl::StatusCode::kAlreadyExists);

  crm::v1::DraftContractRequest draft;
  draft.set_request_id("contract-1");
  draft.set_order_id(order->order_id());
  draft.set_start_date("2025-04-01");
  auto contract = commands_->DraftContract(draft, Ctx());
  ASSERT_TRUE(contract.ok()) << contract.status();
  crm::v1::SubmitContractRequest submit;
  submit.set_request_id("submit-1");
  submit.set_contract_id(contract->contract_id());
  ASSERT_TRUE(commands_->SubmitContract(submit, Ctx()).ok());
  crm::v1::ApproveContractRequest approve;
  approve.set_request_id("approve-1");
  approve.set_contract_id(contract->contract_id());
  EXPECT_EQ(commands_->ApproveContract(approve, Ctx(), {"sales_rep"}).status().code(),
            absl::StatusCode::kPermissionDenied);
  auto approved = commands_->ApproveContract(approve, Ctx("mgr_grace"), {"sales_manager"});
  ASSERT_TRUE(approved.ok()) << approved.status();
  EXPECT_EQ(approved->status(), crm::v1::CONTRACT_STATUS_APPROVED);
  EXPECT_EQ(approved->decided_by(), "mgr_grace");

  const auto events = Stream(ContractStream(contract->contract_id()));
  std::vector<std::string> types;
  for (const auto& e : events) types.push_back(e.type());
  EXPECT_EQ(types,
            (std::vector<std::string>{"ContractDrafted", "ContractSubmitted", "ContractApproved",
                                      "InvoiceRequested", "FulfilmentRequested"}));
  crm::v1::InvoiceRequested invoice;
  ASSERT_TRUE(events[3].payload().UnpackTo(&invoice));
  EXPECT_EQ(invoice.totals().total().minor_units(), 1'140'000);
  EXPECT_EQ(invoice.order_id(), order->order_id());
  EXPECT_EQ(events[3].customer_id(), "cus_1");
  // Approval retried: same result, nothing appended.
  const uint64_t before = store_->events().LogSize();
  EXPECT_TRUE(commands_->ApproveContract(approve, Ctx("mgr_grace"), {"sales_manager"}).ok());
  EXPECT_EQ(store_->events().LogSize(), before);
}

// A deal the pipeline counts as lost is neither quoted nor ordered from an
// open quote; a quote accepted before it was lost keeps its answer.
TEST_F(SalesCommandsTest, ALostDealIsNotQuotedAndItsOpenQuoteNotAccepted) {
  Open("cus_1");
  auto o = OpenOpp("cus_1", "opp-1");
  auto quote = commands_->DraftQuote(QuoteFor(o.opportunity_id(), 500'000), Ctx());
  ASSERT_TRUE(quote.ok()) << quote.status();
  auto lost = Move(o, "lost", "move-1", "went with a competitor");
  ASSERT_TRUE(lost.ok()) << lost.status();
  const uint64_t before = store_->events().LogSize();

  auto again = QuoteFor(o.opportunity_id(), 400'000);
  again.set_request_id("quote-2");
  auto st = commands_->DraftQuote(again, Ctx()).status();
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition) << st;
  EXPECT_EQ(st.message().substr(0, 15), "opportunity_id:") << st;
  crm::v1::AcceptQuoteRequest accept;
  accept.set_request_id("accept-1");
  accept.set_quote_id(quote->quote_id());
  st = commands_->AcceptQuote(accept, Ctx()).status();
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition) << st;
  // The caller's own mistakes are named first, as for any quote.
  accept.clear_request_id();
  st = commands_->AcceptQuote(accept, Ctx()).status();
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;
  EXPECT_TRUE(absl::StartsWith(st.message(), "request_id:")) << st;
  accept.set_request_id("move-1");  // taken by another method: fine
  EXPECT_EQ(commands_->AcceptQuote(accept, Ctx()).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(store_->events().LogSize(), before);
}

// The forecast counts the deal's amount and the invoice the quote's total:
// they are in one currency, at the draft and again at the acceptance.
TEST_F(SalesCommandsTest, ADealIsQuotedInTheCurrencyOfItsAmount) {
  Open("cus_1");
  auto o = OpenOpp("cus_1", "opp-1");  // EUR
  const uint64_t before = store_->events().LogSize();
  auto in_usd = QuoteFor(o.opportunity_id(), 500'000);
  in_usd.set_currency("USD");
  in_usd.mutable_lines(0)->mutable_unit_price()->set_currency("USD");
  auto st = commands_->DraftQuote(in_usd, Ctx()).status();
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition) << st;
  EXPECT_TRUE(absl::StartsWith(st.message(), "currency:")) << st;
  EXPECT_EQ(store_->events().LogSize(), before);

  auto quote = commands_->DraftQuote(QuoteFor(o.opportunity_id(), 500'000), Ctx());
  ASSERT_TRUE(quote.ok()) << quote.status();
  crm::v1::ReviseOpportunityRequest revise;
  revise.set_request_id("rev-1");
  revise.set_opportunity_id(o.opportunity_id());
  revise.set_expected_version(o.version());
  *revise.mutable_amount() = MakeMoney("USD", 1'100'000);
  auto revised_deal = commands_->ReviseOpportunity(revise, Ctx());
  ASSERT_TRUE(revised_deal.ok()) << revised_deal.status();
  crm::v1::AcceptQuoteRequest accept;
  accept.set_request_id("accept-1");
  accept.set_quote_id(quote->quote_id());
  const uint64_t revised = store_->events().LogSize();
  st = commands_->AcceptQuote(accept, Ctx()).status();
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition) << st;
  EXPECT_TRUE(absl::StartsWith(st.message(), "quote_id:")) << st;
  EXPECT_EQ(store_->events().LogSize(), revised);

  // Revised back, the quote is accepted.
  revise.set_request_id("rev-2");
  revise.set_expected_version(revised_deal->version());
  *revise.mutable_amount() = MakeMoney("EUR", 1'100'000);
  ASSERT_TRUE(commands_->ReviseOpportunity(revise, Ctx()).ok());
  accept.set_request_id("accept-2");
  auto accepted = commands_->AcceptQuote(accept, Ctx());
  ASSERT_TRUE(accepted.ok()) << accepted.status();
  EXPECT_EQ(accepted->status(), crm::v1::QUOTE_STATUS_ACCEPTED);

  // Nor is it ordered while the deal's amount is in another currency.
  revise.set_request_id("rev-3");
  revise.set_expected_version(revise.expected_version() + 1);
  *revise.mutable_amount() = MakeMoney("USD", 1'100'000);
  revised_deal = commands_->ReviseOpportunity(revise, Ctx());
  ASSERT_TRUE(revised_deal.ok()) << revised_deal.status();
  crm::v1::PlaceOrderRequest place;
  place.set_request_id("order-1");
  place.set_quote_id(quote->quote_id());
  st = commands_->PlaceOrder(place, Ctx()).status();
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition) << st;
  EXPECT_TRUE(absl::StartsWith(st.message(), "quote_id:")) << st;
}

// Once ordered, the deal's amount stays in the order's currency: the
// forecast would count the win in one currency and the invoice bill another.
TEST_F(SalesCommandsTest, AnOrderedDealKeepsItsCurrency) {
  Open("cus_1");
  auto o = OpenOpp("cus_1", "opp-1");  // EUR
  auto order = OrderedQuote(*commands_, o.opportunity_id(), Ctx());
  ASSERT_TRUE(order.ok()) << order.status();

  crm::v1::ReviseOpportunityRequest revise;
  revise.set_request_id("rev-usd");
  revise.set_opportunity_id(o.opportunity_id());
  revise.set_expected_version(o.version());
  *revise.mutable_amount() = MakeMoney("USD", 1'200'000);
  const uint64_t before = store_->events().LogSize();
  auto st = commands_->ReviseOpportunity(revise, Ctx()).status();
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition) << st;
  EXPECT_TRUE(absl::StartsWith(st.message(), "amount.currency:")) << st;
  EXPECT_EQ(store_->events().LogSize(), before);

  // In the order's currency the amount is revised.
  revise.set_request_id("rev-eur");
  *revise.mutable_amount() = MakeMoney("EUR", 1'200'000);
  auto revised = commands_->ReviseOpportunity(revise, Ctx());
  ASSERT_TRUE(revised.ok()) << revised.status();
  EXPECT_EQ(revised->amount().minor_units(), 1'200'000);
}

// A quote accepted before its deal was lost is not ordered (nor invoiced)
// while the deal stays lost; reopened, it is.
TEST_F(SalesCommandsTest, AnAcceptedQuoteOfALostDealIsNotOrderedUntilTheDealIsReopened) {
  Open("cus_1");
  auto o = OpenOpp("cus_1", "opp-1");
  auto quote = commands_->DraftQuote(QuoteFor(o.opportunity_id(), 500'000), Ctx());
  ASSERT_TRUE(quote.ok()) << quote.status();
  crm::v1::AcceptQuoteRequest accept;
  accept.set_request_id("accept-1");
  accept.set_quote_id(quote->quote_id());
  ASSERT_TRUE(commands_->AcceptQuote(accept, Ctx()).ok());
  auto lost = Move(o, "lost", "move-1", "budget cut");
  ASSERT_TRUE(lost.ok()) << lost.status();
  const uint64_t before = store_->events().LogSize();

  crm::v1::PlaceOrderRequest place;
  place.set_request_id("order-1");
  place.set_quote_id(quote->quote_id());
  auto st = commands_->PlaceOrder(place, Ctx()).status();
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition) << st;
  EXPECT_TRUE(absl::StartsWith(st.message(), "opportunity_id:")) << st;
  EXPECT_EQ(store_->events().LogSize(), before);

  auto reopened = Move(*lost, "proposal", "move-2");
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  auto order = commands_->PlaceOrder(place, Ctx());
  ASSERT_TRUE(order.ok()) << order.status();
  EXPECT_EQ(order->quote_id(), quote->quote_id());
  // Lost again: a retry of the order placed keeps its answer.
  ASSERT_TRUE(Move(*reopened, "lost", "move-3", "budget cut again").ok());
  auto retried = commands_->PlaceOrder(place, Ctx());
  ASSERT_TRUE(retried.ok()) << retried.status();
  EXPECT_EQ(retried->order_id(), order->order_id());
}

// A deal lost and reopened may accept a new quote (re-priced); the quote
// accepted before it was lost is then no longer the one ordered.
TEST_F(SalesCommandsTest, AReopenedDealAcceptsANewQuoteAndOrdersOnlyIt) {
  Open("cus_1");
  auto o = OpenOpp("cus_1", "opp-1");
  auto old_quote = commands_->DraftQuote(QuoteFor(o.opportunity_id(), 500'000), Ctx());
  ASSERT_TRUE(old_quote.ok()) << old_quote.status();
  crm::v1::AcceptQuoteRequest accept;
  accept.set_request_id("accept-old");
  accept.set_quote_id(old_quote->quote_id());
  ASSERT_TRUE(commands_->AcceptQuote(accept, Ctx()).ok());
  auto lost = Move(o, "lost", "move-1", "budget cut");
  ASSERT_TRUE(lost.ok()) << lost.status();
  auto reopened = Move(*lost, "proposal", "move-2");
  ASSERT_TRUE(reopened.ok()) << reopened.status();

  auto repriced_request = QuoteFor(o.opportunity_id(), 400'000);
  repriced_request.set_request_id("quote-repriced");
  auto repriced = commands_->DraftQuote(repriced_request, Ctx());
  ASSERT_TRUE(repriced.ok()) << repriced.status();
  accept.set_request_id("accept-repriced");
  accept.set_quote_id(repriced->quote_id());
  now_ += absl::Minutes(1);  // accepted after the first, as the backfill below tells
  ASSERT_TRUE(commands_->AcceptQuote(accept, Ctx()).ok());

  crm::v1::PlaceOrderRequest place;
  place.set_request_id("order-old");
  place.set_quote_id(old_quote->quote_id());
  auto st = commands_->PlaceOrder(place, Ctx()).status();
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition) << st;
  EXPECT_EQ(st.message().rfind("quote_id:", 0), 0u) << st;

  // Lost and reopened once more: the old price is still not the one the
  // customer accepted last.
  auto lost_again = Move(*reopened, "lost", "move-3", "budget cut");
  ASSERT_TRUE(lost_again.ok()) << lost_again.status();
  ASSERT_TRUE(Move(*lost_again, "proposal", "move-4").ok());
  place.set_request_id("order-old-2");
  st = commands_->PlaceOrder(place, Ctx()).status();
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition) << st;
  EXPECT_EQ(st.message().rfind("quote_id:", 0), 0u) << st;

  // So in a database from before the last accepted quote was kept: it is
  // learnt from the quotes at start.
  rocksdb::WriteBatch older;
  auto* family = store_->db().Family(kAcceptedQuotesFamily);
  older.Delete(family, o.opportunity_id() + std::string("\0last", 5));
  older.Delete(family, rocksdb::Slice("\0indexed-3", 10));
  ASSERT_TRUE(store_->db().Write(&older, /*sync=*/false).ok());
  Restart();
  place.set_request_id("order-old-3");
  st = commands_->PlaceOrder(place, Ctx()).status();
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition) << st;

  place.set_request_id("order-repriced");
  place.set_quote_id(repriced->quote_id());
  auto ordered = commands_->PlaceOrder(place, Ctx());
  EXPECT_TRUE(ordered.ok()) << ordered.status();
}

// An ordered quote stays the deal's when the deal is lost and reopened: a
// new quote accepted and ordered would bill the deal a second time. So in
// a database from before ordered quotes were kept, which learns them from
// the orders at start, and forgets the accepted quotes of deals lost then.
TEST_F(SalesCommandsTest, AnOrderedDealLostAndReopenedAcceptsNoOtherQuote) {
  Open("cus_1");
  auto o = OpenOpp("cus_1", "opp-1");
  auto first = commands_->DraftQuote(QuoteFor(o.opportunity_id(), 500'000), Ctx());
  ASSERT_TRUE(first.ok()) << first.status();
  crm::v1::AcceptQuoteRequest accept;
  accept.set_request_id("accept-first");
  accept.set_quote_id(first->quote_id());
  ASSERT_TRUE(commands_->AcceptQuote(accept, Ctx()).ok());
  crm::v1::PlaceOrderRequest place;
  place.set_request_id("order-first");
  place.set_quote_id(first->quote_id());
  ASSERT_TRUE(commands_->PlaceOrder(place, Ctx()).ok());
  auto lost = Move(o, "lost", "move-1", "budget cut");
  ASSERT_TRUE(lost.ok()) << lost.status();
  ASSERT_TRUE(Move(*lost, "proposal", "move-2").ok());

  auto again_request = QuoteFor(o.opportunity_id(), 400'000);
  again_request.set_request_id("quote-again");
  auto again = commands_->DraftQuote(again_request, Ctx());
  ASSERT_TRUE(again.ok()) << again.status();
  accept.set_request_id("accept-again");
  accept.set_quote_id(again->quote_id());
  auto st = commands_->AcceptQuote(accept, Ctx()).status();
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition) << st;
  EXPECT_EQ(st.message().rfind("quote_id:", 0), 0u) << st;
  EXPECT_EQ(Types(QuoteStream(again->quote_id())), (std::vector<std::string>{"QuoteDrafted"}));

  // As an older database: no ordered row, and the first index's accepted
  // row of a deal lost before it.
  Open("cus_2");
  auto other = OpenOpp("cus_2", "opp-2");
  auto other_request = QuoteFor(other.opportunity_id(), 500'000);
  other_request.set_request_id("quote-other");
  auto other_quote = commands_->DraftQuote(other_request, Ctx());
  ASSERT_TRUE(other_quote.ok()) << other_quote.status();
  accept.set_request_id("accept-other");
  accept.set_quote_id(other_quote->quote_id());
  ASSERT_TRUE(commands_->AcceptQuote(accept, Ctx()).ok());
  auto other_lost = Move(other, "lost", "move-3", "went quiet");
  ASSERT_TRUE(other_lost.ok()) << other_lost.status();
  rocksdb::WriteBatch older;
  auto* family = store_->db().Family(kAcceptedQuotesFamily);
  older.Delete(family, o.opportunity_id() + std::string("\0ordered", 8));
  older.Put(family, other.opportunity_id(), other_quote->quote_id());
  older.Delete(family, rocksdb::Slice("\0indexed-2", 10));
  ASSERT_TRUE(store_->db().Write(&older, /*sync=*/false).ok());
  Restart();
  accept.set_request_id("accept-again-2");
  accept.set_quote_id(again->quote_id());
  EXPECT_EQ(commands_->AcceptQuote(accept, Ctx()).status().code(),
            absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(Move(*other_lost, "proposal", "move-4").ok());
  auto repriced_request = QuoteFor(other.opportunity_id(), 300'000);
  repriced_request.set_request_id("quote-repriced");
  auto repriced = commands_->DraftQuote(repriced_request, Ctx());
  ASSERT_TRUE(repriced.ok()) << repriced.status();
  accept.set_request_id("accept-repriced");
  accept.set_quote_id(repriced->quote_id());
  auto taken = commands_->AcceptQuote(accept, Ctx());
  EXPECT_TRUE(taken.ok()) << taken.status();
}

// An order whose deal was lost afterwards is neither contracted nor, once
// contracted, approved (approval invoices the customer) until the deal is
// reopened; an approval that went through keeps its answer.
TEST_F(SalesCommandsTest, AnOrderOfADealLostSinceIsNotContractedNorInvoiced) {
  Open("cus_1");
  auto o = OpenOpp("cus_1", "opp-1");
  auto quote = commands_->DraftQuote(QuoteFor(o.opportunity_id(), 500'000), Ctx());
  ASSERT_TRUE(quote.ok()) << quote.status();
  crm::v1::AcceptQuoteRequest accept;
  accept.set_request_id("accept-1");
  accept.set_quote_id(quote->quote_id());
  ASSERT_TRUE(commands_->AcceptQuote(accept, Ctx()).ok());
  crm::v1::PlaceOrderRequest place;
  place.set_request_id("order-1");
  place.set_quote_id(quote->quote_id());
  auto order = commands_->PlaceOrder(place, Ctx());
  ASSERT_TRUE(order.ok()) << order.status();
  auto lost = Move(o, "lost", "move-1", "budget cut");
  ASSERT_TRUE(lost.ok()) << lost.status();
  uint64_t before = store_->events().LogSize();
  // The quote is ordered, lost deal or not: a second order of it is told
  // so, not sent to reopen the deal.
  crm::v1::PlaceOrderRequest again = place;
  again.set_request_id("order-2");
  EXPECT_EQ(commands_->PlaceOrder(again, Ctx()).status().code(), absl::StatusCode::kAlreadyExists);

  crm::v1::DraftContractRequest draft;
  draft.set_request_id("contract-1");
  draft.set_order_id(order->order_id());
  draft.set_start_date("2025-04-01");
  auto st = commands_->DraftContract(draft, Ctx()).status();
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition) << st;
  EXPECT_TRUE(absl::StartsWith(st.message(), "opportunity_id:")) << st;
  EXPECT_EQ(store_->events().LogSize(), before);

  auto reopened = Move(*lost, "proposal", "move-2");
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  auto contract = commands_->DraftContract(draft, Ctx());
  ASSERT_TRUE(contract.ok()) << contract.status();
  crm::v1::SubmitContractRequest submit;
  submit.set_request_id("submit-1");
  submit.set_contract_id(contract->contract_id());
  ASSERT_TRUE(commands_->SubmitContract(submit, Ctx()).ok());
  lost = Move(*reopened, "lost", "move-3", "budget cut again");
  ASSERT_TRUE(lost.ok()) << lost.status();
  before = store_->events().LogSize();
  // The contract drafted while the deal was open keeps its answer, and a
  // second one for the order is refused as such, lost deal or not.
  auto redrafted = commands_->DraftContract(draft, Ctx());
  ASSERT_TRUE(redrafted.ok()) << redrafted.status();
  EXPECT_EQ(redrafted->contract_id(), contract->contract_id());
  crm::v1::DraftContractRequest second = draft;
  second.set_request_id("contract-2");
  EXPECT_EQ(commands_->DraftContract(second, Ctx()).status().code(),
            absl::StatusCode::kAlreadyExists);

  crm::v1::ApproveContractRequest approve;
  approve.set_request_id("approve-1");
  approve.set_contract_id(contract->contract_id());
  // One who may not approve hears that first.
  EXPECT_EQ(commands_->ApproveContract(approve, Ctx(), {"sales_rep"}).status().code(),
            absl::StatusCode::kPermissionDenied);
  st = commands_->ApproveContract(approve, Ctx("mgr_grace"), {"sales_manager"}).status();
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition) << st;
  EXPECT_TRUE(absl::StartsWith(st.message(), "opportunity_id:")) << st;
  EXPECT_EQ(store_->events().LogSize(), before) << "no invoice for a lost deal";

  reopened = Move(*lost, "proposal", "move-4");
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  auto approved = commands_->ApproveContract(approve, Ctx("mgr_grace"), {"sales_manager"});
  ASSERT_TRUE(approved.ok()) << approved.status();
  EXPECT_EQ(approved->status(), crm::v1::CONTRACT_STATUS_APPROVED);
  ASSERT_TRUE(Move(*reopened, "lost", "move-5", "lost after all").ok());
  auto retried = commands_->ApproveContract(approve, Ctx("mgr_grace"), {"sales_manager"});
  ASSERT_TRUE(retried.ok()) << retried.status();
  EXPECT_EQ(retried->status(), crm::v1::CONTRACT_STATUS_APPROVED);
}

// An acceptance racing the deal's loss: either the quote is accepted and
// then the deal lost, or the deal is lost and the acceptance refused;
// never an accepted quote the pipeline never saw the deal open for.
TEST_F(SalesCommandsTest, AQuoteIsNeverAcceptedAfterItsDealWasLost) {
  Open("cus_1");
  // The loss may win most rounds (2 of 40 in some runs): race until the
  // acceptance has won a few.
  int accepted_rounds = 0;
  for (int round = 0; round < 400 && accepted_rounds < 5; ++round) {
    auto o = OpenOpp("cus_1", absl::StrCat("opp-", round));
    auto draft = QuoteFor(o.opportunity_id(), 500'000);
    draft.set_request_id(absl::StrCat("quote-", round));
    auto quote = commands_->DraftQuote(draft, Ctx());
    ASSERT_TRUE(quote.ok()) << quote.status();
    crm::v1::AcceptQuoteRequest accept;
    accept.set_request_id(absl::StrCat("accept-", round));
    accept.set_quote_id(quote->quote_id());
    absl::StatusOr<crm::v1::Quote> accepted;
    std::latch start(2);
    std::thread acceptor([&] {
      start.arrive_and_wait();
      accepted = commands_->AcceptQuote(accept, Ctx());
    });
    start.arrive_and_wait();
    auto lost = Move(o, "lost", absl::StrCat("lose-", round), "went elsewhere");
    acceptor.join();
    ASSERT_TRUE(lost.ok()) << lost.status();
    if (!accepted.ok()) {
      EXPECT_EQ(accepted.status().code(), absl::StatusCode::kFailedPrecondition);
      continue;
    }
    // Accepted: the acceptance is in the log before the loss.
    auto log = store_->events().ReadOutbox(1, 1'000'000);
    ASSERT_TRUE(log.ok()) << log.status();
    uint64_t accepted_at = 0, lost_at = 0;
    for (const auto& entry : *log) {
      if (entry.envelope.stream() == QuoteStream(quote->quote_id()) &&
          entry.envelope.type() == "QuoteAccepted") {
        accepted_at = entry.position;
      }
      if (entry.envelope.stream() == OpportunityStream(o.opportunity_id()) &&
          entry.envelope.type() == "OpportunityStageChanged") {
        lost_at = entry.position;
      }
    }
    ASSERT_NE(accepted_at, 0u);
    ASSERT_NE(lost_at, 0u);
    EXPECT_LT(accepted_at, lost_at) << "round " << round;
    ++accepted_rounds;
  }
  // The order above is only checked on rounds the acceptance won.
  EXPECT_GT(accepted_rounds, 0) << "the loss won every round";
}

// Terms are free text about the deal and may name the person: sealed
// with the customer's key like activity notes, in the log and the topics.
TEST_F(SalesCommandsTest, ContractTermsAreSealedWithTheCustomersKey) {
  auto vault = pii::KeyVault::Open(store_->db(), &store_->events(), pii::RandomKey(), kSalesSource);
  ASSERT_TRUE(vault.ok()) << vault.status();
  commands_->SealPiiWith(**vault);
  Open("cus_1");
  auto o = OpenOpp("cus_1", "opp-1");
  const std::string terms = "Deliver to Ann Smith, 12 High Street";
  auto contract = SubmittedContract(*commands_, o.opportunity_id(), Ctx(), Ctx(), terms);
  ASSERT_TRUE(contract.ok()) << contract.status();
  EXPECT_TRUE(pii::IsSealed(contract->terms())) << contract->terms();
  auto drafted = Stream(ContractStream(contract->contract_id()));
  ASSERT_FALSE(drafted.empty());
  EXPECT_EQ(drafted[0].type(), "ContractDrafted");
  for (const auto& e : drafted) {
    EXPECT_EQ(e.SerializeAsString().find("High Street"), std::string::npos) << e.type();
  }
  crm::v1::Contract read = *contract;
  pii::OpenFields(read, **vault);
  EXPECT_EQ(read.terms(), terms);
}

TEST_F(SalesCommandsTest, AManagerDoesNotApproveTheContractTheySubmitted) {
  Open("cus_1");
  auto o = OpenOpp("cus_1", "opp-1");
  auto contract = SubmittedContract(*commands_, o.opportunity_id(), Ctx(), Ctx("mgr_grace"));
  ASSERT_TRUE(contract.ok()) << contract.status();

  const uint64_t before = store_->events().LogSize();
  crm::v1::ApproveContractRequest approve;
  approve.set_request_id("approve-1");
  approve.set_contract_id(contract->contract_id());
  EXPECT_EQ(
      commands_->ApproveContract(approve, Ctx("mgr_grace"), {"sales_manager"}).status().code(),
      absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(store_->events().LogSize(), before);
  approve.set_request_id("approve-2");
  auto approved = commands_->ApproveContract(approve, Ctx("mgr_alan"), {"sales_manager"});
  ASSERT_TRUE(approved.ok()) << approved.status();
  EXPECT_EQ(approved->decided_by(), "mgr_alan");
}

TEST_F(SalesCommandsTest, AQuoteOverTheMoneyLimitIsRefusedAndAppendsNothing) {
  Open("cus_1");
  auto o = OpenOpp("cus_1", "opp-1");
  const uint64_t before = store_->events().LogSize();
  // Each line within bounds; the total 2 x 6 x 10^14 reaches 10^15.
  auto r = QuoteFor(o.opportunity_id(), 10'000'000'000);
  r.mutable_lines(0)->set_quantity(60'000);
  r.mutable_lines(0)->set_discount_bps(0);
  r.mutable_lines(0)->set_tax_rate_bps(0);
  *r.add_lines() = r.lines(0);
  auto st = commands_->DraftQuote(r, Ctx()).status();
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;
  EXPECT_EQ(st.message().substr(0, 6), "lines:") << st;
  EXPECT_EQ(store_->events().LogSize(), before);
}

TEST_F(SalesCommandsTest, AQuoteValidUntilADayPastIsRefusedAndAppendsNothing) {
  Open("cus_1");
  auto o = OpenOpp("cus_1", "opp-1");
  const uint64_t before = store_->events().LogSize();
  auto r = QuoteFor(o.opportunity_id(), 500'000);
  r.set_valid_until("2025-03-02");  // the day before kT0
  auto st = commands_->DraftQuote(r, Ctx()).status();
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;
  EXPECT_EQ(st.message(), "valid_until: in the past");
  EXPECT_EQ(store_->events().LogSize(), before);
  r.set_request_id("quote-2");
  r.set_valid_until("2025-03-03");
  auto quote = commands_->DraftQuote(r, Ctx());
  ASSERT_TRUE(quote.ok()) << quote.status();
  EXPECT_EQ(quote->valid_until(), "2025-03-03");
}

TEST_F(SalesCommandsTest, MissingRecordsAreNotFoundNamingFieldAndId) {
  Open("cus_1");
  auto o = OpenOpp("cus_1", "opp-1");
  auto message_of = [](const absl::Status& st) {
    EXPECT_EQ(st.code(), absl::StatusCode::kNotFound) << st;
    return std::string(st.message());
  };
  crm::v1::AcceptQuoteRequest accept;
  accept.set_request_id("accept-1");
  accept.set_quote_id("quo_missing");
  EXPECT_EQ(message_of(commands_->AcceptQuote(accept, Ctx()).status()),
            "quote_id: quote quo_missing not found");
  crm::v1::DeclineQuoteRequest decline;
  decline.set_request_id("decline-1");
  decline.set_quote_id("quo_missing");
  EXPECT_EQ(message_of(commands_->DeclineQuote(decline, Ctx()).status()),
            "quote_id: quote quo_missing not found");
  crm::v1::SubmitContractRequest submit;
  submit.set_request_id("submit-1");
  submit.set_contract_id("ctr_missing");
  EXPECT_EQ(message_of(commands_->SubmitContract(submit, Ctx()).status()),
            "contract_id: contract ctr_missing not found");
  crm::v1::ApproveContractRequest approve;
  approve.set_request_id("approve-1");
  approve.set_contract_id("ctr_missing");
  EXPECT_EQ(
      message_of(commands_->ApproveContract(approve, Ctx("mgr_grace"), {"sales_manager"}).status()),
      "contract_id: contract ctr_missing not found");
  // Roles are still checked first: an unauthorized caller learns nothing.
  EXPECT_EQ(commands_->ApproveContract(approve, Ctx(), {"sales_rep"}).status().code(),
            absl::StatusCode::kPermissionDenied);
  crm::v1::CompleteTaskRequest complete;
  complete.set_request_id("complete-1");
  complete.set_task_id("task_missing");
  EXPECT_EQ(message_of(commands_->CompleteTask(complete, Ctx()).status()),
            "task_id: task task_missing not found");
  crm::v1::Opportunity missing = o;
  missing.set_opportunity_id("opp_missing");
  EXPECT_EQ(message_of(Move(missing, "needs_analysis", "move-1").status()),
            "opportunity_id: opportunity opp_missing not found");
  crm::v1::ReviseOpportunityRequest revise;
  revise.set_request_id("revise-1");
  revise.set_opportunity_id("opp_missing");
  revise.set_expected_version(1);
  revise.set_name("Engines");
  EXPECT_EQ(message_of(commands_->ReviseOpportunity(revise, Ctx()).status()),
            "opportunity_id: opportunity opp_missing not found");
  // Records read to act on another one.
  crm::v1::PlaceOrderRequest place;
  place.set_request_id("order-1");
  place.set_quote_id("quo_missing");
  EXPECT_EQ(message_of(commands_->PlaceOrder(place, Ctx()).status()),
            "quote_id: quote quo_missing not found");
  crm::v1::DraftContractRequest draft;
  draft.set_request_id("contract-1");
  draft.set_order_id("ord_missing");
  draft.set_start_date("2025-04-01");
  EXPECT_EQ(message_of(commands_->DraftContract(draft, Ctx()).status()),
            "order_id: order ord_missing not found");
  crm::v1::OpenOpportunityRequest open;
  open.set_request_id("open-opp-missing");
  open.set_customer_id("cus_missing");
  open.set_name("Engines");
  *open.mutable_amount() = MakeMoney("EUR", 1'000'000);
  open.set_expected_close_date("2025-06-30");
  EXPECT_EQ(message_of(commands_->OpenOpportunity(open, Ctx()).status()),
            "customer_id: customer cus_missing not found");
  crm::v1::GetOpportunityRequest get;
  get.set_opportunity_id("opp_missing");
  EXPECT_EQ(message_of(commands_->GetOpportunity(get).status()),
            "opportunity_id: opportunity opp_missing not found");
}

TEST_F(SalesCommandsTest, InvoiceRequestedCountsTowardsLoyaltyOnceAndUpgradesTheTier) {
  Open("cus_1");
  auto o = OpenOpp("cus_1", "opp-1");
  auto contract = SubmittedContract(*commands_, o.opportunity_id(), Ctx(), Ctx());
  ASSERT_TRUE(contract.ok()) << contract.status();
  crm::v1::ApproveContractRequest approve;
  approve.set_request_id("ok");
  approve.set_contract_id(contract->contract_id());
  ASSERT_TRUE(commands_->ApproveContract(approve, Ctx("mgr_grace"), {"sales_manager"}).ok());

  // Our own events come back from crm.sales.v1 to the reactions.
  std::vector<ConsumedMessage> topic;
  int64_t offset = 0;
  for (const auto& e : Stream(ContractStream(contract->contract_id()))) {
    topic.push_back({kSalesTopic, 0, offset++, e.SerializeAsString()});
  }
  ASSERT_TRUE(subscriber_->ApplyBatch(topic).ok());
  crm::v1::EventEnvelope invoice = Stream(ContractStream(contract->contract_id()))[3];
  ProjectionTxn txn(store_->db());
  ASSERT_TRUE(reactions_->Apply(invoice, txn).ok());  // redelivered

  crm::v1::GetCustomerRequest get;
  get.set_customer_id("cus_1");
  auto customer = commands_->GetCustomer(get);
  EXPECT_EQ(customer->cumulative_spend().at("EUR"), 1'140'000);
  EXPECT_EQ(customer->tier(), "silver");  // 11 400.00 EUR crosses 10 000.00
  EXPECT_EQ(
      Types(CustomerStream("cus_1")),
      (std::vector<std::string>{"CustomerOpened", "CustomerSpendRecorded", "CustomerTierChanged"}));
}

// Analytics' alert that `customer_id`'s churn risk crossed 60.
crm::v1::ChurnRiskRaised ChurnAlert(const std::string& customer_id, int score) {
  crm::v1::ChurnRiskRaised raised;
  raised.set_customer_id(customer_id);
  raised.set_score(score);
  raised.set_threshold(60);
  return raised;
}

// Analytics' churn alert becomes a retention call for the account's owner,
// once however often it is delivered; a person without an account here
// gets none while they have none (nobody in sales to call them).
TEST_F(SalesCommandsTest, AChurnAlertOpensOneRetentionCallForTheAccountsOwner) {
  Open("cus_1", "rep_ada", "EMEA");
  crm::v1::ChurnRiskRaised raised = ChurnAlert("cus_1", 72);
  raised.set_owner_id("rep_old");
  auto* factor = raised.add_factors();
  factor->set_name("order_recency");
  factor->set_points(45);
  const ConsumedMessage alert = Message(raised, "cus_1", "churn-cus_1", 1, 0, kAnalyticsTopic);
  ASSERT_TRUE(subscriber_->ApplyBatch({alert}).ok());
  crm::v1::EventEnvelope envelope;
  ASSERT_TRUE(envelope.ParseFromString(alert.value));
  ProjectionTxn txn(store_->db());
  ASSERT_TRUE(reactions_->Apply(envelope, txn).ok());  // redelivered

  crm::v1::ChurnRiskRaised stranger = raised;
  stranger.set_customer_id("cus_unknown");
  ASSERT_TRUE(subscriber_
                  ->ApplyBatch({Message(stranger, "cus_unknown", "churn-cus_unknown", 1, 1,
                                        kAnalyticsTopic)})
                  .ok());

  // Nor for a crossing long past when read (the topic's history, read when
  // sales first subscribes).
  now_ += SalesCommands::kRetentionAlertsKept + absl::Hours(1);
  crm::v1::ChurnRiskRaised old = raised;
  old.set_score(90);
  ASSERT_TRUE(
      subscriber_->ApplyBatch({Message(old, "cus_1", "churn-cus_1", 2, 2, kAnalyticsTopic)}).ok());

  crm::v1::ListTasksRequest all;
  auto listed = commands_->ListTasks(all);
  ASSERT_TRUE(listed.ok()) << listed.status();
  ASSERT_EQ(listed->tasks_size(), 1);
  const crm::v1::Task& task = listed->tasks(0);
  EXPECT_EQ(task.customer_id(), "cus_1");
  EXPECT_EQ(task.owner_id(), "rep_ada");
  EXPECT_EQ(task.title(), "Retention call: churn risk 72 (threshold 60)");
  EXPECT_EQ(task.notes(), "Raised by analytics: order_recency 45");
  EXPECT_EQ(FromProtoTimestamp(task.due_at()), kT0 + SalesCommands::kRetentionCallWithin);
  EXPECT_EQ(task.status(), crm::v1::TASK_STATUS_OPEN);
}

// A restore from a backup taken before a conversion (or a churn alert)
// was handled loses its stored answer, and the service reads the event
// again: the deal (the retention call) it opens is the one it opened
// before, which every reader of the topic has, not a second one.
TEST_F(SalesCommandsTest, AReactionHandledAgainAfterARestoreOpensTheSameRecords) {
  const ConsumedMessage conversion =
      Message(Conversion("lead_1"), "cus_lead", "lead-lead_1", 2, 0, kLeadsTopic);
  const ConsumedMessage alert =
      Message(ChurnAlert("cus_1", 72), "cus_1", "churn-cus_1", 1, 1, kAnalyticsTopic);
  // Each store as it would stand after the reactions: the live one, and
  // one restored from before them that reads the events again.
  auto handled = [&](SalesStore& store) {
    SalesSettings settings;
    settings.clock = [this] { return now_; };
    SalesCommands commands(store, std::move(settings));
    Open("cus_1", "rep_ada", "EMEA", &commands);  // the account the alert is for
    SalesReactions reactions(commands);
    Subscriber subscriber(store.db(), reactions, SubscriberOptions{});
    EXPECT_TRUE(subscriber.ApplyBatch({conversion, alert}).ok());
    crm::v1::ListOpportunitiesRequest deals;
    deals.set_customer_id("cus_lead");
    auto listed = commands.ListOpportunities(deals);
    auto tasks = commands.ListTasks(crm::v1::ListTasksRequest());
    if (!listed.ok() || !tasks.ok() || listed->opportunities_size() != 1 ||
        tasks->tasks_size() != 1) {
      ADD_FAILURE() << "not one deal and one call: " << listed.status() << " " << tasks.status();
      return std::make_pair(std::string(), std::string());
    }
    return std::make_pair(listed->opportunities(0).opportunity_id(), tasks->tasks(0).task_id());
  };
  const auto live = handled(*store_);
  auto opened = SalesStore::Open(dir_.Sub("restored"));
  ASSERT_TRUE(opened.ok()) << opened.status();
  now_ += absl::Minutes(5);  // read again later
  EXPECT_EQ(handled(**opened), live);
  // Another conversion of the person is another deal.
  EXPECT_NE(IdFromEvent("opp", kT0, "OpenOpportunityFromLead/evt-a"),
            IdFromEvent("opp", kT0, "OpenOpportunityFromLead/evt-b"));
}

// Analytics' topic is not ordered with leads': an alert read before the
// conversion that opens the person's account is answered by it, once.
TEST_F(SalesCommandsTest, AChurnAlertReadBeforeTheConversionOpensTheCallWithTheAccount) {
  ASSERT_TRUE(subscriber_
                  ->ApplyBatch({Message(ChurnAlert("cus_lead", 72), "cus_lead", "churn-cus_lead", 1,
                                        0, kAnalyticsTopic)})
                  .ok());
  crm::v1::ListTasksRequest all;
  EXPECT_EQ(commands_->ListTasks(all)->tasks_size(), 0) << "no account to call for yet";
  now_ += absl::Hours(72);  // converted three days after the crossing
  const ConsumedMessage conversion =
      Message(Conversion("lead_1"), "cus_lead", "lead-lead_1", 2, 0, kLeadsTopic);
  ASSERT_TRUE(subscriber_->ApplyBatch({conversion}).ok());
  crm::v1::EventEnvelope envelope;
  ASSERT_TRUE(envelope.ParseFromString(conversion.value));
  ProjectionTxn txn(store_->db());
  ASSERT_TRUE(reactions_->Apply(envelope, txn).ok());  // redelivered
  auto listed = commands_->ListTasks(all);
  ASSERT_TRUE(listed.ok()) << listed.status();
  ASSERT_EQ(listed->tasks_size(), 1);
  EXPECT_EQ(listed->tasks(0).customer_id(), "cus_lead");
  EXPECT_EQ(listed->tasks(0).owner_id(), "rep_grace");
  EXPECT_EQ(listed->tasks(0).title(), "Retention call: churn risk 72 (threshold 60)");
  // Due from when it was made, not overdue at birth; the alert is kept no
  // longer.
  EXPECT_EQ(FromProtoTimestamp(listed->tasks(0).due_at()),
            now_ + SalesCommands::kRetentionCallWithin);
  EXPECT_FALSE(store_->EarlyAlertOf("cus_lead")->has_value());
}

// A score that falls and crosses again while the owner is still on the
// retention call adds no second call, not even when that alert is
// delivered again after the call is done; the next crossing after it
// opens one.
TEST_F(SalesCommandsTest, AnAccountHasOneOpenRetentionCallAtATime) {
  Open("cus_1", "rep_ada", "EMEA");
  auto alert = [&](int score, int64_t offset) {
    return Message(ChurnAlert("cus_1", score), "cus_1", "churn-cus_1", offset + 1, offset,
                   kAnalyticsTopic);
  };
  std::vector<crm::v1::Task> tasks;
  auto titles = [&] {
    std::vector<std::string> out;
    auto listed = commands_->ListTasks(crm::v1::ListTasksRequest());
    EXPECT_TRUE(listed.ok()) << listed.status();
    tasks.clear();
    if (listed.ok()) tasks.assign(listed->tasks().begin(), listed->tasks().end());
    for (const auto& t : tasks) out.push_back(t.title());
    std::sort(out.begin(), out.end());
    return out;
  };
  ASSERT_TRUE(subscriber_->ApplyBatch({alert(72, 0)}).ok());
  const ConsumedMessage second = alert(81, 1);
  ASSERT_TRUE(subscriber_->ApplyBatch({second}).ok());
  ASSERT_EQ(titles(), std::vector<std::string>{"Retention call: churn risk 72 (threshold 60)"});

  crm::v1::CompleteTaskRequest complete;
  complete.set_request_id("done-1");
  complete.set_task_id(tasks[0].task_id());
  ASSERT_TRUE(commands_->CompleteTask(complete, Ctx()).ok());
  crm::v1::EventEnvelope redelivered;
  ASSERT_TRUE(redelivered.ParseFromString(second.value));
  ProjectionTxn txn(store_->db());
  ASSERT_TRUE(reactions_->Apply(redelivered, txn).ok());
  ASSERT_EQ(titles().size(), 1u) << "the crossing answered by the first call";

  ASSERT_TRUE(subscriber_->ApplyBatch({alert(65, 2)}).ok());
  EXPECT_EQ(titles(), (std::vector<std::string>{"Retention call: churn risk 65 (threshold 60)",
                                                "Retention call: churn risk 72 (threshold 60)"}));
}

// The person's account is on a customer merged into the one analytics
// names (a lead of theirs was merged into another person's): the call is
// for that account.
TEST_F(SalesCommandsTest, AMergedPersonsChurnAlertFindsTheAccountOnAMergedCustomer) {
  Open("cus_x", "rep_ada", "EMEA");
  crm::v1::ChurnRiskRaised raised = ChurnAlert("cus_y", 72);
  raised.add_merged_customer_ids("cus_w");
  raised.add_merged_customer_ids("cus_x");
  ASSERT_TRUE(
      subscriber_->ApplyBatch({Message(raised, "cus_y", "churn-cus_y", 1, 0, kAnalyticsTopic)})
          .ok());
  auto listed = commands_->ListTasks(crm::v1::ListTasksRequest());
  ASSERT_TRUE(listed.ok()) << listed.status();
  ASSERT_EQ(listed->tasks_size(), 1);
  EXPECT_EQ(listed->tasks(0).customer_id(), "cus_x");
  EXPECT_EQ(listed->tasks(0).owner_id(), "rep_ada");
  EXPECT_EQ(listed->tasks(0).title(), "Retention call: churn risk 72 (threshold 60)");
}

// A database from before the index of retention calls, where an account
// holds two open calls and the later one is done: the one still open is
// found at start, and a new crossing adds none.
TEST_F(SalesCommandsTest, RetentionCallsOpenedBeforeTheIndexAreFoundAtStart) {
  Open("cus_1", "rep_ada", "EMEA");
  auto forget_index = [&] {
    auto* family = store_->db().Family(kRetentionTasksFamily);
    rocksdb::WriteBatch batch;
    auto it = store_->db().NewIterator(kRetentionTasksFamily);
    for (it->SeekToFirst(); it->Valid(); it->Next()) batch.Delete(family, it->key());
    ASSERT_TRUE(it->status().ok());
    ASSERT_TRUE(store_->db().Write(&batch, /*sync=*/true).ok());
  };
  crm::v1::ChurnRiskRaised raised = ChurnAlert("cus_1", 0);
  for (int score : {72, 75}) {
    raised.set_score(score);
    ASSERT_TRUE(
        subscriber_
            ->ApplyBatch({Message(raised, "cus_1", "churn-cus_1", score, score, kAnalyticsTopic)})
            .ok());
    ASSERT_NO_FATAL_FAILURE(forget_index());
  }
  auto listed = commands_->ListTasks(crm::v1::ListTasksRequest());
  ASSERT_TRUE(listed.ok()) << listed.status();
  ASSERT_EQ(listed->tasks_size(), 2);
  // Listed by id: the later call is done, the earlier one still open.
  crm::v1::CompleteTaskRequest complete;
  complete.set_request_id("done-later");
  complete.set_task_id(listed->tasks(1).task_id());
  ASSERT_TRUE(commands_->CompleteTask(complete, Ctx()).ok());

  Restart();
  raised.set_score(90);
  ASSERT_TRUE(
      subscriber_->ApplyBatch({Message(raised, "cus_1", "churn-cus_1", 90, 90, kAnalyticsTopic)})
          .ok());
  auto after = commands_->ListTasks(crm::v1::ListTasksRequest());
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ(after->tasks_size(), 2) << "the earlier call is still open";
}

TEST_F(SalesCommandsTest, ForecastWeighsThePipelineAndCountsWonRevenue) {
  Open("cus_1", "rep_ada", "EMEA");
  Open("cus_2", "rep_bob", "AMER");
  OpenOpp("cus_1", "o1", 1'000'000, "2025-03-20");  // prospecting 10 %
  auto won = OpenOpp("cus_1", "o2", 3'000'000, "2025-05-01");
  for (const char* stage : {"needs_analysis", "proposal", "negotiation", "contract_signed"}) {
    auto moved = Move(won, stage, absl::StrCat("w-", stage));
    ASSERT_TRUE(moved.ok()) << moved.status();
    won = *moved;
  }
  OpenOpp("cus_2", "o3", 200, "2025-03-02");
  crm::v1::GetForecastRequest r;
  r.set_territory("EMEA");
  auto forecast = commands_->GetForecast(r);
  ASSERT_TRUE(forecast.ok()) << forecast.status();
  ASSERT_EQ(forecast->rows_size(), 1);  // won in March (kT0), open closing in March
  const auto& row = forecast->rows(0);
  EXPECT_EQ(row.owner_id(), "rep_ada");
  EXPECT_EQ(row.period(), "2025-03");
  EXPECT_EQ(row.open_opportunities(), 1);
  EXPECT_EQ(row.weighted_minor_units(), 100'000);
  EXPECT_EQ(row.won_opportunities(), 1);
  EXPECT_EQ(row.won_minor_units(), 3'000'000);
  r.Clear();
  r.set_period(crm::v1::FORECAST_PERIOD_QUARTER);
  EXPECT_EQ(commands_->GetForecast(r)->rows_size(), 2);
}

}  // namespace
}  // namespace crm::sales
