#include "services/service-desk/domain/validation.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "libs/common/text.h"

namespace crm::service_desk {
namespace {

constexpr size_t kMaxRequestId = 128;
constexpr size_t kMaxId = 64;

}  // namespace

absl::Status InvalidField(absl::string_view field, absl::string_view reason) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", reason));
}

absl::Status MissingField(absl::string_view field, absl::string_view noun, absl::string_view id) {
  return absl::NotFoundError(absl::StrCat(field, ": ", noun, " ", id, " not found"));
}

absl::Status CheckText(absl::string_view field, absl::string_view value, size_t max,
                       bool multiline) {
  if (value.size() > max) return InvalidField(field, absl::StrCat("longer than ", max, " bytes"));
  if (HasControlCharacters(value, multiline)) {
    return InvalidField(field, "contains control characters");
  }
  if (!IsUtf8(value)) return InvalidField(field, "not valid UTF-8");
  return absl::OkStatus();
}

absl::Status CheckRequiredText(absl::string_view field, absl::string_view value, size_t max,
                               bool multiline) {
  if (absl::StripAsciiWhitespace(value).empty()) return InvalidField(field, "required");
  return CheckText(field, value, max, multiline);
}

absl::Status CheckRequestId(absl::string_view request_id) {
  return CheckRequiredText("request_id", request_id, kMaxRequestId);
}

absl::Status CheckId(absl::string_view field, absl::string_view id) {
  if (id.empty()) return InvalidField(field, "required");
  if (id.size() > kMaxId)
    return InvalidField(field, absl::StrCat("longer than ", kMaxId, " bytes"));
  for (unsigned char c : id) {
    if (c <= 0x20 || c >= 0x7f) return InvalidField(field, "must be printable ASCII");
  }
  return absl::OkStatus();
}

absl::Status CheckExpectedVersion(int64_t expected_version) {
  if (expected_version < 0) return InvalidField("expected_version", "negative");
  return absl::OkStatus();
}

}  // namespace crm::service_desk
