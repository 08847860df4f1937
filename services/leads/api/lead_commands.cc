#include "services/leads/api/lead_commands.h"

#include <algorithm>
#include <optional>

#include "absl/cleanup/cleanup.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "libs/common/ids.h"
#include "libs/common/log.h"
#include "libs/common/page_token.h"
#include "libs/common/pii/field_sealer.h"
#include "libs/common/reply_budget.h"
#include "libs/common/status_macros.h"
#include "services/leads/domain/lead.h"

namespace crm::leads {
namespace {

constexpr char kRulesStream[] = "assignment-rules";
constexpr int32_t kDefaultPageSize = 50;
constexpr int32_t kMaxPageSize = 1000;
constexpr size_t kMaxRequestId = 128;

absl::Status Invalid(absl::string_view field, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", why));
}

// Correlation and causation default to the request.
EventContext ForRequest(EventContext ctx, const std::string& request_id) {
  if (ctx.source.empty()) ctx.source = kLeadsSource;
  if (ctx.correlation_id.empty()) ctx.correlation_id = request_id;
  if (ctx.causation_id.empty()) ctx.causation_id = request_id;
  return ctx;
}

std::vector<crm::v1::EventEnvelope> Envelopes(const std::vector<LeadEvent>& events,
                                              const std::string& customer_id,
                                              const EventContext& ctx) {
  std::vector<crm::v1::EventEnvelope> out;
  out.reserve(events.size());
  for (const auto& event : events) {
    std::visit([&](const auto& payload) { out.push_back(MakeEnvelope(payload, customer_id, ctx)); },
               event);
  }
  return out;
}

template <typename Message>
absl::StatusOr<Message> Parse(const std::string& bytes) {
  Message m;
  if (!m.ParseFromString(bytes)) return absl::DataLossError("corrupt stored response");
  return m;
}

absl::StatusOr<int32_t> PageSize(const crm::v1::PageRequest& page) {
  CRM_ASSIGN_OR_RETURN(const size_t size, crm::PageSize(page.page_size(), "page.page_size",
                                                        kDefaultPageSize, kMaxPageSize));
  return static_cast<int32_t>(size);
}

// What the domain cannot know from the lead alone, filled in from the
// service's stores.
LeadCommand WithStoredFacts(const crm::v1::Lead& state, LeadCommand command,
                            const pii::KeyVault& vault) {
  if (auto* qualify = std::get_if<QualifyLead>(&command);
      qualify != nullptr && qualify->bant.has_value() && !qualify->bant->need().empty() &&
      pii::IsSealed(state.bant().need())) {
    // The stated need is stored sealed and the domain never opens it: a rep
    // re-sending the need on file (a form filled from GetLead) confirms it
    // rather than changing it.
    crm::v1::Bant known = state.bant();
    pii::OpenFields(known, vault);
    if (known.need() == qualify->bant->need()) qualify->bant->clear_need();
  }
  if (auto* convert = std::get_if<ConvertLead>(&command); convert != nullptr) {
    // Another lead of the person merged away the customer this one was
    // captured under: the account opens for the customer that stands.
    const std::string survivor = vault.SurvivorOf(state.customer_id());
    if (survivor != state.customer_id()) convert->customer_id = survivor;
  }
  return command;
}

}  // namespace

absl::StatusOr<OffsetPosition> OpenOffsetToken(const google::protobuf::Message& request,
                                               const crm::v1::PageRequest& page) {
  CRM_ASSIGN_OR_RETURN(const std::string raw,
                       OpenPageToken(request, page.page_token(), "page.page_token"));
  OffsetPosition position;
  if (raw.empty()) return position;
  const std::vector<absl::string_view> parts = absl::StrSplit(raw, '@');
  int64_t version = 0;
  // The fingerprint is no secret: a client can seal any text, so an offset
  // past any list is refused before a reader adds to it.
  if (parts.size() > 2 || !absl::SimpleAtoi(parts[0], &position.offset) ||
      position.offset > kMaxTokenOffset ||
      (parts.size() == 2 && !absl::SimpleAtoi(parts[1], &version))) {
    return Invalid("page.page_token", "not from this query");
  }
  if (parts.size() == 2) position.version = version;
  return position;
}

std::string OffsetToken(const google::protobuf::Message& request, size_t offset, int64_t version) {
  return SealPageToken(request, absl::StrCat(offset, "@", version));
}

absl::StatusOr<NewLead> PrepareNewLead(const CaptureLead& command,
                                       const std::vector<std::string>& claimed_keys,
                                       const EventContext& ctx) {
  CRM_ASSIGN_OR_RETURN(auto events, Decide(std::nullopt, command));
  NewLead out;
  for (const auto& event : events) Apply(out.state, event, ctx.occurred_at);
  AppendRequest& append = out.append;
  append.stream = LeadStream(command.lead_id);
  append.expected_version = EventStore::kNoStream;
  append.events = Envelopes(events, command.customer_id, ctx);
  append.state = out.state.SerializeAsString();
  append.projection_writes = LeadStore::ListWrites(nullptr, out.state);
  // The index names the person's first lead: a key a duplicate claims
  // points where its matched key points.
  const ContactMatch first{
      command.duplicate_of_lead_id.empty() ? command.lead_id : command.duplicate_of_lead_id,
      command.customer_id};
  for (const auto& key : claimed_keys) {
    append.projection_writes.push_back(LeadStore::ContactWrite(key, first));
  }
  return out;
}

absl::Status LeadCommands::Recover() {
  std::lock_guard<std::mutex> lock(recover_mu_);
  // Once only: a second load would replace the owners' counts with a scan
  // that misses what commands running since have reserved.
  if (recovered_) return absl::OkStatus();
  CRM_RETURN_IF_ERROR(assigner_.Load());
  recovered_ = true;
  return absl::OkStatus();
}

// ---- capture ----

absl::StatusOr<crm::v1::CaptureLeadResponse> LeadCommands::CaptureLead(
    const crm::v1::CaptureLeadRequest& raw, EventContext ctx) {
  const std::string request_key =
      CallerRequestKey(ctx, absl::StrCat("CaptureLead/", raw.request_id()), raw);
  // A retry is answered from the first result without taking locks, and
  // before the request is checked: a rule tightened since the first call
  // must not refuse the retry of a capture it took.
  CRM_ASSIGN_OR_RETURN(auto earlier, store_.events().FindResponse(request_key));
  if (earlier.has_value()) return Parse<crm::v1::CaptureLeadResponse>(*earlier);
  CRM_ASSIGN_OR_RETURN(auto request, NormalizeCaptureRequest(raw));
  CRM_RETURN_IF_ERROR(Recover());
  ctx = ForRequest(std::move(ctx), request.request_id());

  leads::CaptureLead command;
  const std::string new_customer_id = NewId("cus");
  CRM_ASSIGN_OR_RETURN(auto resolved,
                       contacts_.Resolve(
                           {{store_.ContactKeys(request.contact()), new_customer_id}},
                           [](const std::string&) { return NewId("lead"); }, contacts_.NewOwner()));
  ContactRegistry::Resolution& contact = resolved.front();
  ContactRegistry::Hold hold;
  hold.Add(contact);
  absl::Cleanup release = [&] { contacts_.Release(hold); };
  command.lead_id = contact.lead_id;
  command.customer_id = contact.customer_id;
  command.duplicate_of_lead_id = contact.duplicate_of_lead_id;

  crm::v1::Lead preview;
  preview.set_region(request.region());
  *preview.mutable_product_interests() = request.product_interests();
  command.assignment = assigner_.Choose({&preview}).front();
  // The owner's count taken by Choose is given back unless the lead lands.
  bool landed = false;
  absl::Cleanup undo = [&] {
    if (!landed) assigner_.Undo(command.assignment);
  };
  // From here on the contact is ciphertext: in the events, the state and
  // every projection (the blind index above was taken from the plaintext).
  pii::KeyVault::Sealing sealing;
  if (command.customer_id == new_customer_id) {
    sealing = store_.vault().NewKey(command.customer_id, ctx);
  } else {
    CRM_ASSIGN_OR_RETURN(sealing, store_.vault().KeyFor(command.customer_id, ctx));
  }
  pii::SealFields(request, sealing.key);
  command.request = std::move(request);

  CRM_ASSIGN_OR_RETURN(auto lead, PrepareNewLead(command, contact.claimed, ctx));
  crm::v1::CaptureLeadResponse response;
  response.set_lead_id(command.lead_id);
  response.set_customer_id(command.customer_id);
  response.set_duplicate(!command.duplicate_of_lead_id.empty());
  response.set_duplicate_of_lead_id(command.duplicate_of_lead_id);
  response.set_owner_id(lead.state.owner_id());
  response.set_queue(lead.state.queue());
  *response.mutable_score() = lead.state.score();
  lead.append.request_key = request_key;
  lead.append.response = response.SerializeAsString();

  absl::StatusOr<AppendResult> result;
  if (sealing.issue.has_value()) {
    // The new key and the lead it seals commit together, or neither does: a
    // lead refused (its request_id taken meanwhile) leaves no key behind.
    std::vector<AppendRequest> appends;
    appends.push_back(*std::move(sealing.issue));
    appends.push_back(std::move(lead.append));
    auto both = store_.events().AppendAll(std::move(appends));
    if (absl::IsAlreadyExists(both.status())) {
      // The same request landed meanwhile: answered from its result.
      CRM_ASSIGN_OR_RETURN(auto recorded, store_.events().FindResponse(request_key));
      if (recorded.has_value()) return Parse<crm::v1::CaptureLeadResponse>(*recorded);
    }
    result = both.ok() ? absl::StatusOr<AppendResult>((*both)[1]) : both.status();
    if (result.ok()) store_.vault().Issued(command.customer_id, sealing.key);
  } else {
    result = store_.events().Append(std::move(lead.append));
  }
  landed = result.ok() && !result->replayed;
  if (!result.ok()) return result.status();
  if (result->replayed) return Parse<crm::v1::CaptureLeadResponse>(result->response);
  return response;
}

// ---- queries ----

absl::StatusOr<crm::v1::Lead> LeadCommands::GetLead(const crm::v1::GetLeadRequest& request) const {
  CRM_RETURN_IF_ERROR(CheckId("lead_id", request.lead_id()));
  return store_.GetLead(request.lead_id());
}

absl::StatusOr<std::optional<std::string>> LeadCommands::SurvivingHomeOf(
    const crm::v1::Lead& lead) {
  const std::string survivor = store_.vault().SurvivorOf(lead.customer_id());
  if (survivor == lead.customer_id()) return std::nullopt;
  crm::v1::Contact contact = lead.contact();
  pii::OpenFields(contact, store_.vault());
  // Any of the lead's contacts: a merge re-points only the keys the merged
  // lead held, the others still name this lead's own customer, or one a
  // later merge retired in turn (as Resolve reads them).
  CRM_ASSIGN_OR_RETURN(auto matches, store_.FindContactKeys(store_.ContactKeys(contact)));
  for (const auto& match : matches) {
    // The lead's own customer's rows tell nothing of where it went; an
    // erased person's name nobody.
    if (!match.has_value() || match->customer_id == lead.customer_id() ||
        store_.vault().SurvivorOf(match->customer_id) != survivor ||
        store_.vault().Erased(survivor)) {
      continue;
    }
    return contacts_.HomeLead(match->lead_id);
  }
  return std::string();  // retired, and no contact of the lead finds its home
}

absl::StatusOr<LeadQuery> LeadCommands::ListLeadsQuery(const crm::v1::ListLeadsRequest& r) {
  LeadQuery q;
  CRM_ASSIGN_OR_RETURN(q.page_size, PageSize(r.page()));
  if (!r.owner_id().empty() && !r.queue().empty()) {
    return Invalid("queue", "at most one of owner_id and queue");
  }
  if (!r.owner_id().empty()) CRM_RETURN_IF_ERROR(CheckId("owner_id", r.owner_id()));
  // As given: AssignLead stores queues trimmed, but a lead assigned before
  // it did is found under its queue's spelling then.
  CRM_RETURN_IF_ERROR(CheckText("queue", r.queue(), 64));
  q.queue = r.queue();
  q.owner_id = r.owner_id();
  // Each status once at most: more entries than there are statuses is not
  // a filter but a request walked for nothing.
  if (r.statuses_size() > crm::v1::LeadStatus_ARRAYSIZE) {
    return Invalid("statuses",
                   absl::StrCat("more than ", crm::v1::LeadStatus_ARRAYSIZE, " entries"));
  }
  for (int i = 0; i < r.statuses_size(); ++i) {
    const int s = r.statuses(i);
    if (s == crm::v1::LEAD_STATUS_UNSPECIFIED || !crm::v1::LeadStatus_IsValid(s)) {
      return Invalid(absl::StrCat("statuses[", i, "]"), "unknown status");
    }
    q.statuses.insert(s);
  }
  if (!crm::v1::LeadChannel_IsValid(r.channel())) return Invalid("channel", "unknown channel");
  q.channel = r.channel();
  // Trimmed as captured regions are: " EMEA" lists the EMEA leads.
  q.region = std::string(absl::StripAsciiWhitespace(r.region()));
  CRM_RETURN_IF_ERROR(CheckText("region", q.region, 64));
  if (r.min_score() < 0 || r.min_score() > 100) return Invalid("min_score", "outside 0..100");
  if (r.max_score() < 0 || r.max_score() > 100) return Invalid("max_score", "outside 0..100");
  q.min_score = r.min_score();
  q.max_score = r.max_score() == 0 ? 100 : r.max_score();
  if (q.min_score > q.max_score) return Invalid("min_score", "greater than max_score");
  if (!crm::v1::LeadSort_IsValid(r.sort())) return Invalid("sort", "unknown order");
  q.sort = r.sort();
  CRM_ASSIGN_OR_RETURN(q.page_token, OpenPageToken(r, r.page().page_token(), "page.page_token"));
  return q;
}

absl::StatusOr<crm::v1::ListLeadsResponse> LeadCommands::ListLeads(
    const crm::v1::ListLeadsRequest& r) const {
  CRM_ASSIGN_OR_RETURN(const LeadQuery q, ListLeadsQuery(r));
  CRM_ASSIGN_OR_RETURN(auto response, store_.ListLeads(q));
  response.set_next_page_token(SealPageToken(r, response.next_page_token()));
  return response;
}

absl::StatusOr<crm::v1::GetLeadHistoryResponse> LeadCommands::GetLeadHistory(
    const crm::v1::GetLeadHistoryRequest& request) const {
  CRM_RETURN_IF_ERROR(CheckId("lead_id", request.lead_id()));
  CRM_ASSIGN_OR_RETURN(const int32_t page_size, PageSize(request.page()));
  CRM_ASSIGN_OR_RETURN(const OffsetPosition position, OpenOffsetToken(request, request.page()));
  CRM_ASSIGN_OR_RETURN(const auto lead, store_.GetLead(request.lead_id()));
  const size_t offset = position.offset;
  crm::v1::GetLeadHistoryResponse response;
  // Answers the history's events from `offset` on; `events` holds them from
  // index `first` on.
  auto answer = [&](std::vector<crm::v1::EventEnvelope>& events, size_t first, int64_t merges) {
    // Events are up to 900 KB, and each LeadsMerged embeds a whole lead.
    ReplyBudget budget;
    const size_t end = std::min(events.size(), offset - first + static_cast<size_t>(page_size));
    size_t i = offset - first;
    for (; i < end; ++i) {
      // Opened as every other answer is: the response interceptor does not
      // look inside an event's Any payload.
      pii::OpenEvent(events[i], store_.vault());
      if (!budget.Take(events[i].ByteSizeLong())) break;
      *response.add_events() = std::move(events[i]);
    }
    if (i < events.size()) response.set_next_page_token(OffsetToken(request, first + i, merges));
    return std::move(response);
  };
  // By the payload's type, not decoded: a merge embeds a whole lead.
  auto is_merge = [](const crm::v1::EventEnvelope& e) {
    return e.payload().Is<crm::v1::LeadsMerged>();
  };
  // Most leads absorbed none: their history is their stream in version
  // order, and a page is that range of it (one more event tells whether
  // the history goes on), not the whole stream read and sorted for each
  // page. A merge landing since the state was read takes the path below.
  if (lead.merged_lead_ids_size() == 0 && position.version.value_or(0) == 0) {
    CRM_ASSIGN_OR_RETURN(
        auto events,
        store_.events().ReadStream(LeadStream(lead.lead_id()), static_cast<int64_t>(offset) + 1,
                                   static_cast<size_t>(page_size) + 1));
    if (std::none_of(events.begin(), events.end(), is_merge)) return answer(events, offset, 0);
  }
  // The leads merged into this one as its own events read below say: a
  // merge landing after the lead's state was read is in them, and its
  // merged lead must not be left out of a history that shows the merge.
  CRM_ASSIGN_OR_RETURN(auto own, store_.events().ReadStream(LeadStream(lead.lead_id())));
  crm::v1::Lead merged_in;
  for (const auto& e : own) {
    if (!is_merge(e)) continue;
    if (auto event = UnpackLeadEvent(e); event.has_value()) {
      Apply(merged_in, *event, absl::UnixEpoch());
    }
  }
  // Merged leads' events interleave with the survivor's by time: a merge
  // between pages moves the events after the offset. The lead's own new
  // events come last and move nothing, so only merges end a paging.
  const int64_t merges = merged_in.merged_lead_ids_size();
  if (position.version.has_value() && *position.version != merges) {
    return absl::AbortedError(
        "page.page_token: leads were merged into this one since the first page; read its "
        "history again from the first page");
  }
  // In time order across the leads, and in version order within each:
  // events are stamped after the change they follow, but a log from before
  // that rule may hold one stamped earlier. So each event sorts at the
  // latest time of its stream so far.
  std::vector<std::pair<absl::Time, crm::v1::EventEnvelope>> timed;
  auto add = [&timed](std::vector<crm::v1::EventEnvelope> events) {
    absl::Time at = absl::InfinitePast();
    for (auto& e : events) {
      at = std::max(at, FromProtoTimestamp(e.occurred_at()));
      timed.emplace_back(at, std::move(e));
    }
  };
  add(std::move(own));
  for (const auto& id : merged_in.merged_lead_ids()) {
    CRM_ASSIGN_OR_RETURN(auto events, store_.events().ReadStream(LeadStream(id)));
    add(std::move(events));
  }
  std::sort(timed.begin(), timed.end(), [](const auto& a, const auto& b) {
    return std::forward_as_tuple(a.first, a.second.stream(), a.second.stream_version()) <
           std::forward_as_tuple(b.first, b.second.stream(), b.second.stream_version());
  });
  std::vector<crm::v1::EventEnvelope> all;
  all.reserve(timed.size());
  for (auto& [at, e] : timed) all.push_back(std::move(e));
  return answer(all, 0, merges);
}

// ---- commands on a lead ----

absl::StatusOr<std::string> LeadCommands::Execute(const google::protobuf::Message& request,
                                                  const std::string& lead_id,
                                                  const std::string& command_key,
                                                  const LeadCommand& command, EventContext ctx,
                                                  const Respond& respond) {
  const std::string request_key = CallerRequestKey(ctx, command_key, request);
  CRM_ASSIGN_OR_RETURN(auto earlier, store_.events().FindResponse(request_key));
  if (earlier.has_value()) return *std::move(earlier);
  CRM_RETURN_IF_ERROR(Recover());
  auto guard = lead_locks_.Lock({lead_id});
  // A concurrent retry may have finished while this one waited.
  CRM_ASSIGN_OR_RETURN(earlier, store_.events().FindResponse(request_key));
  if (earlier.has_value()) return *std::move(earlier);

  CRM_ASSIGN_OR_RETURN(auto state, store_.FindLead(lead_id));
  if (!state.has_value()) {
    return absl::NotFoundError(absl::StrCat("lead_id: lead ", lead_id, " not found"));
  }
  ctx.occurred_at = StampedAfter(ctx.occurred_at, state->updated_at());
  // A conversion names the customer that stands for the person: no merge
  // may retire it between the lookup and the append, or the account would
  // open under a retired id. One that retired it first is waited for.
  ContactRegistry::Hold joined;
  absl::Cleanup release = [&] { contacts_.Release(joined); };
  if (std::holds_alternative<leads::ConvertLead>(command)) {
    for (;;) {
      const std::string customer = store_.vault().SurvivorOf(state->customer_id());
      contacts_.Join(customer);
      joined.customers = {customer};
      if (store_.vault().SurvivorOf(state->customer_id()) == customer) break;
      contacts_.Release(joined);
      joined.customers.clear();
    }
  }
  CRM_ASSIGN_OR_RETURN(auto events,
                       Decide(state, WithStoredFacts(*state, command, store_.vault())));
  // Free text (activity details, notes, the stated need) is personal data:
  // decided on plaintext, stored sealed.
  CRM_RETURN_IF_ERROR(pii::SealEvents(store_.vault(), state->customer_id(), ctx, events));

  Outcome outcome;
  outcome.before = *state;
  outcome.after = *state;
  for (const auto& e : events) Apply(outcome.after, e, ctx.occurred_at);
  outcome.events = Envelopes(events, state->customer_id(), ctx);

  AppendRequest append;
  append.stream = LeadStream(lead_id);
  append.expected_version = state->version();
  append.events = outcome.events;
  append.state = outcome.after.SerializeAsString();
  append.projection_writes = LeadStore::ListWrites(&outcome.before, outcome.after);
  append.request_key = request_key;
  append.response = respond(outcome);
  CRM_ASSIGN_OR_RETURN(auto result, store_.events().Append(std::move(append)));
  if (!result.replayed) assigner_.Moved(outcome.before, outcome.after);
  return std::move(result.response);
}

absl::StatusOr<crm::v1::Lead> LeadCommands::ExecuteForLead(const google::protobuf::Message& request,
                                                           const std::string& lead_id,
                                                           const std::string& request_key,
                                                           const LeadCommand& command,
                                                           EventContext ctx) {
  CRM_ASSIGN_OR_RETURN(auto bytes,
                       Execute(request, lead_id, request_key, command, std::move(ctx),
                               [](const Outcome& o) { return o.after.SerializeAsString(); }));
  return Parse<crm::v1::Lead>(bytes);
}

absl::StatusOr<crm::v1::Lead> LeadCommands::RecordLeadActivity(
    const crm::v1::RecordLeadActivityRequest& request, EventContext ctx) {
  CRM_ASSIGN_OR_RETURN(auto command, ParseRecordActivity(request, ctx.occurred_at));
  return ExecuteForLead(request, request.lead_id(),
                        absl::StrCat("RecordLeadActivity/", request.request_id()), command,
                        ForRequest(std::move(ctx), request.request_id()));
}

absl::StatusOr<crm::v1::Lead> LeadCommands::QualifyLead(const crm::v1::QualifyLeadRequest& request,
                                                        EventContext ctx) {
  CRM_ASSIGN_OR_RETURN(auto command, ParseQualify(request));
  return ExecuteForLead(request, request.lead_id(),
                        absl::StrCat("QualifyLead/", request.request_id()), command,
                        ForRequest(std::move(ctx), request.request_id()));
}

absl::StatusOr<crm::v1::Lead> LeadCommands::DisqualifyLead(
    const crm::v1::DisqualifyLeadRequest& request, EventContext ctx) {
  CRM_ASSIGN_OR_RETURN(auto command, ParseDisqualify(request));
  return ExecuteForLead(request, request.lead_id(),
                        absl::StrCat("DisqualifyLead/", request.request_id()), command,
                        ForRequest(std::move(ctx), request.request_id()));
}

absl::StatusOr<crm::v1::Lead> LeadCommands::NurtureLead(const crm::v1::NurtureLeadRequest& request,
                                                        EventContext ctx) {
  CRM_ASSIGN_OR_RETURN(auto command, ParseNurture(request));
  return ExecuteForLead(request, request.lead_id(),
                        absl::StrCat("NurtureLead/", request.request_id()), command,
                        ForRequest(std::move(ctx), request.request_id()));
}

absl::StatusOr<crm::v1::ConvertLeadResponse> LeadCommands::ConvertLead(
    const crm::v1::ConvertLeadRequest& request, EventContext ctx,
    const std::string& default_region) {
  CRM_ASSIGN_OR_RETURN(auto command, ParseConvert(request));
  command.default_region = default_region;
  CRM_ASSIGN_OR_RETURN(
      auto bytes,
      Execute(request, request.lead_id(), absl::StrCat("ConvertLead/", request.request_id()),
              command, ForRequest(std::move(ctx), request.request_id()), [](const Outcome& o) {
                crm::v1::ConvertLeadResponse response;
                *response.mutable_lead() = o.after;
                for (const auto& e : o.events) {
                  if (e.payload().Is<crm::v1::LeadConverted>()) {
                    response.set_conversion_event_id(e.event_id());
                  }
                }
                return response.SerializeAsString();
              }));
  return Parse<crm::v1::ConvertLeadResponse>(bytes);
}

absl::StatusOr<crm::v1::Lead> LeadCommands::AssignLead(const crm::v1::AssignLeadRequest& request,
                                                       EventContext ctx) {
  CRM_ASSIGN_OR_RETURN(auto command, ParseAssign(request));
  return ExecuteForLead(request, request.lead_id(),
                        absl::StrCat("AssignLead/", request.request_id()), command,
                        ForRequest(std::move(ctx), request.request_id()));
}

absl::StatusOr<crm::v1::MergeLeadsResponse> LeadCommands::MergeLeads(
    const crm::v1::MergeLeadsRequest& request, EventContext ctx) {
  CRM_RETURN_IF_ERROR(ValidateMerge(request));
  const std::string request_key =
      CallerRequestKey(ctx, absl::StrCat("MergeLeads/", request.request_id()), request);
  CRM_ASSIGN_OR_RETURN(auto earlier, store_.events().FindResponse(request_key));
  if (earlier.has_value()) return Parse<crm::v1::MergeLeadsResponse>(*earlier);
  CRM_RETURN_IF_ERROR(Recover());
  ctx = ForRequest(std::move(ctx), request.request_id());
  const std::string& survivor_id = request.survivor_lead_id();
  const std::string& merged_id = request.merged_lead_id();
  // Both leads stay locked from load to append, so both appends below
  // meet the versions decided on and the merge lands whole.
  auto guard = lead_locks_.Lock({survivor_id, merged_id});
  CRM_ASSIGN_OR_RETURN(earlier, store_.events().FindResponse(request_key));
  if (earlier.has_value()) return Parse<crm::v1::MergeLeadsResponse>(*earlier);

  CRM_ASSIGN_OR_RETURN(auto survivor, store_.FindLead(survivor_id));
  if (!survivor) {
    return absl::NotFoundError(absl::StrCat("survivor_lead_id: lead ", survivor_id, " not found"));
  }
  CRM_ASSIGN_OR_RETURN(auto merged, store_.FindLead(merged_id));
  if (!merged) {
    return absl::NotFoundError(absl::StrCat("merged_lead_id: lead ", merged_id, " not found"));
  }
  // A lead changed since the caller read it is a conflict (ABORTED) before
  // what the change made of it (converted, merged, erased) is judged.
  CRM_RETURN_IF_ERROR(CheckVersion(*survivor, request.survivor_expected_version()));
  CRM_RETURN_IF_ERROR(CheckVersion(*merged, request.merged_expected_version()));
  // Decided once on the leads as stored, before their people are held: a
  // merge that cannot happen (a lead merged or converted already) must not
  // make captures of either person wait for leads in flight first.
  CRM_RETURN_IF_ERROR(
      Decide(survivor, AbsorbLead{request.survivor_expected_version(), *merged, "", ""}).status());
  CRM_RETURN_IF_ERROR(
      Decide(merged, MergeLeadInto{request.merged_expected_version(), *survivor, ""}).status());
  // The customers the two leads stand for now: either lead's own may have
  // been retired by an earlier merge. Linking the retired ones as they are
  // stored could link two customers both ways (each the other's survivor).
  // Both are held while the merge is written (no lead joins the merged
  // customer until its contacts point to the survivor, and no other merge
  // retires either), then looked up again: a merge that held them first
  // may have retired one meanwhile.
  std::string survivor_customer, merged_customer;
  std::optional<ContactRegistry::Retirement> retirement;
  for (;;) {
    survivor_customer = store_.vault().SurvivorOf(survivor->customer_id());
    merged_customer = store_.vault().SurvivorOf(merged->customer_id());
    retirement.emplace(contacts_.Retire(merged_customer, survivor_customer));
    if (store_.vault().SurvivorOf(survivor->customer_id()) == survivor_customer &&
        store_.vault().SurvivorOf(merged->customer_id()) == merged_customer) {
      break;
    }
    retirement.reset();
  }
  ctx.occurred_at =
      StampedAfter(StampedAfter(ctx.occurred_at, survivor->updated_at()), merged->updated_at());
  const bool one_customer = survivor_customer == merged_customer;
  // The survivor's data was erased: the merged person's would follow it
  // into a record that no longer stands for anyone.
  if (store_.vault().Erased(survivor->customer_id()) || store_.vault().Erased(survivor_customer)) {
    return absl::FailedPreconditionError(
        absl::StrCat("survivor_lead_id: the customer of lead ", survivor_id, " was erased"));
  }
  // An erased lead has nothing to bring, and linking its customer to the
  // survivor would make its old contact rows match the survivor again.
  if (store_.vault().Erased(merged->customer_id()) || store_.vault().Erased(merged_customer)) {
    return absl::FailedPreconditionError(
        absl::StrCat("merged_lead_id: the customer of lead ", merged_id, " was erased"));
  }
  CRM_ASSIGN_OR_RETURN(auto survivor_events,
                       Decide(survivor, AbsorbLead{request.survivor_expected_version(), *merged,
                                                   survivor_customer, merged_customer}));
  CRM_ASSIGN_OR_RETURN(auto merged_events,
                       Decide(merged, MergeLeadInto{request.merged_expected_version(), *survivor,
                                                    survivor_customer}));

  crm::v1::MergeLeadsResponse response;
  crm::v1::Lead& survivor_after = *response.mutable_survivor();
  crm::v1::Lead& merged_after = *response.mutable_merged();
  survivor_after = *survivor;
  merged_after = *merged;
  for (const auto& e : survivor_events) Apply(survivor_after, e, ctx.occurred_at);
  for (const auto& e : merged_events) Apply(merged_after, e, ctx.occurred_at);

  std::vector<AppendRequest> appends(2);
  AppendRequest& s = appends[0];
  s.stream = LeadStream(survivor_id);
  s.expected_version = survivor->version();
  s.events = Envelopes(survivor_events, survivor->customer_id(), ctx);
  s.state = survivor_after.SerializeAsString();
  s.projection_writes = LeadStore::ListWrites(&*survivor, survivor_after);
  for (auto& w : LeadStore::ListWrites(&*merged, merged_after)) {
    s.projection_writes.push_back(std::move(w));
  }
  // The merged person's contacts now find the survivor: those of the
  // merged lead and of every lead merged into it before, wherever the index
  // points them in the merged lead's tree or customer (a duplicate lead of
  // the same person). The index holds blind values of the plaintext.
  absl::flat_hash_set<std::string> merged_leads = {merged_id};
  std::vector<std::string> keys;
  auto add_keys = [&](const crm::v1::Lead& lead) {
    crm::v1::Contact contact = lead.contact();
    pii::OpenFields(contact, store_.vault());
    for (auto& k : store_.ContactKeys(contact)) keys.push_back(std::move(k));
  };
  add_keys(*merged);
  for (const auto& id : merged->merged_lead_ids()) {
    merged_leads.insert(id);
    CRM_ASSIGN_OR_RETURN(auto earlier_lead, store_.FindLead(id));
    if (earlier_lead) add_keys(*earlier_lead);
  }
  std::sort(keys.begin(), keys.end());
  keys.erase(std::unique(keys.begin(), keys.end()), keys.end());
  // They name the person's first lead, as a capture's duplicate_of_lead_id
  // does: that of the survivor when it is a later lead of its person (else
  // the person's next lead would name the survivor, and a check of who may
  // convert it would stop there), unless this merge takes that lead away.
  std::string home_lead = survivor_id;
  if (!survivor->duplicate_of_lead_id().empty()) {
    CRM_ASSIGN_OR_RETURN(std::string first, contacts_.HomeLead(survivor->duplicate_of_lead_id()));
    if (!merged_leads.contains(first)) home_lead = std::move(first);
  }
  CRM_ASSIGN_OR_RETURN(auto entries, store_.FindContactKeys(keys));
  for (size_t i = 0; i < keys.size(); ++i) {
    if (!entries[i].has_value() || merged_leads.contains(entries[i]->lead_id) ||
        entries[i]->customer_id == merged->customer_id() ||
        entries[i]->customer_id == merged_customer) {
      s.projection_writes.push_back(
          LeadStore::ContactWrite(keys[i], {home_lead, survivor_customer}));
    }
  }
  s.request_key = request_key;
  s.response = response.SerializeAsString();
  AppendRequest& m = appends[1];
  m.stream = LeadStream(merged_id);
  m.expected_version = merged->version();
  m.events = Envelopes(merged_events, merged->customer_id(), ctx);
  m.state = merged_after.SerializeAsString();

  // The survivor now holds data sealed for the merged customer: the link
  // lets an erasure of the survivor reach that key.
  if (auto link = store_.vault().MergeRecord(merged_id, merged_customer, survivor_customer, ctx)) {
    appends.push_back(*std::move(link));
  }

  // Both leads (and the link) or neither.
  if (auto written = store_.events().AppendAll(std::move(appends)); !written.ok()) {
    // The same request key, raced in by a merge of other leads: its answer.
    if (absl::IsAlreadyExists(written.status())) {
      CRM_ASSIGN_OR_RETURN(earlier, store_.events().FindResponse(request_key));
      if (earlier.has_value()) return Parse<crm::v1::MergeLeadsResponse>(*earlier);
    }
    return written.status();
  }
  if (!one_customer) store_.vault().Merged(merged_customer, survivor_customer);
  assigner_.Moved(*survivor, survivor_after);
  assigner_.Moved(*merged, merged_after);
  return response;
}

// ---- assignment rules ----

namespace {

// A page of the rule table, in its order.
crm::v1::ListAssignmentRulesResponse RulesPage(const crm::v1::AssignmentRuleTable& table,
                                               const crm::v1::ListAssignmentRulesRequest& query,
                                               size_t offset, size_t page_size) {
  const bool include_disabled = query.include_disabled();
  crm::v1::ListAssignmentRulesResponse response;
  response.set_table_version(table.version());
  // A thousand rules of a hundred team members each would be 13 MB.
  ReplyBudget budget;
  size_t seen = 0;
  for (const auto& rule : table.rules()) {
    if (!rule.enabled() && !include_disabled) continue;
    if (seen++ < offset) continue;
    if (static_cast<size_t>(response.rules_size()) == page_size ||
        !budget.Take(rule.ByteSizeLong())) {
      // The table's version too: a page of a table changed since (a rule
      // disabled, the rules reordered) is not the next page of this one.
      response.set_next_page_token(
          OffsetToken(query, offset + response.rules_size(), table.version()));
      break;
    }
    *response.add_rules() = rule;
  }
  return response;
}

}  // namespace

absl::StatusOr<std::string> LeadCommands::ChangeRules(
    const google::protobuf::Message& request, const std::string& command_key, EventContext ctx,
    const std::function<absl::StatusOr<std::pair<crm::v1::AssignmentRuleTable, std::string>>(
        const crm::v1::AssignmentRuleTable&)>& change) {
  const std::string request_key = CallerRequestKey(ctx, command_key, request);
  CRM_ASSIGN_OR_RETURN(auto earlier, store_.events().FindResponse(request_key));
  if (earlier.has_value()) return *std::move(earlier);
  CRM_RETURN_IF_ERROR(Recover());
  std::lock_guard<std::mutex> lock(assigner_.rule_change_mutex());
  CRM_ASSIGN_OR_RETURN(earlier, store_.events().FindResponse(request_key));
  if (earlier.has_value()) return *std::move(earlier);
  CRM_ASSIGN_OR_RETURN(auto next, change(*assigner_.Rules()));

  AppendRequest append;
  append.stream = kRulesStream;
  append.expected_version = EventStore::kNoStream;  // configuration: never has events
  append.request_key = request_key;
  append.response = next.second;
  append.projection_writes.push_back(LeadStore::RulesWrite(next.first));
  CRM_ASSIGN_OR_RETURN(auto result, store_.events().Append(std::move(append)));
  if (result.replayed) return std::move(result.response);
  log::Info("assignment rules changed", {{"version", absl::StrCat(next.first.version())},
                                         {"actor", ctx.actor},
                                         {"request", request_key}});
  assigner_.SetRules(std::move(next.first));
  return std::move(next.second);
}

absl::StatusOr<crm::v1::AssignmentRule> LeadCommands::CreateAssignmentRule(
    const crm::v1::CreateAssignmentRuleRequest& request, EventContext ctx) {
  CRM_RETURN_IF_ERROR(CheckText("request_id", request.request_id(), kMaxRequestId, true));
  CRM_ASSIGN_OR_RETURN(auto rule, NormalizeRule(request.rule()));
  CRM_ASSIGN_OR_RETURN(
      auto bytes,
      ChangeRules(request, absl::StrCat("CreateAssignmentRule/", request.request_id()),
                  std::move(ctx),
                  [&](const crm::v1::AssignmentRuleTable& table)
                      -> absl::StatusOr<std::pair<crm::v1::AssignmentRuleTable, std::string>> {
                    CRM_ASSIGN_OR_RETURN(auto next, AddRule(table, rule, NewId("rule")));
                    std::string created = next.rules(next.rules_size() - 1).SerializeAsString();
                    return std::make_pair(std::move(next), std::move(created));
                  }));
  return Parse<crm::v1::AssignmentRule>(bytes);
}

absl::StatusOr<crm::v1::ListAssignmentRulesResponse> LeadCommands::ListAssignmentRules(
    const crm::v1::ListAssignmentRulesRequest& request) {
  CRM_ASSIGN_OR_RETURN(const int32_t page_size, PageSize(request.page()));
  CRM_ASSIGN_OR_RETURN(const OffsetPosition position, OpenOffsetToken(request, request.page()));
  CRM_RETURN_IF_ERROR(Recover());
  const std::shared_ptr<const crm::v1::AssignmentRuleTable> table = assigner_.Rules();
  if (position.version.has_value() && *position.version != table->version()) {
    return absl::AbortedError(absl::StrCat(
        "page.page_token: the rule table changed since the "
        "first page (version ",
        *position.version, ", now ", table->version(), "); list again from the first page"));
  }
  const size_t offset = position.offset;
  return RulesPage(*table, request, offset, page_size);
}

absl::StatusOr<std::vector<std::string>> ParseReorderRules(
    const crm::v1::ReorderAssignmentRulesRequest& request) {
  CRM_RETURN_IF_ERROR(CheckText("request_id", request.request_id(), kMaxRequestId, true));
  std::vector<std::string> ids;
  for (const auto& id : request.rule_ids()) {
    CRM_RETURN_IF_ERROR(CheckId("rule_ids", id));
    ids.push_back(id);
  }
  if (request.expected_table_version() < 0) {
    return Invalid("expected_table_version", "negative");
  }
  return ids;
}

absl::Status CheckSetRuleEnabled(const crm::v1::SetAssignmentRuleEnabledRequest& request) {
  CRM_RETURN_IF_ERROR(CheckText("request_id", request.request_id(), kMaxRequestId, true));
  CRM_RETURN_IF_ERROR(CheckId("rule_id", request.rule_id()));
  if (request.expected_table_version() < 0) {
    return Invalid("expected_table_version", "negative");
  }
  return absl::OkStatus();
}

absl::StatusOr<crm::v1::ListAssignmentRulesResponse> LeadCommands::ReorderAssignmentRules(
    const crm::v1::ReorderAssignmentRulesRequest& request, EventContext ctx) {
  CRM_ASSIGN_OR_RETURN(const std::vector<std::string> ids, ParseReorderRules(request));
  CRM_ASSIGN_OR_RETURN(
      auto bytes,
      ChangeRules(request, absl::StrCat("ReorderAssignmentRules/", request.request_id()),
                  std::move(ctx),
                  [&](const crm::v1::AssignmentRuleTable& table)
                      -> absl::StatusOr<std::pair<crm::v1::AssignmentRuleTable, std::string>> {
                    CRM_ASSIGN_OR_RETURN(
                        auto next, ReorderRules(table, ids, request.expected_table_version()));
                    // The whole table: its next page is ListAssignmentRules' with
                    // include_disabled.
                    crm::v1::ListAssignmentRulesRequest whole;
                    whole.set_include_disabled(true);
                    whole.mutable_page()->set_page_size(kMaxPageSize);
                    std::string bytes = RulesPage(next, whole, 0, kMaxPageSize).SerializeAsString();
                    return std::make_pair(std::move(next), std::move(bytes));
                  }));
  return Parse<crm::v1::ListAssignmentRulesResponse>(bytes);
}

absl::StatusOr<crm::v1::AssignmentRule> LeadCommands::SetAssignmentRuleEnabled(
    const crm::v1::SetAssignmentRuleEnabledRequest& request, bool enabled, EventContext ctx) {
  CRM_RETURN_IF_ERROR(CheckSetRuleEnabled(request));
  CRM_ASSIGN_OR_RETURN(
      auto bytes,
      ChangeRules(request,
                  absl::StrCat(enabled ? "EnableAssignmentRule/" : "DisableAssignmentRule/",
                               request.request_id()),
                  std::move(ctx),
                  [&](const crm::v1::AssignmentRuleTable& table)
                      -> absl::StatusOr<std::pair<crm::v1::AssignmentRuleTable, std::string>> {
                    CRM_ASSIGN_OR_RETURN(auto next,
                                         SetRuleEnabled(table, request.rule_id(), enabled,
                                                        request.expected_table_version()));
                    std::string rule;
                    for (const auto& r : next.rules()) {
                      if (r.rule_id() == request.rule_id()) rule = r.SerializeAsString();
                    }
                    return std::make_pair(std::move(next), std::move(rule));
                  }));
  return Parse<crm::v1::AssignmentRule>(bytes);
}

}  // namespace crm::leads
