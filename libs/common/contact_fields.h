#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace crm {

// The one normal form of a person's email and phone in every service, so
// the same person is matched (dedupe, 360 view) wherever they were typed.

// `raw` without the blanks around it: ASCII whitespace and the invisible
// characters pasted from spreadsheets and forms (no-break and other Unicode
// spaces, zero-width spaces, a byte-order mark). Empty when that is all.
absl::string_view TrimContact(absl::string_view raw);

// Lowercased, trimmed (TrimContact, then one pair of quotes or brackets
// around it: "ada@x.com", <ada@x.com>), at most 254 bytes; INVALID_ARGUMENT
// naming `field` when malformed or holding a blank inside.
absl::StatusOr<std::string> NormalizeEmail(absl::string_view raw, absl::string_view field);
// E.164: "+" then 8 to 15 digits; separators (spaces, . - / ( ) and dashes)
// dropped and a leading "00" read as "+".
absl::StatusOr<std::string> NormalizePhone(absl::string_view raw, absl::string_view field);

}  // namespace crm
