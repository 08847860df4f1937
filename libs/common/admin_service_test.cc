#include "libs/common/admin_service.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace crm {
namespace {

crm::v1::CustomerExport Page(const std::vector<std::string>& events,
                             const std::vector<std::string>& merged, bool erased = false) {
  crm::v1::CustomerExport page;
  page.set_customer_id("cus_1");
  page.set_service("leads");
  page.set_erased(erased);
  page.set_next_page_token("more");
  for (const auto& id : events) page.add_events()->set_event_id(id);
  for (const auto& id : merged) page.add_merged_customer_ids(id);
  return page;
}

std::vector<std::string> EventIds(const crm::v1::CustomerExport& e) {
  std::vector<std::string> ids;
  for (const auto& event : e.events()) ids.push_back(event.event_id());
  return ids;
}

TEST(JoinExportPageTest, PagesOfOneReadingMakeOneExport) {
  crm::v1::CustomerExport whole;
  ASSERT_TRUE(JoinExportPage(whole, Page({"e1", "e2"}, {"cus_2", "cus_3"})).ok());
  // The same merges in another order are the same customers.
  ASSERT_TRUE(JoinExportPage(whole, Page({"e3"}, {"cus_3", "cus_2"})).ok());
  EXPECT_EQ(EventIds(whole), (std::vector<std::string>{"e1", "e2", "e3"}));
  EXPECT_EQ(whole.merged_customer_ids_size(), 2);
  EXPECT_EQ(whole.service(), "leads");
  EXPECT_TRUE(whole.next_page_token().empty());
}

// A merge between pages: the merged customer's events before the resume
// position were never read; an erasure between pages: opened data and
// erased data in one export. Either way the pages so far are no export.
TEST(JoinExportPageTest, AMergeOrAnErasureBetweenPagesAbortsTheExport) {
  crm::v1::CustomerExport whole;
  ASSERT_TRUE(JoinExportPage(whole, Page({"e1"}, {})).ok());
  auto merged = JoinExportPage(whole, Page({"e2"}, {"cus_9"}));
  EXPECT_TRUE(absl::IsAborted(merged)) << merged;

  crm::v1::CustomerExport again;
  ASSERT_TRUE(JoinExportPage(again, Page({"e1"}, {"cus_9"})).ok());
  auto erased = JoinExportPage(again, Page({"e2"}, {"cus_9"}, /*erased=*/true));
  EXPECT_TRUE(absl::IsAborted(erased)) << erased;
  EXPECT_EQ(EventIds(again), (std::vector<std::string>{"e1"}));
}

}  // namespace
}  // namespace crm
