#include "services/service-desk/api/ticket_commands.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "libs/common/ids.h"
#include "libs/common/log.h"
#include "libs/common/page_token.h"
#include "libs/common/pii/field_sealer.h"
#include "libs/common/status_macros.h"
#include "services/service-desk/domain/article.h"
#include "services/service-desk/domain/customer.h"
#include "services/service-desk/domain/ticket_requests.h"
#include "services/service-desk/domain/validation.h"

namespace crm::service_desk {
namespace {

// Conversation entries an event adds, if any.
std::optional<crm::v1::TicketMessage> MessageOf(const TicketEvent& event, absl::Time now) {
  crm::v1::TicketMessage m;
  if (const auto* reply = std::get_if<crm::v1::TicketReplied>(&event)) {
    m.set_message_id(reply->message_id());
    m.set_author_id(reply->author_id());
    m.set_author_type(reply->author_type());
    m.set_body(reply->body());
  } else if (const auto* note = std::get_if<crm::v1::TicketNoteAdded>(&event)) {
    m.set_message_id(note->message_id());
    m.set_author_id(note->author_id());
    m.set_author_type(crm::v1::AUTHOR_TYPE_AGENT);
    m.set_body(note->body());
    m.set_internal(true);
  } else {
    return std::nullopt;
  }
  *m.mutable_created_at() = ToProtoTimestamp(now);
  return m;
}

// Every ticket command names its ticket in the request's ticket_id.
absl::Status MissingTicket(absl::string_view ticket_id) {
  return MissingField("ticket_id", "ticket", ticket_id);
}

// The caller's key for `request`, with its fingerprint.
template <typename Request>
std::string Key(const EventContext& ctx, absl::string_view command, const Request& request) {
  return CallerRequestKey(ctx, absl::StrCat(command, "/", request.request_id()), request);
}

}  // namespace

StripedMutex::Guard TicketCommands::LockTeam(const crm::v1::Team* team) {
  if (team == nullptr) return team_locks_.Lock({});
  std::vector<std::string> keys = {absl::StrCat("team:", team->team_id())};
  for (const auto& agent : team->agent_ids()) keys.push_back(absl::StrCat("agent:", agent));
  return team_locks_.Lock(std::vector<absl::string_view>(keys.begin(), keys.end()));
}

std::string TicketCommands::TeamLeadOf(const crm::v1::Ticket& ticket) const {
  const auto* team = settings_.FindTeam(ticket.team_id());
  return team != nullptr ? team->lead_id() : "";
}

const crm::v1::Team* TicketCommands::ReopeningTeam(const crm::v1::Ticket& ticket) const {
  const crm::v1::Team* team = settings_.FindTeam(ticket.team_id());
  return team != nullptr ? team
                         : settings_.Route(ticket.category(), ticket.product(), ticket.priority());
}

absl::StatusOr<std::optional<TicketCommands::Move>> TicketCommands::StaleAssignment(
    const crm::v1::Ticket& ticket, bool may_pick) const {
  const crm::v1::Team* team = ReopeningTeam(ticket);
  const std::string team_id = team != nullptr ? team->team_id() : "";
  // Without a team before or now, nothing about teams changed for it.
  if (team == nullptr && ticket.team_id().empty()) return std::nullopt;
  const bool agent_in_team =
      team != nullptr && !ticket.assignee_id().empty() && HasAgent(*team, ticket.assignee_id());
  if (team != nullptr && team_id == ticket.team_id() &&
      (ticket.assignee_id().empty() || agent_in_team)) {
    return std::nullopt;
  }
  Move move;
  crm::v1::TicketAssigned& moved = move.assigned;
  moved.set_ticket_id(ticket.ticket_id());
  moved.set_team_id(team_id);
  moved.set_previous_team_id(ticket.team_id());
  moved.set_previous_assignee_id(ticket.assignee_id());
  moved.set_reason(crm::v1::ASSIGNMENT_REASON_REOPENED);
  // Its agent stays when in the team it moves to (the customer keeps the
  // person who knows the case); else the team's strategy picks, as at
  // opening, under the team's lock (ExecuteReopening); without it the
  // team's queue takes it.
  if (agent_in_team) {
    moved.set_assignee_id(ticket.assignee_id());
  } else if (team != nullptr && may_pick) {
    CRM_ASSIGN_OR_RETURN(auto picked, PickFor(*team, ""));
    moved.set_assignee_id(std::move(picked.first));
    if (!moved.assignee_id().empty()) moved.set_strategy(team->strategy());
    move.writes = std::move(picked.second);
  }
  return move;
}

absl::StatusOr<std::optional<crm::v1::Ticket>> TicketCommands::Replayed(
    const std::string& request_key) const {
  if (request_key.empty()) return std::nullopt;
  CRM_ASSIGN_OR_RETURN(auto earlier, store_.events().FindResponse(request_key));
  if (!earlier.has_value()) return std::nullopt;
  crm::v1::Ticket ticket;
  if (!ticket.ParseFromString(*earlier)) return absl::DataLossError("corrupt stored response");
  return ticket;
}

absl::StatusOr<crm::v1::Ticket> TicketCommands::Execute(const std::string& request_key,
                                                        const std::string& ticket_id,
                                                        int64_t expected_version, EventContext ctx,
                                                        const Prepare& prepare) {
  // A retry is answered from the first result without taking locks.
  CRM_ASSIGN_OR_RETURN(auto earlier, Replayed(request_key));
  if (earlier.has_value()) return *earlier;
  const std::string stream = TicketStream(ticket_id);
  auto guard = ticket_locks_.Lock({stream});
  return ExecuteLocked(request_key, ticket_id, expected_version, std::move(ctx), prepare);
}

absl::StatusOr<crm::v1::Ticket> TicketCommands::ExecuteLocked(
    const std::string& request_key, const std::string& ticket_id, int64_t expected_version,
    EventContext ctx, const Prepare& prepare, int* appended) {
  // Again under the lock: a retry that came while the first attempt was
  // writing must get its result, not a decision on the state it made.
  CRM_ASSIGN_OR_RETURN(auto earlier, Replayed(request_key));
  if (earlier.has_value()) return *earlier;
  CRM_ASSIGN_OR_RETURN(auto loaded, store_.LoadTicket(ticket_id));
  if (!loaded && expected_version != 0) return MissingTicket(ticket_id);
  const int64_t version = loaded ? loaded->version : EventStore::kNoStream;
  if (expected_version != 0 && expected_version != version) {
    return absl::AbortedError(
        absl::StrCat("ticket ", ticket_id, " is at version ", version, ", not ", expected_version));
  }
  std::optional<crm::v1::Ticket> before;
  if (loaded) before = std::move(loaded->state);

  const absl::Time now = clock_();
  // Events after the ticket's last change even if the clock stepped back:
  // consumers keep a ticket's latest value by time (see StampedAfter). The
  // decision keeps the clock's time.
  ctx.occurred_at = before ? StampedAfter(now, before->updated_at()) : now;
  CRM_ASSIGN_OR_RETURN(Prepared prepared, prepare(before, now));
  // Breaches owed by now come first, and the command is decided on the
  // state they leave: a clock met or paused late is still a breach.
  std::vector<TicketEvent> events;
  std::optional<crm::v1::Ticket> decided_on = before;
  if (before && !std::holds_alternative<CheckTimers>(prepared.command)) {
    events = OwedBreaches(*before, CheckTimers{now, TeamLeadOf(*before)});
    for (const auto& e : events) Apply(*decided_on, e, now);
  }
  auto decided = Decide(decided_on, prepared.command, settings_.sla());
  // The domain's command carries no ticket id; the id is added here.
  if (!decided_on && absl::IsNotFound(decided.status())) return MissingTicket(ticket_id);
  if (!decided.ok()) return decided.status();
  events.insert(events.end(), std::make_move_iterator(decided->begin()),
                std::make_move_iterator(decided->end()));
  // A reopened ticket goes back to its agent, unless the desk's teams
  // changed since it was resolved (a restart with new settings): an agent
  // who left the team has the team's strategy pick another, a team that is
  // gone has the rules route it again (see StaleAssignment; without the
  // team's lock, no pick: the team's queue).
  if (before && before->status() == crm::v1::TICKET_STATUS_RESOLVED) {
    crm::v1::Ticket reopened = *before;
    for (const auto& e : events) Apply(reopened, e, now);
    if (reopened.status() == crm::v1::TICKET_STATUS_OPEN) {
      CRM_ASSIGN_OR_RETURN(auto move, StaleAssignment(reopened, prepared.may_pick));
      if (move) {
        events.push_back(std::move(move->assigned));
        for (auto& w : move->writes) prepared.writes.push_back(std::move(w));
      }
    }
  }
  if (events.empty() && request_key.empty()) {
    if (!before) return MissingTicket(ticket_id);
    return *before;
  }
  if (vault_ != nullptr) {
    // Decided on plaintext, stored sealed: the state, the message list and
    // every consumer get ciphertext only.
    std::string customer_id = before ? before->customer_id() : "";
    for (const auto& event : events) {
      if (const auto* opened = std::get_if<crm::v1::TicketOpened>(&event)) {
        customer_id = opened->customer_id();
      }
    }
    CRM_RETURN_IF_ERROR(pii::SealEvents(*vault_, customer_id, ctx, events));
  }

  crm::v1::Ticket after = before.value_or(crm::v1::Ticket());
  AppendRequest append;
  append.stream = TicketStream(ticket_id);
  append.expected_version = version;
  std::vector<std::pair<int64_t, crm::v1::TicketMessage>> messages;
  for (const auto& event : events) {
    // Folded at the events' time, so the next command stamps after them.
    Apply(after, event, ctx.occurred_at);
    std::visit(
        [&](const auto& payload) {
          append.events.push_back(MakeEnvelope(payload, after.customer_id(), ctx));
        },
        event);
    if (auto m = MessageOf(event, ctx.occurred_at))
      messages.emplace_back(after.version(), *std::move(m));
  }
  append.projection_writes = store_.TicketWrites(before, after, messages);
  for (auto& w : prepared.writes) append.projection_writes.push_back(std::move(w));
  append.state = after.SerializeAsString();
  append.request_key = request_key;
  append.response = append.state;

  CRM_ASSIGN_OR_RETURN(auto result, store_.events().Append(std::move(append)));
  if (result.replayed && !after.ParseFromString(result.response)) {
    return absl::DataLossError("corrupt stored response");
  }
  if (appended != nullptr && !result.replayed) {
    *appended = static_cast<int>(result.last_version - result.first_version + 1);
  }
  return after;
}

absl::StatusOr<std::pair<std::string, std::vector<ProjectionWrite>>> TicketCommands::PickFor(
    const crm::v1::Team& team, const std::string& except) const {
  CRM_ASSIGN_OR_RETURN(const std::string last, store_.LastPicked(team.team_id()));
  AgentLoad load;
  if (team.strategy() == crm::v1::ASSIGNMENT_STRATEGY_LEAST_LOADED) {
    CRM_ASSIGN_OR_RETURN(load, store_.LoadOf(team));
  }
  std::string agent = PickAgent(team, last, load, except);
  std::vector<ProjectionWrite> writes;
  if (!agent.empty()) writes.push_back(DeskStore::PickedWrite(team.team_id(), agent));
  return std::make_pair(std::move(agent), std::move(writes));
}

absl::Status TicketCommands::CheckSolutionArticle(const std::optional<crm::v1::Ticket>& ticket,
                                                  const std::string& ticket_id,
                                                  absl::string_view field,
                                                  const std::string& article_id) const {
  // The ticket first: naming a draft on a missing ticket is NOT_FOUND.
  if (!ticket) return MissingTicket(ticket_id);
  auto article = store_.GetArticle(article_id);
  if (absl::IsNotFound(article.status())) return MissingField(field, "article", article_id);
  if (!article.ok()) return article.status();
  if (!article->published()) {
    return absl::FailedPreconditionError(
        absl::StrCat(field, ": article ", article_id, " is not published"));
  }
  return absl::OkStatus();
}

std::vector<std::string> TicketCommands::CustomerGroup(const std::string& customer_id) const {
  // An erased customer's context stays its own: joined, its sealed profile
  // (which no longer opens) could win over a member's.
  if (vault_ == nullptr || vault_->Erased(customer_id)) return {customer_id};
  // Every read of the group reads each member: bounded, the asked one kept.
  constexpr size_t kMaxGroup = 256;
  std::vector<std::string> group;
  for (std::string& member : vault_->WithMerged(vault_->SurvivorOf(customer_id))) {
    if (member != customer_id && (group.size() + 1 >= kMaxGroup || vault_->Erased(member))) {
      continue;
    }
    group.push_back(std::move(member));
  }
  if (std::find(group.begin(), group.end(), customer_id) == group.end()) {
    group.push_back(customer_id);
  }
  return group;
}

absl::StatusOr<crm::v1::Ticket> TicketCommands::OpenTicket(const crm::v1::OpenTicketRequest& raw,
                                                           EventContext ctx) {
  CRM_ASSIGN_OR_RETURN(auto request, NormalizeOpenTicketRequest(raw));
  const std::string key = Key(ctx, "OpenTicket", request);
  CRM_ASSIGN_OR_RETURN(auto earlier, Replayed(key));
  if (earlier.has_value()) return *earlier;

  CRM_ASSIGN_OR_RETURN(
      auto customer,
      store_.CustomerContextOf(request.customer_id(), CustomerGroup(request.customer_id())));
  FillWarranties(customer, settings_);
  const bool known = customer.known();
  if (!known && settings_.reject_unknown_customers()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "customer_id: customer ", request.customer_id(), " is not known to the service desk"));
  }
  const crm::v1::Team* team =
      settings_.Route(request.category(), request.product(), request.priority());
  auto team_guard = LockTeam(team);
  if (ctx.correlation_id.empty()) ctx.correlation_id = request.request_id();
  if (ctx.causation_id.empty()) ctx.causation_id = request.request_id();
  const std::string ticket_id = NewId("tkt");
  return Execute(
      key, ticket_id, 0, ctx,
      [&](const std::optional<crm::v1::Ticket>&, absl::Time now) -> absl::StatusOr<Prepared> {
        service_desk::OpenTicket open;
        open.request = request;
        open.ticket_id = ticket_id;
        open.known_customer = known;
        open.warranty_ends_at = WarrantyEndFor(customer, request.product(), now);
        open.now = now;
        std::vector<ProjectionWrite> writes;
        if (team != nullptr) {
          CRM_ASSIGN_OR_RETURN(auto picked, PickFor(*team, ""));
          open.team_id = team->team_id();
          open.assignee_id = picked.first;
          open.strategy = team->strategy();
          writes = std::move(picked.second);
        }
        return Prepared{std::move(open), std::move(writes)};
      });
}

absl::StatusOr<crm::v1::Ticket> TicketCommands::AssignTicket(const crm::v1::AssignTicketRequest& r,
                                                             EventContext ctx) {
  CRM_RETURN_IF_ERROR(ValidateAssignTicket(r));
  const std::string key = Key(ctx, "AssignTicket", r);
  CRM_ASSIGN_OR_RETURN(auto earlier, Replayed(key));
  if (earlier.has_value()) return *earlier;

  const crm::v1::Team* team = nullptr;
  if (!r.team_id().empty()) {
    team = settings_.FindTeam(r.team_id());
    if (team == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("team_id: unknown team ", r.team_id()));
    }
    if (!r.assignee_id().empty() && !HasAgent(*team, r.assignee_id())) {
      return absl::InvalidArgumentError(
          absl::StrCat("assignee_id: ", r.assignee_id(), " is not an agent of team ", r.team_id()));
    }
  } else {
    // An agent named alone keeps the ticket in its current team when the
    // agent is a member, so breach notices and team reports stay there.
    // Read unlocked (team locks come first), so chosen again below.
    CRM_ASSIGN_OR_RETURN(auto current, store_.LoadTicket(r.ticket_id()));
    team = settings_.TeamOfAgent(r.assignee_id(), current ? current->state.team_id() : "");
    if (team == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("assignee_id: unknown agent ", r.assignee_id()));
    }
  }
  auto team_guard = LockTeam(team);
  if (ctx.correlation_id.empty()) ctx.correlation_id = r.request_id();
  return Execute(
      key, r.ticket_id(), r.expected_version(), ctx,
      [&](const std::optional<crm::v1::Ticket>& state, absl::Time now) -> absl::StatusOr<Prepared> {
        service_desk::AssignTicket assign;
        assign.team_id = team->team_id();
        if (r.team_id().empty() && state.has_value()) {
          // The ticket may have changed team since the unlocked read.
          assign.team_id = settings_.TeamOfAgent(r.assignee_id(), state->team_id())->team_id();
        }
        assign.assignee_id = r.assignee_id();
        assign.now = now;
        std::vector<ProjectionWrite> writes;
        if (assign.assignee_id.empty() && state.has_value()) {
          CRM_ASSIGN_OR_RETURN(auto picked, PickFor(*team, state->assignee_id()));
          assign.assignee_id = picked.first;
          assign.strategy = team->strategy();
          writes = std::move(picked.second);
        }
        return Prepared{std::move(assign), std::move(writes)};
      });
}

absl::StatusOr<const crm::v1::Team*> TicketCommands::TeamIfResolved(
    const std::string& ticket_id) const {
  CRM_ASSIGN_OR_RETURN(auto current, store_.LoadTicket(ticket_id));
  if (!current || current->state.status() != crm::v1::TICKET_STATUS_RESOLVED) return nullptr;
  return ReopeningTeam(current->state);
}

absl::StatusOr<crm::v1::Ticket> TicketCommands::ExecuteReopening(const std::string& request_key,
                                                                 const std::string& ticket_id,
                                                                 int64_t expected_version,
                                                                 const EventContext& ctx,
                                                                 const Prepare& prepare) {
  for (int attempt = 0;; ++attempt) {
    CRM_ASSIGN_OR_RETURN(const crm::v1::Team* team, TeamIfResolved(ticket_id));
    auto team_guard = LockTeam(team);
    // Resolved since the unlocked read: read its team again, under whose
    // lock the reopening must run (after a few tries, go on without it).
    bool raced = false;
    auto result = Execute(request_key, ticket_id, expected_version, ctx,
                          [&](const std::optional<crm::v1::Ticket>& state,
                              absl::Time now) -> absl::StatusOr<Prepared> {
                            const bool other_team =
                                state && state->status() == crm::v1::TICKET_STATUS_RESOLVED &&
                                ReopeningTeam(*state) != team;
                            if (other_team && attempt < 3) {
                              raced = true;
                              return absl::AbortedError("resolved meanwhile");
                            }
                            CRM_ASSIGN_OR_RETURN(Prepared prepared, prepare(state, now));
                            // Gone on without its team's lock: no pick in that team.
                            prepared.may_pick = !other_team;
                            return prepared;
                          });
    if (!raced) return result;
  }
}

absl::StatusOr<crm::v1::Ticket> TicketCommands::ReplyToTicket(
    const crm::v1::ReplyToTicketRequest& r, EventContext ctx) {
  CRM_RETURN_IF_ERROR(ValidateReplyToTicket(r));
  if (ctx.correlation_id.empty()) ctx.correlation_id = r.request_id();
  const std::string author = ctx.actor;
  auto prepare = [&](const auto&, absl::Time now) -> absl::StatusOr<Prepared> {
    return Prepared{
        service_desk::ReplyToTicket{NewId("msg"), author, r.author_type(), r.body(), now}, {}};
  };
  const std::string key = Key(ctx, "ReplyToTicket", r);
  // A customer's reply may reopen the ticket.
  if (r.author_type() == crm::v1::AUTHOR_TYPE_CUSTOMER) {
    return ExecuteReopening(key, r.ticket_id(), r.expected_version(), ctx, prepare);
  }
  return Execute(key, r.ticket_id(), r.expected_version(), ctx, prepare);
}

absl::StatusOr<crm::v1::Ticket> TicketCommands::AddInternalNote(
    const crm::v1::AddInternalNoteRequest& r, EventContext ctx) {
  CRM_RETURN_IF_ERROR(ValidateAddInternalNote(r));
  if (ctx.correlation_id.empty()) ctx.correlation_id = r.request_id();
  const std::string author = ctx.actor;
  return Execute(
      Key(ctx, "AddInternalNote", r), r.ticket_id(), r.expected_version(), ctx,
      [&](const auto&, absl::Time now) -> absl::StatusOr<Prepared> {
        return Prepared{service_desk::AddInternalNote{NewId("msg"), author, r.body(), now}, {}};
      });
}

absl::StatusOr<crm::v1::Ticket> TicketCommands::MarkTicketPending(
    const crm::v1::MarkTicketPendingRequest& r, EventContext ctx) {
  CRM_RETURN_IF_ERROR(ValidateMarkTicketPending(r));
  if (ctx.correlation_id.empty()) ctx.correlation_id = r.request_id();
  return Execute(Key(ctx, "MarkTicketPending", r), r.ticket_id(), r.expected_version(), ctx,
                 [&](const auto&, absl::Time now) -> absl::StatusOr<Prepared> {
                   return Prepared{service_desk::MarkTicketPending{now}, {}};
                 });
}

absl::StatusOr<crm::v1::Ticket> TicketCommands::ResolveTicket(
    const crm::v1::ResolveTicketRequest& r, EventContext ctx) {
  CRM_RETURN_IF_ERROR(ValidateResolveTicket(r));
  if (ctx.correlation_id.empty()) ctx.correlation_id = r.request_id();
  // As in LinkSolutionArticle; no lock without an article.
  auto article_guard = store_.article_locks().Lock(
      {r.solution_article_id().empty() ? "" : ArticleStream(r.solution_article_id())});
  return Execute(
      Key(ctx, "ResolveTicket", r), r.ticket_id(), r.expected_version(), ctx,
      [&](const auto& ticket, absl::Time now) -> absl::StatusOr<Prepared> {
        if (!r.solution_article_id().empty()) {
          CRM_RETURN_IF_ERROR(CheckSolutionArticle(ticket, r.ticket_id(), "solution_article_id",
                                                   r.solution_article_id()));
        }
        return Prepared{
            service_desk::ResolveTicket{r.resolution_note(), r.solution_article_id(), now}, {}};
      });
}

absl::StatusOr<crm::v1::Ticket> TicketCommands::CloseTicket(const crm::v1::CloseTicketRequest& r,
                                                            EventContext ctx) {
  CRM_RETURN_IF_ERROR(ValidateCloseTicket(r));
  if (ctx.correlation_id.empty()) ctx.correlation_id = r.request_id();
  return Execute(Key(ctx, "CloseTicket", r), r.ticket_id(), r.expected_version(), ctx,
                 [&](const auto&, absl::Time now) -> absl::StatusOr<Prepared> {
                   return Prepared{service_desk::CloseTicket{now}, {}};
                 });
}

absl::StatusOr<crm::v1::Ticket> TicketCommands::ReopenTicket(const crm::v1::ReopenTicketRequest& r,
                                                             EventContext ctx) {
  CRM_RETURN_IF_ERROR(ValidateReopenTicket(r));
  if (ctx.correlation_id.empty()) ctx.correlation_id = r.request_id();
  return ExecuteReopening(Key(ctx, "ReopenTicket", r), r.ticket_id(), r.expected_version(), ctx,
                          [&](const auto&, absl::Time now) -> absl::StatusOr<Prepared> {
                            return Prepared{service_desk::ReopenTicket{r.reason(), now}, {}};
                          });
}

absl::StatusOr<crm::v1::Ticket> TicketCommands::LinkSolutionArticle(
    const crm::v1::LinkSolutionArticleRequest& r, EventContext ctx) {
  CRM_RETURN_IF_ERROR(ValidateLinkSolutionArticle(r));
  if (ctx.correlation_id.empty()) ctx.correlation_id = r.request_id();
  // Unpublishing takes the article's lock too: held until the link is
  // stored, the "is published" check cannot go stale before the append.
  auto article_guard = store_.article_locks().Lock({ArticleStream(r.article_id())});
  return Execute(Key(ctx, "LinkSolutionArticle", r), r.ticket_id(), r.expected_version(), ctx,
                 [&](const auto& ticket, absl::Time now) -> absl::StatusOr<Prepared> {
                   CRM_RETURN_IF_ERROR(
                       CheckSolutionArticle(ticket, r.ticket_id(), "article_id", r.article_id()));
                   return Prepared{service_desk::LinkSolutionArticle{r.article_id(), now}, {}};
                 });
}

absl::StatusOr<crm::v1::Ticket> TicketCommands::SubmitCsat(const crm::v1::SubmitCsatRequest& r,
                                                           EventContext ctx) {
  CRM_RETURN_IF_ERROR(ValidateSubmitCsat(r));
  if (ctx.correlation_id.empty()) ctx.correlation_id = r.request_id();
  return Execute(Key(ctx, "SubmitCsat", r), r.ticket_id(), 0, ctx,
                 [&](const auto&, absl::Time now) -> absl::StatusOr<Prepared> {
                   service_desk::SubmitCsat csat;
                   csat.score = r.score();
                   csat.comment = r.comment();
                   if (r.has_nps()) csat.nps = r.nps();
                   csat.now = now;
                   return Prepared{std::move(csat), {}};
                 });
}

absl::StatusOr<crm::v1::TicketDetails> TicketCommands::GetTicket(
    const crm::v1::GetTicketRequest& r) const {
  CRM_RETURN_IF_ERROR(ValidateGetTicket(r));
  crm::v1::TicketDetails details;
  auto ticket = store_.GetTicket(r.ticket_id());
  if (absl::IsNotFound(ticket.status())) return MissingTicket(r.ticket_id());
  if (!ticket.ok()) return ticket.status();
  *details.mutable_ticket() = *std::move(ticket);
  CRM_ASSIGN_OR_RETURN(*details.mutable_customer(),
                       store_.CustomerContextOf(details.ticket().customer_id(),
                                                CustomerGroup(details.ticket().customer_id())));
  FillWarranties(*details.mutable_customer(), settings_);
  TrimPurchases(*details.mutable_customer(), details.ticket().product(), kMaxPurchasesShown);
  CRM_ASSIGN_OR_RETURN(const crm::v1::PageRequest messages_page,
                       OpenPage(r, r.messages_page(), "messages_page.page_token"));
  CRM_ASSIGN_OR_RETURN(auto page,
                       store_.Messages(r.ticket_id(), messages_page, details.ByteSizeLong()));
  for (auto& m : page.messages) *details.add_messages() = std::move(m);
  details.set_next_messages_page_token(SealPageToken(r, page.next_page_token));
  return details;
}

absl::StatusOr<crm::v1::ListTicketsResponse> TicketCommands::ListTickets(
    const crm::v1::ListTicketsRequest& r) const {
  CRM_RETURN_IF_ERROR(ValidateListTickets(r));
  crm::v1::ListTicketsRequest opened = r;
  CRM_ASSIGN_OR_RETURN(*opened.mutable_page(), OpenPage(r, r.page()));
  CRM_ASSIGN_OR_RETURN(auto page, store_.ListTickets(opened, r.customer_id().empty()
                                                                 ? std::vector<std::string>{}
                                                                 : CustomerGroup(r.customer_id())));
  crm::v1::ListTicketsResponse response;
  for (auto& t : page.tickets) *response.add_tickets() = std::move(t);
  response.set_next_page_token(SealPageToken(r, page.next_page_token));
  return response;
}

absl::StatusOr<int> TicketCommands::RunDueTimers() {
  constexpr size_t kBatch = 1000;
  const absl::Time now = clock_();
  CRM_ASSIGN_OR_RETURN(auto due, store_.DueTimers(now, kBatch));
  int appended = 0;
  absl::Status first_error;
  for (const auto& timer : due) {
    auto guard = ticket_locks_.Lock({TicketStream(timer.ticket_id)});
    EventContext ctx;
    ctx.source = "crm/service-desk";
    ctx.actor = "system:timer";
    ctx.correlation_id = absl::StrCat("timer/", timer.ticket_id);
    int events = 0;
    auto ticket = ExecuteLocked(
        "", timer.ticket_id, 0, ctx,
        [&](const std::optional<crm::v1::Ticket>& state,
            absl::Time at) -> absl::StatusOr<Prepared> {
          return Prepared{CheckTimers{at, state ? TeamLeadOf(*state) : ""}, {}};
        },
        &events);
    if (absl::IsNotFound(ticket.status())) {
      CRM_RETURN_IF_ERROR(store_.DropTimer(timer));  // nothing left to visit
      continue;
    }
    if (!ticket.ok()) {
      log::Warn("timer visit failed",
                {{"ticket_id", timer.ticket_id}, {"error", ticket.status().ToString()}});
      if (first_error.ok()) first_error = ticket.status();
      continue;
    }
    appended += events;
    // The entry is spent unless it is still the ticket's next visit.
    const bool current = ticket->has_next_sla_check_at() &&
                         DeskStore::TimerKey(FromProtoTimestamp(ticket->next_sla_check_at()),
                                             ticket->ticket_id()) == timer.key;
    if (!current) CRM_RETURN_IF_ERROR(store_.DropTimer(timer));
  }
  if (!first_error.ok()) return first_error;
  return appended;
}

}  // namespace crm::service_desk
