#include "services/sales/domain/quote.h"

#include "gtest/gtest.h"
#include "libs/common/testing/given_when_then.h"
#include "services/sales/domain/validation.h"

namespace crm::sales {
namespace {

using QuoteScenario = crm::testing::Scenario<crm::v1::Quote, QuoteEvent, QuoteCommand>;
using OrderScenario = crm::testing::Scenario<crm::v1::Order, OrderEvent, PlaceOrder>;
using ContractScenario = crm::testing::Scenario<crm::v1::Contract, ContractEvent, ContractCommand>;

const absl::Time kNoon =
    absl::FromCivil(absl::CivilSecond(2025, 3, 10, 12, 0, 0), absl::UTCTimeZone());

QuoteScenario Quote() {
  return QuoteScenario(
      [](const std::optional<crm::v1::Quote>& s, const QuoteCommand& c) { return Decide(s, c); },
      [](crm::v1::Quote& s, const QuoteEvent& e, absl::Time t) { Apply(s, e, t); });
}

OrderScenario Order() {
  return OrderScenario(
      [](const std::optional<crm::v1::Order>& s, const PlaceOrder& c) { return Decide(s, c); },
      [](crm::v1::Order& s, const OrderEvent& e, absl::Time t) { Apply(s, e, t); });
}

ContractScenario Contract() {
  return ContractScenario(
      [](const std::optional<crm::v1::Contract>& s, const ContractCommand& c) {
        return Decide(s, c);
      },
      [](crm::v1::Contract& s, const ContractEvent& e, absl::Time t) { Apply(s, e, t); });
}

crm::v1::QuoteLineInput Line(const std::string& product, int64_t qty, int64_t price,
                             int32_t discount_bps, int32_t tax_bps) {
  crm::v1::QuoteLineInput l;
  l.set_product_id(product);
  l.set_quantity(qty);
  *l.mutable_unit_price() = MakeMoney("EUR", price);
  l.set_discount_bps(discount_bps);
  l.set_tax_rate_bps(tax_bps);
  return l;
}

crm::v1::DraftQuoteRequest Draft() {
  crm::v1::DraftQuoteRequest r;
  r.set_request_id("r1");
  r.set_customer_id("cus_1");
  r.set_opportunity_id("opp_1");
  r.set_currency("EUR");
  *r.add_lines() = Line("engine", 3, 19'999, 1000, 1900);
  *r.add_lines() = Line("support", 1, 100'000, 0, 0);
  r.set_valid_until("2025-03-31");
  return r;
}

TEST(PricingTest, LineTotalsDiscountFirstThenTaxRoundedHalfUp) {
  auto line = PriceLine(Line("engine", 3, 19'999, 1000, 1900), "EUR", "lines[0]");
  ASSERT_TRUE(line.ok()) << line.status();
  EXPECT_EQ(line->gross().minor_units(), 59'997);
  EXPECT_EQ(line->discount().minor_units(), 6'000);  // 5 999.7
  EXPECT_EQ(line->net().minor_units(), 53'997);
  EXPECT_EQ(line->tax().minor_units(), 10'259);  // 10 259.43
  EXPECT_EQ(line->total().minor_units(), 64'256);
  EXPECT_EQ(line->total().currency(), "EUR");
  EXPECT_EQ(ApplyBasisPoints(5, 5000), 3);  // 2.5 rounds up
  EXPECT_EQ(ApplyBasisPoints(5, 4999), 2);
  EXPECT_EQ(ApplyBasisPoints(10'000'000'000'000, 10000), 10'000'000'000'000);
}

TEST(PricingTest, QuoteTotalsAreTheSumOfTheLines) {
  std::vector<crm::v1::QuoteLine> lines = {*PriceLine(Line("a", 3, 19'999, 1000, 1900), "EUR", ""),
                                           *PriceLine(Line("b", 1, 100'000, 0, 0), "EUR", "")};
  auto t = *SumLines(lines, "EUR");
  EXPECT_EQ(t.gross().minor_units(), 159'997);
  EXPECT_EQ(t.discount().minor_units(), 6'000);
  EXPECT_EQ(t.net().minor_units(), 153'997);
  EXPECT_EQ(t.tax().minor_units(), 10'259);
  EXPECT_EQ(t.total().minor_units(), 164'256);
}

TEST(PricingTest, BadLinesNameTheField) {
  auto field_of = [](const std::function<void(crm::v1::DraftQuoteRequest&)>& change) {
    auto r = Draft();
    change(r);
    auto st = ValidateDraftQuote(r);
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
    return std::string(st.message().substr(0, st.message().find(':')));
  };
  ASSERT_TRUE(ValidateDraftQuote(Draft()).ok());
  EXPECT_EQ(field_of([](auto& r) { r.clear_lines(); }), "lines");
  EXPECT_EQ(field_of([](auto& r) { r.set_currency("Euro"); }), "currency");
  EXPECT_EQ(field_of([](auto& r) { r.mutable_lines(1)->set_quantity(0); }), "lines[1].quantity");
  EXPECT_EQ(
      field_of([](auto& r) { r.mutable_lines(0)->mutable_unit_price()->set_currency("USD"); }),
      "lines[0].unit_price.currency");
  EXPECT_EQ(field_of([](auto& r) { r.mutable_lines(0)->set_discount_bps(10001); }),
            "lines[0].discount_bps");
  EXPECT_EQ(field_of([](auto& r) { r.mutable_lines(0)->set_tax_rate_bps(-1); }),
            "lines[0].tax_rate_bps");
  EXPECT_EQ(field_of([](auto& r) { r.mutable_lines(0)->clear_product_id(); }),
            "lines[0].product_id");
  EXPECT_EQ(field_of([](auto& r) { r.set_valid_until("31.03.2025"); }), "valid_until");
}

TEST(PricingTest, QuoteTotalsStayBelowTheMoneyLimit) {
  auto refused = [](const std::vector<crm::v1::QuoteLineInput>& lines) {
    auto r = Draft();
    r.clear_lines();
    for (const auto& l : lines) *r.add_lines() = l;
    auto st = ValidateDraftQuote(r);
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;
    EXPECT_EQ(st.message().substr(0, 6), "lines:") << st;
    // Decide refuses it too, whoever calls it without validating.
    Quote()
        .Given({})
        .When(DraftQuote{r, "quo_1", kNoon})
        .ThenError(absl::StatusCode::kInvalidArgument, "lines:");
  };
  const int64_t kMaxPrice = 10'000'000'000;
  // One line at the largest quantity and price: 10^16.
  refused({Line("a", 1'000'000, kMaxPrice, 0, 0)});
  // Two lines each below the limit, their sum not.
  refused({Line("a", 60'000, kMaxPrice, 0, 0), Line("b", 60'000, kMaxPrice, 0, 0)});
  // The net below the limit, the total with tax not.
  refused({Line("a", 90'000, kMaxPrice, 0, 10000)});
  // The most lines at the largest amounts: ~4 x 10^18 before the fix.
  refused(std::vector<crm::v1::QuoteLineInput>(200, Line("a", 1'000'000, kMaxPrice, 0, 10000)));

  // Just below the limit is fine.
  auto r = Draft();
  r.clear_lines();
  *r.add_lines() = Line("a", 99'999, kMaxPrice, 0, 0);
  *r.add_lines() = Line("b", 1, kMaxPrice - 1, 0, 0);
  ASSERT_TRUE(ValidateDraftQuote(r).ok()) << ValidateDraftQuote(r);
  auto drafted = Decide(std::nullopt, QuoteCommand{DraftQuote{r, "quo_1", kNoon}});
  ASSERT_TRUE(drafted.ok()) << drafted.status();
  std::vector<crm::v1::QuoteLine> lines = {*PriceLine(r.lines(0), "EUR", ""),
                                           *PriceLine(r.lines(1), "EUR", "")};
  auto totals = SumLines(lines, "EUR");
  ASSERT_TRUE(totals.ok()) << totals.status();
  EXPECT_EQ(totals->total().minor_units(), kMaxMinorUnits - 1);
}

crm::v1::QuoteDrafted Drafted() {
  const auto r = Draft();
  crm::v1::QuoteDrafted e;
  e.set_quote_id("quo_1");
  e.set_customer_id("cus_1");
  e.set_opportunity_id("opp_1");
  e.set_currency("EUR");
  std::vector<crm::v1::QuoteLine> lines;
  for (const auto& l : r.lines()) lines.push_back(*PriceLine(l, "EUR", ""));
  *e.mutable_totals() = *SumLines(lines, "EUR");
  for (auto& l : lines) *e.add_lines() = l;
  e.set_valid_until("2025-03-31");
  return e;
}

crm::v1::QuoteAccepted Accepted() {
  crm::v1::QuoteAccepted e;
  e.set_quote_id("quo_1");
  e.set_customer_id("cus_1");
  return e;
}

TEST(QuoteTest, InTheCurrencyOfItsDealsAmount) {
  crm::v1::Opportunity deal;
  deal.set_opportunity_id("opp-1");
  EXPECT_TRUE(CheckQuoteCurrency(deal, "USD", "currency").ok()) << "no amount: any currency";
  *deal.mutable_amount() = MakeMoney("EUR", 100);
  EXPECT_TRUE(CheckQuoteCurrency(deal, "EUR", "currency").ok());
  auto st = CheckQuoteCurrency(deal, "USD", "currency");
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(st.message(),
            "currency: the quote is in USD and opportunity opp-1's amount in EUR; quote in EUR or "
            "revise the opportunity's amount first");
}

TEST(QuoteTest, DraftedWithPricedLinesAndTotals) {
  auto scenario = Quote();
  scenario.Given({}).When(DraftQuote{Draft(), "quo_1", kNoon}).Then({Drafted()});
}

TEST(QuoteTest, ValidUntilMayNotLieInThePast) {
  // kNoon is 2025-03-10: valid through that day is fine, the day before not.
  auto r = Draft();
  r.set_valid_until("2025-03-10");
  auto drafted = Drafted();
  drafted.set_valid_until("2025-03-10");
  Quote().Given({}).When(DraftQuote{r, "quo_1", kNoon}).Then({drafted});
  r.set_valid_until("2025-03-09");
  Quote()
      .Given({})
      .When(DraftQuote{r, "quo_1", kNoon})
      .ThenError(absl::StatusCode::kInvalidArgument, "valid_until: in the past");
  // Without a validity, nothing to check.
  r.clear_valid_until();
  drafted.clear_valid_until();
  Quote().Given({}).When(DraftQuote{r, "quo_1", kNoon}).Then({drafted});
}

TEST(QuoteTest, AcceptedUntilTheLastValidDay) {
  Quote().Given({Drafted()}).When(AcceptQuote{kNoon}).Then({Accepted()});
  const absl::Time last_day =
      absl::FromCivil(absl::CivilSecond(2025, 3, 31, 23, 59, 0), absl::UTCTimeZone());
  Quote().Given({Drafted()}).When(AcceptQuote{last_day}).Then({Accepted()});
  Quote()
      .Given({Drafted()})
      .When(AcceptQuote{last_day + absl::Minutes(1)})
      .ThenError(absl::StatusCode::kFailedPrecondition, "expired");
  // Stored before dates needed a year from 0001: long past, not unchecked.
  auto legacy = Drafted();
  legacy.set_valid_until("0000-12-31");
  Quote()
      .Given({legacy})
      .When(AcceptQuote{kNoon})
      .ThenError(absl::StatusCode::kFailedPrecondition, "expired");
}

TEST(QuoteTest, DecidedQuotesAreFinal) {
  crm::v1::QuoteDeclined declined;
  declined.set_quote_id("quo_1");
  declined.set_customer_id("cus_1");
  declined.set_reason("too expensive");
  Quote().Given({Drafted()}).When(DeclineQuote{"too expensive"}).Then({declined});
  Quote()
      .Given({Drafted(), declined})
      .When(AcceptQuote{kNoon})
      .ThenError(absl::StatusCode::kFailedPrecondition);
  Quote()
      .Given({Drafted(), Accepted()})
      .When(DeclineQuote{"changed mind"})
      .ThenError(absl::StatusCode::kFailedPrecondition);
  Quote().Given({}).When(AcceptQuote{kNoon}).ThenError(absl::StatusCode::kNotFound, "quote_id:");
  // A reason too long is bad input, whatever state the quote is in.
  const std::string too_long(501, 'x');
  Quote().Given({}).When(DeclineQuote{too_long}).ThenError(absl::StatusCode::kInvalidArgument);
  Quote()
      .Given({Drafted(), Accepted()})
      .When(DeclineQuote{too_long})
      .ThenError(absl::StatusCode::kInvalidArgument);
}

crm::v1::Quote AcceptedQuote() {
  auto scenario = Quote();
  scenario.Given({Drafted(), Accepted()});
  return *scenario.state();
}

crm::v1::OrderPlaced Placed() {
  const auto q = AcceptedQuote();
  crm::v1::OrderPlaced e;
  e.set_order_id("ord_1");
  e.set_quote_id("quo_1");
  e.set_customer_id("cus_1");
  e.set_opportunity_id("opp_1");
  e.set_currency("EUR");
  *e.mutable_lines() = q.lines();
  *e.mutable_totals() = q.totals();
  return e;
}

TEST(OrderTest, PlacedFromAnAcceptedQuoteOnce) {
  EXPECT_EQ(OrderIdForQuote("quo_01ABC"), "ord_01ABC");
  Order().Given({}).When(PlaceOrder{"ord_1", AcceptedQuote()}).Then({Placed()});
  Order()
      .Given({Placed()})
      .When(PlaceOrder{"ord_1", AcceptedQuote()})
      .ThenError(absl::StatusCode::kAlreadyExists);
  auto open = Quote();
  open.Given({Drafted()});
  Order()
      .Given({})
      .When(PlaceOrder{"ord_1", *open.state()})
      .ThenError(absl::StatusCode::kFailedPrecondition, "not accepted");
}

crm::v1::Order PlacedOrder() {
  auto scenario = Order();
  scenario.Given({Placed()});
  return *scenario.state();
}

crm::v1::ContractDrafted ContractDraftedEvent() {
  const auto o = PlacedOrder();
  crm::v1::ContractDrafted e;
  e.set_contract_id("ctr_1");
  e.set_order_id("ord_1");
  e.set_customer_id("cus_1");
  e.set_opportunity_id("opp_1");
  e.set_currency("EUR");
  *e.mutable_lines() = o.lines();
  *e.mutable_totals() = o.totals();
  e.set_start_date("2025-04-01");
  e.set_terms("net 30");
  return e;
}

crm::v1::ContractSubmitted Submitted() {
  crm::v1::ContractSubmitted e;
  e.set_contract_id("ctr_1");
  e.set_customer_id("cus_1");
  e.set_submitted_by("rep_ada");
  return e;
}

crm::v1::ContractRejected Rejected() {
  crm::v1::ContractRejected e;
  e.set_contract_id("ctr_1");
  e.set_customer_id("cus_1");
  e.set_rejected_by("mgr_grace");
  e.set_role("sales_manager");
  e.set_reason("discount too high");
  return e;
}

const std::vector<std::string> kManager = {"sales_rep", "sales_manager"};

TEST(ContractTest, DraftedFromTheOrderOnce) {
  crm::v1::DraftContractRequest r;
  r.set_request_id("r1");
  r.set_order_id("ord_1");
  r.set_start_date("2025-04-01");
  r.set_terms("net 30");
  ASSERT_TRUE(ValidateDraftContract(r).ok());
  EXPECT_EQ(ContractIdForOrder("ord_01ABC"), "ctr_01ABC");
  Contract()
      .Given({})
      .When(DraftContract{r, "ctr_1", PlacedOrder()})
      .Then({ContractDraftedEvent()});
  Contract()
      .Given({ContractDraftedEvent()})
      .When(DraftContract{r, "ctr_1", PlacedOrder()})
      .ThenError(absl::StatusCode::kAlreadyExists);
  r.set_end_date("2025-03-01");
  EXPECT_EQ(ValidateDraftContract(r).message().substr(0, 9), "end_date:");
  r.clear_start_date();
  EXPECT_EQ(ValidateDraftContract(r).message().substr(0, 11), "start_date:");
}

TEST(ContractTest, SubmittedFromDraftOrAfterRejection) {
  Contract().Given({ContractDraftedEvent()}).When(SubmitContract{"rep_ada"}).Then({Submitted()});
  Contract()
      .Given({ContractDraftedEvent(), Submitted(), Rejected()})
      .When(SubmitContract{"rep_ada"})
      .Then({Submitted()});
  Contract()
      .Given({ContractDraftedEvent(), Submitted()})
      .When(SubmitContract{"rep_ada"})
      .ThenError(absl::StatusCode::kFailedPrecondition);
}

TEST(ContractTest, ApprovalNeedsTheManagerRoleAndRequestsInvoiceAndFulfilment) {
  Contract()
      .Given({ContractDraftedEvent(), Submitted()})
      .When(ApproveContract{"rep_ada", {"sales_rep"}})
      .ThenError(absl::StatusCode::kPermissionDenied, "sales_manager");
  Contract()
      .Given({ContractDraftedEvent()})
      .When(ApproveContract{"mgr_grace", kManager})
      .ThenError(absl::StatusCode::kFailedPrecondition, "CONTRACT_STATUS_DRAFT");
  // The submitter is not the second pair of eyes.
  Contract()
      .Given({ContractDraftedEvent(), Submitted()})
      .When(ApproveContract{"rep_ada", kManager})
      .ThenError(absl::StatusCode::kPermissionDenied, "submitted by rep_ada");

  const auto drafted = ContractDraftedEvent();
  crm::v1::ContractApproved approved;
  approved.set_contract_id("ctr_1");
  approved.set_customer_id("cus_1");
  approved.set_approved_by("mgr_grace");
  approved.set_role("sales_manager");
  crm::v1::InvoiceRequested invoice;
  invoice.set_contract_id("ctr_1");
  invoice.set_order_id("ord_1");
  invoice.set_customer_id("cus_1");
  invoice.set_currency("EUR");
  *invoice.mutable_lines() = drafted.lines();
  *invoice.mutable_totals() = drafted.totals();
  crm::v1::FulfilmentRequested fulfilment;
  fulfilment.set_contract_id("ctr_1");
  fulfilment.set_order_id("ord_1");
  fulfilment.set_customer_id("cus_1");
  *fulfilment.mutable_lines() = drafted.lines();
  fulfilment.set_start_date("2025-04-01");
  auto scenario = Contract();
  scenario.Given({drafted, Submitted()})
      .When(ApproveContract{"mgr_grace", kManager})
      .Then({approved, invoice, fulfilment});

  Contract()
      .Given({drafted, Submitted(), approved, invoice, fulfilment})
      .When(ApproveContract{"mgr_grace", kManager})
      .ThenError(absl::StatusCode::kFailedPrecondition);
  auto folded = Contract();
  folded.Given({drafted, Submitted(), approved, invoice, fulfilment});
  EXPECT_EQ(folded.state()->status(), crm::v1::CONTRACT_STATUS_APPROVED);
  EXPECT_EQ(folded.state()->decided_by(), "mgr_grace");
}

TEST(ContractTest, RejectionNeedsTheManagerRoleAndAReason) {
  Contract()
      .Given({ContractDraftedEvent(), Submitted()})
      .When(RejectContract{"rep_ada", {}, "no"})
      .ThenError(absl::StatusCode::kPermissionDenied);
  Contract()
      .Given({ContractDraftedEvent(), Submitted()})
      .When(RejectContract{"mgr_grace", kManager, ""})
      .ThenError(absl::StatusCode::kInvalidArgument, "reason:");
  Contract()
      .Given({ContractDraftedEvent(), Submitted()})
      .When(RejectContract{"mgr_grace", kManager, "discount too high"})
      .Then({Rejected()});
  Contract()
      .Given({ContractDraftedEvent()})
      .When(RejectContract{"mgr_grace", kManager, "discount too high"})
      .ThenError(absl::StatusCode::kFailedPrecondition);
}

TEST(ContractTest, AMissingContractNamesTheField) {
  Contract()
      .Given({})
      .When(SubmitContract{"rep_ada"})
      .ThenError(absl::StatusCode::kNotFound, "contract_id:");
  Contract()
      .Given({})
      .When(ApproveContract{"mgr_grace", kManager})
      .ThenError(absl::StatusCode::kNotFound, "contract_id:");
}

}  // namespace
}  // namespace crm::sales
