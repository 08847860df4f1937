#include "services/leads/api/leads_grpc.h"

#include <atomic>
#include <functional>
#include <memory>
#include <optional>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "absl/time/clock.h"
#include "libs/common/auth/auth_interceptor.h"
#include "libs/common/auth/record_access.h"
#include "libs/common/request_context.h"
#include "libs/common/serve_unary.h"
#include "libs/common/status_macros.h"
#include "services/leads/domain/lead.h"

namespace crm::leads {
namespace {

constexpr char kSource[] = "crm/leads";

// One ImportLeads call. Each message is handed to the executor (rows are
// prepared and appended there, never on a gRPC thread); the next read
// starts once the message is consumed, so a fast client is held back by
// flow control rather than by buffering rows in memory.
class ImportLeadsReactor final : public grpc::ServerReadReactor<crm::v1::ImportLeadsRequest> {
 public:
  // `redact` trims the finished response to what the caller may see; it
  // fails when that could not be decided (a storage error).
  using Redact = std::function<absl::Status(crm::v1::ImportLeadsResponse&)>;

  // `token_valid_until`: the caller's token is checked once, when the call
  // starts; a message read after it would be refused is not taken.
  ImportLeadsReactor(grpc::CallbackServerContext* call, LeadImporter& importer,
                     BlockingExecutor& executor, EventContext ctx, absl::Time token_valid_until,
                     crm::v1::ImportLeadsResponse* response, Redact redact)
      : call_(call),
        importer_(importer),
        executor_(executor),
        ctx_(std::move(ctx)),
        token_valid_until_(token_valid_until),
        response_(response),
        redact_(std::move(redact)) {
    StartRead(&request_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) {  // the client half-closed (or the call ended)
      // Before any message: no session, nothing to write, so it is answered
      // here. Queued, streams that close at once would pass the queue's
      // bound (Run is for admitted work) and turn every caller away.
      if (!admitted_) {
        return End(call_->IsCancelled() ? absl::CancelledError("import cancelled")
                                        : absl::InvalidArgumentError("import_id: required"));
      }
      executor_.Run([this] { Complete(); });
      return;
    }
    auto consume = [this] {
      if (auto st = Consume(); !st.ok()) return End(st);
      StartRead(&request_);
    };
    if (admitted_) return executor_.Run(std::move(consume));
    // The first message admits the call, as RunUnary does a unary one.
    admitted_ = true;
    if (!executor_.TryRun(std::move(consume))) Finish(ServerBusy());
  }

  void OnCancel() override { cancelled_.store(true); }

  // gRPC hands the reactor back once the call is over.
  void OnDone() override { delete this; }

 private:
  absl::Status Consume() {
    if (cancelled_.load()) return absl::CancelledError("import cancelled");
    if (absl::Now() > token_valid_until_) {
      return absl::UnauthenticatedError(
          "token expired during the import: send its rows again in a new call with a new token "
          "(the same import_id and row numbers: rows already stored are answered, not added)");
    }
    if (session_ == nullptr) {
      auto session = importer_.Begin(request_.import_id(), request_.default_channel(), ctx_);
      if (!session.ok()) return session.status();
      session_ = *std::move(session);
    } else {
      CRM_RETURN_IF_ERROR(
          CheckImportFollowUp(request_, session_->import_id(), session_->default_channel()));
    }
    // Checked before each chunk: one message may hold many.
    return session_->Add(request_.mutable_rows(),
                         [this] { return cancelled_.load() || call_->IsCancelled(); });
  }

  void Complete() {
    // A cancelled call writes no more rows; what was appended stays. The
    // call is asked too, for a cancel whose OnCancel has not run yet. A
    // failed read seen before gRPC knows of the cancel still looks like a
    // half-close: its buffered rows are written (a replay answers them).
    if (cancelled_.load() || call_->IsCancelled()) {
      return End(absl::CancelledError("import cancelled"));
    }
    if (session_ == nullptr) return End(absl::InvalidArgumentError("import_id: required"));
    auto response = session_->Finish();
    if (!response.ok()) return End(response.status());
    // The rows are stored either way: a replay of the import answers them.
    if (auto st = redact_(*response); !st.ok()) return End(st);
    *response_ = *std::move(response);
    End(absl::OkStatus());
  }

  void End(const absl::Status& status) {
    session_.reset();  // waits for a chunk still being written
    Finish(ToGrpcStatus(status));
  }

  grpc::CallbackServerContext* const call_;
  LeadImporter& importer_;
  BlockingExecutor& executor_;
  const EventContext ctx_;
  const absl::Time token_valid_until_;
  crm::v1::ImportLeadsResponse* response_;
  const Redact redact_;
  crm::v1::ImportLeadsRequest request_;
  std::unique_ptr<ImportSession> session_;
  std::atomic<bool> cancelled_{false};
  bool admitted_ = false;  // OnReadDone's only: reads come one at a time
};

}  // namespace

template <typename Request, typename Response, typename Body>
grpc::ServerUnaryReactor* LeadsGrpc::Unary(grpc::CallbackServerContext* ctx, const Request* request,
                                           Response* response, Body body) {
  // Every reply that holds a lead hides the earlier leads it may not name.
  return ServeUnary(
      ctx, executor_, request, response,
      [this, body = std::move(body)](const Request& r,
                                     const auth::Principal& caller) -> absl::StatusOr<Response> {
        absl::StatusOr<Response> reply = body(r, caller);
        if (!reply.ok() || caller.SeesEverything()) return reply;
        DuplicateFilter filter(*this, caller);
        filter.Hide(*reply);
        // A lead that could not be read is neither named nor hidden: the
        // caller retries (a command's retry gets its stored answer).
        if (!filter.status().ok()) return filter.status();
        return reply;
      });
}

absl::Status LeadsGrpc::CheckLead(const auth::Principal& caller, const std::string& lead_id,
                                  absl::string_view field) const {
  if (caller.SeesEverything()) return absl::OkStatus();
  crm::v1::GetLeadRequest get;
  get.set_lead_id(lead_id);
  return auth::CheckLoaded(
      caller, commands_.GetLead(get), field, lead_id,
      [](const crm::v1::Lead& l) { return l.owner_id(); },
      [](const crm::v1::Lead& l) { return l.region(); });
}

grpc::ServerUnaryReactor* LeadsGrpc::CaptureLead(grpc::CallbackServerContext* ctx,
                                                 const crm::v1::CaptureLeadRequest* request,
                                                 crm::v1::CaptureLeadResponse* response) {
  return Unary(
      ctx, request, response,
      [this, e = EventContextFrom(*ctx, kSource)](const auto& r, const auth::Principal& caller)
          -> absl::StatusOr<crm::v1::CaptureLeadResponse> { return commands_.CaptureLead(r, e); });
}

void LeadsGrpc::DuplicateFilter::Hide(std::string& duplicate_of_lead_id) {
  if (duplicate_of_lead_id.empty() || caller_.SeesEverything()) return;
  auto [it, added] = visible_.try_emplace(duplicate_of_lead_id);
  if (added) {
    const absl::Status check = leads_.CheckLead(caller_, duplicate_of_lead_id);
    it->second = check.ok();
    if (!check.ok() && !auth::IsRefusal(check) && status_.ok()) status_ = check;
  }
  if (!it->second) duplicate_of_lead_id.clear();
}

void LeadsGrpc::DuplicateFilter::Hide(crm::v1::MergeLeadsResponse& r) {
  Hide(*r.mutable_survivor());
  Hide(*r.mutable_merged());
}

void LeadsGrpc::DuplicateFilter::Hide(crm::v1::ImportLeadsResponse& r) {
  for (auto& row : *r.mutable_results()) Hide(*row.mutable_duplicate_of_lead_id());
}

void LeadsGrpc::DuplicateFilter::Hide(crm::v1::GetLeadHistoryResponse& r) {
  // The leads as events carry them: captured, and merged into another.
  for (auto& event : *r.mutable_events()) {
    crm::v1::LeadCaptured captured;
    crm::v1::LeadsMerged merged;
    if (event.payload().UnpackTo(&captured)) {
      if (captured.duplicate_of_lead_id().empty()) continue;
      Hide(*captured.mutable_duplicate_of_lead_id());
      if (captured.duplicate_of_lead_id().empty()) event.mutable_payload()->PackFrom(captured);
    } else if (event.payload().UnpackTo(&merged)) {
      if (merged.merged_lead().duplicate_of_lead_id().empty()) continue;
      Hide(*merged.mutable_merged_lead());
      if (merged.merged_lead().duplicate_of_lead_id().empty()) {
        event.mutable_payload()->PackFrom(merged);
      }
    }
  }
}

absl::Status LeadsGrpc::CheckPerson(const auth::Principal& caller, const std::string& lead_id,
                                    absl::string_view field, bool survivor) const {
  if (caller.SeesEverything()) return absl::OkStatus();
  auto refuse = [&] {
    return absl::PermissionDeniedError(absl::StrCat(
        field, ": lead ", lead_id,
        " is a later lead of a person first captured outside the caller's reach; the owner of "
        "that first lead or an admin converts or merges it"));
  };
  // A lead of the chain, if the caller may reach it (as CheckLead, on the
  // lead already loaded: a lead missing is out of reach).
  // A lead that cannot be read (storage) is the error, not a refusal.
  auto reach = [&](const std::string& id) -> absl::StatusOr<std::optional<crm::v1::Lead>> {
    crm::v1::GetLeadRequest get;
    get.set_lead_id(id);
    auto lead = commands_.GetLead(get);
    if (absl::IsNotFound(lead.status())) return std::nullopt;
    if (!lead.ok()) return lead.status();
    if (!auth::MayAccess(caller, lead->owner_id(), lead->region())) return std::nullopt;
    return std::optional<crm::v1::Lead>(*std::move(lead));
  };
  crm::v1::GetLeadRequest get;
  get.set_lead_id(lead_id);
  CRM_ASSIGN_OR_RETURN(crm::v1::Lead lead, commands_.GetLead(get));
  // Both statuses are final: the command's own refusal is the answer, the
  // same for every caller, not one that depends on who owns the lead it
  // went to.
  if (lead.status() == crm::v1::LEAD_STATUS_MERGED ||
      (lead.status() == crm::v1::LEAD_STATUS_CONVERTED && !survivor)) {
    return absl::OkStatus();
  }
  // The person's first lead, and where a merge took it: the person lives on
  // in the survivor's customer, whose account a conversion opens.
  // A merge keeps the survivor's own duplicate_of_lead_id, so the chain
  // may come back to a lead already passed: the person is within reach.
  absl::flat_hash_set<std::string> passed = {lead_id};
  std::string current = lead_id;
  for (int hop = 0; hop < 64; ++hop) {
    if (!lead.duplicate_of_lead_id().empty() && lead.duplicate_of_lead_id() != current) {
      // A first lead merged (through any number of merges) into a lead
      // already passed made that one the person's home: not a lead to
      // reach, and this lead is checked as one that stands below.
      CRM_ASSIGN_OR_RETURN(const std::string home,
                           commands_.contacts().HomeLead(lead.duplicate_of_lead_id()));
      if (!passed.contains(home)) {
        CRM_ASSIGN_OR_RETURN(auto first, reach(lead.duplicate_of_lead_id()));
        if (!first.has_value()) return refuse();
        lead = *std::move(first);
        // Its own duplicate_of_lead_id is checked in turn: the lead a
        // duplicate names may be a later lead of the person too.
        current = lead.lead_id();
        if (!passed.insert(current).second) return absl::OkStatus();
        continue;
      }
    }
    if (lead.status() != crm::v1::LEAD_STATUS_MERGED || lead.merged_into_lead_id().empty()) {
      // A merge of another lead of the person may have retired this lead's
      // customer: the conversion opens the survivor's account, whose home
      // is the lead the person's contacts find now.
      CRM_ASSIGN_OR_RETURN(const auto home, commands_.SurvivingHomeOf(lead));
      // A home that cannot be found cannot be shown to be within reach.
      if (home.has_value() && home->empty()) return refuse();
      if (!home.has_value() || !passed.insert(*home).second) return absl::OkStatus();
      current = *home;
      CRM_ASSIGN_OR_RETURN(auto found, reach(current));
      if (!found.has_value()) return refuse();
      lead = *std::move(found);
      continue;
    }
    current = lead.merged_into_lead_id();
    if (!passed.insert(current).second) return absl::OkStatus();
    CRM_ASSIGN_OR_RETURN(auto survivor, reach(current));
    if (!survivor.has_value()) return refuse();
    lead = *std::move(survivor);
  }
  return refuse();  // a chain this long is not a person's
}

grpc::ServerReadReactor<crm::v1::ImportLeadsRequest>* LeadsGrpc::ImportLeads(
    grpc::CallbackServerContext* ctx, crm::v1::ImportLeadsResponse* response) {
  // Streaming calls do not go through Unary: refuse here, before any row.
  auto caller = auth::CallerFrom(*ctx);
  if (!caller.ok()) {
    class Refused final : public grpc::ServerReadReactor<crm::v1::ImportLeadsRequest> {
     public:
      explicit Refused(const absl::Status& st) { Finish(ToGrpcStatus(st)); }
      void OnDone() override { delete this; }
    };
    return std::make_unique<Refused>(caller.status()).release();
  }
  // Rows are answered per caller (a replay too): the stored results keep
  // the earlier lead, the caller learns it only if it may access it.
  const absl::Time token_valid_until = caller->valid_until;
  return std::make_unique<ImportLeadsReactor>(
             ctx, importer_, executor_, EventContextFrom(*ctx, kSource), token_valid_until,
             response,
             [this, caller = *std::move(caller)](crm::v1::ImportLeadsResponse& r) {
               DuplicateFilter filter(*this, caller);
               filter.Hide(r);
               return filter.status();
             })
      .release();
}

grpc::ServerUnaryReactor* LeadsGrpc::GetLead(grpc::CallbackServerContext* ctx,
                                             const crm::v1::GetLeadRequest* request,
                                             crm::v1::Lead* response) {
  return Unary(
      ctx, request, response,
      [this](const auto& r, const auth::Principal& caller) -> absl::StatusOr<crm::v1::Lead> {
        CRM_RETURN_IF_ERROR(CheckLead(caller, r.lead_id()));
        return commands_.GetLead(r);
      });
}

grpc::ServerUnaryReactor* LeadsGrpc::ListLeads(grpc::CallbackServerContext* ctx,
                                               const crm::v1::ListLeadsRequest* request,
                                               crm::v1::ListLeadsResponse* response) {
  return Unary(ctx, request, response,
               [this](const auto& r,
                      const auth::Principal& caller) -> absl::StatusOr<crm::v1::ListLeadsResponse> {
                 if (caller.SeesEverything()) return commands_.ListLeads(r);
                 // Scoped callers get their slice: the filter is narrowed, never failed.
                 // The slices follow MayAccess: a manager reads the leads of
                 // its territory and its own anywhere, a rep its own.
                 crm::v1::ListLeadsRequest scoped = r;
                 const bool manager = caller.HasRole(auth::kRoleSalesManager);
                 const bool staff = manager || caller.HasRole(auth::kRoleSalesRep);
                 if (staff && r.queue().empty() && r.owner_id() == caller.subject) {
                   // The caller's own leads, in any region.
                 } else if (manager && !caller.territory.empty() &&
                            (r.region().empty() ||
                             auth::SameTerritory(absl::StripAsciiWhitespace(r.region()),
                                                 caller.territory))) {
                   scoped.set_region(caller.territory);
                 } else if (staff && r.queue().empty() && r.owner_id().empty()) {
                   scoped.set_owner_id(caller.subject);
                 } else {
                   CRM_RETURN_IF_ERROR(LeadCommands::ListLeadsQuery(r).status());
                   return crm::v1::ListLeadsResponse();
                 }
                 return commands_.ListLeads(scoped);
               });
}

grpc::ServerUnaryReactor* LeadsGrpc::GetLeadHistory(grpc::CallbackServerContext* ctx,
                                                    const crm::v1::GetLeadHistoryRequest* request,
                                                    crm::v1::GetLeadHistoryResponse* response) {
  return Unary(
      ctx, request, response,
      [this](const auto& r,
             const auth::Principal& caller) -> absl::StatusOr<crm::v1::GetLeadHistoryResponse> {
        CRM_RETURN_IF_ERROR(CheckLead(caller, r.lead_id()));
        return commands_.GetLeadHistory(r);
      });
}

grpc::ServerUnaryReactor* LeadsGrpc::RecordLeadActivity(
    grpc::CallbackServerContext* ctx, const crm::v1::RecordLeadActivityRequest* request,
    crm::v1::Lead* response) {
  return Unary(ctx, request, response,
               [this, e = EventContextFrom(*ctx, kSource)](
                   const auto& r, const auth::Principal& caller) -> absl::StatusOr<crm::v1::Lead> {
                 CRM_RETURN_IF_ERROR(CheckLeadCommand(caller, e, "RecordLeadActivity", r));
                 return commands_.RecordLeadActivity(r, e);
               });
}

grpc::ServerUnaryReactor* LeadsGrpc::QualifyLead(grpc::CallbackServerContext* ctx,
                                                 const crm::v1::QualifyLeadRequest* request,
                                                 crm::v1::Lead* response) {
  return Unary(ctx, request, response,
               [this, e = EventContextFrom(*ctx, kSource)](
                   const auto& r, const auth::Principal& caller) -> absl::StatusOr<crm::v1::Lead> {
                 CRM_RETURN_IF_ERROR(CheckLeadCommand(caller, e, "QualifyLead", r));
                 return commands_.QualifyLead(r, e);
               });
}

grpc::ServerUnaryReactor* LeadsGrpc::DisqualifyLead(grpc::CallbackServerContext* ctx,
                                                    const crm::v1::DisqualifyLeadRequest* request,
                                                    crm::v1::Lead* response) {
  return Unary(ctx, request, response,
               [this, e = EventContextFrom(*ctx, kSource)](
                   const auto& r, const auth::Principal& caller) -> absl::StatusOr<crm::v1::Lead> {
                 CRM_RETURN_IF_ERROR(CheckLeadCommand(caller, e, "DisqualifyLead", r));
                 return commands_.DisqualifyLead(r, e);
               });
}

grpc::ServerUnaryReactor* LeadsGrpc::NurtureLead(grpc::CallbackServerContext* ctx,
                                                 const crm::v1::NurtureLeadRequest* request,
                                                 crm::v1::Lead* response) {
  return Unary(ctx, request, response,
               [this, e = EventContextFrom(*ctx, kSource)](
                   const auto& r, const auth::Principal& caller) -> absl::StatusOr<crm::v1::Lead> {
                 CRM_RETURN_IF_ERROR(CheckLeadCommand(caller, e, "NurtureLead", r));
                 return commands_.NurtureLead(r, e);
               });
}

grpc::ServerUnaryReactor* LeadsGrpc::ConvertLead(grpc::CallbackServerContext* ctx,
                                                 const crm::v1::ConvertLeadRequest* request,
                                                 crm::v1::ConvertLeadResponse* response) {
  return Unary(
      ctx, request, response,
      [this, e = EventContextFrom(*ctx, kSource)](const auto& r, const auth::Principal& caller)
          -> absl::StatusOr<crm::v1::ConvertLeadResponse> {
        CRM_RETURN_IF_ERROR(
            CheckUnlessRetry(commands_.events(), e, "ConvertLead", r, [&]() -> absl::Status {
              CRM_RETURN_IF_ERROR(CheckLead(caller, r.lead_id()));
              return CheckPerson(caller, r.lead_id(), "lead_id");
            }));
        // A rep converts into their own pipeline, not someone else's.
        if (!caller.SeesEverything() && !caller.HasRole(auth::kRoleSalesManager) &&
            !r.owner_id().empty() && r.owner_id() != caller.subject) {
          return absl::PermissionDeniedError("owner_id: a sales rep converts leads to themselves");
        }
        return commands_.ConvertLead(r, e, caller.territory);
      });
}

grpc::ServerUnaryReactor* LeadsGrpc::AssignLead(grpc::CallbackServerContext* ctx,
                                                const crm::v1::AssignLeadRequest* request,
                                                crm::v1::Lead* response) {
  return Unary(ctx, request, response,
               [this, e = EventContextFrom(*ctx, kSource)](
                   const auto& r, const auth::Principal& caller) -> absl::StatusOr<crm::v1::Lead> {
                 CRM_RETURN_IF_ERROR(CheckLeadCommand(caller, e, "AssignLead", r));
                 return commands_.AssignLead(r, e);
               });
}

grpc::ServerUnaryReactor* LeadsGrpc::MergeLeads(grpc::CallbackServerContext* ctx,
                                                const crm::v1::MergeLeadsRequest* request,
                                                crm::v1::MergeLeadsResponse* response) {
  return Unary(
      ctx, request, response,
      [this, e = EventContextFrom(*ctx, kSource)](const auto& r, const auth::Principal& caller)
          -> absl::StatusOr<crm::v1::MergeLeadsResponse> {
        // The request's own fields first, each named as sent (CheckLead
        // would report an empty id as lead_id). Naming one lead twice is
        // said after the access checks: a request naming a lead the
        // caller may not access is refused like any other.
        CRM_RETURN_IF_ERROR(ValidateMergeFields(r));
        CRM_RETURN_IF_ERROR(
            CheckUnlessRetry(commands_.events(), e, "MergeLeads", r, [&]() -> absl::Status {
              CRM_RETURN_IF_ERROR(CheckLead(caller, r.survivor_lead_id(), "survivor_lead_id"));
              CRM_RETURN_IF_ERROR(CheckLead(caller, r.merged_lead_id(), "merged_lead_id"));
              CRM_RETURN_IF_ERROR(
                  CheckPerson(caller, r.survivor_lead_id(), "survivor_lead_id", /*survivor=*/true));
              return CheckPerson(caller, r.merged_lead_id(), "merged_lead_id");
            }));
        return commands_.MergeLeads(r, e);
      });
}

// Assignment rules are configuration: the method table decides who may
// touch them; they hold no customer records.
grpc::ServerUnaryReactor* LeadsGrpc::CreateAssignmentRule(
    grpc::CallbackServerContext* ctx, const crm::v1::CreateAssignmentRuleRequest* request,
    crm::v1::AssignmentRule* response) {
  return Unary(ctx, request, response,
               [this, e = EventContextFrom(*ctx, kSource)](const auto& r, const auth::Principal&) {
                 return commands_.CreateAssignmentRule(r, e);
               });
}

grpc::ServerUnaryReactor* LeadsGrpc::ListAssignmentRules(
    grpc::CallbackServerContext* ctx, const crm::v1::ListAssignmentRulesRequest* request,
    crm::v1::ListAssignmentRulesResponse* response) {
  return Unary(ctx, request, response, [this](const auto& r, const auth::Principal&) {
    return commands_.ListAssignmentRules(r);
  });
}

grpc::ServerUnaryReactor* LeadsGrpc::ReorderAssignmentRules(
    grpc::CallbackServerContext* ctx, const crm::v1::ReorderAssignmentRulesRequest* request,
    crm::v1::ListAssignmentRulesResponse* response) {
  return Unary(ctx, request, response,
               [this, e = EventContextFrom(*ctx, kSource)](const auto& r, const auth::Principal&) {
                 return commands_.ReorderAssignmentRules(r, e);
               });
}

grpc::ServerUnaryReactor* LeadsGrpc::DisableAssignmentRule(
    grpc::CallbackServerContext* ctx, const crm::v1::SetAssignmentRuleEnabledRequest* request,
    crm::v1::AssignmentRule* response) {
  return Unary(ctx, request, response,
               [this, e = EventContextFrom(*ctx, kSource)](const auto& r, const auth::Principal&) {
                 return commands_.SetAssignmentRuleEnabled(r, /*enabled=*/false, e);
               });
}

grpc::ServerUnaryReactor* LeadsGrpc::EnableAssignmentRule(
    grpc::CallbackServerContext* ctx, const crm::v1::SetAssignmentRuleEnabledRequest* request,
    crm::v1::AssignmentRule* response) {
  return Unary(ctx, request, response,
               [this, e = EventContextFrom(*ctx, kSource)](const auto& r, const auth::Principal&) {
                 return commands_.SetAssignmentRuleEnabled(r, /*enabled=*/true, e);
               });
}

}  // namespace crm::leads
