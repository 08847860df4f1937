#pragma once

#include "crm/v1/leads.grpc.pb.h"
#include "libs/common/auth/principal.h"
#include "libs/common/blocking_executor.h"
#include "services/leads/api/lead_commands.h"
#include "services/leads/api/lead_import.h"

namespace crm::leads {

// gRPC edge of the leads service: proto in, status out; the work runs on
// the blocking executor because commands wait for a synced append.
class LeadsGrpc final : public crm::v1::LeadsService::CallbackService {
 public:
  LeadsGrpc(LeadCommands& commands, LeadImporter& importer, BlockingExecutor& executor)
      : commands_(commands), importer_(importer), executor_(executor) {}

  grpc::ServerUnaryReactor* CaptureLead(grpc::CallbackServerContext* ctx,
                                        const crm::v1::CaptureLeadRequest* request,
                                        crm::v1::CaptureLeadResponse* response) override;
  grpc::ServerReadReactor<crm::v1::ImportLeadsRequest>* ImportLeads(
      grpc::CallbackServerContext* ctx, crm::v1::ImportLeadsResponse* response) override;
  grpc::ServerUnaryReactor* GetLead(grpc::CallbackServerContext* ctx,
                                    const crm::v1::GetLeadRequest* request,
                                    crm::v1::Lead* response) override;
  grpc::ServerUnaryReactor* ListLeads(grpc::CallbackServerContext* ctx,
                                      const crm::v1::ListLeadsRequest* request,
                                      crm::v1::ListLeadsResponse* response) override;
  grpc::ServerUnaryReactor* GetLeadHistory(grpc::CallbackServerContext* ctx,
                                           const crm::v1::GetLeadHistoryRequest* request,
                                           crm::v1::GetLeadHistoryResponse* response) override;
  grpc::ServerUnaryReactor* RecordLeadActivity(grpc::CallbackServerContext* ctx,
                                               const crm::v1::RecordLeadActivityRequest* request,
                                               crm::v1::Lead* response) override;
  grpc::ServerUnaryReactor* QualifyLead(grpc::CallbackServerContext* ctx,
                                        const crm::v1::QualifyLeadRequest* request,
                                        crm::v1::Lead* response) override;
  grpc::ServerUnaryReactor* DisqualifyLead(grpc::CallbackServerContext* ctx,
                                           const crm::v1::DisqualifyLeadRequest* request,
                                           crm::v1::Lead* response) override;
  grpc::ServerUnaryReactor* NurtureLead(grpc::CallbackServerContext* ctx,
                                        const crm::v1::NurtureLeadRequest* request,
                                        crm::v1::Lead* response) override;
  grpc::ServerUnaryReactor* ConvertLead(grpc::CallbackServerContext* ctx,
                                        const crm::v1::ConvertLeadRequest* request,
                                        crm::v1::ConvertLeadResponse* response) override;
  grpc::ServerUnaryReactor* AssignLead(grpc::CallbackServerContext* ctx,
                                       const crm::v1::AssignLeadRequest* request,
                                       crm::v1::Lead* response) override;
  grpc::ServerUnaryReactor* MergeLeads(grpc::CallbackServerContext* ctx,
                                       const crm::v1::MergeLeadsRequest* request,
                                       crm::v1::MergeLeadsResponse* response) override;
  grpc::ServerUnaryReactor* CreateAssignmentRule(
      grpc::CallbackServerContext* ctx, const crm::v1::CreateAssignmentRuleRequest* request,
      crm::v1::AssignmentRule* response) override;
  grpc::ServerUnaryReactor* ListAssignmentRules(
      grpc::CallbackServerContext* ctx, const crm::v1::ListAssignmentRulesRequest* request,
      crm::v1::ListAssignmentRulesResponse* response) override;
  grpc::ServerUnaryReactor* ReorderAssignmentRules(
      grpc::CallbackServerContext* ctx, const crm::v1::ReorderAssignmentRulesRequest* request,
      crm::v1::ListAssignmentRulesResponse* response) override;
  grpc::ServerUnaryReactor* DisableAssignmentRule(
      grpc::CallbackServerContext* ctx, const crm::v1::SetAssignmentRuleEnabledRequest* request,
      crm::v1::AssignmentRule* response) override;
  grpc::ServerUnaryReactor* EnableAssignmentRule(
      grpc::CallbackServerContext* ctx, const crm::v1::SetAssignmentRuleEnabledRequest* request,
      crm::v1::AssignmentRule* response) override;

 private:
  // Runs `body(request, caller)` on the executor and finishes with its
  // status; a call the auth interceptor refused finishes with the refusal.
  template <typename Request, typename Response, typename Body>
  grpc::ServerUnaryReactor* Unary(grpc::CallbackServerContext* ctx, const Request* request,
                                  Response* response, Body body);
  // OK when the caller may work on the lead; otherwise the same
  // PERMISSION_DENIED whether the lead exists or not (record_access.h).
  absl::Status CheckLead(const auth::Principal& caller, const std::string& lead_id,
                         absl::string_view field = "lead_id") const;
  // CheckLead for a command on the lead, passed for a retry of one the
  // caller made: a rep who assigned a lead away gets the first answer, not
  // PERMISSION_DENIED.
  template <typename Request>
  absl::Status CheckLeadCommand(const auth::Principal& caller, const EventContext& ctx,
                                absl::string_view method, const Request& request) const {
    return CheckUnlessRetry(commands_.events(), ctx, method, request,
                            [&] { return CheckLead(caller, request.lead_id()); });
  }
  // OK when the caller may also access the person's first lead, which a
  // later lead's duplicate_of_lead_id names: converting or merging a lead
  // acts for the whole person (its account, its 360 view), so a duplicate
  // captured into another territory must not hand them over. OK too for a
  // lead the command refuses whoever asks (FAILED_PRECONDITION): one merged
  // away, or converted unless it is the `survivor` of a merge.
  absl::Status CheckPerson(const auth::Principal& caller, const std::string& lead_id,
                           absl::string_view field, bool survivor = false) const;
  // Clears a duplicate_of_lead_id that names a lead the caller may not
  // access: dedupe must not point at others' leads. One per reply: each
  // earlier lead is checked once. A lead that could not be read (storage)
  // is kept out of the reply too, and status() fails: the reply must not
  // read as a new person's.
  class DuplicateFilter {
   public:
    DuplicateFilter(const LeadsGrpc& leads, const auth::Principal& caller)
        : leads_(leads), caller_(caller) {}
    void Hide(std::string& duplicate_of_lead_id);
    void Hide(crm::v1::Lead& lead) { Hide(*lead.mutable_duplicate_of_lead_id()); }
    void Hide(crm::v1::CaptureLeadResponse& r) { Hide(*r.mutable_duplicate_of_lead_id()); }
    void Hide(crm::v1::ConvertLeadResponse& r) { Hide(*r.mutable_lead()); }
    void Hide(crm::v1::MergeLeadsResponse& r);
    void Hide(crm::v1::ImportLeadsResponse& r);
    void Hide(crm::v1::GetLeadHistoryResponse& r);
    // Replies that hold no lead.
    template <typename Reply>
    void Hide(Reply&) {}
    // The first check that failed for another reason than a refusal.
    const absl::Status& status() const { return status_; }

   private:
    const LeadsGrpc& leads_;
    const auth::Principal& caller_;
    absl::flat_hash_map<std::string, bool> visible_;
    absl::Status status_;
  };

  LeadCommands& commands_;
  LeadImporter& importer_;
  BlockingExecutor& executor_;
};

}  // namespace crm::leads
