#pragma once

#include <cstddef>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace crm::service_desk {

// Input checks shared by the commands. Every error names the request field
// first: "field: reason".

// INVALID_ARGUMENT "field: reason".
absl::Status InvalidField(absl::string_view field, absl::string_view reason);
// NOT_FOUND for the record the caller named in `field`:
// "field: noun id not found", e.g. "ticket_id: ticket tkt_1 not found".
absl::Status MissingField(absl::string_view field, absl::string_view noun, absl::string_view id);

// At most `max` bytes, valid UTF-8, no control characters; `multiline`
// text may also hold newlines and tabs.
absl::Status CheckText(absl::string_view field, absl::string_view value, size_t max,
                       bool multiline = false);
// Like CheckText and not empty after trimming.
absl::Status CheckRequiredText(absl::string_view field, absl::string_view value, size_t max,
                               bool multiline = false);
// request_id: required, at most 128 bytes.
absl::Status CheckRequestId(absl::string_view request_id);
// An id another call handed out: required, at most 64 bytes, printable.
absl::Status CheckId(absl::string_view field, absl::string_view id);
// expected_version: 0 (any) or positive.
absl::Status CheckExpectedVersion(int64_t expected_version);

}  // namespace crm::service_desk
