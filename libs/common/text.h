#pragma once

#include <string>

#include "absl/algorithm/container.h"
#include "absl/strings/string_view.h"

namespace crm {

// The longest prefix of `text` of at most `max_bytes` that does not split
// a UTF-8 sequence: a name derived from longer ones, cut to fit a limit.
inline std::string TruncateUtf8(absl::string_view text, size_t max_bytes) {
  if (text.size() <= max_bytes) return std::string(text);
  size_t end = max_bytes;
  // Back off continuation bytes (10xxxxxx) to the start of their sequence.
  while (end > 0 && (static_cast<unsigned char>(text[end]) & 0xC0) == 0x80) --end;
  return std::string(text.substr(0, end));
}

// The length (1 to 4) of the well-formed UTF-8 sequence at `text[i]`, or 0
// for a byte that starts none: a stray continuation, a sequence cut short,
// an overlong form, a surrogate, a code point past U+10FFFF (RFC 3629).
inline size_t Utf8SequenceAt(absl::string_view text, size_t i) {
  const unsigned char c = static_cast<unsigned char>(text[i]);
  size_t extra = 0;
  if (c < 0x80) {
    return 1;
  } else if ((c & 0xE0) == 0xC0 && c >= 0xC2) {
    extra = 1;
  } else if ((c & 0xF0) == 0xE0) {
    extra = 2;
  } else if ((c & 0xF8) == 0xF0 && c <= 0xF4) {
    extra = 3;
  } else {
    return 0;
  }
  if (i + extra >= text.size()) return 0;
  for (size_t k = 1; k <= extra; ++k) {
    if ((static_cast<unsigned char>(text[i + k]) & 0xC0) != 0x80) return 0;
  }
  // The second byte's range where the lead alone does not settle it.
  const unsigned char second = static_cast<unsigned char>(text[i + 1]);
  if ((c == 0xE0 && second < 0xA0) || (c == 0xED && second > 0x9F) ||
      (c == 0xF0 && second < 0x90) || (c == 0xF4 && second > 0x8F)) {
    return 0;
  }
  return extra + 1;
}

// An ISO 4217 code as money carries it: three capital letters ("EUR").
inline bool IsCurrencyCode(absl::string_view code) {
  return code.size() == 3 && absl::c_all_of(code, [](char c) { return c >= 'A' && c <= 'Z'; });
}

// Whether `text` holds a control character (C0 or DEL). Free text
// (`multiline`: a note, a reason, a reply) may break lines and hold tabs, as
// a form or a spreadsheet cell gives them; a name or a key may not.
inline bool HasControlCharacters(absl::string_view text, bool multiline) {
  return absl::c_any_of(text, [multiline](char ch) {
    const unsigned char c = static_cast<unsigned char>(ch);
    if (multiline && (c == '\n' || c == '\r' || c == '\t')) return false;
    return c < 0x20 || c == 0x7f;
  });
}

inline bool IsUtf8(absl::string_view text) {
  for (size_t i = 0; i < text.size();) {
    const size_t n = Utf8SequenceAt(text, i);
    if (n == 0) return false;
    i += n;
  }
  return true;
}

}  // namespace crm
