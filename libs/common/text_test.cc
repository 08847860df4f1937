#include "libs/common/text.h"

#include "gtest/gtest.h"

namespace crm {
namespace {

TEST(Utf8Test, WellFormedSequencesAreCharactersAndOtherBytesAreNot) {
  EXPECT_TRUE(IsUtf8("plain, café, 日本, \xf0\x9f\x98\x80"));
  EXPECT_EQ(Utf8SequenceAt("\xe6\x97\xa5", 0), 3u);
  EXPECT_TRUE(IsUtf8("\xed\x9f\xbf \xf4\x8f\xbf\xbf"));  // U+D7FF, U+10FFFF
  for (const char* bad : {"\xc3", "a\x80", "\xc0\xaf", "\xf5\x80\x80\x80", "\xe2\x82",
                          "\xed\xa0\x80", "\xe0\x80\xaf", "\xf0\x80\x80\xaf", "\xf4\x90\x80\x80"}) {
    EXPECT_FALSE(IsUtf8(bad)) << bad;
  }
}

TEST(TruncateUtf8Test, KeepsShortTextAndCutsLongTextAtACharacterBoundary) {
  EXPECT_EQ(TruncateUtf8("abc", 3), "abc");
  EXPECT_EQ(TruncateUtf8("abcd", 3), "abc");
  EXPECT_EQ(TruncateUtf8("", 0), "");
  // "añb": ñ is two bytes (1-2); a cut inside it drops it whole.
  EXPECT_EQ(TruncateUtf8("a\xc3\xb1"
                         "b",
                         2),
            "a");
  EXPECT_EQ(TruncateUtf8("a\xc3\xb1"
                         "b",
                         3),
            "a\xc3\xb1");
  // A four-byte emoji is dropped whole at any cut inside it.
  const std::string emoji = "x\xf0\x9f\x98\x80";
  for (size_t cut = 1; cut < 5; ++cut) EXPECT_EQ(TruncateUtf8(emoji, cut), "x") << cut;
  EXPECT_EQ(TruncateUtf8(emoji, 5), emoji);
}

}  // namespace
}  // namespace crm
