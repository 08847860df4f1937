#include "services/analytics/domain/analytics_settings.h"

#include <functional>
#include <string>

#include "absl/algorithm/container.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "crm/v1/service_desk.pb.h"
#include "google/protobuf/io/tokenizer.h"
#include "google/protobuf/text_format.h"
#include "libs/common/text.h"

namespace crm::analytics {
namespace {

absl::Status Invalid(absl::string_view field, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", why));
}

class TextErrors final : public google::protobuf::io::ErrorCollector {
 public:
  void AddError(int line, google::protobuf::io::ColumnNumber column,
                const std::string& message) override {
    if (first_.empty()) {
      first_ = absl::StrCat("line ", line + 1, " column ", column + 1, ": ", message);
    }
  }
  const std::string& first() const { return first_; }

 private:
  std::string first_;
};

}  // namespace

absl::StatusOr<AnalyticsConfig> AnalyticsConfig::Create(crm::v1::AnalyticsSettings s) {
  // Thresholds: 0 means the default, negative is a mistake.
  struct Threshold {
    const char* field;
    int64_t value;
    int64_t fallback;
    int64_t max;
    std::function<void(int64_t)> set;
  };
  const Threshold thresholds[] = {
      {"high_value_minor_units", s.high_value_minor_units(), 1000000, int64_t{1} << 53,
       [&](int64_t v) { s.set_high_value_minor_units(v); }},
      // Lead scores run 0 to 100 (services/leads/domain/scoring.h).
      {"potential_min_lead_score", s.potential_min_lead_score(), 50, 100,
       [&](int64_t v) { s.set_potential_min_lead_score(static_cast<int32_t>(v)); }},
      {"dormant_after_days", s.dormant_after_days(), 90, 36500,
       [&](int64_t v) { s.set_dormant_after_days(static_cast<int32_t>(v)); }},
      {"churned_after_days", s.churned_after_days(), 365, 36500,
       [&](int64_t v) { s.set_churned_after_days(static_cast<int32_t>(v)); }},
      {"churn_risk_threshold", s.churn_risk_threshold(), 60, 100,
       [&](int64_t v) { s.set_churn_risk_threshold(static_cast<int32_t>(v)); }},
      {"order_recency_days", s.order_recency_days(), 180, 36500,
       [&](int64_t v) { s.set_order_recency_days(static_cast<int32_t>(v)); }},
      {"activity_recency_days", s.activity_recency_days(), 90, 36500,
       [&](int64_t v) { s.set_activity_recency_days(static_cast<int32_t>(v)); }},
      {"clv_horizon_years", s.clv_horizon_years(), 3, 100,
       [&](int64_t v) { s.set_clv_horizon_years(static_cast<int32_t>(v)); }},
  };
  for (const auto& t : thresholds) {
    if (t.value < 0) return Invalid(t.field, "negative");
    if (t.value > t.max) return Invalid(t.field, absl::StrCat("at most ", t.max));
    if (t.value == 0) t.set(t.fallback);
  }
  for (const auto& [currency, minor_units] : s.high_value_minor_units_by_currency()) {
    const std::string field = absl::StrCat("high_value_minor_units_by_currency[", currency, "]");
    if (!IsCurrencyCode(currency)) return Invalid(field, "not an ISO 4217 code such as JPY");
    if (minor_units < 1 || minor_units > int64_t{1} << 53) {
      return Invalid(field, "must be 1 to 2^53");
    }
  }
  if (s.churned_after_days() < s.dormant_after_days()) {
    return Invalid("churned_after_days", "must not be shorter than dormant_after_days");
  }
  // Weights: unset means the default, 0 turns the factor off.
  struct Weight {
    const char* field;
    bool has;
    int32_t value;
    int32_t fallback;
    std::function<void(int32_t)> set;
  };
  const Weight weights[] = {
      {"order_recency_weight", s.has_order_recency_weight(), s.order_recency_weight(), 45,
       [&](int32_t v) { s.set_order_recency_weight(v); }},
      {"activity_recency_weight", s.has_activity_recency_weight(), s.activity_recency_weight(), 25,
       [&](int32_t v) { s.set_activity_recency_weight(v); }},
      {"open_tickets_weight", s.has_open_tickets_weight(), s.open_tickets_weight(), 10,
       [&](int32_t v) { s.set_open_tickets_weight(v); }},
      {"breached_tickets_weight", s.has_breached_tickets_weight(), s.breached_tickets_weight(), 10,
       [&](int32_t v) { s.set_breached_tickets_weight(v); }},
      {"falling_csat_weight", s.has_falling_csat_weight(), s.falling_csat_weight(), 10,
       [&](int32_t v) { s.set_falling_csat_weight(v); }},
  };
  for (const auto& w : weights) {
    if (!w.has) {
      w.set(w.fallback);
      continue;
    }
    if (w.value < 0 || w.value > 100) return Invalid(w.field, "must be 0 to 100");
  }
  // A threshold the factors cannot reach would make no customer at risk
  // and raise no alert, silently.
  int32_t reachable = 0;
  for (const auto& w : weights) reachable += w.has ? w.value : w.fallback;
  // Every weight 0 turns churn scoring off: nobody is at risk, by choice.
  if (reachable > 0 && reachable < s.churn_risk_threshold()) {
    return Invalid("churn_risk_threshold",
                   absl::StrCat("above the most the factors' weights add up to (", reachable,
                                "); no customer would ever be at risk"));
  }
  if (s.complaint_categories().empty()) s.add_complaint_categories("complaint");
  AnalyticsConfig config;
  for (int i = 0; i < s.complaint_categories_size(); ++i) {
    // Tickets' categories are trimmed: "refund " would match none.
    std::string* c = s.mutable_complaint_categories(i);
    *c = std::string(absl::StripAsciiWhitespace(*c));
    if (c->empty() || c->size() > 64) {
      return Invalid(absl::StrCat("complaint_categories[", i, "]"), "must be 1 to 64 bytes");
    }
    config.complaint_categories_.push_back(Utf8ToLower(*c));
  }
  if (!crm::v1::TicketPriority_IsValid(s.complaint_min_priority())) {
    return Invalid("complaint_min_priority", "unknown priority");
  }
  config.settings_ = std::move(s);
  return config;
}

AnalyticsConfig AnalyticsConfig::Defaults() {
  // The empty settings are valid by construction: every field takes its default.
  return *Create(crm::v1::AnalyticsSettings());
}

absl::StatusOr<crm::v1::AnalyticsSettings> AnalyticsConfig::ParseText(absl::string_view text) {
  crm::v1::AnalyticsSettings s;
  TextErrors errors;
  google::protobuf::TextFormat::Parser parser;
  parser.RecordErrorsTo(&errors);
  if (!parser.ParseFromString(std::string(text), &s)) {
    return absl::InvalidArgumentError(absl::StrCat("config: ", errors.first()));
  }
  return s;
}

bool AnalyticsConfig::IsComplaint(absl::string_view category, int32_t priority) const {
  if (settings_.complaint_min_priority() != crm::v1::TICKET_PRIORITY_UNSPECIFIED &&
      priority >= settings_.complaint_min_priority()) {
    return true;
  }
  return absl::c_linear_search(complaint_categories_, Utf8ToLower(category));
}

}  // namespace crm::analytics
