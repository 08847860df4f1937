#include "services/analytics/api/analytics_grpc.h"

#include "libs/common/auth/auth_interceptor.h"
#include "libs/common/page_token.h"
#include "libs/common/pii/field_sealer.h"
#include "libs/common/serve_unary.h"
#include "libs/common/status_macros.h"
#include "services/analytics/domain/customer_access.h"

namespace crm::analytics {

absl::StatusOr<std::vector<google::protobuf::Any>> ExportedView(const ViewStore& views,
                                                                const pii::KeyVault& vault,
                                                                const std::function<bool()>& ready,
                                                                const std::string& customer_id) {
  if (ready && !ready()) {
    return absl::UnavailableError(
        "analytics is behind the topics (rebuilding its views, or after a burst); ask again when "
        "it has caught up");
  }
  // The person as the other services export it: the customer and those
  // merged into it, not a customer it was merged into.
  auto view = views.GetExportedView(customer_id);
  if (absl::IsNotFound(view.status())) return std::vector<google::protobuf::Any>{};
  if (!view.ok()) return view.status();
  pii::OpenFields(*view, vault);
  std::vector<google::protobuf::Any> out(1);
  out.front().PackFrom(*view);
  return out;
}
namespace {

// `read` of the request with its page token opened, its reply's token
// sealed for the request (libs/common/page_token.h).
template <typename Request, typename Read>
auto Paged(const Request& request, Read read) -> decltype(read(request)) {
  Request opened = request;
  CRM_ASSIGN_OR_RETURN(*opened.mutable_page(), OpenPage(request, request.page()));
  auto response = read(opened);
  if (response.ok()) {
    response->set_next_page_token(SealPageToken(request, response->next_page_token()));
  }
  return response;
}

// A read that scans many records, run off the callback thread, given the
// caller. The method table (libs/common/auth/policy.cc) decides who may call
// it; the funnel is also scoped (ScopeFunnel).
template <typename Request, typename Response, typename Read>
grpc::ServerUnaryReactor* ScanOffThread(grpc::CallbackServerContext* ctx,
                                        BlockingExecutor& executor, const Request* request,
                                        Response* response, Read read) {
  return RunAsCaller(ctx, executor,
                     [request, response, read](const auth::Principal& caller) -> absl::Status {
                       absl::StatusOr<Response> result = read(*request, caller);
                       if (!result.ok()) return result.status();
                       *response = std::move(*result);
                       return absl::OkStatus();
                     });
}

}  // namespace

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
  auto position =
      OpenPageToken(*request, request->timeline_page().page_token(), "timeline_page.page_token");
  if (!position.ok()) {
    reactor->Finish(ToGrpcStatus(position.status()));
    return reactor;
  }
  auto view = Customer360For(*caller,
                             views_.GetCustomer360(request->customer_id(),
                                                   request->timeline_page().page_size(), *position),
                             request->customer_id());
  if (view.ok()) {
    view->set_next_page_token(SealPageToken(*request, view->next_page_token()));
    *response = std::move(*view);
  }
  reactor->Finish(ToGrpcStatus(view.status()));
  return reactor;
}

grpc::ServerUnaryReactor* AnalyticsGrpc::GetFunnel(grpc::CallbackServerContext* ctx,
                                                   const crm::v1::GetFunnelRequest* request,
                                                   crm::v1::Funnel* response) {
  return ScanOffThread(
      ctx, executor_, request, response,
      [this](const auto& r, const auth::Principal& caller) -> absl::StatusOr<crm::v1::Funnel> {
        CRM_ASSIGN_OR_RETURN(auto scoped, ScopeFunnel(caller, r));
        return views_.GetFunnel(scoped);
      });
}

grpc::ServerUnaryReactor* AnalyticsGrpc::GetServiceKpis(
    grpc::CallbackServerContext* ctx, const crm::v1::GetServiceKpisRequest* request,
    crm::v1::ServiceKpis* response) {
  return ScanOffThread(
      ctx, executor_, request, response,
      [this](const auto& r, const auth::Principal&) { return views_.GetServiceKpis(r); });
}

grpc::ServerUnaryReactor* AnalyticsGrpc::ListSegment(grpc::CallbackServerContext* ctx,
                                                     const crm::v1::ListSegmentRequest* request,
                                                     crm::v1::ListSegmentResponse* response) {
  // May walk many customers to fill a page of a small segment.
  return ScanOffThread(
      ctx, executor_, request, response, [this](const auto& r, const auth::Principal&) {
        return Paged(r, [this](const auto& opened) { return views_.ListSegment(opened); });
      });
}

grpc::ServerUnaryReactor* AnalyticsGrpc::ListAuditEntries(
    grpc::CallbackServerContext* ctx, const crm::v1::ListAuditEntriesRequest* request,
    crm::v1::ListAuditEntriesResponse* response) {
  return ScanOffThread(
      ctx, executor_, request, response, [this](const auto& r, const auth::Principal&) {
        return Paged(r, [this](const auto& opened) { return views_.ListAuditEntries(opened); });
      });
}

}  // namespace crm::analytics
