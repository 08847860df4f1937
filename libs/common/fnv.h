#pragma once

#include <cstdint>

#include "absl/strings/string_view.h"

namespace crm {

// FNV-1a, 64 bits: a digest that tells whether two runs saw the same bytes
// in the same order (views after a rebuild, hits before a page). Not for
// anything an adversary chooses to collide.
class Fnv1a64 {
 public:
  static constexpr uint64_t kOffsetBasis = 0xcbf29ce484222325ULL;

  // Continues from `state`, a value() of earlier fields.
  explicit Fnv1a64(uint64_t state = kOffsetBasis) : h_(state) {}

  // The bytes alone: plain FNV-1a.
  Fnv1a64& AddBytes(absl::string_view bytes) {
    for (const char c : bytes) Mix(static_cast<unsigned char>(c));
    return *this;
  }
  // The bytes and a terminator, which keeps ("ab", "c") apart from
  // ("a", "bc").
  Fnv1a64& AddField(absl::string_view bytes) {
    AddBytes(bytes);
    Mix(0xff);
    return *this;
  }
  uint64_t value() const { return h_; }

 private:
  static constexpr uint64_t kPrime = 0x100000001b3ULL;
  void Mix(unsigned char byte) { h_ = (h_ ^ byte) * kPrime; }

  uint64_t h_;
};

}  // namespace crm
