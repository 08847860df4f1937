#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "crm/v1/leads.pb.h"

namespace crm::leads {

// Pure domain of a lead: validation, normalization, Decide and Apply.
// Nothing here does I/O; ids, matches and assignments are decided by the
// caller and passed in with the command.

// Every new lead waits here until a rule or a person assigns it.
inline constexpr char kDefaultQueue[] = "default";

// Validates every field and returns the request with contact data
// normalized. The error names the first offending field.
absl::StatusOr<crm::v1::CaptureLeadRequest> NormalizeCaptureRequest(
    const crm::v1::CaptureLeadRequest& request);
// The same, in place (bulk import avoids the copy); on error `request` is
// partly normalized.
absl::Status NormalizeCaptureRequestInPlace(crm::v1::CaptureLeadRequest& request);

// An import row as the capture request it stands for (request_id is the
// row's key); the caller normalizes it like any capture.
crm::v1::CaptureLeadRequest RowAsCaptureRequest(crm::v1::ImportLeadRow row,
                                                crm::v1::LeadChannel default_channel);

// Free-text checks shared by the commands: at most `max` bytes, no control
// characters (but line breaks and tabs when `multiline`: notes, reasons, an
// attribute from a spreadsheet cell); `required` rejects empty or blank text.
inline constexpr bool kMultiline = true;
absl::Status CheckText(absl::string_view field, absl::string_view value, size_t max,
                       bool required = false, bool multiline = false);
// A list of names (regions, product interests): trims every entry and
// drops repeats ignoring case, keeping the first spelling; an entry empty
// once trimmed is refused. Rules and leads clean their lists alike, so a
// rule for "EMEA" matches a lead from " emea".
absl::Status NormalizeList(absl::string_view field,
                           google::protobuf::RepeatedPtrField<std::string>* list,
                           size_t max_entries, size_t max_length);
// A lead or rule id as the API accepts it.
absl::Status CheckId(absl::string_view field, absl::string_view id);

// Who works a lead: an owner (possibly picked from a team) or a queue.
struct Assignment {
  std::string owner_id;
  std::string team_id;
  std::string queue;
  // The rule that decided, empty for a manual assignment.
  std::string rule_id;

  bool empty() const { return owner_id.empty() && queue.empty(); }
};

// ---- Commands ----

// Any version: commands from systems that do not track versions.
inline constexpr int64_t kAnyVersion = 0;
// ABORTED when the lead is no longer at the version the caller decided on.
absl::Status CheckVersion(const crm::v1::Lead& lead, int64_t expected_version);

struct CaptureLead {
  crm::v1::CaptureLeadRequest request;  // normalized
  std::string lead_id;
  std::string customer_id;
  // The person's earlier lead when the contact matched one.
  std::string duplicate_of_lead_id;
  // From the rule table; empty leaves the lead in the default queue.
  Assignment assignment;
  std::string import_id;
  int64_t import_row = 0;
};

struct RecordActivity {
  int64_t expected_version = kAnyVersion;
  crm::v1::LeadActivityType type = crm::v1::LEAD_ACTIVITY_TYPE_UNSPECIFIED;
  absl::Time activity_at;
  std::string detail;
};

struct QualifyLead {
  int64_t expected_version = kAnyVersion;
  std::optional<crm::v1::Bant> bant;
  std::string note;
};

struct DisqualifyLead {
  int64_t expected_version = kAnyVersion;
  std::string reason;
};

struct NurtureLead {
  int64_t expected_version = kAnyVersion;
  std::string reason;
};

struct ConvertLead {
  int64_t expected_version = kAnyVersion;
  std::string owner_id;
  std::string opportunity_name;
  std::optional<crm::v1::Money> estimated_amount;
  // The person's customer now, when a merge of another of their leads
  // retired the one this lead was captured under; empty: the lead's own.
  std::string customer_id;
  // The account's territory when the lead names no region: the converting
  // rep's or manager's. An account with none is out of every manager's
  // reach in sales, its contracts' approval included.
  std::string default_region;
};

struct AssignLead {
  int64_t expected_version = kAnyVersion;
  Assignment assignment;
  std::string reason;
};

// The survivor's side of a merge: it takes `merged` (that lead's state).
struct AbsorbLead {
  int64_t expected_version = kAnyVersion;
  crm::v1::Lead merged;
  // The customers the two leads stand for now, when an earlier merge
  // retired a lead's own; empty: the leads' own.
  std::string survivor_customer_id;
  std::string merged_customer_id;
};

// The merged lead's side: it is retired in favour of `survivor`.
struct MergeLeadInto {
  int64_t expected_version = kAnyVersion;
  crm::v1::Lead survivor;
  std::string survivor_customer_id;  // as in AbsorbLead
};

using LeadCommand = std::variant<CaptureLead, RecordActivity, QualifyLead, DisqualifyLead,
                                 NurtureLead, ConvertLead, AssignLead, AbsorbLead, MergeLeadInto>;

// Events of a lead stream.
using LeadEvent =
    std::variant<crm::v1::LeadCaptured, crm::v1::LeadAssigned, crm::v1::OwnerNotified,
                 crm::v1::LeadActivityRecorded, crm::v1::LeadScoreChanged, crm::v1::LeadQualified,
                 crm::v1::LeadDisqualified, crm::v1::LeadNurtureStarted, crm::v1::LeadConverted,
                 crm::v1::LeadsMerged, crm::v1::LeadMergedInto>;

// Requests as commands: INVALID_ARGUMENT naming the field, request_id and
// lead_id checked too. `now` stands in for an activity time not given.
absl::StatusOr<RecordActivity> ParseRecordActivity(const crm::v1::RecordLeadActivityRequest& r,
                                                   absl::Time now);
absl::StatusOr<QualifyLead> ParseQualify(const crm::v1::QualifyLeadRequest& r);
absl::StatusOr<DisqualifyLead> ParseDisqualify(const crm::v1::DisqualifyLeadRequest& r);
absl::StatusOr<NurtureLead> ParseNurture(const crm::v1::NurtureLeadRequest& r);
absl::StatusOr<ConvertLead> ParseConvert(const crm::v1::ConvertLeadRequest& r);
absl::StatusOr<AssignLead> ParseAssign(const crm::v1::AssignLeadRequest& r);
// Checks each field of the merge request on its own (request_id, both
// ids, versions): what is said about a request before either lead is read.
absl::Status ValidateMergeFields(const crm::v1::MergeLeadsRequest& r);
// Checks the merge request itself: its fields, not the same lead twice.
absl::Status ValidateMerge(const crm::v1::MergeLeadsRequest& r);

absl::StatusOr<std::vector<LeadEvent>> Decide(const std::optional<crm::v1::Lead>& state,
                                              const CaptureLead& command);
absl::StatusOr<std::vector<LeadEvent>> Decide(const std::optional<crm::v1::Lead>& state,
                                              const LeadCommand& command);

// Folds one event into the state; `occurred_at` is the event's time.
void Apply(crm::v1::Lead& state, const LeadEvent& event, absl::Time occurred_at);

// Open leads count towards an owner's load.
bool IsOpen(crm::v1::LeadStatus status);

// Points an activity adds to engagement.
int32_t ActivityPoints(crm::v1::LeadActivityType type);

// The stream of a lead: "lead-<id>".
std::string LeadStream(absl::string_view lead_id);

// Decodes a stored event payload into the LeadEvent it holds; nullopt for
// a type this stream does not have.
std::optional<LeadEvent> UnpackLeadEvent(const crm::v1::EventEnvelope& envelope);

}  // namespace crm::leads
