#include "services/analytics/domain/customer_access.h"

#include <algorithm>
#include <vector>

#include "gtest/gtest.h"
#include "services/analytics/domain/customer_view.h"
#include "services/analytics/testing/events.h"

namespace crm::analytics {
namespace {

crm::v1::Customer360 View(const std::string& owner, const std::string& territory) {
  crm::v1::Customer360 v;
  v.set_customer_id("cus_1");
  v.set_owner_id(owner);
  v.mutable_profile()->set_first_name("Ada");
  v.mutable_profile()->set_last_name("Lovelace");
  v.mutable_profile()->set_email("ada@example.com");
  v.mutable_profile()->set_phone("+441234567890");
  v.mutable_profile()->set_company("Engines");
  if (!territory.empty()) {  // an account's view
    v.mutable_profile()->set_territory(territory);
    v.mutable_account_as_of()->set_event_id("evt-open");
    v.set_account_owner_id(owner);
  }
  auto* entry = v.add_timeline();
  entry->set_type("LeadCaptured");
  entry->set_summary("Lead captured via web form (ada@example.com)");
  auto* ticket_entry = v.add_timeline();
  ticket_entry->set_type("TicketOpened");
  ticket_entry->set_summary("Ticket opened (router)");
  ticket_entry->set_detail("Ada's router lost its settings");
  auto* ticket = v.add_tickets();
  ticket->set_ticket_id("tkt_1");
  ticket->set_subject("Ada's router lost its settings");
  ticket->set_product("router");
  return v;
}

auth::Principal As(const std::string& sub, const std::string& role,
                   const std::string& territory = "") {
  return auth::Principal{sub, {role}, territory};
}

TEST(CustomerAccessTest, RepsSeeTheirOwnCustomersOnlyAndOthersLookMissing) {
  const auto own =
      Customer360For(As("rep_ann", auth::kRoleSalesRep), View("rep_ann", "emea"), "cus_1");
  ASSERT_TRUE(own.ok());
  EXPECT_EQ(own->profile().email(), "ada@example.com");

  const auto other =
      Customer360For(As("rep_bob", auth::kRoleSalesRep), View("rep_ann", "emea"), "cus_1");
  const auto missing = Customer360For(As("rep_bob", auth::kRoleSalesRep),
                                      absl::NotFoundError("customer cus_1 not found"), "cus_1");
  EXPECT_EQ(other.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(other.status(), missing.status()) << "no hint that the customer exists";
}

TEST(CustomerAccessTest, ManagersSeeTheirTerritory) {
  const auto mgr = As("mgr_eve", auth::kRoleSalesManager, "emea");
  EXPECT_TRUE(Customer360For(mgr, View("rep_ann", "emea"), "cus_1").ok());
  EXPECT_EQ(Customer360For(mgr, View("rep_ann", "amer"), "cus_1").status().code(),
            absl::StatusCode::kPermissionDenied);
  // Without an account the lead's region counts.
  auto lead_only = View("rep_ann", "");
  lead_only.mutable_profile()->set_region("emea");
  EXPECT_TRUE(Customer360For(mgr, lead_only, "cus_1").ok());
}

// A person first captured in APAC and captured again by an EMEA manager
// (the duplicate's region is the caller's to choose): until an account
// exists the view stays with the first lead's territory and owner.
TEST(CustomerAccessTest, ALaterLeadOfThePersonDoesNotMoveItsHome) {
  using testing::Envelope;
  auto captured = [](const std::string& lead, const std::string& region, int64_t at) {
    crm::v1::LeadCaptured m;
    m.set_lead_id(lead);
    m.set_customer_id("cus_1");
    m.set_region(region);
    return Envelope(m, "cus_1", "evt-capture-" + lead, "lead-" + lead, 1, at);
  };
  auto assigned = [](const std::string& lead, const std::string& owner, int64_t at) {
    crm::v1::LeadAssigned m;
    m.set_lead_id(lead);
    m.set_customer_id("cus_1");
    m.set_owner_id(owner);
    return Envelope(m, "cus_1", "evt-assign-" + lead, "lead-" + lead, 2, at);
  };
  std::vector<crm::v1::EventEnvelope> events = {
      captured("lead_1", "apac", 100), assigned("lead_1", "rep_apac", 100),
      captured("lead_2", "emea", 200), assigned("lead_2", "mgr_emea", 200)};
  for (bool reversed : {false, true}) {
    if (reversed) std::reverse(events.begin(), events.end());
    crm::v1::Customer360 view;
    for (const auto& e : events) ApplyToView(view, e);
    EXPECT_EQ(view.profile().region(), "emea") << "the profile shows the latest capture";
    EXPECT_EQ(Customer360For(As("mgr_emea", auth::kRoleSalesManager, "emea"), view, "cus_1")
                  .status()
                  .code(),
              absl::StatusCode::kPermissionDenied)
        << reversed;
    EXPECT_TRUE(Customer360For(As("mgr_apac", auth::kRoleSalesManager, "apac"), view, "cus_1").ok())
        << reversed;
    EXPECT_TRUE(Customer360For(As("rep_apac", auth::kRoleSalesRep), view, "cus_1").ok())
        << reversed;
    // Merged with another customer captured later, the earliest lead stays home.
    crm::v1::Customer360 other;
    ApplyToView(other, captured("lead_3", "emea", 300));
    crm::v1::Customer360 group = other;
    JoinView(group, view);
    EXPECT_EQ(group.home_lead_id(), "lead_1");
    EXPECT_FALSE(
        Customer360For(As("mgr_emea", auth::kRoleSalesManager, "emea"), group, "cus_1").ok());
    // A group of leads has no account: its home's manager and owner see it.
    EXPECT_FALSE(group.has_account_as_of()) << reversed;
    EXPECT_TRUE(
        Customer360For(As("mgr_apac", auth::kRoleSalesManager, "apac"), group, "cus_1").ok())
        << reversed;
    EXPECT_TRUE(Customer360For(As("rep_apac", auth::kRoleSalesRep), group, "cus_1").ok())
        << reversed;
  }
}

// An account decides even without a territory or owner: sales lets no
// manager or rep reach it, and its lead's manager and owner lose the view.
TEST(CustomerAccessTest, AnAccountWithoutTerritoryOrOwnerIsOutOfTheLeadsReach) {
  using testing::Envelope;
  crm::v1::LeadCaptured captured;
  captured.set_lead_id("lead_1");
  captured.set_customer_id("cus_1");
  captured.set_region("emea");
  crm::v1::LeadAssigned assigned;
  assigned.set_lead_id("lead_1");
  assigned.set_customer_id("cus_1");
  assigned.set_owner_id("rep_ann");
  crm::v1::Customer360 view;
  ApplyToView(view, Envelope(captured, "cus_1", "evt-capture", "lead-lead_1", 1, 100));
  ApplyToView(view, Envelope(assigned, "cus_1", "evt-assign", "lead-lead_1", 2, 100));
  const auto mgr = As("mgr_eve", auth::kRoleSalesManager, "emea");
  const auto rep = As("rep_ann", auth::kRoleSalesRep);
  ASSERT_TRUE(Customer360For(mgr, view, "cus_1").ok());
  ASSERT_TRUE(Customer360For(rep, view, "cus_1").ok());
  crm::v1::CustomerOpened opened;
  opened.set_customer_id("cus_1");
  opened.set_name("Engines");
  ApplyToView(view, Envelope(opened, "cus_1", "evt-open", "customer-cus_1", 1, 200));
  EXPECT_EQ(Customer360For(mgr, view, "cus_1").status().code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(Customer360For(rep, view, "cus_1").status().code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_TRUE(Customer360For(As("root", auth::kRoleAdmin), view, "cus_1").ok());
}

// A view stored before account owners were kept apart: the account's
// owner is in owner_id, stamped by the account's event.
TEST(CustomerAccessTest, AnAccountViewStoredBeforeAccountOwnersIsReadByItsOwner) {
  crm::v1::Customer360 stored;
  stored.set_customer_id("cus_1");
  stored.set_owner_id("rep_ann");
  stored.mutable_profile()->set_territory("emea");
  stored.mutable_account_as_of()->set_event_id("evt-open");
  stored.mutable_owner_as_of()->set_event_id("evt-open");
  EXPECT_TRUE(Customer360For(As("rep_ann", auth::kRoleSalesRep), stored, "cus_1").ok());
  EXPECT_FALSE(Customer360For(As("rep_bob", auth::kRoleSalesRep), stored, "cus_1").ok());
  // Owned by a lead's assignment instead: the account names nobody.
  stored.mutable_owner_as_of()->set_event_id("evt-assign");
  EXPECT_FALSE(Customer360For(As("rep_ann", auth::kRoleSalesRep), stored, "cus_1").ok());
}

// A view stored before homes were kept learns none from later events: a
// later lead would otherwise become its home and lock out its owner.
TEST(CustomerAccessTest, AViewStoredBeforeHomesIsReadByItsLatestLeadAsBefore) {
  crm::v1::Customer360 stored;
  stored.set_customer_id("cus_1");
  stored.set_event_count(2);
  stored.set_owner_id("rep_apac");
  stored.mutable_profile()->set_region("apac");
  stored.add_lead_ids("lead_1");
  crm::v1::LeadCaptured later;
  later.set_lead_id("lead_2");
  later.set_customer_id("cus_1");
  later.set_region("emea");
  ApplyToView(stored, testing::Envelope(later, "cus_1", "evt-2", "lead-lead_2", 1, 300));
  EXPECT_FALSE(stored.tracks_home());
  EXPECT_FALSE(stored.has_home_as_of());
  EXPECT_TRUE(Customer360For(As("rep_apac", auth::kRoleSalesRep), stored, "cus_1").ok());
}

TEST(CustomerAccessTest, AManagersFunnelIsItsTerritorys) {
  crm::v1::GetFunnelRequest all;
  auto emea = ScopeFunnel(As("mgr_eve", auth::kRoleSalesManager, "EMEA"), all);
  ASSERT_TRUE(emea.ok()) << emea.status();
  EXPECT_EQ(emea->territory(), "EMEA");
  crm::v1::GetFunnelRequest apac;
  apac.set_territory("apac");
  apac.set_owner_id("rep_apac");
  auto refused = ScopeFunnel(As("mgr_eve", auth::kRoleSalesManager, "EMEA"), apac);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(refused.status().message().rfind("territory:", 0), 0u) << refused.status();
  crm::v1::GetFunnelRequest own_spelling;
  own_spelling.set_territory("emea");
  EXPECT_TRUE(ScopeFunnel(As("mgr_eve", auth::kRoleSalesManager, "EMEA"), own_spelling).ok());
  own_spelling.set_territory("EMEA ");  // as a form leaves it
  EXPECT_TRUE(ScopeFunnel(As("mgr_eve", auth::kRoleSalesManager, "EMEA"), own_spelling).ok());
  auto padded = ScopeFunnel(As("ann", auth::kRoleAnalyst), own_spelling);
  ASSERT_TRUE(padded.ok());
  EXPECT_EQ(padded->territory(), "EMEA") << "filtered as accounts store it";
  // Without a territory claim: its own deals and leads.
  auto own = ScopeFunnel(As("mgr_sam", auth::kRoleSalesManager), all);
  ASSERT_TRUE(own.ok());
  EXPECT_EQ(own->owner_id(), "mgr_sam");
  EXPECT_FALSE(ScopeFunnel(As("mgr_sam", auth::kRoleSalesManager), apac).ok());
  // Analysts and admins read every slice as asked.
  auto analyst = ScopeFunnel(As("ann", auth::kRoleAnalyst), apac);
  ASSERT_TRUE(analyst.ok());
  EXPECT_EQ(analyst->territory(), "apac");
  EXPECT_EQ(analyst->owner_id(), "rep_apac");
}

TEST(CustomerAccessTest, AnalystsSeeEveryCustomerWithoutPersonalData) {
  const auto seen =
      Customer360For(As("ann_alyst", auth::kRoleAnalyst), View("rep_ann", "emea"), "cus_1");
  ASSERT_TRUE(seen.ok());
  EXPECT_EQ(seen->profile().first_name(), "");
  EXPECT_EQ(seen->profile().last_name(), "");
  EXPECT_EQ(seen->profile().email(), "");
  EXPECT_EQ(seen->profile().phone(), "");
  EXPECT_EQ(seen->profile().company(), "Engines");
  ASSERT_EQ(seen->timeline_size(), 2);
  EXPECT_EQ(seen->timeline(0).type(), "LeadCaptured");
  EXPECT_EQ(seen->timeline(0).summary(), "");
  EXPECT_EQ(seen->timeline(1).type(), "TicketOpened");
  EXPECT_EQ(seen->timeline(1).detail(), "") << "free text is personal data";
  ASSERT_EQ(seen->tickets_size(), 1);
  EXPECT_EQ(seen->tickets(0).subject(), "");
  EXPECT_EQ(seen->tickets(0).product(), "router");
  EXPECT_EQ(seen->owner_id(), "rep_ann");
}

TEST(CustomerAccessTest, AdminsSeeEverythingAndGetPlainNotFound) {
  const auto admin = As("root", auth::kRoleAdmin);
  const auto seen = Customer360For(admin, View("rep_ann", "emea"), "cus_1");
  ASSERT_TRUE(seen.ok());
  EXPECT_EQ(seen->timeline(0).summary(), "Lead captured via web form (ada@example.com)");
  EXPECT_EQ(seen->timeline(1).detail(), "Ada's router lost its settings");
  EXPECT_EQ(seen->tickets(0).subject(), "Ada's router lost its settings");
  EXPECT_EQ(Customer360For(admin, absl::NotFoundError("customer cus_9 not found"), "cus_9")
                .status()
                .code(),
            absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace crm::analytics
