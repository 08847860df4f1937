#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/strings/string_view.h"

namespace crm {

// Big-endian so that RocksDB's bytewise order equals numeric order.
inline void AppendBigEndian64(std::string* out, uint64_t v) {
  for (int shift = 56; shift >= 0; shift -= 8) {
    out->push_back(static_cast<char>((v >> shift) & 0xff));
  }
}

inline std::string BigEndian64(uint64_t v) {
  std::string s;
  AppendBigEndian64(&s, v);
  return s;
}

// Reads 8 bytes; the caller guarantees the size.
inline uint64_t ReadBigEndian64(absl::string_view s) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | static_cast<uint8_t>(s[i]);
  return v;
}

// "prefix\0" so that one prefix never matches the start of a longer one.
inline std::string PrefixKey(absl::string_view prefix) {
  std::string k(prefix);
  k.push_back('\0');
  return k;
}

}  // namespace crm
