#pragma once

#include <algorithm>
#include <array>
#include <functional>
#include <mutex>
#include <string_view>
#include <vector>

#include "absl/hash/hash.h"
#include "absl/strings/string_view.h"

namespace crm {

// Serializes work per key (stream, idempotency key, contact) without a lock
// per key: keys hash onto a fixed set of mutexes. Several keys are locked in
// index order, so two callers never deadlock.
//
// Stripes are held across a synced write (milliseconds on a busy disk).
// With 64 requests in flight each locking three keys, 256 stripes meant
// nearly every request waited behind an unrelated one, and those waits
// chained: the write groups shrank and latency grew. At 16384 (640 KiB of
// mutexes) about one request in thirty meets a taken stripe.
class StripedMutex {
 public:
  static constexpr size_t kStripes = 16384;

  class Guard {
   public:
    Guard(StripedMutex* owner, std::vector<size_t> stripes)
        : owner_(owner), stripes_(std::move(stripes)) {
      for (size_t s : stripes_) owner_->mutexes_[s].lock();
    }
    ~Guard() {
      for (auto it = stripes_.rbegin(); it != stripes_.rend(); ++it) {
        owner_->mutexes_[*it].unlock();
      }
    }
    Guard(const Guard&) = delete;
    Guard& operator=(const Guard&) = delete;

   private:
    StripedMutex* owner_;
    std::vector<size_t> stripes_;
  };

  Guard Lock(std::initializer_list<absl::string_view> keys) {
    return Lock(std::vector<absl::string_view>(keys));
  }

  Guard Lock(const std::vector<absl::string_view>& keys) {
    std::vector<size_t> stripes;
    stripes.reserve(keys.size());
    for (auto k : keys) {
      if (!k.empty()) stripes.push_back(absl::HashOf(k) % kStripes);
    }
    std::sort(stripes.begin(), stripes.end());
    stripes.erase(std::unique(stripes.begin(), stripes.end()), stripes.end());
    return Guard(this, std::move(stripes));
  }

 private:
  std::array<std::mutex, kStripes> mutexes_;
};

}  // namespace crm
