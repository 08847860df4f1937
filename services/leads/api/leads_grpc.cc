#include "services/leads/api/leads_grpc.h"

#include "absl/time/clock.h"
#include "libs/common/request_context.h"

namespace crm::leads {

grpc::ServerUnaryReactor* LeadsGrpc::CaptureLead(grpc::CallbackServerContext* ctx,
                                                 const crm::v1::CaptureLeadRequest* request,
                                                 crm::v1::CaptureLeadResponse* response) {
  EventContext event_ctx = EventContextFrom(*ctx, "crm/leads");
  return RunUnary(ctx, executor_, [this, request, response, event_ctx]() -> absl::Status {
    auto result = commands_.CaptureLead(*request, event_ctx);
    if (!result.ok()) return result.status();
    *response = std::move(*result);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* LeadsGrpc::GetLead(grpc::CallbackServerContext* ctx,
                                             const crm::v1::GetLeadRequest* request,
                                             crm::v1::Lead* response) {
  return RunUnary(ctx, executor_, [this, request, response]() -> absl::Status {
    auto result = commands_.GetLead(*request);
    if (!result.ok()) return result.status();
    *response = std::move(*result);
    return absl::OkStatus();
  });
}

}  // namespace crm::leads
