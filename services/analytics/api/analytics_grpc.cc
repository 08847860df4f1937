#include "services/analytics/api/analytics_grpc.h"

#include "libs/common/auth/auth_interceptor.h"
#include "services/analytics/domain/customer_access.h"

namespace crm::analytics {

grpc::ServerUnaryReactor* AnalyticsGrpc::GetCustomer360(
    grpc::CallbackServerContext* ctx, const crm::v1::GetCustomer360Request* request,
    crm::v1::Customer360* response) {
  // A point read and one short seek: fast enough to answer on the callback
  // thread without the executor hop.
  auto* reactor = ctx->DefaultReactor();
  auto caller = auth::CallerFrom(*ctx);
  if (!caller.ok()) {
    reactor->Finish(ToGrpcStatus(caller.status()));
    return reactor;
  }
  auto view = Customer360For(
      *caller,
      views_.GetCustomer360(request->customer_id(), request->timeline_page().page_size(),
                            request->timeline_page().page_token()),
      request->customer_id());
  if (view.ok()) *response = std::move(*view);
  reactor->Finish(ToGrpcStatus(view.status()));
  return reactor;
}

grpc::ServerUnaryReactor* AnalyticsGrpc::GetFunnel(grpc::CallbackServerContext* ctx,
                                                   const crm::v1::GetFunnelRequest* request,
                                                   crm::v1::Funnel* response) {
  // Scans every funnel record: off the callback thread.
  return RunUnary(ctx, executor_,
                  [this, request, response, caller = auth::CallerFrom(*ctx)]() -> absl::Status {
                    // The method table (libs/common/auth/policy.cc) is the whole check: aggregates.
                    if (!caller.ok()) return caller.status();
                    auto funnel = views_.GetFunnel(*request);
                    if (!funnel.ok()) return funnel.status();
                    *response = std::move(*funnel);
                    return absl::OkStatus();
                  });
}

grpc::ServerUnaryReactor* AnalyticsGrpc::GetServiceKpis(
    grpc::CallbackServerContext* ctx, const crm::v1::GetServiceKpisRequest* request,
    crm::v1::ServiceKpis* response) {
  // Scans every ticket record: off the callback thread.
  return RunUnary(ctx, executor_,
                  [this, request, response, caller = auth::CallerFrom(*ctx)]() -> absl::Status {
                    // The method table (libs/common/auth/policy.cc) is the whole check: aggregates.
                    if (!caller.ok()) return caller.status();
                    auto kpis = views_.GetServiceKpis(*request);
                    if (!kpis.ok()) return kpis.status();
                    *response = std::move(*kpis);
                    return absl::OkStatus();
                  });
}

grpc::ServerUnaryReactor* AnalyticsGrpc::ListSegment(grpc::CallbackServerContext* ctx,
                                                     const crm::v1::ListSegmentRequest* request,
                                                     crm::v1::ListSegmentResponse* response) {
  // May walk many customers to fill a page of a small segment.
  return RunUnary(ctx, executor_,
                  [this, request, response, caller = auth::CallerFrom(*ctx)]() -> absl::Status {
                    // The method table (libs/common/auth/policy.cc) is the whole check: aggregates.
                    if (!caller.ok()) return caller.status();
                    auto page = views_.ListSegment(*request);
                    if (!page.ok()) return page.status();
                    *response = std::move(*page);
                    return absl::OkStatus();
                  });
}

}  // namespace crm::analytics
