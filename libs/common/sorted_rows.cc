#include "libs/common/sorted_rows.h"

#include <algorithm>
#include <iterator>
#include <limits>

#include "libs/common/database.h"
#include "libs/common/status_macros.h"

namespace crm {

void SortedRows::Reserve(size_t rows, size_t bytes) {
  rows_.reserve(rows);
  bytes_.reserve(bytes);
}

absl::Status SortedRows::Put(rocksdb::ColumnFamilyHandle* cf, absl::string_view key,
                             absl::string_view value) {
  return Add(cf, key, value, /*erase=*/false);
}

absl::Status SortedRows::Delete(rocksdb::ColumnFamilyHandle* cf, absl::string_view key) {
  return Add(cf, key, {}, /*erase=*/true);
}

absl::Status SortedRows::Fits(absl::string_view key, absl::string_view value) {
  constexpr size_t kMax = std::numeric_limits<uint32_t>::max();
  if (key.size() >= kMax || value.size() >= kMax) {
    return absl::InvalidArgumentError("row key or value of 4 GiB or more");
  }
  return absl::OkStatus();
}

absl::Status SortedRows::Add(rocksdb::ColumnFamilyHandle* cf, absl::string_view key,
                             absl::string_view value, bool erase) {
  CRM_RETURN_IF_ERROR(Fits(key, value));
  rows_.push_back({cf, cf->GetID(), static_cast<uint32_t>(key.size()),
                   static_cast<uint32_t>(value.size()), erase, bytes_.size(), KeyPrefix(key)});
  bytes_.append(key.data(), key.size());
  bytes_.append(value.data(), value.size());
  sorted_ = rows_.size() <= 1;
  return absl::OkStatus();
}

uint64_t SortedRows::KeyPrefix(absl::string_view key) {
  uint64_t prefix = 0;
  const size_t n = std::min<size_t>(key.size(), 8);
  for (size_t i = 0; i < n; ++i) prefix |= uint64_t{static_cast<uint8_t>(key[i])} << (56 - 8 * i);
  return prefix;
}

bool SortedRows::Before(uint32_t family_id, uint64_t prefix, absl::string_view key,
                        const Row& row) const {
  if (family_id != row.family_id) return family_id < row.family_id;
  // Zero padding keeps the order: unequal prefixes order their keys, equal
  // ones (a shared first 8 bytes, or a short key) need the whole keys.
  if (prefix != row.prefix) return prefix < row.prefix;
  return key < Key(row);
}

void SortedRows::Sort() {
  if (sorted_) return;
  std::stable_sort(rows_.begin(), rows_.end(), [this](const Row& a, const Row& b) {
    return Before(a.family_id, a.prefix, Key(a), b);
  });
  sorted_ = true;
}

std::optional<std::optional<absl::string_view>> SortedRows::Find(uint32_t family_id,
                                                                 absl::string_view key) const {
  if (!sorted_) return std::nullopt;
  const uint64_t prefix = KeyPrefix(key);
  auto it = std::upper_bound(rows_.begin(), rows_.end(), 0,
                             [&](int, const Row& r) { return Before(family_id, prefix, key, r); });
  if (it == rows_.begin()) return std::nullopt;
  const Row& row = *std::prev(it);
  if (row.family_id != family_id || Key(row) != key) return std::nullopt;
  if (row.erase) return std::optional<absl::string_view>();
  return Value(row);
}

size_t SortedRows::BatchBytes() const {
  // A record: its tag, a varint family id and varint lengths (5 bytes each
  // at most for 32-bit values).
  constexpr size_t kRecordOverhead = 1 + 3 * 5;
  return bytes_.size() + rows_.size() * kRecordOverhead;
}

absl::Status SortedRows::AddTo(rocksdb::WriteBatch& batch) {
  Sort();
  for (const Row& row : rows_) {
    const absl::string_view key = Key(row);
    const rocksdb::Slice k(key.data(), key.size());
    if (row.erase) {
      CRM_RETURN_IF_ERROR(FromRocks(batch.Delete(row.cf, k)));
    } else {
      const absl::string_view value = Value(row);
      CRM_RETURN_IF_ERROR(
          FromRocks(batch.Put(row.cf, k, rocksdb::Slice(value.data(), value.size()))));
    }
  }
  return absl::OkStatus();
}

}  // namespace crm
