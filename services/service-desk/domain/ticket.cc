#include "services/service-desk/domain/ticket.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "libs/common/ids.h"

namespace crm::service_desk {
namespace {

using crm::v1::Ticket;
using crm::v1::TicketStatus;

absl::Status WrongStatus(const Ticket& t, absl::string_view what) {
  return absl::FailedPreconditionError(absl::StrCat(
      "ticket ", t.ticket_id(), " is ", crm::v1::TicketStatus_Name(t.status()), ": ", what));
}

absl::Time At(const google::protobuf::Timestamp& ts) { return FromProtoTimestamp(ts); }

crm::v1::TicketPriority OneUp(crm::v1::TicketPriority p) {
  return p >= crm::v1::TICKET_PRIORITY_URGENT ? crm::v1::TICKET_PRIORITY_URGENT
                                              : static_cast<crm::v1::TicketPriority>(p + 1);
}

std::vector<TicketEvent> Open(const OpenTicket& c, const SlaRules& rules) {
  const auto& r = c.request;
  crm::v1::TicketOpened e;
  e.set_ticket_id(c.ticket_id);
  e.set_customer_id(r.customer_id());
  e.set_channel(r.channel());
  e.set_subject(r.subject());
  e.set_description(r.description());
  e.set_product(r.product());
  e.set_category(r.category());
  e.set_priority(r.priority());
  e.set_known_customer(c.known_customer);
  if (c.warranty_ends_at.has_value())
    *e.mutable_warranty_ends_at() = ToProtoTimestamp(*c.warranty_ends_at);
  crm::v1::SlaPolicy policy;
  if (auto it = rules.policies.find(r.priority()); it != rules.policies.end()) policy = it->second;
  const absl::Duration warning = absl::Minutes(policy.warning_minutes());
  *e.mutable_first_response() =
      StartClock(rules.calendar, c.now, absl::Minutes(policy.first_response_minutes()), warning);
  *e.mutable_resolution() =
      StartClock(rules.calendar, c.now, absl::Minutes(policy.resolution_minutes()), warning);
  std::vector<TicketEvent> events{std::move(e)};
  if (!c.team_id.empty()) {
    crm::v1::TicketAssigned a;
    a.set_ticket_id(c.ticket_id);
    a.set_team_id(c.team_id);
    a.set_assignee_id(c.assignee_id);
    a.set_reason(crm::v1::ASSIGNMENT_REASON_ROUTING);
    if (!c.assignee_id.empty()) a.set_strategy(c.strategy);
    events.push_back(std::move(a));
  }
  return events;
}

absl::StatusOr<std::vector<TicketEvent>> Assign(const Ticket& t, const AssignTicket& c) {
  if (!IsActive(t.status())) return WrongStatus(t, "only active tickets can be assigned");
  if (t.team_id() == c.team_id && t.assignee_id() == c.assignee_id) {
    return absl::FailedPreconditionError(
        absl::StrCat("ticket ", t.ticket_id(), " is already assigned to ",
                     c.assignee_id.empty() ? c.team_id : c.assignee_id));
  }
  crm::v1::TicketAssigned a;
  a.set_ticket_id(t.ticket_id());
  a.set_team_id(c.team_id);
  a.set_assignee_id(c.assignee_id);
  a.set_previous_team_id(t.team_id());
  a.set_previous_assignee_id(t.assignee_id());
  a.set_reason(crm::v1::ASSIGNMENT_REASON_MANUAL);
  // A strategy that found no agent picked nobody.
  if (!c.assignee_id.empty()) a.set_strategy(c.strategy);
  return std::vector<TicketEvent>{std::move(a)};
}

// `t` moving to `to`, with its SLA clocks as they stand after the move.
crm::v1::TicketStatusChanged StatusChanged(const Ticket& t, crm::v1::TicketStatus to,
                                           crm::v1::SlaClock first_response,
                                           crm::v1::SlaClock resolution) {
  crm::v1::TicketStatusChanged e;
  e.set_ticket_id(t.ticket_id());
  e.set_from_status(t.status());
  e.set_to_status(to);
  *e.mutable_first_response() = std::move(first_response);
  *e.mutable_resolution() = std::move(resolution);
  return e;
}

crm::v1::TicketReopened Reopened(const Ticket& t, absl::string_view reason, absl::Time now,
                                 const SlaRules& rules) {
  crm::v1::TicketReopened e;
  e.set_ticket_id(t.ticket_id());
  e.set_reason(std::string(reason));
  e.set_from_status(t.status());
  *e.mutable_first_response() = t.first_response();
  // The resolution clock goes on with the business time it had left.
  *e.mutable_resolution() = ResumeClock(rules.calendar, UnmeetClock(t.resolution()), now);
  return e;
}

absl::Status CheckReopenWindow(const Ticket& t, absl::Time now) {
  if (t.status() != crm::v1::TICKET_STATUS_RESOLVED) {
    return WrongStatus(t, "only a resolved ticket can be reopened");
  }
  // The window ends at reopen_until, when the timer closes the ticket.
  if (now >= At(t.reopen_until())) {
    return absl::FailedPreconditionError(
        absl::StrCat("ticket ", t.ticket_id(), " cannot be reopened after ",
                     FormatRfc3339(At(t.reopen_until())), ": open a new ticket"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<TicketEvent>> Reply(const Ticket& t, const ReplyToTicket& c,
                                               const SlaRules& rules) {
  crm::v1::TicketReplied reply;
  reply.set_ticket_id(t.ticket_id());
  reply.set_message_id(c.message_id);
  reply.set_author_id(c.author_id);
  reply.set_author_type(c.author_type);
  reply.set_body(c.body);
  std::vector<TicketEvent> events;
  // Closed is final for either side: a closed ticket cannot be reopened.
  if (t.status() == crm::v1::TICKET_STATUS_CLOSED) {
    return WrongStatus(t, "closed tickets take no replies; open a new ticket");
  }
  if (c.author_type == crm::v1::AUTHOR_TYPE_AGENT) {
    if (!IsActive(t.status())) return WrongStatus(t, "reopen it before replying");
    // A resolution answers the customer too (and meets the first-response
    // clock), so no reply after one is the first response, with or without
    // a target: flagged, it would report a first response long after the
    // one the clock recorded. Only a resolved ticket is ever reopened.
    reply.set_first_response(!t.has_first_responded_at() && t.reopen_count() == 0);
    events.push_back(reply);
    if (t.status() == crm::v1::TICKET_STATUS_NEW) {
      events.push_back(StatusChanged(t, crm::v1::TICKET_STATUS_OPEN,
                                     MeetClock(t.first_response(), c.now), t.resolution()));
    }
    return events;
  }
  // The customer: answering a pending ticket resumes the clocks, writing to
  // a resolved one reopens it while the window lasts.
  if (t.status() == crm::v1::TICKET_STATUS_RESOLVED) {
    if (auto st = CheckReopenWindow(t, c.now); !st.ok()) return st;
    events.push_back(Reopened(t, "customer replied", c.now, rules));
  }
  events.push_back(reply);
  if (t.status() == crm::v1::TICKET_STATUS_PENDING) {
    events.push_back(StatusChanged(t, crm::v1::TICKET_STATUS_OPEN,
                                   ResumeClock(rules.calendar, t.first_response(), c.now),
                                   ResumeClock(rules.calendar, t.resolution(), c.now)));
  }
  return events;
}

absl::StatusOr<std::vector<TicketEvent>> Note(const Ticket& t, const AddInternalNote& c) {
  if (t.status() == crm::v1::TICKET_STATUS_CLOSED)
    return WrongStatus(t, "closed tickets take no notes");
  crm::v1::TicketNoteAdded e;
  e.set_ticket_id(t.ticket_id());
  e.set_message_id(c.message_id);
  e.set_author_id(c.author_id);
  e.set_body(c.body);
  return std::vector<TicketEvent>{std::move(e)};
}

absl::StatusOr<std::vector<TicketEvent>> Pending(const Ticket& t, const MarkTicketPending& c,
                                                 const SlaRules& rules) {
  if (t.status() != crm::v1::TICKET_STATUS_OPEN) {
    return WrongStatus(t, "only an open ticket can wait on the customer");
  }
  return std::vector<TicketEvent>{StatusChanged(
      t, crm::v1::TICKET_STATUS_PENDING, PauseClock(rules.calendar, t.first_response(), c.now),
      PauseClock(rules.calendar, t.resolution(), c.now))};
}

absl::StatusOr<std::vector<TicketEvent>> Resolve(const Ticket& t, const ResolveTicket& c,
                                                 const SlaRules& rules) {
  if (!IsActive(t.status())) return WrongStatus(t, "only active tickets can be resolved");
  crm::v1::TicketResolved e;
  e.set_ticket_id(t.ticket_id());
  e.set_resolution_note(c.resolution_note);
  e.set_solution_article_id(c.solution_article_id);
  // Resolving answers the customer, so it also meets a first response
  // still owed. The resolution clock keeps its remaining time for a reopen,
  // and the due time it was met against while running. A target is on time
  // when it is met before due_at: at due_at the clock breaches first
  // (DueAt), and `breached` is what readers go by.
  *e.mutable_first_response() = MeetClock(t.first_response(), c.now);
  crm::v1::SlaClock resolution =
      MeetClock(PauseClock(rules.calendar, t.resolution(), c.now), c.now);
  if (resolution.has_met_at() && !resolution.has_due_at() && t.resolution().has_due_at()) {
    *resolution.mutable_due_at() = t.resolution().due_at();
  }
  *e.mutable_resolution() = std::move(resolution);
  *e.mutable_reopen_until() = ToProtoTimestamp(c.now + rules.reopen_window);
  std::vector<TicketEvent> events{std::move(e)};
  if (!t.csat_requested()) {
    crm::v1::CsatSurveyRequested survey;
    survey.set_ticket_id(t.ticket_id());
    survey.set_customer_id(t.customer_id());
    events.push_back(std::move(survey));
  }
  return events;
}

absl::StatusOr<std::vector<TicketEvent>> Close(const Ticket& t) {
  if (t.status() != crm::v1::TICKET_STATUS_RESOLVED) {
    return WrongStatus(t, "only a resolved ticket can be closed");
  }
  crm::v1::TicketClosed e;
  e.set_ticket_id(t.ticket_id());
  return std::vector<TicketEvent>{std::move(e)};
}

absl::StatusOr<std::vector<TicketEvent>> Reopen(const Ticket& t, const ReopenTicket& c,
                                                const SlaRules& rules) {
  if (auto st = CheckReopenWindow(t, c.now); !st.ok()) return st;
  return std::vector<TicketEvent>{Reopened(t, c.reason, c.now, rules)};
}

absl::StatusOr<std::vector<TicketEvent>> Link(const Ticket& t, const LinkSolutionArticle& c) {
  if (t.status() == crm::v1::TICKET_STATUS_CLOSED)
    return WrongStatus(t, "closed tickets do not change");
  if (t.solution_article_id() == c.article_id) {
    return absl::FailedPreconditionError(
        absl::StrCat("article ", c.article_id, " is already the solution of ", t.ticket_id()));
  }
  crm::v1::TicketSolutionLinked e;
  e.set_ticket_id(t.ticket_id());
  e.set_article_id(c.article_id);
  return std::vector<TicketEvent>{std::move(e)};
}

absl::StatusOr<std::vector<TicketEvent>> Csat(const Ticket& t, const SubmitCsat& c) {
  // Once the survey went out, its answer counts even if the ticket was
  // reopened meanwhile: no second survey follows the next resolution.
  if (!t.csat_requested() && t.status() != crm::v1::TICKET_STATUS_RESOLVED &&
      t.status() != crm::v1::TICKET_STATUS_CLOSED) {
    return WrongStatus(t, "satisfaction is rated after resolution");
  }
  if (t.has_csat()) {
    return absl::FailedPreconditionError(
        absl::StrCat("ticket ", t.ticket_id(), " already has a satisfaction rating"));
  }
  crm::v1::CsatSubmitted e;
  e.set_ticket_id(t.ticket_id());
  e.set_score(c.score);
  e.set_comment(c.comment);
  if (c.nps.has_value()) e.set_nps(*c.nps);
  return std::vector<TicketEvent>{std::move(e)};
}

// The warnings and breaches the clocks owe at c.now; only breaches when
// `breaches_only`.
std::vector<TicketEvent> ClockEvents(const Ticket& t, const CheckTimers& c, bool breaches_only) {
  std::vector<TicketEvent> events;
  crm::v1::TicketPriority priority = t.priority();
  for (auto [target, clock] : {std::pair{crm::v1::SLA_TARGET_FIRST_RESPONSE, &t.first_response()},
                               std::pair{crm::v1::SLA_TARGET_RESOLUTION, &t.resolution()}}) {
    switch (DueAt(*clock, c.now)) {
      case SlaDue::kNone:
        break;
      case SlaDue::kWarning: {
        if (breaches_only) break;
        crm::v1::TicketSlaWarningRaised w;
        w.set_ticket_id(t.ticket_id());
        w.set_target(target);
        *w.mutable_due_at() = clock->due_at();
        w.set_priority(priority);
        w.set_team_id(t.team_id());
        w.set_assignee_id(t.assignee_id());
        events.push_back(std::move(w));
        break;
      }
      case SlaDue::kBreach: {
        crm::v1::TicketSlaBreached b;
        b.set_ticket_id(t.ticket_id());
        b.set_target(target);
        *b.mutable_due_at() = clock->due_at();
        b.set_priority(priority);
        b.set_team_id(t.team_id());
        b.set_assignee_id(t.assignee_id());
        events.push_back(std::move(b));
        if (priority < crm::v1::TICKET_PRIORITY_URGENT) {
          crm::v1::TicketEscalated esc;
          esc.set_ticket_id(t.ticket_id());
          esc.set_target(target);
          esc.set_from_priority(priority);
          esc.set_to_priority(OneUp(priority));
          priority = esc.to_priority();
          events.push_back(std::move(esc));
        }
        if (!c.team_lead_id.empty()) {
          crm::v1::TeamLeadNotified n;
          n.set_ticket_id(t.ticket_id());
          n.set_team_id(t.team_id());
          n.set_lead_id(c.team_lead_id);
          n.set_target(target);
          n.set_reason(absl::StrCat(
              target == crm::v1::SLA_TARGET_FIRST_RESPONSE ? "first response" : "resolution",
              " target breached, due ", FormatRfc3339(At(clock->due_at()))));
          events.push_back(std::move(n));
        }
        break;
      }
    }
  }
  return events;
}

std::vector<TicketEvent> Timers(const Ticket& t, const CheckTimers& c) {
  if (t.status() == crm::v1::TICKET_STATUS_RESOLVED && t.has_reopen_until() &&
      c.now >= At(t.reopen_until())) {
    crm::v1::TicketClosed closed;
    closed.set_ticket_id(t.ticket_id());
    return {std::move(closed)};
  }
  return ClockEvents(t, c, /*breaches_only=*/false);
}

void Recompute(Ticket& t) {
  std::optional<absl::Time> next;
  auto consider = [&](std::optional<absl::Time> at) {
    if (at.has_value() && (!next.has_value() || *at < *next)) next = at;
  };
  if (IsActive(t.status())) {
    consider(NextDue(t.first_response()));
    consider(NextDue(t.resolution()));
  }
  if (t.status() == crm::v1::TICKET_STATUS_RESOLVED && t.has_reopen_until()) {
    consider(At(t.reopen_until()));
  }
  if (next.has_value()) {
    *t.mutable_next_sla_check_at() = ToProtoTimestamp(*next);
  } else {
    t.clear_next_sla_check_at();
  }
  t.set_breached(t.first_response().breached() || t.resolution().breached());
}

crm::v1::SlaClock* ClockOf(Ticket& t, crm::v1::SlaTarget target) {
  return target == crm::v1::SLA_TARGET_FIRST_RESPONSE ? t.mutable_first_response()
                                                      : t.mutable_resolution();
}

template <typename Alternative>
bool UnpackInto(const crm::v1::EventEnvelope& e, std::optional<TicketEvent>& out) {
  if (out.has_value() || !e.payload().Is<Alternative>()) return false;
  Alternative msg;
  if (!e.payload().UnpackTo(&msg)) return false;
  out = std::move(msg);
  return true;
}

template <typename... Ts>
std::optional<TicketEvent> UnpackAny(const crm::v1::EventEnvelope& e, std::variant<Ts...>*) {
  std::optional<TicketEvent> out;
  (UnpackInto<Ts>(e, out), ...);
  return out;
}

}  // namespace

bool IsActive(TicketStatus status) {
  return status == crm::v1::TICKET_STATUS_NEW || status == crm::v1::TICKET_STATUS_OPEN ||
         status == crm::v1::TICKET_STATUS_PENDING;
}

absl::StatusOr<std::vector<TicketEvent>> Decide(const std::optional<Ticket>& state,
                                                const TicketCommand& command,
                                                const SlaRules& rules) {
  if (const auto* open = std::get_if<OpenTicket>(&command)) {
    if (state.has_value()) {
      return absl::AlreadyExistsError(absl::StrCat("ticket ", open->ticket_id, " already exists"));
    }
    if (open->ticket_id.empty() || open->request.customer_id().empty()) {
      return absl::InvalidArgumentError("ticket_id and customer_id must be assigned");
    }
    return Open(*open, rules);
  }
  // The commands carry no ticket id: the caller names it (see ticket.h).
  if (!state.has_value()) return absl::NotFoundError("ticket_id: ticket not found");
  const Ticket& t = *state;
  return std::visit(
      [&](const auto& c) -> absl::StatusOr<std::vector<TicketEvent>> {
        using C = std::decay_t<decltype(c)>;
        if constexpr (std::is_same_v<C, OpenTicket>) {
          return absl::InternalError("unreachable");
        } else if constexpr (std::is_same_v<C, AssignTicket>) {
          return Assign(t, c);
        } else if constexpr (std::is_same_v<C, ReplyToTicket>) {
          return Reply(t, c, rules);
        } else if constexpr (std::is_same_v<C, AddInternalNote>) {
          return Note(t, c);
        } else if constexpr (std::is_same_v<C, MarkTicketPending>) {
          return Pending(t, c, rules);
        } else if constexpr (std::is_same_v<C, ResolveTicket>) {
          return Resolve(t, c, rules);
        } else if constexpr (std::is_same_v<C, CloseTicket>) {
          return Close(t);
        } else if constexpr (std::is_same_v<C, ReopenTicket>) {
          return Reopen(t, c, rules);
        } else if constexpr (std::is_same_v<C, LinkSolutionArticle>) {
          return Link(t, c);
        } else if constexpr (std::is_same_v<C, SubmitCsat>) {
          return Csat(t, c);
        } else {
          static_assert(std::is_same_v<C, CheckTimers>);
          return Timers(t, c);
        }
      },
      command);
}

std::vector<TicketEvent> OwedBreaches(const Ticket& t, const CheckTimers& check) {
  return ClockEvents(t, check, /*breaches_only=*/true);
}

void Apply(Ticket& t, const TicketEvent& event, absl::Time occurred_at) {
  const auto now = ToProtoTimestamp(occurred_at);
  std::visit(
      [&](const auto& e) {
        using E = std::decay_t<decltype(e)>;
        if constexpr (std::is_same_v<E, crm::v1::TicketOpened>) {
          t.set_ticket_id(e.ticket_id());
          t.set_customer_id(e.customer_id());
          t.set_channel(e.channel());
          t.set_subject(e.subject());
          t.set_description(e.description());
          t.set_product(e.product());
          t.set_category(e.category());
          t.set_priority(e.priority());
          t.set_status(crm::v1::TICKET_STATUS_NEW);
          *t.mutable_first_response() = e.first_response();
          *t.mutable_resolution() = e.resolution();
          t.set_known_customer(e.known_customer());
          t.set_under_warranty(e.has_warranty_ends_at());
          if (e.has_warranty_ends_at()) *t.mutable_warranty_ends_at() = e.warranty_ends_at();
          *t.mutable_opened_at() = now;
        } else if constexpr (std::is_same_v<E, crm::v1::TicketAssigned>) {
          t.set_team_id(e.team_id());
          t.set_assignee_id(e.assignee_id());
        } else if constexpr (std::is_same_v<E, crm::v1::TicketReplied>) {
          t.set_message_count(t.message_count() + 1);
          if (e.first_response()) {
            *t.mutable_first_responded_at() = now;
            if (!t.first_response().has_met_at() && t.first_response().target_seconds() > 0) {
              *t.mutable_first_response()->mutable_met_at() = now;
            }
          }
        } else if constexpr (std::is_same_v<E, crm::v1::TicketNoteAdded>) {
          t.set_message_count(t.message_count() + 1);
        } else if constexpr (std::is_same_v<E, crm::v1::TicketStatusChanged>) {
          t.set_status(e.to_status());
          *t.mutable_first_response() = e.first_response();
          *t.mutable_resolution() = e.resolution();
        } else if constexpr (std::is_same_v<E, crm::v1::TicketResolved>) {
          t.set_status(crm::v1::TICKET_STATUS_RESOLVED);
          *t.mutable_resolved_at() = now;
          t.set_resolution_note(e.resolution_note());
          if (!e.solution_article_id().empty()) t.set_solution_article_id(e.solution_article_id());
          *t.mutable_first_response() = e.first_response();
          *t.mutable_resolution() = e.resolution();
          *t.mutable_reopen_until() = e.reopen_until();
        } else if constexpr (std::is_same_v<E, crm::v1::TicketClosed>) {
          t.set_status(crm::v1::TICKET_STATUS_CLOSED);
          *t.mutable_closed_at() = now;
          t.clear_reopen_until();  // closed for good: no window left
        } else if constexpr (std::is_same_v<E, crm::v1::TicketReopened>) {
          t.set_status(crm::v1::TICKET_STATUS_OPEN);
          t.set_reopen_count(t.reopen_count() + 1);
          t.clear_resolved_at();
          t.clear_reopen_until();
          // The note described a resolution that did not hold. A linked
          // solution article stays: linking is its own command.
          t.clear_resolution_note();
          *t.mutable_first_response() = e.first_response();
          *t.mutable_resolution() = e.resolution();
        } else if constexpr (std::is_same_v<E, crm::v1::TicketSolutionLinked>) {
          t.set_solution_article_id(e.article_id());
        } else if constexpr (std::is_same_v<E, crm::v1::TicketSlaWarningRaised>) {
          ClockOf(t, e.target())->set_warned(true);
        } else if constexpr (std::is_same_v<E, crm::v1::TicketSlaBreached>) {
          ClockOf(t, e.target())->set_breached(true);
        } else if constexpr (std::is_same_v<E, crm::v1::TicketEscalated>) {
          t.set_priority(e.to_priority());
          t.set_escalation_count(t.escalation_count() + 1);
        } else if constexpr (std::is_same_v<E, crm::v1::TeamLeadNotified>) {
          // A notification; the ticket itself does not change.
        } else if constexpr (std::is_same_v<E, crm::v1::CsatSurveyRequested>) {
          t.set_csat_requested(true);
        } else {
          static_assert(std::is_same_v<E, crm::v1::CsatSubmitted>);
          auto* csat = t.mutable_csat();
          csat->set_score(e.score());
          csat->set_comment(e.comment());
          if (e.has_nps()) csat->set_nps(e.nps());
          *csat->mutable_submitted_at() = now;
        }
      },
      event);
  *t.mutable_updated_at() = now;
  t.set_version(t.version() + 1);
  Recompute(t);
}

std::string TicketStream(absl::string_view ticket_id) { return absl::StrCat("ticket-", ticket_id); }

absl::StatusOr<TicketEvent> TicketEventFrom(const crm::v1::EventEnvelope& envelope) {
  auto event = UnpackAny(envelope, static_cast<TicketEvent*>(nullptr));
  if (!event.has_value()) {
    return absl::NotFoundError(absl::StrCat(envelope.type(), " is not a ticket event"));
  }
  return *std::move(event);
}

}  // namespace crm::service_desk
