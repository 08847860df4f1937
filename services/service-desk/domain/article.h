#pragma once

#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "crm/v1/service_desk.pb.h"

namespace crm::service_desk {

// Pure domain of a knowledge base article: drafted, revised, published and
// unpublished. Only published articles are found by search.

struct ArticleContent {
  std::string title;
  std::string body;
  std::vector<std::string> tags;  // normalized
  std::string product;
};

struct CreateArticle {
  std::string article_id;
  std::string author_id;
  ArticleContent content;
};
struct ReviseArticle {
  ArticleContent content;
};
struct PublishArticle {};
struct UnpublishArticle {};

using ArticleCommand = std::variant<CreateArticle, ReviseArticle, PublishArticle, UnpublishArticle>;
using ArticleEvent = std::variant<crm::v1::ArticleCreated, crm::v1::ArticleRevised,
                                  crm::v1::ArticlePublished, crm::v1::ArticleUnpublished>;

// Validated content: title and body required, tags lowercased, trimmed,
// unique and sorted. Errors name the field.
absl::StatusOr<ArticleContent> NormalizeArticleContent(absl::string_view title,
                                                       absl::string_view body,
                                                       const std::vector<std::string>& tags,
                                                       absl::string_view product);
// Tags as stored and searched: lowercase, trimmed, unique, sorted.
absl::StatusOr<std::vector<std::string>> NormalizeTags(const std::vector<std::string>& tags,
                                                       absl::string_view field);

// A revision that changes nothing yields no events. NOT_FOUND
// "article_id: article not found" without state (except CreateArticle; the
// caller, which knows the id, names it).
absl::StatusOr<std::vector<ArticleEvent>> Decide(const std::optional<crm::v1::Article>& state,
                                                 const ArticleCommand& command);
void Apply(crm::v1::Article& state, const ArticleEvent& event, absl::Time occurred_at);

// The stream of an article: "article-<id>".
std::string ArticleStream(absl::string_view article_id);

}  // namespace crm::service_desk
