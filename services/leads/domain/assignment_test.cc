#include "services/leads/domain/assignment.h"

#include "absl/container/flat_hash_map.h"
#include "gtest/gtest.h"

namespace crm::leads {
namespace {

void ExpectInvalidField(const absl::Status& st, const std::string& field) {
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;
  EXPECT_EQ(st.message().substr(0, field.size() + 1), field + ":") << st;
}

crm::v1::AssignmentRule OwnerRule(std::vector<std::string> regions,
                                  std::vector<std::string> products, std::string owner) {
  crm::v1::AssignmentRule r;
  r.set_name("rule for " + owner);
  for (auto& x : regions) r.add_regions(x);
  for (auto& x : products) r.add_product_interests(x);
  r.set_owner_id(owner);
  return r;
}

crm::v1::AssignmentRule TeamRule(std::vector<std::string> regions, std::string team,
                                 std::vector<std::string> members, crm::v1::TeamStrategy s) {
  crm::v1::AssignmentRule r;
  r.set_name("team " + team);
  for (auto& x : regions) r.add_regions(x);
  r.set_team_id(team);
  for (auto& m : members) r.add_team_members(m);
  r.set_strategy(s);
  return r;
}

crm::v1::AssignmentRuleTable Table(std::vector<crm::v1::AssignmentRule> rules) {
  crm::v1::AssignmentRuleTable table;
  int n = 0;
  for (auto& r : rules) {
    table = *AddRule(table, *NormalizeRule(r), "rule_" + std::to_string(++n));
  }
  return table;
}

crm::v1::Lead LeadIn(const std::string& region, std::vector<std::string> products) {
  crm::v1::Lead lead;
  lead.set_region(region);
  for (auto& p : products) lead.add_product_interests(p);
  return lead;
}

LoadView NoLoad() {
  return [](const std::string&, const std::string&) { return OwnerCounts{}; };
}

TEST(RuleValidationTest, BadRulesNameTheField) {
  auto ok = OwnerRule({"EMEA"}, {}, "usr_1");
  EXPECT_TRUE(NormalizeRule(ok).ok());
  auto r = ok;
  r.clear_name();
  ExpectInvalidField(NormalizeRule(r).status(), "rule.name");
  r = ok;
  r.add_regions(" ");
  ExpectInvalidField(NormalizeRule(r).status(), "rule.regions[1]");
  r = ok;
  r.add_product_interests(std::string(65, 'p'));
  ExpectInvalidField(NormalizeRule(r).status(), "rule.product_interests[0]");
  r = ok;
  r.set_team_id("team_1");
  ExpectInvalidField(NormalizeRule(r).status(), "rule.owner_id");
  r = ok;
  r.clear_owner_id();
  ExpectInvalidField(NormalizeRule(r).status(), "rule.owner_id");
  r = ok;
  r.set_owner_id("bad id!");
  ExpectInvalidField(NormalizeRule(r).status(), "rule.owner_id");
  r = ok;
  r.add_team_members("usr_2");
  ExpectInvalidField(NormalizeRule(r).status(), "rule.team_members");
  auto team = TeamRule({}, "team_1", {}, crm::v1::TEAM_STRATEGY_ROUND_ROBIN);
  ExpectInvalidField(NormalizeRule(team).status(), "rule.team_members");
  team = TeamRule({}, "team_1", {"usr_1", "usr_1"}, crm::v1::TEAM_STRATEGY_ROUND_ROBIN);
  ExpectInvalidField(NormalizeRule(team).status(), "rule.team_members[1]");
  team = TeamRule({}, "team_1", {"usr_1"}, crm::v1::TEAM_STRATEGY_UNSPECIFIED);
  ExpectInvalidField(NormalizeRule(team).status(), "rule.strategy");
}

TEST(RuleValidationTest, ListsAreTrimmedAndDeduplicated) {
  auto r = NormalizeRule(OwnerRule({" EMEA ", "emea", "NA"}, {"CRM", "crm"}, "usr_1"));
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->regions_size(), 2);
  EXPECT_EQ(r->regions(0), "EMEA");
  EXPECT_EQ(r->product_interests_size(), 1);
}

TEST(RuleTableTest, AddedRulesAreEnabledAtTheEndAndBumpTheVersion) {
  auto table = Table({OwnerRule({}, {}, "usr_1"), OwnerRule({}, {}, "usr_2")});
  ASSERT_EQ(table.rules_size(), 2);
  EXPECT_EQ(table.version(), 2);
  EXPECT_EQ(table.rules(1).rule_id(), "rule_2");
  EXPECT_EQ(table.rules(1).position(), 2);
  EXPECT_TRUE(table.rules(1).enabled());
}

TEST(RuleTableTest, ReorderNeedsEveryRuleOnceAndTheCurrentVersion) {
  auto table = Table({OwnerRule({}, {}, "usr_1"), OwnerRule({}, {}, "usr_2")});
  auto reordered = ReorderRules(table, {"rule_2", "rule_1"}, table.version());
  ASSERT_TRUE(reordered.ok()) << reordered.status();
  EXPECT_EQ(reordered->rules(0).rule_id(), "rule_2");
  EXPECT_EQ(reordered->rules(0).position(), 1);
  EXPECT_EQ(reordered->version(), table.version() + 1);
  EXPECT_EQ(ReorderRules(table, {"rule_2", "rule_1"}, 1).status().code(),
            absl::StatusCode::kAborted);
  ExpectInvalidField(ReorderRules(table, {"rule_2"}, 0).status(), "rule_ids");
  ExpectInvalidField(ReorderRules(table, {"rule_2", "rule_2"}, 0).status(), "rule_ids");
  ExpectInvalidField(ReorderRules(table, {"rule_2", "rule_9"}, 0).status(), "rule_ids");
}

TEST(RuleTableTest, DisableAndEnable) {
  auto table = Table({OwnerRule({}, {}, "usr_1")});
  auto disabled = SetRuleEnabled(table, "rule_1", false, table.version());
  ASSERT_TRUE(disabled.ok());
  EXPECT_FALSE(disabled->rules(0).enabled());
  EXPECT_EQ(SetRuleEnabled(*disabled, "rule_1", false, 0).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(SetRuleEnabled(table, "rule_9", false, 0).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(SetRuleEnabled(table, "rule_1", false, 7).status().code(), absl::StatusCode::kAborted);
  EXPECT_TRUE(SetRuleEnabled(*disabled, "rule_1", true, 0)->rules(0).enabled());
}

TEST(ChooseAssignmentTest, FirstMatchingEnabledRuleWins) {
  auto table = Table({OwnerRule({"EMEA"}, {"analytics"}, "usr_analytics"),
                      OwnerRule({"emea"}, {}, "usr_emea"), OwnerRule({}, {}, "usr_anyone")});
  auto a = ChooseAssignment(table, LeadIn("EMEA", {"crm", "Analytics"}), NoLoad());
  EXPECT_EQ(a.owner_id, "usr_analytics");
  EXPECT_EQ(a.rule_id, "rule_1");
  EXPECT_EQ(ChooseAssignment(table, LeadIn("Emea", {"crm"}), NoLoad()).owner_id, "usr_emea");
  EXPECT_EQ(ChooseAssignment(table, LeadIn("NA", {}), NoLoad()).owner_id, "usr_anyone");
  table = *SetRuleEnabled(table, "rule_1", false, 0);
  EXPECT_EQ(ChooseAssignment(table, LeadIn("EMEA", {"analytics"}), NoLoad()).owner_id, "usr_emea");
}

TEST(ChooseAssignmentTest, NoMatchLeavesTheLeadInTheDefaultQueue) {
  auto table = Table({OwnerRule({"EMEA"}, {}, "usr_emea")});
  EXPECT_TRUE(ChooseAssignment(table, LeadIn("APAC", {}), NoLoad()).empty());
  EXPECT_TRUE(
      ChooseAssignment(crm::v1::AssignmentRuleTable(), LeadIn("EMEA", {}), NoLoad()).empty());
}

TEST(ChooseAssignmentTest, RoundRobinTakesTurnsInMemberOrder) {
  auto table = Table(
      {TeamRule({}, "team_1", {"usr_a", "usr_b", "usr_c"}, crm::v1::TEAM_STRATEGY_ROUND_ROBIN)});
  // usr_a holds many leads from elsewhere (another rule, by hand): turns
  // go by what this rule gave.
  absl::flat_hash_map<std::string, OwnerCounts> counts = {{"usr_a", {40, 40, 0}}};
  LoadView load = [&](const std::string& rule_id, const std::string& o) {
    EXPECT_EQ(rule_id, table.rules(0).rule_id());
    return counts[o];
  };
  std::vector<std::string> picked;
  for (int i = 0; i < 6; ++i) {
    auto a = ChooseAssignment(table, LeadIn("any", {}), load);
    EXPECT_EQ(a.team_id, "team_1");
    picked.push_back(a.owner_id);
    ++counts[a.owner_id].assigned;
    ++counts[a.owner_id].from_rule;
  }
  EXPECT_EQ(picked,
            (std::vector<std::string>{"usr_a", "usr_b", "usr_c", "usr_a", "usr_b", "usr_c"}));
}

TEST(ChooseAssignmentTest, LeastLoadedPicksFewestOpenLeads) {
  auto table = Table(
      {TeamRule({}, "team_1", {"usr_a", "usr_b", "usr_c"}, crm::v1::TEAM_STRATEGY_LEAST_LOADED)});
  absl::flat_hash_map<std::string, OwnerCounts> counts = {
      {"usr_a", {5, 9}}, {"usr_b", {2, 20}}, {"usr_c", {2, 3}}};
  LoadView load = [&](const std::string&, const std::string& o) { return counts[o]; };
  // usr_b and usr_c hold two open leads each; usr_c had fewer overall.
  EXPECT_EQ(ChooseAssignment(table, LeadIn("any", {}), load).owner_id, "usr_c");
  counts["usr_c"].open = 3;
  EXPECT_EQ(ChooseAssignment(table, LeadIn("any", {}), load).owner_id, "usr_b");
}

}  // namespace
}  // namespace crm::leads
