#include "services/service-desk/api/ticket_commands.h"

#include <algorithm>
#include <latch>
#include <map>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "crm/v1/leads.pb.h"
#include "crm/v1/pii.pb.h"
#include "crm/v1/sales.pb.h"
#include "gtest/gtest.h"
#include "libs/common/envelope.h"
#include "libs/common/ids.h"
#include "libs/common/pii/cipher.h"
#include "libs/common/pii/key_stream.h"
#include "libs/common/reply_budget.h"
#include "libs/common/subscriber.h"
#include "libs/common/testing/temp_dir.h"
#include "services/service-desk/api/article_commands.h"
#include "services/service-desk/store/customer_projection.h"

namespace crm::service_desk {
namespace {

// January 2024: Monday the 1st, Friday the 5th, Monday the 8th.
absl::Time Utc(int day, int hour, int minute = 0) {
  return absl::FromCivil(absl::CivilMinute(2024, 1, day, hour, minute), absl::UTCTimeZone());
}
absl::Time At(const google::protobuf::Timestamp& ts) { return FromProtoTimestamp(ts); }

constexpr char kSettings[] = R"pb(
  calendar {
    hours { weekday: 1 start_minute: 540 end_minute: 1020 }
    hours { weekday: 2 start_minute: 540 end_minute: 1020 }
    hours { weekday: 3 start_minute: 540 end_minute: 1020 }
    hours { weekday: 4 start_minute: 540 end_minute: 1020 }
    hours { weekday: 5 start_minute: 540 end_minute: 1020 }
  }
  sla_policies {
    priority: TICKET_PRIORITY_NORMAL
    first_response_minutes: 60
    resolution_minutes: 480
    warning_minutes: 15
  }
  sla_policies {
    priority: TICKET_PRIORITY_URGENT
    first_response_minutes: 15
    resolution_minutes: 120
    warning_minutes: 5
  }
  teams { team_id: "hardware" lead_id: "lead:hal" agent_ids: "ann" agent_ids: "bob" }
  teams {
    team_id: "billing"
    lead_id: "lead:bea"
    agent_ids: "cid"
    agent_ids: "dan"
    strategy: ASSIGNMENT_STRATEGY_LEAST_LOADED
  }
  teams { team_id: "field" agent_ids: "eve" agent_ids: "fay" agent_ids: "gus" agent_ids: "dan" }
  routing_rules { category: "billing" team_id: "billing" }
  routing_rules { product: "printer-x" team_id: "hardware" }
  routing_rules { category: "onsite" team_id: "field" }
  reopen_window_hours: 24
  warranties { product_id: "printer-x" months: 24 }
)pb";

DeskSettings Settings(bool reject_unknown = false, const char* text = kSettings) {
  auto config = *DeskSettings::ParseText(text);
  config.set_reject_unknown_customers(reject_unknown);
  auto settings = DeskSettings::Create(config);
  EXPECT_TRUE(settings.ok()) << settings.status();
  return *settings;
}

class TicketCommandsTest : public ::testing::Test {
 protected:
  void SetUp() override { Reopen(); }

  // (Re)opens the store and the use cases, like a process restart.
  void Reopen(bool reject_unknown = false, const char* settings = kSettings) {
    tickets_.reset();
    articles_.reset();
    store_.reset();
    store_ = std::move(*DeskStore::Open(dir_.Sub("desk")));
    settings_ = std::make_unique<DeskSettings>(Settings(reject_unknown, settings));
    tickets_ = std::make_unique<TicketCommands>(*store_, *settings_, [this] { return now_; });
    articles_ = std::make_unique<ArticleCommands>(*store_, [this] { return now_; });
  }

  EventContext Ctx(const std::string& actor = "agent:ann") {
    return {"crm/service-desk", actor, "", "", absl::Now()};
  }

  crm::v1::Ticket Open(const std::string& request_id, const std::string& customer = "cus_1",
                       const std::string& product = "printer-x", const std::string& category = "",
                       crm::v1::TicketPriority priority = crm::v1::TICKET_PRIORITY_NORMAL) {
    crm::v1::OpenTicketRequest r;
    r.set_request_id(request_id);
    r.set_customer_id(customer);
    r.set_channel(crm::v1::TICKET_CHANNEL_EMAIL);
    r.set_subject("Printer offline");
    r.set_description("Blinks twice.");
    r.set_product(product);
    r.set_category(category);
    r.set_priority(priority);
    auto t = tickets_->OpenTicket(r, Ctx("customer:portal"));
    EXPECT_TRUE(t.ok()) << t.status();
    return t.ok() ? *t : crm::v1::Ticket();
  }

  absl::StatusOr<crm::v1::Ticket> Reply(const std::string& request_id, const std::string& ticket_id,
                                        crm::v1::AuthorType author, const std::string& body) {
    crm::v1::ReplyToTicketRequest r;
    r.set_request_id(request_id);
    r.set_ticket_id(ticket_id);
    r.set_author_type(author);
    r.set_body(body);
    return tickets_->ReplyToTicket(
        r, Ctx(author == crm::v1::AUTHOR_TYPE_AGENT ? "agent:ann" : "cus_1"));
  }

  absl::StatusOr<crm::v1::Ticket> Pending(const std::string& request_id, const std::string& id) {
    crm::v1::MarkTicketPendingRequest r;
    r.set_request_id(request_id);
    r.set_ticket_id(id);
    return tickets_->MarkTicketPending(r, Ctx());
  }

  // A draft knowledge base article, to be published as a solution.
  absl::StatusOr<crm::v1::Article> Draft(const std::string& request_id) {
    crm::v1::CreateArticleRequest r;
    r.set_request_id(request_id);
    r.set_title("Reset the printer");
    r.set_body("Hold the button.");
    return articles_->CreateArticle(r, Ctx());
  }

  absl::Status Publish(const std::string& request_id, const std::string& article_id) {
    crm::v1::PublishArticleRequest r;
    r.set_request_id(request_id);
    r.set_article_id(article_id);
    return articles_->PublishArticle(r, Ctx()).status();
  }

  absl::StatusOr<crm::v1::Ticket> Resolve(const std::string& request_id, const std::string& id,
                                          const std::string& article = "") {
    crm::v1::ResolveTicketRequest r;
    r.set_request_id(request_id);
    r.set_ticket_id(id);
    r.set_resolution_note("Firmware updated");
    r.set_solution_article_id(article);
    return tickets_->ResolveTicket(r, Ctx());
  }

  absl::StatusOr<crm::v1::Ticket> Csat(const std::string& request_id, const std::string& id,
                                       int score) {
    crm::v1::SubmitCsatRequest r;
    r.set_request_id(request_id);
    r.set_ticket_id(id);
    r.set_score(score);
    r.set_comment("thanks");
    r.set_nps(9);
    return tickets_->SubmitCsat(r, Ctx("cus_1"));
  }

  crm::v1::ListTicketsResponse List(const std::function<void(crm::v1::ListTicketsRequest&)>& f) {
    crm::v1::ListTicketsRequest r;
    f(r);
    auto page = tickets_->ListTickets(r);
    EXPECT_TRUE(page.ok()) << page.status();
    return page.ok() ? *page : crm::v1::ListTicketsResponse();
  }

  std::vector<std::string> Types(const std::string& ticket_id) {
    std::vector<std::string> types;
    auto events = store_->events().ReadStream(TicketStream(ticket_id));
    EXPECT_TRUE(events.ok()) << events.status();
    for (const auto& e : events.value_or(std::vector<crm::v1::EventEnvelope>{})) {
      types.push_back(e.type());
    }
    return types;
  }

  int RunTimers(absl::Time at) {
    now_ = at;
    auto n = tickets_->RunDueTimers();
    EXPECT_TRUE(n.ok()) << n.status();
    return n.ok() ? *n : -1;
  }

  // `payload` on `topic`, as the customer projection consumes it.
  void Deliver(const std::string& topic, const std::string& customer_id, const std::string& stream,
               int64_t version, const google::protobuf::Message& payload, absl::Time at) {
    crm::v1::EventEnvelope e;
    e.set_event_id(NewId("evt"));
    e.set_stream(stream);
    e.set_stream_version(version);
    e.set_customer_id(customer_id);
    *e.mutable_occurred_at() = ToProtoTimestamp(at);
    e.mutable_payload()->PackFrom(payload);
    CustomerProjection projection(*settings_);
    Subscriber subscriber(store_->db(), projection, SubscriberOptions{});
    ASSERT_TRUE(subscriber.ApplyBatch({{topic, 0, offset_++, e.SerializeAsString()}}).ok());
  }

  void LearnCustomer(const std::string& customer_id, const std::string& email,
                     absl::Time at = absl::UnixEpoch()) {
    crm::v1::LeadCaptured lead;
    lead.set_lead_id("lead_" + customer_id);
    lead.set_customer_id(customer_id);
    lead.mutable_contact()->set_email(email);
    lead.mutable_contact()->set_first_name("Ada");
    Deliver("crm.leads.v1", customer_id, "lead-" + lead.lead_id(), 1, lead, at);
  }

  void Bought(const std::string& customer_id, const std::string& product, absl::Time when) {
    crm::v1::OrderPlaced order;
    order.set_order_id("ord_" + std::to_string(offset_));
    order.set_customer_id(customer_id);
    order.add_lines()->set_product_id(product);
    Deliver("crm.sales.v1", customer_id, "order-" + order.order_id(), 1, order, when);
  }

  // Leads' MergeLeads found `merged` and `survivor` to be one person: the
  // link as crm.keys.v1 brings it to the vault.
  void Merged(pii::KeyVault& vault, const std::string& merged, const std::string& survivor) {
    crm::v1::CustomersMerged link;
    link.set_merged_customer_id(merged);
    link.set_survivor_customer_id(survivor);
    link.set_merged_lead_id("lead_" + merged);
    auto e = MakeEnvelope(link, survivor, Ctx());
    e.set_stream(pii::kMergeStreamPrefix + link.merged_lead_id());
    e.set_stream_version(1);
    ProjectionTxn txn(store_->db());
    ASSERT_TRUE(vault.ApplyRecord(e, txn).ok());
    ASSERT_TRUE(txn.Commit().ok());
  }

  crm::testing::TempDir dir_;
  absl::Time now_ = Utc(1, 9);
  int64_t offset_ = 0;
  std::unique_ptr<DeskStore> store_;
  std::unique_ptr<DeskSettings> settings_;
  std::unique_ptr<TicketCommands> tickets_;
  std::unique_ptr<ArticleCommands> articles_;
};

TEST_F(TicketCommandsTest, SameRequestIdFromAnotherCallerOpensAnotherTicket) {
  const auto portal = Open("r1");
  crm::v1::OpenTicketRequest r;
  r.set_request_id("r1");
  r.set_customer_id("cus_2");
  r.set_channel(crm::v1::TICKET_CHANNEL_PHONE);
  r.set_subject("Router down");
  r.set_description("No lights.");
  auto agent = tickets_->OpenTicket(r, Ctx("agent:bob"));
  ASSERT_TRUE(agent.ok()) << agent.status();
  EXPECT_NE(agent->ticket_id(), portal.ticket_id());
  EXPECT_EQ(agent->customer_id(), "cus_2");
  auto retry = tickets_->OpenTicket(r, Ctx("agent:bob"));
  ASSERT_TRUE(retry.ok()) << retry.status();
  EXPECT_EQ(retry->ticket_id(), agent->ticket_id());
}

TEST_F(TicketCommandsTest, OpenRoutesRoundRobinAndARetryAppendsNothing) {
  const auto t1 = Open("r1");
  const auto t2 = Open("r2");
  const auto t3 = Open("r3");
  EXPECT_EQ(t1.team_id(), "hardware");
  EXPECT_EQ(t1.assignee_id(), "ann");
  EXPECT_EQ(t2.assignee_id(), "bob");
  EXPECT_EQ(t3.assignee_id(), "ann");
  EXPECT_EQ(t1.status(), crm::v1::TICKET_STATUS_NEW);
  EXPECT_EQ(At(t1.first_response().due_at()), Utc(1, 10));

  const uint64_t log = store_->events().LogSize();
  const auto retry = Open("r1");
  EXPECT_EQ(retry.ticket_id(), t1.ticket_id());
  EXPECT_EQ(retry.assignee_id(), "ann");
  EXPECT_EQ(store_->events().LogSize(), log);

  EXPECT_EQ(Types(t1.ticket_id()), (std::vector<std::string>{"TicketOpened", "TicketAssigned"}));
  const auto events = *store_->events().ReadStream(TicketStream(t1.ticket_id()));
  EXPECT_EQ(events[0].customer_id(), "cus_1");
  EXPECT_EQ(events[0].source(), "crm/service-desk");
  EXPECT_EQ(events[0].actor(), "customer:portal");
  EXPECT_EQ(events[0].correlation_id(), "r1");
  EXPECT_EQ(At(events[0].occurred_at()), Utc(1, 9)) << "the command's time is the clock's";
}

TEST_F(TicketCommandsTest, LeastLoadedPicksTheAgentWithFewestActiveTickets) {
  const auto t1 = Open("b1", "cus_1", "", "billing");
  const auto t2 = Open("b2", "cus_1", "", "billing");
  const auto t3 = Open("b3", "cus_1", "", "billing");
  EXPECT_EQ(t1.assignee_id(), "cid");
  EXPECT_EQ(t2.assignee_id(), "dan");
  EXPECT_EQ(t3.assignee_id(), "cid");  // tie, next in turn
  // cid's tickets are done: cid has none active, dan one.
  ASSERT_TRUE(Resolve("x1", t1.ticket_id()).ok());
  ASSERT_TRUE(Resolve("x3", t3.ticket_id()).ok());
  const auto t4 = Open("b4", "cus_1", "", "billing");
  EXPECT_EQ(t4.assignee_id(), "cid") << "round robin would have picked dan";
}

// Loads come from an index of active tickets that follows reassignment,
// resolution and reopening; a store written before the index gets it built
// from the agents' ticket lists when it opens.
TEST_F(TicketCommandsTest, LoadsFollowActiveTicketsAndAnOlderStoreIsIndexedAtOpen) {
  auto load = [&] {
    auto l = store_->LoadOf(*settings_->FindTeam("billing"));
    EXPECT_TRUE(l.ok()) << l.status();
    return std::pair{l.value_or(AgentLoad{})["cid"], l.value_or(AgentLoad{})["dan"]};
  };
  const auto t1 = Open("b1", "cus_1", "", "billing");
  const auto t2 = Open("b2", "cus_1", "", "billing");
  const auto t3 = Open("b3", "cus_1", "", "billing");
  ASSERT_EQ(t3.assignee_id(), "cid");
  EXPECT_EQ(load(), std::pair(int64_t{2}, int64_t{1}));
  crm::v1::AssignTicketRequest move;
  move.set_request_id("m3");
  move.set_ticket_id(t3.ticket_id());
  move.set_assignee_id("dan");
  ASSERT_TRUE(tickets_->AssignTicket(move, Ctx("lead:bea")).ok());
  EXPECT_EQ(load(), std::pair(int64_t{1}, int64_t{2}));
  ASSERT_TRUE(Resolve("x1", t1.ticket_id()).ok());
  EXPECT_EQ(load(), std::pair(int64_t{0}, int64_t{2}));
  crm::v1::ReopenTicketRequest reopen;
  reopen.set_request_id("o1");
  reopen.set_ticket_id(t1.ticket_id());
  ASSERT_TRUE(tickets_->ReopenTicket(reopen, Ctx()).ok());
  EXPECT_EQ(load(), std::pair(int64_t{1}, int64_t{2}));
  ASSERT_TRUE(Resolve("x2", t2.ticket_id()).ok());

  // The store as an earlier build left it: no index, nor its mark.
  rocksdb::WriteBatch wipe;
  auto* family = store_->db().Family("agent_active");
  auto it = store_->db().NewIterator("agent_active");
  int rows = 0;
  for (it->SeekToFirst(); it->Valid(); it->Next(), ++rows) {
    ASSERT_TRUE(wipe.Delete(family, it->key()).ok());
  }
  EXPECT_EQ(rows, 3) << "t1 with cid, t3 with dan, the mark";
  it.reset();
  ASSERT_TRUE(store_->db().Write(&wipe, true).ok());
  Reopen();
  EXPECT_EQ(load(), std::pair(int64_t{1}, int64_t{1}));
  const auto t4 = Open("b4", "cus_1", "", "billing");
  EXPECT_EQ(load().first + load().second, 3);
}

TEST_F(TicketCommandsTest, ReassignmentMovesTheTicketBetweenAgents) {
  const auto t = Open("r1");
  ASSERT_EQ(t.assignee_id(), "ann");
  crm::v1::AssignTicketRequest r;
  r.set_request_id("a1");
  r.set_ticket_id(t.ticket_id());
  r.set_assignee_id("bob");
  auto moved = tickets_->AssignTicket(r, Ctx("lead:hal"));
  ASSERT_TRUE(moved.ok()) << moved.status();
  EXPECT_EQ(moved->assignee_id(), "bob");
  EXPECT_EQ(moved->team_id(), "hardware");
  EXPECT_EQ(List([](auto& l) { l.set_assignee_id("ann"); }).tickets_size(), 0);
  EXPECT_EQ(List([](auto& l) { l.set_assignee_id("bob"); }).tickets_size(), 1);

  // To a team: its strategy picks.
  r.set_request_id("a2");
  r.clear_assignee_id();
  r.set_team_id("billing");
  moved = tickets_->AssignTicket(r, Ctx("lead:hal"));
  ASSERT_TRUE(moved.ok()) << moved.status();
  EXPECT_EQ(moved->team_id(), "billing");
  EXPECT_EQ(moved->assignee_id(), "cid");

  r.set_request_id("a3");
  r.set_team_id("hardware");
  r.set_assignee_id("cid");
  EXPECT_EQ(tickets_->AssignTicket(r, Ctx()).status().message().substr(0, 12), "assignee_id:");
  r.clear_team_id();
  r.set_assignee_id("zed");
  EXPECT_EQ(tickets_->AssignTicket(r, Ctx()).status().code(), absl::StatusCode::kInvalidArgument);
  r.set_team_id("nowhere");
  EXPECT_EQ(tickets_->AssignTicket(r, Ctx()).status().message().substr(0, 8), "team_id:");
}

TEST_F(TicketCommandsTest, ReassigningToTheTeamGivesTheNextAgentInTurn) {
  const auto t1 = Open("f1", "cus_1", "", "onsite");
  const auto t2 = Open("f2", "cus_1", "", "onsite");
  ASSERT_EQ(t1.assignee_id(), "eve");
  ASSERT_EQ(t2.assignee_id(), "fay");
  crm::v1::AssignTicketRequest r;
  r.set_request_id("a1");
  r.set_ticket_id(t2.ticket_id());
  r.set_team_id("field");
  auto moved = tickets_->AssignTicket(r, Ctx("lead:hal"));
  ASSERT_TRUE(moved.ok()) << moved.status();
  EXPECT_EQ(moved->assignee_id(), "gus") << "eve had her turn before fay";
  EXPECT_EQ(Open("f3", "cus_1", "", "onsite").assignee_id(), "dan");
}

TEST_F(TicketCommandsTest, AnAgentNamedAloneKeepsTheTicketInItsTeamWhenAMember) {
  // dan works in billing (listed first) and in field.
  const auto t = Open("f1", "cus_1", "", "onsite");
  ASSERT_EQ(t.team_id(), "field");
  crm::v1::AssignTicketRequest r;
  r.set_request_id("a1");
  r.set_ticket_id(t.ticket_id());
  r.set_assignee_id("dan");
  auto moved = tickets_->AssignTicket(r, Ctx("lead:hal"));
  ASSERT_TRUE(moved.ok()) << moved.status();
  EXPECT_EQ(moved->assignee_id(), "dan");
  EXPECT_EQ(moved->team_id(), "field");

  // Not a member of the ticket's team: the agent's team takes it.
  const auto printer = Open("h1");
  ASSERT_EQ(printer.team_id(), "hardware");
  r.set_request_id("a2");
  r.set_ticket_id(printer.ticket_id());
  moved = tickets_->AssignTicket(r, Ctx("lead:hal"));
  ASSERT_TRUE(moved.ok()) << moved.status();
  EXPECT_EQ(moved->team_id(), "billing");
}

TEST_F(TicketCommandsTest, UnknownCustomersAreAcceptedUnlessThePolicySaysOtherwise) {
  const auto accepted = Open("r1", "cus_stranger");
  EXPECT_FALSE(accepted.known_customer());

  Reopen(/*reject_unknown=*/true);
  crm::v1::OpenTicketRequest r;
  r.set_request_id("r2");
  r.set_customer_id("cus_ada");
  r.set_channel(crm::v1::TICKET_CHANNEL_PHONE);
  r.set_subject("Hello");
  auto rejected = tickets_->OpenTicket(r, Ctx());
  EXPECT_EQ(rejected.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(rejected.status().message().substr(0, 12), "customer_id:");

  // The leads topic names the customer: now the ticket opens and the agent
  // sees who it is.
  LearnCustomer("cus_ada", "ada@example.com");
  auto opened = tickets_->OpenTicket(r, Ctx());
  ASSERT_TRUE(opened.ok()) << opened.status();
  EXPECT_TRUE(opened->known_customer());
  crm::v1::GetTicketRequest get;
  get.set_ticket_id(opened->ticket_id());
  auto details = tickets_->GetTicket(get);
  ASSERT_TRUE(details.ok()) << details.status();
  EXPECT_TRUE(details->customer().known());
  EXPECT_EQ(details->customer().email(), "ada@example.com");
  EXPECT_EQ(details->customer().ticket_count(), 1);
  EXPECT_EQ(details->customer().active_ticket_count(), 1);
}

TEST_F(TicketCommandsTest, TicketForAProductUnderWarrantyIsMarked) {
  const absl::Time bought = absl::FromCivil(absl::CivilDay(2023, 3, 1), absl::UTCTimeZone());
  Bought("cus_w", "printer-x", bought);
  Bought("cus_w", "scanner-z", bought);
  const auto covered = Open("w1", "cus_w", "printer-x");
  EXPECT_TRUE(covered.under_warranty());
  EXPECT_EQ(At(covered.warranty_ends_at()),
            absl::FromCivil(absl::CivilDay(2025, 3, 1), absl::UTCTimeZone()));
  EXPECT_TRUE(covered.known_customer()) << "an order names the customer too";
  EXPECT_FALSE(Open("w2", "cus_w", "scanner-z").under_warranty()) << "no warranty policy";
  EXPECT_FALSE(Open("w3", "cus_1", "printer-x").under_warranty()) << "not bought";
  now_ = absl::FromCivil(absl::CivilDay(2025, 3, 2), absl::UTCTimeZone());
  EXPECT_FALSE(Open("w4", "cus_w", "printer-x").under_warranty()) << "expired";

  crm::v1::GetTicketRequest get;
  get.set_ticket_id(covered.ticket_id());
  auto details = tickets_->GetTicket(get);
  ASSERT_TRUE(details.ok()) << details.status();
  ASSERT_EQ(details->customer().purchases_size(), 2);
  EXPECT_EQ(details->customer().purchases(0).product_id(), "printer-x");
  EXPECT_TRUE(details->customer().purchases(0).has_warranty_ends_at());
  EXPECT_FALSE(details->customer().purchases(1).has_warranty_ends_at());
}

// A purchase recorded under a customer id that a merge retired is the
// survivor's: a ticket opened under either id is under warranty, and
// either id's context shows the whole group.
TEST_F(TicketCommandsTest, APurchaseUnderAMergedCustomerCoversTheSurvivorsTicket) {
  auto vault =
      pii::KeyVault::Open(store_->db(), &store_->events(), pii::RandomKey(), "crm/service-desk");
  ASSERT_TRUE(vault.ok()) << vault.status();
  tickets_->SealPiiWith(**vault);
  const absl::Time bought = absl::FromCivil(absl::CivilDay(2023, 3, 1), absl::UTCTimeZone());
  Bought("cus_old", "printer-x", bought);
  EXPECT_FALSE(Open("m0", "cus_new", "printer-x").under_warranty()) << "not merged yet";
  LearnCustomer("cus_new", "ada@example.com");
  Merged(**vault, "cus_old", "cus_new");
  const auto covered = Open("m1", "cus_new", "printer-x");
  EXPECT_TRUE(covered.under_warranty());
  EXPECT_TRUE(Open("m2", "cus_old", "printer-x").under_warranty());
  // A merge further on (the survivor merged in turn) keeps the purchase.
  LearnCustomer("cus_newest", "ada@new.example", now_);
  Merged(**vault, "cus_new", "cus_newest");
  EXPECT_TRUE(Open("m3", "cus_newest", "printer-x").under_warranty());

  crm::v1::GetTicketRequest get;
  get.set_ticket_id(covered.ticket_id());
  auto details = tickets_->GetTicket(get);
  ASSERT_TRUE(details.ok()) << details.status();
  EXPECT_EQ(details->customer().customer_id(), "cus_new");
  ASSERT_EQ(details->customer().purchases_size(), 1);
  EXPECT_EQ(details->customer().lead_ids_size(), 2);
  EXPECT_EQ(details->customer().ticket_count(), 4) << "the group's tickets";
  EXPECT_EQ(details->customer().email(), "ada@new.example") << "the newest profile";

  // An erased member's data no longer opens: it is left out rather than
  // blank the newer profile it held.
  LearnCustomer("cus_old", "old@example.com", now_ + absl::Hours(1));
  EXPECT_EQ(tickets_->GetTicket(get)->customer().email(), "old@example.com");
  ASSERT_TRUE((*vault)->EraseCustomer("cus_old", "GDPR request 7", Ctx()).ok());
  details = tickets_->GetTicket(get);
  ASSERT_TRUE(details.ok()) << details.status();
  EXPECT_EQ(details->customer().email(), "ada@new.example");
  EXPECT_EQ(details->customer().purchases_size(), 0) << "the erased customer's purchase";
  // A ticket of the erased id itself keeps that id's own context.
  get.set_ticket_id(Open("m4", "cus_old", "printer-x").ticket_id());
  details = tickets_->GetTicket(get);
  ASSERT_TRUE(details.ok()) << details.status();
  EXPECT_EQ(details->customer().email(), "old@example.com");
  EXPECT_EQ(details->customer().lead_ids_size(), 1);
}

// Listing by customer lists the tickets of every id merged with it, one
// id order across pages, and still leaves an erased member out.
TEST_F(TicketCommandsTest, ListingByCustomerFollowsMerges) {
  auto vault =
      pii::KeyVault::Open(store_->db(), &store_->events(), pii::RandomKey(), "crm/service-desk");
  ASSERT_TRUE(vault.ok()) << vault.status();
  tickets_->SealPiiWith(**vault);
  std::vector<std::string> group_ids;
  for (const auto& [request, customer] : std::vector<std::pair<std::string, std::string>>{
           {"l1", "cus_old"}, {"l2", "cus_new"}, {"l3", "cus_old"}, {"l4", "cus_new"}}) {
    group_ids.push_back(Open(request, customer).ticket_id());
  }
  const std::string other = Open("l5", "cus_other").ticket_id();
  std::sort(group_ids.begin(), group_ids.end());
  auto list_all = [&](const std::string& customer, int page_size) {
    std::vector<std::string> ids;
    std::string token;
    do {
      const auto page = List([&](auto& r) {
        r.set_customer_id(customer);
        r.mutable_page()->set_page_size(page_size);
        r.mutable_page()->set_page_token(token);
      });
      for (const auto& t : page.tickets()) ids.push_back(t.ticket_id());
      token = page.next_page_token();
    } while (!token.empty() && ids.size() < 100);
    return ids;
  };
  EXPECT_EQ(list_all("cus_new", 1).size(), 2) << "not merged yet";

  Merged(**vault, "cus_old", "cus_new");
  EXPECT_EQ(list_all("cus_new", 1), group_ids);
  EXPECT_EQ(list_all("cus_old", 3), group_ids) << "either id lists the group";
  EXPECT_EQ(list_all("cus_other", 50), std::vector<std::string>{other});
  // Other filters still hold across the group.
  const auto open = List([](auto& r) {
    r.set_customer_id("cus_new");
    r.set_status(crm::v1::TICKET_STATUS_CLOSED);
  });
  EXPECT_EQ(open.tickets_size(), 0);

  ASSERT_TRUE((*vault)->EraseCustomer("cus_old", "GDPR request 8", Ctx()).ok());
  const auto survivors = list_all("cus_new", 50);
  ASSERT_EQ(survivors.size(), 2) << "the erased member's tickets are left out";
  for (const auto& id : survivors) {
    EXPECT_NE(std::find(group_ids.begin(), group_ids.end(), id), group_ids.end());
  }
  EXPECT_EQ(list_all("cus_old", 50).size(), 2) << "an erased id still lists its own";
}

// A clock stepped back (NTP) between two changes of a ticket: the later
// change's event is still stamped after the earlier one, so analytics (which
// keeps a ticket's latest status by time) ends where the ticket did.
TEST_F(TicketCommandsTest, AClockSteppedBackStillStampsEventsInOrder) {
  const auto t = Open("cb1");
  now_ -= absl::Hours(1);
  const auto replied = Reply("cb2", t.ticket_id(), crm::v1::AUTHOR_TYPE_AGENT, "On it");
  ASSERT_TRUE(replied.ok()) << replied.status();
  // A second command, still before the ticket's last stamp, goes after it too.
  now_ += absl::Minutes(1);
  ASSERT_TRUE(Pending("cb3", t.ticket_id()).ok());
  const auto events = *store_->events().ReadStream(TicketStream(t.ticket_id()));
  ASSERT_GE(events.size(), 2u);
  for (size_t i = 1; i < events.size(); ++i) {
    EXPECT_GE(FromProtoTimestamp(events[i].occurred_at()),
              FromProtoTimestamp(events[i - 1].occurred_at()))
        << events[i].type();
  }
  EXPECT_GT(FromProtoTimestamp(events.back().occurred_at()),
            FromProtoTimestamp(events.front().occurred_at()));
}

TEST_F(TicketCommandsTest, ConversationStatusFlowAndSatisfaction) {
  auto article = Draft("art-1");
  ASSERT_TRUE(article.ok()) << article.status();

  const auto t = Open("r1");
  const std::string id = t.ticket_id();
  now_ = Utc(1, 9, 20);
  auto replied = Reply("m1", id, crm::v1::AUTHOR_TYPE_AGENT, "Which model?");
  ASSERT_TRUE(replied.ok()) << replied.status();
  EXPECT_EQ(replied->status(), crm::v1::TICKET_STATUS_OPEN);
  EXPECT_EQ(At(replied->first_responded_at()), Utc(1, 9, 20));
  crm::v1::AddInternalNoteRequest note;
  note.set_request_id("n1");
  note.set_ticket_id(id);
  note.set_body("Probably the firmware bug");
  ASSERT_TRUE(tickets_->AddInternalNote(note, Ctx()).ok());
  ASSERT_EQ(Pending("p1", id)->status(), crm::v1::TICKET_STATUS_PENDING);
  now_ = Utc(2, 11);
  auto answered = Reply("m2", id, crm::v1::AUTHOR_TYPE_CUSTOMER, "The X200");
  ASSERT_TRUE(answered.ok()) << answered.status();
  EXPECT_EQ(answered->status(), crm::v1::TICKET_STATUS_OPEN);

  // Only published articles can be the solution.
  EXPECT_EQ(Resolve("s0", id, article->article_id()).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(Resolve("s0", id, "art_missing").status().code(), absl::StatusCode::kNotFound);
  // A missing ticket is NOT_FOUND whatever the article named.
  const auto on_missing = Resolve("s0", "tkt_missing", article->article_id()).status();
  EXPECT_EQ(on_missing.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(on_missing.message(), "ticket_id: ticket tkt_missing not found");
  crm::v1::LinkSolutionArticleRequest link;
  link.set_request_id("l0");
  link.set_ticket_id("tkt_missing");
  link.set_article_id(article->article_id());
  EXPECT_EQ(tickets_->LinkSolutionArticle(link, Ctx()).status().code(),
            absl::StatusCode::kNotFound);
  ASSERT_TRUE(Publish("pub-1", article->article_id()).ok());
  auto resolved = Resolve("s1", id, article->article_id());
  ASSERT_TRUE(resolved.ok()) << resolved.status();
  EXPECT_EQ(resolved->status(), crm::v1::TICKET_STATUS_RESOLVED);
  EXPECT_EQ(resolved->solution_article_id(), article->article_id());
  EXPECT_TRUE(resolved->csat_requested());

  auto rated = Csat("c1", id, 5);
  ASSERT_TRUE(rated.ok()) << rated.status();
  EXPECT_EQ(rated->csat().score(), 5);
  EXPECT_EQ(rated->csat().nps(), 9);
  const uint64_t log = store_->events().LogSize();
  EXPECT_EQ(Csat("c1", id, 5)->version(), rated->version()) << "retry answered from the record";
  EXPECT_EQ(store_->events().LogSize(), log);
  EXPECT_EQ(Csat("c2", id, 1).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(Csat("c3", id, 6).status().message().substr(0, 6), "score:");

  EXPECT_EQ(Types(id),
            (std::vector<std::string>{"TicketOpened", "TicketAssigned", "TicketReplied",
                                      "TicketStatusChanged", "TicketNoteAdded",
                                      "TicketStatusChanged", "TicketReplied", "TicketStatusChanged",
                                      "TicketResolved", "CsatSurveyRequested", "CsatSubmitted"}));
  crm::v1::GetTicketRequest get;
  get.set_ticket_id(id);
  auto details = tickets_->GetTicket(get);
  ASSERT_TRUE(details.ok()) << details.status();
  ASSERT_EQ(details->messages_size(), 3);
  EXPECT_EQ(details->messages(0).body(), "Which model?");
  EXPECT_EQ(details->messages(0).author_id(), "agent:ann");
  EXPECT_TRUE(details->messages(1).internal());
  EXPECT_EQ(details->messages(2).author_type(), crm::v1::AUTHOR_TYPE_CUSTOMER);
  EXPECT_EQ(At(details->messages(2).created_at()), Utc(2, 11));
  EXPECT_EQ(details->ticket().version(), rated->version());
  EXPECT_EQ(details->customer().active_ticket_count(), 0);
}

TEST_F(TicketCommandsTest, StaleExpectedVersionIsAbortedAndAppendsNothing) {
  const auto t = Open("r1");
  crm::v1::MarkTicketPendingRequest r;
  r.set_request_id("p1");
  r.set_ticket_id(t.ticket_id());
  r.set_expected_version(1);
  const uint64_t log = store_->events().LogSize();
  EXPECT_EQ(tickets_->MarkTicketPending(r, Ctx()).status().code(), absl::StatusCode::kAborted);
  EXPECT_EQ(store_->events().LogSize(), log);
  crm::v1::ReplyToTicketRequest reply;
  reply.set_request_id("m1");
  reply.set_ticket_id(t.ticket_id());
  reply.set_expected_version(t.version());
  reply.set_author_type(crm::v1::AUTHOR_TYPE_AGENT);
  reply.set_body("hi");
  EXPECT_TRUE(tickets_->ReplyToTicket(reply, Ctx()).ok());
}

// Retries of one request that arrive while it is still being written (a
// client that timed out) all get its result, none a decision on the state
// it made ("only active tickets can be resolved").
TEST_F(TicketCommandsTest, RetriesRacingTheFirstAttemptAllGetItsResult) {
  for (int round = 0; round < 10; ++round) {
    const auto t = Open(absl::StrCat("open-", round));
    ASSERT_TRUE(
        Reply(absl::StrCat("m-", round), t.ticket_id(), crm::v1::AUTHOR_TYPE_AGENT, "hi").ok());
    std::vector<absl::StatusOr<crm::v1::Ticket>> results(8);
    std::vector<std::thread> callers;
    for (auto& result : results) {
      callers.emplace_back(
          [&, id = t.ticket_id()] { result = Resolve(absl::StrCat("resolve-", round), id); });
    }
    for (auto& c : callers) c.join();
    for (const auto& result : results) {
      ASSERT_TRUE(result.ok()) << "round " << round << ": " << result.status();
      EXPECT_EQ(result->status(), crm::v1::TICKET_STATUS_RESOLVED);
      EXPECT_EQ(result->version(), results[0]->version());
    }
    const auto types = Types(t.ticket_id());
    EXPECT_EQ(std::count(types.begin(), types.end(), "TicketResolved"), 1) << "round " << round;
  }
}

// A client that reuses a request_id for a reply on another ticket: the
// second reply is refused, not answered with the first and dropped.
TEST_F(TicketCommandsTest, ARequestIdReusedForAnotherReplyIsRefused) {
  const auto a = Open("open-a");
  const auto b = Open("open-b");
  auto first = Reply("r1", a.ticket_id(), crm::v1::AUTHOR_TYPE_AGENT, "hi");
  ASSERT_TRUE(first.ok()) << first.status();
  auto retry = Reply("r1", a.ticket_id(), crm::v1::AUTHOR_TYPE_AGENT, "hi");
  ASSERT_TRUE(retry.ok()) << retry.status();
  EXPECT_EQ(retry->version(), first->version());

  for (const auto& [ticket_id, body] :
       {std::pair{b.ticket_id(), "hi"}, std::pair{a.ticket_id(), "hello"}}) {
    auto reused = Reply("r1", ticket_id, crm::v1::AUTHOR_TYPE_AGENT, body);
    EXPECT_EQ(reused.status().code(), absl::StatusCode::kInvalidArgument) << reused.status();
    EXPECT_TRUE(absl::StartsWith(reused.status().message(), "request_id:")) << reused.status();
  }
  const auto a_types = Types(a.ticket_id());
  EXPECT_EQ(std::count(a_types.begin(), a_types.end(), "TicketReplied"), 1);
  const auto b_types = Types(b.ticket_id());
  EXPECT_EQ(std::count(b_types.begin(), b_types.end(), "TicketReplied"), 0);
}

// A link decided while an unpublish of the same article was being written
// would be stored after it, naming an article no longer published. Each
// round races tickets linking one article (LinkSolutionArticle, or in odd
// rounds a resolution naming it) against its unpublish; in log order every
// stored link must find its article published.
TEST_F(TicketCommandsTest, ALinkRacingAnUnpublishIsStoredBeforeItOrRefused) {
  constexpr int kRounds = 20;
  constexpr int kRacers = 3;
  std::vector<std::string> linking;
  for (int i = 0; i < kRacers; ++i) linking.push_back(Open(absl::StrCat("open-", i)).ticket_id());
  int stored = 0;
  for (int round = 0; round < kRounds; ++round) {
    auto article = Draft(absl::StrCat("art-", round));
    ASSERT_TRUE(article.ok()) << article.status();
    ASSERT_TRUE(Publish(absl::StrCat("pub-", round), article->article_id()).ok());
    const bool resolve = round % 2 == 1;
    std::vector<std::string> ticket_ids = linking;
    if (resolve) {  // a ticket is resolved once
      for (int i = 0; i < kRacers; ++i) {
        ticket_ids[i] = Open(absl::StrCat("open-", round, "-", i)).ticket_id();
      }
    }

    std::latch start(kRacers + 1);
    std::vector<absl::StatusOr<crm::v1::Ticket>> links(kRacers);
    absl::StatusOr<crm::v1::Article> unpublished;
    std::vector<std::thread> callers;
    for (int i = 0; i < kRacers; ++i) {
      callers.emplace_back([&, i] {
        const std::string request_id = absl::StrCat("link-", round, "-", i);
        crm::v1::LinkSolutionArticleRequest link;
        link.set_request_id(request_id);
        link.set_ticket_id(ticket_ids[i]);
        link.set_article_id(article->article_id());
        start.arrive_and_wait();
        links[i] = resolve ? Resolve(request_id, ticket_ids[i], article->article_id())
                           : tickets_->LinkSolutionArticle(link, Ctx());
      });
    }
    callers.emplace_back([&] {
      crm::v1::UnpublishArticleRequest unpublish;
      unpublish.set_request_id(absl::StrCat("unpub-", round));
      unpublish.set_article_id(article->article_id());
      start.arrive_and_wait();
      unpublished = articles_->UnpublishArticle(unpublish, Ctx());
    });
    for (auto& c : callers) c.join();
    ASSERT_TRUE(unpublished.ok()) << unpublished.status();
    for (const auto& link : links) {
      EXPECT_TRUE(link.ok() || absl::IsFailedPrecondition(link.status())) << link.status();
      if (link.ok()) ++stored;
    }
  }
  // The order below is only checked on links that were stored.
  EXPECT_GT(stored, 0) << "every link lost the race";

  auto log = store_->events().ReadOutbox(0, 100000);
  ASSERT_TRUE(log.ok()) << log.status();
  std::map<std::string, bool> published;  // by article stream, as of the log position
  int stale_links = 0;
  for (const auto& entry : *log) {
    const auto& payload = entry.envelope.payload();
    crm::v1::TicketSolutionLinked linked;
    crm::v1::TicketResolved resolved;
    if (payload.Is<crm::v1::ArticlePublished>()) {
      published[entry.envelope.stream()] = true;
    } else if (payload.Is<crm::v1::ArticleUnpublished>()) {
      published[entry.envelope.stream()] = false;
    } else if (payload.UnpackTo(&linked) && !published[ArticleStream(linked.article_id())]) {
      ++stale_links;
    } else if (payload.UnpackTo(&resolved) && !resolved.solution_article_id().empty() &&
               !published[ArticleStream(resolved.solution_article_id())]) {
      ++stale_links;
    }
  }
  EXPECT_EQ(stale_links, 0) << "links stored after their article was unpublished";
}

TEST_F(TicketCommandsTest, APublishedArticleIsLinkedOnceAndARetryAppendsNothing) {
  const auto t = Open("r1");
  auto article = Draft("art-1");
  ASSERT_TRUE(article.ok()) << article.status();
  crm::v1::LinkSolutionArticleRequest link;
  link.set_request_id("l0");
  link.set_ticket_id(t.ticket_id());
  link.set_article_id(article->article_id());
  // A draft is no solution yet.
  EXPECT_EQ(tickets_->LinkSolutionArticle(link, Ctx()).status().code(),
            absl::StatusCode::kFailedPrecondition);
  link.set_request_id("l1");
  ASSERT_TRUE(Publish("pub-1", article->article_id()).ok());

  const uint64_t before = store_->events().LogSize();
  auto linked = tickets_->LinkSolutionArticle(link, Ctx());
  ASSERT_TRUE(linked.ok()) << linked.status();
  EXPECT_EQ(linked->solution_article_id(), article->article_id());
  EXPECT_EQ(linked->status(), t.status()) << "a link does not resolve the ticket";
  EXPECT_EQ(store_->events().LogSize(), before + 1);
  EXPECT_EQ(Types(t.ticket_id()).back(), "TicketSolutionLinked");
  auto again = tickets_->LinkSolutionArticle(link, Ctx());
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->version(), linked->version());
  // Another request linking it again has nothing to do.
  link.set_request_id("l2");
  EXPECT_EQ(tickets_->LinkSolutionArticle(link, Ctx()).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(store_->events().LogSize(), before + 1);
}

TEST_F(TicketCommandsTest, AMissingTicketIsNotFoundWhateverVersionIsExpected) {
  crm::v1::MarkTicketPendingRequest r;
  r.set_request_id("p1");
  r.set_ticket_id("tkt_missing");
  r.set_expected_version(3);
  auto pending = tickets_->MarkTicketPending(r, Ctx());
  EXPECT_EQ(pending.status().code(), absl::StatusCode::kNotFound) << pending.status();
  EXPECT_EQ(store_->events().LogSize(), 0u);
}

// NOT_FOUND names the request field first, then the id the caller sent,
// whatever version was expected: with 0 the domain's own check answers.
TEST_F(TicketCommandsTest, AMissingTicketIsNamedByFieldAndId) {
  const std::string missing = "tkt_missing";
  auto expect_named = [&](absl::Status status, const std::string& what) {
    EXPECT_EQ(status.code(), absl::StatusCode::kNotFound) << what << ": " << status;
    EXPECT_TRUE(absl::StartsWith(status.message(), "ticket_id: ")) << what << ": " << status;
    EXPECT_TRUE(absl::StrContains(status.message(), missing)) << what << ": " << status;
  };
  for (const int64_t version : {0, 3}) {
    const std::string v = absl::StrCat("@", version, " ");
    crm::v1::AssignTicketRequest assign;
    assign.set_request_id("a" + v);
    assign.set_ticket_id(missing);
    assign.set_expected_version(version);
    assign.set_team_id("hardware");
    expect_named(tickets_->AssignTicket(assign, Ctx()).status(), v + "AssignTicket team");
    assign.set_request_id("a2" + v);
    assign.clear_team_id();
    assign.set_assignee_id("ann");
    expect_named(tickets_->AssignTicket(assign, Ctx()).status(), v + "AssignTicket agent");
    crm::v1::ReplyToTicketRequest reply;
    reply.set_request_id("r" + v);
    reply.set_ticket_id(missing);
    reply.set_expected_version(version);
    reply.set_author_type(crm::v1::AUTHOR_TYPE_AGENT);
    reply.set_body("hi");
    expect_named(tickets_->ReplyToTicket(reply, Ctx()).status(), v + "ReplyToTicket");
    crm::v1::AddInternalNoteRequest note;
    note.set_request_id("n" + v);
    note.set_ticket_id(missing);
    note.set_expected_version(version);
    note.set_body("note");
    expect_named(tickets_->AddInternalNote(note, Ctx()).status(), v + "AddInternalNote");
    crm::v1::MarkTicketPendingRequest pending;
    pending.set_request_id("p" + v);
    pending.set_ticket_id(missing);
    pending.set_expected_version(version);
    expect_named(tickets_->MarkTicketPending(pending, Ctx()).status(), v + "MarkTicketPending");
    crm::v1::ResolveTicketRequest resolve;
    resolve.set_request_id("s" + v);
    resolve.set_ticket_id(missing);
    resolve.set_expected_version(version);
    expect_named(tickets_->ResolveTicket(resolve, Ctx()).status(), v + "ResolveTicket");
    resolve.set_request_id("s2" + v);
    resolve.set_solution_article_id("art_missing");
    expect_named(tickets_->ResolveTicket(resolve, Ctx()).status(), v + "ResolveTicket article");
    crm::v1::CloseTicketRequest close;
    close.set_request_id("c" + v);
    close.set_ticket_id(missing);
    close.set_expected_version(version);
    expect_named(tickets_->CloseTicket(close, Ctx()).status(), v + "CloseTicket");
    crm::v1::ReopenTicketRequest reopen;
    reopen.set_request_id("o" + v);
    reopen.set_ticket_id(missing);
    reopen.set_expected_version(version);
    expect_named(tickets_->ReopenTicket(reopen, Ctx()).status(), v + "ReopenTicket");
    crm::v1::LinkSolutionArticleRequest link;
    link.set_request_id("l" + v);
    link.set_ticket_id(missing);
    link.set_expected_version(version);
    link.set_article_id("art_missing");
    expect_named(tickets_->LinkSolutionArticle(link, Ctx()).status(), v + "LinkSolutionArticle");
  }
  expect_named(Csat("q", missing, 5).status(), "SubmitCsat");
  expect_named(Reply("m", missing, crm::v1::AUTHOR_TYPE_AGENT, "hi").status(), "Reply");
  crm::v1::GetTicketRequest get;
  get.set_ticket_id(missing);
  expect_named(tickets_->GetTicket(get).status(), "GetTicket");
  EXPECT_EQ(store_->events().LogSize(), 0u);
}

// A missing article is named by the field that sent it: article_id when
// linking, solution_article_id when resolving.
TEST_F(TicketCommandsTest, AMissingArticleIsNamedByTheFieldThatSentIt) {
  const std::string id = Open("r1").ticket_id();
  const uint64_t before = store_->events().LogSize();
  for (const int64_t version : {0, 2}) {
    crm::v1::LinkSolutionArticleRequest link;
    link.set_request_id(absl::StrCat("l", version));
    link.set_ticket_id(id);
    link.set_expected_version(version);
    link.set_article_id("art_missing");
    const auto linked = tickets_->LinkSolutionArticle(link, Ctx()).status();
    EXPECT_EQ(linked.code(), absl::StatusCode::kNotFound) << linked;
    EXPECT_TRUE(absl::StartsWith(linked.message(), "article_id: ")) << linked;
    EXPECT_TRUE(absl::StrContains(linked.message(), "art_missing")) << linked;
  }
  const auto resolved = Resolve("s1", id, "art_missing").status();
  EXPECT_EQ(resolved.code(), absl::StatusCode::kNotFound) << resolved;
  EXPECT_TRUE(absl::StartsWith(resolved.message(), "solution_article_id: ")) << resolved;
  EXPECT_TRUE(absl::StrContains(resolved.message(), "art_missing")) << resolved;
  EXPECT_EQ(store_->events().LogSize(), before);
}

TEST_F(TicketCommandsTest, BadInputNamesTheFieldAndAppendsNothing) {
  crm::v1::OpenTicketRequest r;
  r.set_request_id("r1");
  r.set_customer_id("cus_1");
  r.set_channel(crm::v1::TICKET_CHANNEL_WEB);
  r.set_subject("   ");
  EXPECT_EQ(tickets_->OpenTicket(r, Ctx()).status().message(), "subject: required");
  r.set_subject("ok");
  r.set_channel(crm::v1::TICKET_CHANNEL_UNSPECIFIED);
  EXPECT_EQ(tickets_->OpenTicket(r, Ctx()).status().message(), "channel: required");
  r.set_channel(static_cast<crm::v1::TicketChannel>(99));  // a newer client's
  EXPECT_EQ(tickets_->OpenTicket(r, Ctx()).status().message(), "channel: unknown");
  r.set_channel(crm::v1::TICKET_CHANNEL_WEB);
  r.clear_request_id();
  EXPECT_EQ(tickets_->OpenTicket(r, Ctx()).status().message(), "request_id: required");
  r.set_request_id("   ");  // not a key for the call's retries
  EXPECT_EQ(tickets_->OpenTicket(r, Ctx()).status().message(), "request_id: required");
  EXPECT_EQ(
      Reply("m", "tkt_x", crm::v1::AUTHOR_TYPE_UNSPECIFIED, "hi").status().message().substr(0, 12),
      "author_type:");
  EXPECT_EQ(Reply("m", "tkt_missing", crm::v1::AUTHOR_TYPE_AGENT, "hi").status().code(),
            absl::StatusCode::kNotFound);
  // A reopen reason stays plain on the topic: a short note, not a case file.
  crm::v1::ReopenTicketRequest reopen;
  reopen.set_request_id("o1");
  reopen.set_ticket_id("tkt_x");
  reopen.set_reason(std::string(501, 'r'));
  EXPECT_EQ(tickets_->ReopenTicket(reopen, Ctx()).status().message(),
            "reason: longer than 500 bytes");
  EXPECT_EQ(store_->events().LogSize(), 0u);
  crm::v1::GetTicketRequest get;
  get.set_ticket_id("tkt_missing");
  EXPECT_EQ(tickets_->GetTicket(get).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(TicketCommandsTest, SlaTimerWarnsBreachesAndEscalatesExactlyOnceAcrossRestarts) {
  const auto t = Open("r1");  // Monday 09:00, first response due 10:00
  EXPECT_EQ(RunTimers(Utc(1, 9, 44)), 0);
  EXPECT_EQ(RunTimers(Utc(1, 9, 45)), 1);  // warning
  EXPECT_EQ(RunTimers(Utc(1, 9, 50)), 0);
  EXPECT_EQ(RunTimers(Utc(1, 10)), 3);  // breached, escalated, team lead notified
  EXPECT_EQ(RunTimers(Utc(1, 10, 1)), 0);
  Reopen();  // a restart must not fire anything again
  EXPECT_EQ(RunTimers(Utc(1, 10, 5)), 0);

  const auto types = Types(t.ticket_id());
  EXPECT_EQ(types,
            (std::vector<std::string>{"TicketOpened", "TicketAssigned", "TicketSlaWarningRaised",
                                      "TicketSlaBreached", "TicketEscalated", "TeamLeadNotified"}));
  const auto events = *store_->events().ReadStream(TicketStream(t.ticket_id()));
  crm::v1::TeamLeadNotified notified;
  ASSERT_TRUE(events.back().payload().UnpackTo(&notified));
  EXPECT_EQ(notified.lead_id(), "lead:hal");
  EXPECT_EQ(events.back().actor(), "system:timer");
  EXPECT_EQ(At(events.back().occurred_at()), Utc(1, 10));

  auto breached = List([](auto& l) { l.set_breached(true); });
  ASSERT_EQ(breached.tickets_size(), 1);
  EXPECT_EQ(breached.tickets(0).priority(), crm::v1::TICKET_PRIORITY_HIGH);
  EXPECT_EQ(List([](auto& l) { l.set_breached(false); }).tickets_size(), 0);

  // Resolution: 8 business hours from Monday 09:00, warning 15 minutes before.
  EXPECT_EQ(RunTimers(Utc(1, 16, 44)), 0);
  EXPECT_EQ(RunTimers(Utc(1, 16, 45)), 1);
  EXPECT_EQ(RunTimers(Utc(2, 9)), 3);
  EXPECT_EQ(RunTimers(Utc(3, 9)), 0);
  EXPECT_EQ(List([](auto& l) { l.set_priority(crm::v1::TICKET_PRIORITY_URGENT); }).tickets_size(),
            1);
}

// The timer passes once in a while; an agent who answers after the due
// time, before it comes by, still breached the target.
TEST_F(TicketCommandsTest, ATargetMetLateBeforeTheTimerCameByIsStillBreached) {
  const auto t = Open("r1");  // Monday 09:00, first response due 10:00
  now_ = Utc(1, 10, 2);
  auto replied = Reply("m1", t.ticket_id(), crm::v1::AUTHOR_TYPE_AGENT, "Sorry for the wait");
  ASSERT_TRUE(replied.ok()) << replied.status();
  EXPECT_TRUE(replied->breached());
  EXPECT_TRUE(replied->first_response().breached());
  EXPECT_EQ(replied->status(), crm::v1::TICKET_STATUS_OPEN);
  EXPECT_EQ(replied->priority(), crm::v1::TICKET_PRIORITY_HIGH);  // escalated from normal
  EXPECT_EQ(Types(t.ticket_id()),
            (std::vector<std::string>{"TicketOpened", "TicketAssigned", "TicketSlaBreached",
                                      "TicketEscalated", "TeamLeadNotified", "TicketReplied",
                                      "TicketStatusChanged"}));
  EXPECT_EQ(RunTimers(Utc(1, 10, 5)), 0);  // nothing owed twice
  EXPECT_EQ(List([](auto& l) { l.set_breached(true); }).tickets_size(), 1);

  // On time, nothing is owed.
  const auto on_time = Open("r2");
  now_ = Utc(1, 10, 30);  // opened at 10:02; due 11:02
  ASSERT_TRUE(Reply("m2", on_time.ticket_id(), crm::v1::AUTHOR_TYPE_AGENT, "Hi").ok());
  EXPECT_EQ(Types(on_time.ticket_id()),
            (std::vector<std::string>{"TicketOpened", "TicketAssigned", "TicketReplied",
                                      "TicketStatusChanged"}));
}

TEST_F(TicketCommandsTest, SlaRunsInBusinessHoursAndPausesWhileWaitingOnTheCustomer) {
  now_ = Utc(5, 16, 30);  // Friday afternoon
  const auto t = Open("r1");
  EXPECT_EQ(At(t.first_response().due_at()), Utc(8, 9, 30));
  EXPECT_EQ(At(t.resolution().due_at()), Utc(8, 16, 30));
  EXPECT_EQ(RunTimers(Utc(7, 12)), 0) << "the weekend does not count";
  now_ = Utc(8, 9, 10);
  ASSERT_TRUE(Reply("m1", t.ticket_id(), crm::v1::AUTHOR_TYPE_AGENT, "Hello").ok());
  now_ = Utc(8, 10);
  auto pending = Pending("p1", t.ticket_id());
  ASSERT_TRUE(pending.ok()) << pending.status();
  EXPECT_EQ(pending->resolution().remaining_seconds(), 390 * 60);
  EXPECT_EQ(RunTimers(Utc(12, 16)), 0) << "paused all week";
  now_ = Utc(10, 9);
  auto resumed = Reply("m2", t.ticket_id(), crm::v1::AUTHOR_TYPE_CUSTOMER, "Here it is");
  ASSERT_TRUE(resumed.ok()) << resumed.status();
  EXPECT_EQ(At(resumed->resolution().due_at()), Utc(10, 15, 30));
  EXPECT_EQ(RunTimers(Utc(10, 15, 15)), 1);  // warning
  EXPECT_EQ(RunTimers(Utc(10, 15, 30)), 3);  // breach, escalation, lead notified
}

TEST_F(TicketCommandsTest, ResolvedTicketClosesAfterTheReopenWindow) {
  const auto t = Open("r1");
  ASSERT_TRUE(Resolve("s1", t.ticket_id()).ok());
  EXPECT_EQ(RunTimers(Utc(2, 8, 59)), 0);
  EXPECT_EQ(RunTimers(Utc(2, 9)), 1);
  crm::v1::GetTicketRequest get;
  get.set_ticket_id(t.ticket_id());
  EXPECT_EQ(tickets_->GetTicket(get)->ticket().status(), crm::v1::TICKET_STATUS_CLOSED);
  crm::v1::ReopenTicketRequest reopen;
  reopen.set_request_id("o1");
  reopen.set_ticket_id(t.ticket_id());
  EXPECT_EQ(tickets_->ReopenTicket(reopen, Ctx()).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

// The desk restarted with new teams: bob left hardware, dan joined it, the
// field team and its rule are gone. A reopened ticket goes back to its agent
// only if the agent is still in its team; else the team's strategy picks
// another, or the team the rules route it to now takes it (its queue when
// it has no agents).
TEST_F(TicketCommandsTest, AReopenedTicketLeavesAnAgentOrTeamNoLongerConfigured) {
  const auto first = Open("h1");
  const auto second = Open("h2");
  const auto onsite = Open("f1", "cus_1", "", "onsite");
  ASSERT_EQ(first.assignee_id(), "ann");
  ASSERT_EQ(second.assignee_id(), "bob");
  ASSERT_EQ(onsite.team_id(), "field");
  for (const auto* t : {&first, &second, &onsite}) {
    ASSERT_TRUE(Resolve("s-" + t->ticket_id(), t->ticket_id()).ok());
  }
  static constexpr char kChanged[] = R"pb(
    teams {
      team_id: "hardware"
      lead_id: "lead:hal"
      agent_ids: "ann"
      agent_ids: "dan"
      strategy: ASSIGNMENT_STRATEGY_LEAST_LOADED
    }
    teams { team_id: "billing" }
    routing_rules { product: "printer-x" team_id: "hardware" }
    default_team_id: "billing"
    reopen_window_hours: 24
  )pb";
  Reopen(false, kChanged);
  auto reopen = [&](const crm::v1::Ticket& t) {
    crm::v1::ReopenTicketRequest r;
    r.set_request_id("o-" + t.ticket_id());
    r.set_ticket_id(t.ticket_id());
    r.set_reason("still broken");
    auto reopened = tickets_->ReopenTicket(r, Ctx());
    EXPECT_TRUE(reopened.ok()) << reopened.status();
    return reopened.value_or(crm::v1::Ticket());
  };
  auto still = reopen(first);
  EXPECT_EQ(still.team_id(), "hardware");
  EXPECT_EQ(still.assignee_id(), "ann");
  EXPECT_EQ(Types(first.ticket_id()).back(), "TicketReopened") << "nothing moved";
  // bob's ticket, reopened by the customer's reply: hardware's least loaded
  // agent, dan (ann holds the first ticket again).
  auto picked = Reply("c-h2", second.ticket_id(), crm::v1::AUTHOR_TYPE_CUSTOMER, "Again.");
  ASSERT_TRUE(picked.ok()) << picked.status();
  EXPECT_EQ(picked->status(), crm::v1::TICKET_STATUS_OPEN);
  EXPECT_EQ(picked->team_id(), "hardware");
  EXPECT_EQ(picked->assignee_id(), "dan");
  crm::v1::TicketAssigned to_dan;
  ASSERT_TRUE(store_->events()
                  .ReadStream(TicketStream(second.ticket_id()))
                  ->back()
                  .payload()
                  .UnpackTo(&to_dan));
  EXPECT_EQ(to_dan.previous_assignee_id(), "bob");
  EXPECT_EQ(to_dan.strategy(), crm::v1::ASSIGNMENT_STRATEGY_LEAST_LOADED);
  EXPECT_EQ(to_dan.reason(), crm::v1::ASSIGNMENT_REASON_REOPENED);
  // The field ticket: no rule for onsite now, so the default team, which
  // has no agents: its queue.
  auto rerouted = reopen(onsite);
  EXPECT_EQ(rerouted.team_id(), "billing");
  EXPECT_EQ(rerouted.assignee_id(), "");
  const auto events = *store_->events().ReadStream(TicketStream(onsite.ticket_id()));
  crm::v1::TicketAssigned moved;
  ASSERT_TRUE(events.back().payload().UnpackTo(&moved));
  EXPECT_EQ(moved.previous_team_id(), "field");
  EXPECT_EQ(moved.previous_assignee_id(), onsite.assignee_id());
  EXPECT_EQ(moved.reason(), crm::v1::ASSIGNMENT_REASON_REOPENED);
  EXPECT_EQ(moved.strategy(), crm::v1::ASSIGNMENT_STRATEGY_UNSPECIFIED) << "nobody was picked";
  auto queue = List([](auto& r) {
    r.set_team_id("billing");
    r.set_unassigned(true);
  });
  ASSERT_EQ(queue.tickets_size(), 1);
  EXPECT_EQ(queue.tickets(0).ticket_id(), onsite.ticket_id());
  EXPECT_EQ(List([](auto& r) {
              r.set_team_id("hardware");
              r.set_unassigned(true);
            }).tickets_size(),
            0);
  EXPECT_EQ(List([](auto& r) { r.set_team_id("hardware"); }).tickets_size(), 2);
}

// Its team gone, a reopened ticket whose agent is in the team the rules
// give it now stays with that agent.
TEST_F(TicketCommandsTest, AReroutedReopenedTicketKeepsItsAgentWhenInTheNewTeam) {
  const auto onsite = Open("f1", "cus_1", "", "onsite");
  ASSERT_EQ(onsite.team_id(), "field");
  ASSERT_FALSE(onsite.assignee_id().empty());
  ASSERT_TRUE(Resolve("s-f1", onsite.ticket_id()).ok());
  const std::string changed =
      absl::StrCat(R"pb(
                     teams { team_id: "billing" agent_ids: "zed" agent_ids: ")pb",
                   onsite.assignee_id(), R"pb(" }
                                              default_team_id: "billing"
                                              reopen_window_hours: 24
      )pb");
  Reopen(false, changed.c_str());
  crm::v1::ReopenTicketRequest r;
  r.set_request_id("o-f1");
  r.set_ticket_id(onsite.ticket_id());
  auto reopened = tickets_->ReopenTicket(r, Ctx());
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  EXPECT_EQ(reopened->team_id(), "billing");
  EXPECT_EQ(reopened->assignee_id(), onsite.assignee_id());
  EXPECT_EQ(Types(onsite.ticket_id()).back(), "TicketAssigned");
}

TEST_F(TicketCommandsTest, ListFiltersAndPages) {
  std::vector<std::string> ids;
  for (int i = 0; i < 5; ++i) {
    ids.push_back(Open("r" + std::to_string(i), i % 2 == 0 ? "cus_a" : "cus_b", "printer-x", "",
                       i == 4 ? crm::v1::TICKET_PRIORITY_URGENT : crm::v1::TICKET_PRIORITY_NORMAL)
                      .ticket_id());
  }
  ASSERT_TRUE(Resolve("s0", ids[0]).ok());

  std::vector<std::string> seen;
  std::string token;
  int pages = 0;
  do {
    auto page = List([&](auto& l) {
      l.mutable_page()->set_page_size(2);
      l.mutable_page()->set_page_token(token);
    });
    for (const auto& t : page.tickets()) seen.push_back(t.ticket_id());
    token = page.next_page_token();
    ++pages;
  } while (!token.empty() && pages < 10);
  // Id order: creation order to the millisecond.
  auto sorted = ids;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(seen, sorted);
  EXPECT_EQ(pages, 3);

  auto of_a = List([](auto& l) { l.set_customer_id("cus_a"); });
  ASSERT_EQ(of_a.tickets_size(), 3);
  auto active_a = List([](auto& l) {
    l.set_customer_id("cus_a");
    l.set_status(crm::v1::TICKET_STATUS_NEW);
  });
  EXPECT_EQ(active_a.tickets_size(), 2);
  auto urgent = List([](auto& l) { l.set_priority(crm::v1::TICKET_PRIORITY_URGENT); });
  ASSERT_EQ(urgent.tickets_size(), 1);
  EXPECT_EQ(urgent.tickets(0).ticket_id(), ids[4]);
  auto ann_first = List([](auto& l) {
    l.set_assignee_id("ann");
    l.mutable_page()->set_page_size(1);
  });
  ASSERT_EQ(ann_first.tickets_size(), 1);
  EXPECT_FALSE(ann_first.next_page_token().empty());

  crm::v1::ListTicketsRequest bad;
  bad.mutable_page()->set_page_token("!!");
  EXPECT_EQ(tickets_->ListTickets(bad).status().message().substr(0, 16), "page.page_token:");
  // Ann's next page is no page of Bob's tickets.
  bad.set_assignee_id("bob");
  bad.mutable_page()->set_page_token(ann_first.next_page_token());
  EXPECT_EQ(tickets_->ListTickets(bad).status().message().rfind(
                "page.page_token: not a token of this query", 0),
            0u);
  bad.clear_assignee_id();
  bad.mutable_page()->set_page_token("");
  bad.mutable_page()->set_page_size(-1);
  EXPECT_EQ(tickets_->ListTickets(bad).status(),
            absl::InvalidArgumentError("page.page_size: negative"));
  bad.mutable_page()->set_page_size(0);
  bad.set_assignee_id("ann");
  bad.set_unassigned(true);
  EXPECT_EQ(tickets_->ListTickets(bad).status(),
            absl::InvalidArgumentError("unassigned: not with assignee_id"));
}

// A page size over the maximum (500) is taken as the maximum, as in the
// other services' lists, not refused.
TEST_F(TicketCommandsTest, APageSizeOverTheMaximumGivesPagesOfTheMaximum) {
  for (int i = 0; i < 501; ++i) Open(absl::StrCat("cap", i), "cus_cap");
  std::string token;
  std::vector<int> sizes;
  do {
    auto page = List([&](auto& l) {
      l.set_customer_id("cus_cap");
      l.mutable_page()->set_page_size(100'000);
      l.mutable_page()->set_page_token(token);
    });
    sizes.push_back(page.tickets_size());
    token = page.next_page_token();
  } while (!token.empty() && sizes.size() < 5);
  EXPECT_EQ(sizes, (std::vector<int>{500, 1}));
}

// A selective filter over a large book: each page examines a bounded
// number of entries and goes on from the last, so no call reads them all.
TEST_F(TicketCommandsTest, AListPageExaminesABoundedNumberOfTicketsAndTheNextGoesOn) {
  std::vector<std::string> ids;
  for (int i = 0; i < 5; ++i) {
    ids.push_back(Open("scan" + std::to_string(i), "cus_a", "printer-x", "",
                       i == 3 ? crm::v1::TICKET_PRIORITY_URGENT : crm::v1::TICKET_PRIORITY_NORMAL)
                      .ticket_id());
  }
  std::sort(ids.begin(), ids.end());
  const std::string urgent = *std::find_if(ids.begin(), ids.end(), [&](const std::string& id) {
    crm::v1::GetTicketRequest g;
    g.set_ticket_id(id);
    auto t = tickets_->GetTicket(g);
    return t.ok() && t->ticket().priority() == crm::v1::TICKET_PRIORITY_URGENT;
  });
  crm::v1::ListTicketsRequest r;
  r.set_priority(crm::v1::TICKET_PRIORITY_URGENT);
  r.mutable_page()->set_page_size(10);
  std::vector<std::string> seen;
  int pages = 0;
  do {
    auto page = store_->ListTickets(r, {}, /*scan_budget=*/2);
    ASSERT_TRUE(page.ok()) << page.status();
    for (const auto& t : page->tickets) seen.push_back(t.ticket_id());
    r.mutable_page()->set_page_token(page->next_page_token);
    ++pages;
  } while (!r.page().page_token().empty() && pages < 10);
  EXPECT_EQ(seen, std::vector<std::string>{urgent});
  EXPECT_EQ(pages, 3) << "five entries, two a page";
}

// 500 tickets of 20,000-byte descriptions would be a 10 MB reply, which a
// default gRPC client refuses.
TEST_F(TicketCommandsTest, AListPageStopsShortOfTheReplyBoundAndTheNextGoesOn) {
  constexpr int kTickets = 200;
  std::vector<std::string> ids;
  for (int i = 0; i < kTickets; ++i) {
    crm::v1::OpenTicketRequest r;
    r.set_request_id(absl::StrCat("big", i));
    r.set_customer_id("cus_big");
    r.set_channel(crm::v1::TICKET_CHANNEL_EMAIL);
    r.set_subject("Printer offline");
    r.set_description(std::string(20'000, 'a' + i % 26));
    auto t = tickets_->OpenTicket(r, Ctx("customer:portal"));
    ASSERT_TRUE(t.ok()) << t.status();
    ids.push_back(t->ticket_id());
  }
  std::sort(ids.begin(), ids.end());
  std::vector<std::string> seen;
  std::string token;
  int pages = 0;
  do {
    auto page = List([&](auto& l) {
      l.set_customer_id("cus_big");
      l.mutable_page()->set_page_size(500);
      l.mutable_page()->set_page_token(token);
    });
    EXPECT_LE(page.ByteSizeLong(), kMaxReplyBytes);
    for (const auto& t : page.tickets()) seen.push_back(t.ticket_id());
    token = page.next_page_token();
    ++pages;
  } while (!token.empty() && pages < 10);
  EXPECT_EQ(seen, ids);
  EXPECT_EQ(pages, 2);
}

TEST_F(TicketCommandsTest, ALongConversationComesInPages) {
  const auto ticket = Open("conv");
  constexpr int kReplies = 200;
  for (int i = 0; i < kReplies; ++i) {
    ASSERT_TRUE(Reply(absl::StrCat("m", i), ticket.ticket_id(), crm::v1::AUTHOR_TYPE_AGENT,
                      absl::StrCat(i, std::string(19'990, '.')))
                    .ok());
  }
  // By default as much as fits under the reply bound, then page by page.
  auto read_all = [&](int page_size) {
    std::vector<std::string> bodies;
    crm::v1::GetTicketRequest get;
    get.set_ticket_id(ticket.ticket_id());
    get.mutable_messages_page()->set_page_size(page_size);
    int pages = 0;
    do {
      auto details = tickets_->GetTicket(get);
      EXPECT_TRUE(details.ok()) << details.status();
      if (!details.ok()) break;
      EXPECT_LE(details->ByteSizeLong(), kMaxReplyBytes);
      EXPECT_EQ(details->ticket().ticket_id(), ticket.ticket_id());
      for (const auto& m : details->messages()) bodies.push_back(m.body());
      get.mutable_messages_page()->set_page_token(details->next_messages_page_token());
      ++pages;
    } while (!get.messages_page().page_token().empty() && pages < 100);
    return std::make_pair(bodies, pages);
  };
  const auto [whole, whole_pages] = read_all(0);
  ASSERT_EQ(whole.size(), static_cast<size_t>(kReplies));
  for (int i = 0; i < kReplies; ++i) {
    EXPECT_TRUE(absl::StartsWith(whole[i], absl::StrCat(i, "."))) << i;
  }
  EXPECT_EQ(whole_pages, 2);
  const auto [paged, pages] = read_all(7);
  EXPECT_EQ(paged, whole);
  EXPECT_EQ(pages, 29);

  crm::v1::GetTicketRequest bad;
  bad.set_ticket_id(ticket.ticket_id());
  bad.mutable_messages_page()->set_page_token("x");
  EXPECT_EQ(tickets_->GetTicket(bad).status().message().substr(0, 25), "messages_page.page_token:");
  bad.mutable_messages_page()->set_page_token("");
  bad.mutable_messages_page()->set_page_size(-1);
  EXPECT_EQ(tickets_->GetTicket(bad).status(),
            absl::InvalidArgumentError("messages_page.page_size: negative"));
  // The conversation comes whole by default: no page size is too large.
  bad.mutable_messages_page()->set_page_size(100'000);
  auto unbounded = tickets_->GetTicket(bad);
  ASSERT_TRUE(unbounded.ok()) << unbounded.status();
  EXPECT_GT(unbounded->messages_size(), 0);
}

}  // namespace
}  // namespace crm::service_desk
