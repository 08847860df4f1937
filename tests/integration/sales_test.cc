// The sales service across real processes: embedded broker, leads, sales
// and analytics on loopback. A customer captured by leads is taken through
// the pipeline to a won deal, a quote, an order and an approved contract;
// the invoice and fulfilment requests must reach crm.sales.v1 as
// CloudEvents, loyalty must react to them through the topic, and the 360
// view must count the sales events. A lead converted by leads must open its
// account and opportunity in sales through crm.leads.v1.
#include <chrono>
#include <map>
#include <optional>
#include <set>

#include "absl/strings/str_cat.h"
#include "crm/v1/analytics.pb.h"
#include "crm/v1/sales.grpc.pb.h"
#include "gtest/gtest.h"
#include "libs/common/auth/principal.h"
#include "libs/common/kafka.h"
#include "tests/integration/stack.h"
#include "tests/integration/topic_io.h"

namespace crm::testing {
namespace {

std::unique_ptr<grpc::ClientContext> Call(const std::string& actor = "rep_ada",
                                          const std::string& roles = "") {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  ctx->AddMetadata("x-crm-actor", actor);
  if (!roles.empty()) ctx->AddMetadata("x-crm-roles", roles);
  return ctx;
}

crm::v1::Money Eur(int64_t minor_units) {
  crm::v1::Money m;
  m.set_currency("EUR");
  m.set_minor_units(minor_units);
  return m;
}

// One message of crm.sales.v1 with the headers outside consumers route by.
struct Published {
  crm::v1::EventEnvelope envelope;
  std::string key;
  std::map<std::string, std::string> headers;
};

// Reads crm.sales.v1 (ReadTopic) until `done` holds for what was read
// about `customer_id`, then for `linger` more, so that a record which
// should not be there is seen.
std::vector<Published> ConsumeSalesTopic(
    const std::string& brokers, const std::string& customer_id,
    const std::function<bool(const std::vector<Published>&)>& done,
    absl::Duration linger = absl::Seconds(2)) {
  std::vector<Published> seen;
  ReadTopic(
      brokers, kSalesTopic,
      [&](RdKafka::Message& m) {
        Published p;
        if (!p.envelope.ParseFromArray(m.payload(), static_cast<int>(m.len()))) return;
        if (p.envelope.customer_id() != customer_id) return;
        p.key = m.key() != nullptr ? *m.key() : "";
        for (const char* h : {"ce_specversion", "ce_id", "ce_type", "ce_source", "ce_time",
                              "ce_subject", "content-type"}) {
          p.headers[h] = HeaderValue(m, h);
        }
        seen.push_back(std::move(p));
      },
      [&] { return done(seen); }, absl::Seconds(40), linger);
  return seen;
}

class SalesFlowTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(stack_.StartBroker());
    ASSERT_TRUE(stack_.StartLeads()) << stack_.leads().Log();
    ASSERT_TRUE(stack_.Start("sales", {"--reminder-interval-ms=200"}))
        << stack_.service("sales").Log();
    ASSERT_TRUE(stack_.StartAnalytics()) << stack_.analytics().Log();
  }
  Stack stack_;
};

TEST_F(SalesFlowTest, ContractApprovalPublishesInvoiceAndFulfilmentAndConversionOpensAnAccount) {
  // A lead gives the person a customer_id.
  auto leads = stack_.LeadsStub();
  crm::v1::CaptureLeadRequest capture;
  capture.set_request_id("sales-flow-lead");
  capture.set_channel(crm::v1::LEAD_CHANNEL_WEB_FORM);
  capture.mutable_contact()->set_email("grace@navy.example");
  capture.set_company("Navy");
  crm::v1::CaptureLeadResponse lead;
  ASSERT_TRUE(leads->CaptureLead(Call().get(), capture, &lead).ok());
  const std::string customer_id = lead.customer_id();
  ASSERT_TRUE(Eventually([&] { return stack_.EventCount(customer_id) >= 1; }));
  const int64_t before_sales = stack_.EventCount(customer_id);

  // A second person goes the choreographed way: leads converts, sales
  // reacts to LeadConverted on crm.leads.v1 (checked at the end).
  capture.set_request_id("sales-flow-lead-converted");
  capture.mutable_contact()->set_email("alan@bletchley.example");
  capture.set_company("Bletchley");
  crm::v1::CaptureLeadResponse converted_lead;
  ASSERT_TRUE(leads->CaptureLead(Call().get(), capture, &converted_lead).ok());
  crm::v1::QualifyLeadRequest qualify;
  qualify.set_request_id("sales-flow-qualify");
  qualify.set_lead_id(converted_lead.lead_id());
  crm::v1::Lead qualified;
  auto st = leads->QualifyLead(Call().get(), qualify, &qualified);
  ASSERT_TRUE(st.ok()) << st.error_message();
  crm::v1::ConvertLeadRequest convert;
  convert.set_request_id("sales-flow-convert");
  convert.set_lead_id(converted_lead.lead_id());
  convert.set_owner_id("rep_lin");
  convert.set_opportunity_name("Bombes");
  *convert.mutable_estimated_amount() = Eur(750'000);
  crm::v1::ConvertLeadResponse conversion;
  st = leads->ConvertLead(Call().get(), convert, &conversion);
  ASSERT_TRUE(st.ok()) << st.error_message();

  auto sales = crm::v1::SalesService::NewStub(stack_.Channel("sales"));
  crm::v1::OpenCustomerRequest open;
  open.set_request_id("sales-flow-open");
  open.set_customer_id(customer_id);
  open.set_name("Navy");
  open.set_owner_id("rep_ada");
  open.set_territory("AMER");
  open.add_contacts()->set_email("Grace@Navy.example");
  crm::v1::Customer customer;
  st = sales->OpenCustomer(Call().get(), open, &customer);
  ASSERT_TRUE(st.ok()) << st.error_message() << "\n" << stack_.service("sales").Log();
  EXPECT_EQ(customer.tier(), "standard");
  EXPECT_EQ(customer.contacts(0).email(), "grace@navy.example");
  open.set_request_id("sales-flow-open-bad");
  open.set_name("");
  st = sales->OpenCustomer(Call().get(), open, &customer);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(st.error_message().rfind("name:", 0), 0u) << st.error_message();

  crm::v1::OpenOpportunityRequest opp_request;
  opp_request.set_request_id("sales-flow-opp");
  opp_request.set_customer_id(customer_id);
  opp_request.set_name("Compilers");
  *opp_request.mutable_amount() = Eur(1'200'000);
  opp_request.set_expected_close_date("2025-06-30");
  crm::v1::Opportunity opp;
  ASSERT_TRUE(sales->OpenOpportunity(Call().get(), opp_request, &opp).ok());
  EXPECT_EQ(opp.stage_id(), "prospecting");

  for (const char* stage : {"needs_analysis", "proposal", "negotiation", "contract_signed"}) {
    crm::v1::ChangeOpportunityStageRequest change;
    change.set_request_id(absl::StrCat("sales-flow-", stage));
    change.set_opportunity_id(opp.opportunity_id());
    change.set_expected_version(opp.version());
    change.set_stage_id(stage);
    crm::v1::Opportunity moved;
    st = sales->ChangeOpportunityStage(Call().get(), change, &moved);
    ASSERT_TRUE(st.ok()) << stage << ": " << st.error_message();
    ASSERT_EQ(moved.version(), opp.version() + 1);
    // A writer still holding the old version is refused.
    change.set_request_id(absl::StrCat("sales-flow-stale-", stage));
    crm::v1::Opportunity ignored;
    EXPECT_EQ(sales->ChangeOpportunityStage(Call().get(), change, &ignored).error_code(),
              grpc::StatusCode::ABORTED);
    opp = moved;
  }
  EXPECT_EQ(opp.outcome(), crm::v1::STAGE_OUTCOME_WON);

  // 2 x 6 000.00 EUR = 12 000.00, over the 10 000.00 silver threshold.
  crm::v1::DraftQuoteRequest draft_quote;
  draft_quote.set_request_id("sales-flow-quote");
  draft_quote.set_opportunity_id(opp.opportunity_id());
  draft_quote.set_currency("EUR");
  auto* line = draft_quote.add_lines();
  line->set_product_id("compiler-licence");
  line->set_quantity(2);
  *line->mutable_unit_price() = Eur(600'000);
  crm::v1::Quote quote;
  ASSERT_TRUE(sales->DraftQuote(Call().get(), draft_quote, &quote).ok());
  EXPECT_EQ(quote.totals().total().minor_units(), 1'200'000);
  crm::v1::AcceptQuoteRequest accept;
  accept.set_request_id("sales-flow-accept");
  accept.set_quote_id(quote.quote_id());
  ASSERT_TRUE(sales->AcceptQuote(Call().get(), accept, &quote).ok());
  crm::v1::PlaceOrderRequest place;
  place.set_request_id("sales-flow-order");
  place.set_quote_id(quote.quote_id());
  crm::v1::Order order;
  ASSERT_TRUE(sales->PlaceOrder(Call().get(), place, &order).ok());
  crm::v1::DraftContractRequest draft_contract;
  draft_contract.set_request_id("sales-flow-contract");
  draft_contract.set_order_id(order.order_id());
  draft_contract.set_start_date("2025-07-01");
  crm::v1::Contract contract;
  ASSERT_TRUE(sales->DraftContract(Call().get(), draft_contract, &contract).ok());
  crm::v1::SubmitContractRequest submit;
  submit.set_request_id("sales-flow-submit");
  submit.set_contract_id(contract.contract_id());
  ASSERT_TRUE(sales->SubmitContract(Call().get(), submit, &contract).ok());
  crm::v1::ApproveContractRequest approve;
  approve.set_request_id("sales-flow-approve");
  approve.set_contract_id(contract.contract_id());
  EXPECT_EQ(
      sales->ApproveContract(Call("rep_ada", "sales_rep").get(), approve, &contract).error_code(),
      grpc::StatusCode::PERMISSION_DENIED);
  st = sales->ApproveContract(Call("mgr_grace", "sales_rep, sales_manager").get(), approve,
                              &contract);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(contract.status(), crm::v1::CONTRACT_STATUS_APPROVED);
  EXPECT_EQ(contract.decided_by(), "mgr_grace");

  // Loyalty reacts to InvoiceRequested coming back through the topic.
  ASSERT_TRUE(Eventually([&] {
    crm::v1::GetCustomerRequest get;
    get.set_customer_id(customer_id);
    crm::v1::Customer c;
    return sales->GetCustomer(Call().get(), get, &c).ok() && c.tier() == "silver";
  })) << stack_.service("sales").Log();

  // CustomerOpened, OpportunityOpened, 4 stage changes, QuoteDrafted,
  // QuoteAccepted, OrderPlaced, ContractDrafted, ContractSubmitted,
  // ContractApproved, InvoiceRequested, FulfilmentRequested,
  // CustomerSpendRecorded, CustomerTierChanged.
  constexpr size_t kSalesEvents = 16;
  auto published = ConsumeSalesTopic(stack_.brokers(), customer_id,
                                     [&](const auto& seen) { return seen.size() >= kSalesEvents; });
  ASSERT_EQ(published.size(), kSalesEvents);
  std::set<std::string> ids;
  std::map<std::string, const Published*> by_type;
  for (const auto& p : published) {
    ids.insert(p.envelope.event_id());
    by_type[p.envelope.type()] = &p;
  }
  EXPECT_EQ(ids.size(), kSalesEvents) << "duplicates on the topic";
  for (const char* type : {"InvoiceRequested", "FulfilmentRequested", "CustomerTierChanged",
                           "OpportunityStageChanged", "ContractApproved"}) {
    ASSERT_TRUE(by_type.count(type)) << type;
  }
  for (const char* type : {"InvoiceRequested", "FulfilmentRequested"}) {
    const Published& p = *by_type[type];
    EXPECT_EQ(p.key, customer_id);
    EXPECT_EQ(p.headers.at("ce_specversion"), "1.0");
    EXPECT_EQ(p.headers.at("ce_type"), absl::StrCat("crm.v1.", type));
    EXPECT_EQ(p.headers.at("ce_source"), "crm/sales");
    EXPECT_EQ(p.headers.at("ce_id"), p.envelope.event_id());
    EXPECT_EQ(p.headers.at("ce_subject"), absl::StrCat("contract-", contract.contract_id()));
    EXPECT_FALSE(p.headers.at("ce_time").empty());
    EXPECT_EQ(p.headers.at("content-type").rfind("application/protobuf", 0), 0u);
    EXPECT_EQ(p.envelope.actor(), "mgr_grace");
  }
  crm::v1::InvoiceRequested invoice;
  ASSERT_TRUE(by_type["InvoiceRequested"]->envelope.payload().UnpackTo(&invoice));
  EXPECT_EQ(invoice.order_id(), order.order_id());
  EXPECT_EQ(invoice.totals().total().minor_units(), 1'200'000);

  // The 360 view counts every sales event of the customer once: an
  // activity logged last is applied after them (one partition per
  // customer), so once it shows, the count is final.
  crm::v1::LogActivityRequest marker;
  marker.set_request_id("marker");
  marker.set_customer_id(customer_id);
  marker.set_kind(crm::v1::ACTIVITY_KIND_CALL);
  marker.set_subject("Invoice sent");
  crm::v1::Activity logged;
  const grpc::Status marked = sales->LogActivity(Call().get(), marker, &logged);
  ASSERT_TRUE(marked.ok()) << marked.error_message();
  const int64_t expected = before_sales + int64_t{kSalesEvents} + 1;
  EXPECT_TRUE(Eventually([&] { return stack_.EventCount(customer_id) >= expected; }))
      << stack_.EventCount(customer_id) << " events, " << before_sales << " before sales";
  EXPECT_EQ(stack_.EventCount(customer_id), expected);

  // The conversion opened the account and its opportunity.
  crm::v1::GetCustomerRequest get_converted;
  get_converted.set_customer_id(converted_lead.customer_id());
  crm::v1::Customer account;
  ASSERT_TRUE(Eventually([&] {
    return sales->GetCustomer(Call().get(), get_converted, &account).ok();
  })) << stack_.service("sales").Log();
  EXPECT_EQ(account.lead_id(), converted_lead.lead_id());
  EXPECT_EQ(account.owner_id(), "rep_lin");
  EXPECT_EQ(account.name(), "Bletchley");
  crm::v1::ListOpportunitiesRequest by_customer;
  by_customer.set_customer_id(converted_lead.customer_id());
  crm::v1::ListOpportunitiesResponse opportunities;
  ASSERT_TRUE(Eventually([&] {
    return sales->ListOpportunities(Call().get(), by_customer, &opportunities).ok() &&
           opportunities.opportunities_size() > 0;
  }));
  ASSERT_EQ(opportunities.opportunities_size(), 1);
  EXPECT_EQ(opportunities.opportunities(0).name(), "Bombes");
  EXPECT_EQ(opportunities.opportunities(0).amount().minor_units(), 750'000);
  EXPECT_EQ(opportunities.opportunities(0).owner_id(), "rep_lin");

  EXPECT_EQ(stack_.service("sales").Kill(SIGTERM), 0) << stack_.service("sales").Log();
  EXPECT_NE(stack_.service("sales").Log().find("\"msg\":\"stopped\""), std::string::npos);
}

// Record access through the gRPC edge, with tokens of reps and managers.
class SalesAccessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(stack_.StartBroker());
    ASSERT_TRUE(stack_.StartLeads()) << stack_.leads().Log();
    ASSERT_TRUE(stack_.Start("sales", {absl::StrCat("--metrics-listen=127.0.0.1:", metrics_)}))
        << stack_.service("sales").Log();
    admin_ = Stub(std::nullopt);
  }

  std::unique_ptr<crm::v1::SalesService::Stub> Stub(std::optional<auth::Principal> as) {
    return crm::v1::SalesService::NewStub(stack_.Channel("sales", std::move(as)));
  }

  // An account of rep A in "amer", opened by an admin.
  std::string OpenAccountOfRepA(const std::string& key) {
    crm::v1::OpenCustomerRequest open;
    open.set_request_id(key);
    open.set_name("A Corp");
    open.set_owner_id(kRepA.subject);
    open.set_territory("amer");
    crm::v1::Customer customer;
    auto st = admin_->OpenCustomer(Call().get(), open, &customer);
    EXPECT_TRUE(st.ok()) << st.error_message();
    return customer.customer_id();
  }

  const auth::Principal kRepA{"rep-a", {auth::kRoleSalesRep}, "amer"};
  const auth::Principal kRepB{"rep-b", {auth::kRoleSalesRep}, "amer"};
  const auth::Principal kRepC{"rep-c", {auth::kRoleSalesRep}, "amer"};
  const auth::Principal kManager{"mgr-amer", {auth::kRoleSalesManager}, "amer"};
  const auth::Principal kManagerNowARep{"mgr-amer", {auth::kRoleSalesRep}, "amer"};
  Stack stack_;
  int metrics_ = FreePort();
  std::unique_ptr<crm::v1::SalesService::Stub> admin_;
};

// Analytics' churn alert, read from crm.analytics.v1, becomes one retention
// call for the account's owner, however often it is delivered.
TEST_F(SalesAccessTest, AChurnAlertOnTheAnalyticsTopicOpensOneRetentionCallForTheOwner) {
  const std::string customer = OpenAccountOfRepA("open-churn");
  ASSERT_FALSE(customer.empty());
  crm::v1::ChurnRiskRaised raised;
  raised.set_customer_id(customer);
  raised.set_score(70);
  raised.set_threshold(60);
  crm::v1::EventEnvelope alert;
  alert.set_event_id("evt-churn-1");
  alert.set_type("ChurnRiskRaised");
  alert.set_stream("churnrisk-" + customer);
  alert.set_stream_version(1);
  alert.set_customer_id(customer);
  alert.set_source("crm/analytics");
  alert.mutable_occurred_at()->set_seconds(absl::ToUnixSeconds(absl::Now()));
  alert.mutable_payload()->PackFrom(raised);
  ASSERT_TRUE(ProduceToTopic(stack_.brokers(), kAnalyticsTopic, {alert, alert}));

  auto calls = [&] {
    crm::v1::ListTasksRequest req;
    req.set_customer_id(customer);
    crm::v1::ListTasksResponse tasks;
    auto st = Stub(kRepA)->ListTasks(Call().get(), req, &tasks);
    EXPECT_TRUE(st.ok()) << st.error_message();
    return tasks;
  };
  ASSERT_TRUE(Eventually([&] { return calls().tasks_size() >= 1; }, absl::Seconds(60)))
      << stack_.service("sales").Log();
  // The second copy is read and known for one: counted as a duplicate.
  ASSERT_TRUE(Eventually(
      [&] {
        return MetricSum(HttpGet(metrics_, "/metrics"), "crm_events_consumed_duplicates",
                         R"(group="crm-sales")") >= 1;
      },
      absl::Seconds(30)))
      << HttpGet(metrics_, "/metrics");
  const auto tasks = calls();
  ASSERT_EQ(tasks.tasks_size(), 1);
  EXPECT_EQ(tasks.tasks(0).owner_id(), kRepA.subject);
  EXPECT_EQ(tasks.tasks(0).title(), "Retention call: churn risk 70 (threshold 60)");
}

TEST_F(SalesAccessTest, AnOpenCustomerRetryAfterTheCallersTerritoryChangedGetsTheAccountOpened) {
  crm::v1::OpenCustomerRequest open;
  open.set_request_id("access-open-moved");
  open.set_name("Acme");
  open.set_owner_id(kRepA.subject);
  crm::v1::Customer opened;
  auto st = Stub(kManager)->OpenCustomer(Call().get(), open, &opened);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(opened.territory(), "amer");
  // The reply was lost and the manager moved to "apac" before the retry:
  // the account opened in "amer", not a refusal or a second account.
  const auth::Principal moved{kManager.subject, {auth::kRoleSalesManager}, "apac"};
  crm::v1::Customer retried;
  st = Stub(moved)->OpenCustomer(Call().get(), open, &retried);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(retried.customer_id(), opened.customer_id());
  EXPECT_EQ(retried.territory(), "amer");
  // A new request is scoped by the token it comes with.
  open.set_request_id("access-open-moved-2");
  open.set_territory("amer");
  EXPECT_EQ(Stub(moved)->OpenCustomer(Call().get(), open, &retried).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
}

TEST_F(SalesAccessTest, AnAccountsActivitiesHideThoseOfDealsTheCallerMayNotSee) {
  const std::string customer_id = OpenAccountOfRepA("access-act-customer");
  // A manager opens a deal on A's account for rep B.
  crm::v1::OpenOpportunityRequest open_opp;
  open_opp.set_request_id("access-act-opp");
  open_opp.set_customer_id(customer_id);
  open_opp.set_name("B's deal");
  open_opp.set_owner_id(kRepB.subject);
  *open_opp.mutable_amount() = Eur(100'000);
  crm::v1::Opportunity opp;
  auto st = Stub(kManager)->OpenOpportunity(Call().get(), open_opp, &opp);
  ASSERT_TRUE(st.ok()) << st.error_message();
  // The manager, now a rep, retries (the reply was lost): the first answer,
  // although a rep may not open deals for others; a new deal is refused.
  auto demoted = Stub(kManagerNowARep);
  crm::v1::Opportunity retried;
  st = demoted->OpenOpportunity(Call().get(), open_opp, &retried);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(retried.opportunity_id(), opp.opportunity_id());
  open_opp.set_request_id("access-act-opp-2");
  EXPECT_EQ(demoted->OpenOpportunity(Call().get(), open_opp, &retried).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);

  auto rep_a = Stub(kRepA);
  auto rep_b = Stub(kRepB);
  crm::v1::LogActivityRequest log;
  log.set_request_id("access-act-b");
  log.set_opportunity_id(opp.opportunity_id());
  log.set_kind(crm::v1::ACTIVITY_KIND_NOTE);
  log.set_subject("B's pricing notes");
  crm::v1::Activity b_note, a_note;
  st = rep_b->LogActivity(Call().get(), log, &b_note);
  ASSERT_TRUE(st.ok()) << st.error_message();
  log.set_request_id("access-act-a");
  log.clear_opportunity_id();
  log.set_customer_id(customer_id);
  log.set_subject("A's account note");
  st = rep_a->LogActivity(Call().get(), log, &a_note);
  ASSERT_TRUE(st.ok()) << st.error_message();

  crm::v1::GetOpportunityRequest get_opp;
  get_opp.set_opportunity_id(opp.opportunity_id());
  crm::v1::Opportunity ignored;
  EXPECT_EQ(rep_a->GetOpportunity(Call().get(), get_opp, &ignored).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);

  // A's account lists A's note only, and a page of one is cut after
  // filtering (B's note came first).
  crm::v1::ListActivitiesRequest by_customer;
  by_customer.set_customer_id(customer_id);
  by_customer.mutable_page()->set_page_size(1);
  crm::v1::ListActivitiesResponse page;
  st = rep_a->ListActivities(Call().get(), by_customer, &page);
  ASSERT_TRUE(st.ok()) << st.error_message();
  ASSERT_EQ(page.activities_size(), 1);
  EXPECT_EQ(page.activities(0).activity_id(), a_note.activity_id());
  EXPECT_EQ(page.next_page_token(), "");
  crm::v1::ListActivitiesRequest by_opp;
  by_opp.set_opportunity_id(opp.opportunity_id());
  ASSERT_TRUE(rep_a->ListActivities(Call().get(), by_opp, &page).ok());
  EXPECT_EQ(page.activities_size(), 0);

  // B sees the activities of their deal, not A's account note.
  by_customer.clear_page();
  st = rep_b->ListActivities(Call().get(), by_customer, &page);
  ASSERT_TRUE(st.ok()) << st.error_message();
  ASSERT_EQ(page.activities_size(), 1);
  EXPECT_EQ(page.activities(0).activity_id(), b_note.activity_id());
  // The manager of the territory sees both.
  ASSERT_TRUE(Stub(kManager)->ListActivities(Call().get(), by_customer, &page).ok());
  EXPECT_EQ(page.activities_size(), 2);
}

TEST_F(SalesAccessTest, ListActivitiesRefusesBadInputAndShowsNothingOfUnknownAccounts) {
  auto rep_a = Stub(kRepA);
  crm::v1::ListActivitiesResponse page;
  for (const std::string& customer_id : {std::string(), std::string("not an id!")}) {
    crm::v1::ListActivitiesRequest r;
    r.set_customer_id(customer_id);
    auto st = rep_a->ListActivities(Call().get(), r, &page);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << customer_id;
    EXPECT_EQ(st.error_message().rfind("customer_id:", 0), 0u) << st.error_message();
  }
  // Unknown and foreign accounts look the same: an empty list.
  crm::v1::ListActivitiesRequest missing;
  missing.set_customer_id("cus-does-not-exist");
  auto st = rep_a->ListActivities(Call().get(), missing, &page);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(page.activities_size(), 0);
}

TEST_F(SalesAccessTest, TheAssigneeOfATaskListsAndCompletesItWithoutAccessToTheAccount) {
  const std::string customer_id = OpenAccountOfRepA("access-task-customer");
  crm::v1::CreateTaskRequest create;
  create.set_request_id("access-task");
  create.set_customer_id(customer_id);
  create.set_title("Visit the plant");
  create.set_owner_id(kRepB.subject);
  create.mutable_due_at()->set_seconds(1'900'000'000);
  crm::v1::Task task;
  auto st = Stub(kManager)->CreateTask(Call().get(), create, &task);
  ASSERT_TRUE(st.ok()) << st.error_message();
  crm::v1::Task retried;
  st = Stub(kManagerNowARep)->CreateTask(Call().get(), create, &retried);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(retried.task_id(), task.task_id());

  auto rep_b = Stub(kRepB);
  crm::v1::ListTasksRequest mine;
  mine.set_owner_id(kRepB.subject);
  crm::v1::ListTasksResponse tasks;
  st = rep_b->ListTasks(Call().get(), mine, &tasks);
  ASSERT_TRUE(st.ok()) << st.error_message();
  ASSERT_EQ(tasks.tasks_size(), 1);
  EXPECT_EQ(tasks.tasks(0).task_id(), task.task_id());

  // Someone else is refused; the assignee completes it.
  crm::v1::CompleteTaskRequest complete;
  complete.set_request_id("access-task-done");
  complete.set_task_id(task.task_id());
  crm::v1::Task done;
  EXPECT_EQ(Stub(kRepC)->CompleteTask(Call().get(), complete, &done).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  st = rep_b->CompleteTask(Call().get(), complete, &done);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(done.status(), crm::v1::TASK_STATUS_COMPLETED);

  // The task gives B nothing of the account.
  crm::v1::GetCustomerRequest get;
  get.set_customer_id(customer_id);
  crm::v1::Customer customer;
  EXPECT_EQ(rep_b->GetCustomer(Call().get(), get, &customer).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  crm::v1::ListCustomersRequest list;
  crm::v1::ListCustomersResponse customers;
  ASSERT_TRUE(rep_b->ListCustomers(Call().get(), list, &customers).ok());
  EXPECT_EQ(customers.customers_size(), 0);
  // The account's owner still sees the task on their account.
  crm::v1::ListTasksRequest by_customer;
  by_customer.set_customer_id(customer_id);
  ASSERT_TRUE(Stub(kRepA)->ListTasks(Call().get(), by_customer, &tasks).ok());
  EXPECT_EQ(tasks.tasks_size(), 1);
}

TEST_F(SalesAccessTest, AManagerWorksAnAccountConvertedFromALeadWhoseRegionIsSpelledOtherwise) {
  // The lead is captured in "emea"; the manager's token says "EMEA".
  auto leads = stack_.LeadsStub();
  crm::v1::CaptureLeadRequest capture;
  capture.set_request_id("access-case-lead");
  capture.set_channel(crm::v1::LEAD_CHANNEL_WEB_FORM);
  capture.mutable_contact()->set_email("kay@case.example");
  capture.set_company("Case Ltd");
  capture.set_region("emea");
  crm::v1::CaptureLeadResponse lead;
  auto st = leads->CaptureLead(Call().get(), capture, &lead);
  ASSERT_TRUE(st.ok()) << st.error_message();
  crm::v1::QualifyLeadRequest qualify;
  qualify.set_request_id("access-case-qualify");
  qualify.set_lead_id(lead.lead_id());
  crm::v1::Lead qualified;
  st = leads->QualifyLead(Call().get(), qualify, &qualified);
  ASSERT_TRUE(st.ok()) << st.error_message();
  crm::v1::ConvertLeadRequest convert;
  convert.set_request_id("access-case-convert");
  convert.set_lead_id(lead.lead_id());
  convert.set_owner_id("rep-kay");
  crm::v1::ConvertLeadResponse conversion;
  st = leads->ConvertLead(Call().get(), convert, &conversion);
  ASSERT_TRUE(st.ok()) << st.error_message();
  crm::v1::GetCustomerRequest get;
  get.set_customer_id(lead.customer_id());
  crm::v1::Customer customer;
  ASSERT_TRUE(Eventually([&] { return admin_->GetCustomer(Call().get(), get, &customer).ok(); }))
      << stack_.service("sales").Log();
  ASSERT_EQ(customer.territory(), "emea");

  auto manager = Stub(auth::Principal{"mgr-emea", {auth::kRoleSalesManager}, "EMEA"});
  st = manager->GetCustomer(Call().get(), get, &customer);
  ASSERT_TRUE(st.ok()) << st.error_message();
  // Listed with and without the manager's own territory as the filter.
  for (const std::string& territory : {std::string(), std::string("EMEA")}) {
    crm::v1::ListCustomersRequest list;
    list.set_territory(territory);
    crm::v1::ListCustomersResponse customers;
    st = manager->ListCustomers(Call().get(), list, &customers);
    ASSERT_TRUE(st.ok()) << st.error_message();
    ASSERT_EQ(customers.customers_size(), 1) << "territory filter: " << territory;
    EXPECT_EQ(customers.customers(0).customer_id(), lead.customer_id());
  }
  crm::v1::ListOpportunitiesRequest by_customer;
  by_customer.set_customer_id(lead.customer_id());
  crm::v1::ListOpportunitiesResponse opps;
  ASSERT_TRUE(Eventually([&] {
    return manager->ListOpportunities(Call().get(), by_customer, &opps).ok() &&
           opps.opportunities_size() == 1;
  })) << stack_.service("sales").Log();
  crm::v1::GetOpportunityRequest get_opp;
  get_opp.set_opportunity_id(opps.opportunities(0).opportunity_id());
  crm::v1::Opportunity opp;
  st = manager->GetOpportunity(Call().get(), get_opp, &opp);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(opp.territory(), "emea");

  // And acts on them.
  crm::v1::ChangeOpportunityStageRequest change;
  change.set_request_id("access-case-stage");
  change.set_opportunity_id(opp.opportunity_id());
  change.set_expected_version(opp.version());
  change.set_stage_id("needs_analysis");
  st = manager->ChangeOpportunityStage(Call().get(), change, &opp);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(opp.stage_id(), "needs_analysis");
  crm::v1::LogActivityRequest log;
  log.set_request_id("access-case-call");
  log.set_customer_id(lead.customer_id());
  log.set_kind(crm::v1::ACTIVITY_KIND_CALL);
  log.set_subject("Intro call");
  crm::v1::Activity call;
  st = manager->LogActivity(Call().get(), log, &call);
  ASSERT_TRUE(st.ok()) << st.error_message();

  // The manager moves to another territory; a retry of the stage change
  // made before (its reply lost) still gets its answer, a new change not.
  auto moved = Stub(auth::Principal{"mgr-emea", {auth::kRoleSalesManager}, "APAC"});
  crm::v1::Opportunity retried;
  st = moved->ChangeOpportunityStage(Call().get(), change, &retried);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(retried.version(), opp.version());
  EXPECT_EQ(retried.stage_id(), "needs_analysis");
  change.set_request_id("access-case-stage-2");
  change.set_expected_version(opp.version());
  change.set_stage_id("proposal");
  EXPECT_EQ(moved->ChangeOpportunityStage(Call().get(), change, &retried).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
}

}  // namespace
}  // namespace crm::testing
