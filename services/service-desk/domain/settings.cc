#include "services/service-desk/domain/settings.h"

#include <algorithm>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "google/protobuf/io/tokenizer.h"
#include "google/protobuf/text_format.h"
#include "services/service-desk/domain/validation.h"

namespace crm::service_desk {
namespace {

constexpr int kDefaultReopenWindowHours = 168;
// SLA targets up to a year of the calendar's working weeks, which its
// ten-year search places unless holidays close most of those ten years. A
// reopen window of a year.
constexpr int64_t kMaxTargetWeeks = 52;
constexpr int kMaxReopenWindowHours = 366 * 24;
constexpr int kDefaultWarrantyFollowUpDays = 30;
constexpr int kNoWarrantyFollowUp = -1;
constexpr size_t kMaxId = 64;

absl::Status Invalid(absl::string_view field, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", why));
}

// A product as tickets name it: free text, so only bounded.
absl::Status CheckProduct(absl::string_view field, absl::string_view id) {
  if (id.empty()) return Invalid(field, "required");
  if (id.size() > kMaxId) return Invalid(field, absl::StrCat("longer than ", kMaxId, " bytes"));
  return absl::OkStatus();
}

class TextErrors final : public google::protobuf::io::ErrorCollector {
 public:
  void AddError(int line, google::protobuf::io::ColumnNumber column,
                const std::string& message) override {
    if (first_.empty())
      first_ = absl::StrCat("line ", line + 1, " column ", column + 1, ": ", message);
  }
  const std::string& first() const { return first_; }

 private:
  std::string first_;
};

crm::v1::SlaPolicy Policy(crm::v1::TicketPriority p, int first_response, int resolution,
                          int warning) {
  crm::v1::SlaPolicy policy;
  policy.set_priority(p);
  policy.set_first_response_minutes(first_response);
  policy.set_resolution_minutes(resolution);
  policy.set_warning_minutes(warning);
  return policy;
}

}  // namespace

crm::v1::ServiceDeskSettings DeskSettings::Defaults() {
  crm::v1::ServiceDeskSettings s;
  for (int day = 1; day <= 5; ++day) {
    auto* h = s.mutable_calendar()->add_hours();
    h->set_weekday(day);
    h->set_start_minute(9 * 60);
    h->set_end_minute(17 * 60);
  }
  // Business minutes: a business day is 8 hours.
  *s.add_sla_policies() = Policy(crm::v1::TICKET_PRIORITY_URGENT, 30, 4 * 60, 10);
  *s.add_sla_policies() = Policy(crm::v1::TICKET_PRIORITY_HIGH, 2 * 60, 8 * 60, 30);
  *s.add_sla_policies() = Policy(crm::v1::TICKET_PRIORITY_NORMAL, 4 * 60, 3 * 8 * 60, 60);
  *s.add_sla_policies() = Policy(crm::v1::TICKET_PRIORITY_LOW, 8 * 60, 5 * 8 * 60, 2 * 60);
  s.set_reopen_window_hours(kDefaultReopenWindowHours);
  return s;
}

absl::StatusOr<crm::v1::ServiceDeskSettings> DeskSettings::ParseText(absl::string_view text) {
  crm::v1::ServiceDeskSettings s;
  TextErrors errors;
  google::protobuf::TextFormat::Parser parser;
  parser.RecordErrorsTo(&errors);
  if (!parser.ParseFromString(std::string(text), &s)) {
    return absl::InvalidArgumentError(absl::StrCat("config: ", errors.first()));
  }
  const crm::v1::ServiceDeskSettings defaults = Defaults();
  if (!s.has_calendar()) *s.mutable_calendar() = defaults.calendar();
  if (s.sla_policies_size() == 0) *s.mutable_sla_policies() = defaults.sla_policies();
  return s;
}

absl::StatusOr<DeskSettings> DeskSettings::Create(crm::v1::ServiceDeskSettings config) {
  DeskSettings s;
  auto calendar = BusinessCalendar::Create(config.calendar());
  if (!calendar.ok()) return calendar.status();
  s.sla_.calendar = *std::move(calendar);

  for (int i = 0; i < config.sla_policies_size(); ++i) {
    const auto& p = config.sla_policies(i);
    const std::string field = absl::StrCat("sla_policies[", i, "]");
    if (p.priority() == crm::v1::TICKET_PRIORITY_UNSPECIFIED ||
        !crm::v1::TicketPriority_IsValid(p.priority())) {
      return Invalid(absl::StrCat(field, ".priority"), "required");
    }
    if (s.sla_.policies.contains(p.priority())) {
      return Invalid(absl::StrCat(field, ".priority"), "a policy for this priority exists");
    }
    for (auto [name, minutes] : {std::pair{"first_response_minutes", p.first_response_minutes()},
                                 std::pair{"resolution_minutes", p.resolution_minutes()},
                                 std::pair{"warning_minutes", p.warning_minutes()}}) {
      if (minutes < 0) return Invalid(absl::StrCat(field, ".", name), "negative");
      // A due date the calendar cannot place is no date (a timestamp
      // past year 9999, a pause clock walking to it); 0 means no target.
      if (absl::Minutes(minutes) > kMaxTargetWeeks * s.sla_.calendar.WeeklyOpen()) {
        return Invalid(absl::StrCat(field, ".", name),
                       absl::StrCat("more than ", kMaxTargetWeeks,
                                    " weeks of the calendar's working time; 0 sets no target"));
      }
    }
    s.sla_.policies[p.priority()] = p;
  }

  if (config.reopen_window_hours() < 0) return Invalid("reopen_window_hours", "negative");
  if (config.reopen_window_hours() > kMaxReopenWindowHours) {
    return Invalid("reopen_window_hours", absl::StrCat("at most ", kMaxReopenWindowHours));
  }
  if (config.reopen_window_hours() == 0) config.set_reopen_window_hours(kDefaultReopenWindowHours);
  s.sla_.reopen_window = absl::Hours(config.reopen_window_hours());

  for (int i = 0; i < config.teams_size(); ++i) {
    auto* team = config.mutable_teams(i);
    const std::string field = absl::StrCat("teams[", i, "]");
    if (auto st = CheckId(absl::StrCat(field, ".team_id"), team->team_id()); !st.ok()) return st;
    if (!s.team_index_.emplace(team->team_id(), i).second) {
      return Invalid(absl::StrCat(field, ".team_id"), "duplicate");
    }
    if (!team->lead_id().empty()) {
      if (auto st = CheckId(absl::StrCat(field, ".lead_id"), team->lead_id()); !st.ok()) return st;
    }
    std::set<std::string> agents;
    for (const auto& agent : team->agent_ids()) {
      if (auto st = CheckId(absl::StrCat(field, ".agent_ids"), agent); !st.ok()) return st;
      if (!agents.insert(agent).second) {
        return Invalid(absl::StrCat(field, ".agent_ids"), absl::StrCat("duplicate ", agent));
      }
    }
    if (team->strategy() == crm::v1::ASSIGNMENT_STRATEGY_UNSPECIFIED) {
      team->set_strategy(crm::v1::ASSIGNMENT_STRATEGY_ROUND_ROBIN);
    }
  }
  for (int i = 0; i < config.routing_rules_size(); ++i) {
    auto& rule = *config.mutable_routing_rules(i);
    // Tickets' category and product are trimmed: so are the rules', or
    // "billing " would never match.
    rule.set_category(std::string(absl::StripAsciiWhitespace(rule.category())));
    rule.set_product(std::string(absl::StripAsciiWhitespace(rule.product())));
    if (!s.team_index_.contains(rule.team_id())) {
      return Invalid(absl::StrCat("routing_rules[", i, "].team_id"),
                     absl::StrCat("unknown team '", rule.team_id(), "'"));
    }
  }
  constexpr int kMaxWarrantyMonths = 1200;
  for (int i = 0; i < config.warranties_size(); ++i) {
    const auto& w = config.warranties(i);
    const std::string field = absl::StrCat("warranties[", i, "]");
    if (auto st = CheckProduct(absl::StrCat(field, ".product_id"), w.product_id()); !st.ok()) {
      return st;
    }
    if (w.months() < 0 || w.months() > kMaxWarrantyMonths) {
      return Invalid(absl::StrCat(field, ".months"),
                     absl::StrCat("must be 0 to ", kMaxWarrantyMonths));
    }
    if (!s.warranty_months_.emplace(absl::AsciiStrToLower(w.product_id()), w.months()).second) {
      return Invalid(absl::StrCat(field, ".product_id"), "duplicate");
    }
  }
  if (config.default_warranty_months() < 0 ||
      config.default_warranty_months() > kMaxWarrantyMonths) {
    return Invalid("default_warranty_months", absl::StrCat("must be 0 to ", kMaxWarrantyMonths));
  }
  if (config.warranty_follow_up_days() < kNoWarrantyFollowUp ||
      config.warranty_follow_up_days() > 3650) {
    return Invalid("warranty_follow_up_days", "must be -1 (off) or 0 to 3650");
  }
  if (config.warranty_follow_up_days() == 0) {
    config.set_warranty_follow_up_days(kDefaultWarrantyFollowUpDays);
  }
  if (!config.default_team_id().empty() && !s.team_index_.contains(config.default_team_id())) {
    return Invalid("default_team_id",
                   absl::StrCat("unknown team '", config.default_team_id(), "'"));
  }
  s.config_ = std::move(config);
  return s;
}

bool HasAgent(const crm::v1::Team& team, absl::string_view agent_id) {
  return std::find(team.agent_ids().begin(), team.agent_ids().end(), agent_id) !=
         team.agent_ids().end();
}

const crm::v1::Team* DeskSettings::FindTeam(absl::string_view team_id) const {
  auto it = team_index_.find(team_id);
  return it == team_index_.end() ? nullptr : &config_.teams(it->second);
}

const crm::v1::Team* DeskSettings::TeamOfAgent(absl::string_view agent_id,
                                               absl::string_view preferred_team_id) const {
  if (const auto* preferred = FindTeam(preferred_team_id);
      preferred != nullptr && HasAgent(*preferred, agent_id)) {
    return preferred;
  }
  for (const auto& team : config_.teams()) {
    if (HasAgent(team, agent_id)) return &team;
  }
  return nullptr;
}

const crm::v1::Team* DeskSettings::Route(absl::string_view category, absl::string_view product,
                                         crm::v1::TicketPriority priority) const {
  for (const auto& rule : config_.routing_rules()) {
    if (!rule.category().empty() && !absl::EqualsIgnoreCase(rule.category(), category)) continue;
    if (!rule.product().empty() && !absl::EqualsIgnoreCase(rule.product(), product)) continue;
    if (rule.priority() != crm::v1::TICKET_PRIORITY_UNSPECIFIED && rule.priority() != priority) {
      continue;
    }
    return FindTeam(rule.team_id());
  }
  return config_.default_team_id().empty() ? nullptr : FindTeam(config_.default_team_id());
}

std::optional<absl::Time> DeskSettings::WarrantyEnd(absl::string_view product,
                                                    absl::Time purchased_at) const {
  auto it = warranty_months_.find(absl::AsciiStrToLower(product));
  const int months = it == warranty_months_.end() ? config_.default_warranty_months() : it->second;
  if (months <= 0) return std::nullopt;
  const absl::CivilSecond bought = absl::ToCivilSecond(purchased_at, absl::UTCTimeZone());
  // The same day of the month, or the month's last where it has no such
  // day: 31 January plus one month is 28 (29) February, never in March, so
  // a later purchase never ends earlier.
  const absl::CivilMonth month(bought.year(), bought.month() + months);
  const int last_day = (absl::CivilDay(month + 1) - 1).day();
  const absl::CivilSecond end(month.year(), month.month(), std::min(bought.day(), last_day),
                              bought.hour(), bought.minute(), bought.second());
  return absl::FromCivil(end, absl::UTCTimeZone());
}

std::optional<WarrantyFollowUp> DeskSettings::WarrantyFollowUpFor(absl::string_view product,
                                                                  absl::Time purchased_at) const {
  if (config_.warranty_follow_up_days() == kNoWarrantyFollowUp) return std::nullopt;
  const auto ends = WarrantyEnd(product, purchased_at);
  if (!ends.has_value()) return std::nullopt;
  // A warranty shorter than the lead time falls due on the purchase itself.
  const absl::Time due =
      std::max(purchased_at, *ends - absl::Hours(24) * config_.warranty_follow_up_days());
  return WarrantyFollowUp{due, *ends};
}

std::string PickAgent(const crm::v1::Team& team, absl::string_view last_agent,
                      const AgentLoad& load, absl::string_view except) {
  const int n = team.agent_ids_size();
  if (n == 0) return "";
  // The turn runs over the whole team, so skipping `except` cannot lose the
  // cursor when `except` is also the agent picked last.
  int start = 0;
  for (int i = 0; i < n; ++i) {
    if (team.agent_ids(i) == last_agent) start = (i + 1) % n;
  }
  const bool least_loaded = team.strategy() == crm::v1::ASSIGNMENT_STRATEGY_LEAST_LOADED;
  auto load_of = [&](int i) {
    auto it = load.find(team.agent_ids(i));
    return it == load.end() ? int64_t{0} : it->second;
  };
  int best = -1;
  for (int k = 0; k < n; ++k) {
    const int i = (start + k) % n;
    if (n > 1 && team.agent_ids(i) == except) continue;
    if (!least_loaded) return team.agent_ids(i);
    if (best < 0 || load_of(i) < load_of(best)) best = i;
  }
  return team.agent_ids(best < 0 ? start : best);
}

}  // namespace crm::service_desk
