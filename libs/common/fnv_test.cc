#include "libs/common/fnv.h"

#include "gtest/gtest.h"

namespace crm {
namespace {

TEST(Fnv1a64Test, MatchesTheReferenceValues) {
  // From the FNV reference test suite.
  EXPECT_EQ(Fnv1a64().value(), 0xcbf29ce484222325ULL);
  EXPECT_EQ(Fnv1a64().AddBytes("a").value(), 0xaf63dc4c8601ec8cULL);
  EXPECT_EQ(Fnv1a64().AddBytes("foobar").value(), 0x85944171f73967e8ULL);
  EXPECT_EQ(Fnv1a64().AddBytes("foo").AddBytes("bar").value(),
            Fnv1a64().AddBytes("foobar").value());
}

TEST(Fnv1a64Test, FieldsKeepTheirBoundaries) {
  EXPECT_NE(Fnv1a64().AddField("ab").AddField("c").value(),
            Fnv1a64().AddField("a").AddField("bc").value());
  EXPECT_NE(Fnv1a64().AddField("").value(), Fnv1a64().value());
}

TEST(Fnv1a64Test, ContinuesFromAStoredValue) {
  const uint64_t first = Fnv1a64().AddField("art_1").value();
  EXPECT_EQ(Fnv1a64(first).AddField("art_2").value(),
            Fnv1a64().AddField("art_1").AddField("art_2").value());
}

}  // namespace
}  // namespace crm
