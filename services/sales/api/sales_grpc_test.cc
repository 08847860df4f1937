#include "services/sales/api/sales_grpc.h"

#include "gtest/gtest.h"
#include "libs/common/blocking_executor.h"
#include "libs/common/event_store.h"
#include "libs/common/testing/auth_server.h"
#include "libs/common/testing/temp_dir.h"
#include "services/sales/domain/opportunity.h"
#include "services/sales/domain/validation.h"
#include "services/sales/store/sales_store.h"

namespace crm::sales {
namespace {

auth::Principal Rep() { return {"rep_ada", {auth::kRoleSalesRep}, "EMEA"}; }
auth::Principal Manager() { return {"mgr_grace", {auth::kRoleSalesManager}, "EMEA"}; }

crm::v1::OpenCustomerRequest Open(const std::string& owner, const std::string& territory) {
  crm::v1::OpenCustomerRequest r;
  r.set_request_id("r1");
  r.set_name("Analytical Engines");
  r.set_owner_id(owner);
  r.set_territory(territory);
  return r;
}

TEST(ScopeOpenCustomerTest, DefaultsTheRepsOwnerAndTheCallersTerritory) {
  auto rep = ScopeOpenCustomer(Rep(), Open("", "AMER"));
  ASSERT_TRUE(rep.ok()) << rep.status();
  EXPECT_EQ(rep->owner_id(), "rep_ada");
  EXPECT_EQ(rep->territory(), "AMER");
  // A rep's account lies in the rep's territory, so its manager can approve.
  auto defaulted = ScopeOpenCustomer(Rep(), Open("", ""));
  ASSERT_TRUE(defaulted.ok()) << defaulted.status();
  EXPECT_EQ(defaulted->territory(), Rep().territory);
  EXPECT_FALSE(defaulted->territory().empty());
  // A blank territory is none given; one with spaces is judged as stored.
  auto blank = ScopeOpenCustomer(Rep(), Open("", "  "));
  ASSERT_TRUE(blank.ok()) << blank.status();
  EXPECT_EQ(blank->territory(), Rep().territory);
  auto padded = ScopeOpenCustomer(Manager(), Open("rep_bob", "EMEA "));
  ASSERT_TRUE(padded.ok()) << padded.status();
  EXPECT_EQ(padded->territory(), "EMEA");
  auto manager = ScopeOpenCustomer(Manager(), Open("rep_bob", ""));
  ASSERT_TRUE(manager.ok()) << manager.status();
  EXPECT_EQ(manager->territory(), "EMEA");
  EXPECT_EQ(manager->owner_id(), "rep_bob");
  auth::Principal admin{"root", {auth::kRoleAdmin}, ""};
  EXPECT_TRUE(ScopeOpenCustomer(admin, Open("rep_bob", "APAC")).ok());
}

TEST(ScopeOpenCustomerTest, TheRefusalNamesTheFieldOutOfReach) {
  // A rep may not open an account for someone else, in any territory.
  auto rep = ScopeOpenCustomer(Rep(), Open("rep_bob", "EMEA"));
  EXPECT_EQ(rep.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(rep.status().message().substr(0, 9), "owner_id:") << rep.status();
  // A manager may for anyone, but not outside their territory.
  auto manager = ScopeOpenCustomer(Manager(), Open("rep_bob", "AMER"));
  EXPECT_EQ(manager.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(manager.status().message().substr(0, 10), "territory:") << manager.status();
  // Their own account may lie anywhere.
  EXPECT_TRUE(ScopeOpenCustomer(Manager(), Open("mgr_grace", "AMER")).ok());
}

TEST(ScopeOpenCustomerTest, OnlyAdminAndServiceNameTheCustomerId) {
  // Staff naming a known person's id would become owners of their 360 view.
  for (const auto& staff : {Rep(), Manager()}) {
    auto r = Open(staff.subject, "EMEA");
    r.set_customer_id("cus_someone");
    auto scoped = ScopeOpenCustomer(staff, r);
    EXPECT_EQ(scoped.status().code(), absl::StatusCode::kPermissionDenied) << staff.subject;
    EXPECT_EQ(scoped.status().message().substr(0, 12), "customer_id:") << scoped.status();
  }
  auto r = Open("rep_bob", "APAC");
  r.set_customer_id("cus_someone");
  EXPECT_TRUE(ScopeOpenCustomer({"svc", {auth::kRoleService}, ""}, r).ok());
  EXPECT_TRUE(ScopeOpenCustomer({"root", {auth::kRoleAdmin}, ""}, r).ok());
}

// The sales service over gRPC with the auth interceptor: rep_ada's deal and
// its quote.
class SalesGrpcCallTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store_ = std::move(*SalesStore::Open(dir_.Sub("sales")));
    commands_ = std::make_unique<SalesCommands>(*store_, SalesSettings{});
    service_ = std::make_unique<SalesGrpc>(*commands_, executor_);
    server_ = std::make_unique<testing::AuthServer>(*service_);
    stub_ = crm::v1::SalesService::NewStub(server_->channel());

    crm::v1::OpenCustomerRequest open = Open("rep_ada", "EMEA");
    crm::v1::Customer customer;
    ASSERT_TRUE(stub_->OpenCustomer(Ada().get(), open, &customer).ok());
    crm::v1::OpenOpportunityRequest deal;
    deal.set_request_id("deal");
    deal.set_customer_id(customer.customer_id());
    deal.set_name("Engines");
    *deal.mutable_amount() = MakeMoney("EUR", 1'000'000);
    deal.set_expected_close_date("2031-06-30");
    ASSERT_TRUE(stub_->OpenOpportunity(Ada().get(), deal, &opportunity_).ok());
    crm::v1::DraftQuoteRequest draft;
    draft.set_request_id("quote");
    draft.set_opportunity_id(opportunity_.opportunity_id());
    draft.set_currency("EUR");
    auto* line = draft.add_lines();
    line->set_product_id("engine");
    line->set_quantity(1);
    *line->mutable_unit_price() = MakeMoney("EUR", 500'000);
    const grpc::Status drafted = stub_->DraftQuote(Ada().get(), draft, &quote_);
    ASSERT_TRUE(drafted.ok()) << drafted.error_message();
  }

  static std::unique_ptr<grpc::ClientContext> Ada() {
    return testing::AuthServer::As("rep_ada", {auth::kRoleSalesRep}, "EMEA");
  }
  grpc::Status GetQuote(grpc::ClientContext* ctx) {
    crm::v1::GetQuoteRequest get;
    get.set_quote_id(quote_.quote_id());
    crm::v1::Quote quote;
    return stub_->GetQuote(ctx, get, &quote);
  }

  crm::testing::TempDir dir_;
  BlockingExecutor executor_{4};
  std::unique_ptr<SalesStore> store_;
  std::unique_ptr<SalesCommands> commands_;
  std::unique_ptr<SalesGrpc> service_;
  std::unique_ptr<testing::AuthServer> server_;
  std::unique_ptr<crm::v1::SalesService::Stub> stub_;
  crm::v1::Opportunity opportunity_;
  crm::v1::Quote quote_;
};

TEST_F(SalesGrpcCallTest, AQuoteIsTheDealOwnersAndNoOneElses) {
  EXPECT_TRUE(GetQuote(Ada().get()).ok());
  auto bob = testing::AuthServer::As("rep_bob", {auth::kRoleSalesRep}, "EMEA");
  EXPECT_EQ(GetQuote(bob.get()).error_code(), grpc::StatusCode::PERMISSION_DENIED);
}

TEST_F(SalesGrpcCallTest, AQuoteWhoseDealCannotBeReadIsAStorageErrorNotARefusal) {
  store_->db().FailReadsForTest(EventStore::kStateFamily,
                                OpportunityStream(opportunity_.opportunity_id()));
  const grpc::Status st = GetQuote(Ada().get());
  // The owner is told to retry, not that the quote is out of their reach.
  EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAVAILABLE) << st.error_message();
  store_->db().FailReadsForTest("");
  EXPECT_TRUE(GetQuote(Ada().get()).ok());
}

}  // namespace
}  // namespace crm::sales
