#include "libs/common/contact_fields.h"

#include "gtest/gtest.h"

namespace crm {
namespace {

TEST(ContactFieldsTest, EmailIsLowercasedAndTrimmed) {
  EXPECT_EQ(*NormalizeEmail("  Ada@Example.COM ", "e"), "ada@example.com");
  for (const char* bad : {"", "ada", "@example.com", "ada@", "ada@example", "ada@@example.com",
                          "ada@example..com", "a da@example.com", "ada@example.com."}) {
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
