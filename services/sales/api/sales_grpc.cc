#include "services/sales/api/sales_grpc.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_split.h"
#include "libs/common/request_context.h"

namespace crm::sales {
namespace {

// Runs `fn(request)` on the executor and finishes the call with its result.
template <typename Request, typename Response, typename Fn>
grpc::ServerUnaryReactor* Serve(grpc::CallbackServerContext* ctx, BlockingExecutor& executor,
                                const Request* request, Response* response, Fn fn) {
  return RunUnary(ctx, executor, [request, response, fn = std::move(fn)]() -> absl::Status {
    auto result = fn(*request);
    if (!result.ok()) return result.status();
    *response = *std::move(result);
    return absl::OkStatus();
  });
}

}  // namespace

std::vector<std::string> RolesFrom(const grpc::ServerContextBase& ctx) {
  std::vector<std::string> roles;
  const auto& md = ctx.client_metadata();
  for (auto [it, end] = md.equal_range("x-crm-roles"); it != end; ++it) {
    const absl::string_view value(it->second.data(), it->second.size());
    for (absl::string_view role : absl::StrSplit(value, ',', absl::SkipWhitespace())) {
      role = absl::StripAsciiWhitespace(role);
      if (!role.empty()) roles.emplace_back(role);
    }
  }
  return roles;
}

grpc::ServerUnaryReactor* SalesGrpc::OpenCustomer(grpc::CallbackServerContext* ctx,
                                                  const crm::v1::OpenCustomerRequest* request,
                                                  crm::v1::Customer* response) {
  EventContext event_ctx = EventContextFrom(*ctx, kSalesSource);
  return Serve(ctx, executor_, request, response,
               [this, event_ctx](const crm::v1::OpenCustomerRequest& r) {
                 return commands_.OpenCustomer(r, event_ctx);
               });
}

grpc::ServerUnaryReactor* SalesGrpc::GetCustomer(grpc::CallbackServerContext* ctx,
                                                 const crm::v1::GetCustomerRequest* request,
                                                 crm::v1::Customer* response) {
  return Serve(ctx, executor_, request, response,
               [this](const crm::v1::GetCustomerRequest& r) { return commands_.GetCustomer(r); });
}

grpc::ServerUnaryReactor* SalesGrpc::ListCustomers(grpc::CallbackServerContext* ctx,
                                                   const crm::v1::ListCustomersRequest* request,
                                                   crm::v1::ListCustomersResponse* response) {
  return Serve(ctx, executor_, request, response, [this](const crm::v1::ListCustomersRequest& r) {
    return commands_.ListCustomers(r);
  });
}

grpc::ServerUnaryReactor* SalesGrpc::OpenOpportunity(grpc::CallbackServerContext* ctx,
                                                     const crm::v1::OpenOpportunityRequest* request,
                                                     crm::v1::Opportunity* response) {
  EventContext event_ctx = EventContextFrom(*ctx, kSalesSource);
  return Serve(ctx, executor_, request, response,
               [this, event_ctx](const crm::v1::OpenOpportunityRequest& r) {
                 return commands_.OpenOpportunity(r, event_ctx);
               });
}

grpc::ServerUnaryReactor* SalesGrpc::GetOpportunity(grpc::CallbackServerContext* ctx,
                                                    const crm::v1::GetOpportunityRequest* request,
                                                    crm::v1::Opportunity* response) {
  return Serve(ctx, executor_, request, response, [this](const crm::v1::GetOpportunityRequest& r) {
    return commands_.GetOpportunity(r);
  });
}

grpc::ServerUnaryReactor* SalesGrpc::ListOpportunities(
    grpc::CallbackServerContext* ctx, const crm::v1::ListOpportunitiesRequest* request,
    crm::v1::ListOpportunitiesResponse* response) {
  return Serve(ctx, executor_, request, response,
               [this](const crm::v1::ListOpportunitiesRequest& r) {
                 return commands_.ListOpportunities(r);
               });
}

grpc::ServerUnaryReactor* SalesGrpc::ChangeOpportunityStage(
    grpc::CallbackServerContext* ctx, const crm::v1::ChangeOpportunityStageRequest* request,
    crm::v1::Opportunity* response) {
  EventContext event_ctx = EventContextFrom(*ctx, kSalesSource);
  return Serve(ctx, executor_, request, response,
               [this, event_ctx](const crm::v1::ChangeOpportunityStageRequest& r) {
                 return commands_.ChangeOpportunityStage(r, event_ctx);
               });
}

grpc::ServerUnaryReactor* SalesGrpc::ReviseOpportunity(
    grpc::CallbackServerContext* ctx, const crm::v1::ReviseOpportunityRequest* request,
    crm::v1::Opportunity* response) {
  EventContext event_ctx = EventContextFrom(*ctx, kSalesSource);
  return Serve(ctx, executor_, request, response,
               [this, event_ctx](const crm::v1::ReviseOpportunityRequest& r) {
                 return commands_.ReviseOpportunity(r, event_ctx);
               });
}

grpc::ServerUnaryReactor* SalesGrpc::ListPipelines(grpc::CallbackServerContext* ctx,
                                                   const crm::v1::ListPipelinesRequest* request,
                                                   crm::v1::ListPipelinesResponse* response) {
  return Serve(ctx, executor_, request, response, [this](const crm::v1::ListPipelinesRequest&) {
    return absl::StatusOr<crm::v1::ListPipelinesResponse>(commands_.ListPipelines());
  });
}

grpc::ServerUnaryReactor* SalesGrpc::LogActivity(grpc::CallbackServerContext* ctx,
                                                 const crm::v1::LogActivityRequest* request,
                                                 crm::v1::Activity* response) {
  EventContext event_ctx = EventContextFrom(*ctx, kSalesSource);
  return Serve(ctx, executor_, request, response,
               [this, event_ctx](const crm::v1::LogActivityRequest& r) {
                 return commands_.LogActivity(r, event_ctx);
               });
}

grpc::ServerUnaryReactor* SalesGrpc::ListActivities(grpc::CallbackServerContext* ctx,
                                                    const crm::v1::ListActivitiesRequest* request,
                                                    crm::v1::ListActivitiesResponse* response) {
  return Serve(ctx, executor_, request, response, [this](const crm::v1::ListActivitiesRequest& r) {
    return commands_.ListActivities(r);
  });
}

grpc::ServerUnaryReactor* SalesGrpc::CreateTask(grpc::CallbackServerContext* ctx,
                                                const crm::v1::CreateTaskRequest* request,
                                                crm::v1::Task* response) {
  EventContext event_ctx = EventContextFrom(*ctx, kSalesSource);
  return Serve(ctx, executor_, request, response,
               [this, event_ctx](const crm::v1::CreateTaskRequest& r) {
                 return commands_.CreateTask(r, event_ctx);
               });
}

grpc::ServerUnaryReactor* SalesGrpc::CompleteTask(grpc::CallbackServerContext* ctx,
                                                  const crm::v1::CompleteTaskRequest* request,
                                                  crm::v1::Task* response) {
  EventContext event_ctx = EventContextFrom(*ctx, kSalesSource);
  return Serve(ctx, executor_, request, response,
               [this, event_ctx](const crm::v1::CompleteTaskRequest& r) {
                 return commands_.CompleteTask(r, event_ctx);
               });
}

grpc::ServerUnaryReactor* SalesGrpc::ListTasks(grpc::CallbackServerContext* ctx,
                                               const crm::v1::ListTasksRequest* request,
                                               crm::v1::ListTasksResponse* response) {
  return Serve(ctx, executor_, request, response,
               [this](const crm::v1::ListTasksRequest& r) { return commands_.ListTasks(r); });
}

grpc::ServerUnaryReactor* SalesGrpc::DraftQuote(grpc::CallbackServerContext* ctx,
                                                const crm::v1::DraftQuoteRequest* request,
                                                crm::v1::Quote* response) {
  EventContext event_ctx = EventContextFrom(*ctx, kSalesSource);
  return Serve(ctx, executor_, request, response,
               [this, event_ctx](const crm::v1::DraftQuoteRequest& r) {
                 return commands_.DraftQuote(r, event_ctx);
               });
}

grpc::ServerUnaryReactor* SalesGrpc::GetQuote(grpc::CallbackServerContext* ctx,
                                              const crm::v1::GetQuoteRequest* request,
                                              crm::v1::Quote* response) {
  return Serve(ctx, executor_, request, response,
               [this](const crm::v1::GetQuoteRequest& r) { return commands_.GetQuote(r); });
}

grpc::ServerUnaryReactor* SalesGrpc::AcceptQuote(grpc::CallbackServerContext* ctx,
                                                 const crm::v1::AcceptQuoteRequest* request,
                                                 crm::v1::Quote* response) {
  EventContext event_ctx = EventContextFrom(*ctx, kSalesSource);
  return Serve(ctx, executor_, request, response,
               [this, event_ctx](const crm::v1::AcceptQuoteRequest& r) {
                 return commands_.AcceptQuote(r, event_ctx);
               });
}

grpc::ServerUnaryReactor* SalesGrpc::DeclineQuote(grpc::CallbackServerContext* ctx,
                                                  const crm::v1::DeclineQuoteRequest* request,
                                                  crm::v1::Quote* response) {
  EventContext event_ctx = EventContextFrom(*ctx, kSalesSource);
  return Serve(ctx, executor_, request, response,
               [this, event_ctx](const crm::v1::DeclineQuoteRequest& r) {
                 return commands_.DeclineQuote(r, event_ctx);
               });
}

grpc::ServerUnaryReactor* SalesGrpc::PlaceOrder(grpc::CallbackServerContext* ctx,
                                                const crm::v1::PlaceOrderRequest* request,
                                                crm::v1::Order* response) {
  EventContext event_ctx = EventContextFrom(*ctx, kSalesSource);
  return Serve(ctx, executor_, request, response,
               [this, event_ctx](const crm::v1::PlaceOrderRequest& r) {
                 return commands_.PlaceOrder(r, event_ctx);
               });
}

grpc::ServerUnaryReactor* SalesGrpc::GetOrder(grpc::CallbackServerContext* ctx,
                                              const crm::v1::GetOrderRequest* request,
                                              crm::v1::Order* response) {
  return Serve(ctx, executor_, request, response,
               [this](const crm::v1::GetOrderRequest& r) { return commands_.GetOrder(r); });
}

grpc::ServerUnaryReactor* SalesGrpc::DraftContract(grpc::CallbackServerContext* ctx,
                                                   const crm::v1::DraftContractRequest* request,
                                                   crm::v1::Contract* response) {
  EventContext event_ctx = EventContextFrom(*ctx, kSalesSource);
  return Serve(ctx, executor_, request, response,
               [this, event_ctx](const crm::v1::DraftContractRequest& r) {
                 return commands_.DraftContract(r, event_ctx);
               });
}

grpc::ServerUnaryReactor* SalesGrpc::GetContract(grpc::CallbackServerContext* ctx,
                                                 const crm::v1::GetContractRequest* request,
                                                 crm::v1::Contract* response) {
  return Serve(ctx, executor_, request, response,
               [this](const crm::v1::GetContractRequest& r) { return commands_.GetContract(r); });
}

grpc::ServerUnaryReactor* SalesGrpc::SubmitContract(grpc::CallbackServerContext* ctx,
                                                    const crm::v1::SubmitContractRequest* request,
                                                    crm::v1::Contract* response) {
  EventContext event_ctx = EventContextFrom(*ctx, kSalesSource);
  return Serve(ctx, executor_, request, response,
               [this, event_ctx](const crm::v1::SubmitContractRequest& r) {
                 return commands_.SubmitContract(r, event_ctx);
               });
}

grpc::ServerUnaryReactor* SalesGrpc::ApproveContract(grpc::CallbackServerContext* ctx,
                                                     const crm::v1::ApproveContractRequest* request,
                                                     crm::v1::Contract* response) {
  EventContext event_ctx = EventContextFrom(*ctx, kSalesSource);
  return Serve(
      ctx, executor_, request, response,
      [this, event_ctx, roles = RolesFrom(*ctx)](const crm::v1::ApproveContractRequest& r) {
        return commands_.ApproveContract(r, event_ctx, roles);
      });
}

grpc::ServerUnaryReactor* SalesGrpc::RejectContract(grpc::CallbackServerContext* ctx,
                                                    const crm::v1::RejectContractRequest* request,
                                                    crm::v1::Contract* response) {
  EventContext event_ctx = EventContextFrom(*ctx, kSalesSource);
  return Serve(ctx, executor_, request, response,
               [this, event_ctx, roles = RolesFrom(*ctx)](const crm::v1::RejectContractRequest& r) {
                 return commands_.RejectContract(r, event_ctx, roles);
               });
}

grpc::ServerUnaryReactor* SalesGrpc::GetForecast(grpc::CallbackServerContext* ctx,
                                                 const crm::v1::GetForecastRequest* request,
                                                 crm::v1::GetForecastResponse* response) {
  return Serve(ctx, executor_, request, response,
               [this](const crm::v1::GetForecastRequest& r) { return commands_.GetForecast(r); });
}

}  // namespace crm::sales
