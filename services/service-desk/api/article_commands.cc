#include "services/service-desk/api/article_commands.h"

#include <algorithm>
#include <optional>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "libs/common/envelope.h"
#include "libs/common/ids.h"
#include "libs/common/page_token.h"
#include "libs/common/reply_budget.h"
#include "libs/common/status_macros.h"
#include "services/service-desk/domain/article_search.h"
#include "services/service-desk/domain/validation.h"

namespace crm::service_desk {
namespace {

constexpr size_t kMaxQuery = 500;
constexpr size_t kDefaultSearchPage = 10;
constexpr size_t kMaxSearchPage = 100;
constexpr size_t kMaxQueryTerms = 20;

// Every article command names its article in the request's article_id.
absl::Status MissingArticle(absl::string_view article_id) {
  return MissingField("article_id", "article", article_id);
}

std::vector<std::string> ToVector(const google::protobuf::RepeatedPtrField<std::string>& tags) {
  return {tags.begin(), tags.end()};
}

}  // namespace

absl::StatusOr<crm::v1::Article> ArticleCommands::Execute(const std::string& request_key,
                                                          const std::string& article_id,
                                                          int64_t expected_version,
                                                          EventContext ctx,
                                                          const ArticleCommand& command) {
  const std::string stream = ArticleStream(article_id);
  // Under the lock: a retry that came while the first attempt was writing
  // must get its result, not a decision on the state it made. The store's
  // lock, shared with the ticket commands that link articles.
  auto guard = store_.article_locks().Lock({stream});
  CRM_ASSIGN_OR_RETURN(auto earlier, store_.events().FindResponse(request_key));
  crm::v1::Article article;
  if (earlier.has_value()) {
    if (!article.ParseFromString(*earlier)) return absl::DataLossError("corrupt stored response");
    return article;
  }
  CRM_ASSIGN_OR_RETURN(auto loaded, store_.LoadArticle(article_id));
  if (!loaded && expected_version != 0) return MissingArticle(article_id);
  const int64_t version = loaded ? loaded->version : EventStore::kNoStream;
  if (expected_version != 0 && expected_version != version) {
    return absl::AbortedError(absl::StrCat("article ", article_id, " is at version ", version,
                                           ", not ", expected_version));
  }
  std::optional<crm::v1::Article> before;
  if (loaded) before = std::move(loaded->state);
  auto decided = Decide(before, command);
  // The domain's command carries no article id; the id is added here.
  if (!before && absl::IsNotFound(decided.status())) return MissingArticle(article_id);
  if (!decided.ok()) return decided.status();
  const std::vector<ArticleEvent>& events = *decided;

  // After the article's last event, as for tickets: a clock stepped back
  // would date a revision before the one it replaces.
  const absl::Time now = clock_();
  ctx.occurred_at = before ? StampedAfter(now, before->updated_at()) : now;
  article = before.value_or(crm::v1::Article());
  AppendRequest append;
  append.stream = stream;
  append.expected_version = version;
  for (const auto& event : events) {
    Apply(article, event, ctx.occurred_at);
    // Articles belong to no customer: the envelope's partition key is empty.
    std::visit(
        [&](const auto& payload) { append.events.push_back(MakeEnvelope(payload, "", ctx)); },
        event);
  }
  if (!events.empty()) append.projection_writes = store_.ArticleWrites(before, article);
  append.state = article.SerializeAsString();
  append.request_key = request_key;
  append.response = append.state;
  CRM_ASSIGN_OR_RETURN(auto result, store_.events().Append(std::move(append)));
  if (result.replayed && !article.ParseFromString(result.response)) {
    return absl::DataLossError("corrupt stored response");
  }
  return article;
}

absl::StatusOr<crm::v1::Article> ArticleCommands::CreateArticle(
    const crm::v1::CreateArticleRequest& r, EventContext ctx) {
  CRM_RETURN_IF_ERROR(CheckRequestId(r.request_id()));
  CRM_ASSIGN_OR_RETURN(
      auto content, NormalizeArticleContent(r.title(), r.body(), ToVector(r.tags()), r.product()));
  if (ctx.correlation_id.empty()) ctx.correlation_id = r.request_id();
  const std::string id = NewId("art");
  return Execute(CallerRequestKey(ctx, absl::StrCat("CreateArticle/", r.request_id()), r), id, 0,
                 ctx, service_desk::CreateArticle{id, ctx.actor, std::move(content)});
}

absl::StatusOr<crm::v1::Article> ArticleCommands::UpdateArticle(
    const crm::v1::UpdateArticleRequest& r, EventContext ctx) {
  CRM_RETURN_IF_ERROR(CheckRequestId(r.request_id()));
  CRM_RETURN_IF_ERROR(CheckId("article_id", r.article_id()));
  CRM_RETURN_IF_ERROR(CheckExpectedVersion(r.expected_version()));
  CRM_ASSIGN_OR_RETURN(
      auto content, NormalizeArticleContent(r.title(), r.body(), ToVector(r.tags()), r.product()));
  if (ctx.correlation_id.empty()) ctx.correlation_id = r.request_id();
  return Execute(CallerRequestKey(ctx, absl::StrCat("UpdateArticle/", r.request_id()), r),
                 r.article_id(), r.expected_version(), ctx, ReviseArticle{std::move(content)});
}

absl::StatusOr<crm::v1::Article> ArticleCommands::PublishArticle(
    const crm::v1::PublishArticleRequest& r, EventContext ctx) {
  CRM_RETURN_IF_ERROR(CheckRequestId(r.request_id()));
  CRM_RETURN_IF_ERROR(CheckId("article_id", r.article_id()));
  CRM_RETURN_IF_ERROR(CheckExpectedVersion(r.expected_version()));
  if (ctx.correlation_id.empty()) ctx.correlation_id = r.request_id();
  return Execute(CallerRequestKey(ctx, absl::StrCat("PublishArticle/", r.request_id()), r),
                 r.article_id(), r.expected_version(), ctx, service_desk::PublishArticle{});
}

absl::StatusOr<crm::v1::Article> ArticleCommands::UnpublishArticle(
    const crm::v1::UnpublishArticleRequest& r, EventContext ctx) {
  CRM_RETURN_IF_ERROR(CheckRequestId(r.request_id()));
  CRM_RETURN_IF_ERROR(CheckId("article_id", r.article_id()));
  CRM_RETURN_IF_ERROR(CheckExpectedVersion(r.expected_version()));
  if (ctx.correlation_id.empty()) ctx.correlation_id = r.request_id();
  return Execute(CallerRequestKey(ctx, absl::StrCat("UnpublishArticle/", r.request_id()), r),
                 r.article_id(), r.expected_version(), ctx, service_desk::UnpublishArticle{});
}

absl::StatusOr<crm::v1::Article> ArticleCommands::GetArticle(const crm::v1::GetArticleRequest& r,
                                                             bool drafts) const {
  CRM_RETURN_IF_ERROR(CheckId("article_id", r.article_id()));
  auto article = store_.GetArticle(r.article_id());
  if (absl::IsNotFound(article.status()) || (article.ok() && !drafts && !article->published())) {
    return MissingArticle(r.article_id());
  }
  return article;
}

absl::StatusOr<crm::v1::SearchArticlesResponse> ArticleCommands::SearchArticles(
    const crm::v1::SearchArticlesRequest& r) const {
  CRM_RETURN_IF_ERROR(CheckText("query", r.query(), kMaxQuery));
  CRM_ASSIGN_OR_RETURN(auto tags, NormalizeTags(ToVector(r.tags()), "tags"));
  CRM_RETURN_IF_ERROR(CheckText("product", r.product(), 100));
  CRM_ASSIGN_OR_RETURN(const size_t page_size, PageSize(r.page().page_size(), "page.page_size",
                                                        kDefaultSearchPage, kMaxSearchPage));
  CRM_ASSIGN_OR_RETURN(const std::string position,
                       OpenPageToken(r, r.page().page_token(), "page.page_token"));
  // "offset@digest": the digest of the ids ranked before the offset. A
  // token issued before digests were in it holds the offset alone.
  const std::vector<absl::string_view> parts = absl::StrSplit(position, '@');
  size_t offset = 0;
  std::optional<uint64_t> before;
  if (!position.empty()) {
    uint64_t digest = 0;
    if (parts.size() > 2 || !absl::SimpleAtoi(parts[0], &offset) ||
        (parts.size() == 2 && !absl::SimpleHexAtoi(parts[1], &digest))) {
      return InvalidField("page.page_token", "malformed");
    }
    if (parts.size() == 2) before = digest;
  }
  const std::vector<QueryWord> query = QueryWords(r.query());
  std::vector<std::string> words;
  absl::flat_hash_map<std::string, std::string> typed;  // term -> the query's word
  for (const auto& w : query) {
    words.push_back(w.term);
    typed.emplace(w.term, w.word);
  }
  if (words.size() > kMaxQueryTerms) {
    return InvalidField("query", absl::StrCat("more than ", kMaxQueryTerms, " words"));
  }
  crm::v1::SearchArticlesResponse response;
  // A query of stop words only matches nothing rather than everything,
  // filters or not (an empty query lists the filtered articles). One with
  // no word at all (spaces, a stray mark) is an empty query.
  const bool has_words = HasWordChar(r.query());
  if (words.empty() && has_words) return response;

  // Trimmed as articles' products are when written.
  const std::string product(absl::StripAsciiWhitespace(r.product()));
  CRM_ASSIGN_OR_RETURN(auto page, store_.SearchArticles(words, tags, product, offset, page_size));
  // Rankings are computed per call: an article published, edited or
  // withdrawn since the previous page moves the hits before this one.
  if (before.has_value() && *before != page.before_digest) {
    return absl::AbortedError(
        "page.page_token: the knowledge base changed since the previous page (an article was "
        "published, edited or withdrawn); search again from the first page");
  }
  uint64_t digest = page.before_digest;
  auto next_token = [&] {
    return SealPageToken(r, absl::StrCat(offset + response.hits_size(), "@", absl::Hex(digest)));
  };
  // 100 articles of 100 KB would be 10 MB.
  ReplyBudget budget;
  for (auto& hit : page.hits) {
    if (!budget.Take(hit.ByteSizeLong())) {
      response.set_next_page_token(next_token());
      return response;
    }
    digest = DeskStore::RankDigest(digest, hit.article().article_id());
    // As the caller wrote them, not as terms ("battery", not "batteri").
    for (auto& term : *hit.mutable_matched_terms()) {
      if (auto it = typed.find(term); it != typed.end()) term = it->second;
    }
    *response.add_hits() = std::move(hit);
  }
  if (page.more) response.set_next_page_token(next_token());
  return response;
}

}  // namespace crm::service_desk
