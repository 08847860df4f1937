#include "services/sales/domain/opportunity.h"

#include "gtest/gtest.h"
#include "libs/common/ids.h"
#include "libs/common/testing/given_when_then.h"
#include "services/sales/domain/pipeline.h"
#include "services/sales/domain/validation.h"

namespace crm::sales {
namespace {

using OpportunityScenario =
    crm::testing::Scenario<crm::v1::Opportunity, OpportunityEvent, OpportunityCommand>;

// Given events are folded at the Unix epoch; commands run days later.
const absl::Time kT0 = absl::UnixEpoch();

OpportunityScenario Opportunity() {
  return OpportunityScenario(
      [](const std::optional<crm::v1::Opportunity>& s, const OpportunityCommand& c) {
        return Decide(s, c);
      },
      [](crm::v1::Opportunity& s, const OpportunityEvent& e, absl::Time t) { Apply(s, e, t); });
}

crm::v1::OpportunityOpened Opened(const std::string& stage = "prospecting", int probability = 10) {
  crm::v1::OpportunityOpened e;
  e.set_opportunity_id("opp_1");
  e.set_customer_id("cus_1");
  e.set_pipeline_id("default");
  e.set_name("Engines for the Navy");
  e.set_owner_id("rep_ada");
  e.set_territory("EMEA");
  e.set_stage_id(stage);
  e.set_probability_percent(probability);
  *e.mutable_amount() = MakeMoney("EUR", 5'000'000);
  e.set_expected_close_date("2025-06-30");
  return e;
}

crm::v1::OpportunityStageChanged Changed(
    const std::string& from, const std::string& to, int probability, absl::Duration spent,
    crm::v1::StageOutcome outcome = crm::v1::STAGE_OUTCOME_OPEN, const std::string& reason = "",
    bool reopened = false) {
  crm::v1::OpportunityStageChanged e;
  e.set_opportunity_id("opp_1");
  e.set_customer_id("cus_1");
  e.set_from_stage_id(from);
  e.set_to_stage_id(to);
  e.set_probability_percent(probability);
  e.set_outcome(outcome);
  e.mutable_time_in_previous_stage()->set_seconds(absl::ToInt64Seconds(spent));
  e.set_lost_reason(reason);
  e.set_reopened(reopened);
  *e.mutable_amount() = MakeMoney("EUR", 5'000'000);
  return e;
}

crm::v1::OpportunityRevised Revised(int64_t euro_cents, const std::string& close_date,
                                    const std::string& name) {
  crm::v1::OpportunityRevised e;
  e.set_opportunity_id("opp_1");
  e.set_customer_id("cus_1");
  *e.mutable_amount() = MakeMoney("EUR", euro_cents);
  e.set_expected_close_date(close_date);
  e.set_name(name);
  return e;
}

ChangeStage MoveTo(const std::string& stage, absl::Time at, const std::string& reason = "") {
  return ChangeStage{stage, reason, DefaultPipeline(), at};
}

OpenOpportunity OpenCommand(const std::string& stage = "") {
  OpenOpportunity c;
  c.request.set_request_id("r1");
  c.request.set_customer_id("cus_1");
  c.request.set_name("Engines for the Navy");
  c.request.set_owner_id("rep_ada");
  c.request.set_stage_id(stage);
  *c.request.mutable_amount() = MakeMoney("EUR", 5'000'000);
  c.request.set_expected_close_date("2025-06-30");
  c.opportunity_id = "opp_1";
  c.territory = "EMEA";
  c.pipeline = DefaultPipeline();
  return c;
}

TEST(OpenOpportunityTest, StartsInTheFirstStageWithItsProbability) {
  Opportunity().Given({}).When(OpenCommand()).Then({Opened()});
}

TEST(OpenOpportunityTest, MayStartInALaterOpenStageButNotAClosedOne) {
  Opportunity().Given({}).When(OpenCommand("proposal")).Then({Opened("proposal", 50)});
  Opportunity()
      .Given({})
      .When(OpenCommand("contract_signed"))
      .ThenError(absl::StatusCode::kInvalidArgument, "stage_id:");
  Opportunity()
      .Given({})
      .When(OpenCommand("nowhere"))
      .ThenError(absl::StatusCode::kInvalidArgument, "stage_id:");
  Opportunity().Given({Opened()}).When(OpenCommand()).ThenError(absl::StatusCode::kAlreadyExists);
}

TEST(OpenOpportunityTest, ANameIsTrimmedOnOpeningAndRevision) {
  OpenOpportunity open = OpenCommand();
  open.request.set_name("  Engines for the Navy \t");
  Opportunity().Given({}).When(open).Then({Opened()});

  ReviseOpportunity revise;
  revise.request.set_opportunity_id("opp_1");
  revise.request.set_name(" Engines, phase 2 ");
  Opportunity()
      .Given({Opened()})
      .When(revise)
      .Then({Revised(5'000'000, "2025-06-30", "Engines, phase 2")});
}

TEST(ChangeStageTest, MovingOnCarriesTheTimeSpentInThePreviousStage) {
  Opportunity()
      .Given({Opened()})
      .When(MoveTo("needs_analysis", kT0 + absl::Hours(72)))
      .Then({Changed("prospecting", "needs_analysis", 20, absl::Hours(72))});
}

TEST(ChangeStageTest, EveryStageUpToWonInOrder) {
  auto scenario = Opportunity();
  scenario
      .Given({Opened(), Changed("prospecting", "needs_analysis", 20, absl::Hours(1)),
              Changed("needs_analysis", "proposal", 50, absl::Hours(1)),
              Changed("proposal", "negotiation", 80, absl::Hours(1))})
      .When(MoveTo("contract_signed", kT0 + absl::Hours(24)))
      .Then({Changed("negotiation", "contract_signed", 100, absl::Hours(24),
                     crm::v1::STAGE_OUTCOME_WON)});
}

TEST(ChangeStageTest, SkippingAStageIsRefusedByTheDefaultPipeline) {
  Opportunity()
      .Given({Opened()})
      .When(MoveTo("proposal", kT0))
      .ThenError(absl::StatusCode::kFailedPrecondition, "skipping");
  Opportunity()
      .Given({Opened()})
      .When(MoveTo("contract_signed", kT0))
      .ThenError(absl::StatusCode::kFailedPrecondition, "skipping");
}

TEST(ChangeStageTest, APipelineThatAllowsSkippingLetsItThrough) {
  auto pipeline = DefaultPipeline();
  pipeline.set_allow_skipping(true);
  Opportunity()
      .Given({Opened()})
      .When(ChangeStage{"contract_signed", "", pipeline, kT0})
      .Then({Changed("prospecting", "contract_signed", 100, absl::ZeroDuration(),
                     crm::v1::STAGE_OUTCOME_WON)});
}

TEST(ChangeStageTest, LosingNeedsAReason) {
  Opportunity()
      .Given({Opened()})
      .When(MoveTo("lost", kT0))
      .ThenError(absl::StatusCode::kInvalidArgument, "lost_reason:");
  Opportunity()
      .Given({Opened()})
      .When(MoveTo("needs_analysis", kT0, "budget"))
      .ThenError(absl::StatusCode::kInvalidArgument, "lost_reason:");
  Opportunity()
      .Given({Opened()})
      .When(MoveTo("lost", kT0 + absl::Hours(5), "no budget"))
      .Then({Changed("prospecting", "lost", 0, absl::Hours(5), crm::v1::STAGE_OUTCOME_LOST,
                     "no budget")});
}

TEST(ChangeStageTest, ALostDealIsReopenedAWonDealIsNot) {
  const auto lost =
      Changed("proposal", "lost", 0, absl::Hours(1), crm::v1::STAGE_OUTCOME_LOST, "budget");
  Opportunity()
      .Given({Opened("proposal", 50), lost})
      .When(MoveTo("proposal", kT0 + absl::Hours(48)))
      .Then({Changed("lost", "proposal", 50, absl::Hours(48), crm::v1::STAGE_OUTCOME_OPEN, "",
                     /*reopened=*/true)});
  const auto won =
      Changed("negotiation", "contract_signed", 100, absl::Hours(1), crm::v1::STAGE_OUTCOME_WON);
  Opportunity()
      .Given({Opened("negotiation", 80), won})
      .When(MoveTo("negotiation", kT0))
      .ThenError(absl::StatusCode::kFailedPrecondition, "won deals are not reopened");
}

// The pipelines file changed: the deal's stage ("scoping", "dropped") is no
// longer in its pipeline. The deal is not stuck: an open one moves to any
// open stage or is lost, but is not won from nowhere; a closed one reopens.
TEST(ChangeStageTest, ADealInAStageTakenOutOfItsPipelineMovesOn) {
  Opportunity()
      .Given({Opened("scoping", 30)})
      .When(MoveTo("proposal", kT0 + absl::Hours(1)))
      .Then({Changed("scoping", "proposal", 50, absl::Hours(1))});
  Opportunity()
      .Given({Opened("scoping", 30)})
      .When(MoveTo("lost", kT0 + absl::Hours(1), "no budget"))
      .Then({Changed("scoping", "lost", 0, absl::Hours(1), crm::v1::STAGE_OUTCOME_LOST,
                     "no budget")});
  Opportunity()
      .Given({Opened("scoping", 30)})
      .When(MoveTo("contract_signed", kT0))
      .ThenError(absl::StatusCode::kFailedPrecondition, "current stage scoping is no longer");
  const auto dropped =
      Changed("proposal", "dropped", 0, absl::Hours(1), crm::v1::STAGE_OUTCOME_LOST, "budget");
  Opportunity()
      .Given({Opened("proposal", 50), dropped})
      .When(MoveTo("negotiation", kT0 + absl::Hours(2)))
      .Then({Changed("dropped", "negotiation", 80, absl::Hours(2), crm::v1::STAGE_OUTCOME_OPEN, "",
                     /*reopened=*/true)});
}

TEST(ChangeStageTest, UnknownStageAndMissingOpportunity) {
  Opportunity()
      .Given({Opened()})
      .When(MoveTo("nowhere", kT0))
      .ThenError(absl::StatusCode::kInvalidArgument, "stage_id:");
  Opportunity()
      .Given({})
      .When(MoveTo("needs_analysis", kT0))
      .ThenError(absl::StatusCode::kNotFound, "opportunity_id:");
}

TEST(ChangeStageTest, FoldedStateFollowsTheStages) {
  auto scenario = Opportunity();
  scenario.Given({Opened(), Changed("prospecting", "lost", 0, absl::Hours(1),
                                    crm::v1::STAGE_OUTCOME_LOST, "budget")});
  const auto& s = *scenario.state();
  EXPECT_EQ(s.stage_id(), "lost");
  EXPECT_EQ(s.outcome(), crm::v1::STAGE_OUTCOME_LOST);
  EXPECT_EQ(s.probability_percent(), 0);
  EXPECT_EQ(s.lost_reason(), "budget");
  EXPECT_TRUE(s.has_closed_at());
  EXPECT_EQ(s.version(), 2);
}

TEST(ReviseOpportunityTest, AnOpenDealTakesNewAmountAndDate) {
  ReviseOpportunity revise;
  revise.request.set_opportunity_id("opp_1");
  *revise.request.mutable_amount() = MakeMoney("EUR", 7'500'000);
  revise.request.set_expected_close_date("2025-09-30");
  Opportunity()
      .Given({Opened()})
      .When(revise)
      .Then({Revised(7'500'000, "2025-09-30", "Engines for the Navy")});
  Opportunity()
      .Given({Opened(), Changed("prospecting", "lost", 0, absl::Hours(1),
                                crm::v1::STAGE_OUTCOME_LOST, "budget")})
      .When(revise)
      .ThenError(absl::StatusCode::kFailedPrecondition);
  Opportunity().Given({}).When(revise).ThenError(absl::StatusCode::kNotFound,
                                                 "opportunity_id: opportunity opp_1 not found");
}

TEST(StaleTest, AnOpenDealWithoutActivityGoesStaleOncePerInactivity) {
  const absl::Duration after = absl::Hours(24 * 14);
  // Not yet: 13 days after the last stage change.
  Opportunity().Given({Opened()}).When(FlagStale{kT0 + absl::Hours(24 * 13), after}).Then({});
  crm::v1::OpportunityWentStale stale;
  stale.set_opportunity_id("opp_1");
  stale.set_customer_id("cus_1");
  stale.set_owner_id("rep_ada");
  *stale.mutable_inactive_since() = ToProtoTimestamp(kT0);
  Opportunity().Given({Opened()}).When(FlagStale{kT0 + after, after}).Then({stale});
  // Raised already for this inactivity.
  Opportunity()
      .Given({Opened()})
      .GivenAt(kT0 + after, {stale})
      .When(FlagStale{kT0 + after * 3, after})
      .Then({});
  // An activity later starts a new period of inactivity.
  const absl::Time call = kT0 + after + absl::Hours(1);
  auto again = stale;
  *again.mutable_inactive_since() = ToProtoTimestamp(call);
  Opportunity()
      .Given({Opened()})
      .GivenAt(kT0 + after, {stale})
      .When(FlagStale{call + after - absl::Seconds(1), after, call})
      .Then({});
  Opportunity()
      .Given({Opened()})
      .GivenAt(kT0 + after, {stale})
      .When(FlagStale{call + after, after, call})
      .Then({again});
  // One logged after the reminder with an earlier time (written up late)
  // falls in the inactivity the reminder covered when that inactivity had
  // lasted a period by the reminder (raised here two hours late)...
  Opportunity()
      .Given({Opened()})
      .GivenAt(kT0 + after + absl::Hours(2), {stale})
      .When(FlagStale{kT0 + after + absl::Hours(3), after, kT0 + absl::Hours(1)})
      .Then({});
  // ... and starts a new one otherwise, reminded of after a whole period.
  const absl::Time late = kT0 + absl::Hours(24);
  auto after_late = stale;
  *after_late.mutable_inactive_since() = ToProtoTimestamp(late);
  Opportunity()
      .Given({Opened()})
      .GivenAt(kT0 + after + absl::Hours(2), {stale})
      .When(FlagStale{late + after, after, late})
      .Then({after_late});
}

TEST(StaleTest, AReminderCoversTheInactivityItWasRaisedFor) {
  const absl::Duration day = absl::Hours(24);
  crm::v1::Opportunity o;
  *o.mutable_stale_since() = ToProtoTimestamp(kT0);
  // Stored before reminders were stamped: its own inactivity only.
  EXPECT_TRUE(StaleReminderCovers(o, kT0, day));
  EXPECT_FALSE(StaleReminderCovers(o, kT0 + absl::Hours(1), day));
  *o.mutable_stale_reminded_at() = ToProtoTimestamp(kT0 + absl::Hours(25));
  EXPECT_TRUE(StaleReminderCovers(o, kT0 + absl::Hours(1), day)) << "written up late";
  // Less than a period before the reminder (written up late, or racing
  // it): the reminder did not cover that inactivity, which earns its own.
  EXPECT_FALSE(StaleReminderCovers(o, kT0 + absl::Hours(24) + absl::Minutes(30), day));
  EXPECT_FALSE(StaleReminderCovers(o, kT0 + absl::Hours(25), day)) << "answered at its very time";
  // A longer period configured since: still the inactivity it was raised
  // for, not a new one to remind of again.
  EXPECT_TRUE(StaleReminderCovers(o, kT0, absl::Hours(24 * 30)));
  o.clear_stale_since();
  EXPECT_FALSE(StaleReminderCovers(o, kT0, day));
}

TEST(StaleTest, ClosedDealsDoNotGoStale) {
  Opportunity()
      .Given({Opened(), Changed("prospecting", "lost", 0, absl::Hours(1),
                                crm::v1::STAGE_OUTCOME_LOST, "budget")})
      .When(FlagStale{kT0 + absl::Hours(24 * 365), absl::Hours(24)})
      .Then({});
  crm::v1::Opportunity o;
  o.set_outcome(crm::v1::STAGE_OUTCOME_OPEN);
  *o.mutable_stage_entered_at() = ToProtoTimestamp(kT0);
  EXPECT_TRUE(IsStale(o, absl::InfinitePast(), kT0 + absl::Hours(24), absl::Hours(24)));
  EXPECT_FALSE(IsStale(o, kT0 + absl::Hours(1), kT0 + absl::Hours(24), absl::Hours(24)));
}

TEST(ValidateOpportunityTest, BadInputNamesTheField) {
  crm::v1::OpenOpportunityRequest open = OpenCommand().request;
  ASSERT_TRUE(ValidateOpenOpportunity(open).ok());
  auto field_of = [](const absl::Status& st) {
    return std::string(st.message().substr(0, st.message().find(':')));
  };
  auto o = open;
  o.clear_name();
  EXPECT_EQ(field_of(ValidateOpenOpportunity(o)), "name");
  o = open;
  o.mutable_amount()->set_currency("eur");
  EXPECT_EQ(field_of(ValidateOpenOpportunity(o)), "amount.currency");
  o = open;
  o.mutable_amount()->set_minor_units(-1);
  EXPECT_EQ(field_of(ValidateOpenOpportunity(o)), "amount.minor_units");
  o = open;
  o.set_expected_close_date("2025-02-30");
  EXPECT_EQ(field_of(ValidateOpenOpportunity(o)), "expected_close_date");
  // Years before 1 parse and print back the same; no calendar date has them.
  for (const char* date : {"-001-01-01", "0000-01-01", "+025-01-01"}) {
    o.set_expected_close_date(date);
    EXPECT_EQ(field_of(ValidateOpenOpportunity(o)), "expected_close_date") << date;
  }
  o.set_expected_close_date("0001-01-01");
  EXPECT_TRUE(ValidateOpenOpportunity(o).ok());
  // A request id is a key: no line breaks or tabs, though notes may have them.
  for (const char* id : {"a\nb", "a\tb", "a\rb"}) {
    o = open;
    o.set_request_id(id);
    EXPECT_EQ(field_of(ValidateOpenOpportunity(o)), "request_id");
  }
  // Nor may a deal's name: it is one line in lists and the forecast.
  o = open;
  o.set_name("Deal\nInjected");
  EXPECT_EQ(field_of(ValidateOpenOpportunity(o)), "name");
  // Checked as stored, trimmed: a form's trailing newline or padding is no
  // control character and no excess length.
  o.set_name("Acme renewal\n");
  EXPECT_TRUE(ValidateOpenOpportunity(o).ok());
  o.set_name(std::string(200, 'x') + "   ");
  EXPECT_TRUE(ValidateOpenOpportunity(o).ok());

  crm::v1::ChangeOpportunityStageRequest change;
  change.set_request_id("r");
  change.set_opportunity_id("opp_1");
  change.set_stage_id("proposal");
  EXPECT_EQ(field_of(ValidateChangeStage(change)), "expected_version");
  change.set_expected_version(3);
  EXPECT_TRUE(ValidateChangeStage(change).ok());
  change.set_lost_reason("  ");  // a lost stage needs a reason, not blanks
  EXPECT_EQ(field_of(ValidateChangeStage(change)), "lost_reason");

  crm::v1::ReviseOpportunityRequest revise;
  revise.set_request_id("r");
  revise.set_opportunity_id("opp_1");
  revise.set_expected_version(1);
  EXPECT_EQ(field_of(ValidateRevise(revise)), "amount");
  revise.set_name("   ");
  EXPECT_EQ(field_of(ValidateRevise(revise)), "name");
  revise.set_name("Renewal 2027");
  EXPECT_TRUE(ValidateRevise(revise).ok());
  revise.set_name(" Renewal 2027\r\n");
  EXPECT_TRUE(ValidateRevise(revise).ok());
}

}  // namespace
}  // namespace crm::sales
