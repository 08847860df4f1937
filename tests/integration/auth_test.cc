// Authentication and authorization across real processes: leads, sales and
// the service desk on loopback with the development token key. Every RPC of
// the three services is taken from the generated service descriptors, so a
// new RPC is covered (and fails here until the policy table lists it).
#include <cstdlib>
#include <fstream>
#include <future>
#include <memory>
#include <set>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "crm/v1/admin.grpc.pb.h"
#include "crm/v1/analytics.grpc.pb.h"
#include "crm/v1/leads.grpc.pb.h"
#include "crm/v1/sales.grpc.pb.h"
#include "crm/v1/service_desk.grpc.pb.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/dynamic_message.h"
#include "grpcpp/generic/generic_stub.h"
#include "gtest/gtest.h"
#include "libs/common/auth/policy.h"
#include "tests/integration/stack.h"

namespace crm::testing {
namespace {

using auth::Principal;
using google::protobuf::Message;

const Principal kRepA{"rep-a", {auth::kRoleSalesRep}, "emea"};
const Principal kRepB{"rep-b", {auth::kRoleSalesRep}, "emea"};
const Principal kManagerEmea{"mgr-emea", {auth::kRoleSalesManager}, "emea"};
const Principal kManagerAmer{"mgr-amer", {auth::kRoleSalesManager}, "amer"};
const Principal kAdmin{"admin-1", {auth::kRoleAdmin}, ""};

const std::vector<std::pair<std::string, std::string>> kServices = {
    {"leads", "crm.v1.LeadsService"},
    {"sales", "crm.v1.SalesService"},
    {"service-desk", "crm.v1.ServiceDeskService"}};

std::unique_ptr<grpc::ClientContext> Ctx() {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  return ctx;
}

struct RawReply {
  grpc::Status status;
  std::string bytes;
};

// One unary call by full method name with a serialized request.
RawReply CallRaw(const std::shared_ptr<grpc::Channel>& channel, const std::string& method,
                 const std::string& request) {
  grpc::GenericStub stub(channel);
  auto ctx = Ctx();
  grpc::Slice slice(request);
  grpc::ByteBuffer req(&slice, 1);
  grpc::ByteBuffer resp;
  std::promise<grpc::Status> done;
  stub.UnaryCall(ctx.get(), method, grpc::StubOptions(), &req, &resp,
                 [&done](grpc::Status s) { done.set_value(std::move(s)); });
  RawReply reply;
  reply.status = done.get_future().get();
  std::vector<grpc::Slice> slices;
  if (reply.status.ok() && resp.Dump(&slices).ok()) {
    for (const auto& s : slices)
      reply.bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  }
  return reply;
}

// The one streaming RPC, called with a row that names someone else's lead.
grpc::Status ImportOneRow(const std::shared_ptr<grpc::Channel>& channel) {
  auto stub = crm::v1::LeadsService::NewStub(channel);
  auto ctx = Ctx();
  crm::v1::ImportLeadsResponse response;
  auto writer = stub->ImportLeads(ctx.get(), &response);
  crm::v1::ImportLeadsRequest req;
  req.set_import_id(absl::StrCat("auth-import-", rand()));
  auto* row = req.add_rows();
  row->set_row_number(1);
  writer->Write(req);
  writer->WritesDone();
  return writer->Finish();
}

const google::protobuf::ServiceDescriptor* Service(const std::string& name) {
  // Touch one message per proto file so its descriptors are in the pool.
  for (const auto* d :
       {crm::v1::Lead::descriptor(), crm::v1::Customer::descriptor(), crm::v1::Ticket::descriptor(),
        crm::v1::GetCustomer360Request::descriptor(), crm::v1::CreateBackupRequest::descriptor()}) {
    (void)d;
  }
  return google::protobuf::DescriptorPool::generated_pool()->FindServiceByName(name);
}

std::string FullName(const google::protobuf::MethodDescriptor* m) {
  return absl::StrCat("/", m->service()->full_name(), "/", m->name());
}

// Reads every record of rep B by id, as an admin, for the before/after check.
class AuthTest : public ::testing::Test {
 protected:
  // Per test, not per suite: a failed suite set-up marks its tests skipped,
  // which ctest counts as passed. ctest runs each test in its own process,
  // so a shared stack would start as often anyway.
  void SetUp() override {
    stack_ = std::make_unique<Stack>();
    ASSERT_TRUE(stack_->StartBroker());
    for (const char* s : {"leads", "sales", "service-desk"}) {
      ASSERT_TRUE(stack_->Start(s)) << s;
    }
    SeedRecordsOfRepB();
  }
  void TearDown() override { stack_.reset(); }

  static void SeedRecordsOfRepB() {
    auto leads = crm::v1::LeadsService::NewStub(stack_->Channel("leads", kAdmin));
    crm::v1::CaptureLeadRequest capture;
    capture.set_request_id("auth-b-lead");
    capture.set_channel(crm::v1::LEAD_CHANNEL_WEB_FORM);
    capture.mutable_contact()->set_first_name("Bea");
    capture.mutable_contact()->set_email("bea@b.example");
    capture.set_company("B Corp");
    capture.set_region("emea");
    crm::v1::CaptureLeadResponse captured;
    ASSERT_TRUE(leads->CaptureLead(Ctx().get(), capture, &captured).ok());
    b_.lead_id = captured.lead_id();
    crm::v1::AssignLeadRequest assign;
    assign.set_request_id("auth-b-assign");
    assign.set_lead_id(b_.lead_id);
    assign.set_owner_id(kRepB.subject);
    crm::v1::Lead lead;
    auto st = leads->AssignLead(Ctx().get(), assign, &lead);
    ASSERT_TRUE(st.ok()) << st.error_message();

    auto sales = crm::v1::SalesService::NewStub(stack_->Channel("sales", kAdmin));
    crm::v1::OpenCustomerRequest open;
    open.set_request_id("auth-b-customer");
    open.set_name("B Corp");
    open.set_owner_id(kRepB.subject);
    open.set_territory("emea");
    crm::v1::Customer customer;
    st = sales->OpenCustomer(Ctx().get(), open, &customer);
    ASSERT_TRUE(st.ok()) << st.error_message();
    b_.customer_id = customer.customer_id();

    auto open_opp = [&](const std::string& key, crm::v1::Opportunity* opp) {
      crm::v1::OpenOpportunityRequest r;
      r.set_request_id(key);
      r.set_customer_id(b_.customer_id);
      r.set_name("Deal");
      r.mutable_amount()->set_currency("EUR");
      r.mutable_amount()->set_minor_units(100'000);
      r.set_expected_close_date("2030-06-30");
      auto s = sales->OpenOpportunity(Ctx().get(), r, opp);
      ASSERT_TRUE(s.ok()) << s.error_message();
    };
    crm::v1::Opportunity opp, won;
    open_opp("auth-b-opp", &opp);
    open_opp("auth-b-opp-won", &won);
    b_.opportunity_id = opp.opportunity_id();
    for (const char* stage : {"needs_analysis", "proposal", "negotiation", "contract_signed"}) {
      crm::v1::ChangeOpportunityStageRequest change;
      change.set_request_id(absl::StrCat("auth-b-", stage));
      change.set_opportunity_id(won.opportunity_id());
      change.set_expected_version(won.version());
      change.set_stage_id(stage);
      st = sales->ChangeOpportunityStage(Ctx().get(), change, &won);
      ASSERT_TRUE(st.ok()) << st.error_message();
    }
    crm::v1::DraftQuoteRequest draft;
    draft.set_request_id("auth-b-quote");
    draft.set_opportunity_id(won.opportunity_id());
    draft.set_currency("EUR");
    auto* line = draft.add_lines();
    line->set_product_id("p");
    line->set_quantity(1);
    line->mutable_unit_price()->set_currency("EUR");
    line->mutable_unit_price()->set_minor_units(1000);
    crm::v1::Quote quote;
    st = sales->DraftQuote(Ctx().get(), draft, &quote);
    ASSERT_TRUE(st.ok()) << st.error_message();
    b_.quote_id = quote.quote_id();
    crm::v1::AcceptQuoteRequest accept;
    accept.set_request_id("auth-b-accept");
    accept.set_quote_id(quote.quote_id());
    ASSERT_TRUE(sales->AcceptQuote(Ctx().get(), accept, &quote).ok());
    crm::v1::PlaceOrderRequest place;
    place.set_request_id("auth-b-order");
    place.set_quote_id(quote.quote_id());
    crm::v1::Order order;
    ASSERT_TRUE(sales->PlaceOrder(Ctx().get(), place, &order).ok());
    b_.order_id = order.order_id();
    crm::v1::DraftContractRequest contract_req;
    contract_req.set_request_id("auth-b-contract");
    contract_req.set_order_id(order.order_id());
    contract_req.set_start_date("2030-07-01");
    crm::v1::Contract contract;
    st = sales->DraftContract(Ctx().get(), contract_req, &contract);
    ASSERT_TRUE(st.ok()) << st.error_message();
    b_.contract_id = contract.contract_id();
    crm::v1::CreateTaskRequest task_req;
    task_req.set_request_id("auth-b-task");
    task_req.set_customer_id(b_.customer_id);
    task_req.set_title("Call back");
    task_req.set_owner_id(kRepB.subject);
    *task_req.mutable_due_at() = google::protobuf::Timestamp();
    task_req.mutable_due_at()->set_seconds(1'900'000'000);
    crm::v1::Task task;
    st = sales->CreateTask(Ctx().get(), task_req, &task);
    ASSERT_TRUE(st.ok()) << st.error_message();
    b_.task_id = task.task_id();
    // A second one, so that a page of one task has a next page.
    task_req.set_request_id("auth-b-task-2");
    task_req.set_title("Send the offer");
    st = sales->CreateTask(Ctx().get(), task_req, &task);
    ASSERT_TRUE(st.ok()) << st.error_message();
  }

  // Everything an admin reads about rep B's records, to prove nothing changed.
  static std::string SnapshotOfB() {
    auto leads = crm::v1::LeadsService::NewStub(stack_->Channel("leads", kAdmin));
    auto sales = crm::v1::SalesService::NewStub(stack_->Channel("sales", kAdmin));
    std::string out;
    crm::v1::GetLeadRequest gl;
    gl.set_lead_id(b_.lead_id);
    crm::v1::Lead lead;
    EXPECT_TRUE(leads->GetLead(Ctx().get(), gl, &lead).ok());
    crm::v1::GetCustomerRequest gc;
    gc.set_customer_id(b_.customer_id);
    crm::v1::Customer customer;
    EXPECT_TRUE(sales->GetCustomer(Ctx().get(), gc, &customer).ok());
    crm::v1::GetOpportunityRequest go;
    go.set_opportunity_id(b_.opportunity_id);
    crm::v1::Opportunity opp;
    EXPECT_TRUE(sales->GetOpportunity(Ctx().get(), go, &opp).ok());
    crm::v1::GetQuoteRequest gq;
    gq.set_quote_id(b_.quote_id);
    crm::v1::Quote quote;
    EXPECT_TRUE(sales->GetQuote(Ctx().get(), gq, &quote).ok());
    crm::v1::GetContractRequest gk;
    gk.set_contract_id(b_.contract_id);
    crm::v1::Contract contract;
    EXPECT_TRUE(sales->GetContract(Ctx().get(), gk, &contract).ok());
    crm::v1::ListTasksRequest lt;
    lt.set_customer_id(b_.customer_id);
    crm::v1::ListTasksResponse tasks;
    EXPECT_TRUE(sales->ListTasks(Ctx().get(), lt, &tasks).ok());
    for (const Message* m :
         std::initializer_list<const Message*>{&lead, &customer, &opp, &quote, &contract, &tasks}) {
      out += m->ShortDebugString();
      out += "\n";
    }
    return out;
  }

  // A request of the method's type aimed at rep B's records: every id
  // field names one of B's, owner_id names B.
  static std::unique_ptr<Message> RequestAimedAtB(const google::protobuf::MethodDescriptor* m,
                                                  bool* names_a_record) {
    std::unique_ptr<Message> msg(google::protobuf::MessageFactory::generated_factory()
                                     ->GetPrototype(m->input_type())
                                     ->New());
    const std::map<std::string, std::string> ids = {{"lead_id", b_.lead_id},
                                                    {"survivor_lead_id", b_.lead_id},
                                                    {"merged_lead_id", b_.lead_id},
                                                    {"customer_id", b_.customer_id},
                                                    {"opportunity_id", b_.opportunity_id},
                                                    {"quote_id", b_.quote_id},
                                                    {"order_id", b_.order_id},
                                                    {"contract_id", b_.contract_id},
                                                    {"task_id", b_.task_id},
                                                    {"ticket_id", "tkt-of-someone"}};
    *names_a_record = false;
    const auto* d = msg->GetDescriptor();
    const auto* r = msg->GetReflection();
    for (int i = 0; i < d->field_count(); ++i) {
      const auto* f = d->field(i);
      if (f->is_repeated() || f->type() != google::protobuf::FieldDescriptor::TYPE_STRING) continue;
      if (auto it = ids.find(f->name()); it != ids.end()) {
        r->SetString(msg.get(), f, it->second);
        *names_a_record = true;
      } else if (f->name() == "owner_id") {
        r->SetString(msg.get(), f, kRepB.subject);
      } else if (f->name() == "request_id") {
        r->SetString(msg.get(), f, absl::StrCat("auth-sweep-", m->name(), "-", rand()));
      }
    }
    return msg;
  }

  struct RecordsOfB {
    std::string lead_id, customer_id, opportunity_id, quote_id, order_id, contract_id, task_id;
  };
  static std::unique_ptr<Stack> stack_;
  static RecordsOfB b_;
};

std::unique_ptr<Stack> AuthTest::stack_;
AuthTest::RecordsOfB AuthTest::b_;

TEST_F(AuthTest, EveryRpcHasAnAccessPolicy) {
  for (const auto& [service, name] : kServices) {
    const auto* d = Service(name);
    ASSERT_NE(d, nullptr) << name;
    for (int i = 0; i < d->method_count(); ++i) {
      EXPECT_FALSE(auth::AllowedRoles(FullName(d->method(i))).empty())
          << FullName(d->method(i)) << " is missing from libs/common/auth/policy.cc";
    }
  }
  // Analytics has no record checks here yet, and every service also serves
  // AdminService: their methods need a row too.
  for (const char* name : {"crm.v1.AnalyticsService", "crm.v1.AdminService"}) {
    const auto* d = Service(name);
    ASSERT_NE(d, nullptr) << name;
    for (int i = 0; i < d->method_count(); ++i) {
      EXPECT_FALSE(auth::AllowedRoles(FullName(d->method(i))).empty())
          << FullName(d->method(i)) << " is missing from libs/common/auth/policy.cc";
    }
  }
}

TEST_F(AuthTest, EveryRpcWithoutTokenIsUnauthenticated) {
  for (const auto& [service, name] : kServices) {
    const auto channel = stack_->ChannelWithoutToken(service);
    const auto* d = Service(name);
    for (int i = 0; i < d->method_count(); ++i) {
      const auto* m = d->method(i);
      grpc::Status st;
      if (m->client_streaming()) {
        ASSERT_EQ(m->name(), "ImportLeads") << "add a streaming case for " << FullName(m);
        st = ImportOneRow(channel);
      } else {
        bool ignored = false;
        st =
            CallRaw(channel, FullName(m), RequestAimedAtB(m, &ignored)->SerializeAsString()).status;
      }
      EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAUTHENTICATED) << FullName(m);
      EXPECT_NE(st.error_message().find("bearer token"), std::string::npos) << st.error_message();
    }
  }
}

// The path is the client's to choose: a log name and metric series per
// path would let anyone without a token grow the service's memory.
TEST_F(AuthTest, CallsToUnknownMethodsShareOneName) {
  const std::string probe = "/crm.v1.LeadsService/NoSuchMethod-" + std::string(64, 'x');
  EXPECT_NE(CallRaw(stack_->ChannelWithoutToken("leads"), probe, "").status.error_code(),
            grpc::StatusCode::OK);
  EXPECT_TRUE(Eventually([&] {
    return absl::StrContains(stack_->leads().Log(), R"("method":"unknown")");
  })) << stack_->leads().Log();
  EXPECT_FALSE(absl::StrContains(stack_->leads().Log(), "NoSuchMethod"));
}

void ExpectServing(const std::shared_ptr<grpc::Channel>& channel) {
  auto health = grpc::health::v1::Health::NewStub(channel);
  grpc::health::v1::HealthCheckRequest req;
  grpc::health::v1::HealthCheckResponse resp;
  auto st = health->Check(Ctx().get(), req, &resp);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(resp.status(), grpc::health::v1::HealthCheckResponse::SERVING);
}

TEST_F(AuthTest, HealthStaysOpenWithoutToken) {
  ExpectServing(stack_->ChannelWithoutToken("leads"));
}

// A server reflection stream opened without a token that sends nothing:
// the service's handler waits on it for a request.
class IdleReflectionStream final
    : public grpc::ClientBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer> {
 public:
  explicit IdleReflectionStream(grpc::GenericStub& stub) {
    stub.PrepareBidiStreamingCall(&ctx_,
                                  "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
                                  grpc::StubOptions(), this);
    StartCall();
  }
  void OnDone(const grpc::Status& s) override {
    status_ = s;
    done_.Notify();
  }
  grpc::Status Close() {
    ctx_.TryCancel();
    done_.WaitForNotification();
    return status_;
  }

 private:
  grpc::ClientContext ctx_;
  grpc::Status status_;
  absl::Notification done_;
};

// One server reflection exchange: the list of services, as grpcurl asks.
class ListServicesByReflection final
    : public grpc::ClientBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer> {
 public:
  explicit ListServicesByReflection(grpc::GenericStub& stub) {
    ctx_.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    // ServerReflectionRequest{list_services: ""}: field 7, empty.
    grpc::Slice slice(std::string("\x3a\x00", 2));
    request_ = grpc::ByteBuffer(&slice, 1);
    stub.PrepareBidiStreamingCall(&ctx_,
                                  "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
                                  grpc::StubOptions(), this);
    StartWrite(&request_);
    StartRead(&response_);
    StartCall();
  }
  void OnWriteDone(bool ok) override {
    if (ok) StartWritesDone();
  }
  void OnReadDone(bool ok) override { answered_ = ok && response_.Length() > 0; }
  void OnDone(const grpc::Status& s) override {
    status_ = s;
    done_.Notify();
  }
  // OK with an answer, or why not.
  grpc::Status Wait() {
    done_.WaitForNotification();
    if (status_.ok() && !answered_) return grpc::Status(grpc::StatusCode::UNKNOWN, "no answer");
    return status_;
  }

 private:
  grpc::ClientContext ctx_;
  grpc::ByteBuffer request_, response_;
  bool answered_ = false;
  grpc::Status status_;
  absl::Notification done_;
};

int ThreadsOf(pid_t pid) {
  std::ifstream status(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(status, line)) {
    if (absl::StartsWith(line, "Threads:")) return std::stoi(line.substr(8));
  }
  return -1;
}

// Reflection is open and serves each stream on a thread of its own: streams
// left idle must not take threads without bound, nor keep others waiting.
TEST_F(AuthTest, IdleReflectionStreamsTakeABoundedNumberOfThreads) {
  const pid_t pid = stack_->leads().pid();
  const int before = ThreadsOf(pid);
  ASSERT_GT(before, 0);
  grpc::GenericStub stub(stack_->ChannelWithoutToken("leads"));
  std::vector<std::unique_ptr<IdleReflectionStream>> streams;
  for (int i = 0; i < 64; ++i) streams.push_back(std::make_unique<IdleReflectionStream>(stub));
  // The streams the service took are waiting; the rest were refused.
  absl::SleepFor(absl::Seconds(2));
  const int during = ThreadsOf(pid);
  EXPECT_LT(during - before, 24) << before << " threads before, " << during << " with the streams";

  ExpectServing(stack_->ChannelWithoutToken("leads"));
  crm::v1::ListLeadsRequest list;
  crm::v1::ListLeadsResponse listed;
  const grpc::Status st = stack_->LeadsStub()->ListLeads(Ctx().get(), list, &listed);
  EXPECT_TRUE(st.ok()) << st.error_message();
  int refused = 0;
  for (auto& stream : streams) {
    refused += stream->Close().error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED;
  }
  EXPECT_GT(refused, 0) << "streams past the thread quota are refused";
  // Closed, their threads serve reflection again, once the cancelled
  // handlers have returned them to the quota.
  grpc::Status listed_services;
  EXPECT_TRUE(Eventually([&] {
    ListServicesByReflection listing(stub);
    listed_services = listing.Wait();
    return listed_services.error_code() != grpc::StatusCode::RESOURCE_EXHAUSTED;
  }));
  EXPECT_TRUE(listed_services.ok()) << listed_services.error_message();
}

// The correlation id goes into every event of the call: an overlong one is
// refused before anything is written.
TEST_F(AuthTest, AnOverlongCorrelationIdIsRefusedAndWritesNothing) {
  auto leads = crm::v1::LeadsService::NewStub(stack_->Channel("leads", kAdmin));
  auto count = [&] {
    int n = 0;
    crm::v1::ListLeadsRequest list;
    list.mutable_page()->set_page_size(100);
    for (int pages = 0; pages < 100; ++pages) {
      crm::v1::ListLeadsResponse listed;
      EXPECT_TRUE(leads->ListLeads(Ctx().get(), list, &listed).ok());
      n += listed.leads_size();
      if (listed.next_page_token().empty()) break;
      list.mutable_page()->set_page_token(listed.next_page_token());
    }
    return n;
  };
  const int before = count();
  crm::v1::CaptureLeadRequest capture;
  capture.set_request_id("auth-long-correlation");
  capture.set_channel(crm::v1::LEAD_CHANNEL_WEB_FORM);
  capture.mutable_contact()->set_email("cid@c.example");
  crm::v1::CaptureLeadResponse captured;
  auto ctx = Ctx();
  ctx->AddMetadata("x-correlation-id", std::string(129, 'c'));
  auto st = leads->CaptureLead(ctx.get(), capture, &captured);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(st.error_message(), "x-correlation-id: longer than 128 bytes");
  EXPECT_EQ(count(), before);
  // 128 bytes are taken.
  auto ok_ctx = Ctx();
  ok_ctx->AddMetadata("x-correlation-id", std::string(128, 'c'));
  EXPECT_TRUE(leads->CaptureLead(ok_ctx.get(), capture, &captured).ok());
  EXPECT_EQ(count(), before + 1);
  // An open method writes nothing: a probe with any id is answered.
  auto health = grpc::health::v1::Health::NewStub(stack_->ChannelWithoutToken("leads"));
  auto probe = Ctx();
  probe->AddMetadata("x-correlation-id", std::string(129, 'c'));
  grpc::health::v1::HealthCheckRequest check;
  grpc::health::v1::HealthCheckResponse serving;
  EXPECT_TRUE(health->Check(probe.get(), check, &serving).ok());
}

TEST_F(AuthTest, BadTokensAreUnauthenticated) {
  auth::TokenSpec spec;
  spec.subject = "rep-a";
  spec.roles = {"admin"};
  spec.issuer = auth::kDefaultIssuer;
  spec.audience = auth::kDefaultAudience;
  std::vector<std::pair<std::string, std::string>> cases;
  auth::TokenSpec expired = spec;
  expired.issued_at = absl::Now() - absl::Hours(3);
  cases.push_back({"expired", *auth::SignHs256(expired, auth::kDevHs256Key)});
  auth::TokenSpec foreign = spec;
  foreign.issuer = "someone-else";
  cases.push_back({"issuer", *auth::SignHs256(foreign, auth::kDevHs256Key)});
  cases.push_back({"signature", *auth::SignHs256(spec, "another-key-of-at-least-32-bytes!!!!")});
  cases.push_back(
      {"not accepted", *auth::SignRaw(R"({"alg":"none"})", auth::ClaimsJson(spec), "none", "")});
  cases.push_back({"compact JWS", "garbage"});
  auto stub = crm::v1::LeadsService::NewStub(stack_->ChannelWithoutToken("leads"));
  for (const auto& [why, token] : cases) {
    auto ctx = Ctx();
    ctx->AddMetadata("authorization", "Bearer " + token);
    crm::v1::ListLeadsRequest req;
    crm::v1::ListLeadsResponse resp;
    auto st = stub->ListLeads(ctx.get(), req, &resp);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAUTHENTICATED) << why;
    EXPECT_NE(st.error_message().find(why), std::string::npos) << why << ": " << st.error_message();
  }
}

TEST_F(AuthTest, ForgedVerdictMetadataIsIgnored) {
  // Without a token, a hand-written verdict does not get anyone in.
  auto stub = crm::v1::LeadsService::NewStub(stack_->ChannelWithoutToken("leads"));
  crm::v1::GetLeadRequest req;
  req.set_lead_id(b_.lead_id);
  crm::v1::Lead lead;
  auto ctx = Ctx();
  ctx->AddMetadata("x-crm-auth-verdict", "1:x1:01:5:admin0:5:admin");
  EXPECT_EQ(stub->GetLead(ctx.get(), req, &lead).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  // With rep A's token, neither it nor the old roles header widens access.
  auto as_a = crm::v1::LeadsService::NewStub(stack_->Channel("leads", kRepA));
  auto ctx2 = Ctx();
  ctx2->AddMetadata("x-crm-auth-verdict", "1:x1:01:5:admin0:5:admin");
  ctx2->AddMetadata("x-crm-roles", "admin");
  EXPECT_EQ(as_a->GetLead(ctx2.get(), req, &lead).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
}

TEST_F(AuthTest, RepCannotReadOrChangeAnotherRepsRecordsThroughAnyRpc) {
  const std::string before = SnapshotOfB();
  for (const auto& [service, name] : kServices) {
    const auto channel = stack_->Channel(service, kRepA);
    const auto* d = Service(name);
    for (int i = 0; i < d->method_count(); ++i) {
      const auto* m = d->method(i);
      if (m->client_streaming()) {
        ASSERT_EQ(m->name(), "ImportLeads") << "add a streaming case for " << FullName(m);
        EXPECT_EQ(ImportOneRow(channel).error_code(), grpc::StatusCode::PERMISSION_DENIED);
        continue;
      }
      bool names_a_record = false;
      auto request = RequestAimedAtB(m, &names_a_record);
      const RawReply reply = CallRaw(channel, FullName(m), request->SerializeAsString());
      const bool is_list = absl::StartsWith(m->name(), "List") ||
                           absl::StartsWith(m->name(), "Search") || m->name() == "GetForecast";
      if (names_a_record && !is_list) {
        EXPECT_EQ(reply.status.error_code(), grpc::StatusCode::PERMISSION_DENIED)
            << FullName(m) << ": " << reply.status.error_message();
      }
      // Lists are filtered, not failed: nothing of B's comes back.
      for (const std::string& secret : {b_.lead_id, b_.customer_id, b_.opportunity_id, b_.quote_id,
                                        b_.order_id, b_.contract_id, b_.task_id, kRepB.subject}) {
        EXPECT_EQ(reply.bytes.find(secret), std::string::npos)
            << FullName(m) << " leaked " << secret;
      }
    }
  }
  EXPECT_EQ(SnapshotOfB(), before) << "a denied call changed rep B's records";
}

TEST_F(AuthTest, OwnerSeesOwnRecordsAndListsAreScoped) {
  auto sales_b = crm::v1::SalesService::NewStub(stack_->Channel("sales", kRepB));
  crm::v1::GetOpportunityRequest go;
  go.set_opportunity_id(b_.opportunity_id);
  crm::v1::Opportunity opp;
  auto st = sales_b->GetOpportunity(Ctx().get(), go, &opp);
  ASSERT_TRUE(st.ok()) << st.error_message();

  // Rep A opens an account of their own; listing shows it and not B's.
  auto sales_a = crm::v1::SalesService::NewStub(stack_->Channel("sales", kRepA));
  crm::v1::OpenCustomerRequest open;
  open.set_request_id("auth-a-customer");
  open.set_name("A Corp");
  open.set_territory("emea");
  crm::v1::Customer mine;
  st = sales_a->OpenCustomer(Ctx().get(), open, &mine);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(mine.owner_id(), "rep-a");
  crm::v1::ListCustomersRequest list;
  crm::v1::ListCustomersResponse page;
  ASSERT_TRUE(sales_a->ListCustomers(Ctx().get(), list, &page).ok());
  std::set<std::string> seen;
  for (const auto& c : page.customers()) seen.insert(c.customer_id());
  EXPECT_EQ(seen, std::set<std::string>{mine.customer_id()});
  // Not under a known person's id: the account would make A an owner of B's
  // customer in every service's view.
  open.set_request_id("auth-a-squat");
  open.set_customer_id(b_.customer_id);
  crm::v1::Customer squatted;
  EXPECT_EQ(sales_a->OpenCustomer(Ctx().get(), open, &squatted).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);

  auto leads_b = crm::v1::LeadsService::NewStub(stack_->Channel("leads", kRepB));
  crm::v1::ListLeadsRequest ll;
  crm::v1::ListLeadsResponse leads;
  ASSERT_TRUE(leads_b->ListLeads(Ctx().get(), ll, &leads).ok());
  ASSERT_EQ(leads.leads_size(), 1);
  EXPECT_EQ(leads.leads(0).lead_id(), b_.lead_id);
}

// A filter narrowed to nothing for a rep still checks the request: the
// rep learns of a bad token or page size as an admin would, not from an
// empty page that looks like "no records".
TEST_F(AuthTest, ScopedListsStillRefuseBadInput) {
  auto expect_invalid = [](const grpc::Status& st, const std::string& field) {
    EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << st.error_message();
    EXPECT_NE(st.error_message().find(field), std::string::npos) << st.error_message();
  };
  auto sales_a = crm::v1::SalesService::NewStub(stack_->Channel("sales", kRepA));
  crm::v1::ListCustomersRequest lc;
  lc.set_owner_id("rep-b");
  lc.mutable_page()->set_page_token("garbage");
  crm::v1::ListCustomersResponse customers;
  expect_invalid(sales_a->ListCustomers(Ctx().get(), lc, &customers), "page.page_token");
  lc.mutable_page()->clear_page_token();
  lc.mutable_page()->set_page_size(-1);
  expect_invalid(sales_a->ListCustomers(Ctx().get(), lc, &customers), "page.page_size");

  crm::v1::ListOpportunitiesRequest lo;
  lo.set_owner_id("rep-b");
  lo.set_close_date_from("2026-13-01");
  crm::v1::ListOpportunitiesResponse opps;
  expect_invalid(sales_a->ListOpportunities(Ctx().get(), lo, &opps), "close_date_from");
  lo.clear_close_date_from();
  lo.mutable_page()->set_page_token("garbage");
  expect_invalid(sales_a->ListOpportunities(Ctx().get(), lo, &opps), "page.page_token");

  auto leads_a = crm::v1::LeadsService::NewStub(stack_->Channel("leads", kRepA));
  crm::v1::ListLeadsRequest ll;
  ll.set_queue("unassigned");
  ll.mutable_page()->set_page_token("garbage");
  crm::v1::ListLeadsResponse leads;
  expect_invalid(leads_a->ListLeads(Ctx().get(), ll, &leads), "page.page_token");
  ll.mutable_page()->clear_page_token();
  ll.mutable_page()->set_page_size(-1);
  expect_invalid(leads_a->ListLeads(Ctx().get(), ll, &leads), "page.page_size");
  // The same narrowed request, well formed, is an empty page.
  ll.mutable_page()->clear_page_size();
  ASSERT_TRUE(leads_a->ListLeads(Ctx().get(), ll, &leads).ok());
  EXPECT_EQ(leads.leads_size(), 0);
}

TEST_F(AuthTest, MissingAndForeignRecordsLookTheSameToARep) {
  auto leads = crm::v1::LeadsService::NewStub(stack_->Channel("leads", kRepA));
  crm::v1::Lead lead;
  crm::v1::GetLeadRequest foreign;
  foreign.set_lead_id(b_.lead_id);
  const auto st_foreign = leads->GetLead(Ctx().get(), foreign, &lead);
  crm::v1::GetLeadRequest missing;
  missing.set_lead_id("lead-does-not-exist");
  const auto st_missing = leads->GetLead(Ctx().get(), missing, &lead);
  EXPECT_EQ(st_foreign.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(st_missing.error_code(), st_foreign.error_code());
  EXPECT_EQ(absl::StrReplaceAll(st_missing.error_message(), {{"lead-does-not-exist", "ID"}}),
            absl::StrReplaceAll(st_foreign.error_message(), {{b_.lead_id, "ID"}}));
}

TEST_F(AuthTest, ManagersWorkInTheirTerritoryOnly) {
  crm::v1::GetCustomerRequest gc;
  gc.set_customer_id(b_.customer_id);
  crm::v1::Customer customer;
  auto emea = crm::v1::SalesService::NewStub(stack_->Channel("sales", kManagerEmea));
  auto amer = crm::v1::SalesService::NewStub(stack_->Channel("sales", kManagerAmer));
  EXPECT_TRUE(emea->GetCustomer(Ctx().get(), gc, &customer).ok());
  EXPECT_EQ(amer->GetCustomer(Ctx().get(), gc, &customer).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);

  crm::v1::ReviseOpportunityRequest revise;
  revise.set_request_id("auth-amer-revise");
  revise.set_opportunity_id(b_.opportunity_id);
  revise.set_name("Hijacked");
  crm::v1::Opportunity opp;
  EXPECT_EQ(amer->ReviseOpportunity(Ctx().get(), revise, &opp).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);

  crm::v1::ListOpportunitiesRequest lo;
  crm::v1::ListOpportunitiesResponse opps;
  ASSERT_TRUE(amer->ListOpportunities(Ctx().get(), lo, &opps).ok());
  EXPECT_EQ(opps.opportunities_size(), 0);
  ASSERT_TRUE(emea->ListOpportunities(Ctx().get(), lo, &opps).ok());
  EXPECT_EQ(opps.opportunities_size(), 2);  // both of B's, in emea

  // Access is checked before a page is cut: a page is empty only at the
  // end, and a full page points on to the next.
  lo.mutable_page()->set_page_size(1);
  ASSERT_TRUE(amer->ListOpportunities(Ctx().get(), lo, &opps).ok());
  EXPECT_EQ(opps.opportunities_size(), 0);
  EXPECT_EQ(opps.next_page_token(), "");
  ASSERT_TRUE(emea->ListOpportunities(Ctx().get(), lo, &opps).ok());
  EXPECT_EQ(opps.opportunities_size(), 1);
  EXPECT_NE(opps.next_page_token(), "");
  crm::v1::ListTasksRequest lt;
  lt.mutable_page()->set_page_size(1);
  crm::v1::ListTasksResponse tasks;
  ASSERT_TRUE(amer->ListTasks(Ctx().get(), lt, &tasks).ok());
  EXPECT_EQ(tasks.tasks_size(), 0);
  EXPECT_EQ(tasks.next_page_token(), "");
  auto rep_a = crm::v1::SalesService::NewStub(stack_->Channel("sales", kRepA));
  ASSERT_TRUE(rep_a->ListTasks(Ctx().get(), lt, &tasks).ok());
  EXPECT_EQ(tasks.tasks_size(), 0);
  EXPECT_EQ(tasks.next_page_token(), "");

  auto leads_amer = crm::v1::LeadsService::NewStub(stack_->Channel("leads", kManagerAmer));
  auto leads_emea = crm::v1::LeadsService::NewStub(stack_->Channel("leads", kManagerEmea));
  crm::v1::ListLeadsRequest ll;
  crm::v1::ListLeadsResponse leads;
  ASSERT_TRUE(leads_amer->ListLeads(Ctx().get(), ll, &leads).ok());
  EXPECT_EQ(leads.leads_size(), 0);
  ASSERT_TRUE(leads_emea->ListLeads(Ctx().get(), ll, &leads).ok());
  EXPECT_EQ(leads.leads_size(), 1);
  crm::v1::GetLeadRequest gl;
  gl.set_lead_id(b_.lead_id);
  crm::v1::Lead lead;
  EXPECT_EQ(leads_amer->GetLead(Ctx().get(), gl, &lead).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
}

TEST_F(AuthTest, EventsCarryTheTokenSubjectAsActor) {
  auto leads = crm::v1::LeadsService::NewStub(stack_->Channel("leads", kRepB));
  crm::v1::RecordLeadActivityRequest activity;
  activity.set_request_id("auth-b-activity");
  activity.set_lead_id(b_.lead_id);
  activity.set_type(crm::v1::LEAD_ACTIVITY_TYPE_EMAIL_OPENED);
  auto ctx = Ctx();
  ctx->AddMetadata("x-crm-actor", "someone-else");  // ignored: the token says who
  crm::v1::Lead lead;
  auto st = leads->RecordLeadActivity(ctx.get(), activity, &lead);
  ASSERT_TRUE(st.ok()) << st.error_message();
  crm::v1::GetLeadHistoryRequest history;
  history.set_lead_id(b_.lead_id);
  crm::v1::GetLeadHistoryResponse events;
  ASSERT_TRUE(leads->GetLeadHistory(Ctx().get(), history, &events).ok());
  ASSERT_GT(events.events_size(), 0);
  EXPECT_EQ(events.events(events.events_size() - 1).actor(), "rep-b");
}

TEST_F(AuthTest, SupportAgentsWorkTicketsNotSalesRecords) {
  const Principal agent{"agent-1", {auth::kRoleSupportAgent}, ""};
  auto sales = crm::v1::SalesService::NewStub(stack_->Channel("sales", agent));
  crm::v1::GetCustomerRequest gc;
  gc.set_customer_id(b_.customer_id);
  crm::v1::Customer customer;
  EXPECT_EQ(sales->GetCustomer(Ctx().get(), gc, &customer).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  auto desk = crm::v1::ServiceDeskService::NewStub(stack_->Channel("service-desk", agent));
  crm::v1::ListTicketsRequest lt;
  crm::v1::ListTicketsResponse tickets;
  auto st = desk->ListTickets(Ctx().get(), lt, &tickets);
  EXPECT_TRUE(st.ok()) << st.error_message();
}

TEST_F(AuthTest, OnlyAdminAndServiceCallersPostACustomersReply) {
  const Principal agent{"agent-1", {auth::kRoleSupportAgent}, ""};
  crm::v1::ReplyToTicketRequest reply;
  reply.set_request_id("auth-customer-reply");
  reply.set_ticket_id("tkt-missing");
  reply.set_author_type(crm::v1::AUTHOR_TYPE_CUSTOMER);
  reply.set_body("It works again, thanks.");
  crm::v1::Ticket ticket;
  auto as_agent = crm::v1::ServiceDeskService::NewStub(stack_->Channel("service-desk", agent));
  auto st = as_agent->ReplyToTicket(Ctx().get(), reply, &ticket);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_NE(st.error_message().find("author_type"), std::string::npos) << st.error_message();
  // Bad input is still refused first.
  crm::v1::ReplyToTicketRequest empty = reply;
  empty.clear_body();
  st = as_agent->ReplyToTicket(Ctx().get(), empty, &ticket);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  // The agent's own reply, and the portal's customer reply, reach the
  // ticket (here: one that does not exist).
  crm::v1::ReplyToTicketRequest own = reply;
  own.set_author_type(crm::v1::AUTHOR_TYPE_AGENT);
  EXPECT_EQ(as_agent->ReplyToTicket(Ctx().get(), own, &ticket).error_code(),
            grpc::StatusCode::NOT_FOUND);
  auto as_admin = crm::v1::ServiceDeskService::NewStub(stack_->Channel("service-desk", kAdmin));
  EXPECT_EQ(as_admin->ReplyToTicket(Ctx().get(), reply, &ticket).error_code(),
            grpc::StatusCode::NOT_FOUND);
}

// Writes a CA, a server certificate for 127.0.0.1/localhost and a client
// certificate with the openssl CLI; returns false when that fails.
bool MakeCertificates(const std::string& dir) {
  const std::string script = absl::StrCat(
      "set -e; cd '", dir, "'\n",
      "printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\nextendedKeyUsage=serverAuth\\n' "
      "> server.ext\n",
      "printf 'extendedKeyUsage=clientAuth\\n' > client.ext\n",
      "openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 "
      "-subj /CN=crm-test-ca\n",
      "for who in server client; do\n",
      "  openssl req -newkey rsa:2048 -nodes -keyout $who.key -out $who.csr -subj /CN=$who\n",
      "  openssl x509 -req -in $who.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 "
      "-extfile $who.ext -out $who.pem\n",
      "done\n");
  std::ofstream(dir + "/make.sh") << script;
  return std::system(
             absl::StrCat("bash '", dir, "/make.sh' >'", dir, "/openssl.log' 2>&1").c_str()) == 0;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST(TlsTest, MutualTlsServesClientsWithACertificateAndRefusesOthers) {
  Stack stack;
  const std::string dir = stack.dir();
  ASSERT_TRUE(MakeCertificates(dir)) << ReadFile(dir + "/openssl.log");
  ASSERT_TRUE(stack.StartBroker());
  const ClientTls with_cert{ReadFile(dir + "/ca.pem"), ReadFile(dir + "/client.pem"),
                            ReadFile(dir + "/client.key")};
  stack.UseClientTls(with_cert);
  ASSERT_TRUE(
      stack.Start("leads", {"--tls-cert=" + dir + "/server.pem", "--tls-key=" + dir + "/server.key",
                            "--tls-client-ca=" + dir + "/ca.pem"}))
      << stack.leads().Log();

  crm::v1::ListLeadsRequest req;
  crm::v1::ListLeadsResponse resp;
  auto st =
      crm::v1::LeadsService::NewStub(stack.Channel("leads"))->ListLeads(Ctx().get(), req, &resp);
  EXPECT_TRUE(st.ok()) << st.error_message();

  // TLS without a client certificate: the handshake fails.
  const ClientTls without_cert{with_cert.root_ca_pem, "", ""};
  auto no_cert = crm::v1::LeadsService::NewStub(
      AuthChannel(stack.Target("leads"), std::nullopt, without_cert));
  st = no_cert->ListLeads(Ctx().get(), req, &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAVAILABLE) << st.error_message();
  // Plaintext: refused as well.
  auto plain = crm::v1::LeadsService::NewStub(AuthChannel(stack.Target("leads"), std::nullopt));
  EXPECT_FALSE(plain->ListLeads(Ctx().get(), req, &resp).ok());

  // crmctl health as an exec probe: the certificate is checked for the name
  // given, not for the address dialled.
  const std::string probe =
      absl::StrCat(CtlCommand(), " health ", stack.Target("leads"), " --tls-ca=", dir,
                   "/ca.pem --tls-cert=", dir, "/client.pem --tls-key=", dir, "/client.key");
  EXPECT_EQ(std::system((probe + " >/dev/null 2>&1").c_str()), 0);
  EXPECT_EQ(std::system((probe + " --tls-server-name=localhost >/dev/null 2>&1").c_str()), 0);
  EXPECT_NE(std::system((probe + " --tls-server-name=crm-leads.example >/dev/null 2>&1").c_str()),
            0);
}

TEST(TlsTest, PlaintextOrTheDevKeyOnANonLoopbackAddressIsRefused) {
  TempDir dir;
  const std::string listen = absl::StrCat("0.0.0.0:", FreePort());
  Process plaintext({CRM_LEADS_BIN, "--listen=" + listen, "--data-dir=" + dir.Sub("a"),
                     "--brokers=127.0.0.1:1", std::string("--jwt-hs256-key=") + auth::kDevHs256Key},
                    {}, dir.Sub("a.log"));
  ASSERT_TRUE(plaintext.Start());
  EXPECT_EQ(plaintext.Wait(absl::Seconds(20)), 2);
  EXPECT_NE(plaintext.Log().find("refusing plaintext gRPC"), std::string::npos) << plaintext.Log();

  ASSERT_TRUE(MakeCertificates(dir.path())) << ReadFile(dir.Sub("openssl.log"));
  Process dev_key({CRM_LEADS_BIN, "--listen=" + listen, "--data-dir=" + dir.Sub("b"),
                   "--brokers=127.0.0.1:1", std::string("--jwt-hs256-key=") + auth::kDevHs256Key,
                   "--tls-cert=" + dir.Sub("server.pem"), "--tls-key=" + dir.Sub("server.key")},
                  {}, dir.Sub("b.log"));
  ASSERT_TRUE(dev_key.Start());
  EXPECT_EQ(dev_key.Wait(absl::Seconds(20)), 2);
  EXPECT_NE(dev_key.Log().find("development token key"), std::string::npos) << dev_key.Log();

  Process no_key({CRM_LEADS_BIN, "--listen=127.0.0.1:1", "--data-dir=" + dir.Sub("c"),
                  "--brokers=127.0.0.1:1"},
                 {}, dir.Sub("c.log"));
  ASSERT_TRUE(no_key.Start());
  EXPECT_EQ(no_key.Wait(absl::Seconds(20)), 2);
  EXPECT_NE(no_key.Log().find("no token key"), std::string::npos) << no_key.Log();
}

}  // namespace
}  // namespace crm::testing
