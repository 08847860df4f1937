#include "services/service-desk/api/service_desk_grpc.h"

#include "libs/common/auth/auth_interceptor.h"
#include "libs/common/request_context.h"
#include "libs/common/serve_unary.h"
#include "libs/common/status_macros.h"
#include "services/service-desk/domain/ticket_requests.h"

namespace crm::service_desk {

template <typename Request, typename Response, typename UseCase>
grpc::ServerUnaryReactor* ServiceDeskGrpc::Command(grpc::CallbackServerContext* ctx,
                                                   const Request* request, Response* response,
                                                   UseCase use_case) {
  EventContext event_ctx = EventContextFrom(*ctx, kEventSource);
  // Support agents work on every ticket: the method table
  // (libs/common/auth/policy.cc) is the whole check here.
  return ServeUnary(
      ctx, executor_, request, response,
      [event_ctx, use_case = std::move(use_case)](const Request& r, const auth::Principal&) {
        return use_case(r, event_ctx);
      });
}

template <typename Request, typename Response, typename UseCase>
grpc::ServerUnaryReactor* ServiceDeskGrpc::Query(grpc::CallbackServerContext* ctx,
                                                 const Request* request, Response* response,
                                                 UseCase use_case) {
  return ServeUnary(ctx, executor_, request, response,
                    [use_case = std::move(use_case)](const Request& r, const auth::Principal&) {
                      return use_case(r);
                    });
}

grpc::ServerUnaryReactor* ServiceDeskGrpc::OpenTicket(grpc::CallbackServerContext* ctx,
                                                      const crm::v1::OpenTicketRequest* request,
                                                      crm::v1::Ticket* response) {
  return Command(ctx, request, response,
                 [this](const auto& r, EventContext c) { return tickets_.OpenTicket(r, c); });
}

grpc::ServerUnaryReactor* ServiceDeskGrpc::AssignTicket(grpc::CallbackServerContext* ctx,
                                                        const crm::v1::AssignTicketRequest* request,
                                                        crm::v1::Ticket* response) {
  return Command(ctx, request, response,
                 [this](const auto& r, EventContext c) { return tickets_.AssignTicket(r, c); });
}

grpc::ServerUnaryReactor* ServiceDeskGrpc::ReplyToTicket(
    grpc::CallbackServerContext* ctx, const crm::v1::ReplyToTicketRequest* request,
    crm::v1::Ticket* response) {
  EventContext event_ctx = EventContextFrom(*ctx, kEventSource);
  return ServeUnary(
      ctx, executor_, request, response,
      [this, event_ctx](const crm::v1::ReplyToTicketRequest& r,
                        const auth::Principal& caller) -> absl::StatusOr<crm::v1::Ticket> {
        // A customer's words reach the desk through the portal or a mail
        // integration (service callers): an agent writing as the customer
        // would reopen tickets and count as the customer's contact.
        if (r.author_type() == crm::v1::AUTHOR_TYPE_CUSTOMER && !caller.SeesEverything()) {
          CRM_RETURN_IF_ERROR(ValidateReplyToTicket(r));
          return absl::PermissionDeniedError(
              "author_type: only admin and service callers post a customer's reply");
        }
        return tickets_.ReplyToTicket(r, event_ctx);
      });
}

grpc::ServerUnaryReactor* ServiceDeskGrpc::AddInternalNote(
    grpc::CallbackServerContext* ctx, const crm::v1::AddInternalNoteRequest* request,
    crm::v1::Ticket* response) {
  return Command(ctx, request, response,
                 [this](const auto& r, EventContext c) { return tickets_.AddInternalNote(r, c); });
}

grpc::ServerUnaryReactor* ServiceDeskGrpc::MarkTicketPending(
    grpc::CallbackServerContext* ctx, const crm::v1::MarkTicketPendingRequest* request,
    crm::v1::Ticket* response) {
  return Command(ctx, request, response, [this](const auto& r, EventContext c) {
    return tickets_.MarkTicketPending(r, c);
  });
}

grpc::ServerUnaryReactor* ServiceDeskGrpc::ResolveTicket(
    grpc::CallbackServerContext* ctx, const crm::v1::ResolveTicketRequest* request,
    crm::v1::Ticket* response) {
  return Command(ctx, request, response,
                 [this](const auto& r, EventContext c) { return tickets_.ResolveTicket(r, c); });
}

grpc::ServerUnaryReactor* ServiceDeskGrpc::CloseTicket(grpc::CallbackServerContext* ctx,
                                                       const crm::v1::CloseTicketRequest* request,
                                                       crm::v1::Ticket* response) {
  return Command(ctx, request, response,
                 [this](const auto& r, EventContext c) { return tickets_.CloseTicket(r, c); });
}

grpc::ServerUnaryReactor* ServiceDeskGrpc::ReopenTicket(grpc::CallbackServerContext* ctx,
                                                        const crm::v1::ReopenTicketRequest* request,
                                                        crm::v1::Ticket* response) {
  return Command(ctx, request, response,
                 [this](const auto& r, EventContext c) { return tickets_.ReopenTicket(r, c); });
}

grpc::ServerUnaryReactor* ServiceDeskGrpc::LinkSolutionArticle(
    grpc::CallbackServerContext* ctx, const crm::v1::LinkSolutionArticleRequest* request,
    crm::v1::Ticket* response) {
  return Command(ctx, request, response, [this](const auto& r, EventContext c) {
    return tickets_.LinkSolutionArticle(r, c);
  });
}

grpc::ServerUnaryReactor* ServiceDeskGrpc::SubmitCsat(grpc::CallbackServerContext* ctx,
                                                      const crm::v1::SubmitCsatRequest* request,
                                                      crm::v1::Ticket* response) {
  return Command(ctx, request, response,
                 [this](const auto& r, EventContext c) { return tickets_.SubmitCsat(r, c); });
}

grpc::ServerUnaryReactor* ServiceDeskGrpc::GetTicket(grpc::CallbackServerContext* ctx,
                                                     const crm::v1::GetTicketRequest* request,
                                                     crm::v1::TicketDetails* response) {
  return Query(ctx, request, response, [this](const auto& r) { return tickets_.GetTicket(r); });
}

grpc::ServerUnaryReactor* ServiceDeskGrpc::ListTickets(grpc::CallbackServerContext* ctx,
                                                       const crm::v1::ListTicketsRequest* request,
                                                       crm::v1::ListTicketsResponse* response) {
  return Query(ctx, request, response, [this](const auto& r) { return tickets_.ListTickets(r); });
}

grpc::ServerUnaryReactor* ServiceDeskGrpc::CreateArticle(
    grpc::CallbackServerContext* ctx, const crm::v1::CreateArticleRequest* request,
    crm::v1::Article* response) {
  return Command(ctx, request, response,
                 [this](const auto& r, EventContext c) { return articles_.CreateArticle(r, c); });
}

grpc::ServerUnaryReactor* ServiceDeskGrpc::UpdateArticle(
    grpc::CallbackServerContext* ctx, const crm::v1::UpdateArticleRequest* request,
    crm::v1::Article* response) {
  return Command(ctx, request, response,
                 [this](const auto& r, EventContext c) { return articles_.UpdateArticle(r, c); });
}

grpc::ServerUnaryReactor* ServiceDeskGrpc::PublishArticle(
    grpc::CallbackServerContext* ctx, const crm::v1::PublishArticleRequest* request,
    crm::v1::Article* response) {
  return Command(ctx, request, response,
                 [this](const auto& r, EventContext c) { return articles_.PublishArticle(r, c); });
}

grpc::ServerUnaryReactor* ServiceDeskGrpc::UnpublishArticle(
    grpc::CallbackServerContext* ctx, const crm::v1::UnpublishArticleRequest* request,
    crm::v1::Article* response) {
  return Command(ctx, request, response, [this](const auto& r, EventContext c) {
    return articles_.UnpublishArticle(r, c);
  });
}

grpc::ServerUnaryReactor* ServiceDeskGrpc::GetArticle(grpc::CallbackServerContext* ctx,
                                                      const crm::v1::GetArticleRequest* request,
                                                      crm::v1::Article* response) {
  // Every role reads the knowledge base; drafts are the desk's.
  return ServeUnary(ctx, executor_, request, response,
                    [this](const crm::v1::GetArticleRequest& r, const auth::Principal& caller) {
                      return articles_.GetArticle(
                          r, caller.SeesEverything() || caller.HasRole(auth::kRoleSupportAgent));
                    });
}

grpc::ServerUnaryReactor* ServiceDeskGrpc::SearchArticles(
    grpc::CallbackServerContext* ctx, const crm::v1::SearchArticlesRequest* request,
    crm::v1::SearchArticlesResponse* response) {
  return Query(ctx, request, response,
               [this](const auto& r) { return articles_.SearchArticles(r); });
}

}  // namespace crm::service_desk
