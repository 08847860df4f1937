#include "services/service-desk/domain/settings.h"

#include <fstream>
#include <sstream>

#include "gtest/gtest.h"

namespace crm::service_desk {
namespace {

constexpr char kConfig[] = R"pb(
  calendar {
    time_zone: "Europe/Berlin"
    hours { weekday: 1 start_minute: 480 end_minute: 1080 }
    holidays: "2024-12-25"
  }
  sla_policies {
    priority: TICKET_PRIORITY_URGENT
    first_response_minutes: 15
    resolution_minutes: 120
    warning_minutes: 5
  }
  teams {
    team_id: "hardware"
    lead_id: "lead:hal"
    agent_ids: "ann"
    agent_ids: "bob"
    strategy: ASSIGNMENT_STRATEGY_LEAST_LOADED
  }
  teams { team_id: "billing" lead_id: "lead:bea" agent_ids: "cid" }
  teams { team_id: "frontline" agent_ids: "dan" agent_ids: "eve" }
  routing_rules { category: "Billing" team_id: "billing" }
  routing_rules { product: "printer-x" priority: TICKET_PRIORITY_URGENT team_id: "hardware" }
  default_team_id: "frontline"
  reject_unknown_customers: true
)pb";

DeskSettings Parsed() {
  auto config = DeskSettings::ParseText(kConfig);
  EXPECT_TRUE(config.ok()) << config.status();
  auto settings = DeskSettings::Create(*config);
  EXPECT_TRUE(settings.ok()) << settings.status();
  return *settings;
}

void ExpectInvalid(const std::function<void(crm::v1::ServiceDeskSettings&)>& mutate,
                   const std::string& field) {
  auto config = *DeskSettings::ParseText(kConfig);
  mutate(config);
  auto settings = DeskSettings::Create(config);
  ASSERT_FALSE(settings.ok()) << field;
  EXPECT_EQ(settings.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(settings.status().message().substr(0, field.size() + 1), field + ":")
      << settings.status();
}

TEST(SettingsTest, DefaultsAreValid) {
  auto settings = DeskSettings::Create(DeskSettings::Defaults());
  ASSERT_TRUE(settings.ok()) << settings.status();
  EXPECT_EQ(settings->sla().policies.size(), 4u);
  EXPECT_EQ(settings->sla().reopen_window, absl::Hours(168));
  EXPECT_FALSE(settings->reject_unknown_customers());
  EXPECT_EQ(settings->Route("billing", "x", crm::v1::TICKET_PRIORITY_HIGH), nullptr);
}

TEST(SettingsTest, TextConfigurationIsReadWithItsPolicies) {
  const auto settings = Parsed();
  EXPECT_TRUE(settings.reject_unknown_customers());
  EXPECT_EQ(settings.sla().policies.at(crm::v1::TICKET_PRIORITY_URGENT).first_response_minutes(),
            15);
  // Omitted: the default window; omitted strategy: round robin.
  EXPECT_EQ(settings.sla().reopen_window, absl::Hours(168));
  EXPECT_EQ(settings.FindTeam("billing")->strategy(), crm::v1::ASSIGNMENT_STRATEGY_ROUND_ROBIN);
  EXPECT_EQ(settings.TeamOfAgent("bob")->team_id(), "hardware");
  EXPECT_EQ(settings.TeamOfAgent("nobody"), nullptr);
}

TEST(SettingsTest, AnAgentInSeveralTeamsIsTakenInThePreferredOne) {
  auto config = *DeskSettings::ParseText(kConfig);
  config.mutable_teams(2)->add_agent_ids("bob");  // frontline, after hardware
  auto settings = DeskSettings::Create(config);
  ASSERT_TRUE(settings.ok()) << settings.status();
  EXPECT_EQ(settings->TeamOfAgent("bob", "frontline")->team_id(), "frontline");
  EXPECT_EQ(settings->TeamOfAgent("bob", "billing")->team_id(), "hardware") << "not a member";
  EXPECT_EQ(settings->TeamOfAgent("bob", "")->team_id(), "hardware");
  EXPECT_EQ(settings->TeamOfAgent("bob", "nowhere")->team_id(), "hardware");
}

TEST(SettingsTest, WarrantyRunsCalendarMonthsFromThePurchase) {
  auto config = DeskSettings::Defaults();
  auto* w = config.add_warranties();
  w->set_product_id("Printer-X");
  w->set_months(24);
  auto settings = *DeskSettings::Create(config);
  const absl::Time bought =
      absl::FromCivil(absl::CivilSecond(2024, 2, 29, 10, 0, 0), absl::UTCTimeZone());
  // 29 February has none two years on: the month's last day.
  EXPECT_EQ(settings.WarrantyEnd("printer-x", bought),
            absl::FromCivil(absl::CivilSecond(2026, 2, 28, 10, 0, 0), absl::UTCTimeZone()));
  EXPECT_EQ(settings.WarrantyEnd("scanner", bought), std::nullopt) << "no default";
  config.set_default_warranty_months(6);
  settings = *DeskSettings::Create(config);
  EXPECT_EQ(settings.WarrantyEnd("scanner", bought),
            absl::FromCivil(absl::CivilSecond(2024, 8, 29, 10, 0, 0), absl::UTCTimeZone()));
}

// A purchase at a month's end is not covered past the end of the month its
// warranty ends in: no earlier purchase outlasts a later one.
TEST(SettingsTest, AWarrantyFromAMonthsEndEndsInItsLastMonth) {
  auto config = DeskSettings::Defaults();
  config.set_default_warranty_months(1);
  auto settings = *DeskSettings::Create(config);
  auto at = [](int y, int m, int d) {
    return absl::FromCivil(absl::CivilSecond(y, m, d, 9, 0, 0), absl::UTCTimeZone());
  };
  EXPECT_EQ(settings.WarrantyEnd("any", at(2025, 1, 31)), at(2025, 2, 28));
  EXPECT_EQ(settings.WarrantyEnd("any", at(2024, 1, 31)), at(2024, 2, 29));
  EXPECT_EQ(settings.WarrantyEnd("any", at(2025, 2, 1)), at(2025, 3, 1));
  EXPECT_EQ(settings.WarrantyEnd("any", at(2025, 3, 31)), at(2025, 4, 30));
  EXPECT_EQ(settings.WarrantyEnd("any", at(2025, 12, 31)), at(2026, 1, 31));
  config.set_default_warranty_months(6);
  settings = *DeskSettings::Create(config);
  EXPECT_LE(settings.WarrantyEnd("any", at(2025, 8, 31)),
            settings.WarrantyEnd("any", at(2025, 9, 1)));
  EXPECT_EQ(settings.WarrantyEnd("any", at(2025, 8, 31)), at(2026, 2, 28));
}

TEST(SettingsTest, ExampleConfigurationIsValid) {
  std::ifstream in(CRM_DESK_EXAMPLE_CONFIG);
  ASSERT_TRUE(in.good()) << CRM_DESK_EXAMPLE_CONFIG;
  std::stringstream text;
  text << in.rdbuf();
  auto config = DeskSettings::ParseText(text.str());
  ASSERT_TRUE(config.ok()) << config.status();
  auto settings = DeskSettings::Create(*config);
  ASSERT_TRUE(settings.ok()) << settings.status();
  EXPECT_EQ(settings->Route("billing", "", crm::v1::TICKET_PRIORITY_LOW)->team_id(), "billing");
  EXPECT_EQ(settings->sla().policies.size(), 4u);
}

TEST(SettingsTest, SectionsLeftOutOfTheTextAreTheDefaults) {
  auto config = DeskSettings::ParseText(R"pb(teams { team_id: "a" agent_ids: "x" })pb");
  ASSERT_TRUE(config.ok()) << config.status();
  auto settings = DeskSettings::Create(*config);
  ASSERT_TRUE(settings.ok()) << settings.status();
  EXPECT_EQ(settings->sla().policies.size(), 4u);
  const absl::Time monday_noon =
      absl::FromCivil(absl::CivilHour(2024, 1, 1, 12), absl::UTCTimeZone());
  EXPECT_TRUE(settings->sla().calendar.IsOpen(monday_noon));
  EXPECT_FALSE(settings->sla().calendar.IsOpen(monday_noon + absl::Hours(6)));
}

TEST(SettingsTest, MalformedTextSaysWhere) {
  auto config = DeskSettings::ParseText("teams { team_id: 7");
  ASSERT_FALSE(config.ok());
  EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(config.status().message().find("line 1"), std::string::npos) << config.status();
}

TEST(SettingsTest, FirstMatchingRuleRoutesElseTheDefaultTeam) {
  const auto settings = Parsed();
  auto team = [&](const char* category, const char* product, crm::v1::TicketPriority p) {
    const auto* t = settings.Route(category, product, p);
    return t == nullptr ? std::string("-") : t->team_id();
  };
  EXPECT_EQ(team("billing", "printer-x", crm::v1::TICKET_PRIORITY_URGENT), "billing");
  EXPECT_EQ(team("BILLING", "", crm::v1::TICKET_PRIORITY_LOW), "billing");  // ignores case
  EXPECT_EQ(team("hardware", "Printer-X", crm::v1::TICKET_PRIORITY_URGENT), "hardware");
  EXPECT_EQ(team("hardware", "printer-x", crm::v1::TICKET_PRIORITY_HIGH), "frontline");
  EXPECT_EQ(team("", "", crm::v1::TICKET_PRIORITY_NORMAL), "frontline");

  // A rule's fields are trimmed, as tickets' are.
  auto config = *DeskSettings::ParseText(kConfig);
  config.mutable_routing_rules(0)->set_category(" Billing\t");
  auto trimmed = DeskSettings::Create(config);
  ASSERT_TRUE(trimmed.ok()) << trimmed.status();
  const auto* routed = trimmed->Route("billing", "", crm::v1::TICKET_PRIORITY_LOW);
  ASSERT_NE(routed, nullptr);
  EXPECT_EQ(routed->team_id(), "billing");
}

TEST(SettingsTest, BadConfigurationNamesTheField) {
  ExpectInvalid([](auto& c) { c.mutable_calendar()->clear_hours(); }, "calendar.hours");
  ExpectInvalid(
      [](auto& c) {
        c.mutable_sla_policies(0)->set_priority(crm::v1::TICKET_PRIORITY_UNSPECIFIED);
      },
      "sla_policies[0].priority");
  ExpectInvalid([](auto& c) { *c.add_sla_policies() = c.sla_policies(0); },
                "sla_policies[1].priority");
  ExpectInvalid([](auto& c) { c.mutable_sla_policies(0)->set_resolution_minutes(-1); },
                "sla_policies[0].resolution_minutes");
  ExpectInvalid([](auto& c) { c.mutable_teams(1)->set_team_id("hardware"); }, "teams[1].team_id");
  ExpectInvalid([](auto& c) { c.mutable_teams(2)->clear_team_id(); }, "teams[2].team_id");
  ExpectInvalid([](auto& c) { c.mutable_teams(0)->add_agent_ids("ann"); }, "teams[0].agent_ids");
  // Ids that no request could name (ListTickets, AssignTicket refuse them):
  // a team whose queue nobody could list, an agent nobody could assign.
  ExpectInvalid([](auto& c) { c.mutable_teams(1)->set_team_id("Tier 1"); }, "teams[1].team_id");
  ExpectInvalid([](auto& c) { c.mutable_teams(1)->add_agent_ids("Ann Smith"); },
                "teams[1].agent_ids");
  ExpectInvalid([](auto& c) { c.mutable_teams(1)->set_lead_id("lead:bea\n"); }, "teams[1].lead_id");
  ExpectInvalid([](auto& c) { c.mutable_routing_rules(1)->set_team_id("ghosts"); },
                "routing_rules[1].team_id");
  ExpectInvalid([](auto& c) { c.set_default_team_id("ghosts"); }, "default_team_id");
  ExpectInvalid([](auto& c) { c.set_reopen_window_hours(-2); }, "reopen_window_hours");
  // A due date the calendar cannot place would be a timestamp past year
  // 9999; the limit is 52 of its working weeks (here 10 hours each).
  ExpectInvalid([](auto& c) { c.mutable_sla_policies(0)->set_resolution_minutes(2'000'000); },
                "sla_policies[0].resolution_minutes");
  ExpectInvalid([](auto& c) { c.mutable_sla_policies(0)->set_first_response_minutes(31'201); },
                "sla_policies[0].first_response_minutes");
  ExpectInvalid([](auto& c) { c.set_reopen_window_hours(8785); }, "reopen_window_hours");
  {
    auto c = *DeskSettings::ParseText(kConfig);
    c.mutable_sla_policies(0)->set_resolution_minutes(31'200);
    c.set_reopen_window_hours(8784);
    EXPECT_TRUE(DeskSettings::Create(c).ok());
  }
  ExpectInvalid([](auto& c) { c.add_warranties()->set_months(3); }, "warranties[0].product_id");
  ExpectInvalid(
      [](auto& c) {
        auto* w = c.add_warranties();
        w->set_product_id("x");
        w->set_months(-1);
      },
      "warranties[0].months");
  ExpectInvalid(
      [](auto& c) {
        c.add_warranties()->set_product_id("X");
        c.add_warranties()->set_product_id("x");
      },
      "warranties[1].product_id");
  ExpectInvalid([](auto& c) { c.set_default_warranty_months(-1); }, "default_warranty_months");
}

crm::v1::Team Team(crm::v1::AssignmentStrategy strategy) {
  crm::v1::Team t;
  t.set_team_id("t");
  for (const char* a : {"ann", "bob", "cid"}) t.add_agent_ids(a);
  t.set_strategy(strategy);
  return t;
}

TEST(PickAgentTest, RoundRobinTakesTheNextAgentInTurn) {
  const auto team = Team(crm::v1::ASSIGNMENT_STRATEGY_ROUND_ROBIN);
  EXPECT_EQ(PickAgent(team, "", {}), "ann");
  EXPECT_EQ(PickAgent(team, "ann", {}), "bob");
  EXPECT_EQ(PickAgent(team, "cid", {}), "ann");
  EXPECT_EQ(PickAgent(team, "someone-removed", {}), "ann");
  EXPECT_EQ(PickAgent(team, "ann", {{"bob", 50}}), "bob") << "load is not looked at";
}

TEST(PickAgentTest, LeastLoadedTakesTheFewestActiveTicketsTiesInTurn) {
  const auto team = Team(crm::v1::ASSIGNMENT_STRATEGY_LEAST_LOADED);
  EXPECT_EQ(PickAgent(team, "", {{"ann", 3}, {"bob", 1}, {"cid", 2}}), "bob");
  EXPECT_EQ(PickAgent(team, "ann", {{"ann", 1}, {"bob", 1}, {"cid", 1}}), "bob");
  EXPECT_EQ(PickAgent(team, "bob", {{"ann", 1}, {"bob", 1}, {"cid", 1}}), "cid");
  EXPECT_EQ(PickAgent(team, "bob", {{"ann", 0}, {"bob", 1}, {"cid", 4}}), "ann");
  EXPECT_EQ(PickAgent(team, "cid", {{"ann", 2}, {"cid", 1}}), "bob") << "missing load is zero";
}

TEST(PickAgentTest, ReassigningSkipsTheCurrentAssigneeButKeepsTheTurn) {
  const auto round_robin = Team(crm::v1::ASSIGNMENT_STRATEGY_ROUND_ROBIN);
  // bob was picked last and holds the ticket: cid's turn, not ann's.
  EXPECT_EQ(PickAgent(round_robin, "bob", {}, "bob"), "cid");
  EXPECT_EQ(PickAgent(round_robin, "ann", {}, "bob"), "cid");
  EXPECT_EQ(PickAgent(round_robin, "cid", {}, "cid"), "ann");

  const auto least_loaded = Team(crm::v1::ASSIGNMENT_STRATEGY_LEAST_LOADED);
  const AgentLoad tied{{"ann", 1}, {"bob", 1}, {"cid", 1}};
  EXPECT_EQ(PickAgent(least_loaded, "bob", tied, "bob"), "cid");
  EXPECT_EQ(PickAgent(least_loaded, "bob", {{"ann", 1}, {"bob", 0}, {"cid", 2}}, "bob"), "ann")
      << "the current assignee is not picked even when least loaded";

  crm::v1::Team alone;
  alone.add_agent_ids("ann");
  EXPECT_EQ(PickAgent(alone, "ann", {}, "ann"), "ann") << "nobody else to take it";
}

TEST(PickAgentTest, TeamWithoutAgentsPicksNobody) {
  crm::v1::Team empty;
  EXPECT_EQ(PickAgent(empty, "", {}), "");
}

}  // namespace
}  // namespace crm::service_desk
