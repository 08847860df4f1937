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

TEST(Utf8ToLowerTest, LowercasesTheLettersOfEuropeanAlphabetsAndLeavesTheRest) {
  EXPECT_EQ(Utf8ToLower("ÄNDERUNG der Adresse"), "änderung der adresse");
  EXPECT_EQ(Utf8ToLower("ÉLODIE ÇA ØRSTED ÞÓR"), "élodie ça ørsted þór");
  EXPECT_EQ(Utf8ToLower("ŁÓDŹ ŻUBR ĽUBICA ŠKODA ŇEMEC ŸVES"), "łódź żubr ľubica škoda ňemec ÿves");
  EXPECT_EQ(Utf8ToLower("ΑΘΗΝΑ Ά Έ Ώ ΣΟΦΊΑ"), "αθηνα ά έ ώ σοφία");
  EXPECT_EQ(Utf8ToLower("МОСКВА ЁЖ ЂАК ҐАНОК ӘЛИ ӨНІМ ҚАЗАҚ ӁӀ"),
            "москва ёж ђак ґанок әли өнім қазақ ӂӏ");
  // A final sigma is the sigma a capital lowers to: "ΟΔΟΣ" meets "οδος".
  EXPECT_EQ(Utf8ToLower("ΟΔΟΣ"), Utf8ToLower("οδος"));
  // Lowercase letters, ×, ß, the Turkish dotted İ, CJK and emoji as they are.
  EXPECT_EQ(Utf8ToLower("äöü × ß İ 東京 🙂"), "äöü × ß İ 東京 🙂");
  // Malformed bytes are copied, the letters around them still lowered.
  EXPECT_EQ(Utf8ToLower("A\xC3"
                        "B\xFF"),
            "a\xC3"
            "b\xFF");
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

// Names and keys are one line in lists and exports; free text may break
// lines as forms give them, with ASCII's or Unicode's breaks.
TEST(ControlCharactersTest, LineBreaksOnlyInFreeTextAndNoOtherControls) {
  for (const char* one_line : {"Ada Lovelace", "Zo\xc3\xab", "\xe2\x80\xa6 \xe2\x82\xac"}) {
    EXPECT_FALSE(HasControlCharacters(one_line, false)) << one_line;
    EXPECT_FALSE(HasControlCharacters(one_line, true)) << one_line;
  }
  for (const char* broken : {"Ada\nLovelace", "Ada\r\n", "a\tb", "Ada\xc2\x85Lovelace",
                             "Ada\xe2\x80\xa8Lovelace", "Ada\xe2\x80\xa9"}) {
    EXPECT_TRUE(HasControlCharacters(broken, false)) << broken;
    EXPECT_FALSE(HasControlCharacters(broken, true)) << broken;
  }
  // Other controls, C0 and DEL, are refused in both; C1 others pass (text
  // decoded from Windows-1252 as Latin-1: O\u0092Brien).
  for (const std::string& control :
       {std::string("a\0b", 3), std::string("a\x1b[31m"), std::string("a\x7f")}) {
    EXPECT_TRUE(HasControlCharacters(control, false));
    EXPECT_TRUE(HasControlCharacters(control, true));
  }
  const std::string obrien =
      "O\xc2\x92"
      "Brien";
  EXPECT_FALSE(HasControlCharacters(obrien, false));
  EXPECT_FALSE(HasControlCharacters(obrien, true));
}

TEST(ControlCharactersTest, OneLineMakesEachBreakOrControlASpace) {
  EXPECT_EQ(OneLine("EMEA\tNorth\r\nDACH"), "EMEA North  DACH");
  EXPECT_EQ(OneLine("Ada\xe2\x80\xa8Lovelace\xc2\x85!"), "Ada Lovelace !");
  EXPECT_EQ(OneLine("Zo\xc3\xab \xe2\x80\xa6"), "Zo\xc3\xab \xe2\x80\xa6");
  EXPECT_FALSE(HasControlCharacters(OneLine(std::string("a\0b\x7f\xc2\x85", 6)), false));
}

}  // namespace
}  // namespace crm
