#include "services/sales/domain/customer.h"

#include <limits>

#include "gtest/gtest.h"
#include "libs/common/testing/given_when_then.h"
#include "services/sales/domain/validation.h"

namespace crm::sales {
namespace {

using CustomerScenario = crm::testing::Scenario<crm::v1::Customer, CustomerEvent, CustomerCommand>;

CustomerScenario Customer() {
  return CustomerScenario(
      [](const std::optional<crm::v1::Customer>& s, const CustomerCommand& c) {
        return Decide(s, c);
      },
      [](crm::v1::Customer& s, const CustomerEvent& e, absl::Time t) { Apply(s, e, t); });
}

crm::v1::OpenCustomerRequest ValidOpen() {
  crm::v1::OpenCustomerRequest r;
  r.set_request_id("r1");
  r.set_customer_id("cus_1");
  r.set_name(" Analytical Engines ");
  r.set_owner_id("rep_ada");
  r.set_territory("EMEA");
  auto* c = r.add_contacts();
  c->set_first_name("Ada");
  c->set_email(" Ada@Example.COM ");
  return r;
}

crm::v1::CustomerOpened Opened(const std::string& tier = "standard") {
  crm::v1::CustomerOpened e;
  e.set_customer_id("cus_1");
  e.set_name("Analytical Engines");
  e.set_owner_id("rep_ada");
  e.set_territory("EMEA");
  e.set_tier(tier);
  return e;
}

crm::v1::CustomerSpendRecorded Spent(const std::string& contract, const std::string& currency,
                                     int64_t amount, int64_t cumulative) {
  crm::v1::CustomerSpendRecorded e;
  e.set_customer_id("cus_1");
  e.set_contract_id(contract);
  *e.mutable_amount() = MakeMoney(currency, amount);
  e.set_cumulative_minor_units(cumulative);
  return e;
}

crm::v1::CustomerTierChanged TierChanged(const std::string& from, const std::string& to,
                                         int64_t cumulative) {
  crm::v1::CustomerTierChanged e;
  e.set_customer_id("cus_1");
  e.set_from_tier(from);
  e.set_to_tier(to);
  *e.mutable_cumulative_spend() = MakeMoney("EUR", cumulative);
  return e;
}

RecordSpend Spend(const std::string& contract, const std::string& currency, int64_t amount) {
  return RecordSpend{contract, MakeMoney(currency, amount), LoyaltyProgram::Default()};
}

TEST(OpenCustomerTest, NormalizesTheRequestAndStartsInTheEntryTier) {
  auto r = NormalizeOpenCustomer(ValidOpen(), LoyaltyProgram::Default());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->name(), "Analytical Engines");
  EXPECT_EQ(r->tier(), "standard");
  EXPECT_EQ(r->contacts(0).email(), "ada@example.com");
}

TEST(OpenCustomerTest, ContactPhonesTakeTheFormLeadsGivesThem) {
  auto request = ValidOpen();
  request.mutable_contacts(0)->set_phone(" +49 (30) 1234-567 ");
  request.add_contacts()->set_phone("0049 30 7654321");
  auto r = NormalizeOpenCustomer(request, LoyaltyProgram::Default());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->contacts(0).phone(), "+49301234567");
  EXPECT_EQ(r->contacts(1).phone(), "+49307654321");
}

TEST(OpenCustomerTest, NewAccountIsOpenedWithOwnerTerritoryTierAndContacts) {
  auto request = *NormalizeOpenCustomer(ValidOpen(), LoyaltyProgram::Default());
  auto expected = Opened();
  *expected.mutable_contacts() = request.contacts();
  expected.set_lead_id("lead_7");
  auto scenario = Customer();
  scenario.Given({}).When(OpenCustomer{request, "lead_7"}).Then({expected});
}

TEST(OpenCustomerTest, AnOpenAccountIsNotOpenedAgain) {
  auto request = *NormalizeOpenCustomer(ValidOpen(), LoyaltyProgram::Default());
  Customer()
      .Given({Opened()})
      .When(OpenCustomer{request, ""})
      .ThenError(absl::StatusCode::kAlreadyExists);
}

TEST(OpenCustomerTest, BadInputNamesTheField) {
  auto check = [](const std::function<void(crm::v1::OpenCustomerRequest&)>& change,
                  const std::string& field) {
    auto r = ValidOpen();
    change(r);
    auto st = NormalizeOpenCustomer(r, LoyaltyProgram::Default()).status();
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << field;
    EXPECT_EQ(st.message().substr(0, field.size() + 1), field + ":") << st;
  };
  check([](auto& r) { r.clear_request_id(); }, "request_id");
  check([](auto& r) { r.set_customer_id("has space"); }, "customer_id");
  check([](auto& r) { r.set_name("  "); }, "name");
  check([](auto& r) { r.set_tier("diamond"); }, "tier");
  check([](auto& r) { r.mutable_contacts(0)->set_email("nope"); }, "contacts[0].email");
  check([](auto& r) { r.mutable_contacts(0)->set_phone("0301234"); }, "contacts[0].phone");
  check([](auto& r) { r.add_contacts(); }, "contacts[1]");
  // Names and territories are one line; a break would pass into lists.
  check([](auto& r) { r.set_name("Analytical\nEngines"); }, "name");
  check([](auto& r) { r.set_territory("EM\tEA"); }, "territory");
  check([](auto& r) { r.mutable_contacts(0)->set_title("Head\nof R&D"); }, "contacts[0].title");
}

// Managers' access compares territories whole: "EMEA " from a form would
// put the account out of the EMEA manager's reach.
TEST(OpenCustomerTest, TheTerritoryIsTrimmed) {
  auto request = ValidOpen();
  request.set_territory(" EMEA\n");
  auto r = NormalizeOpenCustomer(request, LoyaltyProgram::Default());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->territory(), "EMEA");
}

TEST(LoyaltyTest, SpendBelowTheNextThresholdIsOnlyRecorded) {
  Customer()
      .Given({Opened()})
      .When(Spend("ctr_1", "EUR", 999'999))
      .Then({Spent("ctr_1", "EUR", 999'999, 999'999)});
}

TEST(LoyaltyTest, CrossingAThresholdUpgradesTheTier) {
  Customer()
      .Given({Opened(), Spent("ctr_1", "EUR", 600'000, 600'000)})
      .When(Spend("ctr_2", "EUR", 400'000))
      .Then({Spent("ctr_2", "EUR", 400'000, 1'000'000),
             TierChanged("standard", "silver", 1'000'000)});
}

TEST(LoyaltyTest, AJumpOverSeveralThresholdsLandsInTheHighestReached) {
  Customer()
      .Given({Opened()})
      .When(Spend("ctr_1", "EUR", 6'000'000))
      .Then({Spent("ctr_1", "EUR", 6'000'000, 6'000'000),
             TierChanged("standard", "gold", 6'000'000)});
}

TEST(LoyaltyTest, OtherCurrenciesAreRecordedButDoNotCount) {
  auto scenario = Customer();
  scenario.Given({Opened()})
      .When(Spend("ctr_1", "USD", 9'000'000))
      .Then({Spent("ctr_1", "USD", 9'000'000, 9'000'000)});
}

TEST(LoyaltyTest, TiersAreNeverDowngraded) {
  Customer()
      .Given({Opened("gold")})
      .When(Spend("ctr_1", "EUR", 1'500'000))
      .Then({Spent("ctr_1", "EUR", 1'500'000, 1'500'000)});
}

TEST(LoyaltyTest, ATierTheProgramNoLongerHasIsKept) {
  // The program was changed (gold renamed or retired): a spend is no
  // reason to move the customer down to what it earns in the new one.
  auto program = LoyaltyProgram::Parse("EUR", "basic:0,plus:100");
  ASSERT_TRUE(program.ok()) << program.status();
  Customer()
      .Given({Opened("gold")})
      .When(RecordSpend{"ctr_1", MakeMoney("EUR", 1'000), *program})
      .Then({Spent("ctr_1", "EUR", 1'000, 1'000)});
}

TEST(LoyaltyTest, FoldedStateKeepsSpendPerCurrencyAndTier) {
  auto scenario = Customer();
  scenario.Given({Opened(), Spent("ctr_1", "EUR", 1'000'000, 1'000'000),
                  TierChanged("standard", "silver", 1'000'000), Spent("ctr_2", "USD", 5, 5)});
  const auto& s = *scenario.state();
  EXPECT_EQ(s.tier(), "silver");
  EXPECT_EQ(s.cumulative_spend().at("EUR"), 1'000'000);
  EXPECT_EQ(s.cumulative_spend().at("USD"), 5);
  EXPECT_EQ(s.version(), 4);
}

TEST(LoyaltyTest, SpendOfAnUnknownCustomerIsNotFound) {
  Customer().Given({}).When(Spend("ctr_1", "EUR", 1)).ThenError(absl::StatusCode::kNotFound);
}

TEST(LoyaltyTest, ASpendThatWouldOverflowTheTotalIsRefused) {
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  Customer()
      .Given({Opened(), Spent("ctr_1", "EUR", 5, kMax - 5)})
      .When(Spend("ctr_2", "EUR", 6))
      .ThenError(absl::StatusCode::kFailedPrecondition);
  Customer()
      .Given({Opened(), Spent("ctr_1", "USD", 5, kMax - 5)})
      .When(Spend("ctr_2", "USD", 5))
      .Then({Spent("ctr_2", "USD", 5, kMax)});
}

TEST(LoyaltyTest, ProgramIsParsedAndChecked) {
  auto p = LoyaltyProgram::Parse("EUR", "basic:0, plus:100 ,max:1000");
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->EntryTier(), "basic");
  EXPECT_EQ(p->TierFor(99), "basic");
  EXPECT_EQ(p->TierFor(100), "plus");
  EXPECT_EQ(p->TierFor(5000), "max");
  EXPECT_EQ(p->Rank("max"), 2);
  EXPECT_EQ(p->Rank("nope"), -1);
  EXPECT_FALSE(LoyaltyProgram::Parse("EUR", "basic:10,plus:100").ok());
  EXPECT_FALSE(LoyaltyProgram::Parse("EUR", "basic:0,plus:100,max:50").ok());
  EXPECT_FALSE(LoyaltyProgram::Parse("EUR", "basic:0,basic:100").ok());
  EXPECT_FALSE(LoyaltyProgram::Parse("EUR", "basic").ok());
  EXPECT_FALSE(LoyaltyProgram::Parse("euro", "basic:0").ok());
}

}  // namespace
}  // namespace crm::sales
