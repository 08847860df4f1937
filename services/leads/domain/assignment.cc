#include "services/leads/domain/assignment.h"

#include <algorithm>
#include <limits>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace crm::leads {
namespace {

constexpr size_t kMaxRules = 1000;
constexpr size_t kMaxListEntries = 50;
constexpr size_t kMaxEntryLength = 64;
constexpr size_t kMaxTeamMembers = 100;
constexpr size_t kMaxName = 100;

absl::Status Invalid(absl::string_view field, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", why));
}

bool MatchesAny(const google::protobuf::RepeatedPtrField<std::string>& wanted,
                absl::string_view value) {
  for (const auto& w : wanted) {
    if (absl::EqualsIgnoreCase(w, value)) return true;
  }
  return false;
}

bool Matches(const crm::v1::AssignmentRule& rule, const crm::v1::Lead& lead) {
  if (!rule.regions().empty() && !MatchesAny(rule.regions(), lead.region())) return false;
  if (rule.product_interests().empty()) return true;
  for (const auto& interest : lead.product_interests()) {
    if (MatchesAny(rule.product_interests(), interest)) return true;
  }
  return false;
}

absl::Status CheckVersion(const crm::v1::AssignmentRuleTable& table, int64_t expected) {
  if (expected != kAnyVersion && expected != table.version()) {
    return absl::AbortedError(
        absl::StrCat("rule table is at version ", table.version(), ", expected ", expected));
  }
  return absl::OkStatus();
}

void Renumber(crm::v1::AssignmentRuleTable& table) {
  for (int i = 0; i < table.rules_size(); ++i) table.mutable_rules(i)->set_position(i + 1);
  table.set_version(table.version() + 1);
}

}  // namespace

absl::StatusOr<crm::v1::AssignmentRule> NormalizeRule(const crm::v1::AssignmentRule& input) {
  crm::v1::AssignmentRule rule = input;
  rule.clear_rule_id();
  rule.clear_enabled();
  rule.clear_position();
  rule.set_name(std::string(absl::StripAsciiWhitespace(rule.name())));
  if (auto st = CheckText("rule.name", rule.name(), kMaxName, /*required=*/true); !st.ok()) {
    return st;
  }
  if (auto st =
          NormalizeList("rule.regions", rule.mutable_regions(), kMaxListEntries, kMaxEntryLength);
      !st.ok()) {
    return st;
  }
  if (auto st = NormalizeList("rule.product_interests", rule.mutable_product_interests(),
                              kMaxListEntries, kMaxEntryLength);
      !st.ok()) {
    return st;
  }
  if (rule.owner_id().empty() == rule.team_id().empty()) {
    return Invalid("rule.owner_id", "exactly one of owner_id and team_id");
  }
  if (!rule.owner_id().empty()) {
    if (auto st = CheckId("rule.owner_id", rule.owner_id()); !st.ok()) return st;
    if (!rule.team_members().empty()) return Invalid("rule.team_members", "only for a team");
    if (rule.strategy() != crm::v1::TEAM_STRATEGY_UNSPECIFIED) {
      return Invalid("rule.strategy", "only for a team");
    }
    return rule;
  }
  if (auto st = CheckId("rule.team_id", rule.team_id()); !st.ok()) return st;
  if (rule.team_members().empty()) return Invalid("rule.team_members", "required for a team");
  if (static_cast<size_t>(rule.team_members_size()) > kMaxTeamMembers) {
    return Invalid("rule.team_members", absl::StrCat("more than ", kMaxTeamMembers, " entries"));
  }
  absl::flat_hash_set<std::string> members;
  for (int i = 0; i < rule.team_members_size(); ++i) {
    const std::string& m = rule.team_members(i);
    const std::string entry = absl::StrCat("rule.team_members[", i, "]");
    if (auto st = CheckId(entry, m); !st.ok()) return st;
    if (!members.insert(m).second) return Invalid(entry, absl::StrCat(m, " twice"));
  }
  if (rule.strategy() != crm::v1::TEAM_STRATEGY_ROUND_ROBIN &&
      rule.strategy() != crm::v1::TEAM_STRATEGY_LEAST_LOADED) {
    return Invalid("rule.strategy", "required for a team");
  }
  return rule;
}

absl::StatusOr<crm::v1::AssignmentRuleTable> AddRule(const crm::v1::AssignmentRuleTable& table,
                                                     crm::v1::AssignmentRule rule,
                                                     const std::string& rule_id) {
  if (static_cast<size_t>(table.rules_size()) >= kMaxRules) {
    return absl::FailedPreconditionError(
        absl::StrCat("the rule table holds ", kMaxRules, " rules already"));
  }
  crm::v1::AssignmentRuleTable next = table;
  rule.set_rule_id(rule_id);
  rule.set_enabled(true);
  *next.add_rules() = std::move(rule);
  Renumber(next);
  return next;
}

absl::StatusOr<crm::v1::AssignmentRuleTable> ReorderRules(const crm::v1::AssignmentRuleTable& table,
                                                          const std::vector<std::string>& rule_ids,
                                                          int64_t expected_version) {
  if (auto st = CheckVersion(table, expected_version); !st.ok()) return st;
  if (rule_ids.size() != static_cast<size_t>(table.rules_size())) {
    return Invalid("rule_ids", absl::StrCat("must name all ", table.rules_size(), " rules"));
  }
  crm::v1::AssignmentRuleTable next;
  next.set_version(table.version());
  absl::flat_hash_set<std::string> seen;
  for (const auto& id : rule_ids) {
    if (!seen.insert(id).second) return Invalid("rule_ids", absl::StrCat(id, " named twice"));
    auto it = std::find_if(table.rules().begin(), table.rules().end(),
                           [&](const auto& r) { return r.rule_id() == id; });
    if (it == table.rules().end()) return Invalid("rule_ids", absl::StrCat("unknown rule ", id));
    *next.add_rules() = *it;
  }
  Renumber(next);
  return next;
}

absl::StatusOr<crm::v1::AssignmentRuleTable> SetRuleEnabled(
    const crm::v1::AssignmentRuleTable& table, const std::string& rule_id, bool enabled,
    int64_t expected_version) {
  if (auto st = CheckVersion(table, expected_version); !st.ok()) return st;
  crm::v1::AssignmentRuleTable next = table;
  for (auto& rule : *next.mutable_rules()) {
    if (rule.rule_id() != rule_id) continue;
    if (rule.enabled() == enabled) {
      return absl::FailedPreconditionError(absl::StrCat(
          "rule_id: rule ", rule_id, " is ", enabled ? "enabled" : "disabled", " already"));
    }
    rule.set_enabled(enabled);
    Renumber(next);
    return next;
  }
  return absl::NotFoundError(absl::StrCat("rule_id: rule ", rule_id, " not found"));
}

Assignment ChooseAssignment(const crm::v1::AssignmentRuleTable& table, const crm::v1::Lead& lead,
                            const LoadView& load) {
  for (const auto& rule : table.rules()) {
    if (!rule.enabled() || !Matches(rule, lead)) continue;
    Assignment a;
    a.rule_id = rule.rule_id();
    if (!rule.owner_id().empty()) {
      a.owner_id = rule.owner_id();
      return a;
    }
    a.team_id = rule.team_id();
    constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
    OwnerCounts best{kMax, kMax, kMax};
    for (const auto& member : rule.team_members()) {
      const OwnerCounts c = load(rule.rule_id(), member);
      const bool better =
          rule.strategy() == crm::v1::TEAM_STRATEGY_LEAST_LOADED
              ? (c.open < best.open || (c.open == best.open && c.assigned < best.assigned))
              : c.from_rule < best.from_rule;
      if (better) {
        best = c;
        a.owner_id = member;
      }
    }
    return a;
  }
  return {};
}

}  // namespace crm::leads
