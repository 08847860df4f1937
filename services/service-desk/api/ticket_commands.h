#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "crm/v1/service_desk.pb.h"
#include "libs/common/envelope.h"
#include "libs/common/pii/key_vault.h"
#include "libs/common/striped_mutex.h"
#include "services/service-desk/domain/settings.h"
#include "services/service-desk/domain/ticket.h"
#include "services/service-desk/store/desk_store.h"

namespace crm::service_desk {

// The time of the service; tests pass a fake one to drive SLA timers.
using Clock = std::function<absl::Time()>;

// The ticket use cases: validate, load, Decide, Apply and append the
// events with their read-model writes in one batch. Transport-free so they
// are tested without gRPC. Each command's time is the clock's, not the
// caller's, so SLA arithmetic and timers agree.
class TicketCommands {
 public:
  TicketCommands(DeskStore& store, const DeskSettings& settings, Clock clock)
      : store_(store), settings_(settings), clock_(std::move(clock)) {}

  // Seals the free text of tickets (subject, description, replies, notes,
  // resolution notes, CSAT comments) with the customer's data key
  // (libs/common/pii); without a vault it is stored as sent.
  void SealPiiWith(pii::KeyVault& vault) { vault_ = &vault; }

  absl::StatusOr<crm::v1::Ticket> OpenTicket(const crm::v1::OpenTicketRequest& request,
                                             EventContext ctx);
  absl::StatusOr<crm::v1::Ticket> AssignTicket(const crm::v1::AssignTicketRequest& request,
                                               EventContext ctx);
  absl::StatusOr<crm::v1::Ticket> ReplyToTicket(const crm::v1::ReplyToTicketRequest& request,
                                                EventContext ctx);
  absl::StatusOr<crm::v1::Ticket> AddInternalNote(const crm::v1::AddInternalNoteRequest& request,
                                                  EventContext ctx);
  absl::StatusOr<crm::v1::Ticket> MarkTicketPending(
      const crm::v1::MarkTicketPendingRequest& request, EventContext ctx);
  absl::StatusOr<crm::v1::Ticket> ResolveTicket(const crm::v1::ResolveTicketRequest& request,
                                                EventContext ctx);
  absl::StatusOr<crm::v1::Ticket> CloseTicket(const crm::v1::CloseTicketRequest& request,
                                              EventContext ctx);
  absl::StatusOr<crm::v1::Ticket> ReopenTicket(const crm::v1::ReopenTicketRequest& request,
                                               EventContext ctx);
  absl::StatusOr<crm::v1::Ticket> LinkSolutionArticle(
      const crm::v1::LinkSolutionArticleRequest& request, EventContext ctx);
  absl::StatusOr<crm::v1::Ticket> SubmitCsat(const crm::v1::SubmitCsatRequest& request,
                                             EventContext ctx);

  absl::StatusOr<crm::v1::TicketDetails> GetTicket(const crm::v1::GetTicketRequest& request) const;
  absl::StatusOr<crm::v1::ListTicketsResponse> ListTickets(
      const crm::v1::ListTicketsRequest& request) const;

  // Visits every ticket whose timer is due by the clock: SLA warnings,
  // breaches with escalation, closing after the reopen window. Returns the
  // number of events appended. A ticket that fails is reported after the
  // others were visited.
  absl::StatusOr<int> RunDueTimers();

 private:
  // The customers found to be one person with `customer_id` (the merge
  // links leads publishes on crm.keys.v1, which the vault keeps), the
  // survivor first; erased ones left out, as their data no longer opens.
  std::vector<std::string> CustomerGroup(const std::string& customer_id) const;

  // A command decided from the loaded state, plus writes that belong to
  // the same batch (the round-robin cursor).
  struct Prepared {
    TicketCommand command;
    std::vector<ProjectionWrite> writes;
    // A reopening may pick an agent: it runs under the lock of the team it
    // would pick in (ExecuteReopening).
    bool may_pick = true;
  };
  using Prepare = std::function<absl::StatusOr<Prepared>(
      const std::optional<crm::v1::Ticket>& state, absl::Time now)>;

  // Idempotency, the ticket's lock, then ExecuteLocked.
  absl::StatusOr<crm::v1::Ticket> Execute(const std::string& request_key,
                                          const std::string& ticket_id, int64_t expected_version,
                                          EventContext ctx, const Prepare& prepare);
  // Caller holds the ticket's lock. Appends nothing when Decide yields no
  // events and there is no request key to record; `appended` (optional)
  // receives the number of events appended.
  absl::StatusOr<crm::v1::Ticket> ExecuteLocked(const std::string& request_key,
                                                const std::string& ticket_id,
                                                int64_t expected_version, EventContext ctx,
                                                const Prepare& prepare, int* appended = nullptr);
  // The stored answer to an earlier request with this key, if any.
  absl::StatusOr<std::optional<crm::v1::Ticket>> Replayed(const std::string& request_key) const;
  // Lead of the ticket's team, notified of breaches; empty without one.
  std::string TeamLeadOf(const crm::v1::Ticket& ticket) const;
  // The team a reopened ticket belongs to: its own, or the one the rules
  // route it to now when its team is gone; nullptr when there is none.
  const crm::v1::Team* ReopeningTeam(const crm::v1::Ticket& ticket) const;
  // A reassignment and the pick's cursor write.
  struct Move {
    crm::v1::TicketAssigned assigned;
    std::vector<ProjectionWrite> writes;
  };
  // For a ticket just reopened: when its agent has left the team since, or
  // its team is gone, its move to ReopeningTeam with the agent the team's
  // strategy picks (the queue when none, or unless `may_pick`); nullopt
  // when the assignment still stands. With `may_pick` the caller holds that
  // team's lock.
  absl::StatusOr<std::optional<Move>> StaleAssignment(const crm::v1::Ticket& ticket,
                                                      bool may_pick) const;
  // The agent the team's strategy picks and the cursor write that goes
  // with it; `except` (the current assignee) is skipped when the team has
  // someone else.
  absl::StatusOr<std::pair<std::string, std::vector<ProjectionWrite>>> PickFor(
      const crm::v1::Team& team, const std::string& except) const;
  // NOT_FOUND unless the ticket exists, then NOT_FOUND / FAILED_PRECONDITION
  // unless the article is published. Caller holds the article's lock
  // (DeskStore::article_locks) until the append, or the answer may be stale.
  absl::Status CheckSolutionArticle(const std::optional<crm::v1::Ticket>& ticket,
                                    const std::string& ticket_id, absl::string_view field,
                                    const std::string& article_id) const;

  DeskStore& store_;
  pii::KeyVault* vault_ = nullptr;
  const DeskSettings& settings_;
  Clock clock_;
  // Ticket streams, taken after a team's or an article's lock when both are
  // needed.
  StripedMutex ticket_locks_;
  // Teams, so concurrent assignments see each other's load and cursor.
  // A team and each of its agents (an agent's load is read by the picks of
  // every team the agent is in); taken before a ticket's lock.
  StripedMutex::Guard LockTeam(const crm::v1::Team* team);
  // The ReopeningTeam of a resolved ticket, whose reopening gives an agent
  // an active ticket again: under the team's lock, as the picks that read
  // the agent's load. Read unlocked (team locks come first); a resolved
  // ticket cannot change team. nullptr for any other ticket.
  absl::StatusOr<const crm::v1::Team*> TeamIfResolved(const std::string& ticket_id) const;
  // Execute for a command that may reopen the ticket, under that team's
  // lock; a ticket resolved between the unlocked read and its own lock is
  // read again.
  absl::StatusOr<crm::v1::Ticket> ExecuteReopening(const std::string& request_key,
                                                   const std::string& ticket_id,
                                                   int64_t expected_version,
                                                   const EventContext& ctx, const Prepare& prepare);
  StripedMutex team_locks_;
};

}  // namespace crm::service_desk
