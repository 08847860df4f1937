#pragma once

#include <string>

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

}  // namespace crm
