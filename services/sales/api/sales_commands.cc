#include "services/sales/api/sales_commands.h"

#include <algorithm>
#include <optional>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "crm/v1/analytics.pb.h"
#include "libs/common/auth/record_access.h"
#include "libs/common/ids.h"
#include "libs/common/log.h"
#include "libs/common/page_token.h"
#include "libs/common/pii/field_sealer.h"
#include "libs/common/status_macros.h"
#include "libs/common/text.h"
#include "services/sales/domain/forecast.h"
#include "services/sales/domain/opportunity.h"
#include "services/sales/domain/quote.h"
#include "services/sales/domain/task.h"
#include "services/sales/domain/validation.h"

namespace crm::sales {
namespace {

// Appends racing on an unversioned command are retried this often.
constexpr int kMaxAttempts = 5;
// Reminders raised per timer pass; the rest wait for the next pass.
constexpr size_t kMaxRemindersPerPass = 1000;

// Correlation and causation default to the request, as in every service.
EventContext ForRequest(EventContext ctx, const std::string& request_id) {
  if (ctx.correlation_id.empty()) ctx.correlation_id = request_id;
  if (ctx.causation_id.empty()) ctx.causation_id = request_id;
  if (ctx.source.empty()) ctx.source = kSalesSource;
  return ctx;
}

// The payload of an event a reaction takes, with the customer it names.
template <typename Payload>
absl::StatusOr<Payload> EventFor(const crm::v1::EventEnvelope& event) {
  Payload payload;
  if (!event.payload().UnpackTo(&payload)) {
    return Invalid("payload", absl::StrCat("not a ", Payload::descriptor()->full_name()));
  }
  CRM_RETURN_IF_ERROR(CheckId("customer_id", payload.customer_id()));
  return payload;
}

// The context of work caused by another event: same correlation, caused by
// that event, a microsecond after it (a replay decides the same way). Just
// after, not at: views ordered by time (the 360 timeline, the audit trail)
// then show the conversion before the account it opened, which stream
// versions of two streams cannot tell.
EventContext ForEvent(const crm::v1::EventEnvelope& event) {
  EventContext ctx;
  ctx.source = kSalesSource;
  ctx.actor = "system:sales";
  ctx.correlation_id = event.correlation_id().empty() ? event.event_id() : event.correlation_id();
  ctx.causation_id = event.event_id();
  ctx.occurred_at = FromProtoTimestamp(event.occurred_at()) + absl::Microseconds(1);
  return ctx;
}

EventContext ForTimer(absl::Time now, const std::string& subject) {
  EventContext ctx;
  ctx.source = kSalesSource;
  ctx.actor = "system:sales-reminders";
  ctx.correlation_id = subject;
  ctx.causation_id = subject;
  ctx.occurred_at = now;
  return ctx;
}

template <typename Message>
absl::Status ParseStored(const std::string& bytes, Message& out) {
  if (!out.ParseFromString(bytes)) return absl::DataLossError("corrupt stored response");
  return absl::OkStatus();
}

// The answer stored for `request_key` (a retry), nullopt for a new call.
template <typename Message>
absl::StatusOr<std::optional<Message>> StoredAnswer(const EventStore& events,
                                                    const std::string& request_key) {
  CRM_ASSIGN_OR_RETURN(auto earlier, events.FindResponse(request_key));
  if (!earlier.has_value()) return std::nullopt;
  Message out;
  CRM_RETURN_IF_ERROR(ParseStored(*earlier, out));
  return out;
}

std::vector<ProjectionWrite> NoRows() { return {}; }

absl::Status CheckOptionalDate(absl::string_view field, absl::string_view value) {
  if (value.empty()) return absl::OkStatus();
  return ParseDate(field, value).status();
}

// The commands Decide takes for an existing record carry no id, so its
// NOT_FOUND is named here: after Decide, whose checks of input and roles
// come first. `field` is e.g. "quote_id".
template <typename Events, typename State>
absl::StatusOr<Events> NameMissing(absl::StatusOr<Events> decided,
                                   const std::optional<State>& state, absl::string_view field,
                                   absl::string_view id) {
  if (state.has_value() || !absl::IsNotFound(decided.status())) return decided;
  return absl::NotFoundError(
      absl::StrCat(field, ": ", absl::StripSuffix(field, "_id"), " ", id, " not found"));
}

}  // namespace

absl::StatusOr<bool> SalesCommands::OnlyTimerNotesAfter(const std::string& stream,
                                                        int64_t expected_version,
                                                        int64_t version) const {
  if (expected_version < 1 || expected_version >= version) return false;
  CRM_ASSIGN_OR_RETURN(auto since, store_.events().ReadStream(stream, expected_version + 1));
  return std::all_of(since.begin(), since.end(), [](const crm::v1::EventEnvelope& e) {
    return e.payload().Is<crm::v1::OpportunityWentStale>();
  });
}

template <typename State, typename Decider, typename Rows>
absl::StatusOr<SalesCommands::Outcome<State>> SalesCommands::Execute(
    const std::string& stream, const std::string& request_key, int64_t expected_version,
    const EventContext& ctx, Decider&& decide, Rows&& rows) {
  for (int attempt = 1;; ++attempt) {
    CRM_ASSIGN_OR_RETURN(Loaded<State> loaded, store_.Load<State>(stream));
    // After the load: a retry racing its first attempt either sees the
    // stored result here or loses the append to it (which then answers
    // with that result), never decides again on the state it made.
    if (!request_key.empty()) {
      CRM_ASSIGN_OR_RETURN(auto earlier, StoredAnswer<State>(store_.events(), request_key));
      if (earlier.has_value()) return Outcome<State>{.state = *std::move(earlier)};
    }
    // A missing aggregate is NOT_FOUND from Decide, not a version conflict.
    if (expected_version != kAnyVersion && loaded.state.has_value() &&
        loaded.version != expected_version) {
      CRM_ASSIGN_OR_RETURN(const bool notes,
                           OnlyTimerNotesAfter(stream, expected_version, loaded.version));
      if (!notes) {
        return absl::AbortedError(absl::StrCat("expected_version: ", stream, " is at version ",
                                               loaded.version, ", not ", expected_version));
      }
    }
    CRM_ASSIGN_OR_RETURN(auto events, decide(loaded.state));
    Outcome<State> out;
    out.state = loaded.state.value_or(State());
    if (events.empty()) return out;
    // After the stream's last event (see StampedAfter).
    EventContext stamped = ctx;
    if (loaded.version > 0) {
      CRM_ASSIGN_OR_RETURN(auto last, store_.events().ReadStream(stream, loaded.version));
      if (!last.empty()) {
        stamped.occurred_at = StampedAfter(ctx.occurred_at, last.front().occurred_at());
      }
    }
    for (const auto& e : events) Apply(out.state, e, stamped.occurred_at);

    AppendRequest append;
    append.stream = stream;
    append.expected_version = loaded.version;
    for (const auto& e : events) {
      std::visit(
          [&](const auto& payload) {
            append.events.push_back(MakeEnvelope(payload, out.state.customer_id(), stamped));
          },
          e);
    }
    append.state = out.state.SerializeAsString();
    append.projection_writes = rows(out.state);
    append.request_key = request_key;
    append.response = append.state;
    auto result = store_.events().Append(std::move(append));
    if (absl::IsAborted(result.status()) && expected_version == kAnyVersion &&
        attempt < kMaxAttempts) {
      continue;  // another command changed the stream meanwhile: decide again
    }
    if (!result.ok()) return result.status();
    if (result->replayed) {
      CRM_RETURN_IF_ERROR(ParseStored(result->response, out.state));
      return out;
    }
    out.appended = events.size();
    return out;
  }
}

namespace {

// The stream of each record kind that Transition serves.
std::string StreamOf(const crm::v1::Quote*, absl::string_view id) { return QuoteStream(id); }
std::string StreamOf(const crm::v1::Contract*, absl::string_view id) { return ContractStream(id); }

}  // namespace

template <typename State, typename MakeCommand>
absl::StatusOr<State> SalesCommands::Transition(const google::protobuf::Message& request,
                                                absl::string_view method,
                                                absl::string_view id_field, const std::string& id,
                                                const std::string& request_id, EventContext raw_ctx,
                                                MakeCommand&& command,
                                                absl::string_view unless_lost_to) {
  CRM_RETURN_IF_ERROR(CheckRequestId(request_id));
  CRM_RETURN_IF_ERROR(CheckId(id_field, id));
  const EventContext ctx = ForRequest(std::move(raw_ctx), request_id);
  const std::string stream = StreamOf(static_cast<const State*>(nullptr), id);
  // A record's deal never changes, so its lock can be taken before the
  // record is read again under it (none locked without the check).
  std::string deal;
  if (!unless_lost_to.empty()) {
    CRM_ASSIGN_OR_RETURN(auto first_read, store_.Load<State>(stream));
    if (first_read.state.has_value()) deal = first_read.state->opportunity_id();
  }
  auto guard = opportunity_locks_.Lock({deal});
  CRM_ASSIGN_OR_RETURN(
      auto out, Execute<State>(
                    stream, CallerRequestKey(ctx, absl::StrCat(method, "/", request_id), request),
                    kAnyVersion, ctx,
                    [&](const std::optional<State>& s) {
                      // After the retry lookup and the command's own checks: one that
                      // went through keeps its answer, and a caller's own mistakes (or
                      // a role that may not do this) are named first.
                      auto decided = NameMissing(Decide(s, command(ctx)), s, id_field, id);
                      if (decided.ok() && !unless_lost_to.empty()) {
                        if (auto st = DealNotLost(s->opportunity_id(), unless_lost_to); !st.ok()) {
                          return decltype(decided)(st);
                        }
                      }
                      return decided;
                    },
                    [](const State&) { return NoRows(); }));
  return out.state;
}

template <typename State>
absl::StatusOr<State> SalesCommands::LoadExisting(absl::string_view noun, const std::string& stream,
                                                  const std::string& id) const {
  CRM_ASSIGN_OR_RETURN(auto loaded, store_.Load<State>(stream));
  if (!loaded.state.has_value()) {
    // Named by the field that carries the id, as every NOT_FOUND here is.
    return absl::NotFoundError(absl::StrCat(noun, "_id: ", noun, " ", id, " not found"));
  }
  return *std::move(loaded.state);
}

// ---------------------------------------------------------------- customers

absl::StatusOr<crm::v1::Customer> SalesCommands::OpenCustomer(
    const crm::v1::OpenCustomerRequest& raw, EventContext ctx,
    const crm::v1::OpenCustomerRequest* as_sent) {
  CRM_RETURN_IF_ERROR(CheckRequestId(raw.request_id()));
  // The request as sent: a retry of one without customer_id must match,
  // though the id minted below (and the tier the config fills in) differ.
  // Before ctx is moved: argument evaluation order is unspecified.
  const std::string name = absl::StrCat("OpenCustomer/", raw.request_id());
  const std::string key = CallerRequestKey(ctx, name, as_sent != nullptr ? *as_sent : raw);
  // A retry is answered before an id is minted and a key issued for it:
  // each would append a DataKeyIssued for a customer that never opens. One
  // racing its first call waits for it; and it is answered before the
  // request is checked against today's configuration (a tier since
  // retired).
  auto guard = request_locks_.Lock({raw.request_id()});
  auto earlier = StoredAnswer<crm::v1::Customer>(store_.events(), key);
  if (absl::IsInvalidArgument(earlier.status()) && as_sent != nullptr) {
    // Answers stored by earlier versions are keyed by the request with the
    // caller's defaults filled in: found while the token fills in the same
    // ones (a retry across the upgrade whose token changed too is refused).
    auto scoped =
        StoredAnswer<crm::v1::Customer>(store_.events(), CallerRequestKey(ctx, name, raw));
    if (scoped.ok() && scoped->has_value()) earlier = std::move(scoped);
  }
  CRM_RETURN_IF_ERROR(earlier.status());
  if (earlier->has_value()) return **std::move(earlier);
  CRM_ASSIGN_OR_RETURN(auto request, NormalizeOpenCustomer(raw, settings_.loyalty));
  if (request.customer_id().empty()) request.set_customer_id(NewId("cus"));
  if (vault_ != nullptr) {
    // The key is durable before the events it seals (one more synced write
    // for a customer new to this service; an unused key is harmless).
    CRM_ASSIGN_OR_RETURN(auto data_key, vault_->EnsureKey(request.customer_id(), ctx));
    pii::SealFields(request, data_key);
  }
  return OpenCustomerWith(request, "", key, ForRequest(std::move(ctx), request.request_id()));
}

absl::StatusOr<crm::v1::Customer> SalesCommands::OpenCustomerWith(
    const crm::v1::OpenCustomerRequest& request, const std::string& lead_id,
    const std::string& request_key, const EventContext& ctx) {
  sales::OpenCustomer command{request, lead_id};
  CRM_ASSIGN_OR_RETURN(auto out,
                       Execute<crm::v1::Customer>(
                           CustomerStream(request.customer_id()), request_key, kAnyVersion, ctx,
                           [&](const std::optional<crm::v1::Customer>& s) {
                             return Decide(s, CustomerCommand{command});
                           },
                           [](const crm::v1::Customer& c) {
                             return std::vector<ProjectionWrite>{SalesStore::CustomerRow(c)};
                           }));
  return out.state;
}

absl::StatusOr<crm::v1::Customer> SalesCommands::LoadCustomer(
    const std::string& customer_id) const {
  return LoadExisting<crm::v1::Customer>("customer", CustomerStream(customer_id), customer_id);
}

absl::StatusOr<crm::v1::Customer> SalesCommands::GetCustomer(
    const crm::v1::GetCustomerRequest& request) const {
  CRM_RETURN_IF_ERROR(CheckId("customer_id", request.customer_id()));
  return LoadCustomer(request.customer_id());
}

absl::StatusOr<crm::v1::PageRequest> SalesCommands::OpenListCustomers(
    const crm::v1::ListCustomersRequest& request) {
  CRM_RETURN_IF_ERROR(CheckOptionalId("owner_id", request.owner_id()));
  CRM_RETURN_IF_ERROR(
      CheckLine("territory", absl::StripAsciiWhitespace(request.territory()), kMaxTerritory));
  CRM_RETURN_IF_ERROR(CheckOptionalId("tier", request.tier()));
  CRM_ASSIGN_OR_RETURN(crm::v1::PageRequest opened, OpenPage(request, request.page()));
  CRM_RETURN_IF_ERROR(SalesStore::PageSize(opened).status());
  return opened;
}

absl::StatusOr<crm::v1::ListCustomersResponse> SalesCommands::ListCustomers(
    const crm::v1::ListCustomersRequest& request,
    const std::function<bool(const crm::v1::Customer&)>& visible) const {
  CRM_ASSIGN_OR_RETURN(const crm::v1::PageRequest opened_page, OpenListCustomers(request));
  // Territories compare as access compares them: a converted account keeps
  // its lead's spelling of the region. Trimmed, as accounts store theirs.
  const absl::string_view territory = absl::StripAsciiWhitespace(request.territory());
  auto in_territory = [&](const crm::v1::Customer& c) {
    return territory.empty() || auth::SameTerritory(c.territory(), territory);
  };
  CRM_ASSIGN_OR_RETURN(
      auto page, store_.List<crm::v1::Customer>(
                     kCustomersFamily, "", opened_page, [&](const crm::v1::Customer& c) {
                       return (request.owner_id().empty() || c.owner_id() == request.owner_id()) &&
                              in_territory(c) &&
                              (request.tier().empty() || c.tier() == request.tier()) &&
                              (!visible || visible(c));
                     }));
  crm::v1::ListCustomersResponse response;
  for (auto& c : page.rows) *response.add_customers() = std::move(c);
  response.set_next_page_token(SealPageToken(request, page.next_page_token));
  return response;
}

// ------------------------------------------------------------ opportunities

absl::StatusOr<crm::v1::Opportunity> SalesCommands::OpenOpportunity(
    const crm::v1::OpenOpportunityRequest& request, EventContext ctx) {
  CRM_RETURN_IF_ERROR(ValidateOpenOpportunity(request));
  // Before ctx is moved: argument evaluation order is unspecified.
  const std::string key =
      CallerRequestKey(ctx, absl::StrCat("OpenOpportunity/", request.request_id()), request);
  return OpenOpportunityWith(request, "", key, ForRequest(std::move(ctx), request.request_id()));
}

absl::StatusOr<crm::v1::Opportunity> SalesCommands::OpenOpportunityWith(
    const crm::v1::OpenOpportunityRequest& request, const std::string& lead_id,
    const std::string& request_key, const EventContext& ctx, const std::string& opportunity_id) {
  // A retry must not depend on the account or configuration of today.
  CRM_ASSIGN_OR_RETURN(auto earlier,
                       StoredAnswer<crm::v1::Opportunity>(store_.events(), request_key));
  if (earlier.has_value()) return AsWritten(*std::move(earlier));
  CRM_ASSIGN_OR_RETURN(auto customer, LoadCustomer(request.customer_id()));
  const crm::v1::Pipeline* pipeline = settings_.pipelines.Find(request.pipeline_id());
  if (pipeline == nullptr) {
    return Invalid("pipeline_id", absl::StrCat("no pipeline ", request.pipeline_id()));
  }
  sales::OpenOpportunity command;
  command.request = request;
  if (command.request.owner_id().empty()) command.request.set_owner_id(customer.owner_id());
  command.opportunity_id = opportunity_id.empty() ? NewId("opp") : opportunity_id;
  command.territory = customer.territory();
  command.lead_id = lead_id;
  command.pipeline = *pipeline;
  CRM_ASSIGN_OR_RETURN(
      auto out, Execute<crm::v1::Opportunity>(
                    OpportunityStream(command.opportunity_id), request_key, kAnyVersion, ctx,
                    [&](const std::optional<crm::v1::Opportunity>& s) {
                      return Decide(s, OpportunityCommand{command});
                    },
                    [](const crm::v1::Opportunity& o) { return SalesStore::OpportunityRows(o); }));
  return AsWritten(std::move(out.state));
}

absl::StatusOr<crm::v1::Opportunity> SalesCommands::LoadOpportunity(
    const std::string& opportunity_id) const {
  return LoadExisting<crm::v1::Opportunity>("opportunity", OpportunityStream(opportunity_id),
                                            opportunity_id);
}

absl::Status SalesCommands::TheDealsQuote(const std::string& opportunity_id,
                                          const std::string& quote_id) const {
  if (opportunity_id.empty()) return absl::OkStatus();
  // The ordered quote stays the deal's when it is lost and reopened; an
  // accepted one only until a loss. Another would be ordered and billed
  // a second time.
  CRM_ASSIGN_OR_RETURN(auto ordered, store_.OrderedQuoteOf(opportunity_id));
  if (ordered.has_value() && *ordered != quote_id) {
    return absl::FailedPreconditionError(absl::StrCat("quote_id: opportunity ", opportunity_id,
                                                      " ordered quote ", *ordered,
                                                      "; a deal orders one quote"));
  }
  CRM_ASSIGN_OR_RETURN(auto accepted, store_.AcceptedQuoteOf(opportunity_id));
  if (accepted.has_value() && *accepted != quote_id) {
    return absl::FailedPreconditionError(absl::StrCat("quote_id: opportunity ", opportunity_id,
                                                      " has accepted quote ", *accepted,
                                                      " already; a deal accepts one quote"));
  }
  return absl::OkStatus();
}

absl::Status SalesCommands::AcceptedLast(const std::string& opportunity_id,
                                         const std::string& quote_id) const {
  if (opportunity_id.empty()) return absl::OkStatus();
  // A loss ends the accepted quote's hold on the deal, not its acceptance:
  // once the deal accepted another, lost or not since, the earlier price
  // is not the one the customer agreed to last.
  CRM_ASSIGN_OR_RETURN(auto last, store_.LastAcceptedQuoteOf(opportunity_id));
  if (last.has_value() && *last != quote_id) {
    return absl::FailedPreconditionError(absl::StrCat("quote_id: opportunity ", opportunity_id,
                                                      " accepted quote ", *last,
                                                      " after it; only that one is ordered"));
  }
  return absl::OkStatus();
}

absl::Status SalesCommands::DealNotLost(const std::string& opportunity_id,
                                        absl::string_view to) const {
  if (opportunity_id.empty()) return absl::OkStatus();
  CRM_ASSIGN_OR_RETURN(auto opportunity, LoadOpportunity(opportunity_id));
  return CheckNotLost(opportunity, to);
}

absl::Status SalesCommands::DealTakesQuote(const std::string& opportunity_id, absl::string_view to,
                                           absl::string_view currency) const {
  if (opportunity_id.empty()) return absl::OkStatus();
  CRM_ASSIGN_OR_RETURN(auto opportunity, LoadOpportunity(opportunity_id));
  CRM_RETURN_IF_ERROR(CheckNotLost(opportunity, to));
  return CheckQuoteCurrency(opportunity, currency, "quote_id");
}

absl::Status SalesCommands::OrderedInCurrency(const std::string& opportunity_id,
                                              absl::string_view currency) const {
  CRM_ASSIGN_OR_RETURN(auto ordered, store_.OrderedQuoteOf(opportunity_id));
  if (!ordered.has_value()) return absl::OkStatus();
  CRM_ASSIGN_OR_RETURN(auto quote,
                       LoadExisting<crm::v1::Quote>("quote", QuoteStream(*ordered), *ordered));
  if (quote.currency() == currency) return absl::OkStatus();
  return absl::FailedPreconditionError(
      absl::StrCat("amount.currency: opportunity ", opportunity_id, " ordered quote ", *ordered,
                   " in ", quote.currency(), "; its amount stays in the order's currency"));
}

absl::StatusOr<crm::v1::Opportunity> SalesCommands::WithActivity(crm::v1::Opportunity o) const {
  CRM_ASSIGN_OR_RETURN(const absl::Time last, store_.LastActivityAt(o.opportunity_id()));
  if (last != absl::InfinitePast()) {
    *o.mutable_last_activity_at() = ToProtoTimestamp(last);
    // A reminder answered by an activity since is over (stale_since: none
    // raised since the last activity); a backdated one answers nothing.
    if (o.has_stale_since() &&
        !StaleReminderCovers(o, InactiveSince(o, last), settings_.stale_after)) {
      o.clear_stale_since();
      o.clear_stale_reminded_at();
    }
  }
  return o;
}

crm::v1::Opportunity SalesCommands::AsWritten(crm::v1::Opportunity o) const {
  auto shown = WithActivity(o);
  if (shown.ok()) return *std::move(shown);
  log::Warn("opportunity answered without its last activity",
            {{"opportunity_id", o.opportunity_id()}, {"error", shown.status().ToString()}});
  return o;
}

absl::StatusOr<crm::v1::Opportunity> SalesCommands::GetOpportunity(
    const crm::v1::GetOpportunityRequest& request) const {
  CRM_RETURN_IF_ERROR(CheckId("opportunity_id", request.opportunity_id()));
  CRM_ASSIGN_OR_RETURN(auto o, LoadOpportunity(request.opportunity_id()));
  return WithActivity(std::move(o));
}

absl::StatusOr<crm::v1::PageRequest> SalesCommands::OpenListOpportunities(
    const crm::v1::ListOpportunitiesRequest& request) {
  CRM_RETURN_IF_ERROR(CheckOptionalId("owner_id", request.owner_id()));
  CRM_RETURN_IF_ERROR(CheckOptionalId("stage_id", request.stage_id()));
  CRM_RETURN_IF_ERROR(CheckOptionalId("customer_id", request.customer_id()));
  CRM_RETURN_IF_ERROR(CheckOptionalDate("close_date_from", request.close_date_from()));
  CRM_RETURN_IF_ERROR(CheckOptionalDate("close_date_to", request.close_date_to()));
  // An empty range is a caller's mistake, as in GetForecast, not an empty page.
  if (!request.close_date_from().empty() && !request.close_date_to().empty() &&
      request.close_date_to() < request.close_date_from()) {
    return Invalid("close_date_to", "before close_date_from");
  }
  CRM_ASSIGN_OR_RETURN(crm::v1::PageRequest opened, OpenPage(request, request.page()));
  CRM_RETURN_IF_ERROR(SalesStore::PageSize(opened).status());
  return opened;
}

absl::StatusOr<crm::v1::ListOpportunitiesResponse> SalesCommands::ListOpportunities(
    const crm::v1::ListOpportunitiesRequest& request,
    const std::function<bool(const crm::v1::Opportunity&)>& visible) const {
  CRM_ASSIGN_OR_RETURN(const crm::v1::PageRequest opened_page, OpenListOpportunities(request));
  const absl::Time now = settings_.clock();
  // ISO dates compare as strings.
  const std::string& from = request.close_date_from();
  const std::string& to = request.close_date_to();
  absl::Status unreadable;
  CRM_ASSIGN_OR_RETURN(
      auto page,
      store_.List<crm::v1::Opportunity>(
          kOpportunitiesFamily, "", opened_page, [&](const crm::v1::Opportunity& o) {
            if (!request.owner_id().empty() && o.owner_id() != request.owner_id()) return false;
            if (!request.stage_id().empty() && o.stage_id() != request.stage_id()) return false;
            if (!request.customer_id().empty() && o.customer_id() != request.customer_id()) {
              return false;
            }
            if ((!from.empty() || !to.empty()) && o.expected_close_date().empty()) return false;
            if (!from.empty() && o.expected_close_date() < from) return false;
            if (!to.empty() && o.expected_close_date() > to) return false;
            if (visible && !visible(o)) return false;
            if (request.stale_only()) {
              auto last = store_.LastActivityAt(o.opportunity_id());
              // Unreadable, the deal is neither kept nor skipped: the
              // listing fails (below) rather than pass over it.
              if (!last.ok()) {
                if (unreadable.ok()) unreadable = last.status();
                return false;
              }
              return IsStale(o, *last, now, settings_.stale_after);
            }
            return true;
          }));
  CRM_RETURN_IF_ERROR(unreadable);
  crm::v1::ListOpportunitiesResponse response;
  for (auto& o : page.rows) {
    CRM_ASSIGN_OR_RETURN(*response.add_opportunities(), WithActivity(std::move(o)));
  }
  response.set_next_page_token(SealPageToken(request, page.next_page_token));
  return response;
}

absl::StatusOr<crm::v1::Opportunity> SalesCommands::ChangeOpportunityStage(
    const crm::v1::ChangeOpportunityStageRequest& request, EventContext raw_ctx) {
  CRM_RETURN_IF_ERROR(ValidateChangeStage(request));
  const EventContext ctx = ForRequest(std::move(raw_ctx), request.request_id());
  // A quote being drafted or accepted finishes before the deal can be lost.
  auto guard = opportunity_locks_.Lock({request.opportunity_id()});
  CRM_ASSIGN_OR_RETURN(
      auto out,
      Execute<crm::v1::Opportunity>(
          OpportunityStream(request.opportunity_id()),
          CallerRequestKey(ctx, absl::StrCat("ChangeOpportunityStage/", request.request_id()),
                           request),
          request.expected_version(), ctx,
          [&](const std::optional<crm::v1::Opportunity>& s)
              -> absl::StatusOr<std::vector<OpportunityEvent>> {
            if (!s.has_value()) {
              return absl::NotFoundError(absl::StrCat("opportunity_id: opportunity ",
                                                      request.opportunity_id(), " not found"));
            }
            const crm::v1::Pipeline* pipeline = settings_.pipelines.Find(s->pipeline_id());
            if (pipeline == nullptr) {
              return absl::FailedPreconditionError(
                  absl::StrCat("pipeline ", s->pipeline_id(),
                               " is no longer configured: its deals move once it is back in the "
                               "pipelines file"));
            }
            return Decide(s,
                          OpportunityCommand{ChangeStage{request.stage_id(), request.lost_reason(),
                                                         *pipeline, ctx.occurred_at}});
          },
          [](const crm::v1::Opportunity& o) { return SalesStore::OpportunityRows(o); }));
  return AsWritten(std::move(out.state));
}

absl::StatusOr<crm::v1::Opportunity> SalesCommands::ReviseOpportunity(
    const crm::v1::ReviseOpportunityRequest& request, EventContext raw_ctx) {
  CRM_RETURN_IF_ERROR(ValidateRevise(request));
  const EventContext ctx = ForRequest(std::move(raw_ctx), request.request_id());
  // The stale reminder appends under this lock: a save on the version
  // before it goes through (Execute looks past it) instead of meeting it
  // between the version check and the append, ABORTED.
  auto guard = opportunity_locks_.Lock({request.opportunity_id()});
  CRM_ASSIGN_OR_RETURN(
      auto out,
      Execute<crm::v1::Opportunity>(
          OpportunityStream(request.opportunity_id()),
          CallerRequestKey(ctx, absl::StrCat("ReviseOpportunity/", request.request_id()), request),
          request.expected_version(), ctx,
          [&](const std::optional<crm::v1::Opportunity>& s) {
            auto decided = Decide(s, OpportunityCommand{sales::ReviseOpportunity{request}});
            if (!decided.ok() || !request.has_amount()) return decided;
            // The forecast counts the amount as won, the invoice the quote.
            absl::Status st =
                OrderedInCurrency(request.opportunity_id(), request.amount().currency());
            if (!st.ok()) return decltype(decided)(st);
            return decided;
          },
          [](const crm::v1::Opportunity& o) { return SalesStore::OpportunityRows(o); }));
  return AsWritten(std::move(out.state));
}

crm::v1::ListPipelinesResponse SalesCommands::ListPipelines() const {
  crm::v1::ListPipelinesResponse response;
  for (const auto& p : settings_.pipelines.all()) *response.add_pipelines() = p;
  response.set_default_pipeline_id(settings_.pipelines.Default().pipeline_id());
  return response;
}

// ------------------------------------------------------ activities and tasks

absl::StatusOr<SalesCommands::Target> SalesCommands::ResolveTarget(
    const std::string& customer_id, const std::string& opportunity_id) const {
  Target target;
  if (!opportunity_id.empty()) {
    CRM_ASSIGN_OR_RETURN(auto o, LoadOpportunity(opportunity_id));
    if (!customer_id.empty() && customer_id != o.customer_id()) {
      return Invalid("opportunity_id", "belongs to another customer");
    }
    target.opportunity = std::move(o);
  }
  CRM_ASSIGN_OR_RETURN(
      target.customer,
      LoadCustomer(target.opportunity ? target.opportunity->customer_id() : customer_id));
  return target;
}

absl::Status SalesCommands::SealFreeText(google::protobuf::Message& request,
                                         const std::string& customer_id, const EventContext& ctx) {
  if (vault_ == nullptr) return absl::OkStatus();
  google::protobuf::Message* messages[] = {&request};
  return pii::SealForCustomer(*vault_, customer_id, ctx, messages);
}

absl::StatusOr<crm::v1::Activity> SalesCommands::LogActivity(
    const crm::v1::LogActivityRequest& request, EventContext raw_ctx) {
  CRM_RETURN_IF_ERROR(ValidateLogActivity(request));
  const EventContext ctx = ForRequest(std::move(raw_ctx), request.request_id());
  const std::string request_key =
      CallerRequestKey(ctx, absl::StrCat("LogActivity/", request.request_id()), request);
  CRM_ASSIGN_OR_RETURN(auto earlier, StoredAnswer<crm::v1::Activity>(store_.events(), request_key));
  if (earlier.has_value()) return *std::move(earlier);
  CRM_ASSIGN_OR_RETURN(auto target, ResolveTarget(request.customer_id(), request.opportunity_id()));
  sales::LogActivity command;
  command.request = request;
  command.request.set_customer_id(target.customer.customer_id());
  CRM_RETURN_IF_ERROR(SealFreeText(command.request, command.request.customer_id(), ctx));
  command.activity_id = NewId("act");
  command.logged_by = ctx.actor;
  command.now = ctx.occurred_at;

  // The opportunity's latest activity only moves forward; two activities
  // logged at once must not overwrite each other's newer time.
  auto guard = opportunity_locks_.Lock({request.opportunity_id()});
  std::optional<absl::Time> last;
  if (!request.opportunity_id().empty()) {
    CRM_ASSIGN_OR_RETURN(last, store_.LastActivityAt(request.opportunity_id()));
  }
  CRM_ASSIGN_OR_RETURN(
      auto out, Execute<crm::v1::Activity>(
                    ActivityStream(command.activity_id), request_key, kAnyVersion, ctx,
                    [&](const std::optional<crm::v1::Activity>& s) { return Decide(s, command); },
                    [&](const crm::v1::Activity& a) {
                      auto rows = SalesStore::ActivityRows(a);
                      const absl::Time at = FromProtoTimestamp(a.occurred_at());
                      if (last.has_value() && at > *last) {
                        rows.push_back(SalesStore::LastActivityRow(a.opportunity_id(), at));
                      }
                      return rows;
                    }));
  return out.state;
}

absl::StatusOr<crm::v1::PageRequest> SalesCommands::OpenListActivities(
    const crm::v1::ListActivitiesRequest& request) {
  if (request.customer_id().empty() == request.opportunity_id().empty()) {
    return Invalid("customer_id", "exactly one of customer_id and opportunity_id is required");
  }
  CRM_RETURN_IF_ERROR(CheckOptionalId("customer_id", request.customer_id()));
  CRM_RETURN_IF_ERROR(CheckOptionalId("opportunity_id", request.opportunity_id()));
  CRM_ASSIGN_OR_RETURN(crm::v1::PageRequest opened, OpenPage(request, request.page()));
  CRM_RETURN_IF_ERROR(SalesStore::PageSize(opened).status());
  return opened;
}

absl::StatusOr<crm::v1::ListActivitiesResponse> SalesCommands::ListActivities(
    const crm::v1::ListActivitiesRequest& request,
    const std::function<bool(const crm::v1::Activity&)>& visible) const {
  CRM_ASSIGN_OR_RETURN(const crm::v1::PageRequest opened_page, OpenListActivities(request));
  const std::string prefix = request.customer_id().empty()
                                 ? SalesStore::OpportunityActivities(request.opportunity_id())
                                 : SalesStore::CustomerActivities(request.customer_id());
  CRM_ASSIGN_OR_RETURN(auto page,
                       store_.List<crm::v1::Activity>(
                           kActivitiesFamily, prefix, opened_page,
                           [&](const crm::v1::Activity& a) { return !visible || visible(a); }));
  crm::v1::ListActivitiesResponse response;
  for (auto& a : page.rows) *response.add_activities() = std::move(a);
  response.set_next_page_token(SealPageToken(request, page.next_page_token));
  return response;
}

absl::StatusOr<crm::v1::Task> SalesCommands::CreateTask(const crm::v1::CreateTaskRequest& request,
                                                        EventContext raw_ctx) {
  CRM_RETURN_IF_ERROR(ValidateCreateTask(request));
  const EventContext ctx = ForRequest(std::move(raw_ctx), request.request_id());
  const std::string request_key =
      CallerRequestKey(ctx, absl::StrCat("CreateTask/", request.request_id()), request);
  CRM_ASSIGN_OR_RETURN(auto earlier, StoredAnswer<crm::v1::Task>(store_.events(), request_key));
  if (earlier.has_value()) return *std::move(earlier);
  CRM_ASSIGN_OR_RETURN(auto target, ResolveTarget(request.customer_id(), request.opportunity_id()));
  sales::CreateTask command;
  command.request = request;
  command.request.set_customer_id(target.customer.customer_id());
  if (command.request.owner_id().empty()) {
    command.request.set_owner_id(target.opportunity ? target.opportunity->owner_id()
                                                    : target.customer.owner_id());
  }
  CRM_RETURN_IF_ERROR(SealFreeText(command.request, command.request.customer_id(), ctx));
  command.task_id = NewId("task");
  CRM_ASSIGN_OR_RETURN(auto out, Execute<crm::v1::Task>(
                                     TaskStream(command.task_id), request_key, kAnyVersion, ctx,
                                     [&](const std::optional<crm::v1::Task>& s) {
                                       return Decide(s, TaskCommand{command});
                                     },
                                     [](const crm::v1::Task& t) {
                                       return std::vector<ProjectionWrite>{
                                           SalesStore::TaskRow(t), SalesStore::TaskDueEntry(t)};
                                     }));
  return out.state;
}

absl::StatusOr<crm::v1::Task> SalesCommands::CompleteTask(
    const crm::v1::CompleteTaskRequest& request, EventContext raw_ctx) {
  CRM_RETURN_IF_ERROR(CheckRequestId(request.request_id()));
  CRM_RETURN_IF_ERROR(CheckId("task_id", request.task_id()));
  const EventContext ctx = ForRequest(std::move(raw_ctx), request.request_id());
  CRM_ASSIGN_OR_RETURN(
      auto out,
      Execute<crm::v1::Task>(
          TaskStream(request.task_id()),
          CallerRequestKey(ctx, absl::StrCat("CompleteTask/", request.request_id()), request),
          kAnyVersion, ctx,
          [&](const std::optional<crm::v1::Task>& s) {
            return NameMissing(Decide(s, TaskCommand{sales::CompleteTask{}}), s, "task_id",
                               request.task_id());
          },
          [](const crm::v1::Task& t) {
            return std::vector<ProjectionWrite>{SalesStore::TaskRow(t)};
          }));
  if (auto st = store_.ForgetDueTask(out.state); !st.ok()) {
    log::Warn("due index cleanup", {{"task_id", out.state.task_id()}, {"error", st.ToString()}});
  }
  return out.state;
}

absl::StatusOr<crm::v1::Task> SalesCommands::GetTask(const std::string& task_id) const {
  CRM_RETURN_IF_ERROR(CheckId("task_id", task_id));
  return LoadExisting<crm::v1::Task>("task", TaskStream(task_id), task_id);
}

absl::StatusOr<crm::v1::PageRequest> SalesCommands::OpenListTasks(
    const crm::v1::ListTasksRequest& request) {
  CRM_RETURN_IF_ERROR(CheckOptionalId("owner_id", request.owner_id()));
  CRM_RETURN_IF_ERROR(CheckOptionalId("customer_id", request.customer_id()));
  CRM_RETURN_IF_ERROR(CheckOptionalId("opportunity_id", request.opportunity_id()));
  if (!crm::v1::TaskStatus_IsValid(request.status())) return Invalid("status", "unknown status");
  CRM_ASSIGN_OR_RETURN(crm::v1::PageRequest opened, OpenPage(request, request.page()));
  CRM_RETURN_IF_ERROR(SalesStore::PageSize(opened).status());
  return opened;
}

absl::StatusOr<crm::v1::ListTasksResponse> SalesCommands::ListTasks(
    const crm::v1::ListTasksRequest& request,
    const std::function<bool(const crm::v1::Task&)>& visible) const {
  CRM_ASSIGN_OR_RETURN(const crm::v1::PageRequest opened_page, OpenListTasks(request));
  const absl::Time now = settings_.clock();
  CRM_ASSIGN_OR_RETURN(
      auto page,
      store_.List<crm::v1::Task>(kTasksFamily, "", opened_page, [&](const crm::v1::Task& t) {
        return (request.owner_id().empty() || t.owner_id() == request.owner_id()) &&
               (request.customer_id().empty() || t.customer_id() == request.customer_id()) &&
               (request.opportunity_id().empty() ||
                t.opportunity_id() == request.opportunity_id()) &&
               (request.status() == crm::v1::TASK_STATUS_UNSPECIFIED ||
                t.status() == request.status()) &&
               (!request.overdue_only() || IsOverdue(t, now)) && (!visible || visible(t));
      }));
  crm::v1::ListTasksResponse response;
  for (auto& t : page.rows) *response.add_tasks() = std::move(t);
  response.set_next_page_token(SealPageToken(request, page.next_page_token));
  return response;
}

absl::StatusOr<int> SalesCommands::RaiseTaskReminders(absl::Time now) {
  CRM_ASSIGN_OR_RETURN(auto due, store_.DueTaskIds(now, kMaxRemindersPerPass));
  int raised = 0;
  for (const auto& task_id : due) {
    // No request key: the task itself remembers its reminder, and a
    // concurrent pass loses the version race and then decides nothing.
    auto out = Execute<crm::v1::Task>(
        TaskStream(task_id), "", kAnyVersion, ForTimer(now, task_id),
        [&](const std::optional<crm::v1::Task>& s) {
          return Decide(s, TaskCommand{RaiseTaskReminder{now}});
        },
        [](const crm::v1::Task& t) {
          return std::vector<ProjectionWrite>{SalesStore::TaskRow(t)};
        });
    if (!out.ok()) {
      // One task must not hold up the others; it is tried again next pass.
      log::Warn("task reminder", {{"task_id", task_id}, {"error", out.status().ToString()}});
      continue;
    }
    raised += out->appended > 0;
    if (out->state.has_reminded_at() || out->state.status() != crm::v1::TASK_STATUS_OPEN) {
      // Left in the index, the task is due again next pass, which decides
      // nothing (it remembers its reminder) and forgets it then.
      if (auto st = store_.ForgetDueTask(out->state); !st.ok()) {
        log::Warn("task reminder", {{"task_id", task_id}, {"error", st.ToString()}});
      }
    }
  }
  return raised;
}

absl::StatusOr<SalesCommands::StalePass> SalesCommands::FlagStaleOpportunities(absl::Time now,
                                                                               size_t max_flags) {
  std::vector<std::string> candidates;  // opportunity ids
  // A deal whose last activity cannot be read is left for the next scan,
  // as one whose flag fails is: it must not keep every other deal from
  // being flagged, scan after scan. The first is logged, with the count.
  int unread = 0;
  std::string first_unread;
  absl::Status first_unread_error;
  auto unreadable = [&](const std::string& id, const absl::Status& st) {
    if (unread++ > 0) return;
    first_unread = id;
    first_unread_error = st;
  };
  CRM_RETURN_IF_ERROR(store_.ForEach<crm::v1::Opportunity>(
      kOpportunitiesFamily, [&](const crm::v1::Opportunity& o) {
        if (o.outcome() != crm::v1::STAGE_OUTCOME_OPEN) return;
        auto last = store_.LastActivityAt(o.opportunity_id());
        if (!last.ok()) {
          unreadable(o.opportunity_id(), last.status());
          return;
        }
        if (!IsStale(o, *last, now, settings_.stale_after)) return;
        if (StaleReminderCovers(o, InactiveSince(o, *last), settings_.stale_after)) {
          return;  // raised already
        }
        candidates.push_back(o.opportunity_id());
      }));
  StalePass pass;
  if (candidates.size() > max_flags) {
    // Those after the last one tried first: deals whose flag keeps failing
    // must not hold back every deal behind them, pass after pass.
    std::stable_partition(candidates.begin(), candidates.end(),
                          [&](const std::string& id) { return id > stale_resume_after_; });
    candidates.resize(max_flags);
    pass.more = true;
  }
  if (!candidates.empty()) stale_resume_after_ = candidates.back();
  for (const std::string& id : candidates) {
    // Under the opportunity's lock, the latest activity read again: one
    // logged since the scan answers the inactivity, no reminder.
    auto guard = opportunity_locks_.Lock({id});
    auto last = store_.LastActivityAt(id);
    if (!last.ok()) {
      unreadable(id, last.status());
      continue;
    }
    auto out = Execute<crm::v1::Opportunity>(
        OpportunityStream(id), "", kAnyVersion, ForTimer(now, id),
        [&](const std::optional<crm::v1::Opportunity>& s) {
          return Decide(s, OpportunityCommand{FlagStale{now, settings_.stale_after, *last}});
        },
        [](const crm::v1::Opportunity& o) { return SalesStore::OpportunityRows(o); });
    if (!out.ok()) {
      log::Warn("stale reminder", {{"opportunity_id", id}, {"error", out.status().ToString()}});
      continue;
    }
    pass.raised += out->appended > 0;
  }
  if (unread > 0) {
    log::Warn("stale reminder: last activity unreadable, deals left for the next scan",
              {{"deals", absl::StrCat(unread)},
               {"opportunity_id", first_unread},
               {"error", first_unread_error.ToString()}});
  }
  return pass;
}

// ------------------------------------------------- quotes, orders, contracts

absl::StatusOr<crm::v1::Quote> SalesCommands::DraftQuote(const crm::v1::DraftQuoteRequest& request,
                                                         EventContext raw_ctx) {
  CRM_RETURN_IF_ERROR(ValidateDraftQuote(request));
  const EventContext ctx = ForRequest(std::move(raw_ctx), request.request_id());
  const std::string request_key =
      CallerRequestKey(ctx, absl::StrCat("DraftQuote/", request.request_id()), request);
  // Taken before the retry lookup: a retry waiting on its first call gets
  // that call's quote, even if the deal was lost in between.
  auto guard = opportunity_locks_.Lock({request.opportunity_id()});
  CRM_ASSIGN_OR_RETURN(auto earlier, StoredAnswer<crm::v1::Quote>(store_.events(), request_key));
  if (earlier.has_value()) return *std::move(earlier);
  CRM_ASSIGN_OR_RETURN(auto target, ResolveTarget(request.customer_id(), request.opportunity_id()));
  if (target.opportunity) {
    CRM_RETURN_IF_ERROR(CheckNotLost(*target.opportunity, "quote"));
    CRM_RETURN_IF_ERROR(CheckQuoteCurrency(*target.opportunity, request.currency(), "currency"));
  }
  sales::DraftQuote command{request, NewId("quo"), ctx.occurred_at};
  command.request.set_customer_id(target.customer.customer_id());
  CRM_ASSIGN_OR_RETURN(auto out, Execute<crm::v1::Quote>(
                                     QuoteStream(command.quote_id), request_key, kAnyVersion, ctx,
                                     [&](const std::optional<crm::v1::Quote>& s) {
                                       return Decide(s, QuoteCommand{command});
                                     },
                                     [](const crm::v1::Quote&) { return NoRows(); }));
  return out.state;
}

absl::StatusOr<crm::v1::Quote> SalesCommands::GetQuote(
    const crm::v1::GetQuoteRequest& request) const {
  CRM_RETURN_IF_ERROR(CheckId("quote_id", request.quote_id()));
  return LoadExisting<crm::v1::Quote>("quote", QuoteStream(request.quote_id()), request.quote_id());
}

absl::StatusOr<crm::v1::Quote> SalesCommands::AcceptQuote(
    const crm::v1::AcceptQuoteRequest& request, EventContext raw_ctx) {
  CRM_RETURN_IF_ERROR(CheckRequestId(request.request_id()));
  CRM_RETURN_IF_ERROR(CheckId("quote_id", request.quote_id()));
  const EventContext ctx = ForRequest(std::move(raw_ctx), request.request_id());
  const std::string stream = QuoteStream(request.quote_id());
  // A quote's deal never changes: its lock can be taken before the quote
  // is read again under it.
  CRM_ASSIGN_OR_RETURN(auto first_read, store_.Load<crm::v1::Quote>(stream));
  auto guard = opportunity_locks_.Lock(
      {first_read.state.has_value() ? first_read.state->opportunity_id() : ""});
  CRM_ASSIGN_OR_RETURN(
      auto out,
      Execute<crm::v1::Quote>(
          stream,
          CallerRequestKey(ctx, absl::StrCat("AcceptQuote/", request.request_id()), request),
          kAnyVersion, ctx,
          [&](const std::optional<crm::v1::Quote>& s) -> absl::StatusOr<std::vector<QuoteEvent>> {
            // After the retry lookup: an acceptance that went through keeps
            // its answer, whatever became of the deal since.
            if (s.has_value() && s->status() == crm::v1::QUOTE_STATUS_OPEN) {
              CRM_RETURN_IF_ERROR(
                  DealTakesQuote(s->opportunity_id(), "accept its quote", s->currency()));
              CRM_RETURN_IF_ERROR(TheDealsQuote(s->opportunity_id(), s->quote_id()));
            }
            return NameMissing(Decide(s, QuoteCommand{sales::AcceptQuote{ctx.occurred_at}}), s,
                               "quote_id", request.quote_id());
          },
          [](const crm::v1::Quote& q) {
            return q.status() == crm::v1::QUOTE_STATUS_ACCEPTED && !q.opportunity_id().empty()
                       ? std::vector<ProjectionWrite>{SalesStore::AcceptedQuoteRow(
                                                          q.opportunity_id(), q.quote_id()),
                                                      SalesStore::LastAcceptedQuoteRow(
                                                          q.opportunity_id(), q.quote_id())}
                       : NoRows();
          }));
  return out.state;
}

absl::StatusOr<crm::v1::Quote> SalesCommands::DeclineQuote(
    const crm::v1::DeclineQuoteRequest& request, EventContext raw_ctx) {
  return Transition<crm::v1::Quote>(
      request, "DeclineQuote", "quote_id", request.quote_id(), request.request_id(),
      std::move(raw_ctx),
      [&](const EventContext&) { return QuoteCommand{sales::DeclineQuote{request.reason()}}; });
}

absl::StatusOr<crm::v1::Order> SalesCommands::PlaceOrder(const crm::v1::PlaceOrderRequest& request,
                                                         EventContext raw_ctx) {
  CRM_RETURN_IF_ERROR(CheckRequestId(request.request_id()));
  CRM_RETURN_IF_ERROR(CheckId("quote_id", request.quote_id()));
  const EventContext ctx = ForRequest(std::move(raw_ctx), request.request_id());
  const std::string request_key =
      CallerRequestKey(ctx, absl::StrCat("PlaceOrder/", request.request_id()), request);
  auto answered = [&] { return StoredAnswer<crm::v1::Order>(store_.events(), request_key); };
  CRM_ASSIGN_OR_RETURN(auto earlier, answered());
  if (earlier.has_value()) return *std::move(earlier);
  // Read first for its deal, whose lock AcceptQuote holds too: the deal is
  // not lost while the order is placed, and a retry waiting on its first
  // call gets that call's order.
  crm::v1::GetQuoteRequest get;
  get.set_quote_id(request.quote_id());
  CRM_ASSIGN_OR_RETURN(auto quote, GetQuote(get));
  auto guard = opportunity_locks_.Lock({quote.opportunity_id()});
  CRM_ASSIGN_OR_RETURN(earlier, answered());
  if (earlier.has_value()) return *std::move(earlier);
  // Read again under the lock: an acceptance may have committed since.
  // Acceptance is final, so the status read now stands.
  CRM_ASSIGN_OR_RETURN(quote, GetQuote(get));
  const bool accepted = quote.status() == crm::v1::QUOTE_STATUS_ACCEPTED;
  const std::string opportunity_id = quote.opportunity_id();
  const std::string quote_id = quote.quote_id();
  const std::string currency = quote.currency();
  sales::PlaceOrder command{OrderIdForQuote(quote_id), std::move(quote)};
  CRM_ASSIGN_OR_RETURN(
      auto out,
      Execute<crm::v1::Order>(
          OrderStream(command.order_id), request_key, kAnyVersion, ctx,
          [&](const std::optional<crm::v1::Order>& s) {
            // After the order's own checks, as DraftContract does: a quote
            // ordered before is ALREADY_EXISTS whatever became of the deal
            // (reopening it would not help).
            auto decided = Decide(s, command);
            if (!decided.ok() || !accepted) return decided;
            absl::Status st = DealTakesQuote(opportunity_id, "order", currency);
            if (st.ok()) st = TheDealsQuote(opportunity_id, quote_id);
            if (st.ok()) st = AcceptedLast(opportunity_id, quote_id);
            if (!st.ok()) return decltype(decided)(st);
            return decided;
          },
          [](const crm::v1::Order& o) {
            // The ordered quote is the deal's: no other is accepted after it,
            // even once the deal is lost and reopened.
            return o.opportunity_id().empty()
                       ? NoRows()
                       : std::vector<ProjectionWrite>{
                             SalesStore::AcceptedQuoteRow(o.opportunity_id(), o.quote_id()),
                             SalesStore::LastAcceptedQuoteRow(o.opportunity_id(), o.quote_id()),
                             SalesStore::OrderedQuoteRow(o.opportunity_id(), o.quote_id())};
          }));
  return out.state;
}

absl::StatusOr<crm::v1::Order> SalesCommands::GetOrder(
    const crm::v1::GetOrderRequest& request) const {
  CRM_RETURN_IF_ERROR(CheckId("order_id", request.order_id()));
  return LoadExisting<crm::v1::Order>("order", OrderStream(request.order_id()), request.order_id());
}

absl::StatusOr<crm::v1::Contract> SalesCommands::DraftContract(
    const crm::v1::DraftContractRequest& request, EventContext raw_ctx) {
  CRM_RETURN_IF_ERROR(ValidateDraftContract(request));
  const EventContext ctx = ForRequest(std::move(raw_ctx), request.request_id());
  const std::string request_key =
      CallerRequestKey(ctx, absl::StrCat("DraftContract/", request.request_id()), request);
  CRM_ASSIGN_OR_RETURN(auto earlier, StoredAnswer<crm::v1::Contract>(store_.events(), request_key));
  if (earlier.has_value()) return *std::move(earlier);
  crm::v1::GetOrderRequest get;
  get.set_order_id(request.order_id());
  CRM_ASSIGN_OR_RETURN(auto order, GetOrder(get));
  // The contract leads to an invoice: not for a deal marked lost since the
  // order (held as PlaceOrder holds it).
  auto guard = opportunity_locks_.Lock({order.opportunity_id()});
  const std::string opportunity_id = order.opportunity_id();
  sales::DraftContract command{request, ContractIdForOrder(order.order_id()), std::move(order)};
  // Terms are free text typed about the deal: they may name the person.
  CRM_RETURN_IF_ERROR(SealFreeText(command.request, command.order.customer_id(), ctx));
  CRM_ASSIGN_OR_RETURN(
      auto out, Execute<crm::v1::Contract>(
                    ContractStream(command.contract_id), request_key, kAnyVersion, ctx,
                    [&](const std::optional<crm::v1::Contract>& s) {
                      // After the retry lookup and the contract's own checks
                      // (one per order), as for an approval.
                      auto decided = Decide(s, ContractCommand{command});
                      if (decided.ok()) {
                        if (auto st = DealNotLost(opportunity_id, "draft a contract"); !st.ok()) {
                          return decltype(decided)(st);
                        }
                      }
                      return decided;
                    },
                    [](const crm::v1::Contract&) { return NoRows(); }));
  return out.state;
}

absl::StatusOr<crm::v1::Contract> SalesCommands::GetContract(
    const crm::v1::GetContractRequest& request) const {
  CRM_RETURN_IF_ERROR(CheckId("contract_id", request.contract_id()));
  return LoadExisting<crm::v1::Contract>("contract", ContractStream(request.contract_id()),
                                         request.contract_id());
}

absl::StatusOr<crm::v1::Contract> SalesCommands::SubmitContract(
    const crm::v1::SubmitContractRequest& request, EventContext raw_ctx) {
  return Transition<crm::v1::Contract>(
      request, "SubmitContract", "contract_id", request.contract_id(), request.request_id(),
      std::move(raw_ctx),
      [](const EventContext& ctx) { return ContractCommand{sales::SubmitContract{ctx.actor}}; });
}

absl::StatusOr<crm::v1::Contract> SalesCommands::ApproveContract(
    const crm::v1::ApproveContractRequest& request, EventContext raw_ctx,
    const std::vector<std::string>& roles) {
  // Approval invoices the customer: not while the deal is lost.
  return Transition<crm::v1::Contract>(
      request, "ApproveContract", "contract_id", request.contract_id(), request.request_id(),
      std::move(raw_ctx),
      [&](const EventContext& ctx) {
        return ContractCommand{sales::ApproveContract{ctx.actor, roles}};
      },
      "approve its contract");
}

absl::StatusOr<crm::v1::Contract> SalesCommands::RejectContract(
    const crm::v1::RejectContractRequest& request, EventContext raw_ctx,
    const std::vector<std::string>& roles) {
  return Transition<crm::v1::Contract>(
      request, "RejectContract", "contract_id", request.contract_id(), request.request_id(),
      std::move(raw_ctx), [&](const EventContext& ctx) {
        return ContractCommand{sales::RejectContract{ctx.actor, roles, request.reason()}};
      });
}

absl::StatusOr<crm::v1::GetForecastResponse> SalesCommands::GetForecast(
    const crm::v1::GetForecastRequest& request) const {
  CRM_ASSIGN_OR_RETURN(auto query, ParseForecastQuery(request));
  std::vector<crm::v1::Opportunity> all;
  CRM_RETURN_IF_ERROR(store_.ForEach<crm::v1::Opportunity>(
      kOpportunitiesFamily, [&](const crm::v1::Opportunity& o) { all.push_back(o); }));
  crm::v1::GetForecastResponse response;
  for (auto& row : Forecast(all, query)) *response.add_rows() = std::move(row);
  return response;
}

// ---------------------------------------------------------------- reactions

namespace {

// The person's customer ids an alert names: the view's and those merged in.
std::vector<std::string> CustomerIdsOf(const crm::v1::ChurnRiskRaised& raised) {
  std::vector<std::string> ids = {raised.customer_id()};
  ids.insert(ids.end(), raised.merged_customer_ids().begin(), raised.merged_customer_ids().end());
  return ids;
}

}  // namespace

absl::Status SalesCommands::OpenAccountFromLead(const crm::v1::EventEnvelope& event) {
  CRM_ASSIGN_OR_RETURN(const auto converted, EventFor<crm::v1::LeadConverted>(event));
  const EventContext ctx = ForEvent(event);
  // Names on one line, as accounts keep them: an older leads service let
  // Unicode's line breaks through, and the conversion is not refused for it.
  crm::v1::Contact contact = converted.contact();
  for (std::string* name :
       {contact.mutable_first_name(), contact.mutable_last_name(), contact.mutable_title()}) {
    if (!pii::IsSealed(*name)) *name = OneLine(*name);
  }

  crm::v1::OpenCustomerRequest open;
  open.set_request_id(event.event_id());
  open.set_customer_id(converted.customer_id());
  // A sealed name cannot name the account: it is ciphertext, and an
  // erasure could not reach a copy of it in the account's name.
  std::string person;
  if (!pii::IsSealed(contact.first_name()) && !pii::IsSealed(contact.last_name())) {
    person = std::string(
        absl::StripAsciiWhitespace(absl::StrCat(contact.first_name(), " ", contact.last_name())));
  }
  if (person.empty() && !pii::IsSealed(contact.email())) person = contact.email();
  // Names come within the leads service's bounds, or an older event's:
  // cut to ours rather than refuse the conversion. A blank company (leads
  // keeps what was typed) names nothing: it would be refused as no name.
  const std::string company(absl::StripAsciiWhitespace(OneLine(converted.company())));
  open.set_name(TruncateUtf8(!company.empty() ? company : OneLine(person), kMaxName));
  // An account needs a name; consumers show none for one named after its id.
  if (open.name().empty()) open.set_name(converted.customer_id());
  open.set_owner_id(converted.owner_id());
  // The lead's region, or the converter's token territory when it had none:
  // an older event's was not held to an account's bounds (tokens are now).
  open.set_territory(
      TruncateUtf8(OneLine(absl::StripAsciiWhitespace(converted.region())), kMaxTerritory));
  if (!contact.first_name().empty() || !contact.last_name().empty() || !contact.email().empty() ||
      !contact.phone().empty()) {
    *open.add_contacts() = contact;
  }
  CRM_ASSIGN_OR_RETURN(auto normalized, NormalizeOpenCustomer(open, settings_.loyalty));

  // Both requests are checked before either is written: a conversion never
  // opens the account and then loses its opportunity.
  crm::v1::OpenOpportunityRequest opportunity;
  opportunity.set_request_id(event.event_id());
  opportunity.set_customer_id(converted.customer_id());
  const std::string opportunity_name(
      absl::StripAsciiWhitespace(OneLine(converted.opportunity_name())));
  opportunity.set_name(
      TruncateUtf8(!opportunity_name.empty()
                       ? opportunity_name
                       : absl::StrCat(normalized.name(), " (lead ", converted.lead_id(), ")"),
                   kMaxName));
  opportunity.set_owner_id(converted.owner_id());
  if (converted.has_estimated_amount() && !converted.estimated_amount().currency().empty()) {
    if (auto st = CheckMoney("amount", converted.estimated_amount()); st.ok()) {
      *opportunity.mutable_amount() = converted.estimated_amount();
    } else {
      // An estimate out of bounds is left out; the rep sets the amount.
      log::Warn("conversion estimate left out",
                {{"lead_id", converted.lead_id()}, {"reason", std::string(st.message())}});
    }
  }
  CRM_RETURN_IF_ERROR(ValidateOpenOpportunity(opportunity));

  auto customer = OpenCustomerWith(normalized, converted.lead_id(),
                                   absl::StrCat("OpenAccountFromLead/", event.event_id()), ctx);
  // A second conversion of the same person finds the account open: it
  // still brings a new opportunity.
  if (!customer.ok() && !absl::IsAlreadyExists(customer.status())) return customer.status();
  // Its id comes from the event: handled again once its answer is gone (a
  // restore from before it), the conversion lands on the deal it opened,
  // which every reader of the topic has, rather than opening a second one.
  const std::string opportunity_key = absl::StrCat("OpenOpportunityFromLead/", event.event_id());
  CRM_RETURN_IF_ERROR(
      OpenOpportunityWith(
          opportunity, converted.lead_id(), opportunity_key, ctx,
          IdFromEvent("opp", FromProtoTimestamp(event.occurred_at()), opportunity_key))
          .status());
  // A churn alert read before this conversion (analytics' topic is not
  // ordered with leads') is answered now the person has an account. Its
  // answer is keyed by the alert: a redelivery opens no second call.
  CRM_ASSIGN_OR_RETURN(const auto early, store_.EarlyAlertOf(converted.customer_id()));
  if (!early.has_value()) return absl::OkStatus();
  crm::v1::EventEnvelope alert;
  if (!alert.ParseFromString(*early)) {
    return absl::DataLossError(
        absl::StrCat("corrupt early churn alert of ", converted.customer_id()));
  }
  CRM_RETURN_IF_ERROR(OpenRetentionTask(alert));
  // Answered (or too old to be): kept no longer.
  CRM_ASSIGN_OR_RETURN(const auto raised, EventFor<crm::v1::ChurnRiskRaised>(alert));
  return store_.ForgetEarlyAlert(CustomerIdsOf(raised), *early);
}

absl::Status SalesCommands::RecordSpendFromInvoice(const crm::v1::EventEnvelope& event) {
  CRM_ASSIGN_OR_RETURN(const auto invoice, EventFor<crm::v1::InvoiceRequested>(event));
  RecordSpend command{invoice.contract_id(), invoice.totals().total(), settings_.loyalty};
  return Execute<crm::v1::Customer>(
             CustomerStream(invoice.customer_id()),
             absl::StrCat("RecordSpendFromInvoice/", event.event_id()), kAnyVersion,
             ForEvent(event),
             [&](const std::optional<crm::v1::Customer>& s) {
               return Decide(s, CustomerCommand{command});
             },
             [](const crm::v1::Customer& c) {
               return std::vector<ProjectionWrite>{SalesStore::CustomerRow(c)};
             })
      .status();
}

absl::Status SalesCommands::OpenRetentionTask(const crm::v1::EventEnvelope& event) {
  CRM_ASSIGN_OR_RETURN(const auto raised, EventFor<crm::v1::ChurnRiskRaised>(event));
  const EventContext ctx = ForEvent(event);
  const absl::Time crossed_at = FromProtoTimestamp(event.occurred_at());
  if (crossed_at < settings_.clock() - kRetentionAlertsKept) return absl::OkStatus();
  const std::string request_key = absl::StrCat(SalesStore::kRetentionRequests, event.event_id());
  CRM_ASSIGN_OR_RETURN(auto earlier, StoredAnswer<crm::v1::Task>(store_.events(), request_key));
  if (earlier.has_value()) return absl::OkStatus();
  // The person's account: of the customer named, else of one merged into
  // it (a lead merged into another person's moves the view, not the
  // account).
  Loaded<crm::v1::Customer> account;
  std::string customer_id;
  for (int i = -1; i < raised.merged_customer_ids_size() && !account.state.has_value(); ++i) {
    customer_id = i < 0 ? raised.customer_id() : raised.merged_customer_ids(i);
    CRM_ASSIGN_OR_RETURN(account, store_.Load<crm::v1::Customer>(CustomerStream(customer_id)));
  }
  if (!account.state.has_value()) {
    // None yet, or never (a person who stays a lead): kept for a conversion
    // that may still come, from the leads topic read apart from this one.
    return store_.KeepEarlyAlert(CustomerIdsOf(raised), event.SerializeAsString());
  }
  // One retention call open per account: a score that falls and crosses
  // again while the owner is still on the first adds none. The alert is
  // answered with that call, so a redelivery after it is done opens none
  // either. A completion racing the answer is read again.
  for (int attempt = 0;; ++attempt) {
    CRM_ASSIGN_OR_RETURN(auto latest, store_.RetentionTaskOf(customer_id));
    if (!latest.has_value()) break;
    CRM_ASSIGN_OR_RETURN(auto task, store_.Load<crm::v1::Task>(TaskStream(*latest)));
    if (!task.state.has_value() || task.state->status() != crm::v1::TASK_STATUS_OPEN) break;
    AppendRequest answer;
    answer.stream = TaskStream(*latest);
    answer.expected_version = task.version;
    answer.request_key = request_key;
    answer.response = task.state->SerializeAsString();
    auto answered = store_.events().Append(std::move(answer));
    if (absl::IsAborted(answered.status()) && attempt < 3) continue;
    return answered.status();
  }
  sales::CreateTask command;
  command.request.set_customer_id(customer_id);
  // The account's owner now; analytics' owner when the account has none.
  command.request.set_owner_id(account.state->owner_id().empty() ? raised.owner_id()
                                                                 : account.state->owner_id());
  command.request.set_title(absl::StrCat("Retention call: churn risk ", raised.score(),
                                         " (threshold ", raised.threshold(), ")"));
  std::vector<std::string> factors;
  for (const auto& f : raised.factors()) {
    if (f.points() > 0) factors.push_back(absl::StrCat(f.name(), " ", f.points()));
  }
  command.request.set_notes(absl::StrCat("Raised by analytics", factors.empty() ? "" : ": ",
                                         absl::StrJoin(factors, ", ")));
  // From the crossing, or from now for one answered late (an alert kept
  // until the person's account opened): not due before it is made.
  *command.request.mutable_due_at() =
      ToProtoTimestamp(std::max(crossed_at, settings_.clock()) + kRetentionCallWithin);
  CRM_RETURN_IF_ERROR(SealFreeText(command.request, customer_id, ctx));
  // From the alert, as a conversion's deal is (OpenAccountFromLead).
  command.task_id = IdFromEvent("task", crossed_at, request_key);
  return Execute<crm::v1::Task>(
             TaskStream(command.task_id), request_key, kAnyVersion, ctx,
             [&](const std::optional<crm::v1::Task>& s) { return Decide(s, TaskCommand{command}); },
             [](const crm::v1::Task& t) {
               return std::vector<ProjectionWrite>{SalesStore::TaskRow(t),
                                                   SalesStore::TaskDueEntry(t),
                                                   SalesStore::RetentionTaskRow(t)};
             })
      .status();
}

}  // namespace crm::sales
