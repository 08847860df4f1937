#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "rocksdb/db.h"
#include "rocksdb/write_batch.h"

namespace crm {

// The rows of one WriteBatch, added to it in (column family, key) order.
// A memtable's skiplist inserts a key next to the previous insert far
// faster than a key anywhere else (it reuses the previous position, see
// Database's insert hint); a batch whose keys are scattered (blind indexes,
// score and owner indexes) pays a search from the top for each row.
// Rows are packed into one buffer, so a row costs no allocation of its own.
class SortedRows {
 public:
  void Reserve(size_t rows, size_t bytes);
  // INVALID_ARGUMENT for a key or value of 4 GiB or more, as WriteBatch.
  static absl::Status Fits(absl::string_view key, absl::string_view value);
  // Fails as Fits does.
  absl::Status Put(rocksdb::ColumnFamilyHandle* cf, absl::string_view key, absl::string_view value);
  absl::Status Delete(rocksdb::ColumnFamilyHandle* cf, absl::string_view key);

  // Puts the rows in order. A key written more than once keeps its writes
  // in the order they came, so the last one wins.
  void Sort();
  bool sorted() const { return sorted_; }
  size_t size() const { return rows_.size(); }
  bool empty() const { return rows_.empty(); }

  // The last write of a key: nullopt if none, an empty optional inside if
  // it was deleted. Only sorted rows are searched: call Sort first (rows
  // not sorted answer nullopt).
  std::optional<std::optional<absl::string_view>> Find(uint32_t family_id,
                                                       absl::string_view key) const;

  // Bytes these rows take in a WriteBatch, at most: to reserve it whole,
  // since one grown by doubling copies and page-faults its bytes again.
  size_t BatchBytes() const;
  // Sorts if need be, then adds every row to `batch`.
  absl::Status AddTo(rocksdb::WriteBatch& batch);

 private:
  struct Row {
    rocksdb::ColumnFamilyHandle* cf;
    uint32_t family_id;  // cf->GetID(), kept for the sort
    uint32_t key_size;
    uint32_t value_size;
    bool erase;
    size_t offset;  // of the key, the value follows it
    // The key's first 8 bytes as a big-endian number, zero-padded: ordered
    // like the keys, so most comparisons need not touch the key bytes.
    uint64_t prefix;
  };
  static uint64_t KeyPrefix(absl::string_view key);
  absl::Status Add(rocksdb::ColumnFamilyHandle* cf, absl::string_view key, absl::string_view value,
                   bool erase);
  // (family id, key) order.
  bool Before(uint32_t family_id, uint64_t prefix, absl::string_view key, const Row& row) const;
  absl::string_view Key(const Row& row) const {
    return absl::string_view(bytes_).substr(row.offset, row.key_size);
  }
  absl::string_view Value(const Row& row) const {
    return absl::string_view(bytes_).substr(row.offset + row.key_size, row.value_size);
  }

  std::vector<Row> rows_;
  std::string bytes_;
  bool sorted_ = true;
};

}  // namespace crm
