#include "libs/common/contact_fields.h"

#include "gtest/gtest.h"

namespace crm {
namespace {

TEST(ContactFieldsTest, EmailIsLowercasedAndTrimmed) {
  EXPECT_EQ(*NormalizeEmail("  Ada@Example.COM ", "e"), "ada@example.com");
  // What spreadsheets and mail headers leave around an address is not part
  // of it: one person stays one customer.
  for (const char* pasted : {"ada@example.com\xc2\xa0",
                             "\xef\xbb\xbf"
                             "ada@example.com",
                             "\xe2\x80\x8b"
                             "ada@example.com",
                             "\"ada@example.com\"", "<Ada@Example.com>", " (ada@example.com) ",
                             "'ada@example.com'", "ada@example.com\xe2\x81\xa0",
                             "\xc2\xad"
                             "ada@example.com"}) {
    auto email = NormalizeEmail(pasted, "e");
    ASSERT_TRUE(email.ok()) << pasted << ": " << email.status();
    EXPECT_EQ(*email, "ada@example.com") << pasted;
  }
  // Direction marks an address book or a right-to-left page copies with
  // the address (LRM, RLM, LRE..PDF, LRI..PDI): the same person.
  for (const char* marked : {"\xe2\x80\x8e"
                             "ada@example.com",
                             "ada@example.com\xe2\x80\x8f",
                             "\xe2\x80\xaa"
                             "ada@example.com\xe2\x80\xac",
                             "\xe2\x81\xa6"
                             "ada@example.com\xe2\x81\xa9",
                             "ada@example.com\xe2\x80\xa8"}) {
    auto email = NormalizeEmail(marked, "e");
    ASSERT_TRUE(email.ok()) << email.status();
    EXPECT_EQ(*email, "ada@example.com");
  }
  // Inside the address they are refused, not kept as a second spelling.
  EXPECT_FALSE(NormalizeEmail("ada\xe2\x80\x8e@example.com", "e").ok());
  EXPECT_FALSE(NormalizeEmail("ada@exam\xe2\x81\xa6ple.com", "e").ok());
  // Deliverable though RFC 5322 frowns on it (some carriers issued them).
  EXPECT_EQ(*NormalizeEmail("taro.@docomo.ne.jp", "e"), "taro.@docomo.ne.jp");
  // A zero-width non-joiner inside a Persian host name is its spelling.
  EXPECT_TRUE(NormalizeEmail("a@\xd9\x85\xdb\x8c\xe2\x80\x8c\xd8\xae.ir", "e").ok());
  for (const char* bad :
       {"", "ada", "@example.com", "ada@", "ada@example", "ada@@example.com", "ada@example..com",
        "a da@example.com", "ada@example.com.", "ada@.example.com", "ada\xe2\x81\xa0@example.com",
        "ada@ex\xc3"
        "ample.com",
        "ada\xc2\xa0lovelace@example.com", "\"ada\"@example.com", "\xc2\xa0", "''ada@example.com''",
        "ada@exa_mple.com"}) {
    EXPECT_FALSE(NormalizeEmail(bad, "e").ok()) << bad;
  }
}

TEST(ContactFieldsTest, PhoneBecomesE164) {
  EXPECT_EQ(*NormalizePhone("+44 (20) 7946-0958", "p"), "+442079460958");
  EXPECT_EQ(*NormalizePhone("0049 30 1234567", "p"), "+49301234567");
  EXPECT_EQ(*NormalizePhone("+1.415.555.0100", "p"), "+14155550100");
  // The national trunk prefix in brackets is not part of the number.
  EXPECT_EQ(*NormalizePhone("+44 (0)20 7946 0958", "p"), "+442079460958");
  EXPECT_EQ(*NormalizePhone("+49(0)30-1234567", "p"), "+49301234567");
  // Separators a form or spreadsheet types: a slash, a no-break space, an
  // en dash.
  EXPECT_EQ(*NormalizePhone("+49 30/1234567", "p"), "+49301234567");
  // Up to 32 characters, however many bytes they take.
  EXPECT_TRUE(NormalizePhone("+44\xc2\xa0"
                             "20\xc2\xa0"
                             "7946\xc2\xa0"
                             "0958\xc2\xa0\xc2\xa0\xc2\xa0\xc2\xa0"
                             "\xc2\xa0\xc2\xa0\xc2\xa0\xc2\xa0\xc2\xa0\xc2\xa0\xc2\xa0\xc2\xa0 1",
                             "p")
                  .ok());
  EXPECT_FALSE(NormalizePhone("+44 20\t7946 0958", "p").ok()) << "a tab is no separator";
  EXPECT_FALSE(NormalizePhone("+49 30 1234\xe2\x80\xa8"
                              "5678",
                              "p")
                   .ok())
      << "nor is a line separator";
  // A number copied from a right-to-left page, wrapped in direction marks.
  EXPECT_EQ(*NormalizePhone("\xe2\x80\x8e+44 20 7946 0958\xe2\x80\x8e", "p"), "+442079460958");
  EXPECT_EQ(*NormalizePhone("\xe2\x81\xa6+44\xe2\x80\x8e 20 7946 0958\xe2\x81\xa9", "p"),
            "+442079460958");
  EXPECT_EQ(*NormalizePhone("+44\xc2\xa0"
                            "20 7946\xe2\x80\x93"
                            "0958\xc2\xa0",
                            "p"),
            "+442079460958");
  for (const char* bad :
       {"", "2079460958", "+44 20 79x6", "+1234567", "+1234567890123456", "+0123456789"}) {
    EXPECT_FALSE(NormalizePhone(bad, "p").ok()) << bad;
  }
}

TEST(ContactFieldsTest, ErrorsNameTheField) {
  EXPECT_EQ(NormalizeEmail("nope", "contacts[0].email")
                .status()
                .message()
                .rfind("contacts[0].email: ", 0),
            0u);
  EXPECT_EQ(NormalizePhone("0301234", "contacts[0].phone")
                .status()
                .message()
                .rfind("contacts[0].phone: ", 0),
            0u);
}

}  // namespace
}  // namespace crm
