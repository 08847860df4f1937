#pragma once

#include <string>
#include <vector>

#include "crm/v1/sales.grpc.pb.h"
#include "libs/common/auth/principal.h"
#include "libs/common/blocking_executor.h"
#include "services/sales/api/sales_commands.h"

namespace crm::sales {

// An account the caller may open, defaults filled in: a rep's own (owner_id
// defaults to the caller), a manager's in their territory (territory
// defaults to theirs) or owned by them. PERMISSION_DENIED names the field
// out of reach.
absl::StatusOr<crm::v1::OpenCustomerRequest> ScopeOpenCustomer(
    const auth::Principal& caller, crm::v1::OpenCustomerRequest request);

// gRPC edge of the sales service: proto in, status out; the work runs on
// the blocking executor because commands wait for a synced append. Every
// handler runs as the caller the auth interceptor verified and checks that
// the records it touches are the caller's (record_access.h).
class SalesGrpc final : public crm::v1::SalesService::CallbackService {
 public:
  SalesGrpc(SalesCommands& commands, BlockingExecutor& executor)
      : commands_(commands), executor_(executor) {}

  grpc::ServerUnaryReactor* OpenCustomer(grpc::CallbackServerContext* ctx,
                                         const crm::v1::OpenCustomerRequest* request,
                                         crm::v1::Customer* response) override;
  grpc::ServerUnaryReactor* GetCustomer(grpc::CallbackServerContext* ctx,
                                        const crm::v1::GetCustomerRequest* request,
                                        crm::v1::Customer* response) override;
  grpc::ServerUnaryReactor* ListCustomers(grpc::CallbackServerContext* ctx,
                                          const crm::v1::ListCustomersRequest* request,
                                          crm::v1::ListCustomersResponse* response) override;
  grpc::ServerUnaryReactor* OpenOpportunity(grpc::CallbackServerContext* ctx,
                                            const crm::v1::OpenOpportunityRequest* request,
                                            crm::v1::Opportunity* response) override;
  grpc::ServerUnaryReactor* GetOpportunity(grpc::CallbackServerContext* ctx,
                                           const crm::v1::GetOpportunityRequest* request,
                                           crm::v1::Opportunity* response) override;
  grpc::ServerUnaryReactor* ListOpportunities(
      grpc::CallbackServerContext* ctx, const crm::v1::ListOpportunitiesRequest* request,
      crm::v1::ListOpportunitiesResponse* response) override;
  grpc::ServerUnaryReactor* ChangeOpportunityStage(
      grpc::CallbackServerContext* ctx, const crm::v1::ChangeOpportunityStageRequest* request,
      crm::v1::Opportunity* response) override;
  grpc::ServerUnaryReactor* ReviseOpportunity(grpc::CallbackServerContext* ctx,
                                              const crm::v1::ReviseOpportunityRequest* request,
                                              crm::v1::Opportunity* response) override;
  grpc::ServerUnaryReactor* ListPipelines(grpc::CallbackServerContext* ctx,
                                          const crm::v1::ListPipelinesRequest* request,
                                          crm::v1::ListPipelinesResponse* response) override;
  grpc::ServerUnaryReactor* LogActivity(grpc::CallbackServerContext* ctx,
                                        const crm::v1::LogActivityRequest* request,
                                        crm::v1::Activity* response) override;
  grpc::ServerUnaryReactor* ListActivities(grpc::CallbackServerContext* ctx,
                                           const crm::v1::ListActivitiesRequest* request,
                                           crm::v1::ListActivitiesResponse* response) override;
  grpc::ServerUnaryReactor* CreateTask(grpc::CallbackServerContext* ctx,
                                       const crm::v1::CreateTaskRequest* request,
                                       crm::v1::Task* response) override;
  grpc::ServerUnaryReactor* CompleteTask(grpc::CallbackServerContext* ctx,
                                         const crm::v1::CompleteTaskRequest* request,
                                         crm::v1::Task* response) override;
  grpc::ServerUnaryReactor* ListTasks(grpc::CallbackServerContext* ctx,
                                      const crm::v1::ListTasksRequest* request,
                                      crm::v1::ListTasksResponse* response) override;
  grpc::ServerUnaryReactor* DraftQuote(grpc::CallbackServerContext* ctx,
                                       const crm::v1::DraftQuoteRequest* request,
                                       crm::v1::Quote* response) override;
  grpc::ServerUnaryReactor* GetQuote(grpc::CallbackServerContext* ctx,
                                     const crm::v1::GetQuoteRequest* request,
                                     crm::v1::Quote* response) override;
  grpc::ServerUnaryReactor* AcceptQuote(grpc::CallbackServerContext* ctx,
                                        const crm::v1::AcceptQuoteRequest* request,
                                        crm::v1::Quote* response) override;
  grpc::ServerUnaryReactor* DeclineQuote(grpc::CallbackServerContext* ctx,
                                         const crm::v1::DeclineQuoteRequest* request,
                                         crm::v1::Quote* response) override;
  grpc::ServerUnaryReactor* PlaceOrder(grpc::CallbackServerContext* ctx,
                                       const crm::v1::PlaceOrderRequest* request,
                                       crm::v1::Order* response) override;
  grpc::ServerUnaryReactor* GetOrder(grpc::CallbackServerContext* ctx,
                                     const crm::v1::GetOrderRequest* request,
                                     crm::v1::Order* response) override;
  grpc::ServerUnaryReactor* DraftContract(grpc::CallbackServerContext* ctx,
                                          const crm::v1::DraftContractRequest* request,
                                          crm::v1::Contract* response) override;
  grpc::ServerUnaryReactor* GetContract(grpc::CallbackServerContext* ctx,
                                        const crm::v1::GetContractRequest* request,
                                        crm::v1::Contract* response) override;
  grpc::ServerUnaryReactor* SubmitContract(grpc::CallbackServerContext* ctx,
                                           const crm::v1::SubmitContractRequest* request,
                                           crm::v1::Contract* response) override;
  grpc::ServerUnaryReactor* ApproveContract(grpc::CallbackServerContext* ctx,
                                            const crm::v1::ApproveContractRequest* request,
                                            crm::v1::Contract* response) override;
  grpc::ServerUnaryReactor* RejectContract(grpc::CallbackServerContext* ctx,
                                           const crm::v1::RejectContractRequest* request,
                                           crm::v1::Contract* response) override;
  grpc::ServerUnaryReactor* GetForecast(grpc::CallbackServerContext* ctx,
                                        const crm::v1::GetForecastRequest* request,
                                        crm::v1::GetForecastResponse* response) override;

 private:
  // OK when the caller may work on the record; otherwise the same
  // PERMISSION_DENIED whether it exists or not.
  absl::Status CheckCustomer(const auth::Principal& caller, const std::string& customer_id,
                             absl::string_view field = "customer_id") const;
  absl::Status CheckOpportunity(const auth::Principal& caller, const std::string& opportunity_id,
                                absl::string_view field = "opportunity_id") const;
  // The opportunity when one is named, else the customer.
  absl::Status CheckTarget(const auth::Principal& caller, const std::string& customer_id,
                           const std::string& opportunity_id) const;
  absl::Status CheckQuote(const auth::Principal& caller, const std::string& quote_id) const;
  absl::Status CheckOrder(const auth::Principal& caller, const std::string& order_id) const;
  absl::Status CheckContract(const auth::Principal& caller, const std::string& contract_id) const;
  // The task's assignee, or whoever may access its account or deal.
  absl::Status CheckTask(const auth::Principal& caller, const std::string& task_id) const;
  // Per-row access of lists of records that hang off a customer or
  // opportunity.
  class TargetVisibility;
  // A record that hangs off a customer or opportunity, loaded.
  template <typename Record>
  absl::Status CheckChild(const auth::Principal& caller, const absl::StatusOr<Record>& loaded,
                          absl::string_view field, const std::string& id) const;

  SalesCommands& commands_;
  BlockingExecutor& executor_;
};

}  // namespace crm::sales
