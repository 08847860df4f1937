// The service desk across real processes: the embedded broker, leads,
// service desk and analytics on loopback. A lead's customer becomes known to
// the service desk through the leads topic, a ticket runs its course over
// gRPC, and every ticket event reaches the customer's 360 view.
#include <algorithm>
#include <chrono>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "crm/v1/service_desk.grpc.pb.h"
#include "gtest/gtest.h"
#include "tests/integration/stack.h"

namespace crm::testing {
namespace {

// Always open (so no SLA clock depends on when the test runs), one team,
// and only customers the leads topic has named get tickets.
constexpr char kConfig[] = R"pb(
  calendar {
    hours { weekday: 1 start_minute: 0 end_minute: 1440 }
    hours { weekday: 2 start_minute: 0 end_minute: 1440 }
    hours { weekday: 3 start_minute: 0 end_minute: 1440 }
    hours { weekday: 4 start_minute: 0 end_minute: 1440 }
    hours { weekday: 5 start_minute: 0 end_minute: 1440 }
    hours { weekday: 6 start_minute: 0 end_minute: 1440 }
    hours { weekday: 7 start_minute: 0 end_minute: 1440 }
  }
  sla_policies {
    priority: TICKET_PRIORITY_HIGH
    first_response_minutes: 60
    resolution_minutes: 480
    warning_minutes: 15
  }
  teams { team_id: "support" lead_id: "lead:sam" agent_ids: "agent:ann" agent_ids: "agent:bob" }
  default_team_id: "support"
  reject_unknown_customers: true
)pb";

template <typename Call>
grpc::Status Invoke(Call call, const std::string& actor = "agent:ann") {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  ctx.AddMetadata("x-crm-actor", actor);
  return call(&ctx);
}

class ServiceDeskIntegrationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    config_ = stack_.dir() + "/service-desk.textproto";
    std::ofstream(config_) << kConfig;
    ASSERT_TRUE(stack_.StartBroker());
    ASSERT_TRUE(stack_.Start("leads")) << stack_.leads().Log();
    ASSERT_TRUE(StartDesk()) << stack_.service("service-desk").Log();
    ASSERT_TRUE(stack_.Start("analytics")) << stack_.analytics().Log();
    desk_ = crm::v1::ServiceDeskService::NewStub(stack_.Channel("service-desk"));
  }
  bool StartDesk() { return stack_.Start("service-desk", {"--config=" + config_}); }

  Stack stack_;
  std::string config_;
  std::unique_ptr<crm::v1::ServiceDeskService::Stub> desk_;
};

TEST_F(ServiceDeskIntegrationTest, TicketLifecycleReachesTheCustomer360AndSurvivesARestart) {
  // A lead names the customer.
  crm::v1::CaptureLeadRequest lead;
  lead.set_request_id("desk-lead-1");
  lead.set_channel(crm::v1::LEAD_CHANNEL_WEB_FORM);
  lead.mutable_contact()->set_first_name("Grace");
  lead.mutable_contact()->set_email("grace@example.com");
  lead.set_company("Navy");
  crm::v1::CaptureLeadResponse captured;
  ASSERT_TRUE(
      Invoke([&](auto* c) { return stack_.LeadsStub()->CaptureLead(c, lead, &captured); }).ok());
  const std::string customer = captured.customer_id();
  ASSERT_TRUE(Eventually([&] { return stack_.EventCount(customer) == 1; }))
      << stack_.analytics().Log();

  // Unknown customers are refused by policy; this one becomes known once
  // the service desk has consumed the lead.
  crm::v1::OpenTicketRequest open;
  open.set_request_id("desk-open-1");
  open.set_customer_id(customer);
  open.set_channel(crm::v1::TICKET_CHANNEL_EMAIL);
  open.set_subject("Cannot log in");
  open.set_description("Password reset mail never arrives.");
  open.set_product("portal");
  open.set_category("access");
  open.set_priority(crm::v1::TICKET_PRIORITY_HIGH);
  crm::v1::Ticket ticket;
  ASSERT_TRUE(Eventually([&] {
    auto st =
        Invoke([&](auto* c) { return desk_->OpenTicket(c, open, &ticket); }, "customer:portal");
    EXPECT_TRUE(st.ok() || st.error_code() == grpc::StatusCode::FAILED_PRECONDITION)
        << st.error_message();
    return st.ok();
  })) << stack_.service("service-desk").Log();
  EXPECT_TRUE(ticket.known_customer());
  EXPECT_EQ(ticket.team_id(), "support");
  EXPECT_EQ(ticket.assignee_id(), "agent:ann");
  EXPECT_EQ(ticket.status(), crm::v1::TICKET_STATUS_NEW);
  EXPECT_TRUE(ticket.first_response().has_due_at());
  crm::v1::Ticket again;
  // Retried by the same caller (request ids are per caller).
  ASSERT_TRUE(
      Invoke([&](auto* c) { return desk_->OpenTicket(c, open, &again); }, "customer:portal").ok());
  EXPECT_EQ(again.ticket_id(), ticket.ticket_id()) << "a retry returns the first result";

  open.set_request_id("desk-open-unknown");
  open.set_customer_id("cus_nobody");
  crm::v1::Ticket refused;
  auto st = Invoke([&](auto* c) { return desk_->OpenTicket(c, open, &refused); });
  EXPECT_EQ(st.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(st.error_message().rfind("customer_id:", 0), 0u) << st.error_message();
  open.clear_subject();
  st = Invoke([&](auto* c) { return desk_->OpenTicket(c, open, &refused); });
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(st.error_message(), "subject: required");

  // A knowledge base article that solves it.
  crm::v1::CreateArticleRequest create;
  create.set_request_id("desk-article-1");
  create.set_title("Password reset mail does not arrive");
  create.set_body("Check the spam folder, then ask for a new link.");
  create.add_tags("login");
  crm::v1::Article article;
  ASSERT_TRUE(Invoke([&](auto* c) { return desk_->CreateArticle(c, create, &article); }).ok());
  crm::v1::PublishArticleRequest publish;
  publish.set_request_id("desk-publish-1");
  publish.set_article_id(article.article_id());
  ASSERT_TRUE(Invoke([&](auto* c) { return desk_->PublishArticle(c, publish, &article); }).ok());
  crm::v1::SearchArticlesRequest search;
  search.set_query("password mail");
  crm::v1::SearchArticlesResponse found;
  ASSERT_TRUE(Invoke([&](auto* c) { return desk_->SearchArticles(c, search, &found); }).ok());
  ASSERT_EQ(found.hits_size(), 1);
  EXPECT_EQ(found.hits(0).article().article_id(), article.article_id());

  // Reply, resolve with the article, rate.
  crm::v1::ReplyToTicketRequest reply;
  reply.set_request_id("desk-reply-1");
  reply.set_ticket_id(ticket.ticket_id());
  reply.set_author_type(crm::v1::AUTHOR_TYPE_AGENT);
  reply.set_body("Please check your spam folder.");
  ASSERT_TRUE(Invoke([&](auto* c) { return desk_->ReplyToTicket(c, reply, &ticket); }).ok());
  EXPECT_EQ(ticket.status(), crm::v1::TICKET_STATUS_OPEN);
  crm::v1::ResolveTicketRequest resolve;
  resolve.set_request_id("desk-resolve-1");
  resolve.set_ticket_id(ticket.ticket_id());
  resolve.set_expected_version(ticket.version());
  resolve.set_resolution_note("Mail was in spam.");
  resolve.set_solution_article_id(article.article_id());
  ASSERT_TRUE(Invoke([&](auto* c) { return desk_->ResolveTicket(c, resolve, &ticket); }).ok());
  EXPECT_EQ(ticket.status(), crm::v1::TICKET_STATUS_RESOLVED);
  crm::v1::SubmitCsatRequest csat;
  csat.set_request_id("desk-csat-1");
  csat.set_ticket_id(ticket.ticket_id());
  csat.set_score(5);
  csat.set_comment("Fast");
  ASSERT_TRUE(Invoke([&](auto* c) { return desk_->SubmitCsat(c, csat, &ticket); }, customer).ok());
  csat.set_request_id("desk-csat-2");
  crm::v1::Ticket twice;
  EXPECT_EQ(Invoke([&](auto* c) { return desk_->SubmitCsat(c, csat, &twice); }).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);

  // Opened, assigned, replied, opened (status), resolved, survey
  // requested, CSAT submitted: seven ticket events on top of the lead.
  EXPECT_TRUE(Eventually([&] { return stack_.EventCount(customer) == 8; }))
      << stack_.EventCount(customer) << "\n"
      << stack_.service("service-desk").Log();
  crm::v1::GetCustomer360Request get360;
  get360.set_customer_id(customer);
  crm::v1::Customer360 view;
  ASSERT_TRUE(Invoke([&](auto* c) {
                return stack_.AnalyticsStub()->GetCustomer360(c, get360, &view);
              }).ok());
  ASSERT_EQ(view.timeline_size(), 8);
  EXPECT_EQ(view.timeline(view.timeline_size() - 1).type(), "CsatSubmitted");
  // The 360 view carries the desk's SLA clocks: both targets met.
  {
    crm::v1::GetTicketRequest get;
    get.set_ticket_id(ticket.ticket_id());
    crm::v1::TicketDetails details;
    ASSERT_TRUE(Invoke([&](auto* c) { return desk_->GetTicket(c, get, &details); }).ok());
    ASSERT_EQ(view.tickets_size(), 1);
    const auto& summary = view.tickets(0);
    EXPECT_EQ(summary.sla_state(), crm::v1::TICKET_SLA_STATE_MET) << summary.DebugString();
    ASSERT_TRUE(summary.first_response().has_met_at());
    EXPECT_EQ(summary.first_response().met_at().ShortDebugString(),
              details.ticket().first_response().met_at().ShortDebugString());
    EXPECT_EQ(summary.resolution().met_at().ShortDebugString(),
              details.ticket().resolution().met_at().ShortDebugString());
    EXPECT_EQ(summary.resolution().target_seconds(),
              details.ticket().resolution().target_seconds());
    EXPECT_GT(summary.resolution().target_seconds(), 0);
  }

  // The ticket API shows the state, the conversation and the customer.
  auto check_ticket = [&] {
    crm::v1::GetTicketRequest get;
    get.set_ticket_id(ticket.ticket_id());
    crm::v1::TicketDetails details;
    ASSERT_TRUE(Invoke([&](auto* c) { return desk_->GetTicket(c, get, &details); }).ok());
    EXPECT_EQ(details.ticket().status(), crm::v1::TICKET_STATUS_RESOLVED);
    EXPECT_EQ(details.ticket().csat().score(), 5);
    EXPECT_EQ(details.ticket().solution_article_id(), article.article_id());
    EXPECT_TRUE(details.ticket().first_response().has_met_at());
    ASSERT_EQ(details.messages_size(), 1);
    EXPECT_EQ(details.messages(0).author_id(), "agent:ann");
    EXPECT_EQ(details.customer().email(), "grace@example.com");
    EXPECT_EQ(details.customer().company(), "Navy");
    EXPECT_EQ(details.customer().ticket_count(), 1);
    crm::v1::ListTicketsRequest list;
    list.set_customer_id(customer);
    crm::v1::ListTicketsResponse listed;
    ASSERT_TRUE(Invoke([&](auto* c) { return desk_->ListTickets(c, list, &listed); }).ok());
    ASSERT_EQ(listed.tickets_size(), 1);
    EXPECT_EQ(listed.tickets(0).ticket_id(), ticket.ticket_id());
  };
  check_ticket();

  // A clean restart keeps everything, and nothing is published twice.
  ASSERT_EQ(stack_.service("service-desk").Kill(SIGTERM), 0)
      << stack_.service("service-desk").Log();
  EXPECT_NE(stack_.service("service-desk").Log().find("\"msg\":\"stopped\""), std::string::npos);
  ASSERT_TRUE(StartDesk()) << stack_.service("service-desk").Log();
  desk_ = crm::v1::ServiceDeskService::NewStub(stack_.Channel("service-desk"));
  check_ticket();
  // A new ticket of the customer comes after anything republished at the
  // restart on the customer's partition: once analytics shows it, a copy
  // applied twice would show in the count.
  open.set_request_id("desk-open-2");
  open.set_customer_id(customer);
  open.set_subject("Cannot log in again");
  crm::v1::Ticket second;
  const grpc::Status opened =
      Invoke([&](auto* c) { return desk_->OpenTicket(c, open, &second); }, "customer:portal");
  ASSERT_TRUE(opened.ok()) << opened.error_message();
  EXPECT_TRUE(Eventually([&] {
    return Invoke([&](auto* c) {
             return stack_.AnalyticsStub()->GetCustomer360(c, get360, &view);
           }).ok() &&
           std::any_of(view.tickets().begin(), view.tickets().end(),
                       [&](const auto& t) { return t.ticket_id() == second.ticket_id(); });
  }));
  // Each event is one timeline entry (keyed by its id); one applied twice
  // would be counted twice. Read until the second ticket's events are all
  // in and a quiet moment: the count and the timeline are two reads.
  get360.mutable_timeline_page()->set_page_size(500);
  EXPECT_TRUE(Eventually([&] {
    return Invoke([&](auto* c) {
             return stack_.AnalyticsStub()->GetCustomer360(c, get360, &view);
           }).ok() &&
           view.event_count() >= 8 + second.version() && view.event_count() == view.timeline_size();
  })) << view.event_count()
      << " events counted, " << view.timeline_size() << " on the timeline";
  // Exactly the first ticket's eight and the second's: nothing raised or
  // published again at the restart.
  EXPECT_EQ(view.event_count(), 8 + second.version());
}

}  // namespace
}  // namespace crm::testing
