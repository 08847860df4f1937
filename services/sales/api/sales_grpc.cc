#include "services/sales/api/sales_grpc.h"

#include <algorithm>
#include <string>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/ascii.h"
#include "libs/common/auth/auth_interceptor.h"
#include "libs/common/auth/record_access.h"
#include "libs/common/request_context.h"
#include "libs/common/serve_unary.h"
#include "libs/common/status_macros.h"

namespace crm::sales {
namespace {

using auth::Principal;

// Only a rep's own records: a rep may not create them for someone else.
absl::Status CheckOwnerField(const Principal& caller, const std::string& owner_id) {
  if (caller.SeesEverything() || caller.HasRole(auth::kRoleSalesManager)) return absl::OkStatus();
  if (owner_id.empty() || owner_id == caller.subject) return absl::OkStatus();
  return absl::PermissionDeniedError("owner_id: a sales rep may only name themselves");
}

// The person a task is assigned to sees and completes it even on an
// account they may not access (a manager hands out work across owners). It
// gives no access to the account or deal: no territory, owner only.
bool IsAssignee(const Principal& caller, const crm::v1::Task& task) {
  return auth::MayAccess(caller, task.owner_id(), /*territory=*/"");
}

}  // namespace

absl::StatusOr<crm::v1::OpenCustomerRequest> ScopeOpenCustomer(
    const Principal& caller, crm::v1::OpenCustomerRequest request) {
  if (caller.SeesEverything()) return request;
  // A customer id names a person other services already know (a lead's
  // customer, the 360 view): an account opened under it would make its
  // owner an owner of that person's whole record. Staff get a new id; a
  // lead's person becomes an account by converting the lead.
  if (!request.customer_id().empty()) {
    return absl::PermissionDeniedError(
        "customer_id: only admin and service callers open an account under a given id; "
        "leave it empty for a new customer, or convert the lead");
  }
  // The caller's territory by default, a rep's too: an account with none
  // is out of every manager's reach, approvals included. Judged trimmed, as
  // it is stored (NormalizeOpenCustomer): a blank one is none given.
  request.set_territory(std::string(absl::StripAsciiWhitespace(request.territory())));
  if (request.territory().empty()) request.set_territory(caller.territory);
  const bool manager = caller.HasRole(auth::kRoleSalesManager);
  if (!manager && request.owner_id().empty()) request.set_owner_id(caller.subject);
  if (!auth::MayAccess(caller, request.owner_id(), request.territory())) {
    // A manager may open accounts for anyone in their territory, and their
    // own anywhere (an owner may access the account).
    if (manager) {
      return absl::PermissionDeniedError(
          "territory: the account would lie outside the caller's territory");
    }
    return absl::PermissionDeniedError(
        "owner_id: the account would belong to someone the caller may not act for");
  }
  return request;
}

// Rows of a list share their customers and opportunities, so each target is
// checked once per call.
class SalesGrpc::TargetVisibility {
 public:
  TargetVisibility(const SalesGrpc& grpc, const Principal& caller) : grpc_(grpc), caller_(caller) {}

  // Whether the caller may see a record of this opportunity, or of this
  // customer when it has none. A check that fails for another reason than
  // access hides the row and is kept in status().
  bool operator()(const std::string& customer_id, const std::string& opportunity_id) {
    auto [it, inserted] = seen_.try_emplace(
        {opportunity_id.empty() ? customer_id : std::string(), opportunity_id}, false);
    if (inserted) {
      const absl::Status st = grpc_.CheckTarget(caller_, customer_id, opportunity_id);
      it->second = st.ok();
      if (!st.ok() && !auth::IsRefusal(st) && status_.ok()) status_ = st;
    }
    return it->second;
  }
  const absl::Status& status() const { return status_; }

 private:
  const SalesGrpc& grpc_;
  const Principal& caller_;
  absl::flat_hash_map<std::pair<std::string, std::string>, bool> seen_;
  absl::Status status_;
};

absl::Status SalesGrpc::CheckCustomer(const Principal& caller, const std::string& customer_id,
                                      absl::string_view field) const {
  if (caller.SeesEverything()) return absl::OkStatus();
  crm::v1::GetCustomerRequest get;
  get.set_customer_id(customer_id);
  return auth::CheckLoaded(
      caller, commands_.GetCustomer(get), field, customer_id,
      [](const crm::v1::Customer& c) { return c.owner_id(); },
      [](const crm::v1::Customer& c) { return c.territory(); });
}

absl::Status SalesGrpc::CheckOpportunity(const Principal& caller, const std::string& opportunity_id,
                                         absl::string_view field) const {
  if (caller.SeesEverything()) return absl::OkStatus();
  crm::v1::GetOpportunityRequest get;
  get.set_opportunity_id(opportunity_id);
  return auth::CheckLoaded(
      caller, commands_.GetOpportunity(get), field, opportunity_id,
      [](const crm::v1::Opportunity& o) { return o.owner_id(); },
      [](const crm::v1::Opportunity& o) { return o.territory(); });
}

absl::Status SalesGrpc::CheckTarget(const Principal& caller, const std::string& customer_id,
                                    const std::string& opportunity_id) const {
  // A record under an opportunity belongs to whoever works the opportunity.
  if (!opportunity_id.empty()) return CheckOpportunity(caller, opportunity_id);
  return CheckCustomer(caller, customer_id);
}

template <typename Record>
absl::Status SalesGrpc::CheckChild(const Principal& caller, const absl::StatusOr<Record>& loaded,
                                   absl::string_view field, const std::string& id) const {
  if (caller.SeesEverything()) return absl::OkStatus();
  if (!loaded.ok()) {
    if (loaded.status().code() == absl::StatusCode::kNotFound) return auth::NotVisible(field, id);
    return loaded.status();
  }
  return auth::ThroughParent(CheckTarget(caller, loaded->customer_id(), loaded->opportunity_id()),
                             field, id);
}

absl::Status SalesGrpc::CheckQuote(const Principal& caller, const std::string& quote_id) const {
  if (caller.SeesEverything()) return absl::OkStatus();
  crm::v1::GetQuoteRequest get;
  get.set_quote_id(quote_id);
  return CheckChild(caller, commands_.GetQuote(get), "quote_id", quote_id);
}

absl::Status SalesGrpc::CheckOrder(const Principal& caller, const std::string& order_id) const {
  if (caller.SeesEverything()) return absl::OkStatus();
  crm::v1::GetOrderRequest get;
  get.set_order_id(order_id);
  return CheckChild(caller, commands_.GetOrder(get), "order_id", order_id);
}

absl::Status SalesGrpc::CheckContract(const Principal& caller,
                                      const std::string& contract_id) const {
  if (caller.SeesEverything()) return absl::OkStatus();
  crm::v1::GetContractRequest get;
  get.set_contract_id(contract_id);
  return CheckChild(caller, commands_.GetContract(get), "contract_id", contract_id);
}

absl::Status SalesGrpc::CheckTask(const Principal& caller, const std::string& task_id) const {
  if (caller.SeesEverything()) return absl::OkStatus();
  auto task = commands_.GetTask(task_id);
  if (task.ok() && IsAssignee(caller, *task)) return absl::OkStatus();
  return CheckChild(caller, task, "task_id", task_id);
}

grpc::ServerUnaryReactor* SalesGrpc::OpenCustomer(grpc::CallbackServerContext* ctx,
                                                  const crm::v1::OpenCustomerRequest* request,
                                                  crm::v1::Customer* response) {
  EventContext event_ctx = EventContextFrom(*ctx, kSalesSource);
  return ServeUnary(
      ctx, executor_, request, response,
      [this, event_ctx](const crm::v1::OpenCustomerRequest& r,
                        const Principal& caller) -> absl::StatusOr<crm::v1::Customer> {
        // A retry is answered before the caller's token fills in defaults
        // and is checked: the token may have changed since (another
        // territory), the account opened has not.
        if (commands_.events().Answered(event_ctx, "OpenCustomer", r.request_id(), r)) {
          return commands_.OpenCustomer(r, event_ctx, &r);
        }
        CRM_ASSIGN_OR_RETURN(auto scoped, ScopeOpenCustomer(caller, r));
        return commands_.OpenCustomer(scoped, event_ctx, &r);
      });
}

grpc::ServerUnaryReactor* SalesGrpc::GetCustomer(grpc::CallbackServerContext* ctx,
                                                 const crm::v1::GetCustomerRequest* request,
                                                 crm::v1::Customer* response) {
  return ServeUnary(ctx, executor_, request, response,
                    [this](const crm::v1::GetCustomerRequest& r,
                           const Principal& caller) -> absl::StatusOr<crm::v1::Customer> {
                      CRM_RETURN_IF_ERROR(CheckCustomer(caller, r.customer_id()));
                      return commands_.GetCustomer(r);
                    });
}

grpc::ServerUnaryReactor* SalesGrpc::ListCustomers(grpc::CallbackServerContext* ctx,
                                                   const crm::v1::ListCustomersRequest* request,
                                                   crm::v1::ListCustomersResponse* response) {
  return ServeUnary(
      ctx, executor_, request, response,
      [this](const crm::v1::ListCustomersRequest& r,
             const Principal& caller) -> absl::StatusOr<crm::v1::ListCustomersResponse> {
        crm::v1::ListCustomersRequest scoped = r;
        if (!caller.SeesEverything() && !caller.HasRole(auth::kRoleSalesManager)) {
          if (!r.owner_id().empty() && r.owner_id() != caller.subject) {
            CRM_RETURN_IF_ERROR(SalesCommands::OpenListCustomers(r).status());
            return crm::v1::ListCustomersResponse();
          }
          scoped.set_owner_id(caller.subject);
        }
        // Filter, never fail: the caller sees the accounts it may access.
        return commands_.ListCustomers(scoped, [&](const crm::v1::Customer& c) {
          return auth::MayAccess(caller, c.owner_id(), c.territory());
        });
      });
}

grpc::ServerUnaryReactor* SalesGrpc::OpenOpportunity(grpc::CallbackServerContext* ctx,
                                                     const crm::v1::OpenOpportunityRequest* request,
                                                     crm::v1::Opportunity* response) {
  EventContext event_ctx = EventContextFrom(*ctx, kSalesSource);
  return ServeUnary(
      ctx, executor_, request, response,
      [this, event_ctx](const crm::v1::OpenOpportunityRequest& r,
                        const Principal& caller) -> absl::StatusOr<crm::v1::Opportunity> {
        CRM_RETURN_IF_ERROR(CheckUnlessRetry(
            commands_.events(), event_ctx, "OpenOpportunity", r, [&]() -> absl::Status {
              CRM_RETURN_IF_ERROR(CheckCustomer(caller, r.customer_id()));
              return CheckOwnerField(caller, r.owner_id());
            }));
        return commands_.OpenOpportunity(r, event_ctx);
      });
}

grpc::ServerUnaryReactor* SalesGrpc::GetOpportunity(grpc::CallbackServerContext* ctx,
                                                    const crm::v1::GetOpportunityRequest* request,
                                                    crm::v1::Opportunity* response) {
  return ServeUnary(ctx, executor_, request, response,
                    [this](const crm::v1::GetOpportunityRequest& r,
                           const Principal& caller) -> absl::StatusOr<crm::v1::Opportunity> {
                      CRM_RETURN_IF_ERROR(CheckOpportunity(caller, r.opportunity_id()));
                      return commands_.GetOpportunity(r);
                    });
}

grpc::ServerUnaryReactor* SalesGrpc::ListOpportunities(
    grpc::CallbackServerContext* ctx, const crm::v1::ListOpportunitiesRequest* request,
    crm::v1::ListOpportunitiesResponse* response) {
  return ServeUnary(
      ctx, executor_, request, response,
      [this](const crm::v1::ListOpportunitiesRequest& r,
             const Principal& caller) -> absl::StatusOr<crm::v1::ListOpportunitiesResponse> {
        crm::v1::ListOpportunitiesRequest scoped = r;
        if (!caller.SeesEverything() && !caller.HasRole(auth::kRoleSalesManager)) {
          if (!r.owner_id().empty() && r.owner_id() != caller.subject) {
            CRM_RETURN_IF_ERROR(SalesCommands::OpenListOpportunities(r).status());
            return crm::v1::ListOpportunitiesResponse();
          }
          scoped.set_owner_id(caller.subject);
        }
        return commands_.ListOpportunities(scoped, [&](const crm::v1::Opportunity& o) {
          return auth::MayAccess(caller, o.owner_id(), o.territory());
        });
      });
}

grpc::ServerUnaryReactor* SalesGrpc::ChangeOpportunityStage(
    grpc::CallbackServerContext* ctx, const crm::v1::ChangeOpportunityStageRequest* request,
    crm::v1::Opportunity* response) {
  EventContext event_ctx = EventContextFrom(*ctx, kSalesSource);
  return ServeUnary(
      ctx, executor_, request, response,
      [this, event_ctx](const crm::v1::ChangeOpportunityStageRequest& r,
                        const Principal& caller) -> absl::StatusOr<crm::v1::Opportunity> {
        CRM_RETURN_IF_ERROR(
            CheckUnlessRetry(commands_.events(), event_ctx, "ChangeOpportunityStage", r,
                             [&] { return CheckOpportunity(caller, r.opportunity_id()); }));
        return commands_.ChangeOpportunityStage(r, event_ctx);
      });
}

grpc::ServerUnaryReactor* SalesGrpc::ReviseOpportunity(
    grpc::CallbackServerContext* ctx, const crm::v1::ReviseOpportunityRequest* request,
    crm::v1::Opportunity* response) {
  EventContext event_ctx = EventContextFrom(*ctx, kSalesSource);
  return ServeUnary(
      ctx, executor_, request, response,
      [this, event_ctx](const crm::v1::ReviseOpportunityRequest& r,
                        const Principal& caller) -> absl::StatusOr<crm::v1::Opportunity> {
        CRM_RETURN_IF_ERROR(
            CheckUnlessRetry(commands_.events(), event_ctx, "ReviseOpportunity", r,
                             [&] { return CheckOpportunity(caller, r.opportunity_id()); }));
        return commands_.ReviseOpportunity(r, event_ctx);
      });
}

grpc::ServerUnaryReactor* SalesGrpc::ListPipelines(grpc::CallbackServerContext* ctx,
                                                   const crm::v1::ListPipelinesRequest* request,
                                                   crm::v1::ListPipelinesResponse* response) {
  return ServeUnary(
      ctx, executor_, request, response,
      [this](const crm::v1::ListPipelinesRequest& r, const Principal& caller)
          -> absl::StatusOr<crm::v1::ListPipelinesResponse> { return commands_.ListPipelines(); });
}

grpc::ServerUnaryReactor* SalesGrpc::LogActivity(grpc::CallbackServerContext* ctx,
                                                 const crm::v1::LogActivityRequest* request,
                                                 crm::v1::Activity* response) {
  EventContext event_ctx = EventContextFrom(*ctx, kSalesSource);
  return ServeUnary(
      ctx, executor_, request, response,
      [this, event_ctx](const crm::v1::LogActivityRequest& r,
                        const Principal& caller) -> absl::StatusOr<crm::v1::Activity> {
        CRM_RETURN_IF_ERROR(CheckUnlessRetry(commands_.events(), event_ctx, "LogActivity", r, [&] {
          return CheckTarget(caller, r.customer_id(), r.opportunity_id());
        }));
        return commands_.LogActivity(r, event_ctx);
      });
}

grpc::ServerUnaryReactor* SalesGrpc::ListActivities(grpc::CallbackServerContext* ctx,
                                                    const crm::v1::ListActivitiesRequest* request,
                                                    crm::v1::ListActivitiesResponse* response) {
  return ServeUnary(
      ctx, executor_, request, response,
      [this](const crm::v1::ListActivitiesRequest& r,
             const Principal& caller) -> absl::StatusOr<crm::v1::ListActivitiesResponse> {
        if (caller.SeesEverything()) return commands_.ListActivities(r);
        // An activity belongs to its deal when it has one: an
        // account's list holds its deals' activities too.
        TargetVisibility visible(*this, caller);
        auto page = commands_.ListActivities(r, [&](const crm::v1::Activity& a) {
          return visible(a.customer_id(), a.opportunity_id());
        });
        CRM_RETURN_IF_ERROR(visible.status());
        return page;
      });
}

grpc::ServerUnaryReactor* SalesGrpc::CreateTask(grpc::CallbackServerContext* ctx,
                                                const crm::v1::CreateTaskRequest* request,
                                                crm::v1::Task* response) {
  EventContext event_ctx = EventContextFrom(*ctx, kSalesSource);
  return ServeUnary(
      ctx, executor_, request, response,
      [this, event_ctx](const crm::v1::CreateTaskRequest& r,
                        const Principal& caller) -> absl::StatusOr<crm::v1::Task> {
        CRM_RETURN_IF_ERROR(
            CheckUnlessRetry(commands_.events(), event_ctx, "CreateTask", r, [&]() -> absl::Status {
              CRM_RETURN_IF_ERROR(CheckTarget(caller, r.customer_id(), r.opportunity_id()));
              return CheckOwnerField(caller, r.owner_id());
            }));
        return commands_.CreateTask(r, event_ctx);
      });
}

grpc::ServerUnaryReactor* SalesGrpc::CompleteTask(grpc::CallbackServerContext* ctx,
                                                  const crm::v1::CompleteTaskRequest* request,
                                                  crm::v1::Task* response) {
  EventContext event_ctx = EventContextFrom(*ctx, kSalesSource);
  return ServeUnary(
      ctx, executor_, request, response,
      [this, event_ctx](const crm::v1::CompleteTaskRequest& r,
                        const Principal& caller) -> absl::StatusOr<crm::v1::Task> {
        CRM_RETURN_IF_ERROR(CheckUnlessRetry(commands_.events(), event_ctx, "CompleteTask", r,
                                             [&] { return CheckTask(caller, r.task_id()); }));
        return commands_.CompleteTask(r, event_ctx);
      });
}

grpc::ServerUnaryReactor* SalesGrpc::ListTasks(grpc::CallbackServerContext* ctx,
                                               const crm::v1::ListTasksRequest* request,
                                               crm::v1::ListTasksResponse* response) {
  return ServeUnary(ctx, executor_, request, response,
                    [this](const crm::v1::ListTasksRequest& r,
                           const Principal& caller) -> absl::StatusOr<crm::v1::ListTasksResponse> {
                      if (caller.SeesEverything()) return commands_.ListTasks(r);
                      // A task is visible to its assignee and with the account or
                      // deal it belongs to.
                      TargetVisibility visible(*this, caller);
                      auto page = commands_.ListTasks(r, [&](const crm::v1::Task& t) {
                        return IsAssignee(caller, t) ||
                               visible(t.customer_id(), t.opportunity_id());
                      });
                      CRM_RETURN_IF_ERROR(visible.status());
                      return page;
                    });
}

grpc::ServerUnaryReactor* SalesGrpc::DraftQuote(grpc::CallbackServerContext* ctx,
                                                const crm::v1::DraftQuoteRequest* request,
                                                crm::v1::Quote* response) {
  EventContext event_ctx = EventContextFrom(*ctx, kSalesSource);
  return ServeUnary(
      ctx, executor_, request, response,
      [this, event_ctx](const crm::v1::DraftQuoteRequest& r,
                        const Principal& caller) -> absl::StatusOr<crm::v1::Quote> {
        CRM_RETURN_IF_ERROR(CheckUnlessRetry(commands_.events(), event_ctx, "DraftQuote", r, [&] {
          return CheckTarget(caller, r.customer_id(), r.opportunity_id());
        }));
        return commands_.DraftQuote(r, event_ctx);
      });
}

grpc::ServerUnaryReactor* SalesGrpc::GetQuote(grpc::CallbackServerContext* ctx,
                                              const crm::v1::GetQuoteRequest* request,
                                              crm::v1::Quote* response) {
  return ServeUnary(ctx, executor_, request, response,
                    [this](const crm::v1::GetQuoteRequest& r,
                           const Principal& caller) -> absl::StatusOr<crm::v1::Quote> {
                      CRM_RETURN_IF_ERROR(CheckQuote(caller, r.quote_id()));
                      return commands_.GetQuote(r);
                    });
}

grpc::ServerUnaryReactor* SalesGrpc::AcceptQuote(grpc::CallbackServerContext* ctx,
                                                 const crm::v1::AcceptQuoteRequest* request,
                                                 crm::v1::Quote* response) {
  EventContext event_ctx = EventContextFrom(*ctx, kSalesSource);
  return ServeUnary(
      ctx, executor_, request, response,
      [this, event_ctx](const crm::v1::AcceptQuoteRequest& r,
                        const Principal& caller) -> absl::StatusOr<crm::v1::Quote> {
        CRM_RETURN_IF_ERROR(CheckUnlessRetry(commands_.events(), event_ctx, "AcceptQuote", r,
                                             [&] { return CheckQuote(caller, r.quote_id()); }));
        return commands_.AcceptQuote(r, event_ctx);
      });
}

grpc::ServerUnaryReactor* SalesGrpc::DeclineQuote(grpc::CallbackServerContext* ctx,
                                                  const crm::v1::DeclineQuoteRequest* request,
                                                  crm::v1::Quote* response) {
  EventContext event_ctx = EventContextFrom(*ctx, kSalesSource);
  return ServeUnary(
      ctx, executor_, request, response,
      [this, event_ctx](const crm::v1::DeclineQuoteRequest& r,
                        const Principal& caller) -> absl::StatusOr<crm::v1::Quote> {
        CRM_RETURN_IF_ERROR(CheckUnlessRetry(commands_.events(), event_ctx, "DeclineQuote", r,
                                             [&] { return CheckQuote(caller, r.quote_id()); }));
        return commands_.DeclineQuote(r, event_ctx);
      });
}

grpc::ServerUnaryReactor* SalesGrpc::PlaceOrder(grpc::CallbackServerContext* ctx,
                                                const crm::v1::PlaceOrderRequest* request,
                                                crm::v1::Order* response) {
  EventContext event_ctx = EventContextFrom(*ctx, kSalesSource);
  return ServeUnary(
      ctx, executor_, request, response,
      [this, event_ctx](const crm::v1::PlaceOrderRequest& r,
                        const Principal& caller) -> absl::StatusOr<crm::v1::Order> {
        CRM_RETURN_IF_ERROR(CheckUnlessRetry(commands_.events(), event_ctx, "PlaceOrder", r,
                                             [&] { return CheckQuote(caller, r.quote_id()); }));
        return commands_.PlaceOrder(r, event_ctx);
      });
}

grpc::ServerUnaryReactor* SalesGrpc::GetOrder(grpc::CallbackServerContext* ctx,
                                              const crm::v1::GetOrderRequest* request,
                                              crm::v1::Order* response) {
  return ServeUnary(ctx, executor_, request, response,
                    [this](const crm::v1::GetOrderRequest& r,
                           const Principal& caller) -> absl::StatusOr<crm::v1::Order> {
                      CRM_RETURN_IF_ERROR(CheckOrder(caller, r.order_id()));
                      return commands_.GetOrder(r);
                    });
}

grpc::ServerUnaryReactor* SalesGrpc::DraftContract(grpc::CallbackServerContext* ctx,
                                                   const crm::v1::DraftContractRequest* request,
                                                   crm::v1::Contract* response) {
  EventContext event_ctx = EventContextFrom(*ctx, kSalesSource);
  return ServeUnary(
      ctx, executor_, request, response,
      [this, event_ctx](const crm::v1::DraftContractRequest& r,
                        const Principal& caller) -> absl::StatusOr<crm::v1::Contract> {
        CRM_RETURN_IF_ERROR(CheckUnlessRetry(commands_.events(), event_ctx, "DraftContract", r,
                                             [&] { return CheckOrder(caller, r.order_id()); }));
        return commands_.DraftContract(r, event_ctx);
      });
}

grpc::ServerUnaryReactor* SalesGrpc::GetContract(grpc::CallbackServerContext* ctx,
                                                 const crm::v1::GetContractRequest* request,
                                                 crm::v1::Contract* response) {
  return ServeUnary(ctx, executor_, request, response,
                    [this](const crm::v1::GetContractRequest& r,
                           const Principal& caller) -> absl::StatusOr<crm::v1::Contract> {
                      CRM_RETURN_IF_ERROR(CheckContract(caller, r.contract_id()));
                      return commands_.GetContract(r);
                    });
}

grpc::ServerUnaryReactor* SalesGrpc::SubmitContract(grpc::CallbackServerContext* ctx,
                                                    const crm::v1::SubmitContractRequest* request,
                                                    crm::v1::Contract* response) {
  EventContext event_ctx = EventContextFrom(*ctx, kSalesSource);
  return ServeUnary(
      ctx, executor_, request, response,
      [this, event_ctx](const crm::v1::SubmitContractRequest& r,
                        const Principal& caller) -> absl::StatusOr<crm::v1::Contract> {
        CRM_RETURN_IF_ERROR(
            CheckUnlessRetry(commands_.events(), event_ctx, "SubmitContract", r,
                             [&] { return CheckContract(caller, r.contract_id()); }));
        return commands_.SubmitContract(r, event_ctx);
      });
}

grpc::ServerUnaryReactor* SalesGrpc::ApproveContract(grpc::CallbackServerContext* ctx,
                                                     const crm::v1::ApproveContractRequest* request,
                                                     crm::v1::Contract* response) {
  EventContext event_ctx = EventContextFrom(*ctx, kSalesSource);
  return ServeUnary(
      ctx, executor_, request, response,
      [this, event_ctx](const crm::v1::ApproveContractRequest& r,
                        const Principal& caller) -> absl::StatusOr<crm::v1::Contract> {
        CRM_RETURN_IF_ERROR(
            CheckUnlessRetry(commands_.events(), event_ctx, "ApproveContract", r,
                             [&] { return CheckContract(caller, r.contract_id()); }));
        // The approver's roles come from the verified token.
        return commands_.ApproveContract(r, event_ctx, caller.roles);
      });
}

grpc::ServerUnaryReactor* SalesGrpc::RejectContract(grpc::CallbackServerContext* ctx,
                                                    const crm::v1::RejectContractRequest* request,
                                                    crm::v1::Contract* response) {
  EventContext event_ctx = EventContextFrom(*ctx, kSalesSource);
  return ServeUnary(
      ctx, executor_, request, response,
      [this, event_ctx](const crm::v1::RejectContractRequest& r,
                        const Principal& caller) -> absl::StatusOr<crm::v1::Contract> {
        CRM_RETURN_IF_ERROR(
            CheckUnlessRetry(commands_.events(), event_ctx, "RejectContract", r,
                             [&] { return CheckContract(caller, r.contract_id()); }));
        return commands_.RejectContract(r, event_ctx, caller.roles);
      });
}

grpc::ServerUnaryReactor* SalesGrpc::GetForecast(grpc::CallbackServerContext* ctx,
                                                 const crm::v1::GetForecastRequest* request,
                                                 crm::v1::GetForecastResponse* response) {
  return ServeUnary(
      ctx, executor_, request, response,
      [this](const crm::v1::GetForecastRequest& r,
             const Principal& caller) -> absl::StatusOr<crm::v1::GetForecastResponse> {
        CRM_ASSIGN_OR_RETURN(auto forecast, commands_.GetForecast(r));
        // Rows are per owner and territory: keep the caller's.
        auto* rows = forecast.mutable_rows();
        rows->erase(std::remove_if(rows->begin(), rows->end(),
                                   [&](const crm::v1::ForecastRow& row) {
                                     return !auth::MayAccess(caller, row.owner_id(),
                                                             row.territory());
                                   }),
                    rows->end());
        return forecast;
      });
}

}  // namespace crm::sales
