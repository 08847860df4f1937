#pragma once

#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "crm/v1/sales.pb.h"

namespace crm::sales {

// Quotes, the orders placed from them and the contracts of orders.

// ---- Pricing ----

// quantity x unit price = gross; discount = gross x discount_bps, net =
// gross - discount; tax = net x tax_rate_bps, total = net + tax. Amounts
// round half up to the minor unit, per line; totals are sums of the lines.
absl::StatusOr<crm::v1::QuoteLine> PriceLine(const crm::v1::QuoteLineInput& input,
                                             absl::string_view currency, absl::string_view field);
// INVALID_ARGUMENT on `lines` when a total reaches kMaxMinorUnits: the
// totals travel on to invoices, whose amounts must pass CheckMoney.
absl::StatusOr<crm::v1::QuoteTotals> SumLines(const std::vector<crm::v1::QuoteLine>& lines,
                                              absl::string_view currency);
// round(amount x bps / 10000), half up; amount >= 0.
int64_t ApplyBasisPoints(int64_t amount, int32_t bps);

absl::Status ValidateDraftQuote(const crm::v1::DraftQuoteRequest& request);
absl::Status ValidateDraftContract(const crm::v1::DraftContractRequest& request);

// ---- Quote ----

// A deal marked lost is not quoted, nor is its quote accepted or ordered
// (the customer would be ordered and invoiced for a deal the pipeline and
// the forecast count as lost): FAILED_PRECONDITION until it is reopened.
// `to` names what was refused ("quote", "order").
absl::Status CheckNotLost(const crm::v1::Opportunity& opportunity, absl::string_view to);

// A deal's quote is in the currency of the deal's amount: the forecast and
// the pipeline count the amount, the order and the invoice the quote.
// FAILED_PRECONDITION naming `field` otherwise; a deal without an amount
// takes any currency.
absl::Status CheckQuoteCurrency(const crm::v1::Opportunity& opportunity, absl::string_view currency,
                                absl::string_view field);

struct DraftQuote {
  crm::v1::DraftQuoteRequest request;  // validated; customer resolved
  std::string quote_id;
  absl::Time now;  // valid_until may not be a day (UTC) before this one
};
struct AcceptQuote {
  absl::Time at;  // refused after valid_until
};
struct DeclineQuote {
  std::string reason;
};
using QuoteCommand = std::variant<DraftQuote, AcceptQuote, DeclineQuote>;
using QuoteEvent =
    std::variant<crm::v1::QuoteDrafted, crm::v1::QuoteAccepted, crm::v1::QuoteDeclined>;

absl::StatusOr<std::vector<QuoteEvent>> Decide(const std::optional<crm::v1::Quote>& state,
                                               const QuoteCommand& command);
void Apply(crm::v1::Quote& state, const QuoteEvent& event, absl::Time occurred_at);
std::string QuoteStream(absl::string_view quote_id);

// ---- Order ----

// The order of a quote has an id derived from the quote's, so the order
// stream's existence is what makes a quote orderable once.
std::string OrderIdForQuote(absl::string_view quote_id);

struct PlaceOrder {
  std::string order_id;
  crm::v1::Quote quote;
};
using OrderEvent = std::variant<crm::v1::OrderPlaced>;

absl::StatusOr<std::vector<OrderEvent>> Decide(const std::optional<crm::v1::Order>& state,
                                               const PlaceOrder& command);
void Apply(crm::v1::Order& state, const OrderEvent& event, absl::Time occurred_at);
std::string OrderStream(absl::string_view order_id);

// ---- Contract ----

inline constexpr char kApproverRole[] = "sales_manager";

// One contract per order, by the same derived-id rule.
std::string ContractIdForOrder(absl::string_view order_id);

struct DraftContract {
  crm::v1::DraftContractRequest request;  // validated
  std::string contract_id;
  crm::v1::Order order;
};
struct SubmitContract {
  std::string actor;
};
struct ApproveContract {
  std::string actor;
  std::vector<std::string> roles;
};
struct RejectContract {
  std::string actor;
  std::vector<std::string> roles;
  std::string reason;
};
using ContractCommand =
    std::variant<DraftContract, SubmitContract, ApproveContract, RejectContract>;
using ContractEvent = std::variant<crm::v1::ContractDrafted, crm::v1::ContractSubmitted,
                                   crm::v1::ContractApproved, crm::v1::ContractRejected,
                                   crm::v1::InvoiceRequested, crm::v1::FulfilmentRequested>;

absl::StatusOr<std::vector<ContractEvent>> Decide(const std::optional<crm::v1::Contract>& state,
                                                  const ContractCommand& command);
void Apply(crm::v1::Contract& state, const ContractEvent& event, absl::Time occurred_at);
std::string ContractStream(absl::string_view contract_id);

}  // namespace crm::sales
