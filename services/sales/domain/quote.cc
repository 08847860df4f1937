#include "services/sales/domain/quote.h"

#include <algorithm>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "libs/common/ids.h"
#include "services/sales/domain/validation.h"

namespace crm::sales {
namespace {

constexpr int kMaxLines = 200;
constexpr int64_t kMaxQuantity = 1'000'000;
// Keeps quantity x price x lines far below int64 overflow.
constexpr int64_t kMaxUnitPrice = 10'000'000'000;  // 10^10 minor units

bool HasRole(const std::vector<std::string>& roles, absl::string_view role) {
  return std::find(roles.begin(), roles.end(), role) != roles.end();
}

absl::Status RequireApprover(const std::vector<std::string>& roles, absl::string_view what) {
  if (HasRole(roles, kApproverRole)) return absl::OkStatus();
  return absl::PermissionDeniedError(
      absl::StrCat(what, " a contract needs the role ", kApproverRole));
}

}  // namespace

int64_t ApplyBasisPoints(int64_t amount, int32_t bps) {
  const __int128 scaled = static_cast<__int128>(amount) * bps + 5000;
  return static_cast<int64_t>(scaled / 10000);
}

absl::StatusOr<crm::v1::QuoteLine> PriceLine(const crm::v1::QuoteLineInput& in,
                                             absl::string_view currency, absl::string_view field) {
  auto f = [&](absl::string_view name) { return absl::StrCat(field, ".", name); };
  if (auto st = CheckId(f("product_id"), in.product_id()); !st.ok()) return st;
  if (auto st = CheckText(f("description"), in.description(), 500); !st.ok()) return st;
  if (in.quantity() < 1 || in.quantity() > kMaxQuantity) {
    return Invalid(f("quantity"), absl::StrCat("must be 1..", kMaxQuantity));
  }
  if (!in.has_unit_price()) return Invalid(f("unit_price"), "required");
  if (auto st = CheckMoney(f("unit_price"), in.unit_price()); !st.ok()) return st;
  if (in.unit_price().currency() != currency) {
    return Invalid(f("unit_price.currency"), absl::StrCat("must be the quote's ", currency));
  }
  if (in.unit_price().minor_units() > kMaxUnitPrice) {
    return Invalid(f("unit_price.minor_units"), "too large");
  }
  if (in.discount_bps() < 0 || in.discount_bps() > 10000) {
    return Invalid(f("discount_bps"), "must be 0..10000");
  }
  if (in.tax_rate_bps() < 0 || in.tax_rate_bps() > 10000) {
    return Invalid(f("tax_rate_bps"), "must be 0..10000");
  }
  crm::v1::QuoteLine line;
  line.set_product_id(in.product_id());
  line.set_description(in.description());
  line.set_quantity(in.quantity());
  *line.mutable_unit_price() = in.unit_price();
  line.set_discount_bps(in.discount_bps());
  line.set_tax_rate_bps(in.tax_rate_bps());
  const int64_t gross = in.quantity() * in.unit_price().minor_units();
  const int64_t discount = ApplyBasisPoints(gross, in.discount_bps());
  const int64_t net = gross - discount;
  const int64_t tax = ApplyBasisPoints(net, in.tax_rate_bps());
  *line.mutable_gross() = MakeMoney(currency, gross);
  *line.mutable_discount() = MakeMoney(currency, discount);
  *line.mutable_net() = MakeMoney(currency, net);
  *line.mutable_tax() = MakeMoney(currency, tax);
  *line.mutable_total() = MakeMoney(currency, net + tax);
  return line;
}

absl::StatusOr<crm::v1::QuoteTotals> SumLines(const std::vector<crm::v1::QuoteLine>& lines,
                                              absl::string_view currency) {
  // Summed in 128 bits: the sum of lines each within bounds need not fit.
  __int128 gross = 0, discount = 0, net = 0, tax = 0, total = 0;
  for (const auto& l : lines) {
    gross += l.gross().minor_units();
    discount += l.discount().minor_units();
    net += l.net().minor_units();
    tax += l.tax().minor_units();
    total += l.total().minor_units();
  }
  crm::v1::QuoteTotals t;
  for (auto [name, sum, out] :
       {std::tuple{"gross", gross, t.mutable_gross()},
        std::tuple{"discount", discount, t.mutable_discount()},
        std::tuple{"net", net, t.mutable_net()}, std::tuple{"tax", tax, t.mutable_tax()},
        std::tuple{"total", total, t.mutable_total()}}) {
    if (sum >= kMaxMinorUnits) {
      return Invalid("lines", absl::StrCat("the quote's ", name, " must be below ", kMaxMinorUnits,
                                           " minor units"));
    }
    *out = MakeMoney(currency, static_cast<int64_t>(sum));
  }
  return t;
}

absl::Status CheckNotLost(const crm::v1::Opportunity& opportunity, absl::string_view to) {
  if (opportunity.outcome() != crm::v1::STAGE_OUTCOME_LOST) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat(
      "opportunity_id: opportunity ", opportunity.opportunity_id(), " is lost; reopen it to ", to));
}

absl::Status CheckQuoteCurrency(const crm::v1::Opportunity& opportunity, absl::string_view currency,
                                absl::string_view field) {
  const std::string& deal = opportunity.amount().currency();
  if (deal.empty() || deal == currency) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat(
      field, ": the quote is in ", currency, " and opportunity ", opportunity.opportunity_id(),
      "'s amount in ", deal, "; quote in ", deal, " or revise the opportunity's amount first"));
}

absl::Status ValidateDraftQuote(const crm::v1::DraftQuoteRequest& r) {
  if (auto st = CheckRequestId(r.request_id()); !st.ok()) return st;
  if (r.customer_id().empty() && r.opportunity_id().empty()) {
    return Invalid("customer_id", "a customer_id or an opportunity_id is required");
  }
  if (auto st = CheckOptionalId("customer_id", r.customer_id()); !st.ok()) return st;
  if (auto st = CheckOptionalId("opportunity_id", r.opportunity_id()); !st.ok()) return st;
  if (auto st = CheckCurrency("currency", r.currency()); !st.ok()) return st;
  if (r.lines_size() == 0) return Invalid("lines", "at least one line is required");
  if (r.lines_size() > kMaxLines) return Invalid("lines", absl::StrCat("more than ", kMaxLines));
  std::vector<crm::v1::QuoteLine> lines;
  for (int i = 0; i < r.lines_size(); ++i) {
    auto line = PriceLine(r.lines(i), r.currency(), absl::StrCat("lines[", i, "]"));
    if (!line.ok()) return line.status();
    lines.push_back(*std::move(line));
  }
  if (auto totals = SumLines(lines, r.currency()); !totals.ok()) return totals.status();
  if (!r.valid_until().empty()) {
    if (auto day = ParseDate("valid_until", r.valid_until()); !day.ok()) return day.status();
  }
  return absl::OkStatus();
}

absl::Status ValidateDraftContract(const crm::v1::DraftContractRequest& r) {
  if (auto st = CheckRequestId(r.request_id()); !st.ok()) return st;
  if (auto st = CheckId("order_id", r.order_id()); !st.ok()) return st;
  if (r.start_date().empty()) return Invalid("start_date", "required");
  auto start = ParseDate("start_date", r.start_date());
  if (!start.ok()) return start.status();
  if (!r.end_date().empty()) {
    auto end = ParseDate("end_date", r.end_date());
    if (!end.ok()) return end.status();
    if (*end < *start) return Invalid("end_date", "before start_date");
  }
  return CheckText("terms", r.terms(), 10000);
}

// ---- Quote ----

absl::StatusOr<std::vector<QuoteEvent>> Decide(const std::optional<crm::v1::Quote>& state,
                                               const QuoteCommand& command) {
  if (const auto* draft = std::get_if<DraftQuote>(&command)) {
    if (state.has_value()) {
      return absl::AlreadyExistsError(absl::StrCat("quote ", draft->quote_id, " exists"));
    }
    const auto& r = draft->request;
    std::vector<crm::v1::QuoteLine> lines;
    for (int i = 0; i < r.lines_size(); ++i) {
      auto line = PriceLine(r.lines(i), r.currency(), absl::StrCat("lines[", i, "]"));
      if (!line.ok()) return line.status();
      lines.push_back(*std::move(line));
    }
    auto totals = SumLines(lines, r.currency());
    if (!totals.ok()) return totals.status();
    if (!r.valid_until().empty()) {
      auto until = ParseDate("valid_until", r.valid_until());
      if (!until.ok()) return until.status();
      // Today is fine: acceptance is refused only after the last valid day.
      if (*until < DayOf(draft->now)) return Invalid("valid_until", "in the past");
    }
    crm::v1::QuoteDrafted e;
    e.set_quote_id(draft->quote_id);
    e.set_customer_id(r.customer_id());
    e.set_opportunity_id(r.opportunity_id());
    e.set_currency(r.currency());
    *e.mutable_totals() = *std::move(totals);
    for (auto& l : lines) *e.add_lines() = std::move(l);
    e.set_valid_until(r.valid_until());
    return std::vector<QuoteEvent>{std::move(e)};
  }
  // Bad input is INVALID_ARGUMENT whatever the quote's state.
  if (const auto* decline = std::get_if<DeclineQuote>(&command)) {
    if (auto st = CheckText("reason", decline->reason, 500); !st.ok()) return st;
  }
  // The command carries no id; the caller names it in its answer.
  if (!state.has_value()) return absl::NotFoundError("quote_id: quote not found");
  if (state->status() != crm::v1::QUOTE_STATUS_OPEN) {
    return absl::FailedPreconditionError(absl::StrCat("quote ", state->quote_id(), " is ",
                                                      crm::v1::QuoteStatus_Name(state->status())));
  }
  if (const auto* accept = std::get_if<AcceptQuote>(&command)) {
    if (!state->valid_until().empty()) {
      // A stored date that no longer parses (a year before 0001, taken
      // before dates were checked for it) lies in the past: expired.
      auto until = ParseDate("valid_until", state->valid_until());
      if (!until.ok() || DayOf(accept->at) > *until) {
        return absl::FailedPreconditionError(
            absl::StrCat("quote ", state->quote_id(), " expired on ", state->valid_until()));
      }
    }
    crm::v1::QuoteAccepted e;
    e.set_quote_id(state->quote_id());
    e.set_customer_id(state->customer_id());
    return std::vector<QuoteEvent>{std::move(e)};
  }
  const auto& decline = std::get<DeclineQuote>(command);
  crm::v1::QuoteDeclined e;
  e.set_quote_id(state->quote_id());
  e.set_customer_id(state->customer_id());
  e.set_reason(decline.reason);
  return std::vector<QuoteEvent>{std::move(e)};
}

void Apply(crm::v1::Quote& state, const QuoteEvent& event, absl::Time occurred_at) {
  const auto at = ToProtoTimestamp(occurred_at);
  std::visit(
      [&](const auto& e) {
        using T = std::decay_t<decltype(e)>;
        if constexpr (std::is_same_v<T, crm::v1::QuoteDrafted>) {
          state.set_quote_id(e.quote_id());
          state.set_customer_id(e.customer_id());
          state.set_opportunity_id(e.opportunity_id());
          state.set_currency(e.currency());
          *state.mutable_lines() = e.lines();
          *state.mutable_totals() = e.totals();
          state.set_valid_until(e.valid_until());
          state.set_status(crm::v1::QUOTE_STATUS_OPEN);
          *state.mutable_drafted_at() = at;
        } else if constexpr (std::is_same_v<T, crm::v1::QuoteAccepted>) {
          state.set_status(crm::v1::QUOTE_STATUS_ACCEPTED);
          *state.mutable_decided_at() = at;
        } else if constexpr (std::is_same_v<T, crm::v1::QuoteDeclined>) {
          state.set_status(crm::v1::QUOTE_STATUS_DECLINED);
          state.set_decline_reason(e.reason());
          *state.mutable_decided_at() = at;
        }
      },
      event);
  state.set_version(state.version() + 1);
}

std::string QuoteStream(absl::string_view quote_id) { return absl::StrCat("quote-", quote_id); }

// ---- Order ----

std::string OrderIdForQuote(absl::string_view quote_id) {
  absl::string_view id = quote_id;
  absl::ConsumePrefix(&id, "quo_");
  return absl::StrCat("ord_", id);
}

absl::StatusOr<std::vector<OrderEvent>> Decide(const std::optional<crm::v1::Order>& state,
                                               const PlaceOrder& command) {
  const auto& q = command.quote;
  if (state.has_value()) {
    return absl::AlreadyExistsError(
        absl::StrCat("quote ", q.quote_id(), " is already ordered as ", state->order_id()));
  }
  if (q.status() != crm::v1::QUOTE_STATUS_ACCEPTED) {
    return absl::FailedPreconditionError(absl::StrCat("quote ", q.quote_id(), " is not accepted (",
                                                      crm::v1::QuoteStatus_Name(q.status()), ")"));
  }
  crm::v1::OrderPlaced e;
  e.set_order_id(command.order_id);
  e.set_quote_id(q.quote_id());
  e.set_customer_id(q.customer_id());
  e.set_opportunity_id(q.opportunity_id());
  e.set_currency(q.currency());
  *e.mutable_lines() = q.lines();
  *e.mutable_totals() = q.totals();
  return std::vector<OrderEvent>{std::move(e)};
}

void Apply(crm::v1::Order& state, const OrderEvent& event, absl::Time occurred_at) {
  const auto& e = std::get<crm::v1::OrderPlaced>(event);
  state.set_order_id(e.order_id());
  state.set_quote_id(e.quote_id());
  state.set_customer_id(e.customer_id());
  state.set_opportunity_id(e.opportunity_id());
  state.set_currency(e.currency());
  *state.mutable_lines() = e.lines();
  *state.mutable_totals() = e.totals();
  *state.mutable_placed_at() = ToProtoTimestamp(occurred_at);
  state.set_version(state.version() + 1);
}

std::string OrderStream(absl::string_view order_id) { return absl::StrCat("order-", order_id); }

// ---- Contract ----

std::string ContractIdForOrder(absl::string_view order_id) {
  absl::string_view id = order_id;
  absl::ConsumePrefix(&id, "ord_");
  return absl::StrCat("ctr_", id);
}

namespace {

using ContractEvents = std::vector<ContractEvent>;

absl::Status RequireStatus(const crm::v1::Contract& s,
                           std::initializer_list<crm::v1::ContractStatus> allowed,
                           absl::string_view action) {
  for (auto a : allowed) {
    if (s.status() == a) return absl::OkStatus();
  }
  return absl::FailedPreconditionError(absl::StrCat("contract ", s.contract_id(), " is ",
                                                    crm::v1::ContractStatus_Name(s.status()),
                                                    " and cannot be ", action));
}

absl::StatusOr<ContractEvents> DecideDraft(const std::optional<crm::v1::Contract>& state,
                                           const DraftContract& c) {
  if (state.has_value()) {
    return absl::AlreadyExistsError(
        absl::StrCat("order ", c.order.order_id(), " already has contract ", state->contract_id()));
  }
  crm::v1::ContractDrafted e;
  e.set_contract_id(c.contract_id);
  e.set_order_id(c.order.order_id());
  e.set_customer_id(c.order.customer_id());
  e.set_opportunity_id(c.order.opportunity_id());
  e.set_currency(c.order.currency());
  *e.mutable_lines() = c.order.lines();
  *e.mutable_totals() = c.order.totals();
  e.set_start_date(c.request.start_date());
  e.set_end_date(c.request.end_date());
  e.set_terms(c.request.terms());
  return ContractEvents{std::move(e)};
}

absl::StatusOr<ContractEvents> DecideApprove(const crm::v1::Contract& s, const ApproveContract& c) {
  if (auto st = RequireStatus(s, {crm::v1::CONTRACT_STATUS_SUBMITTED}, "approved"); !st.ok()) {
    return st;
  }
  // Four eyes: the approval is a second person's check of the submission.
  if (c.actor == s.submitted_by()) {
    return absl::PermissionDeniedError(
        absl::StrCat("contract ", s.contract_id(), " was submitted by ", c.actor,
                     ": someone else with the role ", kApproverRole, " approves it"));
  }
  crm::v1::ContractApproved approved;
  approved.set_contract_id(s.contract_id());
  approved.set_customer_id(s.customer_id());
  approved.set_approved_by(c.actor);
  approved.set_role(kApproverRole);
  crm::v1::InvoiceRequested invoice;
  invoice.set_contract_id(s.contract_id());
  invoice.set_order_id(s.order_id());
  invoice.set_customer_id(s.customer_id());
  invoice.set_currency(s.currency());
  *invoice.mutable_lines() = s.lines();
  *invoice.mutable_totals() = s.totals();
  crm::v1::FulfilmentRequested fulfilment;
  fulfilment.set_contract_id(s.contract_id());
  fulfilment.set_order_id(s.order_id());
  fulfilment.set_customer_id(s.customer_id());
  *fulfilment.mutable_lines() = s.lines();
  fulfilment.set_start_date(s.start_date());
  return ContractEvents{std::move(approved), std::move(invoice), std::move(fulfilment)};
}

}  // namespace

absl::StatusOr<std::vector<ContractEvent>> Decide(const std::optional<crm::v1::Contract>& state,
                                                  const ContractCommand& command) {
  if (const auto* draft = std::get_if<DraftContract>(&command)) return DecideDraft(state, *draft);
  // Authorization first, so that an unauthorized caller learns nothing.
  if (const auto* approve = std::get_if<ApproveContract>(&command)) {
    if (auto st = RequireApprover(approve->roles, "approving"); !st.ok()) return st;
  }
  if (const auto* reject = std::get_if<RejectContract>(&command)) {
    if (auto st = RequireApprover(reject->roles, "rejecting"); !st.ok()) return st;
    if (auto st = CheckText("reason", reject->reason, 500, /*required=*/true); !st.ok()) {
      return st;
    }
  }
  // The command carries no id; the caller names it in its answer.
  if (!state.has_value()) return absl::NotFoundError("contract_id: contract not found");
  if (const auto* submit = std::get_if<SubmitContract>(&command)) {
    if (auto st = RequireStatus(*state,
                                {crm::v1::CONTRACT_STATUS_DRAFT, crm::v1::CONTRACT_STATUS_REJECTED},
                                "submitted");
        !st.ok()) {
      return st;
    }
    crm::v1::ContractSubmitted e;
    e.set_contract_id(state->contract_id());
    e.set_customer_id(state->customer_id());
    e.set_submitted_by(submit->actor);
    return ContractEvents{std::move(e)};
  }
  if (const auto* approve = std::get_if<ApproveContract>(&command)) {
    return DecideApprove(*state, *approve);
  }
  const auto& reject = std::get<RejectContract>(command);
  if (auto st = RequireStatus(*state, {crm::v1::CONTRACT_STATUS_SUBMITTED}, "rejected"); !st.ok()) {
    return st;
  }
  crm::v1::ContractRejected e;
  e.set_contract_id(state->contract_id());
  e.set_customer_id(state->customer_id());
  e.set_rejected_by(reject.actor);
  e.set_role(kApproverRole);
  e.set_reason(reject.reason);
  return ContractEvents{std::move(e)};
}

void Apply(crm::v1::Contract& state, const ContractEvent& event, absl::Time occurred_at) {
  std::visit(
      [&](const auto& e) {
        using T = std::decay_t<decltype(e)>;
        if constexpr (std::is_same_v<T, crm::v1::ContractDrafted>) {
          state.set_contract_id(e.contract_id());
          state.set_order_id(e.order_id());
          state.set_customer_id(e.customer_id());
          state.set_opportunity_id(e.opportunity_id());
          state.set_currency(e.currency());
          *state.mutable_lines() = e.lines();
          *state.mutable_totals() = e.totals();
          state.set_start_date(e.start_date());
          state.set_end_date(e.end_date());
          state.set_terms(e.terms());
          state.set_status(crm::v1::CONTRACT_STATUS_DRAFT);
        } else if constexpr (std::is_same_v<T, crm::v1::ContractSubmitted>) {
          state.set_status(crm::v1::CONTRACT_STATUS_SUBMITTED);
          state.set_submitted_by(e.submitted_by());
          state.clear_decided_by();
          state.clear_rejection_reason();
        } else if constexpr (std::is_same_v<T, crm::v1::ContractApproved>) {
          state.set_status(crm::v1::CONTRACT_STATUS_APPROVED);
          state.set_decided_by(e.approved_by());
          *state.mutable_approved_at() = ToProtoTimestamp(occurred_at);
        } else if constexpr (std::is_same_v<T, crm::v1::ContractRejected>) {
          state.set_status(crm::v1::CONTRACT_STATUS_REJECTED);
          state.set_decided_by(e.rejected_by());
          state.set_rejection_reason(e.reason());
        }
        // InvoiceRequested and FulfilmentRequested are for other systems;
        // the contract's own state is settled by ContractApproved.
      },
      event);
  state.set_version(state.version() + 1);
}

std::string ContractStream(absl::string_view contract_id) {
  return absl::StrCat("contract-", contract_id);
}

}  // namespace crm::sales
