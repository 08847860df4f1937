#include "services/leads/domain/lead.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "libs/common/ids.h"
#include "libs/common/testing/given_when_then.h"

namespace crm::leads {
namespace {

using LeadScenario = crm::testing::Scenario<crm::v1::Lead, LeadEvent, CaptureLead>;

LeadScenario Lead() {
  return LeadScenario(
      [](const std::optional<crm::v1::Lead>& s, const CaptureLead& c) { return Decide(s, c); },
      [](crm::v1::Lead& s, const LeadEvent& e, absl::Time t) { Apply(s, e, t); });
}

crm::v1::CaptureLeadRequest ValidRequest() {
  crm::v1::CaptureLeadRequest r;
  r.set_request_id("req-1");
  r.set_channel(crm::v1::LEAD_CHANNEL_TRADE_SHOW);
  r.mutable_contact()->set_first_name("  Ada ");
  r.mutable_contact()->set_last_name("Lovelace");
  r.mutable_contact()->set_email(" Ada@Example.COM ");
  r.mutable_contact()->set_phone("+44 (20) 7946-0958");
  r.set_company("Analytical Engines");
  r.set_region("EMEA");
  r.add_product_interests("crm-suite");
  (*r.mutable_attributes())["booth"] = "B12";
  return r;
}

// ValidRequest's score: met in person (engagement 5), one product interest
// (need 5), nothing known of budget, authority or timeline.
crm::v1::LeadScore TradeShowScore() {
  crm::v1::LeadScore s;
  s.set_need(5);
  s.set_engagement(5);
  s.set_total(10);
  return s;
}

absl::Status Check(const std::function<void(crm::v1::CaptureLeadRequest&)>& mutate) {
  auto r = ValidRequest();
  mutate(r);
  return NormalizeCaptureRequest(r).status();
}

void ExpectInvalidField(const absl::Status& st, const std::string& field) {
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;
  EXPECT_EQ(st.message().substr(0, field.size() + 1), field + ":") << st;
}

TEST(ValidateCaptureTest, NormalizesContactData) {
  auto r = NormalizeCaptureRequest(ValidRequest());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->contact().email(), "ada@example.com");
  EXPECT_EQ(r->contact().phone(), "+442079460958");
  EXPECT_EQ(r->contact().first_name(), "Ada");
  // A blank-looking cell (spaces, a no-break space) is no contact: the
  // other one still names the person.
  crm::v1::CaptureLeadRequest blank_email = ValidRequest();
  blank_email.mutable_contact()->set_email(" \xc2\xa0");
  auto phone_only = NormalizeCaptureRequest(blank_email);
  ASSERT_TRUE(phone_only.ok()) << phone_only.status();
  EXPECT_EQ(phone_only->contact().email(), "");
  EXPECT_EQ(phone_only->contact().phone(), "+442079460958");
  crm::v1::CaptureLeadRequest blank_phone = ValidRequest();
  blank_phone.mutable_contact()->set_phone("  ");
  auto email_only = NormalizeCaptureRequest(blank_phone);
  ASSERT_TRUE(email_only.ok()) << email_only.status();
  EXPECT_EQ(email_only->contact().phone(), "");
  ExpectInvalidField(Check([](auto& r) {
                       r.mutable_contact()->set_email(" ");
                       r.mutable_contact()->set_phone(" ");
                     }),
                     "contact");
}

// Imported rows often carry "EMEA " or "crm, analytics" split on commas:
// the lead must still meet the rule for "EMEA" and score each interest once.
TEST(ValidateCaptureTest, TrimsRegionAndInterestsAndDropsRepeatedInterests) {
  crm::v1::CaptureLeadRequest raw = ValidRequest();
  raw.set_region(" EMEA ");
  raw.clear_product_interests();
  for (const char* p : {"crm-suite", " analytics", "CRM-Suite ", "analytics"}) {
    raw.add_product_interests(p);
  }
  auto r = NormalizeCaptureRequest(raw);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->region(), "EMEA");
  ASSERT_EQ(r->product_interests_size(), 2);
  EXPECT_EQ(r->product_interests(0), "crm-suite");
  EXPECT_EQ(r->product_interests(1), "analytics");
  ExpectInvalidField(Check([](auto& r) { r.add_product_interests("  "); }), "product_interests[1]");
}

TEST(ValidateCaptureTest, BadInputNamesTheField) {
  ExpectInvalidField(Check([](auto& r) { r.clear_request_id(); }), "request_id");
  ExpectInvalidField(Check([](auto& r) { r.set_request_id("   "); }), "request_id");
  ExpectInvalidField(Check([](auto& r) { r.set_request_id(std::string(129, 'x')); }), "request_id");
  // Names are one line, Unicode's line separator too.
  ExpectInvalidField(
      Check([](auto& r) { r.mutable_contact()->set_first_name("Ada\xe2\x80\xa8X"); }),
      "contact.first_name");
  ExpectInvalidField(Check([](auto& r) { r.clear_channel(); }), "channel");
  ExpectInvalidField(Check([](auto& r) {
                       r.set_channel(static_cast<crm::v1::LeadChannel>(99));
                       EXPECT_EQ(Check([](auto& r) {
                                   r.set_channel(static_cast<crm::v1::LeadChannel>(99));
                                 }).message(),
                                 "channel: unknown channel")
                           << "a value the caller did set is not missing";
                     }),
                     "channel");
  ExpectInvalidField(Check([](auto& r) { r.clear_contact(); }), "contact");
  ExpectInvalidField(Check([](auto& r) { r.mutable_contact()->set_email("nope"); }),
                     "contact.email");
  ExpectInvalidField(Check([](auto& r) { r.mutable_contact()->set_phone("12345"); }),
                     "contact.phone");
  ExpectInvalidField(
      Check([](auto& r) { r.mutable_contact()->set_first_name(std::string(101, 'a')); }),
      "contact.first_name");
  ExpectInvalidField(Check([](auto& r) { r.mutable_contact()->set_last_name("a\nb"); }),
                     "contact.last_name");
  ExpectInvalidField(Check([](auto& r) { r.set_company(std::string(201, 'c')); }), "company");
  ExpectInvalidField(Check([](auto& r) { r.set_region(std::string(65, 'r')); }), "region");
  ExpectInvalidField(Check([](auto& r) { r.add_product_interests(""); }), "product_interests[1]");
  ExpectInvalidField(Check([](auto& r) {
                       for (int i = 0; i < 51; ++i) r.add_product_interests("p");
                     }),
                     "product_interests");
  ExpectInvalidField(Check([](auto& r) { (*r.mutable_attributes())[""] = "v"; }), "attributes");
  ExpectInvalidField(
      Check([](auto& r) { (*r.mutable_attributes())["k"] = std::string(1025, 'v'); }),
      "attributes[k]");
  ExpectInvalidField(Check([](auto& r) { (*r.mutable_attributes())["  "] = "v"; }), "attributes");
  ExpectInvalidField(Check([](auto& r) {
                       (*r.mutable_attributes())["booth"] = "B12";
                       (*r.mutable_attributes())["booth "] = "C7";
                     }),
                     "attributes[booth]");
}

// Keys come as a spreadsheet's header cells do: trimmed, "booth " is booth.
TEST(ValidateCaptureTest, AttributeKeysAreTrimmed) {
  crm::v1::CaptureLeadRequest raw = ValidRequest();
  raw.clear_attributes();
  (*raw.mutable_attributes())[" booth "] = "B12";
  auto r = NormalizeCaptureRequest(raw);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->attributes().size(), 1u);
  EXPECT_EQ(r->attributes().at("booth"), "B12");
}

CaptureLead Capture(const std::string& lead_id, const std::string& customer_id,
                    const std::string& duplicate_of) {
  CaptureLead c;
  c.request = *NormalizeCaptureRequest(ValidRequest());
  c.lead_id = lead_id;
  c.customer_id = customer_id;
  c.duplicate_of_lead_id = duplicate_of;
  return c;
}

TEST(CaptureLeadTest, NewLeadIsCapturedWithEveryField) {
  CaptureLead cmd = Capture("lead_1", "cus_1", "");
  crm::v1::LeadCaptured expected;
  expected.set_lead_id("lead_1");
  expected.set_customer_id("cus_1");
  expected.set_channel(crm::v1::LEAD_CHANNEL_TRADE_SHOW);
  *expected.mutable_contact() = cmd.request.contact();
  expected.set_company("Analytical Engines");
  expected.set_region("EMEA");
  expected.add_product_interests("crm-suite");
  (*expected.mutable_attributes())["booth"] = "B12";
  *expected.mutable_score() = TradeShowScore();
  Lead().Given({}).When(cmd).Then({expected});
}

TEST(CaptureLeadTest, DuplicateKeepsTheEarlierLeadReference) {
  CaptureLead cmd = Capture("lead_2", "cus_1", "lead_1");
  auto scenario = Lead();
  scenario.Given({}).When(cmd);
  crm::v1::LeadCaptured expected;
  expected.set_lead_id("lead_2");
  expected.set_customer_id("cus_1");
  expected.set_duplicate_of_lead_id("lead_1");
  expected.set_channel(crm::v1::LEAD_CHANNEL_TRADE_SHOW);
  *expected.mutable_contact() = cmd.request.contact();
  expected.set_company("Analytical Engines");
  expected.set_region("EMEA");
  expected.add_product_interests("crm-suite");
  (*expected.mutable_attributes())["booth"] = "B12";
  *expected.mutable_score() = TradeShowScore();
  scenario.Then({expected});
}

TEST(CaptureLeadTest, CapturingAnExistingLeadAgainIsRejected) {
  crm::v1::LeadCaptured earlier;
  earlier.set_lead_id("lead_1");
  earlier.set_customer_id("cus_1");
  CaptureLead cmd = Capture("lead_1", "cus_1", "");
  Lead().Given({earlier}).When(cmd).ThenError(absl::StatusCode::kAlreadyExists, "lead_1");
}

TEST(ApplyTest, CapturedLeadIsNewAtVersionOne) {
  crm::v1::LeadCaptured e;
  e.set_lead_id("lead_1");
  e.set_customer_id("cus_1");
  e.mutable_contact()->set_email("a@b.co");
  crm::v1::Lead state;
  Apply(state, e, absl::FromUnixSeconds(100));
  EXPECT_EQ(state.status(), crm::v1::LEAD_STATUS_NEW);
  EXPECT_EQ(state.version(), 1);
  EXPECT_EQ(state.captured_at().seconds(), 100);
  EXPECT_EQ(state.contact().email(), "a@b.co");
}

// ---- Lifecycle, scoring, assignment and merge: Given events, When command ----

using Scenario = crm::testing::Scenario<crm::v1::Lead, LeadEvent, LeadCommand>;

Scenario AnyLead() {
  return Scenario(
      [](const std::optional<crm::v1::Lead>& s, const LeadCommand& c) { return Decide(s, c); },
      [](crm::v1::Lead& s, const LeadEvent& e, absl::Time t) { Apply(s, e, t); });
}

// The events of capturing ValidRequest as lead_1 of cus_1, assigned as given.
std::vector<LeadEvent> Captured(Assignment assignment = {}) {
  CaptureLead c = Capture("lead_1", "cus_1", "");
  c.assignment = std::move(assignment);
  return *Decide(std::nullopt, c);
}

std::vector<LeadEvent> CapturedFor(const std::string& owner) {
  return Captured(Assignment{owner, "", "", "rule_1"});
}

std::vector<LeadEvent> Plus(std::vector<LeadEvent> events, std::vector<LeadEvent> more) {
  for (auto& e : more) events.push_back(std::move(e));
  return events;
}

crm::v1::Lead Fold(const std::vector<LeadEvent>& events) {
  crm::v1::Lead lead;
  for (const auto& e : events) Apply(lead, e, absl::UnixEpoch());
  return lead;
}

crm::v1::LeadScore Score(int budget, int authority, int need, int timeline, int engagement) {
  crm::v1::LeadScore s;
  s.set_budget(budget);
  s.set_authority(authority);
  s.set_need(need);
  s.set_timeline(timeline);
  s.set_engagement(engagement);
  s.set_total(budget + authority + need + timeline + engagement);
  return s;
}

crm::v1::LeadQualified Qualified() {
  crm::v1::LeadQualified e;
  e.set_lead_id("lead_1");
  e.set_customer_id("cus_1");
  return e;
}

crm::v1::LeadDisqualified Disqualified(const std::string& reason) {
  crm::v1::LeadDisqualified e;
  e.set_lead_id("lead_1");
  e.set_customer_id("cus_1");
  e.set_reason(reason);
  return e;
}

TEST(CaptureLeadTest, RuleAssignmentToAnOwnerAssignsAndNotifiesTheOwner) {
  CaptureLead c = Capture("lead_1", "cus_1", "");
  c.assignment = {"usr_ada", "team_emea", "", "rule_7"};
  auto events = Decide(std::nullopt, c);
  ASSERT_TRUE(events.ok()) << events.status();
  ASSERT_EQ(events->size(), 3u);
  crm::v1::LeadAssigned assigned;
  assigned.set_lead_id("lead_1");
  assigned.set_customer_id("cus_1");
  assigned.set_owner_id("usr_ada");
  assigned.set_team_id("team_emea");
  assigned.set_rule_id("rule_7");
  assigned.set_previous_queue(kDefaultQueue);
  assigned.set_reason("rule");
  crm::v1::OwnerNotified notified;
  notified.set_owner_id("usr_ada");
  notified.set_lead_id("lead_1");
  notified.set_customer_id("cus_1");
  notified.set_topic("lead_assigned");
  notified.set_message("New lead for you: Ada Lovelace (Analytical Engines), score 10");
  auto scenario = AnyLead();
  scenario.Given({}).When(c);
  scenario.Then({(*events)[0], assigned, notified});
  auto lead = Fold(*events);
  EXPECT_EQ(lead.owner_id(), "usr_ada");
  EXPECT_EQ(lead.team_id(), "team_emea");
  EXPECT_EQ(lead.queue(), "");
  EXPECT_EQ(lead.assignment_rule_id(), "rule_7");
  EXPECT_EQ(lead.score().total(), 10);
}

TEST(CaptureLeadTest, WithoutAssignmentTheLeadWaitsInTheDefaultQueue) {
  auto events = Captured();
  ASSERT_EQ(events.size(), 1u);
  auto lead = Fold(events);
  EXPECT_EQ(lead.queue(), kDefaultQueue);
  EXPECT_EQ(lead.owner_id(), "");
}

TEST(CaptureLeadTest, CaptureScoresBantFromTheRequest) {
  CaptureLead c = Capture("lead_1", "cus_1", "");
  c.request.mutable_contact()->set_title("Chief Engineer");
  c.request.mutable_bant()->mutable_budget()->set_currency("GBP");
  c.request.mutable_bant()->mutable_budget()->set_minor_units(5'000'000);  // 50k
  c.request.mutable_bant()->set_timeline(crm::v1::PURCHASE_TIMELINE_IMMEDIATE);
  auto events = *Decide(std::nullopt, c);
  const auto& captured = std::get<crm::v1::LeadCaptured>(events[0]);
  EXPECT_EQ(captured.score().total(), Score(15, 15, 5, 20, 5).total());
  EXPECT_EQ(captured.bant().budget().minor_units(), 5'000'000);
}

TEST(ActivityTest, ActivityAddsEngagementAndChangesTheScore) {
  RecordActivity activity;
  activity.type = crm::v1::LEAD_ACTIVITY_TYPE_MEETING_HELD;
  activity.activity_at = absl::FromUnixSeconds(500);
  activity.detail = "demo";
  crm::v1::LeadActivityRecorded recorded;
  recorded.set_lead_id("lead_1");
  recorded.set_customer_id("cus_1");
  recorded.set_type(crm::v1::LEAD_ACTIVITY_TYPE_MEETING_HELD);
  recorded.mutable_activity_at()->set_seconds(500);
  recorded.set_detail("demo");
  recorded.set_points(8);
  crm::v1::LeadScoreChanged changed;
  changed.set_lead_id("lead_1");
  changed.set_customer_id("cus_1");
  *changed.mutable_previous() = Score(0, 0, 5, 0, 5);
  *changed.mutable_score() = Score(0, 0, 5, 0, 13);
  changed.set_reason("activity");
  auto scenario = AnyLead();
  scenario.Given(Captured()).When(activity).Then({recorded, changed});
}

TEST(ActivityTest, EngagementAtItsCapRecordsTheActivityWithoutScoreChange) {
  crm::v1::LeadActivityRecorded earlier;
  earlier.set_points(15);
  crm::v1::LeadScoreChanged capped;
  *capped.mutable_score() = Score(0, 0, 5, 0, 20);
  RecordActivity activity;
  activity.type = crm::v1::LEAD_ACTIVITY_TYPE_EMAIL_OPENED;
  auto scenario = AnyLead();
  scenario.Given(Plus(Captured(), {earlier, capped})).When(activity);
  crm::v1::LeadActivityRecorded recorded;
  recorded.set_lead_id("lead_1");
  recorded.set_customer_id("cus_1");
  recorded.set_type(crm::v1::LEAD_ACTIVITY_TYPE_EMAIL_OPENED);
  *recorded.mutable_activity_at() = ToProtoTimestamp(absl::Time());
  recorded.set_points(1);
  scenario.Then({recorded});
}

TEST(ActivityTest, ConvertedLeadTakesNoActivity) {
  auto scenario = AnyLead();
  crm::v1::LeadConverted converted;
  converted.set_owner_id("usr_1");
  scenario.Given(Plus(CapturedFor("usr_1"), {Qualified(), converted}))
      .When(RecordActivity{kAnyVersion, crm::v1::LEAD_ACTIVITY_TYPE_WEB_VISIT, absl::Now(), ""})
      .ThenError(absl::StatusCode::kFailedPrecondition, "already converted");
}

TEST(LifecycleTest, QualifyingANewLeadQualifiesIt) {
  AnyLead().Given(Captured()).When(QualifyLead{}).Then({Qualified()});
  EXPECT_EQ(Fold(Plus(Captured(), {Qualified()})).status(), crm::v1::LEAD_STATUS_QUALIFIED);
}

TEST(LifecycleTest, QualifyingWithBantRescoresTheLead) {
  crm::v1::Bant bant;
  bant.set_decision_maker(true);
  bant.set_timeline(crm::v1::PURCHASE_TIMELINE_QUARTER);
  auto qualified = Qualified();
  *qualified.mutable_bant() = bant;
  qualified.set_note("call went well");
  crm::v1::LeadScoreChanged changed;
  changed.set_lead_id("lead_1");
  changed.set_customer_id("cus_1");
  *changed.mutable_previous() = Score(0, 0, 5, 0, 5);
  *changed.mutable_score() = Score(0, 20, 5, 15, 5);
  changed.set_reason("qualified");
  AnyLead()
      .Given(Captured())
      .When(QualifyLead{kAnyVersion, bant, "call went well"})
      .Then({qualified, changed});
}

TEST(LifecycleTest, QualifyingKeepsBantPartsNotConfirmedAgain) {
  CaptureLead c = Capture("lead_1", "cus_1", "");
  c.request.mutable_bant()->mutable_budget()->set_currency("EUR");
  c.request.mutable_bant()->mutable_budget()->set_minor_units(2'000'000);
  c.request.mutable_bant()->set_timeline(crm::v1::PURCHASE_TIMELINE_YEAR);
  auto captured = *Decide(std::nullopt, c);
  crm::v1::Bant confirmed;
  confirmed.set_decision_maker(true);
  confirmed.set_timeline(crm::v1::PURCHASE_TIMELINE_IMMEDIATE);
  auto events = *Decide(Fold(captured), LeadCommand{QualifyLead{0, confirmed, ""}});
  const auto& bant = std::get<crm::v1::LeadQualified>(events[0]).bant();
  EXPECT_EQ(bant.budget().minor_units(), 2'000'000);
  EXPECT_TRUE(bant.decision_maker());
  EXPECT_EQ(bant.timeline(), crm::v1::PURCHASE_TIMELINE_IMMEDIATE);
  const auto& changed = std::get<crm::v1::LeadScoreChanged>(events[1]);
  EXPECT_EQ(changed.score().total(), Score(15, 20, 5, 20, 5).total());
}

TEST(LifecycleTest, QualifyingWithOnlyABudgetKeepsTheKnownDecisionMaker) {
  CaptureLead c = Capture("lead_1", "cus_1", "");
  c.request.mutable_bant()->set_decision_maker(true);
  auto captured = *Decide(std::nullopt, c);
  crm::v1::Bant confirmed;
  confirmed.mutable_budget()->set_currency("EUR");
  confirmed.mutable_budget()->set_minor_units(2'000'000);
  auto events = *Decide(Fold(captured), LeadCommand{QualifyLead{0, confirmed, ""}});
  const auto& bant = std::get<crm::v1::LeadQualified>(events[0]).bant();
  EXPECT_TRUE(bant.decision_maker());
  EXPECT_EQ(bant.budget().minor_units(), 2'000'000);
  const crm::v1::Lead qualified = Fold(Plus(captured, events));
  EXPECT_TRUE(qualified.bant().decision_maker());
  EXPECT_EQ(qualified.score().authority(), 20);
}

TEST(LifecycleTest, QualifyingWithTheKnownBantCarriesNoBant) {
  CaptureLead c = Capture("lead_1", "cus_1", "");
  c.request.mutable_bant()->set_decision_maker(true);
  c.request.mutable_bant()->set_timeline(crm::v1::PURCHASE_TIMELINE_YEAR);
  auto captured = *Decide(std::nullopt, c);
  crm::v1::Bant again;
  again.set_timeline(crm::v1::PURCHASE_TIMELINE_YEAR);
  auto events = *Decide(Fold(captured), LeadCommand{QualifyLead{0, again, ""}});
  ASSERT_EQ(events.size(), 1u);  // no score change either
  EXPECT_FALSE(std::get<crm::v1::LeadQualified>(events[0]).has_bant());
  const crm::v1::Lead qualified = Fold(Plus(captured, events));
  EXPECT_TRUE(qualified.bant().decision_maker());
  EXPECT_EQ(qualified.bant().timeline(), crm::v1::PURCHASE_TIMELINE_YEAR);
}

TEST(LifecycleTest, QualifyOnlyFromNewOrNurture) {
  AnyLead()
      .Given(Plus(Captured(), {Qualified()}))
      .When(QualifyLead{})
      .ThenError(absl::StatusCode::kFailedPrecondition, "is qualified");
  AnyLead()
      .Given(Plus(Captured(), {Disqualified("no budget")}))
      .When(QualifyLead{})
      .ThenError(absl::StatusCode::kFailedPrecondition, "is disqualified");
  crm::v1::LeadNurtureStarted nurture;
  AnyLead().Given(Plus(Captured(), {nurture})).When(QualifyLead{}).Then({Qualified()});
}

TEST(LifecycleTest, DisqualifyKeepsTheReason) {
  AnyLead()
      .Given(Captured())
      .When(DisqualifyLead{kAnyVersion, "no budget"})
      .Then({Disqualified("no budget")});
  auto lead = Fold(Plus(Captured(), {Disqualified("no budget")}));
  EXPECT_EQ(lead.status(), crm::v1::LEAD_STATUS_DISQUALIFIED);
  EXPECT_EQ(lead.status_reason(), "no budget");
  AnyLead()
      .Given(Plus(Captured(), {Disqualified("no budget")}))
      .When(DisqualifyLead{kAnyVersion, "again"})
      .ThenError(absl::StatusCode::kFailedPrecondition, "already disqualified");
}

TEST(LifecycleTest, NurtureReopensADisqualifiedLead) {
  crm::v1::LeadNurtureStarted nurture;
  nurture.set_lead_id("lead_1");
  nurture.set_customer_id("cus_1");
  nurture.set_reason("budget next year");
  AnyLead()
      .Given(Plus(Captured(), {Disqualified("no budget")}))
      .When(NurtureLead{kAnyVersion, "budget next year"})
      .Then({nurture});
  AnyLead()
      .Given(Plus(Captured(), {nurture}))
      .When(NurtureLead{kAnyVersion, ""})
      .ThenError(absl::StatusCode::kFailedPrecondition, "already in nurture");
}

TEST(ConvertTest, QualifiedLeadConvertsToCustomerAndOpportunityRequest) {
  crm::v1::LeadConverted converted;
  converted.set_lead_id("lead_1");
  converted.set_customer_id("cus_1");
  converted.set_owner_id("usr_1");
  *converted.mutable_contact() = Fold(Captured()).contact();
  converted.set_company("Analytical Engines");
  converted.set_region("EMEA");
  converted.add_product_interests("crm-suite");
  converted.set_opportunity_name("Analytical Engines - crm-suite");
  converted.set_channel(crm::v1::LEAD_CHANNEL_TRADE_SHOW);
  converted.set_score(10);
  AnyLead().Given(Plus(CapturedFor("usr_1"), {Qualified()})).When(ConvertLead{}).Then({converted});
  auto lead = Fold(Plus(Plus(CapturedFor("usr_1"), {Qualified()}), {converted}));
  EXPECT_EQ(lead.status(), crm::v1::LEAD_STATUS_CONVERTED);
}

TEST(ConvertTest, ExplicitOwnerNameAndAmountWin) {
  crm::v1::Money amount;
  amount.set_currency("EUR");
  amount.set_minor_units(1'000'000);
  auto scenario = AnyLead();
  scenario.Given(Plus(Captured(), {Qualified()}))
      .When(ConvertLead{kAnyVersion, "usr_9", "Big deal", amount});
  auto events =
      *Decide(scenario.state(), LeadCommand{ConvertLead{kAnyVersion, "usr_9", "Big deal", amount}});
  // The lead changes hands first, and its new owner is told.
  ASSERT_EQ(events.size(), 3u);
  const auto& assigned = std::get<crm::v1::LeadAssigned>(events[0]);
  EXPECT_EQ(assigned.owner_id(), "usr_9");
  EXPECT_EQ(assigned.previous_owner_id(), scenario.state()->owner_id());
  EXPECT_EQ(assigned.rule_id(), "");
  EXPECT_EQ(assigned.reason(), "converted");
  EXPECT_EQ(std::get<crm::v1::OwnerNotified>(events[1]).owner_id(), "usr_9");
  EXPECT_EQ(std::get<crm::v1::OwnerNotified>(events[1]).topic(), "lead_converted");
  const auto& e = std::get<crm::v1::LeadConverted>(events[2]);
  EXPECT_EQ(e.owner_id(), "usr_9");
  EXPECT_EQ(e.opportunity_name(), "Big deal");
  EXPECT_EQ(e.estimated_amount().minor_units(), 1'000'000);
  EXPECT_EQ(e.customer_id(), scenario.state()->customer_id());
  // A merge retired the lead's customer: the conversion names the survivor.
  events =
      *Decide(scenario.state(),
              LeadCommand{ConvertLead{kAnyVersion, "usr_9", "", std::nullopt, "cus_survivor"}});
  EXPECT_EQ(std::get<crm::v1::LeadConverted>(events.back()).customer_id(), "cus_survivor");
  // Converted by its owner: no assignment.
  auto owned = AnyLead();
  owned.Given(Plus(CapturedFor("usr_1"), {Qualified()}));
  events = *Decide(owned.state(), LeadCommand{ConvertLead{kAnyVersion, "usr_1", "", std::nullopt}});
  ASSERT_EQ(events.size(), 1u);
  EXPECT_TRUE(std::holds_alternative<crm::v1::LeadConverted>(events[0]));
}

// A lead without a region opens its account in the converter's territory,
// so the territory's managers can reach it; a lead's own region wins.
TEST(ConvertTest, ALeadWithoutARegionConvertsIntoTheConvertersTerritory) {
  auto history = CapturedFor("usr_1");
  std::get<crm::v1::LeadCaptured>(history.front()).set_region("");
  auto scenario = AnyLead();
  scenario.Given(Plus(history, {Qualified()}));
  ConvertLead convert;
  convert.default_region = "APAC";
  auto events = *Decide(scenario.state(), LeadCommand{convert});
  EXPECT_EQ(std::get<crm::v1::LeadConverted>(events[0]).region(), "APAC");
  auto with_region = AnyLead();
  with_region.Given(Plus(CapturedFor("usr_1"), {Qualified()}));
  events = *Decide(with_region.state(), LeadCommand{convert});
  EXPECT_EQ(std::get<crm::v1::LeadConverted>(events[0]).region(), "EMEA");
}

// The derived name stays within the bound of a name the caller may give,
// which sales accepts, however long the company and interests are.
TEST(ConvertTest, TheDerivedOpportunityNameFitsTheNameBound) {
  auto scenario = AnyLead();
  auto history = CapturedFor("usr_1");
  auto& captured = std::get<crm::v1::LeadCaptured>(history.front());
  captured.set_company(std::string(190, 'C'));
  for (int i = 0; i < 5; ++i) captured.add_product_interests(std::string(60, 'p'));
  scenario.Given(Plus(history, {Qualified()}));
  auto events = *Decide(scenario.state(), LeadCommand{ConvertLead{}});
  const auto& e = std::get<crm::v1::LeadConverted>(events[0]);
  EXPECT_EQ(e.opportunity_name().size(), 200u);
  EXPECT_EQ(e.opportunity_name().substr(0, 193), std::string(190, 'C') + " - ");
}

TEST(ConvertTest, ConvertingAConvertedLeadFails) {
  crm::v1::LeadConverted converted;
  converted.set_owner_id("usr_1");
  AnyLead()
      .Given(Plus(CapturedFor("usr_1"), {Qualified(), converted}))
      .When(ConvertLead{})
      .ThenError(absl::StatusCode::kFailedPrecondition, "already converted");
}

TEST(ConvertTest, OnlyQualifiedLeadsWithAnOwnerConvert) {
  AnyLead()
      .Given(CapturedFor("usr_1"))
      .When(ConvertLead{})
      .ThenError(absl::StatusCode::kFailedPrecondition, "only qualified");
  AnyLead()
      .Given(Plus(Captured(), {Qualified()}))
      .When(ConvertLead{})
      .ThenError(absl::StatusCode::kFailedPrecondition, "owner_id:");
}

TEST(VersionTest, StaleExpectedVersionIsAborted) {
  // Captured() is one event: the lead is at version 1.
  AnyLead()
      .Given(Captured())
      .When(QualifyLead{2, std::nullopt, ""})
      .ThenError(absl::StatusCode::kAborted, "version 1");
  AnyLead().Given(Captured()).When(QualifyLead{1, std::nullopt, ""}).Then({Qualified()});
  AnyLead().Given({}).When(QualifyLead{}).ThenError(absl::StatusCode::kNotFound);
}

TEST(AssignTest, ManualAssignmentMovesTheLeadAndNotifies) {
  crm::v1::LeadAssigned assigned;
  assigned.set_lead_id("lead_1");
  assigned.set_customer_id("cus_1");
  assigned.set_owner_id("usr_2");
  assigned.set_previous_owner_id("usr_1");
  assigned.set_reason("vacation cover");
  auto scenario = AnyLead();
  scenario.Given(CapturedFor("usr_1"))
      .When(AssignLead{kAnyVersion, Assignment{"usr_2", "", "", ""}, "vacation cover"});
  auto events =
      *Decide(scenario.state(),
              LeadCommand{AssignLead{kAnyVersion, {"usr_2", "", "", ""}, "vacation cover"}});
  ASSERT_EQ(events.size(), 2u);
  ASSERT_TRUE(std::holds_alternative<crm::v1::OwnerNotified>(events[1]));
  // The new owner is told, not the one the lead left.
  const auto& told = std::get<crm::v1::OwnerNotified>(events[1]);
  EXPECT_EQ(told.owner_id(), "usr_2");
  EXPECT_EQ(told.lead_id(), "lead_1");
  EXPECT_EQ(told.customer_id(), "cus_1");
  EXPECT_EQ(told.topic(), "lead_assigned");
  EXPECT_TRUE(absl::StartsWith(told.message(), "New lead for you: ")) << told.message();
  scenario.Then({assigned, events[1]});
  EXPECT_EQ(Fold(Plus(CapturedFor("usr_1"), events)).owner_id(), "usr_2");
}

// Only a conversion tells the new owner of an account and an opportunity.
TEST(AssignTest, AManualAssignmentIsNotifiedAsOneWhateverItsReason) {
  auto events = *Decide(Fold(CapturedFor("usr_1")),
                        LeadCommand{AssignLead{kAnyVersion, {"usr_2", "", "", ""}, "converted"}});
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(std::get<crm::v1::OwnerNotified>(events[1]).topic(), "lead_assigned");
}

TEST(AssignTest, ToAQueueNotifiesNobody) {
  auto events =
      *Decide(Fold(CapturedFor("usr_1")), LeadCommand{AssignLead{0, {"", "", "partners", ""}, ""}});
  ASSERT_EQ(events.size(), 1u);
  auto lead = Fold(Plus(CapturedFor("usr_1"), events));
  EXPECT_EQ(lead.owner_id(), "");
  EXPECT_EQ(lead.queue(), "partners");
}

TEST(AssignTest, SameOwnerOrClosedLeadIsRejected) {
  AnyLead()
      .Given(CapturedFor("usr_1"))
      .When(AssignLead{0, {"usr_1", "", "", ""}, ""})
      .ThenError(absl::StatusCode::kFailedPrecondition, "already with usr_1");
  AnyLead()
      .Given(Plus(Captured(), {Disqualified("spam")}))
      .When(AssignLead{0, {"usr_1", "", "", ""}, ""})
      .ThenError(absl::StatusCode::kFailedPrecondition, "only open leads");
}

crm::v1::Lead OtherLead() {
  CaptureLead c = Capture("lead_2", "cus_2", "");
  c.request.mutable_contact()->set_email("ada@engines.example");
  c.request.mutable_contact()->set_phone("+15550001111");
  c.request.clear_product_interests();
  c.request.add_product_interests("analytics");
  (*c.request.mutable_attributes())["source"] = "webinar";
  auto lead = Fold(*Decide(std::nullopt, c));
  lead.set_engagement_points(6);
  lead.set_activity_count(2);
  return lead;
}

TEST(MergeTest, SurvivorAbsorbsTheMergedLeadAndRescores) {
  auto scenario = AnyLead();
  scenario.Given(CapturedFor("usr_1")).When(AbsorbLead{kAnyVersion, OtherLead()});
  auto events = *Decide(scenario.state(), LeadCommand{AbsorbLead{kAnyVersion, OtherLead()}});
  crm::v1::LeadsMerged merged;
  merged.set_survivor_lead_id("lead_1");
  merged.set_merged_lead_id("lead_2");
  merged.set_survivor_customer_id("cus_1");
  merged.set_merged_customer_id("cus_2");
  *merged.mutable_merged_lead() = OtherLead();
  ASSERT_EQ(events.size(), 2u);
  crm::v1::LeadScoreChanged changed;
  changed.set_lead_id("lead_1");
  changed.set_customer_id("cus_1");
  *changed.mutable_previous() = Score(0, 0, 5, 0, 5);
  *changed.mutable_score() = Score(0, 0, 10, 0, 11);
  changed.set_reason("merged");
  scenario.Then({merged, changed});

  auto lead = Fold(Plus(CapturedFor("usr_1"), events));
  EXPECT_EQ(lead.merged_lead_ids_size(), 1);
  EXPECT_EQ(lead.merged_lead_ids(0), "lead_2");
  EXPECT_EQ(lead.contact().email(), "ada@example.com");  // the survivor's stays
  EXPECT_EQ(lead.product_interests_size(), 2);
  EXPECT_EQ(lead.attributes().at("source"), "webinar");
  EXPECT_EQ(lead.attributes().at("booth"), "B12");
  EXPECT_EQ(lead.engagement_points(), 6);
  EXPECT_EQ(lead.activity_count(), 2);
  EXPECT_EQ(lead.owner_id(), "usr_1");
}

// A survivor waiting in a queue takes the owner who worked the merged lead:
// merging must not take the person from the one working them.
TEST(MergeTest, AnUnownedSurvivorTakesTheMergedLeadsOwner) {
  crm::v1::Lead other = OtherLead();
  other.set_owner_id("usr_9");
  other.set_team_id("team_x");
  const auto unowned = Fold(*Decide(std::nullopt, Capture("lead_1", "cus_1", "")));
  ASSERT_EQ(unowned.owner_id(), "");
  auto events = *Decide(unowned, LeadCommand{AbsorbLead{kAnyVersion, other}});
  ASSERT_GE(events.size(), 3u);
  const auto& assigned = std::get<crm::v1::LeadAssigned>(events[events.size() - 2]);
  EXPECT_EQ(assigned.owner_id(), "usr_9");
  EXPECT_EQ(assigned.team_id(), "team_x");
  EXPECT_EQ(assigned.reason(), "merged");
  EXPECT_EQ(std::get<crm::v1::OwnerNotified>(events.back()).owner_id(), "usr_9");
  auto lead = unowned;
  for (const auto& e : events) Apply(lead, e, absl::UnixEpoch());
  // Told the score the merge leaves, not the one before it.
  ASSERT_NE(lead.score().total(), unowned.score().total());
  EXPECT_TRUE(absl::StrContains(std::get<crm::v1::OwnerNotified>(events.back()).message(),
                                absl::StrCat("score ", lead.score().total())))
      << std::get<crm::v1::OwnerNotified>(events.back()).message();
  EXPECT_EQ(lead.owner_id(), "usr_9");
  EXPECT_EQ(lead.queue(), "");
  // An owned survivor keeps its owner.
  const auto owned = Fold(CapturedFor("usr_1"));
  const auto owned_events = Decide(owned, LeadCommand{AbsorbLead{kAnyVersion, other}});
  ASSERT_TRUE(owned_events.ok()) << owned_events.status();
  for (const auto& e : *owned_events) {
    EXPECT_FALSE(std::holds_alternative<crm::v1::LeadAssigned>(e));
  }
}

TEST(MergeTest, InterestsDifferingOnlyInCaseAreOne) {
  crm::v1::Lead other = OtherLead();
  other.clear_product_interests();
  other.add_product_interests("CRM-Suite");
  other.add_product_interests("analytics");
  auto state = Fold(CapturedFor("usr_1"));
  auto events = *Decide(state, LeadCommand{AbsorbLead{kAnyVersion, other}});
  auto lead = Fold(Plus(CapturedFor("usr_1"), events));
  ASSERT_EQ(lead.product_interests_size(), 2);
  EXPECT_EQ(lead.product_interests(0), "crm-suite");
  EXPECT_EQ(lead.product_interests(1), "analytics");
}

// A lead absorbing many keeps within capture's bounds (the survivor's
// first), so its next merge's event still fits.
TEST(MergeTest, AbsorbedInterestsAndAttributesStayWithinCapturesBounds) {
  crm::v1::Lead other = OtherLead();
  other.clear_product_interests();
  other.clear_attributes();
  for (int i = 0; i < 60; ++i) {
    other.add_product_interests(absl::StrCat("product-", i));
    (*other.mutable_attributes())[absl::StrCat("key-", 100 + i)] = "value";
  }
  auto state = Fold(CapturedFor("usr_1"));
  auto events = *Decide(state, LeadCommand{AbsorbLead{kAnyVersion, other}});
  auto lead = Fold(Plus(CapturedFor("usr_1"), events));
  EXPECT_EQ(lead.product_interests_size(), 50);
  EXPECT_EQ(lead.product_interests(0), state.product_interests(0));  // the survivor's stay
  EXPECT_EQ(lead.attributes_size(), 50);
  EXPECT_EQ(lead.attributes().at("booth"), "B12");
  EXPECT_TRUE(lead.attributes().contains("key-100"));  // the first keys in order
  EXPECT_FALSE(lead.attributes().contains("key-159"));
}

TEST(MergeTest, MergedLeadIsRetiredAndTakesNoMoreCommands) {
  crm::v1::Lead survivor = Fold(CapturedFor("usr_1"));
  survivor.set_lead_id("lead_9");
  survivor.set_customer_id("cus_9");
  crm::v1::LeadMergedInto into;
  into.set_lead_id("lead_1");
  into.set_customer_id("cus_1");
  into.set_survivor_lead_id("lead_9");
  into.set_survivor_customer_id("cus_9");
  AnyLead().Given(Captured()).When(MergeLeadInto{kAnyVersion, survivor}).Then({into});
  auto lead = Fold(Plus(Captured(), {into}));
  EXPECT_EQ(lead.status(), crm::v1::LEAD_STATUS_MERGED);
  EXPECT_EQ(lead.merged_into_lead_id(), "lead_9");
  AnyLead()
      .Given(Plus(Captured(), {into}))
      .When(QualifyLead{})
      .ThenError(absl::StatusCode::kFailedPrecondition, "merged into lead_9");
}

TEST(MergeTest, ConvertedOrSameLeadCannotBeMergedAway) {
  auto converted_lead = OtherLead();
  converted_lead.set_status(crm::v1::LEAD_STATUS_CONVERTED);
  AnyLead()
      .Given(Captured())
      .When(AbsorbLead{kAnyVersion, converted_lead})
      .ThenError(absl::StatusCode::kFailedPrecondition, "converted");
  AnyLead()
      .Given(Captured())
      .When(AbsorbLead{kAnyVersion, Fold(Captured())})
      .ThenError(absl::StatusCode::kInvalidArgument, "merged_lead_id");
}

TEST(ParseTest, CommandRequestsNameTheBadField) {
  crm::v1::RecordLeadActivityRequest activity;
  activity.set_request_id("r");
  activity.set_lead_id("lead_1");
  ExpectInvalidField(ParseRecordActivity(activity, absl::Now()).status(), "type");
  activity.set_type(static_cast<crm::v1::LeadActivityType>(99));
  EXPECT_EQ(ParseRecordActivity(activity, absl::Now()).status().message(), "type: unknown type");
  activity.set_type(crm::v1::LEAD_ACTIVITY_TYPE_WEB_VISIT);
  EXPECT_TRUE(ParseRecordActivity(activity, absl::Now()).ok());
  // Past year 9999 no JSON client could read the lead (or the person's
  // export), and the latest activity time would be stuck there.
  activity.mutable_occurred_at()->set_seconds(400'000'000'000);
  ExpectInvalidField(ParseRecordActivity(activity, absl::Now()).status(), "occurred_at");
  // Nor next year: it would be the latest activity until then. A client
  // clock a little ahead is no error.
  const absl::Time now = absl::FromUnixSeconds(1'800'000'000);
  *activity.mutable_occurred_at() = ToProtoTimestamp(now + absl::Hours(24 * 365));
  ExpectInvalidField(ParseRecordActivity(activity, now).status(), "occurred_at");
  *activity.mutable_occurred_at() = ToProtoTimestamp(now + absl::Minutes(1));
  EXPECT_TRUE(ParseRecordActivity(activity, now).ok());
  activity.clear_occurred_at();
  activity.set_lead_id("lead 1");
  ExpectInvalidField(ParseRecordActivity(activity, absl::Now()).status(), "lead_id");

  crm::v1::DisqualifyLeadRequest disqualify;
  disqualify.set_lead_id("lead_1");
  ExpectInvalidField(ParseDisqualify(disqualify).status(), "request_id");
  disqualify.set_request_id("r");
  ExpectInvalidField(ParseDisqualify(disqualify).status(), "reason");

  crm::v1::QualifyLeadRequest qualify;
  qualify.set_request_id("r");
  qualify.set_lead_id("lead_1");
  qualify.set_expected_version(-1);
  ExpectInvalidField(ParseQualify(qualify).status(), "expected_version");
  qualify.set_expected_version(0);
  qualify.mutable_bant()->mutable_budget()->set_currency("euro");
  ExpectInvalidField(ParseQualify(qualify).status(), "bant.budget.currency");

  crm::v1::ConvertLeadRequest convert;
  convert.set_request_id("r");
  convert.set_lead_id("lead_1");
  convert.mutable_estimated_amount()->set_currency("EUR");
  convert.mutable_estimated_amount()->set_minor_units(-5);
  ExpectInvalidField(ParseConvert(convert).status(), "estimated_amount.minor_units");
  // Sales opens no opportunity of 10^15 minor units or more.
  convert.mutable_estimated_amount()->set_minor_units(1'000'000'000'000'000);
  ExpectInvalidField(ParseConvert(convert).status(), "estimated_amount.minor_units");
  convert.mutable_estimated_amount()->set_minor_units(999'999'999'999'999);
  EXPECT_TRUE(ParseConvert(convert).ok());

  crm::v1::AssignLeadRequest assign;
  assign.set_request_id("r");
  assign.set_lead_id("lead_1");
  ExpectInvalidField(ParseAssign(assign).status(), "owner_id");
  assign.set_owner_id("usr_1");
  assign.set_queue("q");
  ExpectInvalidField(ParseAssign(assign).status(), "owner_id");
  // The service's own reasons tell consumers a conversion or a merge from
  // a hand-over: a caller may not give one.
  assign.clear_queue();
  for (const char* reserved : {"converted", " Merged ", "rule", "capture"}) {
    assign.set_reason(reserved);
    ExpectInvalidField(ParseAssign(assign).status(), "reason");
  }
  assign.set_reason("converted at the trade show");
  EXPECT_TRUE(ParseAssign(assign).ok());

  crm::v1::MergeLeadsRequest merge;
  merge.set_request_id("r");
  merge.set_survivor_lead_id("lead_1");
  merge.set_merged_lead_id("lead_1");
  ExpectInvalidField(ValidateMerge(merge), "merged_lead_id");
  merge.set_merged_lead_id("");
  ExpectInvalidField(ValidateMerge(merge), "merged_lead_id");
}

TEST(ValidateCaptureTest, BantIsChecked) {
  ExpectInvalidField(
      Check([](auto& r) { r.mutable_bant()->mutable_budget()->set_currency("eur"); }),
      "bant.budget.currency");
  ExpectInvalidField(Check([](auto& r) {
                       r.mutable_bant()->mutable_budget()->set_currency("EUR");
                       r.mutable_bant()->mutable_budget()->set_minor_units(-1);
                     }),
                     "bant.budget.minor_units");
  ExpectInvalidField(Check([](auto& r) {
                       r.mutable_bant()->set_timeline(static_cast<crm::v1::PurchaseTimeline>(42));
                     }),
                     "bant.timeline");
  // A stated need from a form may run over lines.
  crm::v1::CaptureLeadRequest multiline = ValidRequest();
  multiline.mutable_bant()->set_need("Replace the old CRM\r\nbefore Q3\tif possible");
  EXPECT_TRUE(NormalizeCaptureRequest(multiline).ok());
  ExpectInvalidField(Check([](auto& r) { r.mutable_bant()->set_need("bell\x07"); }), "bant.need");
}

// Notes, reasons and activity details are what people type or paste: they
// may run over lines. Other control characters are refused everywhere.
TEST(ValidateCommandsTest, FreeTextMayRunOverLinesNamesAndQueuesMayNot) {
  crm::v1::QualifyLeadRequest qualify;
  qualify.set_request_id("r");
  qualify.set_lead_id("lead_1");
  qualify.set_note("Call with the CFO.\nBudget approved\tQ3");
  EXPECT_TRUE(ParseQualify(qualify).ok());
  qualify.set_note("escape\x1b[31m");
  ExpectInvalidField(ParseQualify(qualify).status(), "note");

  crm::v1::DisqualifyLeadRequest disqualify;
  disqualify.set_request_id("r");
  disqualify.set_lead_id("lead_1");
  disqualify.set_reason("No budget this year.\r\nTry again in spring.");
  EXPECT_TRUE(ParseDisqualify(disqualify).ok());

  crm::v1::RecordLeadActivityRequest activity;
  activity.set_request_id("r");
  activity.set_lead_id("lead_1");
  activity.set_type(crm::v1::LEAD_ACTIVITY_TYPE_EMAIL_OPENED);
  activity.set_detail("Subject: Pricing\nOpened twice");
  EXPECT_TRUE(ParseRecordActivity(activity, absl::Now()).ok());

  // A queue is a name: trimmed, and never blank or broken over lines.
  crm::v1::AssignLeadRequest assign;
  assign.set_request_id("r");
  assign.set_lead_id("lead_1");
  assign.set_queue(" emea-inbound ");
  assign.set_reason("  ");
  auto assigned = ParseAssign(assign);
  ASSERT_TRUE(assigned.ok()) << assigned.status();
  EXPECT_EQ(assigned->assignment.queue, "emea-inbound");
  EXPECT_EQ(assigned->reason, "");  // the service's default reason applies
  assign.set_queue("   ");
  ExpectInvalidField(ParseAssign(assign).status(), "queue");
  assign.set_queue("emea\ninbound");
  ExpectInvalidField(ParseAssign(assign).status(), "queue");

  // Attribute values from a spreadsheet cell may hold line breaks, not NUL.
  auto with_attribute = [](std::string value) {
    crm::v1::CaptureLeadRequest r = ValidRequest();
    (*r.mutable_attributes())["notes"] = std::move(value);
    return NormalizeCaptureRequest(r).status();
  };
  EXPECT_TRUE(with_attribute("line one\nline two").ok());
  ExpectInvalidField(with_attribute(std::string("nul\0byte", 8)), "attributes[notes]");
  // A blank company is no company (the deal's name falls back).
  auto company = ValidRequest();
  company.set_company("  ");
  auto normalized = NormalizeCaptureRequest(company);
  ASSERT_TRUE(normalized.ok()) << normalized.status();
  EXPECT_EQ(normalized->company(), "");
}

TEST(EnvelopeTest, StoredPayloadsUnpackToTheirEvent) {
  for (const auto& event : CapturedFor("usr_1")) {
    crm::v1::EventEnvelope envelope;
    std::visit([&](const auto& e) { envelope.mutable_payload()->PackFrom(e); }, event);
    auto back = UnpackLeadEvent(envelope);
    ASSERT_TRUE(back.has_value());
    EXPECT_EQ(back->index(), event.index());
  }
  crm::v1::EventEnvelope other;
  other.mutable_payload()->PackFrom(crm::v1::Lead());
  EXPECT_FALSE(UnpackLeadEvent(other).has_value());
}

}  // namespace
}  // namespace crm::leads
