#pragma once

#include "absl/strings/match.h"
#include "absl/strings/string_view.h"

namespace crm::pii {

// A sealed PII value: "pii1." key_id "." base64url(nonce || ciphertext ||
// tag) (libs/common/pii/field_sealer.h). Pure, for domain code that must
// leave ciphertext alone.
inline constexpr absl::string_view kSealedPrefix = "pii1.";

inline bool IsSealed(absl::string_view value) { return absl::StartsWith(value, kSealedPrefix); }

}  // namespace crm::pii
