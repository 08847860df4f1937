#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "crm/v1/envelope.pb.h"
#include "crm/v1/service_desk.pb.h"
#include "services/service-desk/domain/sla.h"

namespace crm::service_desk {

// Pure domain of a ticket: Decide(state, command) → events, Apply(state,
// event). Ids, routing, article checks and the time are decided by the
// caller and carried in the commands; nothing here does I/O or reads a
// clock.

struct OpenTicket {
  crm::v1::OpenTicketRequest request;  // normalized
  std::string ticket_id;
  bool known_customer = false;
  // When the warranty of the customer's purchase of the product ends, if
  // it is running.
  std::optional<absl::Time> warranty_ends_at;
  // Where routing sent it; an empty team leaves the ticket unassigned.
  std::string team_id;
  std::string assignee_id;
  crm::v1::AssignmentStrategy strategy = crm::v1::ASSIGNMENT_STRATEGY_UNSPECIFIED;
  absl::Time now;
};

struct AssignTicket {
  std::string team_id;
  std::string assignee_id;
  // The team strategy that picked the agent; unspecified for a named agent.
  crm::v1::AssignmentStrategy strategy = crm::v1::ASSIGNMENT_STRATEGY_UNSPECIFIED;
  absl::Time now;
};

struct ReplyToTicket {
  std::string message_id;
  std::string author_id;
  crm::v1::AuthorType author_type = crm::v1::AUTHOR_TYPE_UNSPECIFIED;
  std::string body;
  absl::Time now;
};

struct AddInternalNote {
  std::string message_id;
  std::string author_id;
  std::string body;
  absl::Time now;
};

struct MarkTicketPending {
  absl::Time now;
};

struct ResolveTicket {
  std::string resolution_note;
  // Checked by the caller to be a published article.
  std::string solution_article_id;
  absl::Time now;
};

struct CloseTicket {
  absl::Time now;
};

struct ReopenTicket {
  std::string reason;
  absl::Time now;
};

struct LinkSolutionArticle {
  std::string article_id;
  absl::Time now;
};

struct SubmitCsat {
  int32_t score = 0;
  std::string comment;
  std::optional<int32_t> nps;
  absl::Time now;
};

// The timer's visit: SLA warnings and breaches (each breach escalates and
// notifies the team lead), and closing a resolved ticket whose reopen
// window has passed.
struct CheckTimers {
  absl::Time now;
  // Lead of the ticket's team; empty when there is none to notify.
  std::string team_lead_id;
};

using TicketCommand = std::variant<OpenTicket, AssignTicket, ReplyToTicket, AddInternalNote,
                                   MarkTicketPending, ResolveTicket, CloseTicket, ReopenTicket,
                                   LinkSolutionArticle, SubmitCsat, CheckTimers>;

using TicketEvent =
    std::variant<crm::v1::TicketOpened, crm::v1::TicketAssigned, crm::v1::TicketReplied,
                 crm::v1::TicketNoteAdded, crm::v1::TicketStatusChanged, crm::v1::TicketResolved,
                 crm::v1::TicketClosed, crm::v1::TicketReopened, crm::v1::TicketSolutionLinked,
                 crm::v1::TicketSlaWarningRaised, crm::v1::TicketSlaBreached,
                 crm::v1::TicketEscalated, crm::v1::TeamLeadNotified, crm::v1::CsatSurveyRequested,
                 crm::v1::CsatSubmitted>;

// NOT_FOUND "ticket_id: ticket not found" without state (except
// OpenTicket; the caller, which knows the id, names it), FAILED_PRECONDITION
// for a command the ticket's status does not allow. May return no events (a
// timer visit with nothing due).
absl::StatusOr<std::vector<TicketEvent>> Decide(const std::optional<crm::v1::Ticket>& state,
                                                const TicketCommand& command,
                                                const SlaRules& rules);

// The breaches (and escalations) the clocks owe at `check.now` that no
// timer pass has raised yet. A command settles them before it meets or
// pauses a clock, so a target met after its due time, before the timer
// came by, still counts as breached.
std::vector<TicketEvent> OwedBreaches(const crm::v1::Ticket& state, const CheckTimers& check);

// Folds one event into the state; `occurred_at` is the event's time.
void Apply(crm::v1::Ticket& state, const TicketEvent& event, absl::Time occurred_at);

// Active tickets count towards an agent's load and can be worked on.
bool IsActive(crm::v1::TicketStatus status);

// The stream of a ticket: "ticket-<id>".
std::string TicketStream(absl::string_view ticket_id);

// The event inside an envelope; NOT_FOUND for a type that is not a ticket
// event.
absl::StatusOr<TicketEvent> TicketEventFrom(const crm::v1::EventEnvelope& envelope);

}  // namespace crm::service_desk
