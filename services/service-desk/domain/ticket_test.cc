#include "services/service-desk/domain/ticket.h"

#include <algorithm>

#include "gtest/gtest.h"
#include "libs/common/ids.h"
#include "libs/common/testing/given_when_then.h"

namespace crm::service_desk {
namespace {

using crm::v1::Ticket;
using TicketScenario = crm::testing::Scenario<Ticket, TicketEvent, TicketCommand>;

absl::Time T(int minutes) { return absl::FromUnixSeconds(1704099600) + absl::Minutes(minutes); }
google::protobuf::Timestamp Ts(int minutes) { return ToProtoTimestamp(T(minutes)); }

crm::v1::SlaPolicy Policy(crm::v1::TicketPriority p, int first, int resolution, int warning) {
  crm::v1::SlaPolicy policy;
  policy.set_priority(p);
  policy.set_first_response_minutes(first);
  policy.set_resolution_minutes(resolution);
  policy.set_warning_minutes(warning);
  return policy;
}

// Always open, so due times are plain minutes after T(0).
const SlaRules& Rules() {
  static const SlaRules rules = [] {
    SlaRules r;
    r.policies[crm::v1::TICKET_PRIORITY_NORMAL] =
        Policy(crm::v1::TICKET_PRIORITY_NORMAL, 60, 240, 15);
    r.policies[crm::v1::TICKET_PRIORITY_URGENT] =
        Policy(crm::v1::TICKET_PRIORITY_URGENT, 15, 60, 5);
    r.reopen_window = absl::Hours(48);
    return r;
  }();
  return rules;
}

TicketScenario Scenario() {
  return TicketScenario(
      [](const std::optional<Ticket>& s, const TicketCommand& c) { return Decide(s, c, Rules()); },
      [](Ticket& s, const TicketEvent& e, absl::Time t) { Apply(s, e, t); });
}

crm::v1::SlaClock Clock(int due, int warning, int target, int warning_before) {
  crm::v1::SlaClock c;
  c.set_target_seconds(target * 60);
  c.set_warning_before_seconds(warning_before * 60);
  *c.mutable_due_at() = Ts(due);
  *c.mutable_warning_at() = Ts(warning);
  return c;
}

OpenTicket Open(int at = 0, crm::v1::TicketPriority priority = crm::v1::TICKET_PRIORITY_NORMAL,
                std::string team = "", std::string agent = "") {
  OpenTicket o;
  o.request.set_request_id("r-open");
  o.request.set_customer_id("cus_1");
  o.request.set_channel(crm::v1::TICKET_CHANNEL_EMAIL);
  o.request.set_subject("Printer offline");
  o.request.set_description("It blinks.");
  o.request.set_product("printer-x");
  o.request.set_category("hardware");
  o.request.set_priority(priority);
  o.ticket_id = "tkt_1";
  o.known_customer = true;
  o.team_id = std::move(team);
  o.assignee_id = std::move(agent);
  o.strategy = o.team_id.empty() ? crm::v1::ASSIGNMENT_STRATEGY_UNSPECIFIED
                                 : crm::v1::ASSIGNMENT_STRATEGY_ROUND_ROBIN;
  o.now = T(at);
  return o;
}

ReplyToTicket AgentReply(int at) {
  return {"msg_a", "agent:ann", crm::v1::AUTHOR_TYPE_AGENT, "On it", T(at)};
}

// The TicketReplied that AgentReply decides.
crm::v1::TicketReplied AgentReplied(bool first_response) {
  crm::v1::TicketReplied reply;
  reply.set_ticket_id("tkt_1");
  reply.set_message_id("msg_a");
  reply.set_author_id("agent:ann");
  reply.set_author_type(crm::v1::AUTHOR_TYPE_AGENT);
  reply.set_body("On it");
  reply.set_first_response(first_response);
  return reply;
}
ReplyToTicket CustomerReply(int at) {
  return {"msg_c", "cus_1", crm::v1::AUTHOR_TYPE_CUSTOMER, "Still broken", T(at)};
}

// The events the commands produce one after the other, for Given().
std::vector<TicketEvent> History(const std::vector<TicketCommand>& commands) {
  std::optional<Ticket> state;
  std::vector<TicketEvent> all;
  for (const auto& c : commands) {
    auto events = Decide(state, c, Rules());
    EXPECT_TRUE(events.ok()) << events.status();
    if (!events.ok()) return all;
    for (auto& e : *events) {
      if (!state) state.emplace();
      Apply(*state, e, absl::UnixEpoch());
      all.push_back(std::move(e));
    }
  }
  return all;
}

Ticket Fold(const std::vector<TicketCommand>& commands) {
  Ticket t;
  for (const auto& e : History(commands)) Apply(t, e, absl::UnixEpoch());
  return t;
}

// ---- opening and assignment ----

TEST(OpenTicketTest, OpensWithSlaClocksAndRoutedAssignment) {
  crm::v1::TicketOpened opened;
  opened.set_ticket_id("tkt_1");
  opened.set_customer_id("cus_1");
  opened.set_channel(crm::v1::TICKET_CHANNEL_EMAIL);
  opened.set_subject("Printer offline");
  opened.set_description("It blinks.");
  opened.set_product("printer-x");
  opened.set_category("hardware");
  opened.set_priority(crm::v1::TICKET_PRIORITY_NORMAL);
  opened.set_known_customer(true);
  *opened.mutable_first_response() = Clock(60, 45, 60, 15);
  *opened.mutable_resolution() = Clock(240, 225, 240, 15);
  crm::v1::TicketAssigned assigned;
  assigned.set_ticket_id("tkt_1");
  assigned.set_team_id("support");
  assigned.set_assignee_id("agent:ann");
  assigned.set_reason(crm::v1::ASSIGNMENT_REASON_ROUTING);
  assigned.set_strategy(crm::v1::ASSIGNMENT_STRATEGY_ROUND_ROBIN);
  Scenario()
      .Given({})
      .When(Open(0, crm::v1::TICKET_PRIORITY_NORMAL, "support", "agent:ann"))
      .Then({opened, assigned});
}

TEST(OpenTicketTest, UnroutedTicketIsOnlyOpened) {
  auto events = Decide(std::nullopt, Open(), Rules());
  ASSERT_TRUE(events.ok()) << events.status();
  ASSERT_EQ(events->size(), 1u);
  EXPECT_TRUE(std::holds_alternative<crm::v1::TicketOpened>(events->front()));
}

TEST(OpenTicketTest, PriorityWithoutPolicyHasNoTargets) {
  const Ticket t = Fold({Open(0, crm::v1::TICKET_PRIORITY_LOW)});
  EXPECT_EQ(t.first_response().target_seconds(), 0);
  EXPECT_FALSE(t.has_next_sla_check_at());
}

TEST(OpenTicketTest, OpeningTwiceIsRejected) {
  Scenario()
      .Given(History({Open()}))
      .When(Open())
      .ThenError(absl::StatusCode::kAlreadyExists, "tkt_1");
}

TEST(OpenTicketTest, OtherCommandsNeedATicket) {
  // The command carries no id: the caller adds it after the field.
  Scenario().Given({}).When(AgentReply(1)).ThenError(absl::StatusCode::kNotFound, "ticket_id: ");
}

TEST(OpenTicketTest, OpenedTicketIsNewAndScheduledForTheFirstWarning) {
  const Ticket t = Fold({Open(0, crm::v1::TICKET_PRIORITY_NORMAL, "support", "agent:ann")});
  EXPECT_EQ(t.status(), crm::v1::TICKET_STATUS_NEW);
  EXPECT_EQ(t.team_id(), "support");
  EXPECT_EQ(t.assignee_id(), "agent:ann");
  EXPECT_EQ(t.version(), 2);
  EXPECT_EQ(FromProtoTimestamp(t.next_sla_check_at()), T(45));
}

TEST(AssignTicketTest, ReassignmentRecordsThePreviousAssignee) {
  crm::v1::TicketAssigned e;
  e.set_ticket_id("tkt_1");
  e.set_team_id("billing");
  e.set_assignee_id("agent:bob");
  e.set_previous_team_id("support");
  e.set_previous_assignee_id("agent:ann");
  e.set_reason(crm::v1::ASSIGNMENT_REASON_MANUAL);
  Scenario()
      .Given(History({Open(0, crm::v1::TICKET_PRIORITY_NORMAL, "support", "agent:ann")}))
      .When(AssignTicket{"billing", "agent:bob", {}, T(5)})
      .Then({e});
}

// A team without agents keeps the ticket in its queue: no strategy picked.
TEST(AssignTicketTest, ATeamWithoutAgentsNamesNoStrategy) {
  crm::v1::TicketAssigned e;
  e.set_ticket_id("tkt_1");
  e.set_team_id("billing");
  e.set_previous_team_id("support");
  e.set_previous_assignee_id("agent:ann");
  e.set_reason(crm::v1::ASSIGNMENT_REASON_MANUAL);
  Scenario()
      .Given(History({Open(0, crm::v1::TICKET_PRIORITY_NORMAL, "support", "agent:ann")}))
      .When(AssignTicket{"billing", "", crm::v1::ASSIGNMENT_STRATEGY_ROUND_ROBIN, T(5)})
      .Then({e});
  OpenTicket open = Open(0, crm::v1::TICKET_PRIORITY_NORMAL, "billing", "");
  open.strategy = crm::v1::ASSIGNMENT_STRATEGY_ROUND_ROBIN;
  auto events = Decide(std::nullopt, open, Rules());
  ASSERT_TRUE(events.ok()) << events.status();
  ASSERT_EQ(events->size(), 2u);
  const auto* assigned = std::get_if<crm::v1::TicketAssigned>(&events->back());
  ASSERT_NE(assigned, nullptr);
  EXPECT_EQ(assigned->strategy(), crm::v1::ASSIGNMENT_STRATEGY_UNSPECIFIED);
}

TEST(AssignTicketTest, SameAssignmentAndInactiveTicketsAreRejected) {
  Scenario()
      .Given(History({Open(0, crm::v1::TICKET_PRIORITY_NORMAL, "support", "agent:ann")}))
      .When(AssignTicket{"support", "agent:ann", {}, T(5)})
      .ThenError(absl::StatusCode::kFailedPrecondition, "already assigned");
  Scenario()
      .Given(History({Open(), ResolveTicket{"fixed", "", T(5)}}))
      .When(AssignTicket{"support", "agent:ann", {}, T(6)})
      .ThenError(absl::StatusCode::kFailedPrecondition, "TICKET_STATUS_RESOLVED");
}

// ---- conversation and status flow ----

TEST(ReplyTest, FirstAgentReplyIsTheFirstResponseAndOpensTheTicket) {
  const crm::v1::TicketReplied reply = AgentReplied(/*first_response=*/true);
  crm::v1::TicketStatusChanged opened;
  opened.set_ticket_id("tkt_1");
  opened.set_from_status(crm::v1::TICKET_STATUS_NEW);
  opened.set_to_status(crm::v1::TICKET_STATUS_OPEN);
  *opened.mutable_first_response() = Clock(60, 45, 60, 15);
  *opened.mutable_first_response()->mutable_met_at() = Ts(20);
  *opened.mutable_resolution() = Clock(240, 225, 240, 15);
  auto s = Scenario();
  s.Given(History({Open()})).When(AgentReply(20)).Then({reply, opened});
}

TEST(ReplyTest, LaterAgentRepliesAreNotFirstResponses) {
  auto s = Scenario();
  s.Given(History({Open(), AgentReply(20)})).When(AgentReply(30));
  const crm::v1::TicketReplied reply = AgentReplied(/*first_response=*/false);
  s.Then({reply});
}

TEST(ReplyTest, ReplyAfterAResolutionWithoutOneIsNotTheFirstResponse) {
  const crm::v1::TicketReplied reply = AgentReplied(/*first_response=*/false);
  const std::vector<TicketCommand> resolved_unanswered = {Open(), ResolveTicket{"", "", T(30)},
                                                          ReopenTicket{"came back", T(1000)}};
  Scenario().Given(History(resolved_unanswered)).When(AgentReply(1100)).Then({reply});

  std::vector<TicketCommand> replied = resolved_unanswered;
  replied.push_back(AgentReply(1100));
  const Ticket t = Fold(replied);
  EXPECT_FALSE(t.has_first_responded_at());
  EXPECT_EQ(FromProtoTimestamp(t.first_response().met_at()), T(30)) << "met by the resolution";

  // Without a first-response target there is no clock, and still no flag.
  Scenario()
      .Given(History({Open(0, crm::v1::TICKET_PRIORITY_LOW), ResolveTicket{"", "", T(30)},
                      ReopenTicket{"came back", T(1000)}}))
      .When(AgentReply(1100))
      .Then({reply});
}

TEST(ReplyTest, AgentReplyOnAClosedTicketSaysToOpenANewOne) {
  // Not "reopen it": a closed ticket cannot be reopened.
  const std::vector<TicketCommand> closed = {Open(), ResolveTicket{"", "", T(5)},
                                             CloseTicket{T(6)}};
  Scenario()
      .Given(History(closed))
      .When(AgentReply(7))
      .ThenError(absl::StatusCode::kFailedPrecondition, "open a new ticket");
  // A resolved one is reopened first.
  Scenario()
      .Given(History({Open(), ResolveTicket{"", "", T(5)}}))
      .When(AgentReply(7))
      .ThenError(absl::StatusCode::kFailedPrecondition, "reopen it before replying");
}

TEST(ReplyTest, CustomerReplyOnNewTicketChangesNothingElse) {
  const Ticket t = Fold({Open(), CustomerReply(10)});
  EXPECT_EQ(t.status(), crm::v1::TICKET_STATUS_NEW);
  EXPECT_FALSE(t.has_first_responded_at());
  EXPECT_EQ(t.message_count(), 1);
}

TEST(ReplyTest, InternalNoteIsKeptOffTheStatusFlow) {
  crm::v1::TicketNoteAdded note;
  note.set_ticket_id("tkt_1");
  note.set_message_id("msg_n");
  note.set_author_id("agent:ann");
  note.set_body("Known firmware bug");
  Scenario()
      .Given(History({Open()}))
      .When(AddInternalNote{"msg_n", "agent:ann", "Known firmware bug", T(5)})
      .Then({note});
  // Resolved tickets still take notes; closed ones do not.
  Scenario()
      .Given(History({Open(), ResolveTicket{"", "", T(5)}}))
      .When(AddInternalNote{"msg_n", "agent:ann", "after the fact", T(6)})
      .Then({[] {
        crm::v1::TicketNoteAdded n;
        n.set_ticket_id("tkt_1");
        n.set_message_id("msg_n");
        n.set_author_id("agent:ann");
        n.set_body("after the fact");
        return n;
      }()});
  Scenario()
      .Given(History({Open(), ResolveTicket{"", "", T(5)}, CloseTicket{T(6)}}))
      .When(AddInternalNote{"msg_n", "agent:ann", "too late", T(7)})
      .ThenError(absl::StatusCode::kFailedPrecondition, "closed");
}

TEST(PendingTest, WaitingOnTheCustomerPausesTheRunningClocks) {
  crm::v1::TicketStatusChanged pending;
  pending.set_ticket_id("tkt_1");
  pending.set_from_status(crm::v1::TICKET_STATUS_OPEN);
  pending.set_to_status(crm::v1::TICKET_STATUS_PENDING);
  *pending.mutable_first_response() = Clock(60, 45, 60, 15);
  *pending.mutable_first_response()->mutable_met_at() = Ts(20);
  crm::v1::SlaClock resolution;
  resolution.set_target_seconds(240 * 60);
  resolution.set_warning_before_seconds(15 * 60);
  resolution.set_paused(true);
  resolution.set_remaining_seconds(140 * 60);  // due at 240, paused at 100
  *pending.mutable_resolution() = resolution;
  Scenario()
      .Given(History({Open(), AgentReply(20)}))
      .When(MarkTicketPending{T(100)})
      .Then({pending});
}

TEST(PendingTest, OnlyAnOpenTicketCanWait) {
  Scenario()
      .Given(History({Open()}))
      .When(MarkTicketPending{T(1)})
      .ThenError(absl::StatusCode::kFailedPrecondition, "TICKET_STATUS_NEW");
  Scenario()
      .Given(History({Open(), AgentReply(1), MarkTicketPending{T(2)}}))
      .When(MarkTicketPending{T(3)})
      .ThenError(absl::StatusCode::kFailedPrecondition, "TICKET_STATUS_PENDING");
}

TEST(PendingTest, CustomerReplyResumesWithTheTimeLeft) {
  const Ticket t = Fold({Open(), AgentReply(20), MarkTicketPending{T(100)}, CustomerReply(1000)});
  EXPECT_EQ(t.status(), crm::v1::TICKET_STATUS_OPEN);
  EXPECT_FALSE(t.resolution().paused());
  EXPECT_EQ(FromProtoTimestamp(t.resolution().due_at()), T(1140));
  EXPECT_EQ(FromProtoTimestamp(t.resolution().warning_at()), T(1125));
  EXPECT_EQ(FromProtoTimestamp(t.next_sla_check_at()), T(1125));
}

TEST(PendingTest, AgentReplyKeepsTheTicketWaiting) {
  const Ticket t = Fold({Open(), AgentReply(20), MarkTicketPending{T(100)}, AgentReply(110)});
  EXPECT_EQ(t.status(), crm::v1::TICKET_STATUS_PENDING);
  EXPECT_FALSE(t.has_next_sla_check_at());
}

TEST(ResolveTest, ResolutionStopsTheClocksAndAsksForASurveyOnce) {
  crm::v1::TicketResolved resolved;
  resolved.set_ticket_id("tkt_1");
  resolved.set_resolution_note("Firmware updated");
  resolved.set_solution_article_id("art_1");
  // Never answered: resolving is the first response.
  *resolved.mutable_first_response() = Clock(60, 45, 60, 15);
  *resolved.mutable_first_response()->mutable_met_at() = Ts(30);
  crm::v1::SlaClock resolution;
  resolution.set_target_seconds(240 * 60);
  resolution.set_warning_before_seconds(15 * 60);
  resolution.set_paused(true);
  resolution.set_remaining_seconds(210 * 60);
  *resolution.mutable_met_at() = Ts(30);
  // Met on time: the due time stays to compare with.
  *resolution.mutable_due_at() = Ts(240);
  *resolved.mutable_resolution() = resolution;
  *resolved.mutable_reopen_until() = Ts(30 + 48 * 60);
  crm::v1::CsatSurveyRequested survey;
  survey.set_ticket_id("tkt_1");
  survey.set_customer_id("cus_1");
  Scenario()
      .Given(History({Open()}))
      .When(ResolveTicket{"Firmware updated", "art_1", T(30)})
      .Then({resolved, survey});

  // Resolved again after a reopen: no second survey.
  auto events = History({Open(), ResolveTicket{"", "", T(30)}, ReopenTicket{"no", T(40)},
                         ResolveTicket{"", "", T(50)}});
  EXPECT_TRUE(std::holds_alternative<crm::v1::TicketResolved>(events.back()));
  EXPECT_EQ(std::count_if(events.begin(), events.end(),
                          [](const TicketEvent& e) {
                            return std::holds_alternative<crm::v1::CsatSurveyRequested>(e);
                          }),
            1);
}

TEST(ResolveTest, OnlyActiveTicketsResolveAndOnlyResolvedOnesClose) {
  Scenario()
      .Given(History({Open(), ResolveTicket{"", "", T(1)}}))
      .When(ResolveTicket{"", "", T(2)})
      .ThenError(absl::StatusCode::kFailedPrecondition, "TICKET_STATUS_RESOLVED");
  Scenario()
      .Given(History({Open()}))
      .When(CloseTicket{T(2)})
      .ThenError(absl::StatusCode::kFailedPrecondition, "only a resolved ticket");
  crm::v1::TicketClosed closed;
  closed.set_ticket_id("tkt_1");
  Scenario()
      .Given(History({Open(), ResolveTicket{"", "", T(1)}}))
      .When(CloseTicket{T(2)})
      .Then({closed});

  // A closed ticket shows no reopen window: it cannot be reopened.
  Ticket state;
  for (const auto& e : History({Open(), ResolveTicket{"", "", T(1)}, CloseTicket{T(2)}})) {
    Apply(state, e, T(2));
  }
  EXPECT_EQ(state.status(), crm::v1::TICKET_STATUS_CLOSED);
  EXPECT_FALSE(state.has_reopen_until());
}

TEST(ReopenTest, ReopenWithinTheWindowResumesTheResolutionClock) {
  const Ticket t = Fold({Open(), AgentReply(20), ResolveTicket{"Firmware updated", "art_1", T(100)},
                         ReopenTicket{"came back", T(1000)}});
  EXPECT_EQ(t.status(), crm::v1::TICKET_STATUS_OPEN);
  // The resolution did not hold: its note goes; the linked article stays.
  EXPECT_EQ(t.resolution_note(), "");
  EXPECT_EQ(t.solution_article_id(), "art_1");
  EXPECT_EQ(t.reopen_count(), 1);
  EXPECT_FALSE(t.has_resolved_at());
  EXPECT_FALSE(t.resolution().has_met_at());
  // 140 minutes were left at resolution.
  EXPECT_EQ(FromProtoTimestamp(t.resolution().due_at()), T(1140));
  EXPECT_TRUE(t.first_response().has_met_at());
}

TEST(ReopenTest, ReopenAfterTheWindowOrOfAClosedTicketIsRejected) {
  Scenario()
      .Given(History({Open(), ResolveTicket{"", "", T(0)}}))
      .When(ReopenTicket{"late", T(48 * 60 + 1)})
      .ThenError(absl::StatusCode::kFailedPrecondition, "open a new ticket");
  // The window's end is the instant the timer closes the ticket.
  Scenario()
      .Given(History({Open(), ResolveTicket{"", "", T(0)}}))
      .When(ReopenTicket{"at the end", T(48 * 60)})
      .ThenError(absl::StatusCode::kFailedPrecondition, "open a new ticket");
  Scenario()
      .Given(History({Open(), ResolveTicket{"", "", T(0)}, CloseTicket{T(1)}}))
      .When(ReopenTicket{"", T(2)})
      .ThenError(absl::StatusCode::kFailedPrecondition, "TICKET_STATUS_CLOSED");
  Scenario()
      .Given(History({Open()}))
      .When(ReopenTicket{"", T(2)})
      .ThenError(absl::StatusCode::kFailedPrecondition, "only a resolved ticket");
}

TEST(ReopenTest, CustomerReplyToAResolvedTicketReopensIt) {
  auto events = History({Open(), ResolveTicket{"", "", T(10)}, CustomerReply(20)});
  ASSERT_EQ(events.size(), 5u);
  const auto& reopened = std::get<crm::v1::TicketReopened>(events[3]);
  EXPECT_EQ(reopened.reason(), "customer replied");
  EXPECT_EQ(reopened.from_status(), crm::v1::TICKET_STATUS_RESOLVED);
  EXPECT_TRUE(std::holds_alternative<crm::v1::TicketReplied>(events[4]));
  Scenario()
      .Given(History({Open(), ResolveTicket{"", "", T(10)}}))
      .When(CustomerReply(10 + 48 * 60 + 1))
      .ThenError(absl::StatusCode::kFailedPrecondition, "open a new ticket");
  Scenario()
      .Given(History({Open(), ResolveTicket{"", "", T(10)}}))
      .When(AgentReply(11))
      .ThenError(absl::StatusCode::kFailedPrecondition, "reopen it");
}

// ---- solution and satisfaction ----

TEST(SolutionTest, LinkingAnArticleRecordsItOnce) {
  crm::v1::TicketSolutionLinked linked;
  linked.set_ticket_id("tkt_1");
  linked.set_article_id("art_1");
  Scenario().Given(History({Open()})).When(LinkSolutionArticle{"art_1", T(1)}).Then({linked});
  Scenario()
      .Given(History({Open(), LinkSolutionArticle{"art_1", T(1)}}))
      .When(LinkSolutionArticle{"art_1", T(2)})
      .ThenError(absl::StatusCode::kFailedPrecondition, "already");
  EXPECT_EQ(Fold({Open(), LinkSolutionArticle{"art_1", T(1)}}).solution_article_id(), "art_1");
}

TEST(CsatTest, RatedOnceAfterResolution) {
  crm::v1::CsatSubmitted csat;
  csat.set_ticket_id("tkt_1");
  csat.set_score(4);
  csat.set_comment("quick");
  csat.set_nps(9);
  Scenario()
      .Given(History({Open(), ResolveTicket{"", "", T(1)}}))
      .When(SubmitCsat{4, "quick", 9, T(2)})
      .Then({csat});
  Scenario()
      .Given(History({Open(), ResolveTicket{"", "", T(1)}, SubmitCsat{4, "", {}, T(2)}}))
      .When(SubmitCsat{5, "", {}, T(3)})
      .ThenError(absl::StatusCode::kFailedPrecondition, "already has a satisfaction rating");
  Scenario()
      .Given(History({Open()}))
      .When(SubmitCsat{5, "", {}, T(3)})
      .ThenError(absl::StatusCode::kFailedPrecondition, "after resolution");
  // The survey was sent at the first resolution: its answer is taken while
  // the ticket is reopened, since none is sent again.
  Scenario()
      .Given(History({Open(), ResolveTicket{"", "", T(1)}, ReopenTicket{"came back", T(2)}}))
      .When(SubmitCsat{4, "quick", 9, T(3)})
      .Then({csat});
  // Closed tickets can still be rated.
  const Ticket t = Fold(
      {Open(), ResolveTicket{"", "", T(1)}, CloseTicket{T(2)}, SubmitCsat{2, "slow", {}, T(3)}});
  EXPECT_EQ(t.csat().score(), 2);
  EXPECT_FALSE(t.csat().has_nps());
}

// ---- timers: SLA warnings, breaches, escalation, auto-close ----

CheckTimers Visit(int at, std::string lead = "lead:lea") {
  return CheckTimers{T(at), std::move(lead)};
}

TEST(TimerTest, NothingIsDueBeforeTheWarning) {
  Scenario().Given(History({Open()})).When(Visit(44)).Then({});
}

TEST(TimerTest, WarningIsRaisedOnceAtTheWarningTime) {
  crm::v1::TicketSlaWarningRaised warning;
  warning.set_ticket_id("tkt_1");
  warning.set_target(crm::v1::SLA_TARGET_FIRST_RESPONSE);
  *warning.mutable_due_at() = Ts(60);
  warning.set_priority(crm::v1::TICKET_PRIORITY_NORMAL);
  warning.set_team_id("support");
  warning.set_assignee_id("agent:ann");
  const auto opened = History({Open(0, crm::v1::TICKET_PRIORITY_NORMAL, "support", "agent:ann")});
  Scenario().Given(opened).When(Visit(45)).Then({warning});
  auto warned = opened;
  warned.push_back(warning);
  Scenario().Given(warned).When(Visit(50)).Then({});
}

TEST(TimerTest, BreachEscalatesAndNotifiesTheTeamLeadExactlyOnce) {
  auto history =
      History({Open(0, crm::v1::TICKET_PRIORITY_NORMAL, "support", "agent:ann"), Visit(45)});
  crm::v1::TicketSlaBreached breached;
  breached.set_ticket_id("tkt_1");
  breached.set_target(crm::v1::SLA_TARGET_FIRST_RESPONSE);
  *breached.mutable_due_at() = Ts(60);
  breached.set_priority(crm::v1::TICKET_PRIORITY_NORMAL);
  breached.set_team_id("support");
  breached.set_assignee_id("agent:ann");
  crm::v1::TicketEscalated escalated;
  escalated.set_ticket_id("tkt_1");
  escalated.set_target(crm::v1::SLA_TARGET_FIRST_RESPONSE);
  escalated.set_from_priority(crm::v1::TICKET_PRIORITY_NORMAL);
  escalated.set_to_priority(crm::v1::TICKET_PRIORITY_HIGH);
  crm::v1::TeamLeadNotified notified;
  notified.set_ticket_id("tkt_1");
  notified.set_team_id("support");
  notified.set_lead_id("lead:lea");
  notified.set_target(crm::v1::SLA_TARGET_FIRST_RESPONSE);
  notified.set_reason("first response target breached, due " + FormatRfc3339(T(60)));
  Scenario().Given(history).When(Visit(60)).Then({breached, escalated, notified});

  for (auto& e : std::vector<TicketEvent>{breached, escalated, notified}) history.push_back(e);
  auto s = Scenario();
  s.Given(history).When(Visit(61)).Then({});
  EXPECT_EQ(s.state()->priority(), crm::v1::TICKET_PRIORITY_HIGH);
  EXPECT_TRUE(s.state()->breached());
  EXPECT_TRUE(s.state()->first_response().breached());
  EXPECT_EQ(s.state()->escalation_count(), 1);
  // Next: the resolution warning.
  EXPECT_EQ(FromProtoTimestamp(s.state()->next_sla_check_at()), T(225));
}

TEST(TimerTest, BothTargetsOverdueBreachTwiceAndClimbTwoSteps) {
  auto events = History({Open(), Visit(500, "")});
  ASSERT_EQ(events.size(), 5u);  // opened, 2 × (breached, escalated), no lead to notify
  EXPECT_EQ(std::get<crm::v1::TicketEscalated>(events[2]).to_priority(),
            crm::v1::TICKET_PRIORITY_HIGH);
  EXPECT_EQ(std::get<crm::v1::TicketSlaBreached>(events[3]).target(),
            crm::v1::SLA_TARGET_RESOLUTION);
  EXPECT_EQ(std::get<crm::v1::TicketEscalated>(events[4]).to_priority(),
            crm::v1::TICKET_PRIORITY_URGENT);
  const Ticket t = Fold({Open(), Visit(500, "")});
  EXPECT_FALSE(t.has_next_sla_check_at());
}

TEST(TimerTest, OwedBreachesAreTheBreachesAloneAndOnlyOnce) {
  const Ticket opened = Fold({Open(0, crm::v1::TICKET_PRIORITY_NORMAL, "support", "agent:ann")});
  EXPECT_TRUE(OwedBreaches(opened, Visit(59)).empty());
  EXPECT_TRUE(OwedBreaches(opened, Visit(45)).empty());  // a warning is not owed to a command
  const auto owed = OwedBreaches(opened, Visit(61));
  ASSERT_EQ(owed.size(), 3u);  // breached, escalated, lead notified: as the timer does
  EXPECT_EQ(std::get<crm::v1::TicketSlaBreached>(owed[0]).target(),
            crm::v1::SLA_TARGET_FIRST_RESPONSE);
  const Ticket breached =
      Fold({Open(0, crm::v1::TICKET_PRIORITY_NORMAL, "support", "agent:ann"), Visit(61)});
  EXPECT_TRUE(OwedBreaches(breached, Visit(62)).empty());
  // A target met in time owes nothing.
  const Ticket met =
      Fold({Open(), ReplyToTicket{"m1", "agent:ann", crm::v1::AUTHOR_TYPE_AGENT, "hi", T(30)}});
  EXPECT_TRUE(OwedBreaches(met, Visit(61)).empty());
}

TEST(TimerTest, UrgentTicketIsNotEscalatedFurtherButTheLeadIsTold) {
  auto events = History(
      {Open(0, crm::v1::TICKET_PRIORITY_URGENT, "support", "agent:ann"), Visit(10), Visit(15)});
  ASSERT_EQ(events.size(), 5u);  // opened, assigned, warning, breached, lead notified
  EXPECT_TRUE(std::holds_alternative<crm::v1::TicketSlaWarningRaised>(events[2]));
  EXPECT_TRUE(std::holds_alternative<crm::v1::TicketSlaBreached>(events[3]));
  EXPECT_TRUE(std::holds_alternative<crm::v1::TeamLeadNotified>(events[4]));
}

TEST(TimerTest, FirstResponseInTimeMeansNoFirstResponseEvents) {
  auto s = Scenario();
  s.Given(History({Open(), AgentReply(30)})).When(Visit(100)).Then({});
  EXPECT_EQ(FromProtoTimestamp(s.state()->next_sla_check_at()), T(225));
}

TEST(TimerTest, PendingTicketOwesNothingHoweverLongItWaits) {
  Scenario()
      .Given(History({Open(), AgentReply(20), MarkTicketPending{T(30)}}))
      .When(Visit(100000))
      .Then({});
}

TEST(TimerTest, ResolvedTicketClosesWhenTheReopenWindowEnds) {
  const auto history = History({Open(), ResolveTicket{"", "", T(10)}});
  Scenario().Given(history).When(Visit(10 + 48 * 60 - 1)).Then({});
  crm::v1::TicketClosed closed;
  closed.set_ticket_id("tkt_1");
  auto s = Scenario();
  s.Given(history).When(Visit(10 + 48 * 60));
  EXPECT_EQ(FromProtoTimestamp(s.state()->next_sla_check_at()), T(10 + 48 * 60));
  s.Then({closed});
  EXPECT_FALSE(
      Fold({Open(), ResolveTicket{"", "", T(10)}, Visit(10 + 48 * 60)}).has_next_sla_check_at());
}

TEST(TicketEventTest, EnvelopePayloadUnpacksToTheEventAlternative) {
  crm::v1::EventEnvelope envelope;
  crm::v1::TicketClosed closed;
  closed.set_ticket_id("tkt_9");
  envelope.mutable_payload()->PackFrom(closed);
  auto event = TicketEventFrom(envelope);
  ASSERT_TRUE(event.ok()) << event.status();
  EXPECT_EQ(std::get<crm::v1::TicketClosed>(*event).ticket_id(), "tkt_9");
  envelope.mutable_payload()->PackFrom(crm::v1::ArticlePublished());
  EXPECT_EQ(TicketEventFrom(envelope).status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace crm::service_desk
