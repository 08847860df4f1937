#pragma once

#include <cstdint>
#include <limits>

namespace crm {

// a + b, held at the int64 bounds instead of overflowing: sums of amounts
// read from the topics (lifetime value, revenue, pipeline) must not wrap
// into a negative total, whatever a producer sent.
inline int64_t SaturatingAdd(int64_t a, int64_t b) {
  int64_t sum;
  if (!__builtin_add_overflow(a, b, &sum)) return sum;
  return b > 0 ? std::numeric_limits<int64_t>::max() : std::numeric_limits<int64_t>::min();
}

}  // namespace crm
