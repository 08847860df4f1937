#include "libs/common/contact_fields.h"

#include <algorithm>
#include <cctype>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "libs/common/text.h"

namespace crm {
namespace {

constexpr size_t kMaxEmail = 254;

absl::Status Invalid(absl::string_view field, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", why));
}

// The length of the blank (ASCII whitespace or an invisible Unicode
// character) `s` starts with, or 0. Zero-width (non-)joiners count only
// with `joiners`: inside a name they belong to Persian and Indic spelling.
size_t BlankAt(absl::string_view s, bool joiners = true) {
  if (s.empty()) return 0;
  if (absl::ascii_isspace(static_cast<unsigned char>(s[0]))) return 1;
  // U+00A0 and U+00AD (soft hyphen); U+FEFF, U+180E, U+2000..U+200D,
  // U+202F, U+205F, U+2060 (word joiner), U+3000 in UTF-8.
  if (absl::StartsWith(s, "\xc2\xa0") || absl::StartsWith(s, "\xc2\xad")) return 2;
  for (absl::string_view blank : {"\xef\xbb\xbf", "\xe1\xa0\x8e", "\xe2\x80\xaf", "\xe2\x81\x9f",
                                  "\xe2\x81\xa0", "\xe3\x80\x80"}) {
    if (absl::StartsWith(s, blank)) return 3;
  }
  if (s.size() < 3 || s[0] != '\xe2') return 0;
  const auto third = static_cast<unsigned char>(s[2]);
  if (s[1] == '\x80') {
    if (third >= 0x80 && third <= (joiners ? 0x8d : 0x8b)) return 3;
    // Direction marks (U+200E, U+200F), line and paragraph separators and
    // embeddings (U+2028..U+202E): copied with a contact from a
    // right-to-left page or an address book, never part of it.
    if (third == 0x8e || third == 0x8f || (third >= 0xa8 && third <= 0xae)) return 3;
  }
  // Direction isolates, U+2066..U+2069.
  if (s[1] == '\x81' && third >= 0xa6 && third <= 0xa9) return 3;
  return 0;
}

// The length of the blank `s` ends with, or 0.
size_t BlankBefore(absl::string_view s) {
  for (size_t n = 1; n <= 3 && n <= s.size(); ++n) {
    if (BlankAt(s.substr(s.size() - n)) == n) return n;
  }
  return 0;
}

// A dash a spreadsheet typed for a hyphen: U+2010..U+2015.
size_t DashAt(absl::string_view s) {
  return s.size() >= 3 && s[0] == '\xe2' && s[1] == '\x80' &&
                 static_cast<unsigned char>(s[2]) >= 0x90 &&
                 static_cast<unsigned char>(s[2]) <= 0x95
             ? 3
             : 0;
}

}  // namespace

absl::string_view TrimContact(absl::string_view raw) {
  while (size_t n = BlankAt(raw)) raw.remove_prefix(n);
  while (size_t n = BlankBefore(raw)) raw.remove_suffix(n);
  return raw;
}

absl::StatusOr<std::string> NormalizeEmail(absl::string_view raw, absl::string_view field) {
  absl::string_view trimmed = TrimContact(raw);
  // Left from a CSV cell or a mail header: "ada@x.com", <ada@x.com>.
  for (absl::string_view pair : {"\"\"", "''", "<>", "()", "[]"}) {
    if (trimmed.size() >= 2 && trimmed.front() == pair[0] && trimmed.back() == pair[1]) {
      trimmed = TrimContact(trimmed.substr(1, trimmed.size() - 2));
      break;
    }
  }
  std::string email = absl::AsciiStrToLower(trimmed);
  if (email.size() > kMaxEmail) return Invalid(field, "longer than 254 bytes");
  const size_t at = email.find('@');
  if (at == std::string::npos || at == 0 || email.find('@', at + 1) != std::string::npos) {
    return Invalid(field, "not an email address");
  }
  const absl::string_view domain = absl::string_view(email).substr(at + 1);
  const size_t dot = domain.rfind('.');
  if (dot == absl::string_view::npos || dot + 1 == domain.size() || domain.front() == '.' ||
      domain.front() == '-' || domain.find("..") != absl::string_view::npos || !IsUtf8(email)) {
    return Invalid(field, "not an email address");
  }
  // Host names: letters, digits, dots and hyphens (international ones as
  // UTF-8). Also keeps the form stable: no quote or bracket ends it.
  for (const char c : domain) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '-' &&
        static_cast<unsigned char>(c) < 0x80) {
      return Invalid(field, "not an email address");
    }
  }
  for (size_t i = 0; i < email.size(); ++i) {
    const unsigned char c = email[i];
    if (c <= 0x20 || c == 0x7f || c == ',' || c == ';' || c == '<' || c == '>' || c == '"' ||
        BlankAt(absl::string_view(email).substr(i), /*joiners=*/false) > 0) {
      return Invalid(field, "not an email address");
    }
  }
  return email;
}

absl::StatusOr<std::string> NormalizePhone(absl::string_view raw, absl::string_view field) {
  absl::string_view s = TrimContact(raw);
  // Characters, not bytes: a no-break space or a dash takes two or three.
  if (std::count_if(s.begin(), s.end(), [](char c) { return (c & 0xC0) != 0x80; }) > 32) {
    return Invalid(field, "longer than 32 characters");
  }
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
    } else if (absl::StartsWith(s.substr(i), "\xe2\x80\xa8") ||
               absl::StartsWith(s.substr(i), "\xe2\x80\xa9")) {
      // A line or paragraph break inside: two lines pasted as one, not a
      // separator (as a tab or newline is not).
      return Invalid(field, "may contain only digits and separators");
    } else if (const size_t n = c == ' ' || static_cast<unsigned char>(c) >= 0x80
                                    ? std::max(BlankAt(s.substr(i)), DashAt(s.substr(i)))
                                    : 0;
               n > 0) {
      i += n - 1;
    } else if (c != '-' && c != '.' && c != '/' && c != '(' && c != ')') {
      return Invalid(field, "may contain only digits and separators");
    }
  }
  if (digits.size() < 8 || digits.size() > 15 || digits[0] == '0') {
    return Invalid(field, "must have 8 to 15 digits after + and not start with 0");
  }
  return absl::StrCat("+", digits);
}

}  // namespace crm
