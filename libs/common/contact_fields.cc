#include "libs/common/contact_fields.h"

#include <cctype>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace crm {
namespace {

constexpr size_t kMaxEmail = 254;

absl::Status Invalid(absl::string_view field, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", why));
}

}  // namespace

absl::StatusOr<std::string> NormalizeEmail(absl::string_view raw, absl::string_view field) {
  std::string email = absl::AsciiStrToLower(absl::StripAsciiWhitespace(raw));
  if (email.size() > kMaxEmail) return Invalid(field, "longer than 254 bytes");
  const size_t at = email.find('@');
  if (at == std::string::npos || at == 0 || email.find('@', at + 1) != std::string::npos) {
    return Invalid(field, "not an email address");
  }
  const absl::string_view domain = absl::string_view(email).substr(at + 1);
  const size_t dot = domain.rfind('.');
  if (dot == absl::string_view::npos || dot == 0 || dot + 1 == domain.size() ||
      domain.find("..") != absl::string_view::npos) {
    return Invalid(field, "not an email address");
  }
  for (unsigned char c : email) {
    if (c <= 0x20 || c == 0x7f || c == ',' || c == ';' || c == '<' || c == '>') {
      return Invalid(field, "not an email address");
    }
  }
  return email;
}

absl::StatusOr<std::string> NormalizePhone(absl::string_view raw, absl::string_view field) {
  absl::string_view s = absl::StripAsciiWhitespace(raw);
  if (s.size() > 32) return Invalid(field, "longer than 32 characters");
  std::string digits;
  bool plus = false;
  if (absl::ConsumePrefix(&s, "+")) {
    plus = true;
  } else if (absl::ConsumePrefix(&s, "00")) {
    plus = true;
  }
  if (!plus) return Invalid(field, "must be in international form (+ and country code)");
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    // "+44 (0)20 ...": the trunk prefix dialled only at home, not part of
    // the number.
    if (s.substr(i, 3) == "(0)") {
      i += 2;
      continue;
    }
    if (std::isdigit(static_cast<unsigned char>(c))) {
      digits.push_back(c);
    } else if (c != ' ' && c != '-' && c != '.' && c != '(' && c != ')') {
      return Invalid(field, "may contain only digits and separators");
    }
  }
  if (digits.size() < 8 || digits.size() > 15 || digits[0] == '0') {
    return Invalid(field, "must have 8 to 15 digits after + and not start with 0");
  }
  return absl::StrCat("+", digits);
}

}  // namespace crm
