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

// The length of the control character at `text[i]` (C0 or DEL) or, outside
// free text, of the line break there (in UTF-8); 0 for none. Free text
// (`multiline`: a note, a reason, a reply) may break lines and hold tabs, as
// a form or a spreadsheet cell gives them, also with Unicode's breaks (NEL,
// U+2028, U+2029); a name or a key may not, as it shows on one line in lists
// and exports. Other C1 controls pass: text decoded from Windows-1252 as
// Latin-1 carries them for quotes and dashes (O\u0092Brien).
inline size_t ControlLengthAt(absl::string_view text, size_t i, bool multiline) {
  const unsigned char c = static_cast<unsigned char>(text[i]);
  if (c == '\n' || c == '\r' || c == '\t') return multiline ? 0 : 1;
  if (c < 0x20 || c == 0x7f) return 1;
  if (multiline || i + 1 >= text.size()) return 0;
  const unsigned char next = static_cast<unsigned char>(text[i + 1]);
  // NEL, U+0085: C2 85.
  if (c == 0xc2 && next == 0x85) return 2;
  // U+2028 LINE SEPARATOR and U+2029 PARAGRAPH SEPARATOR: E2 80 A8/A9.
  if (c == 0xe2 && next == 0x80 && i + 2 < text.size() &&
      (static_cast<unsigned char>(text[i + 2]) == 0xa8 ||
       static_cast<unsigned char>(text[i + 2]) == 0xa9)) {
    return 3;
  }
  return 0;
}

// Whether `text` holds a control character or, unless `multiline`, a line
// break (ControlLengthAt).
inline bool HasControlCharacters(absl::string_view text, bool multiline) {
  for (size_t i = 0; i < text.size(); ++i) {
    if (ControlLengthAt(text, i, multiline) > 0) return true;
  }
  return false;
}

// `text` on one line: each control character and line break a space. For
// values another service wrote under older rules (an event's company,
// territory), taken in rather than refused.
inline std::string OneLine(absl::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    if (const size_t n = ControlLengthAt(text, i, /*multiline=*/false); n > 0) {
      out.push_back(' ');
      i += n;
    } else {
      out.push_back(text[i++]);
    }
  }
  return out;
}

// The lowercase of a capital letter of ASCII, Latin-1, Latin Extended-A,
// Greek or Cyrillic (the alphabets of Europe's languages); any other code
// point as it is, but for the Greek final sigma, folded to σ as a capital Σ
// lowers to it. Not full Unicode case folding: no "ß" to "ss", and the
// Turkish dotted capital I stays.
inline char32_t LowerLetter(char32_t c) {
  if ((c >= 'A' && c <= 'Z') || (c >= 0xC0 && c <= 0xDE && c != 0xD7)) return c + 0x20;
  if (c >= 0x100 && c <= 0x17E) {
    if (c == 0x178) return 0xFF;  // Ÿ
    // Capitals are the even code point of each pair, then from Ĺ (U+0139)
    // to Ň and from Ź (U+0179) the odd one.
    const bool odd_pairs = (c >= 0x139 && c <= 0x148) || c >= 0x179;
    const bool skip = c == 0x130 || c == 0x131 || c == 0x138 || c == 0x149;
    if (!skip && (c % 2 == 1) == odd_pairs) return c + 1;
    return c;
  }
  if ((c >= 0x391 && c <= 0x3AB && c != 0x3A2) || (c >= 0x410 && c <= 0x42F)) return c + 0x20;
  if (c >= 0x400 && c <= 0x40F) return c + 0x50;
  // Ґ and the letters of Ukrainian, Kazakh, Tatar...: capital first in
  // each pair, but odd from Ӂ to Ӎ; Ӏ pairs with ӏ.
  if (((c >= 0x48A && c <= 0x4BF) || (c >= 0x4D0 && c <= 0x52F)) && c % 2 == 0) return c + 1;
  if (c >= 0x4C1 && c <= 0x4CD && c % 2 == 1) return c + 1;
  if (c == 0x4C0) return 0x4CF;
  if (c == 0x3C2) return 0x3C3;  // ς
  switch (c) {                   // Greek capitals with tonos
    case 0x386:
      return 0x3AC;
    case 0x388:
    case 0x389:
    case 0x38A:
      return c + 0x25;
    case 0x38C:
      return 0x3CC;
    case 0x38E:
    case 0x38F:
      return c + 0x3F;
    default:
      return c;
  }
}

// `text` with the letters LowerLetter knows lowercased: "Änderung" and
// "änderung" are one word. Malformed UTF-8 is copied as it is.
inline std::string Utf8ToLower(absl::string_view text) {
  std::string out(text);
  for (size_t i = 0; i < out.size();) {
    const size_t n = Utf8SequenceAt(out, i);
    if (n == 1) {
      out[i] = static_cast<char>(LowerLetter(static_cast<unsigned char>(out[i])));
    } else if (n == 2) {
      // Every letter LowerLetter changes is below U+0800, and so is its
      // lowercase: two bytes stay two bytes, in place.
      const char32_t c = ((static_cast<unsigned char>(out[i]) & 0x1F) << 6) |
                         (static_cast<unsigned char>(out[i + 1]) & 0x3F);
      const char32_t lower = LowerLetter(c);
      out[i] = static_cast<char>(0xC0 | (lower >> 6));
      out[i + 1] = static_cast<char>(0x80 | (lower & 0x3F));
    }
    i += n == 0 ? 1 : n;
  }
  return out;
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
