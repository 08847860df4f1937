#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "crm/v1/service_desk.pb.h"
#include "libs/common/envelope.h"
#include "services/service-desk/api/ticket_commands.h"
#include "services/service-desk/domain/article.h"
#include "services/service-desk/store/desk_store.h"

namespace crm::service_desk {

// The knowledge base use cases: articles are written, revised, published
// and unpublished through their own event streams; search reads the index
// those appends maintain.
class ArticleCommands {
 public:
  ArticleCommands(DeskStore& store, Clock clock) : store_(store), clock_(std::move(clock)) {}

  absl::StatusOr<crm::v1::Article> CreateArticle(const crm::v1::CreateArticleRequest& request,
                                                 EventContext ctx);
  absl::StatusOr<crm::v1::Article> UpdateArticle(const crm::v1::UpdateArticleRequest& request,
                                                 EventContext ctx);
  absl::StatusOr<crm::v1::Article> PublishArticle(const crm::v1::PublishArticleRequest& request,
                                                  EventContext ctx);
  absl::StatusOr<crm::v1::Article> UnpublishArticle(const crm::v1::UnpublishArticleRequest& request,
                                                    EventContext ctx);

  // Drafts (unpublished articles) only with `drafts`, for the desk that
  // writes them; NOT_FOUND to other readers, as if they did not exist.
  absl::StatusOr<crm::v1::Article> GetArticle(const crm::v1::GetArticleRequest& request,
                                              bool drafts) const;
  // page_size defaults to 10, at most 100; the page token is an offset.
  absl::StatusOr<crm::v1::SearchArticlesResponse> SearchArticles(
      const crm::v1::SearchArticlesRequest& request) const;

 private:
  absl::StatusOr<crm::v1::Article> Execute(const std::string& request_key,
                                           const std::string& article_id, int64_t expected_version,
                                           EventContext ctx, const ArticleCommand& command);

  DeskStore& store_;
  Clock clock_;
};

}  // namespace crm::service_desk
