#include "services/service-desk/domain/article.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "libs/common/ids.h"
#include "libs/common/status_macros.h"
#include "libs/common/text.h"
#include "services/service-desk/domain/validation.h"

namespace crm::service_desk {
namespace {

constexpr size_t kMaxTitle = 200;
constexpr size_t kMaxBody = 100000;
constexpr size_t kMaxTags = 20;
constexpr size_t kMaxTag = 64;
constexpr size_t kMaxProduct = 100;

template <typename Event>
void SetContent(Event& e, const ArticleContent& c) {
  e.set_title(c.title);
  e.set_body(c.body);
  for (const auto& tag : c.tags) e.add_tags(tag);
  e.set_product(c.product);
}

bool SameContent(const crm::v1::Article& a, const ArticleContent& c) {
  return a.title() == c.title && a.body() == c.body && a.product() == c.product &&
         std::equal(a.tags().begin(), a.tags().end(), c.tags.begin(), c.tags.end());
}

}  // namespace

absl::StatusOr<std::vector<std::string>> NormalizeTags(const std::vector<std::string>& tags,
                                                       absl::string_view field) {
  if (tags.size() > kMaxTags)
    return InvalidField(field, absl::StrCat("more than ", kMaxTags, " tags"));
  std::vector<std::string> out;
  for (size_t i = 0; i < tags.size(); ++i) {
    std::string tag = Utf8ToLower(absl::StripAsciiWhitespace(tags[i]));
    const std::string entry = absl::StrCat(field, "[", i, "]");
    if (tag.empty()) return InvalidField(entry, "empty tag");
    CRM_RETURN_IF_ERROR(CheckText(entry, tag, kMaxTag));
    out.push_back(std::move(tag));
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

absl::StatusOr<ArticleContent> NormalizeArticleContent(absl::string_view title,
                                                       absl::string_view body,
                                                       const std::vector<std::string>& tags,
                                                       absl::string_view product) {
  ArticleContent c;
  c.title = std::string(absl::StripAsciiWhitespace(title));
  c.body = std::string(body);
  c.product = std::string(absl::StripAsciiWhitespace(product));
  CRM_RETURN_IF_ERROR(CheckRequiredText("title", c.title, kMaxTitle));
  CRM_RETURN_IF_ERROR(CheckRequiredText("body", c.body, kMaxBody, /*multiline=*/true));
  CRM_ASSIGN_OR_RETURN(c.tags, NormalizeTags(tags, "tags"));
  CRM_RETURN_IF_ERROR(CheckText("product", c.product, kMaxProduct));
  return c;
}

absl::StatusOr<std::vector<ArticleEvent>> Decide(const std::optional<crm::v1::Article>& state,
                                                 const ArticleCommand& command) {
  if (const auto* create = std::get_if<CreateArticle>(&command)) {
    if (state.has_value()) {
      return absl::AlreadyExistsError(
          absl::StrCat("article ", create->article_id, " already exists"));
    }
    crm::v1::ArticleCreated e;
    e.set_article_id(create->article_id);
    e.set_author_id(create->author_id);
    SetContent(e, create->content);
    return std::vector<ArticleEvent>{std::move(e)};
  }
  // The commands carry no article id: the caller names it (see article.h).
  if (!state.has_value()) return absl::NotFoundError("article_id: article not found");
  const crm::v1::Article& a = *state;
  if (const auto* revise = std::get_if<ReviseArticle>(&command)) {
    if (SameContent(a, revise->content)) return std::vector<ArticleEvent>{};
    crm::v1::ArticleRevised e;
    e.set_article_id(a.article_id());
    SetContent(e, revise->content);
    return std::vector<ArticleEvent>{std::move(e)};
  }
  if (std::holds_alternative<PublishArticle>(command)) {
    if (a.published()) {
      return absl::FailedPreconditionError(
          absl::StrCat("article ", a.article_id(), " is published"));
    }
    crm::v1::ArticlePublished e;
    e.set_article_id(a.article_id());
    return std::vector<ArticleEvent>{std::move(e)};
  }
  if (!a.published()) {
    return absl::FailedPreconditionError(
        absl::StrCat("article ", a.article_id(), " is not published"));
  }
  crm::v1::ArticleUnpublished e;
  e.set_article_id(a.article_id());
  return std::vector<ArticleEvent>{std::move(e)};
}

void Apply(crm::v1::Article& a, const ArticleEvent& event, absl::Time occurred_at) {
  const auto now = ToProtoTimestamp(occurred_at);
  std::visit(
      [&](const auto& e) {
        using E = std::decay_t<decltype(e)>;
        if constexpr (std::is_same_v<E, crm::v1::ArticleCreated> ||
                      std::is_same_v<E, crm::v1::ArticleRevised>) {
          a.set_article_id(e.article_id());
          a.set_title(e.title());
          a.set_body(e.body());
          *a.mutable_tags() = e.tags();
          a.set_product(e.product());
          if constexpr (std::is_same_v<E, crm::v1::ArticleCreated>) {
            a.set_author_id(e.author_id());
            *a.mutable_created_at() = now;
          }
        } else if constexpr (std::is_same_v<E, crm::v1::ArticlePublished>) {
          a.set_published(true);
          *a.mutable_published_at() = now;
        } else {
          static_assert(std::is_same_v<E, crm::v1::ArticleUnpublished>);
          a.set_published(false);
        }
      },
      event);
  *a.mutable_updated_at() = now;
  a.set_version(a.version() + 1);
}

std::string ArticleStream(absl::string_view article_id) {
  return absl::StrCat("article-", article_id);
}

}  // namespace crm::service_desk
