#pragma once

#include <cstddef>

namespace crm {

// gRPC clients refuse replies over 4 MiB unless told otherwise, so a page
// of results stops short of this and its next page token goes on from the
// first result left out.
inline constexpr size_t kMaxReplyBytes = 3 << 20;

// Rows a filtered list call examines at most, so a selective filter over a
// large book cannot hold a worker for long; its page token resumes the
// scan, and such a page may hold fewer results, even none.
inline constexpr size_t kListScanBudget = 20000;

// Counts a reply's bytes as results are added.
class ReplyBudget {
 public:
  // `reserved`: what the reply holds besides the results and a page token
  // (allowed for up to 256 bytes).
  explicit ReplyBudget(size_t reserved = 0) : used_(reserved + 256) {}

  // Whether a result of `bytes` still fits, and if so counts it with its
  // field tag and length. The first result always fits: a page is never
  // empty while results remain.
  bool Take(size_t bytes) {
    bytes += 8;
    if (taken_ > 0 && used_ + bytes > kMaxReplyBytes) return false;
    used_ += bytes;
    ++taken_;
    return true;
  }

 private:
  size_t used_;
  size_t taken_ = 0;
};

}  // namespace crm
