#pragma once

#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "crm/v1/analytics.grpc.pb.h"
#include "google/protobuf/any.pb.h"
#include "libs/common/blocking_executor.h"
#include "libs/common/pii/key_vault.h"
#include "services/analytics/store/view_store.h"

namespace crm::analytics {

// What analytics adds to a GDPR export (AdminService's `derived`): the
// customer's 360 view, merged customers joined, personal data opened and
// the timeline left out (its events are in the other services' exports);
// nothing for a customer never seen. UNAVAILABLE until `ready` (views being
// rebuilt would export a partial picture).
absl::StatusOr<std::vector<google::protobuf::Any>> ExportedView(const ViewStore& views,
                                                                const pii::KeyVault& vault,
                                                                const std::function<bool()>& ready,
                                                                const std::string& customer_id);

// gRPC edge of analytics: reads of the projections.
class AnalyticsGrpc final : public crm::v1::AnalyticsService::CallbackService {
 public:
  AnalyticsGrpc(const ViewStore& views, BlockingExecutor& executor)
      : views_(views), executor_(executor) {}

  grpc::ServerUnaryReactor* GetCustomer360(grpc::CallbackServerContext* ctx,
                                           const crm::v1::GetCustomer360Request* request,
                                           crm::v1::Customer360* response) override;
  grpc::ServerUnaryReactor* GetFunnel(grpc::CallbackServerContext* ctx,
                                      const crm::v1::GetFunnelRequest* request,
                                      crm::v1::Funnel* response) override;
  grpc::ServerUnaryReactor* GetServiceKpis(grpc::CallbackServerContext* ctx,
                                           const crm::v1::GetServiceKpisRequest* request,
                                           crm::v1::ServiceKpis* response) override;
  grpc::ServerUnaryReactor* ListSegment(grpc::CallbackServerContext* ctx,
                                        const crm::v1::ListSegmentRequest* request,
                                        crm::v1::ListSegmentResponse* response) override;
  grpc::ServerUnaryReactor* ListAuditEntries(grpc::CallbackServerContext* ctx,
                                             const crm::v1::ListAuditEntriesRequest* request,
                                             crm::v1::ListAuditEntriesResponse* response) override;

 private:
  const ViewStore& views_;
  BlockingExecutor& executor_;
};

}  // namespace crm::analytics
