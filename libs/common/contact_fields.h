#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace crm {

// The one normal form of a person's email and phone in every service, so
// the same person is matched (dedupe, 360 view) wherever they were typed.

// Lowercased, trimmed, at most 254 bytes; INVALID_ARGUMENT naming `field`
// when malformed.
absl::StatusOr<std::string> NormalizeEmail(absl::string_view raw, absl::string_view field);
// E.164: "+" then 8 to 15 digits; separators (space . - ( )) dropped and a
// leading "00" read as "+".
absl::StatusOr<std::string> NormalizePhone(absl::string_view raw, absl::string_view field);

}  // namespace crm
