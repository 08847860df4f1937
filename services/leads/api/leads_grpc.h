#pragma once

#include "crm/v1/leads.grpc.pb.h"
#include "libs/common/blocking_executor.h"
#include "services/leads/api/lead_commands.h"

namespace crm::leads {

// gRPC edge of the leads service: proto in, status out; the work runs on
// the blocking executor because captures wait for a synced append.
class LeadsGrpc final : public crm::v1::LeadsService::CallbackService {
 public:
  LeadsGrpc(LeadCommands& commands, BlockingExecutor& executor)
      : commands_(commands), executor_(executor) {}

  grpc::ServerUnaryReactor* CaptureLead(grpc::CallbackServerContext* ctx,
                                        const crm::v1::CaptureLeadRequest* request,
                                        crm::v1::CaptureLeadResponse* response) override;
  grpc::ServerUnaryReactor* GetLead(grpc::CallbackServerContext* ctx,
                                    const crm::v1::GetLeadRequest* request,
                                    crm::v1::Lead* response) override;

 private:
  LeadCommands& commands_;
  BlockingExecutor& executor_;
};

}  // namespace crm::leads
