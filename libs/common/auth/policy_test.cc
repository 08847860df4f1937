#include "libs/common/auth/policy.h"

#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "libs/common/auth/record_access.h"

namespace crm::auth {
namespace {

Principal As(std::vector<std::string> roles) { return Principal{"p", std::move(roles), "emea"}; }

// A record stored before territories were trimmed ("EMEA ") is still the
// EMEA manager's, and reports count it in one row with "emea".
TEST(RecordAccessTest, TerritoriesCompareTrimmedAndIgnoringCase) {
  EXPECT_TRUE(SameTerritory("EMEA ", "emea"));
  EXPECT_TRUE(SameTerritory("emea", " EMEA"));
  EXPECT_FALSE(SameTerritory("EMEA", "APAC"));
  EXPECT_FALSE(SameTerritory("", " "));  // no territory is no manager's
  EXPECT_EQ(TerritoryKey(" EMEA\n"), TerritoryKey("emea"));
}

// A quote reached through a deal the caller may not see, or one gone, is
// not visible; a deal that cannot be read is a failure to retry.
TEST(RecordAccessTest, ARecordThroughItsParentIsHiddenOnlyWhenTheParentIs) {
  EXPECT_TRUE(ThroughParent(absl::OkStatus(), "quote_id", "q1").ok());
  for (const auto& refused :
       {absl::PermissionDeniedError("opportunity_id: no o1"), absl::NotFoundError("o1")}) {
    const auto st = ThroughParent(refused, "quote_id", "q1");
    EXPECT_EQ(st.code(), absl::StatusCode::kPermissionDenied);
    EXPECT_EQ(st.message(), "quote_id: no q1 that the caller may access");
  }
  const auto corrupt = ThroughParent(absl::DataLossError("corrupt state"), "quote_id", "q1");
  EXPECT_EQ(corrupt.code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(ThroughParent(absl::UnavailableError("busy"), "quote_id", "q1").code(),
            absl::StatusCode::kUnavailable);
}

TEST(PolicyTest, UnknownMethodsAreDeniedEvenToAdmins) {
  const auto st = Authorize("/crm.v1.LeadsService/DropAllLeads", As({kRoleAdmin, kRoleService}));
  EXPECT_EQ(st.code(), absl::StatusCode::kPermissionDenied);
  // The path is the client's: audited refusals keep the message for good.
  EXPECT_FALSE(absl::StrContains(st.message(), "DropAllLeads")) << st.message();
  EXPECT_TRUE(AllowedRoles("/crm.v1.LeadsService/DropAllLeads").empty());
}

TEST(PolicyTest, RolesMapToOperations) {
  EXPECT_TRUE(Authorize("/crm.v1.LeadsService/CaptureLead", As({kRoleSalesRep})).ok());
  EXPECT_FALSE(Authorize("/crm.v1.LeadsService/AssignLead", As({kRoleSalesRep})).ok());
  EXPECT_TRUE(Authorize("/crm.v1.LeadsService/AssignLead", As({kRoleSalesManager})).ok());
  EXPECT_FALSE(Authorize("/crm.v1.SalesService/ApproveContract", As({kRoleSalesRep})).ok());
  EXPECT_FALSE(Authorize("/crm.v1.ServiceDeskService/GetTicket", As({kRoleSalesRep})).ok());
  EXPECT_TRUE(Authorize("/crm.v1.ServiceDeskService/GetTicket", As({kRoleSupportAgent})).ok());
  EXPECT_FALSE(Authorize("/crm.v1.SalesService/GetCustomer", As({kRoleSupportAgent})).ok());
  EXPECT_FALSE(Authorize("/crm.v1.ServiceDeskService/SubmitCsat", As({kRoleSupportAgent})).ok());
  EXPECT_TRUE(Authorize("/crm.v1.ServiceDeskService/SubmitCsat", As({kRoleService})).ok());
  EXPECT_TRUE(Authorize("/crm.v1.AnalyticsService/GetCustomer360", As({kRoleSalesRep})).ok());
  EXPECT_FALSE(Authorize("/crm.v1.AnalyticsService/GetFunnel", As({kRoleSalesRep})).ok());
  EXPECT_TRUE(Authorize("/crm.v1.AnalyticsService/GetFunnel", As({kRoleAnalyst})).ok());
  EXPECT_FALSE(Authorize("/crm.v1.LeadsService/GetLead", As({})).ok());
}

TEST(PolicyTest, OnlyHealthAndReflectionAreOpen) {
  EXPECT_TRUE(IsOpenMethod("/grpc.health.v1.Health/Check"));
  EXPECT_TRUE(IsOpenMethod("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"));
  EXPECT_FALSE(IsOpenMethod("/crm.v1.LeadsService/GetLead"));
  EXPECT_FALSE(IsOpenMethod("/grpc.health.v1.HealthX/Check"));
}

TEST(PolicyTest, KnownMethodsAreTheTablesAndTheOpenOnes) {
  EXPECT_TRUE(IsKnownMethod("/crm.v1.LeadsService/CaptureLead"));
  EXPECT_TRUE(IsKnownMethod("/grpc.health.v1.Health/Check"));
  EXPECT_FALSE(IsKnownMethod("/grpc.health.v1.Health/Anything"));
  EXPECT_FALSE(IsKnownMethod("/crm.v1.LeadsService/NoSuchMethod"));
  EXPECT_FALSE(IsKnownMethod(""));
}

}  // namespace
}  // namespace crm::auth
