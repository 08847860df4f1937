// The sales service's request validators on arbitrary requests: the first
// byte picks the request, the rest is its protobuf encoding (or raw text
// for the date and loyalty-tier parsers). Beyond not crashing: errors are
// INVALID_ARGUMENT naming the field, normalizing is idempotent, prices of
// valid lines add up, and a parsed date prints back to itself.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <numeric>
#include <vector>

#include "crm/v1/sales.pb.h"
#include "fuzz/fuzz_input.h"
#include "services/sales/api/sales_commands.h"
#include "services/sales/domain/customer.h"
#include "services/sales/domain/forecast.h"
#include "services/sales/domain/opportunity.h"
#include "services/sales/domain/pipeline.h"
#include "services/sales/domain/quote.h"
#include "services/sales/domain/task.h"
#include "services/sales/domain/validation.h"

namespace crm::fuzz {
namespace {

template <typename Request, typename Validate>
void Validated(absl::string_view payload, Validate validate, absl::string_view what) {
  Request request;
  if (!Decode(payload, request)) return;
  CheckValidation(validate(request), what);
}

void OpenCustomer(absl::string_view payload) {
  crm::v1::OpenCustomerRequest request;
  if (!Decode(payload, request)) return;
  const auto program = sales::LoyaltyProgram::Default();
  auto normalized = sales::NormalizeOpenCustomer(request, program);
  CheckValidation(normalized.status(), "NormalizeOpenCustomer");
  if (!normalized.ok()) return;
  auto again = sales::NormalizeOpenCustomer(*normalized, program);
  Check(again.ok(), "a normalized customer is refused", again.status().ToString());
  Check(Same(*again, *normalized), "normalizing a customer twice changes it");
}

void QuoteLines(absl::string_view payload) {
  crm::v1::DraftQuoteRequest request;
  if (!Decode(payload, request)) return;
  CheckValidation(sales::ValidateDraftQuote(request), "ValidateDraftQuote");
  std::vector<crm::v1::QuoteLine> lines;
  for (int i = 0; i < request.lines_size() && i < 16; ++i) {
    auto line = sales::PriceLine(request.lines(i), "EUR", "lines[0]");
    CheckValidation(line.status(), "PriceLine");
    if (!line.ok()) continue;
    // A priced line's parts agree: net = gross - discount, total = net + tax.
    Check(line->net().minor_units() == line->gross().minor_units() - line->discount().minor_units(),
          "a line's net is not gross - discount", line->DebugString());
    Check(line->total().minor_units() == line->net().minor_units() + line->tax().minor_units(),
          "a line's total is not net + tax", line->DebugString());
    lines.push_back(*std::move(line));
  }
  auto totals = sales::SumLines(lines, "EUR");
  CheckValidation(totals.status(), "SumLines");
  if (!totals.ok()) return;
  // The quote's totals are the sums of its lines (they fit: SumLines said so).
  auto sum = [&](const crm::v1::Money& (crm::v1::QuoteLine::*part)() const) {
    return std::accumulate(lines.begin(), lines.end(), int64_t{0}, [&](int64_t acc, const auto& l) {
      return acc + (l.*part)().minor_units();
    });
  };
  using L = crm::v1::QuoteLine;
  Check(totals->gross().minor_units() == sum(&L::gross) &&
            totals->discount().minor_units() == sum(&L::discount) &&
            totals->net().minor_units() == sum(&L::net) &&
            totals->tax().minor_units() == sum(&L::tax) &&
            totals->total().minor_units() == sum(&L::total),
        "quote totals are not the sums of the lines", totals->DebugString());
}

void Pipeline(absl::string_view payload) {
  crm::v1::Pipeline pipeline;
  if (!Decode(payload, pipeline)) return;
  CheckValidation(sales::ValidatePipeline(pipeline), "ValidatePipeline");
  if (!sales::ValidatePipeline(pipeline).ok()) return;
  sales::FirstOpenStage(pipeline);
  const int n = std::min(pipeline.stages_size(), 12);
  for (int from = 0; from < n; ++from) {
    Check(sales::FindStage(pipeline, pipeline.stages(from).stage_id()) != nullptr,
          "a stage of a valid pipeline is not found");
    for (int to = 0; to < n; ++to) {
      const absl::Status st =
          sales::CheckTransition(pipeline, pipeline.stages(from), pipeline.stages(to));
      Check(st.ok() || st.code() == absl::StatusCode::kFailedPrecondition,
            "CheckTransition refuses with a code other than FAILED_PRECONDITION", st.ToString());
    }
  }
}

void Texts(absl::string_view text) {
  if (auto day = sales::ParseDate("close_date", text); day.ok()) {
    const std::string printed = sales::FormatDate(*day);
    auto reparsed = sales::ParseDate("close_date", printed);
    Check(reparsed.ok() && *reparsed == *day, "a formatted date does not parse back", printed);
  } else {
    CheckValidation(day.status(), "ParseDate");
  }
  CheckValidation(sales::CheckCurrency("currency", text), "CheckCurrency");
  CheckValidation(sales::CheckId("customer_id", text), "CheckId");
  CheckValidation(sales::CheckText("name", text, sales::kMaxName, true), "CheckText");
  (void)sales::LoyaltyProgram::Parse("EUR", text);
}

}  // namespace
}  // namespace crm::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace crm;  // NOLINT: the request types and validators read better short
  const auto [selector, payload] = fuzz::Choose(data, size);
  switch (selector % 16) {
    case 0:
      fuzz::OpenCustomer(payload);
      break;
    case 1:
      fuzz::Validated<v1::OpenOpportunityRequest>(
          payload, [](const auto& r) { return sales::ValidateOpenOpportunity(r); },
          "ValidateOpenOpportunity");
      break;
    case 2:
      fuzz::Validated<v1::ChangeOpportunityStageRequest>(
          payload, [](const auto& r) { return sales::ValidateChangeStage(r); },
          "ValidateChangeStage");
      break;
    case 3:
      fuzz::Validated<v1::ReviseOpportunityRequest>(
          payload, [](const auto& r) { return sales::ValidateRevise(r); }, "ValidateRevise");
      break;
    case 4:
      fuzz::Validated<v1::CreateTaskRequest>(
          payload, [](const auto& r) { return sales::ValidateCreateTask(r); },
          "ValidateCreateTask");
      break;
    case 5:
      fuzz::Validated<v1::LogActivityRequest>(
          payload, [](const auto& r) { return sales::ValidateLogActivity(r); },
          "ValidateLogActivity");
      break;
    case 6:
      fuzz::QuoteLines(payload);
      break;
    case 7:
      fuzz::Validated<v1::DraftContractRequest>(
          payload, [](const auto& r) { return sales::ValidateDraftContract(r); },
          "ValidateDraftContract");
      break;
    case 8:
      fuzz::Validated<v1::GetForecastRequest>(
          payload, [](const auto& r) { return sales::ParseForecastQuery(r).status(); },
          "ParseForecastQuery");
      break;
    case 9:
      fuzz::Pipeline(payload);
      break;
    case 10: {
      v1::Money money;
      if (fuzz::Decode(payload, money)) {
        fuzz::CheckValidation(sales::CheckMoney("amount", money), "CheckMoney");
      }
      break;
    }
    case 11:
      fuzz::Texts(payload);
      break;
    case 12:
      fuzz::Validated<v1::ListCustomersRequest>(
          payload,
          [](const auto& r) { return sales::SalesCommands::OpenListCustomers(r).status(); },
          "OpenListCustomers");
      break;
    case 13:
      fuzz::Validated<v1::ListOpportunitiesRequest>(
          payload,
          [](const auto& r) { return sales::SalesCommands::OpenListOpportunities(r).status(); },
          "OpenListOpportunities");
      break;
    case 14:
      fuzz::Validated<v1::ListActivitiesRequest>(
          payload,
          [](const auto& r) { return sales::SalesCommands::OpenListActivities(r).status(); },
          "OpenListActivities");
      break;
    default:
      fuzz::Validated<v1::ListTasksRequest>(
          payload, [](const auto& r) { return sales::SalesCommands::OpenListTasks(r).status(); },
          "OpenListTasks");
      break;
  }
  return 0;
}
