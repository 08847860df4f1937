#include "libs/common/bounded_cache.h"

#include <gtest/gtest.h>

#include <string>

namespace crm {
namespace {

TEST(BoundedCacheTest, NeverHoldsMoreThanItsCapacity) {
  BoundedCache<int, int> cache(100);
  for (int i = 0; i < 10000; ++i) {
    cache.Put(i, i * 2);
    ASSERT_LE(cache.size(), 100u);
  }
  ASSERT_NE(cache.Find(9999), nullptr);
  EXPECT_EQ(*cache.Find(9999), 19998);
  EXPECT_EQ(cache.Find(0), nullptr) << "the oldest entries are gone";
}

TEST(BoundedCacheTest, KeepsAnEntryThatIsUsedWhileOthersComeAndGo) {
  BoundedCache<std::string, int> cache(10);
  cache.Put("hot", 1);
  for (int i = 0; i < 1000; ++i) {
    cache.Put(std::to_string(i), i);
    ASSERT_NE(cache.Find(std::string("hot")), nullptr) << "after " << i << " other entries";
  }
  EXPECT_EQ(*cache.Find(std::string("hot")), 1);
}

TEST(BoundedCacheTest, PutReplacesAndEraseRemovesFromBothGenerations) {
  BoundedCache<int, int> cache(4);
  cache.Put(1, 10);
  cache.Put(2, 20);
  cache.Put(3, 30);  // 1 and 2 are in the old generation now
  cache.Put(1, 11);
  EXPECT_EQ(*cache.Find(1), 11);
  EXPECT_TRUE(cache.Contains(2));
  cache.Erase(2);
  EXPECT_FALSE(cache.Contains(2));
  EXPECT_EQ(cache.Find(2), nullptr);
  cache.Erase(3);
  EXPECT_FALSE(cache.Contains(3));
}

}  // namespace
}  // namespace crm
