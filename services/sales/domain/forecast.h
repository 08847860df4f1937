#pragma once

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/civil_time.h"
#include "crm/v1/sales.pb.h"

namespace crm::sales {

struct ForecastQuery {
  crm::v1::ForecastPeriod period = crm::v1::FORECAST_PERIOD_MONTH;
  std::string owner_id;
  std::string territory;  // matched ignoring case, as access matches it
  std::optional<absl::CivilDay> from;
  std::optional<absl::CivilDay> to;
};

absl::StatusOr<ForecastQuery> ParseForecastQuery(const crm::v1::GetForecastRequest& request);

// "2025-03" by month, "2025-Q1" by quarter.
std::string PeriodOf(absl::CivilDay day, crm::v1::ForecastPeriod period);

// Open opportunities count in the period of their expected close date with
// amount x probability (rounded half up per opportunity); won ones in the
// period of their close date with their amount; lost ones not at all. Open
// opportunities without an amount or an expected close date cannot be
// placed and are left out. Rows are ordered by owner, territory, period,
// currency.
std::vector<crm::v1::ForecastRow> Forecast(const std::vector<crm::v1::Opportunity>& opportunities,
                                           const ForecastQuery& query);

}  // namespace crm::sales
