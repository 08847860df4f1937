#include "services/sales/domain/forecast.h"

#include <map>
#include <tuple>

#include "absl/strings/ascii.h"
#include "absl/strings/str_format.h"
#include "libs/common/arithmetic.h"
#include "libs/common/auth/record_access.h"
#include "libs/common/ids.h"
#include "services/sales/domain/quote.h"
#include "services/sales/domain/validation.h"

namespace crm::sales {

absl::StatusOr<ForecastQuery> ParseForecastQuery(const crm::v1::GetForecastRequest& r) {
  ForecastQuery q;
  if (r.period() != crm::v1::FORECAST_PERIOD_UNSPECIFIED) {
    if (!crm::v1::ForecastPeriod_IsValid(r.period())) return Invalid("period", "unknown period");
    q.period = r.period();
  }
  if (auto st = CheckOptionalId("owner_id", r.owner_id()); !st.ok()) return st;
  q.territory = std::string(absl::StripAsciiWhitespace(r.territory()));
  if (auto st = CheckLine("territory", q.territory, kMaxTerritory); !st.ok()) return st;
  q.owner_id = r.owner_id();
  if (!r.from_date().empty()) {
    auto d = ParseDate("from_date", r.from_date());
    if (!d.ok()) return d.status();
    q.from = *d;
  }
  if (!r.to_date().empty()) {
    auto d = ParseDate("to_date", r.to_date());
    if (!d.ok()) return d.status();
    q.to = *d;
  }
  if (q.from && q.to && *q.to < *q.from) return Invalid("to_date", "before from_date");
  return q;
}

std::string PeriodOf(absl::CivilDay day, crm::v1::ForecastPeriod period) {
  if (period == crm::v1::FORECAST_PERIOD_QUARTER) {
    return absl::StrFormat("%04d-Q%d", day.year(), (day.month() - 1) / 3 + 1);
  }
  return absl::StrFormat("%04d-%02d", day.year(), day.month());
}

std::vector<crm::v1::ForecastRow> Forecast(const std::vector<crm::v1::Opportunity>& opportunities,
                                           const ForecastQuery& query) {
  using Key = std::tuple<std::string, std::string, std::string, std::string>;
  std::map<Key, crm::v1::ForecastRow> rows;
  for (const auto& o : opportunities) {
    if (!query.owner_id.empty() && o.owner_id() != query.owner_id) continue;
    // Territories compare as access compares them (ignoring case).
    if (!query.territory.empty() && !auth::SameTerritory(o.territory(), query.territory)) continue;
    absl::CivilDay day;
    if (o.outcome() == crm::v1::STAGE_OUTCOME_OPEN) {
      // Nothing to weigh or to date: left out, as documented.
      if (!o.has_amount()) continue;
      auto close = ParseDate("expected_close_date", o.expected_close_date());
      if (!close.ok()) continue;
      day = *close;
    } else if (o.outcome() == crm::v1::STAGE_OUTCOME_WON) {
      day = DayOf(FromProtoTimestamp(o.closed_at()));
    } else {
      continue;
    }
    if ((query.from && day < *query.from) || (query.to && day > *query.to)) continue;
    const std::string period = PeriodOf(day, query.period);
    // One row per territory however it is spelled (a converted deal keeps
    // the lead's "emea", one opened by a manager the token's "EMEA"); the
    // row shows the first spelling in byte order, whatever the deals' order.
    auto& row =
        rows[Key{o.owner_id(), auth::TerritoryKey(o.territory()), period, o.amount().currency()}];
    row.set_owner_id(o.owner_id());
    auth::KeepFirstSpelling(*row.mutable_territory(), o.territory());
    row.set_period(period);
    row.set_currency(o.amount().currency());
    const int64_t amount = o.amount().minor_units();
    if (o.outcome() == crm::v1::STAGE_OUTCOME_OPEN) {
      row.set_open_opportunities(row.open_opportunities() + 1);
      row.set_pipeline_minor_units(SaturatingAdd(row.pipeline_minor_units(), amount));
      row.set_weighted_minor_units(SaturatingAdd(
          row.weighted_minor_units(), ApplyBasisPoints(amount, o.probability_percent() * 100)));
    } else {
      row.set_won_opportunities(row.won_opportunities() + 1);
      row.set_won_minor_units(SaturatingAdd(row.won_minor_units(), amount));
    }
  }
  std::vector<crm::v1::ForecastRow> out;
  out.reserve(rows.size());
  for (auto& [key, row] : rows) out.push_back(std::move(row));
  return out;
}

}  // namespace crm::sales
