#include "services/analytics/domain/customer_merge.h"

#include "gtest/gtest.h"

namespace crm::analytics {
namespace {

using Members = std::vector<std::string>;

TEST(CustomerMergesTest, ACustomerNeverMergedIsAGroupOfItsOwn) {
  CustomerMerges merges;
  merges.Link("cus_a", "cus_b");
  const MergedGroup alone = merges.GroupOf("cus_z");
  EXPECT_EQ(alone.primary, "cus_z");
  EXPECT_EQ(alone.members, Members{"cus_z"});
}

TEST(CustomerMergesTest, EveryMemberOfAChainAnswersWithTheLastSurvivor) {
  CustomerMerges merges;
  merges.Link("cus_c", "cus_b");  // c went into b, then b into a
  merges.Link("cus_b", "cus_a");
  for (const auto* id : {"cus_a", "cus_b", "cus_c"}) {
    const MergedGroup group = merges.GroupOf(id);
    EXPECT_EQ(group.primary, "cus_a") << id;
    EXPECT_EQ(group.members, (Members{"cus_a", "cus_b", "cus_c"})) << id;
  }
}

TEST(CustomerMergesTest, TwoSurvivorsOfOneCustomerAreOneGroupUnderTheSmallerId) {
  CustomerMerges merges;
  merges.Link("cus_m", "cus_y");  // two leads of m merged into two other people
  merges.Link("cus_m", "cus_x");
  const MergedGroup group = merges.GroupOf("cus_y");
  EXPECT_EQ(group.primary, "cus_x");
  EXPECT_EQ(group.members, (Members{"cus_m", "cus_x", "cus_y"}));
}

TEST(CustomerMergesTest, MergesBothWaysStillGiveOnePrimaryWhateverTheOrder) {
  for (bool reversed : {false, true}) {
    CustomerMerges merges;
    if (reversed) {
      merges.Link("cus_b", "cus_a");
      merges.Link("cus_a", "cus_b");
    } else {
      merges.Link("cus_a", "cus_b");
      merges.Link("cus_b", "cus_a");
    }
    merges.Link("cus_a", "cus_a");  // ignored
    EXPECT_EQ(merges.GroupOf("cus_b").primary, "cus_a");
    EXPECT_EQ(merges.GroupOf("cus_b").members, (Members{"cus_a", "cus_b"}));
  }
}

}  // namespace
}  // namespace crm::analytics
