#pragma once

#include <algorithm>
#include <cstddef>
#include <utility>

#include "absl/container/flat_hash_map.h"

namespace crm {

// A map that holds at most `capacity` entries and keeps the recently used
// ones: entries live in a young and an old generation. A hit in the old
// generation moves the entry to the young one; when the young one is full
// the old one is dropped and the young one takes its place. Cheaper than a
// strict LRU (no list to splice on every hit) and as bounded. Not
// thread-safe.
template <typename K, typename V>
class BoundedCache {
 public:
  explicit BoundedCache(size_t capacity) : half_(std::max<size_t>(1, capacity / 2)) {}

  // The cached value, or nullptr. Valid until the next call that changes
  // the cache.
  template <typename Q>
  const V* Find(const Q& key) {
    if (auto it = young_.find(key); it != young_.end()) return &it->second;
    auto it = old_.find(key);
    if (it == old_.end()) return nullptr;
    auto node = old_.extract(it);
    return &Put(std::move(node.key()), std::move(node.mapped()));
  }

  template <typename Q>
  bool Contains(const Q& key) const {
    return young_.contains(key) || old_.contains(key);
  }

  V& Put(K key, V value) {
    old_.erase(key);
    if (auto it = young_.find(key); it != young_.end()) {
      it->second = std::move(value);
      return it->second;
    }
    if (young_.size() >= half_) {
      old_ = std::move(young_);
      young_ = {};
    }
    return young_.insert_or_assign(std::move(key), std::move(value)).first->second;
  }

  template <typename Q>
  void Erase(const Q& key) {
    young_.erase(key);
    old_.erase(key);
  }

  size_t size() const { return young_.size() + old_.size(); }

 private:
  size_t half_;
  absl::flat_hash_map<K, V> young_;
  absl::flat_hash_map<K, V> old_;
};

}  // namespace crm
