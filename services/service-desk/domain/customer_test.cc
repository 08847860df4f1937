#include "services/service-desk/domain/customer.h"

#include <algorithm>
#include <functional>
#include <vector>

#include "gtest/gtest.h"
#include "libs/common/ids.h"

namespace crm::service_desk {
namespace {

crm::v1::LeadCaptured Lead(const std::string& lead_id, const std::string& email,
                           const std::string& company) {
  crm::v1::LeadCaptured l;
  l.set_lead_id(lead_id);
  l.set_customer_id("cus_1");
  l.mutable_contact()->set_first_name("Ada");
  l.mutable_contact()->set_email(email);
  l.set_company(company);
  l.add_product_interests("printer-x");
  return l;
}

google::protobuf::Timestamp At(int seconds) {
  return ToProtoTimestamp(absl::FromUnixSeconds(seconds));
}

TEST(CustomerTest, LeadMakesTheCustomerKnown) {
  crm::v1::CustomerContext c;
  ApplyLeadCaptured(c, Lead("lead_1", "ada@example.com", "Engines"), At(100));
  EXPECT_TRUE(c.known());
  EXPECT_EQ(c.customer_id(), "cus_1");
  EXPECT_EQ(c.email(), "ada@example.com");
  EXPECT_EQ(c.company(), "Engines");
  EXPECT_EQ(c.first_seen_at().seconds(), 100);
}

TEST(CustomerTest, NewestCaptureWinsWhateverTheDeliveryOrder) {
  const auto older = Lead("lead_1", "old@example.com", "Old Co");
  auto newer = Lead("lead_2", "new@example.com", "");
  newer.add_product_interests("scanner");
  crm::v1::CustomerContext in_order;
  ApplyLeadCaptured(in_order, older, At(100));
  ApplyLeadCaptured(in_order, newer, At(200));
  crm::v1::CustomerContext reversed;
  ApplyLeadCaptured(reversed, newer, At(200));
  ApplyLeadCaptured(reversed, older, At(100));
  EXPECT_EQ(in_order.SerializeAsString(), reversed.SerializeAsString());
  EXPECT_EQ(in_order.email(), "new@example.com");
  EXPECT_EQ(in_order.company(), "Old Co") << "empty fields do not erase";
  EXPECT_EQ(in_order.first_seen_at().seconds(), 100);
  EXPECT_EQ(in_order.lead_ids_size(), 2);
  EXPECT_EQ(in_order.product_interests_size(), 2);
}

crm::v1::OrderPlaced Order(const std::string& order_id, std::vector<std::string> products) {
  crm::v1::OrderPlaced o;
  o.set_order_id(order_id);
  o.set_customer_id("cus_1");
  for (const auto& p : products) {
    auto* line = o.add_lines();
    line->set_product_id(p);
    line->set_quantity(2);
  }
  return o;
}

DeskSettings WarrantySettings() {
  auto config = DeskSettings::Defaults();
  auto* w = config.add_warranties();
  w->set_product_id("printer-x");
  w->set_months(24);
  config.set_default_warranty_months(12);
  auto* none = config.add_warranties();
  none->set_product_id("cable");
  none->set_months(0);
  return *DeskSettings::Create(config);
}

absl::Time Day(int year, int month, int day) {
  return absl::FromCivil(absl::CivilDay(year, month, day), absl::UTCTimeZone());
}

// Sales takes several lines of one product (at different discounts): the
// purchase holds all of them, and a redelivered order adds nothing.
// Two customer ids of one person join the same whichever is read first:
// leads, interests and purchases together, the newest profile, the
// survivor's account.
TEST(CustomerTest, MergedCustomersJoinIntoOne) {
  crm::v1::CustomerContext a, b;
  ApplyLeadCaptured(a, Lead("lead_a", "old@example.com", "Old Co"), At(100));
  ApplyLeadCaptured(b, Lead("lead_b", "new@example.com", ""), At(200));
  crm::v1::OrderPlaced order;
  order.set_order_id("ord_1");
  order.add_lines()->set_product_id("printer-x");
  ApplyOrderPlaced(a, order, At(150));
  order.set_order_id("ord_2");
  ApplyOrderPlaced(b, order, At(250));
  crm::v1::CustomerOpened account;
  account.set_name("Engines Ltd");
  account.set_owner_id("rep_b");
  ApplyCustomerOpened(b, account);

  for (bool b_first : {true, false}) {
    crm::v1::CustomerContext joined = b_first ? b : a;
    JoinCustomer(joined, b_first ? a : b);
    JoinCustomer(joined, b_first ? a : b);  // read twice: nothing doubles
    EXPECT_TRUE(joined.known());
    EXPECT_EQ(joined.lead_ids_size(), 2) << b_first;
    EXPECT_EQ(joined.email(), "new@example.com") << b_first;
    EXPECT_EQ(joined.company(), "Old Co") << "a gap filled; " << b_first;
    EXPECT_EQ(joined.first_seen_at().seconds(), 100) << b_first;
    EXPECT_EQ(joined.account_name(), "Engines Ltd") << b_first;
    EXPECT_EQ(joined.owner_id(), "rep_b") << b_first;
    ASSERT_EQ(joined.purchases_size(), 2) << b_first;
    EXPECT_EQ(joined.purchases(0).order_id(), "ord_1") << "oldest first; " << b_first;
  }
}

TEST(CustomerTest, LinesOfOneProductAddUpToOnePurchase) {
  crm::v1::CustomerContext c;
  const auto order = Order("ord_1", {"printer-x", "cable", "printer-x"});
  ApplyOrderPlaced(c, order, ToProtoTimestamp(Day(2024, 3, 1)));
  ApplyOrderPlaced(c, order, ToProtoTimestamp(Day(2024, 3, 1)));
  ASSERT_EQ(c.purchases_size(), 2);
  EXPECT_EQ(c.purchases(0).product_id(), "cable");
  EXPECT_EQ(c.purchases(0).quantity(), 2);
  EXPECT_EQ(c.purchases(1).product_id(), "printer-x");
  EXPECT_EQ(c.purchases(1).quantity(), 4);
}

TEST(CustomerTest, OrdersBecomePurchasesWithWarrantyEnds) {
  crm::v1::CustomerContext c;
  ApplyOrderPlaced(c, Order("ord_2", {"scanner-z", "cable"}), ToProtoTimestamp(Day(2024, 3, 1)));
  ApplyOrderPlaced(c, Order("ord_1", {"printer-x"}), ToProtoTimestamp(Day(2023, 1, 31)));
  ApplyOrderPlaced(c, Order("ord_1", {"printer-x"}), ToProtoTimestamp(Day(2023, 1, 31)));
  EXPECT_TRUE(c.known());
  ASSERT_EQ(c.purchases_size(), 3) << "once per order and product";
  EXPECT_EQ(c.purchases(0).order_id(), "ord_1") << "oldest first";
  EXPECT_EQ(c.purchases(0).quantity(), 2);

  FillWarranties(c, WarrantySettings());
  EXPECT_EQ(FromProtoTimestamp(c.purchases(0).warranty_ends_at()), Day(2025, 1, 31));
  EXPECT_FALSE(c.purchases(1).has_warranty_ends_at()) << "cable: no warranty";
  EXPECT_EQ(FromProtoTimestamp(c.purchases(2).warranty_ends_at()), Day(2025, 3, 1)) << "default";

  EXPECT_EQ(WarrantyEndFor(c, "Printer-X", Day(2024, 6, 1)), Day(2025, 1, 31));
  EXPECT_EQ(WarrantyEndFor(c, "printer-x", Day(2025, 2, 1)), std::nullopt) << "expired";
  EXPECT_EQ(WarrantyEndFor(c, "cable", Day(2024, 6, 1)), std::nullopt);
  EXPECT_EQ(WarrantyEndFor(c, "", Day(2024, 6, 1)), std::nullopt);
}

TEST(CustomerTest, SalesAccountNamesTheCustomerAndFillsGaps) {
  crm::v1::CustomerContext c;
  ApplyLeadCaptured(c, Lead("lead_1", "ada@example.com", ""), At(100));
  crm::v1::CustomerOpened opened;
  opened.set_customer_id("cus_1");
  opened.set_name("Analytical Engines Ltd");
  opened.set_owner_id("rep:rita");
  opened.set_tier("standard");
  opened.set_lead_id("lead_1");
  auto* contact = opened.add_contacts();
  contact->set_email("other@example.com");
  contact->set_phone("+441234567890");
  ApplyCustomerOpened(c, opened);
  WithAccountFallbacks(c);
  EXPECT_EQ(c.account_name(), "Analytical Engines Ltd");
  EXPECT_EQ(c.owner_id(), "rep:rita");
  EXPECT_EQ(c.email(), "ada@example.com") << "the lead's contact stays";
  EXPECT_EQ(c.phone(), "+441234567890") << "gaps are filled";
  EXPECT_EQ(c.company(), "Analytical Engines Ltd");
  EXPECT_EQ(c.lead_ids_size(), 1);
  crm::v1::CustomerTierChanged tier;
  tier.set_customer_id("cus_1");
  tier.set_from_tier("standard");
  tier.set_to_tier("gold");
  ApplyCustomerTierChanged(c, tier);
  EXPECT_EQ(c.tier(), "gold");
}

// A converted lead with no company and no readable name (names are sealed)
// opens an account sales names after its id: no company is made of it.
TEST(CustomerTest, AnAccountNamedAfterItsIdNamesNoCompany) {
  crm::v1::CustomerContext c;
  ApplyLeadCaptured(c, Lead("lead_1", "ada@example.com", ""), At(100));
  crm::v1::CustomerOpened opened;
  opened.set_customer_id("cus_1");
  opened.set_name("cus_1");
  opened.set_owner_id("rep:rita");
  opened.set_tier("gold");
  opened.set_territory("EMEA");
  ApplyCustomerOpened(c, opened);
  // Read as the store reads it: joined into an empty context.
  crm::v1::CustomerContext read;
  JoinCustomer(read, c);
  WithAccountFallbacks(read);
  EXPECT_EQ(read.account_name(), "");
  EXPECT_EQ(read.company(), "");
  EXPECT_TRUE(read.known());
  EXPECT_TRUE(read.has_account());
  EXPECT_EQ(read.owner_id(), "rep:rita") << "the account is there, named or not";
  EXPECT_EQ(read.tier(), "gold");
  EXPECT_EQ(read.region(), "EMEA");
}

// Leads and sales are different topics: the account may come before, among
// or after the captures, and the profile must not depend on it.
TEST(CustomerTest, TheProfileIsTheSameWhereverTheAccountArrives) {
  const auto older = Lead("lead_1", "old@example.com", "Old Co");
  const auto newer = Lead("lead_2", "", "");
  crm::v1::CustomerOpened opened;
  opened.set_customer_id("cus_1");
  opened.set_name("AE");
  opened.set_territory("EMEA");
  opened.add_contacts()->set_phone("+441234567890");
  std::vector<std::function<void(crm::v1::CustomerContext&)>> steps = {
      [&](auto& c) { ApplyLeadCaptured(c, older, At(100)); },
      [&](auto& c) { ApplyLeadCaptured(c, newer, At(200)); },
      [&](auto& c) { ApplyCustomerOpened(c, opened); }};
  std::vector<int> order = {0, 1, 2};
  std::string first;
  do {
    crm::v1::CustomerContext c;
    for (int i : order) steps[i](c);
    if (first.empty()) first = c.SerializeAsString();
    EXPECT_EQ(c.SerializeAsString(), first);
    WithAccountFallbacks(c);
    EXPECT_EQ(c.company(), "Old Co") << "a lead's company before the account's name";
    EXPECT_EQ(c.email(), "old@example.com");
    EXPECT_EQ(c.phone(), "+441234567890") << "the account fills a gap";
    EXPECT_EQ(c.region(), "EMEA");
  } while (std::next_permutation(order.begin(), order.end()));
}

// A ticket's reply shows the purchases that matter to it, within a bound:
// the ticket's product's first, then the newest others, oldest first.
TEST(CustomerTest, AReplyShowsTheTicketsProductsPurchasesAndTheNewestOthers) {
  crm::v1::CustomerContext c;
  for (int i = 0; i < 10; ++i) {
    auto* p = c.add_purchases();
    p->set_order_id(absl::StrCat("ord_", i));
    p->set_product_id(i < 3 ? "printer" : "cable");
  }
  TrimPurchases(c, "Printer", 5);
  std::vector<std::string> orders;
  for (const auto& p : c.purchases()) orders.push_back(p.order_id());
  EXPECT_EQ(orders, (std::vector<std::string>{"ord_0", "ord_1", "ord_2", "ord_8", "ord_9"}));
  EXPECT_EQ(c.purchases_omitted(), 5);

  // More of the product than fit: its newest.
  TrimPurchases(c, "printer", 2);
  orders.clear();
  for (const auto& p : c.purchases()) orders.push_back(p.order_id());
  EXPECT_EQ(orders, (std::vector<std::string>{"ord_1", "ord_2"}));
  EXPECT_EQ(c.purchases_omitted(), 5 + 3);

  crm::v1::CustomerContext few;
  few.add_purchases()->set_order_id("ord_a");
  TrimPurchases(few, "printer", 5);
  EXPECT_EQ(few.purchases_size(), 1);
  EXPECT_EQ(few.purchases_omitted(), 0);
}

}  // namespace
}  // namespace crm::service_desk
