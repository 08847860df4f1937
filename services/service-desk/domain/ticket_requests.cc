#include "services/service-desk/domain/ticket_requests.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "libs/common/status_macros.h"
#include "services/service-desk/domain/validation.h"

namespace crm::service_desk {
namespace {

constexpr size_t kMaxSubject = 200;
constexpr size_t kMaxText = 20000;
constexpr size_t kMaxName = 100;
constexpr size_t kMaxNote = 5000;
constexpr size_t kMaxComment = 2000;
// Reasons are short operational notes kept in plain text (docs/security.md),
// bounded as leads' and sales' reasons are, not as sealed notes.
constexpr size_t kMaxReason = 500;

absl::Status CheckTicketRef(const std::string& request_id, const std::string& ticket_id,
                            int64_t expected_version) {
  CRM_RETURN_IF_ERROR(CheckRequestId(request_id));
  CRM_RETURN_IF_ERROR(CheckId("ticket_id", ticket_id));
  return CheckExpectedVersion(expected_version);
}

std::string Trimmed(absl::string_view s) { return std::string(absl::StripAsciiWhitespace(s)); }

}  // namespace

absl::StatusOr<crm::v1::OpenTicketRequest> NormalizeOpenTicketRequest(
    const crm::v1::OpenTicketRequest& request) {
  crm::v1::OpenTicketRequest r = request;
  CRM_RETURN_IF_ERROR(CheckRequestId(r.request_id()));
  CRM_RETURN_IF_ERROR(CheckId("customer_id", r.customer_id()));
  if (r.channel() == crm::v1::TICKET_CHANNEL_UNSPECIFIED)
    return InvalidField("channel", "required");
  // A value set but unknown to this build (a newer client) is no missing one.
  if (!crm::v1::TicketChannel_IsValid(r.channel())) return InvalidField("channel", "unknown");
  r.set_subject(Trimmed(r.subject()));
  r.set_product(Trimmed(r.product()));
  r.set_category(Trimmed(r.category()));
  CRM_RETURN_IF_ERROR(CheckRequiredText("subject", r.subject(), kMaxSubject));
  CRM_RETURN_IF_ERROR(CheckText("description", r.description(), kMaxText, /*multiline=*/true));
  CRM_RETURN_IF_ERROR(CheckText("product", r.product(), kMaxName));
  CRM_RETURN_IF_ERROR(CheckText("category", r.category(), kMaxName));
  if (!crm::v1::TicketPriority_IsValid(r.priority())) return InvalidField("priority", "unknown");
  if (r.priority() == crm::v1::TICKET_PRIORITY_UNSPECIFIED) {
    r.set_priority(crm::v1::TICKET_PRIORITY_NORMAL);
  }
  return r;
}

absl::Status ValidateAssignTicket(const crm::v1::AssignTicketRequest& r) {
  CRM_RETURN_IF_ERROR(CheckTicketRef(r.request_id(), r.ticket_id(), r.expected_version()));
  if (r.assignee_id().empty() && r.team_id().empty()) {
    return InvalidField("assignee_id", "an assignee or a team is required");
  }
  if (!r.assignee_id().empty()) CRM_RETURN_IF_ERROR(CheckId("assignee_id", r.assignee_id()));
  if (!r.team_id().empty()) CRM_RETURN_IF_ERROR(CheckId("team_id", r.team_id()));
  return absl::OkStatus();
}

absl::Status ValidateReplyToTicket(const crm::v1::ReplyToTicketRequest& r) {
  CRM_RETURN_IF_ERROR(CheckTicketRef(r.request_id(), r.ticket_id(), r.expected_version()));
  if (r.author_type() != crm::v1::AUTHOR_TYPE_AGENT &&
      r.author_type() != crm::v1::AUTHOR_TYPE_CUSTOMER) {
    return InvalidField("author_type", "must be agent or customer");
  }
  return CheckRequiredText("body", r.body(), kMaxText, /*multiline=*/true);
}

absl::Status ValidateAddInternalNote(const crm::v1::AddInternalNoteRequest& r) {
  CRM_RETURN_IF_ERROR(CheckTicketRef(r.request_id(), r.ticket_id(), r.expected_version()));
  return CheckRequiredText("body", r.body(), kMaxText, /*multiline=*/true);
}

absl::Status ValidateMarkTicketPending(const crm::v1::MarkTicketPendingRequest& r) {
  return CheckTicketRef(r.request_id(), r.ticket_id(), r.expected_version());
}

absl::Status ValidateResolveTicket(const crm::v1::ResolveTicketRequest& r) {
  CRM_RETURN_IF_ERROR(CheckTicketRef(r.request_id(), r.ticket_id(), r.expected_version()));
  CRM_RETURN_IF_ERROR(
      CheckText("resolution_note", r.resolution_note(), kMaxNote, /*multiline=*/true));
  if (!r.solution_article_id().empty()) {
    CRM_RETURN_IF_ERROR(CheckId("solution_article_id", r.solution_article_id()));
  }
  return absl::OkStatus();
}

absl::Status ValidateCloseTicket(const crm::v1::CloseTicketRequest& r) {
  return CheckTicketRef(r.request_id(), r.ticket_id(), r.expected_version());
}

absl::Status ValidateReopenTicket(const crm::v1::ReopenTicketRequest& r) {
  CRM_RETURN_IF_ERROR(CheckTicketRef(r.request_id(), r.ticket_id(), r.expected_version()));
  return CheckText("reason", r.reason(), kMaxReason, /*multiline=*/true);
}

absl::Status ValidateLinkSolutionArticle(const crm::v1::LinkSolutionArticleRequest& r) {
  CRM_RETURN_IF_ERROR(CheckTicketRef(r.request_id(), r.ticket_id(), r.expected_version()));
  return CheckId("article_id", r.article_id());
}

absl::Status ValidateSubmitCsat(const crm::v1::SubmitCsatRequest& r) {
  CRM_RETURN_IF_ERROR(CheckRequestId(r.request_id()));
  CRM_RETURN_IF_ERROR(CheckId("ticket_id", r.ticket_id()));
  if (r.score() < 1 || r.score() > 5) return InvalidField("score", "must be 1 to 5");
  if (r.has_nps() && (r.nps() < 0 || r.nps() > 10)) return InvalidField("nps", "must be 0 to 10");
  return CheckText("comment", r.comment(), kMaxComment, /*multiline=*/true);
}

namespace {

// `field`: the request's name for the page, e.g. "page".
absl::Status CheckPageSize(absl::string_view field, const crm::v1::PageRequest& page) {
  if (page.page_size() < 0) return InvalidField(absl::StrCat(field, ".page_size"), "negative");
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateGetTicket(const crm::v1::GetTicketRequest& r) {
  CRM_RETURN_IF_ERROR(CheckId("ticket_id", r.ticket_id()));
  return CheckPageSize("messages_page", r.messages_page());
}

absl::Status ValidateListTickets(const crm::v1::ListTicketsRequest& r) {
  if (!r.customer_id().empty()) CRM_RETURN_IF_ERROR(CheckId("customer_id", r.customer_id()));
  if (!r.assignee_id().empty()) CRM_RETURN_IF_ERROR(CheckId("assignee_id", r.assignee_id()));
  if (!r.team_id().empty()) CRM_RETURN_IF_ERROR(CheckId("team_id", r.team_id()));
  if (r.unassigned() && !r.assignee_id().empty()) {
    return InvalidField("unassigned", "not with assignee_id");
  }
  if (!crm::v1::TicketStatus_IsValid(r.status())) return InvalidField("status", "unknown");
  if (!crm::v1::TicketPriority_IsValid(r.priority())) return InvalidField("priority", "unknown");
  return CheckPageSize("page", r.page());
}

}  // namespace crm::service_desk
