#include "libs/common/auth/auth_interceptor.h"

#include "crm/v1/leads.pb.h"
#include "gtest/gtest.h"

namespace crm::auth {
namespace {

TEST(RequestTargetTest, FirstNonEmptyIdFieldSkippingTheIdempotencyKey) {
  crm::v1::QualifyLeadRequest qualify;
  qualify.set_request_id("req-1");
  qualify.set_lead_id("lead_1");
  EXPECT_EQ(RequestTarget(qualify), "lead_1");

  crm::v1::MergeLeadsRequest merge;
  merge.set_request_id("req-2");
  merge.set_merged_lead_id("lead_9");
  EXPECT_EQ(RequestTarget(merge), "lead_9");
  merge.set_survivor_lead_id("lead_3");
  EXPECT_EQ(RequestTarget(merge), "lead_3");
}

TEST(RequestTargetTest, ARefusalIsFiledUnderTheRecordItNames) {
  crm::v1::MergeLeadsRequest merge;
  merge.set_request_id("req-1");
  merge.set_survivor_lead_id("lead_decoy");
  merge.set_merged_lead_id("lead_victim");
  const RequestIds ids = IdsOf(merge);
  EXPECT_EQ(RefusalTarget(ids, absl::PermissionDeniedError(
                                   "merged_lead_id: no lead_victim that the caller may access")),
            "lead_victim");
  EXPECT_EQ(RefusalTarget(ids, absl::PermissionDeniedError("survivor_lead_id: no lead_decoy")),
            "lead_decoy");
  // A refusal naming no field of the request: its first id.
  EXPECT_EQ(RefusalTarget(ids, absl::PermissionDeniedError("role sales_rep may not call it")),
            "lead_decoy");
  EXPECT_EQ(RefusalTarget(ids, absl::PermissionDeniedError("merged_lead_idx: odd")), "lead_decoy");
  // A refusal of a field without its value is about the caller's choice,
  // not a record: filed under the request's first id.
  EXPECT_EQ(RefusalTarget(ids, absl::PermissionDeniedError("merged_lead_id: not yours to merge")),
            "lead_decoy");
  EXPECT_EQ(RefusalTarget({}, absl::PermissionDeniedError("lead_id: no lead")), "");
}

TEST(RequestTargetTest, NoIdFieldMeansNoTarget) {
  crm::v1::CaptureLeadRequest capture;
  capture.set_request_id("req-1");
  capture.set_company("Acme");
  EXPECT_EQ(RequestTarget(capture), "");
  EXPECT_EQ(RequestTarget(crm::v1::GetLeadRequest()), "");
}

TEST(RequestTargetTest, LongIdsAreCut) {
  crm::v1::GetLeadRequest get;
  get.set_lead_id(std::string(10000, 'x'));
  EXPECT_EQ(RequestTarget(get).size(), 128u);
}

TEST(PeerAddressTest, DropsSchemeAndPort) {
  EXPECT_EQ(PeerAddress("ipv4:10.0.0.7:51234"), "10.0.0.7");
  EXPECT_EQ(PeerAddress("ipv6:[::1]:5"), "::1");
  EXPECT_EQ(PeerAddress("ipv6:[fe80::1%eth0]:443"), "fe80::1%eth0");
  EXPECT_EQ(PeerAddress("unix:/tmp/crm.sock"), "unix:/tmp/crm.sock");
}

}  // namespace
}  // namespace crm::auth
