#include "services/analytics/domain/customer_view.h"

#include <algorithm>
#include <limits>
#include <random>
#include <vector>

#include "absl/strings/str_cat.h"
#include "crm/v1/leads.pb.h"
#include "crm/v1/sales.pb.h"
#include "crm/v1/service_desk.pb.h"
#include "gtest/gtest.h"
#include "services/analytics/testing/events.h"

namespace crm::analytics {
namespace {

crm::v1::EventEnvelope Captured(const std::string& lead_id, int64_t seconds,
                                const std::string& email, const std::string& company) {
  crm::v1::LeadCaptured lead;
  lead.set_lead_id(lead_id);
  lead.set_customer_id("cus_1");
  lead.set_channel(crm::v1::LEAD_CHANNEL_TRADE_SHOW);
  lead.mutable_contact()->set_email(email);
  lead.mutable_contact()->set_first_name("Ada");
  lead.set_company(company);
  crm::v1::EventEnvelope e;
  e.set_event_id(absl::StrCat("evt-", lead_id));
  e.set_stream(absl::StrCat("lead-", lead_id));
  e.set_stream_version(1);
  e.set_customer_id("cus_1");
  e.set_type("LeadCaptured");
  e.mutable_occurred_at()->set_seconds(seconds);
  e.mutable_payload()->PackFrom(lead);
  return e;
}

TEST(CustomerViewTest, LeadCaptureMakesALeadWithProfileAndTimelineEntry) {
  crm::v1::Customer360 view;
  auto entry = ApplyToView(view, Captured("lead_a", 100, "ada@x.com", "Engines"));
  EXPECT_EQ(view.customer_id(), "cus_1");
  EXPECT_EQ(view.lifecycle_stage(), crm::v1::LIFECYCLE_STAGE_LEAD);
  EXPECT_EQ(view.profile().email(), "ada@x.com");
  EXPECT_EQ(view.profile().company(), "Engines");
  EXPECT_EQ(view.event_count(), 1);
  ASSERT_EQ(view.lead_ids_size(), 1);
  EXPECT_EQ(entry.type(), "LeadCaptured");
  EXPECT_EQ(entry.summary(), "Lead captured via trade show");
  EXPECT_EQ(entry.occurred_at().seconds(), 100);
}

TEST(CustomerViewTest, ViewIsTheSameWhateverTheDeliveryOrder) {
  std::vector<crm::v1::EventEnvelope> events = {
      Captured("lead_a", 100, "ada@x.com", "Old Co"),
      Captured("lead_b", 300, "ada@new.com", "New Co"),
      Captured("lead_c", 200, "ada@mid.com", "Mid Co"),
  };
  std::sort(events.begin(), events.end(),
            [](const auto& a, const auto& b) { return a.event_id() < b.event_id(); });
  std::string first;
  do {
    crm::v1::Customer360 view;
    for (const auto& e : events) ApplyToView(view, e);
    EXPECT_EQ(view.profile().company(), "New Co");
    EXPECT_EQ(view.first_seen().seconds(), 100);
    EXPECT_EQ(view.last_seen().seconds(), 300);
    const std::string bytes = view.SerializeAsString();
    if (first.empty()) first = bytes;
    EXPECT_EQ(bytes, first);
  } while (std::next_permutation(events.begin(), events.end(), [](const auto& a, const auto& b) {
    return a.event_id() < b.event_id();
  }));
}

// The fold itself takes any event; the projection parks those it cannot
// read before they get here (ViewStoreTest.EventsItCannotReadAreParkedNotCounted).
TEST(CustomerViewTest, UnknownEventTypesStillCountAndShowOnTheTimeline) {
  crm::v1::EventEnvelope e;
  e.set_event_id("evt-x");
  e.set_customer_id("cus_1");
  e.set_type("SomethingNew");
  e.mutable_occurred_at()->set_seconds(5);
  crm::v1::Customer360 view;
  auto entry = ApplyToView(view, e);
  EXPECT_EQ(view.event_count(), 1);
  EXPECT_EQ(entry.summary(), "SomethingNew");
  EXPECT_EQ(view.lifecycle_stage(), crm::v1::LIFECYCLE_STAGE_UNSPECIFIED);
}

template <typename T>
crm::v1::EventEnvelope Event(const std::string& event_id, const std::string& stream,
                             int64_t seconds, const T& payload) {
  crm::v1::EventEnvelope e;
  e.set_event_id(event_id);
  e.set_stream(stream);
  e.set_customer_id("cus_1");
  e.set_type(std::string(T::descriptor()->name()));
  e.mutable_occurred_at()->set_seconds(seconds);
  e.mutable_payload()->PackFrom(payload);
  return e;
}

crm::v1::Money Eur(int64_t minor) {
  crm::v1::Money m;
  m.set_currency("EUR");
  m.set_minor_units(minor);
  return m;
}

// One customer's life across the three command services.
std::vector<crm::v1::EventEnvelope> CustomerLife() {
  std::vector<crm::v1::EventEnvelope> events;
  events.push_back(Captured("lead_a", 100, "ada@x.com", "Engines"));
  crm::v1::LeadAssigned assigned;
  assigned.set_lead_id("lead_a");
  assigned.set_owner_id("rep_lead");
  events.push_back(Event("e02", "lead-lead_a", 110, assigned));
  crm::v1::LeadScoreChanged score;
  score.set_lead_id("lead_a");
  score.mutable_score()->set_total(72);
  events.push_back(Event("e03", "lead-lead_a", 120, score));
  crm::v1::LeadQualified qualified;
  qualified.set_lead_id("lead_a");
  events.push_back(Event("e04", "lead-lead_a", 130, qualified));
  crm::v1::CustomerOpened opened;
  opened.set_customer_id("cus_1");
  opened.set_name("Engines Ltd");
  opened.set_owner_id("rep_sales");
  opened.set_territory("emea");
  opened.set_tier("silver");
  // The account's contact fills what no lead gave (a phone, a last name).
  auto* contact = opened.add_contacts();
  contact->set_first_name("Augusta");
  contact->set_last_name("King");
  contact->set_email("accounts@engines.test");
  contact->set_phone("+447700900123");
  events.push_back(Event("e05", "customer-cus_1", 140, opened));
  crm::v1::OpportunityOpened opp;
  opp.set_opportunity_id("opp_1");
  opp.set_name("Pilot");
  opp.set_stage_id("qualify");
  *opp.mutable_amount() = Eur(10000);
  events.push_back(Event("e06", "opportunity-opp_1", 150, opp));
  crm::v1::OpportunityStageChanged won;
  won.set_opportunity_id("opp_1");
  won.set_from_stage_id("qualify");
  won.set_to_stage_id("won");
  won.set_outcome(crm::v1::STAGE_OUTCOME_WON);
  *won.mutable_amount() = Eur(12000);
  events.push_back(Event("e07", "opportunity-opp_1", 160, won));
  opp.set_opportunity_id("opp_2");
  opp.set_name("Expansion");
  events.push_back(Event("e08", "opportunity-opp_2", 165, opp));
  crm::v1::OrderPlaced order;
  order.set_order_id("ord_1");
  order.set_opportunity_id("opp_1");
  *order.mutable_totals()->mutable_total() = Eur(12000);
  events.push_back(Event("e09", "order-ord_1", 170, order));
  order.set_order_id("ord_2");
  *order.mutable_totals()->mutable_total() = Eur(3000);
  events.push_back(Event("e10", "order-ord_2", 175, order));
  crm::v1::CustomerTierChanged tier;
  tier.set_from_tier("silver");
  tier.set_to_tier("gold");
  events.push_back(Event("e11", "customer-cus_1", 180, tier));
  crm::v1::TicketOpened ticket;
  ticket.set_ticket_id("t_1");
  ticket.set_subject("Broken sprocket");
  events.push_back(Event("e12", "ticket-t_1", 200, ticket));
  ticket.set_ticket_id("t_2");
  ticket.set_subject("Invoice question");
  events.push_back(Event("e13", "ticket-t_2", 210, ticket));
  crm::v1::TicketSlaBreached breached;
  breached.set_ticket_id("t_1");
  breached.set_target(crm::v1::SLA_TARGET_FIRST_RESPONSE);
  events.push_back(Event("e14", "ticket-t_1", 220, breached));
  crm::v1::TicketResolved resolved;
  resolved.set_ticket_id("t_1");
  events.push_back(Event("e15", "ticket-t_1", 230, resolved));
  crm::v1::CsatSubmitted csat;
  csat.set_ticket_id("t_1");
  csat.set_score(2);
  events.push_back(Event("e16", "ticket-t_1", 240, csat));
  csat.set_ticket_id("t_2");
  csat.set_score(5);
  events.push_back(Event("e17", "ticket-t_2", 250, csat));
  return events;
}

TEST(CustomerViewTest, FreeTextGoesToTheEntryDetailNeverIntoTheSummary) {
  crm::v1::Customer360 view;
  crm::v1::ActivityLogged call;
  call.set_activity_id("act_1");
  call.set_kind(crm::v1::ACTIVITY_KIND_CALL);
  call.set_subject("pii1.k1.c2VhbGVk");
  auto entry = ApplyToView(view, Event("e1", "activity-act_1", 100, call));
  EXPECT_EQ(entry.summary(), "Activity logged: call");
  EXPECT_EQ(entry.detail(), "pii1.k1.c2VhbGVk") << "copied sealed, opened at the edge";
  crm::v1::TicketOpened ticket;
  ticket.set_ticket_id("t_1");
  ticket.set_subject("pii1.k1.dGlja2V0");
  ticket.set_product("portal");
  entry = ApplyToView(view, Event("e2", "ticket-t_1", 110, ticket));
  EXPECT_EQ(entry.summary(), "Ticket opened (portal)");
  EXPECT_EQ(entry.detail(), "pii1.k1.dGlja2V0");
  ASSERT_EQ(view.tickets_size(), 1);
  EXPECT_EQ(view.tickets(0).subject(), "pii1.k1.dGlja2V0");
  crm::v1::LeadQualified qualified;
  qualified.set_lead_id("lead_a");
  entry = ApplyToView(view, Event("e3", "lead-lead_a", 120, qualified));
  EXPECT_EQ(entry.summary(), "Lead qualified");
  EXPECT_EQ(entry.detail(), "") << "no note, no detail";
}

// Order totals come from the topics: whatever a producer sent, the
// lifetime value holds at the largest amount instead of wrapping negative.
TEST(CustomerViewTest, LifetimeValueHoldsAtTheLargestAmount) {
  crm::v1::Customer360 view;
  crm::v1::OrderPlaced order;
  order.set_order_id("ord_1");
  *order.mutable_totals()->mutable_total() = Eur(std::numeric_limits<int64_t>::max() - 10);
  ApplyToView(view, Event("e1", "order-ord_1", 100, order));
  order.set_order_id("ord_2");
  *order.mutable_totals()->mutable_total() = Eur(3000);
  ApplyToView(view, Event("e2", "order-ord_2", 110, order));
  ASSERT_EQ(view.lifetime_value_size(), 1);
  EXPECT_EQ(view.lifetime_value(0).minor_units(), std::numeric_limits<int64_t>::max());
}

TEST(CustomerViewTest, TheSmallestAmountReadsAsANumber) {
  crm::v1::OrderPlaced order;
  order.set_order_id("ord_1");
  *order.mutable_totals()->mutable_total() = Eur(std::numeric_limits<int64_t>::min());
  EXPECT_EQ(Summarize(Event("e1", "order-ord_1", 100, order)),
            "Order ord_1 placed, -92233720368547758.08 EUR");
  *order.mutable_totals()->mutable_total() = Eur(-5);
  EXPECT_EQ(Summarize(Event("e2", "order-ord_1", 100, order)), "Order ord_1 placed, -0.05 EUR");
}

// A manager moves the lead from its rep back into a queue: the rep no
// longer owns the customer (nor reads its 360 by ownership). A new lead of
// the person going into a queue takes the customer from nobody.
TEST(CustomerViewTest, ALeadMovedToAQueueTakesTheCustomerFromItsRep) {
  using testing::LeadAssignment;
  const std::vector<crm::v1::EventEnvelope> events = {
      Captured("lead_a", 100, "ada@x.com", "Engines"),
      Event("e02", "lead-lead_a", 110, LeadAssignment("lead_a", "rep_lead")),
      Event("e03", "lead-lead_b", 120, LeadAssignment("lead_b", "", "inbound")),
  };
  crm::v1::Customer360 view;
  for (const auto& e : events) ApplyToView(view, e);
  EXPECT_EQ(view.owner_id(), "rep_lead");

  const auto queued =
      Event("e04", "lead-lead_a", 130, LeadAssignment("lead_a", "", "inbound", "rep_lead"));
  ApplyToView(view, queued);
  EXPECT_EQ(view.owner_id(), "");
  crm::v1::Customer360 reversed;
  ApplyToView(reversed, queued);
  for (auto it = events.rbegin(); it != events.rend(); ++it) ApplyToView(reversed, *it);
  EXPECT_EQ(reversed.owner_id(), "");
}

// A known person's new lead goes by the rules to another rep: the account
// stays its owner's (access to the 360 follows the owner), in any order.
TEST(CustomerViewTest, AccountOwnerOutranksALaterLeadAssignment) {
  auto events = CustomerLife();
  crm::v1::LeadAssigned again;
  again.set_lead_id("lead_b");
  again.set_owner_id("rep_other");
  events.push_back(Event("e18", "lead-lead_b", 300, again));
  crm::v1::LeadConverted converted;
  converted.set_lead_id("lead_b");
  converted.set_owner_id("rep_other");
  events.push_back(Event("e19", "lead-lead_b", 310, converted));
  crm::v1::Customer360 in_order, reversed;
  for (const auto& e : events) ApplyToView(in_order, e);
  for (auto it = events.rbegin(); it != events.rend(); ++it) ApplyToView(reversed, *it);
  EXPECT_EQ(in_order.owner_id(), "rep_sales");
  EXPECT_EQ(reversed.owner_id(), "rep_sales");

  // Before an account, the latest lead owner; a merged customer's account
  // outranks the survivor's lead owner too.
  crm::v1::Customer360 lead_only;
  ApplyToView(lead_only, events[1]);
  ApplyToView(lead_only, events[events.size() - 2]);
  EXPECT_EQ(lead_only.owner_id(), "rep_other");
  crm::v1::Customer360 joined = lead_only;
  JoinView(joined, in_order);
  EXPECT_EQ(joined.owner_id(), "rep_sales");
  joined = in_order;
  JoinView(joined, lead_only);
  EXPECT_EQ(joined.owner_id(), "rep_sales");

  // A later account opened without an owner (by an admin or a service),
  // whose lead was assigned after: the earlier account's owner still rules,
  // in whichever order the group is joined. The name is the later one's.
  crm::v1::Customer360 ownerless;
  crm::v1::CustomerOpened opened;
  opened.set_customer_id("cus_2");
  opened.set_name("Engines Two");
  ApplyToView(ownerless, Event("f1", "customer-cus_2", 400, opened));
  crm::v1::LeadAssigned assigned;
  assigned.set_lead_id("lead_c");
  assigned.set_owner_id("rep_late");
  ApplyToView(ownerless, Event("f2", "lead-lead_c", 410, assigned));
  EXPECT_EQ(ownerless.owner_id(), "rep_late");
  for (bool ownerless_first : {false, true}) {
    joined = ownerless_first ? ownerless : in_order;
    JoinView(joined, ownerless_first ? in_order : ownerless);
    EXPECT_EQ(joined.owner_id(), "rep_sales") << ownerless_first;
    EXPECT_EQ(joined.account_owner_id(), "rep_sales") << ownerless_first;
    EXPECT_EQ(joined.profile().account_name(), "Engines Two") << ownerless_first;
  }
  // Three accounts, joined either way round: the latest one naming an owner.
  crm::v1::Customer360 earliest;
  opened.set_customer_id("cus_0");
  opened.set_name("Engines Zero");
  opened.set_owner_id("rep_first");
  ApplyToView(earliest, Event("f0", "customer-cus_0", 1, opened));
  crm::v1::Customer360 a = earliest, b = ownerless;
  JoinView(a, ownerless);
  JoinView(a, in_order);
  JoinView(b, in_order);
  JoinView(b, earliest);
  EXPECT_EQ(a.owner_id(), "rep_sales");
  EXPECT_EQ(b.owner_id(), "rep_sales");
  EXPECT_EQ(a.account_owner_as_of().event_id(), b.account_owner_as_of().event_id());
}

// An account sales named after its id (a converted lead with no company and
// no readable name) shows no account name.
TEST(CustomerViewTest, AnAccountNamedAfterItsIdShowsNoName) {
  crm::v1::Customer360 view;
  crm::v1::CustomerOpened opened;
  opened.set_customer_id("cus_1");
  opened.set_name("cus_1");
  opened.set_territory("emea");
  ApplyToView(view, Event("a1", "customer-cus_1", 100, opened));
  EXPECT_EQ(view.profile().account_name(), "");
  EXPECT_EQ(view.profile().territory(), "emea");
}

TEST(CustomerViewTest, EventsOfEveryServiceBuildTheWholeView) {
  crm::v1::Customer360 view;
  for (const auto& e : CustomerLife()) ApplyToView(view, e);
  EXPECT_EQ(view.lifecycle_stage(), crm::v1::LIFECYCLE_STAGE_CUSTOMER);
  EXPECT_EQ(view.profile().email(), "ada@x.com");
  EXPECT_EQ(view.profile().first_name(), "Ada") << "the lead's, not the account contact's";
  EXPECT_EQ(view.profile().last_name(), "King") << "no lead gave one";
  EXPECT_EQ(view.profile().phone(), "+447700900123");
  EXPECT_EQ(view.profile().account_name(), "Engines Ltd");
  EXPECT_EQ(view.profile().territory(), "emea");
  EXPECT_EQ(view.owner_id(), "rep_sales");  // the account owner came later than the lead owner
  EXPECT_EQ(view.tier(), "gold");
  EXPECT_EQ(view.lead_score(), 72);
  ASSERT_EQ(view.opportunities_size(), 2);
  EXPECT_EQ(view.opportunities(0).opportunity_id(), "opp_1");
  EXPECT_EQ(view.opportunities(0).stage_id(), "won");
  EXPECT_EQ(view.opportunities(0).amount().minor_units(), 12000);
  EXPECT_EQ(view.opportunities(0).outcome(), crm::v1::STAGE_OUTCOME_WON);
  EXPECT_EQ(view.opportunities(1).name(), "Expansion");
  EXPECT_EQ(view.open_opportunity_count(), 1);
  ASSERT_EQ(view.orders_size(), 2);
  ASSERT_EQ(view.lifetime_value_size(), 1);
  EXPECT_EQ(view.lifetime_value(0).currency(), "EUR");
  EXPECT_EQ(view.lifetime_value(0).minor_units(), 15000);
  ASSERT_EQ(view.tickets_size(), 2);
  EXPECT_TRUE(view.tickets(0).sla_breached());
  EXPECT_EQ(view.tickets(0).status(), crm::v1::TICKET_STATUS_RESOLVED);
  EXPECT_EQ(view.tickets(1).status(), crm::v1::TICKET_STATUS_NEW);
  EXPECT_EQ(view.open_ticket_count(), 1);
  EXPECT_EQ(view.breached_ticket_count(), 1);
  EXPECT_EQ(view.csat_count(), 2);
  EXPECT_DOUBLE_EQ(view.csat_average(), 3.5);
  EXPECT_EQ(view.event_count(), 17);
}

TEST(CustomerViewTest, CrossServiceViewIsByteIdenticalWhateverTheDeliveryOrder) {
  auto events = CustomerLife();
  crm::v1::Customer360 expected;
  for (const auto& e : events) ApplyToView(expected, e);
  const std::string expected_bytes = expected.SerializeAsString();
  std::mt19937 rng(42);
  for (int round = 0; round < 300; ++round) {
    if (round == 0) {
      std::reverse(events.begin(), events.end());
    } else {
      std::shuffle(events.begin(), events.end(), rng);
    }
    crm::v1::Customer360 view;
    for (const auto& e : events) ApplyToView(view, e);
    ASSERT_EQ(view.SerializeAsString(), expected_bytes) << "round " << round;
  }
}

TEST(CustomerViewTest, RevisionsRenameAndRepriceAnOpportunityInAnyOrder) {
  auto events = CustomerLife();
  crm::v1::OpportunityRevised revised;
  revised.set_opportunity_id("opp_2");
  revised.set_name("Expansion, phase 2");
  *revised.mutable_amount() = Eur(25000);
  revised.set_expected_close_date("2026-03-31");
  events.push_back(Event("e18", "opportunity-opp_2", 260, revised));
  crm::v1::OpportunityRevised dated_only;
  dated_only.set_opportunity_id("opp_2");
  dated_only.set_expected_close_date("2026-04-30");
  events.push_back(Event("e19", "opportunity-opp_2", 270, dated_only));
  std::string first;
  for (bool reversed : {false, true}) {
    if (reversed) std::reverse(events.begin(), events.end());
    crm::v1::Customer360 view;
    std::string summary;
    for (const auto& e : events) {
      auto entry = ApplyToView(view, e);
      if (e.event_id() == "e18") summary = entry.summary();
    }
    ASSERT_EQ(view.opportunities_size(), 2);
    EXPECT_EQ(view.opportunities(1).name(), "Expansion, phase 2");
    EXPECT_EQ(view.opportunities(1).amount().minor_units(), 25000);
    EXPECT_EQ(summary,
              "Opportunity opp_2 revised: \"Expansion, phase 2\", 250.00 EUR, closing 2026-03-31");
    if (first.empty()) first = view.SerializeAsString();
    EXPECT_EQ(view.SerializeAsString(), first);
  }
}

// Customers merged into one read as if one customer had all the events.
TEST(CustomerViewTest, JoiningTheViewsOfAnySplitEqualsTheViewOfAllEvents) {
  auto events = CustomerLife();
  events.push_back(Captured("lead_b", 260, "ada@new.com", "New Co"));
  // Captures that set some fields only: each field comes from the latest
  // event that set it.
  crm::v1::LeadCaptured phone_only;
  phone_only.set_lead_id("lead_p");
  phone_only.mutable_contact()->set_phone("+441234567890");
  events.push_back(Event("e20", "lead-lead_p", 230, phone_only));
  crm::v1::LeadCaptured email_only;
  email_only.set_lead_id("lead_q");
  email_only.mutable_contact()->set_email("ada@newest.com");
  events.push_back(Event("e21", "lead-lead_q", 280, email_only));
  crm::v1::Customer360 expected;
  for (const auto& e : events) ApplyToView(expected, e);
  std::mt19937 rng(7);
  for (int round = 0; round < 200; ++round) {
    crm::v1::Customer360 a, b;
    for (const auto& e : events) ApplyToView(rng() % 2 == 0 ? a : b, e);
    crm::v1::Customer360 joined;
    joined.set_customer_id("cus_1");
    JoinView(joined, a);
    JoinView(joined, b);
    ASSERT_EQ(joined.SerializeAsString(), expected.SerializeAsString())
        << "round " << round << "\n"
        << joined.DebugString() << "\nexpected\n"
        << expected.DebugString();
  }
  EXPECT_EQ(expected.profile().email(), "ada@newest.com");
  EXPECT_EQ(expected.profile().phone(), "+441234567890") << "no later capture set a phone";
  EXPECT_EQ(expected.profile().company(), "New Co");
  EXPECT_EQ(expected.lead_ids_size(), 4);
  // The fold itself is the same in any delivery order.
  for (int round = 0; round < 50; ++round) {
    std::shuffle(events.begin(), events.end(), rng);
    crm::v1::Customer360 view;
    for (const auto& e : events) ApplyToView(view, e);
    ASSERT_EQ(view.SerializeAsString(), expected.SerializeAsString()) << "round " << round;
  }
}

// Views stored before names and profile fields were stamped keep them
// when joined.
TEST(CustomerViewTest, AJoinKeepsWhatAViewStoredBeforeStampsHolds) {
  crm::v1::Customer360 old;
  old.set_customer_id("cus_old");
  old.mutable_profile()->set_email("ada@x.com");
  auto* opp = old.add_opportunities();
  opp->set_opportunity_id("opp_1");
  opp->set_name("Pilot");
  crm::v1::Customer360 joined;
  joined.set_customer_id("cus_1");
  JoinView(joined, old);
  EXPECT_EQ(joined.profile().email(), "ada@x.com");
  ASSERT_EQ(joined.opportunities_size(), 1);
  EXPECT_EQ(joined.opportunities(0).name(), "Pilot");
}

TEST(CustomerViewTest, RecordsKeyedByIdAreNotCountedTwice) {
  crm::v1::Customer360 view;
  for (const auto& e : CustomerLife()) ApplyToView(view, e);
  // A re-published order or survey answer must not inflate value or CSAT.
  for (const auto& e : CustomerLife()) {
    if (e.type() == "OrderPlaced" || e.type() == "CsatSubmitted") ApplyToView(view, e);
  }
  EXPECT_EQ(view.orders_size(), 2);
  EXPECT_EQ(view.lifetime_value(0).minor_units(), 15000);
  EXPECT_EQ(view.csat_count(), 2);
}

// Two customers merged, each with an account: the profile fields no lead
// gave come from the later account, whichever member is read first.
TEST(CustomerViewTest, TheLaterAccountsContactFillsAMergedProfileInAnyJoinOrder) {
  auto account = [](const std::string& customer, const std::string& email, int64_t at) {
    crm::v1::CustomerOpened opened;
    opened.set_customer_id(customer);
    opened.set_name("Engines");
    opened.add_contacts()->set_email(email);
    crm::v1::Customer360 view;
    ApplyToView(view, Event("acc-" + customer, "customer-" + customer, at, opened));
    return view;
  };
  const auto earlier = account("cus_1", "old@engines.test", 100);
  const auto later = account("cus_2", "new@engines.test", 200);
  for (bool later_first : {false, true}) {
    crm::v1::Customer360 joined = later_first ? later : earlier;
    JoinView(joined, later_first ? earlier : later);
    EXPECT_EQ(joined.profile().email(), "new@engines.test") << later_first;
  }
  // A lead's email outranks both, however early.
  crm::v1::Customer360 with_lead = earlier;
  ApplyToView(with_lead, Captured("lead_a", 50, "ada@x.com", ""));
  crm::v1::Customer360 joined = later;
  JoinView(joined, with_lead);
  EXPECT_EQ(joined.profile().email(), "ada@x.com");
}

// A view stored before profile fields were stamped holds a lead's values
// unstamped: the account's contact does not overwrite them.
TEST(CustomerViewTest, TheAccountsContactKeepsAnUnstampedLeadValue) {
  crm::v1::Customer360 stored;
  stored.set_customer_id("cus_1");
  stored.set_event_count(1);
  stored.mutable_profile()->set_first_name("Ada");
  crm::v1::CustomerOpened opened;
  opened.set_customer_id("cus_1");
  opened.set_name("Engines");
  opened.add_contacts()->set_first_name("Augusta");
  opened.mutable_contacts(0)->set_phone("+447700900123");
  ApplyToView(stored, Event("acc", "customer-cus_1", 100, opened));
  EXPECT_EQ(stored.profile().first_name(), "Ada");
  EXPECT_EQ(stored.profile().phone(), "+447700900123");
}

TEST(CustomerViewTest, StageChangeWithoutAmountKeepsTheOpeningAmountInAnyOrder) {
  crm::v1::OpportunityOpened opp;
  opp.set_opportunity_id("opp_1");
  opp.set_stage_id("qualify");
  *opp.mutable_amount() = Eur(500);
  crm::v1::OpportunityStageChanged moved;
  moved.set_opportunity_id("opp_1");
  moved.set_from_stage_id("qualify");
  moved.set_to_stage_id("propose");
  moved.set_outcome(crm::v1::STAGE_OUTCOME_OPEN);
  const auto a = Event("e1", "opportunity-opp_1", 10, opp);
  const auto b = Event("e2", "opportunity-opp_1", 20, moved);
  crm::v1::Customer360 forward, backward;
  ApplyToView(forward, a);
  ApplyToView(forward, b);
  ApplyToView(backward, b);
  ApplyToView(backward, a);
  EXPECT_EQ(forward.opportunities(0).stage_id(), "propose");
  EXPECT_EQ(forward.opportunities(0).amount().minor_units(), 500);
  EXPECT_EQ(forward.SerializeAsString(), backward.SerializeAsString());
  EXPECT_EQ(forward.lifecycle_stage(), crm::v1::LIFECYCLE_STAGE_PROSPECT);
}

crm::v1::SlaClock Clock(int64_t target, int64_t due, int64_t met = 0) {
  crm::v1::SlaClock c;
  c.set_target_seconds(target);
  if (due > 0) c.mutable_due_at()->set_seconds(due);
  if (met > 0) c.mutable_met_at()->set_seconds(met);
  return c;
}

crm::v1::SlaClock Paused(crm::v1::SlaClock c, int64_t remaining) {
  c.clear_due_at();
  c.set_paused(true);
  c.set_remaining_seconds(remaining);
  return c;
}

crm::v1::SlaClock Warned(crm::v1::SlaClock c) {
  c.set_warned(true);
  return c;
}

// One ticket's life as the service desk tells it, and its SLA state in the
// 360 view after each event.
struct TicketStep {
  crm::v1::EventEnvelope event;
  crm::v1::TicketSlaState state;
};

std::vector<TicketStep> TicketLife() {
  using namespace crm::v1;
  auto event = [n = 0](const google::protobuf::Message& m, int64_t at) mutable {
    return testing::TicketEvent(m, "cus_1", "t_9", ++n, at);
  };
  // First response due in an hour (warned 10 minutes before), resolution
  // in a day.
  const SlaClock fr = Clock(3600, 4600), res = Clock(86400, 87400);
  std::vector<TicketStep> life;
  TicketOpened opened;
  opened.set_ticket_id("t_9");
  *opened.mutable_first_response() = fr;
  *opened.mutable_resolution() = res;
  life.push_back({event(opened, 1000), TICKET_SLA_STATE_ON_TRACK});
  TicketSlaWarningRaised warning;
  warning.set_ticket_id("t_9");
  warning.set_target(SLA_TARGET_FIRST_RESPONSE);
  life.push_back({event(warning, 4000), TICKET_SLA_STATE_AT_RISK});
  TicketReplied reply;
  reply.set_ticket_id("t_9");
  reply.set_author_type(AUTHOR_TYPE_AGENT);
  reply.set_first_response(true);
  life.push_back({event(reply, 4300), TICKET_SLA_STATE_ON_TRACK});
  TicketStatusChanged changed;
  changed.set_ticket_id("t_9");
  changed.set_from_status(TICKET_STATUS_NEW);
  changed.set_to_status(TICKET_STATUS_OPEN);
  *changed.mutable_first_response() = Warned(Clock(3600, 4600, 4300));
  *changed.mutable_resolution() = res;
  life.push_back({event(changed, 4300), TICKET_SLA_STATE_ON_TRACK});
  changed.set_from_status(TICKET_STATUS_OPEN);
  changed.set_to_status(TICKET_STATUS_PENDING);
  *changed.mutable_resolution() = Paused(res, 82400);
  life.push_back({event(changed, 5000), TICKET_SLA_STATE_PAUSED});
  changed.set_from_status(TICKET_STATUS_PENDING);
  changed.set_to_status(TICKET_STATUS_OPEN);
  *changed.mutable_resolution() = Clock(86400, 88400);
  life.push_back({event(changed, 6000), TICKET_SLA_STATE_ON_TRACK});
  TicketResolved resolved;
  resolved.set_ticket_id("t_9");
  *resolved.mutable_first_response() = changed.first_response();
  *resolved.mutable_resolution() = Paused(Clock(86400, 0, 7000), 81400);
  resolved.mutable_resolution()->mutable_due_at()->set_seconds(88400);
  life.push_back({event(resolved, 7000), TICKET_SLA_STATE_MET});
  TicketReopened reopened;
  reopened.set_ticket_id("t_9");
  *reopened.mutable_first_response() = changed.first_response();
  *reopened.mutable_resolution() = Clock(86400, 89400);
  life.push_back({event(reopened, 8000), TICKET_SLA_STATE_ON_TRACK});
  TicketSlaBreached breached;
  breached.set_ticket_id("t_9");
  breached.set_target(SLA_TARGET_RESOLUTION);
  life.push_back({event(breached, 89400), TICKET_SLA_STATE_BREACHED});
  // Resolved late: breached it stays, met at the resolution.
  *resolved.mutable_resolution() = Clock(86400, 89400, 90000);
  resolved.mutable_resolution()->set_breached(true);
  life.push_back({event(resolved, 90000), TICKET_SLA_STATE_BREACHED});
  return life;
}

TEST(CustomerViewTest, ATicketsSlaStateFollowsItsClocks) {
  crm::v1::Customer360 view;
  for (const auto& [event, state] : TicketLife()) {
    ApplyToView(view, event);
    ASSERT_EQ(view.tickets_size(), 1);
    EXPECT_EQ(view.tickets(0).sla_state(), state)
        << event.type() << " at " << event.occurred_at().seconds();
    const auto& t = view.tickets(0);
    if (event.occurred_at().seconds() == 5000) {
      EXPECT_TRUE(t.resolution().paused());
      EXPECT_EQ(t.resolution().remaining_seconds(), 82400);
      EXPECT_FALSE(t.resolution().has_due_at());
    }
    if (event.occurred_at().seconds() == 8000) {
      EXPECT_EQ(t.resolution().due_at().seconds(), 89400);
      EXPECT_FALSE(t.resolution().has_met_at()) << "met anew after the reopening";
    }
  }
  const auto& t = view.tickets(0);
  EXPECT_EQ(t.first_response().target_seconds(), 3600);
  EXPECT_EQ(t.first_response().met_at().seconds(), 4300);
  EXPECT_TRUE(t.first_response().warned());
  EXPECT_FALSE(t.first_response().breached());
  EXPECT_TRUE(t.resolution().breached());
  EXPECT_EQ(t.resolution().met_at().seconds(), 90000);
  EXPECT_EQ(t.sla_as_of().event_id(), "evt-t_9-10");
  EXPECT_TRUE(t.sla_breached());
}

// The SLA fields of the view's tickets and its ticket counts.
std::string SlaOf(const crm::v1::Customer360& view) {
  std::string out = absl::StrCat("open ", view.open_ticket_count(), " breached ",
                                 view.breached_ticket_count(), "\n");
  for (const auto& t : view.tickets()) {
    crm::v1::TicketSummary sla;
    sla.set_ticket_id(t.ticket_id());
    *sla.mutable_first_response() = t.first_response();
    *sla.mutable_resolution() = t.resolution();
    *sla.mutable_sla_as_of() = t.sla_as_of();
    sla.set_sla_state(t.sla_state());
    sla.set_sla_breached(t.sla_breached());
    absl::StrAppend(&out, sla.DebugString());
  }
  return out;
}

TEST(CustomerViewTest, ATicketsSlaIsTheSameInAnyOrderAndAnyJoin) {
  std::vector<crm::v1::EventEnvelope> events;
  for (const auto& step : TicketLife()) events.push_back(step.event);
  // A ticket whose opening left the topic before a rebuild: its warning
  // alone brings it into the view, and into the counts, in any order.
  crm::v1::TicketSlaWarningRaised orphan;
  orphan.set_ticket_id("t_8");
  orphan.set_target(crm::v1::SLA_TARGET_RESOLUTION);
  events.push_back(testing::TicketEvent(orphan, "cus_1", "t_8", 7, 3000));
  crm::v1::TicketReplied answered;
  answered.set_ticket_id("t_7");
  answered.set_author_type(crm::v1::AUTHOR_TYPE_AGENT);
  answered.set_first_response(true);
  events.push_back(testing::TicketEvent(answered, "cus_1", "t_7", 2, 3100));
  events.push_back(testing::OrderPlacedAt("cus_1", "o_1", 500, 2000));
  crm::v1::Customer360 expected;
  for (const auto& e : events) ApplyToView(expected, e);
  std::mt19937 rng(11);
  for (int round = 0; round < 300; ++round) {
    std::shuffle(events.begin(), events.end(), rng);
    crm::v1::Customer360 view, a, b;
    for (const auto& e : events) {
      ApplyToView(view, e);
      ApplyToView(rng() % 2 == 0 ? a : b, e);
    }
    ASSERT_EQ(view.SerializeAsString(), expected.SerializeAsString())
        << "round " << round << "\n"
        << SlaOf(view) << "\nexpected\n"
        << SlaOf(expected);
    // (A join leaves empty stamps where no event set one: the clocks and
    // counts are compared.)
    crm::v1::Customer360 joined;
    joined.set_customer_id("cus_1");
    JoinView(joined, a);
    JoinView(joined, b);
    ASSERT_EQ(SlaOf(joined), SlaOf(expected)) << "round " << round;
  }
  EXPECT_EQ(expected.open_ticket_count(), 2) << "t_7 and t_8, whose status was never seen";
}

TEST(CustomerViewTest, ATicketWithoutTargetsHasNoSlaState) {
  crm::v1::Customer360 view;
  ApplyToView(view, testing::TicketOpenedAt("cus_1", "t_1", 100));
  ASSERT_EQ(view.tickets_size(), 1);
  EXPECT_EQ(view.tickets(0).sla_state(), crm::v1::TICKET_SLA_STATE_UNSPECIFIED);
}

// Events of an outside producer that name no deal, order, ticket or lead:
// on the timeline, but no phantom record is open, bought or a lead.
TEST(CustomerViewTest, EventsWithoutTheirRecordsIdMakeNoRecord) {
  crm::v1::Customer360 view;
  crm::v1::OpportunityOpened opened;
  opened.set_name("Nameless");
  crm::v1::TicketSlaWarningRaised warned;
  warned.set_target(crm::v1::SLA_TARGET_RESOLUTION);
  crm::v1::LeadAssigned assigned;
  assigned.set_owner_id("rep_x");
  crm::v1::LeadsMerged merged;
  merged.set_survivor_lead_id("lead_a");
  std::vector<crm::v1::EventEnvelope> events = {
      testing::Envelope(opened, "cus_1", "evt-1", "opportunity-", 1, 100),
      testing::Envelope(warned, "cus_1", "evt-2", "ticket-", 1, 110),
      testing::OrderPlacedAt("cus_1", "", 5000, 120),
      testing::LeadCapturedAt("cus_1", "", 40, 130),
      testing::Envelope(assigned, "cus_1", "evt-5", "lead-", 2, 140),
      testing::Envelope(merged, "cus_1", "evt-6", "lead-", 3, 150),
  };
  std::vector<std::string> summaries;
  for (const auto& e : events) summaries.push_back(ApplyToView(view, e).summary());
  EXPECT_EQ(summaries[0], "Opportunity opened: Nameless at , 0.00");
  EXPECT_EQ(summaries[4], "Lead assigned to rep_x") << "the entry reads as any other's";
  EXPECT_EQ(view.event_count(), 6);
  EXPECT_EQ(view.opportunities_size(), 0);
  EXPECT_EQ(view.open_opportunity_count(), 0);
  EXPECT_EQ(view.tickets_size(), 0);
  EXPECT_EQ(view.open_ticket_count(), 0);
  EXPECT_EQ(view.orders_size(), 0);
  EXPECT_EQ(view.lead_ids_size(), 0);
  EXPECT_EQ(view.lead_disqualifications_size(), 0);
  EXPECT_EQ(view.lead_owners_size(), 0);
  EXPECT_FALSE(view.has_home_as_of());
  EXPECT_EQ(view.lead_score(), 0);
  EXPECT_EQ(view.owner_id(), "");
  // The person's real lead is the home lead.
  ApplyToView(view, testing::LeadCapturedAt("cus_1", "lead_b", 30, 200));
  EXPECT_EQ(view.lead_score(), 30);
  EXPECT_EQ(view.home_lead_id(), "lead_b");
}

// A write-up's own time that no Timestamp holds is not taken: the view's
// first and last seen stay printable and its idle days countable.
TEST(CustomerViewTest, AnActivityTimeOutOfRangeCountsAtTheEvent) {
  crm::v1::Customer360 view;
  crm::v1::LeadActivityRecorded activity;
  activity.set_lead_id("lead_a");
  activity.mutable_activity_at()->set_seconds(std::numeric_limits<int64_t>::min());
  ApplyToView(view, testing::Envelope(activity, "cus_1", "evt-1", "lead-lead_a", 2, 500));
  EXPECT_EQ(view.first_seen().seconds(), 500);
  EXPECT_EQ(view.last_seen().seconds(), 500);
}

TEST(CustomerViewTest, TimelineSummariesReadLikeSentences) {
  for (const auto& e : CustomerLife()) {
    const std::string summary = Summarize(e);
    if (e.type() == "OpportunityStageChanged") {
      EXPECT_EQ(summary, "Opportunity opp_1 qualify -> won, won 120.00 EUR");
    }
    if (e.type() == "TicketSlaBreached") {
      EXPECT_EQ(summary, "Ticket t_1 breached its first response SLA");
    }
    if (e.event_id() == "e09") {
      EXPECT_EQ(summary, "Order ord_1 placed, 120.00 EUR");
    }
    if (e.type() == "CustomerOpened") {
      EXPECT_EQ(summary, "Customer account opened: Engines Ltd, owner rep_sales");
    }
    EXPECT_NE(summary, e.type()) << "no summary for " << e.type();
  }
}

}  // namespace
}  // namespace crm::analytics
