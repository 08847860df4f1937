#pragma once

#include "crm/v1/service_desk.grpc.pb.h"
#include "libs/common/blocking_executor.h"
#include "services/service-desk/api/article_commands.h"
#include "services/service-desk/api/ticket_commands.h"

namespace crm::service_desk {

inline constexpr char kEventSource[] = "crm/service-desk";

// gRPC edge of the service desk: proto in, status out. Every call runs on
// the blocking executor: commands wait for a synced append, and list and
// search calls may scan.
class ServiceDeskGrpc final : public crm::v1::ServiceDeskService::CallbackService {
 public:
  ServiceDeskGrpc(TicketCommands& tickets, ArticleCommands& articles, BlockingExecutor& executor)
      : tickets_(tickets), articles_(articles), executor_(executor) {}

  grpc::ServerUnaryReactor* OpenTicket(grpc::CallbackServerContext* ctx,
                                       const crm::v1::OpenTicketRequest* request,
                                       crm::v1::Ticket* response) override;
  grpc::ServerUnaryReactor* AssignTicket(grpc::CallbackServerContext* ctx,
                                         const crm::v1::AssignTicketRequest* request,
                                         crm::v1::Ticket* response) override;
  grpc::ServerUnaryReactor* ReplyToTicket(grpc::CallbackServerContext* ctx,
                                          const crm::v1::ReplyToTicketRequest* request,
                                          crm::v1::Ticket* response) override;
  grpc::ServerUnaryReactor* AddInternalNote(grpc::CallbackServerContext* ctx,
                                            const crm::v1::AddInternalNoteRequest* request,
                                            crm::v1::Ticket* response) override;
  grpc::ServerUnaryReactor* MarkTicketPending(grpc::CallbackServerContext* ctx,
                                              const crm::v1::MarkTicketPendingRequest* request,
                                              crm::v1::Ticket* response) override;
  grpc::ServerUnaryReactor* ResolveTicket(grpc::CallbackServerContext* ctx,
                                          const crm::v1::ResolveTicketRequest* request,
                                          crm::v1::Ticket* response) override;
  grpc::ServerUnaryReactor* CloseTicket(grpc::CallbackServerContext* ctx,
                                        const crm::v1::CloseTicketRequest* request,
                                        crm::v1::Ticket* response) override;
  grpc::ServerUnaryReactor* ReopenTicket(grpc::CallbackServerContext* ctx,
                                         const crm::v1::ReopenTicketRequest* request,
                                         crm::v1::Ticket* response) override;
  grpc::ServerUnaryReactor* LinkSolutionArticle(grpc::CallbackServerContext* ctx,
                                                const crm::v1::LinkSolutionArticleRequest* request,
                                                crm::v1::Ticket* response) override;
  grpc::ServerUnaryReactor* SubmitCsat(grpc::CallbackServerContext* ctx,
                                       const crm::v1::SubmitCsatRequest* request,
                                       crm::v1::Ticket* response) override;
  grpc::ServerUnaryReactor* GetTicket(grpc::CallbackServerContext* ctx,
                                      const crm::v1::GetTicketRequest* request,
                                      crm::v1::TicketDetails* response) override;
  grpc::ServerUnaryReactor* ListTickets(grpc::CallbackServerContext* ctx,
                                        const crm::v1::ListTicketsRequest* request,
                                        crm::v1::ListTicketsResponse* response) override;

  grpc::ServerUnaryReactor* CreateArticle(grpc::CallbackServerContext* ctx,
                                          const crm::v1::CreateArticleRequest* request,
                                          crm::v1::Article* response) override;
  grpc::ServerUnaryReactor* UpdateArticle(grpc::CallbackServerContext* ctx,
                                          const crm::v1::UpdateArticleRequest* request,
                                          crm::v1::Article* response) override;
  grpc::ServerUnaryReactor* PublishArticle(grpc::CallbackServerContext* ctx,
                                           const crm::v1::PublishArticleRequest* request,
                                           crm::v1::Article* response) override;
  grpc::ServerUnaryReactor* UnpublishArticle(grpc::CallbackServerContext* ctx,
                                             const crm::v1::UnpublishArticleRequest* request,
                                             crm::v1::Article* response) override;
  grpc::ServerUnaryReactor* GetArticle(grpc::CallbackServerContext* ctx,
                                       const crm::v1::GetArticleRequest* request,
                                       crm::v1::Article* response) override;
  grpc::ServerUnaryReactor* SearchArticles(grpc::CallbackServerContext* ctx,
                                           const crm::v1::SearchArticlesRequest* request,
                                           crm::v1::SearchArticlesResponse* response) override;

 private:
  // A command: the call's event context, the use case on the executor.
  template <typename Request, typename Response, typename UseCase>
  grpc::ServerUnaryReactor* Command(grpc::CallbackServerContext* ctx, const Request* request,
                                    Response* response, UseCase use_case);
  // A query: the use case on the executor.
  template <typename Request, typename Response, typename UseCase>
  grpc::ServerUnaryReactor* Query(grpc::CallbackServerContext* ctx, const Request* request,
                                  Response* response, UseCase use_case);

  TicketCommands& tickets_;
  ArticleCommands& articles_;
  BlockingExecutor& executor_;
};

}  // namespace crm::service_desk
