// The service desk's request validators and its configuration on
// arbitrary input: the first byte picks the request, the rest is its
// protobuf encoding (or text: the settings file format and the plain
// field checks, knowledge base search). Beyond not crashing: errors are
// INVALID_ARGUMENT naming the field, and normalizing a ticket or an
// article is idempotent.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "crm/v1/service_desk.pb.h"
#include "fuzz/fuzz_input.h"
#include "services/service-desk/domain/article.h"
#include "services/service-desk/domain/article_search.h"
#include "services/service-desk/domain/settings.h"
#include "services/service-desk/domain/ticket_requests.h"
#include "services/service-desk/domain/validation.h"

namespace crm::fuzz {
namespace {

template <typename Request, typename Validate>
void Validated(absl::string_view payload, Validate validate, absl::string_view what) {
  Request request;
  if (!Decode(payload, request)) return;
  CheckValidation(validate(request), what);
}

void OpenTicket(absl::string_view payload) {
  crm::v1::OpenTicketRequest request;
  if (!Decode(payload, request)) return;
  auto normalized = service_desk::NormalizeOpenTicketRequest(request);
  CheckValidation(normalized.status(), "NormalizeOpenTicketRequest");
  if (!normalized.ok()) return;
  auto again = service_desk::NormalizeOpenTicketRequest(*normalized);
  Check(again.ok(), "a normalized ticket request is refused", again.status().ToString());
  Check(Same(*again, *normalized), "normalizing a ticket request twice changes it");
}

void Article(absl::string_view payload) {
  crm::v1::CreateArticleRequest request;
  if (!Decode(payload, request)) return;
  const std::vector<std::string> tags(request.tags().begin(), request.tags().end());
  auto content = service_desk::NormalizeArticleContent(request.title(), request.body(), tags,
                                                       request.product());
  CheckValidation(content.status(), "NormalizeArticleContent");
  if (content.ok()) {
    auto again = service_desk::NormalizeArticleContent(content->title, content->body, content->tags,
                                                       content->product);
    Check(again.ok(), "normalized article content is refused", again.status().ToString());
    Check(again->title == content->title && again->body == content->body &&
              again->tags == content->tags && again->product == content->product,
          "normalizing article content twice changes it");
  }
  auto normalized_tags = service_desk::NormalizeTags(tags, "tags");
  CheckValidation(normalized_tags.status(), "NormalizeTags");
  if (!normalized_tags.ok()) return;
  auto again = service_desk::NormalizeTags(*normalized_tags, "tags");
  Check(again.ok() && *again == *normalized_tags, "normalizing tags twice changes them");
}

void Settings(const crm::v1::ServiceDeskSettings& config) {
  auto settings = service_desk::DeskSettings::Create(config);
  CheckValidation(settings.status(), "DeskSettings::Create");
}

void Texts(absl::string_view text) {
  CheckValidation(service_desk::CheckText("subject", text, 200), "CheckText");
  CheckValidation(service_desk::CheckText("body", text, 4000, /*multiline=*/true), "CheckText");
  CheckValidation(service_desk::CheckRequiredText("subject", text, 200), "CheckRequiredText");
  CheckValidation(service_desk::CheckRequestId(text), "CheckRequestId");
  CheckValidation(service_desk::CheckId("ticket_id", text), "CheckId");
}

// Knowledge base search on any text a caller types or an article holds.
// Beyond not crashing: a query finds what the same text indexes, in any
// ASCII case, and text without a word character has no terms.
void SearchText(absl::string_view text) {
  const std::vector<std::string> tokens = service_desk::Tokenize(text);
  if (!service_desk::HasWordChar(text)) Check(tokens.empty(), "terms from text without a word");
  std::vector<std::string> distinct;
  absl::flat_hash_set<std::string> seen;
  for (const auto& t : tokens) {
    Check(!t.empty(), "an empty term");
    if (seen.insert(t).second) distinct.push_back(t);
  }
  const std::vector<service_desk::QueryWord> query = service_desk::QueryWords(text);
  Check(query.size() == distinct.size(), "a query's terms are not the text's distinct terms");
  for (size_t i = 0; i < query.size(); ++i) {
    Check(query[i].term == distinct[i], "a query's terms are not the text's distinct terms",
          query[i].term);
    Check(query[i].word.size() >= 2, "a one-letter query word", query[i].word);
  }
  Check(service_desk::Tokenize(absl::AsciiStrToUpper(text)) == tokens,
        "upper case text gives other terms");
  crm::v1::Article article;
  article.set_title(std::string(text));
  const auto indexed = service_desk::IndexTerms(article);
  for (const auto& t : distinct) Check(indexed.contains(t), "a title's term is not indexed", t);
}

}  // namespace
}  // namespace crm::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace crm;  // NOLINT: the request types and validators read better short
  namespace sd = service_desk;
  const auto [selector, payload] = fuzz::Choose(data, size);
  switch (selector % 17) {
    case 0:
      fuzz::OpenTicket(payload);
      break;
    case 1:
      fuzz::Validated<v1::AssignTicketRequest>(
          payload, [](const auto& r) { return sd::ValidateAssignTicket(r); }, "AssignTicket");
      break;
    case 2:
      fuzz::Validated<v1::ReplyToTicketRequest>(
          payload, [](const auto& r) { return sd::ValidateReplyToTicket(r); }, "ReplyToTicket");
      break;
    case 3:
      fuzz::Validated<v1::AddInternalNoteRequest>(
          payload, [](const auto& r) { return sd::ValidateAddInternalNote(r); }, "AddInternalNote");
      break;
    case 4:
      fuzz::Validated<v1::MarkTicketPendingRequest>(
          payload, [](const auto& r) { return sd::ValidateMarkTicketPending(r); },
          "MarkTicketPending");
      break;
    case 5:
      fuzz::Validated<v1::ResolveTicketRequest>(
          payload, [](const auto& r) { return sd::ValidateResolveTicket(r); }, "ResolveTicket");
      break;
    case 6:
      fuzz::Validated<v1::CloseTicketRequest>(
          payload, [](const auto& r) { return sd::ValidateCloseTicket(r); }, "CloseTicket");
      break;
    case 7:
      fuzz::Validated<v1::ReopenTicketRequest>(
          payload, [](const auto& r) { return sd::ValidateReopenTicket(r); }, "ReopenTicket");
      break;
    case 8:
      fuzz::Validated<v1::LinkSolutionArticleRequest>(
          payload, [](const auto& r) { return sd::ValidateLinkSolutionArticle(r); },
          "LinkSolutionArticle");
      break;
    case 9:
      fuzz::Validated<v1::SubmitCsatRequest>(
          payload, [](const auto& r) { return sd::ValidateSubmitCsat(r); }, "SubmitCsat");
      break;
    case 10:
      fuzz::Validated<v1::ListTicketsRequest>(
          payload, [](const auto& r) { return sd::ValidateListTickets(r); }, "ListTickets");
      break;
    case 11:
      fuzz::Article(payload);
      break;
    case 12: {
      v1::ServiceDeskSettings config;
      if (fuzz::Decode(payload, config)) fuzz::Settings(config);
      break;
    }
    case 13: {
      auto config = sd::DeskSettings::ParseText(payload);
      fuzz::CheckValidation(config.status(), "DeskSettings::ParseText");
      if (config.ok()) fuzz::Settings(*config);
      break;
    }
    case 14:
      fuzz::Validated<v1::GetTicketRequest>(
          payload, [](const auto& r) { return sd::ValidateGetTicket(r); }, "GetTicket");
      break;
    case 16:
      fuzz::SearchText(payload);
      break;
    default:
      fuzz::Texts(payload);
      break;
  }
  return 0;
}
