#include "services/sales/api/sales_grpc.h"

#include "gtest/gtest.h"

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

}  // namespace
}  // namespace crm::sales
