#pragma once

#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "crm/v1/leads.pb.h"
#include "libs/common/envelope.h"
#include "libs/common/striped_mutex.h"
#include "services/leads/api/assigner.h"
#include "services/leads/api/contact_registry.h"
#include "services/leads/store/lead_store.h"

namespace crm::leads {

inline constexpr char kLeadsSource[] = "crm/leads";

// A new lead ready to append: events decided, state folded, the contact
// keys it claimed and its list entries among the projection writes.
struct NewLead {
  AppendRequest append;
  crm::v1::Lead state;
};
// Shared by CaptureLead and ImportLeads: Decide, Apply and the writes.
absl::StatusOr<NewLead> PrepareNewLead(const CaptureLead& command,
                                       const std::vector<std::string>& claimed_keys,
                                       const EventContext& ctx);

// Offset paging for small in-memory lists (rules, one lead's history). The
// token also holds a version of the list, so a next page after the list
// changed under it is ABORTED rather than skipping or repeating items. A
// token issued before versions were in it holds the offset alone.
struct OffsetPosition {
  size_t offset = 0;
  std::optional<int64_t> version;
};
// No list here comes near it; a larger offset is no token of ours.
inline constexpr size_t kMaxTokenOffset = size_t{1} << 40;
// INVALID_ARGUMENT naming page.page_token for a token of another query or
// one that holds no position.
absl::StatusOr<OffsetPosition> OpenOffsetToken(const google::protobuf::Message& request,
                                               const crm::v1::PageRequest& page);
std::string OffsetToken(const google::protobuf::Message& request, size_t offset, int64_t version);

// The checks of the rule table's commands that need no table: the ids a
// reorder names, in its order; an enable or disable request.
absl::StatusOr<std::vector<std::string>> ParseReorderRules(
    const crm::v1::ReorderAssignmentRulesRequest& request);
absl::Status CheckSetRuleEnabled(const crm::v1::SetAssignmentRuleEnabledRequest& request);

// The use cases of the leads service: validate, load, Decide, Apply and
// append in one batch. Transport-free so it is tested without gRPC.
class LeadCommands {
 public:
  explicit LeadCommands(LeadStore& store) : store_(store), contacts_(store), assigner_(store) {}

  // Reads the rule table and the owners' load, once. main() calls it
  // before serving; otherwise the first command does.
  absl::Status Recover();

  // The service's event log (stored results of earlier calls among them).
  const EventStore& events() const { return store_.events(); }

  // `ctx` carries actor and correlation; its occurred_at is the event time.
  absl::StatusOr<crm::v1::CaptureLeadResponse> CaptureLead(
      const crm::v1::CaptureLeadRequest& request, EventContext ctx);
  absl::StatusOr<crm::v1::Lead> GetLead(const crm::v1::GetLeadRequest& request) const;
  absl::StatusOr<crm::v1::ListLeadsResponse> ListLeads(
      const crm::v1::ListLeadsRequest& request) const;
  // The request checked (page token included) and turned into a query: a
  // caller whose slice of the filter is empty is still told of bad input.
  static absl::StatusOr<LeadQuery> ListLeadsQuery(const crm::v1::ListLeadsRequest& request);
  absl::StatusOr<crm::v1::GetLeadHistoryResponse> GetLeadHistory(
      const crm::v1::GetLeadHistoryRequest& request) const;

  absl::StatusOr<crm::v1::Lead> RecordLeadActivity(
      const crm::v1::RecordLeadActivityRequest& request, EventContext ctx);
  absl::StatusOr<crm::v1::Lead> QualifyLead(const crm::v1::QualifyLeadRequest& request,
                                            EventContext ctx);
  absl::StatusOr<crm::v1::Lead> DisqualifyLead(const crm::v1::DisqualifyLeadRequest& request,
                                               EventContext ctx);
  absl::StatusOr<crm::v1::Lead> NurtureLead(const crm::v1::NurtureLeadRequest& request,
                                            EventContext ctx);
  // `default_region`: the account's territory when the lead names no
  // region (the caller's territory).
  absl::StatusOr<crm::v1::ConvertLeadResponse> ConvertLead(
      const crm::v1::ConvertLeadRequest& request, EventContext ctx,
      const std::string& default_region = "");
  absl::StatusOr<crm::v1::Lead> AssignLead(const crm::v1::AssignLeadRequest& request,
                                           EventContext ctx);
  absl::StatusOr<crm::v1::MergeLeadsResponse> MergeLeads(const crm::v1::MergeLeadsRequest& request,
                                                         EventContext ctx);

  absl::StatusOr<crm::v1::AssignmentRule> CreateAssignmentRule(
      const crm::v1::CreateAssignmentRuleRequest& request, EventContext ctx);
  absl::StatusOr<crm::v1::ListAssignmentRulesResponse> ListAssignmentRules(
      const crm::v1::ListAssignmentRulesRequest& request);
  absl::StatusOr<crm::v1::ListAssignmentRulesResponse> ReorderAssignmentRules(
      const crm::v1::ReorderAssignmentRulesRequest& request, EventContext ctx);
  absl::StatusOr<crm::v1::AssignmentRule> SetAssignmentRuleEnabled(
      const crm::v1::SetAssignmentRuleEnabledRequest& request, bool enabled, EventContext ctx);

  // The lead the person's contacts find once a merge of another of their
  // leads retired the customer `lead` was captured under: the home of the
  // customer its conversion would open an account for. nullopt while the
  // lead's customer stands; empty when no contact of the lead finds one.
  absl::StatusOr<std::optional<std::string>> SurvivingHomeOf(const crm::v1::Lead& lead);

  // Shared with the importer.
  LeadStore& store() { return store_; }
  ContactRegistry& contacts() { return contacts_; }
  Assigner& assigner() { return assigner_; }

 private:
  // What a command on an existing lead produced, for its response.
  struct Outcome {
    crm::v1::Lead before;
    crm::v1::Lead after;
    std::vector<crm::v1::EventEnvelope> events;
  };
  using Respond = std::function<std::string(const Outcome&)>;

  // Loads the lead under its lock, decides, appends with the list writes
  // and the idempotency record; returns the serialized response (the first
  // one for a retried request).
  // `request` is fingerprinted into the idempotency key (CallerRequestKey).
  absl::StatusOr<std::string> Execute(const google::protobuf::Message& request,
                                      const std::string& lead_id, const std::string& request_key,
                                      const LeadCommand& command, EventContext ctx,
                                      const Respond& respond);
  absl::StatusOr<crm::v1::Lead> ExecuteForLead(const google::protobuf::Message& request,
                                               const std::string& lead_id,
                                               const std::string& request_key,
                                               const LeadCommand& command, EventContext ctx);
  // Appends a new rule table (configuration: no events) idempotently.
  absl::StatusOr<std::string> ChangeRules(
      const google::protobuf::Message& request, const std::string& request_key, EventContext ctx,
      const std::function<absl::StatusOr<std::pair<crm::v1::AssignmentRuleTable, std::string>>(
          const crm::v1::AssignmentRuleTable&)>& change);

  LeadStore& store_;
  ContactRegistry contacts_;
  Assigner assigner_;
  // Serializes commands on the same lead (load, decide, append).
  StripedMutex lead_locks_;
  std::mutex recover_mu_;
  bool recovered_ = false;
};

}  // namespace crm::leads
