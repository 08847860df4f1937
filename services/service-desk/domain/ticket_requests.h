#pragma once

#include "absl/status/statusor.h"
#include "crm/v1/service_desk.pb.h"

namespace crm::service_desk {

// Validation of the ticket API's requests, before anything is loaded.
// Errors are INVALID_ARGUMENT naming the first offending field.

// Trims the texts and defaults the priority to normal.
absl::StatusOr<crm::v1::OpenTicketRequest> NormalizeOpenTicketRequest(
    const crm::v1::OpenTicketRequest& request);
absl::Status ValidateAssignTicket(const crm::v1::AssignTicketRequest& request);
absl::Status ValidateReplyToTicket(const crm::v1::ReplyToTicketRequest& request);
absl::Status ValidateAddInternalNote(const crm::v1::AddInternalNoteRequest& request);
absl::Status ValidateMarkTicketPending(const crm::v1::MarkTicketPendingRequest& request);
absl::Status ValidateResolveTicket(const crm::v1::ResolveTicketRequest& request);
absl::Status ValidateCloseTicket(const crm::v1::CloseTicketRequest& request);
absl::Status ValidateReopenTicket(const crm::v1::ReopenTicketRequest& request);
absl::Status ValidateLinkSolutionArticle(const crm::v1::LinkSolutionArticleRequest& request);
absl::Status ValidateSubmitCsat(const crm::v1::SubmitCsatRequest& request);
absl::Status ValidateGetTicket(const crm::v1::GetTicketRequest& request);
absl::Status ValidateListTickets(const crm::v1::ListTicketsRequest& request);

}  // namespace crm::service_desk
