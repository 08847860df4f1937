#include "services/leads/api/lead_commands.h"

#include "absl/strings/str_cat.h"
#include "libs/common/ids.h"
#include "libs/common/status_macros.h"
#include "services/leads/domain/lead.h"

namespace crm::leads {

absl::StatusOr<crm::v1::CaptureLeadResponse> LeadCommands::CaptureLead(
    const crm::v1::CaptureLeadRequest& raw, EventContext ctx) {
  CRM_ASSIGN_OR_RETURN(auto request, NormalizeCaptureRequest(raw));
  const std::string request_key = absl::StrCat("CaptureLead/", request.request_id());
  crm::v1::CaptureLeadResponse response;

  // A retry is answered from the first result without taking locks.
  CRM_ASSIGN_OR_RETURN(auto earlier, store_.events().FindResponse(request_key));
  if (earlier.has_value()) {
    if (!response.ParseFromString(*earlier)) return absl::DataLossError("corrupt stored response");
    return response;
  }

  auto guard = contact_locks_.Lock({request.contact().email(), request.contact().phone()});
  CRM_ASSIGN_OR_RETURN(auto match, store_.FindContact(request.contact()));

  leads::CaptureLead command;
  command.lead_id = NewId("lead");
  command.customer_id = match ? match->customer_id : NewId("cus");
  command.duplicate_of_lead_id = match ? match->lead_id : "";
  command.request = std::move(request);
  CRM_ASSIGN_OR_RETURN(auto events, Decide(std::nullopt, command));

  if (ctx.correlation_id.empty()) ctx.correlation_id = command.request.request_id();
  if (ctx.causation_id.empty()) ctx.causation_id = command.request.request_id();
  crm::v1::Lead state;
  AppendRequest append;
  append.stream = LeadStream(command.lead_id);
  append.expected_version = EventStore::kNoStream;
  for (const auto& event : events) {
    Apply(state, event, ctx.occurred_at);
    std::visit([&](const auto& payload) {
      append.events.push_back(MakeEnvelope(payload, command.customer_id, ctx));
    }, event);
  }
  CRM_ASSIGN_OR_RETURN(append.projection_writes, store_.ContactIndexWrites(state));

  response.set_lead_id(command.lead_id);
  response.set_customer_id(command.customer_id);
  response.set_duplicate(match.has_value());
  response.set_duplicate_of_lead_id(command.duplicate_of_lead_id);
  append.state = state.SerializeAsString();
  append.request_key = request_key;
  append.response = response.SerializeAsString();

  CRM_ASSIGN_OR_RETURN(auto result, store_.events().Append(std::move(append)));
  if (result.replayed && !response.ParseFromString(result.response)) {
    return absl::DataLossError("corrupt stored response");
  }
  return response;
}

absl::StatusOr<crm::v1::Lead> LeadCommands::GetLead(const crm::v1::GetLeadRequest& request) const {
  if (request.lead_id().empty()) return absl::InvalidArgumentError("lead_id: required");
  if (request.lead_id().size() > 64) return absl::InvalidArgumentError("lead_id: too long");
  return store_.GetLead(request.lead_id());
}

}  // namespace crm::leads
