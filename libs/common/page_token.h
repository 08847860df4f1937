#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "crm/v1/common.pb.h"
#include "google/protobuf/message.h"

namespace crm {

// Page tokens as clients see them: where the next page starts (the list's
// own position: a key, an offset) sealed with a fingerprint of the query
// it belongs to, i.e. the request without its page token. A token passed
// with other filters, to another list, or damaged is INVALID_ARGUMENT
// instead of a position that silently skips or repeats rows (or ends the
// list early). page_size may change between pages: it is no filter.

// The token a reply gives for `position`; empty (the end) stays empty.
std::string SealPageToken(const google::protobuf::Message& request, absl::string_view position);

// The position `token` names for `request`; empty for an empty token.
// `field` names the token in the error ("page.page_token").
absl::StatusOr<std::string> OpenPageToken(const google::protobuf::Message& request,
                                          absl::string_view token, absl::string_view field);

// `page` with its token opened: the PageRequest the list itself reads.
absl::StatusOr<crm::v1::PageRequest> OpenPage(const google::protobuf::Message& request,
                                              const crm::v1::PageRequest& page,
                                              absl::string_view field = "page.page_token");

// The rows a page holds: `fallback` for a page_size of 0, and a page_size
// over `max` taken as `max`, alike in every service (a client asking for
// more than a list gives gets full pages, not an error). A negative size is
// INVALID_ARGUMENT naming `field` ("page.page_size").
absl::StatusOr<size_t> PageSize(int32_t page_size, absl::string_view field, size_t fallback,
                                size_t max);

}  // namespace crm
