#include "libs/common/page_token.h"

#include "absl/strings/escaping.h"
#include "crm/v1/admin.pb.h"
#include "crm/v1/leads.pb.h"
#include "crm/v1/sales.pb.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace crm {
namespace {

crm::v1::ListLeadsRequest Query() {
  crm::v1::ListLeadsRequest r;
  r.set_owner_id("rep-1");
  r.add_statuses(crm::v1::LEAD_STATUS_NEW);
  r.set_min_score(40);
  r.mutable_page()->set_page_size(50);
  return r;
}

TEST(PageTokenTest, ATokenContinuesTheQueryItWasGivenWithWhateverThePageSize) {
  crm::v1::ListLeadsRequest first = Query();
  const std::string token = SealPageToken(first, "lead-0042");
  ASSERT_FALSE(token.empty());
  crm::v1::ListLeadsRequest next = Query();
  next.mutable_page()->set_page_token(token);
  next.mutable_page()->set_page_size(10);
  auto page = OpenPage(next, next.page());
  ASSERT_TRUE(page.ok()) << page.status();
  EXPECT_EQ(page->page_token(), "lead-0042");
  EXPECT_EQ(page->page_size(), 10);
  // No token: the first page; the end of the list stays the end.
  EXPECT_EQ(*OpenPageToken(first, "", "page.page_token"), "");
  EXPECT_EQ(SealPageToken(first, ""), "");
}

TEST(PageTokenTest, ATokenFromOtherFiltersOrAnotherListIsRefused) {
  const std::string token = SealPageToken(Query(), "lead-0042");
  auto refused = [&](const google::protobuf::Message& request) {
    auto opened = OpenPageToken(request, token, "page.page_token");
    EXPECT_TRUE(absl::IsInvalidArgument(opened.status())) << request.DebugString();
    EXPECT_THAT(std::string(opened.status().message()),
                ::testing::StartsWith("page.page_token: not a token of this query"));
  };
  crm::v1::ListLeadsRequest other = Query();
  other.set_owner_id("rep-2");
  refused(other);
  other = Query();
  other.add_statuses(crm::v1::LEAD_STATUS_QUALIFIED);
  refused(other);
  other = Query();
  other.set_sort(crm::v1::LEAD_SORT_SCORE_DESC);
  refused(other);
  crm::v1::ListTasksRequest tasks;  // another list, same empty filters
  tasks.mutable_page()->set_page_size(50);
  refused(tasks);
  // A top-level page_token field (the export) is no filter either.
  crm::v1::ExportCustomerRequest export_request;
  export_request.set_customer_id("cus_1");
  const std::string at = SealPageToken(export_request, "17");
  export_request.set_page_token(at);
  EXPECT_EQ(*OpenPageToken(export_request, at, "page_token"), "17");
  export_request.set_customer_id("cus_2");
  EXPECT_FALSE(OpenPageToken(export_request, at, "page_token").ok());
}

TEST(PageTokenTest, AMalformedTokenIsRefusedNotReadAsAPosition) {
  for (const std::string& token : {std::string("zzz"), std::string("not base64 !"),
                                   absl::WebSafeBase64Escape("short"), std::string(2000, 'A')}) {
    auto opened = OpenPageToken(Query(), token, "page.page_token");
    EXPECT_TRUE(absl::IsInvalidArgument(opened.status())) << token;
  }
}

TEST(PageSizeTest, ZeroIsTheDefaultAndOverTheMaximumIsTheMaximum) {
  EXPECT_EQ(PageSize(0, "page.page_size", 50, 500).value(), 50u);
  EXPECT_EQ(PageSize(7, "page.page_size", 50, 500).value(), 7u);
  EXPECT_EQ(PageSize(500, "page.page_size", 50, 500).value(), 500u);
  EXPECT_EQ(PageSize(501, "page.page_size", 50, 500).value(), 500u);
  EXPECT_EQ(PageSize(INT32_MAX, "page.page_size", 50, 500).value(), 500u);
  // A default above the maximum would hand out pages the maximum forbids.
  EXPECT_EQ(PageSize(0, "page.page_size", 1000, 500).value(), 500u);
}

TEST(PageSizeTest, ANegativeSizeIsRefusedNamingTheField) {
  EXPECT_EQ(PageSize(-1, "messages_page.page_size", 50, 500).status(),
            absl::InvalidArgumentError("messages_page.page_size: negative"));
}

}  // namespace
}  // namespace crm
