#pragma once

#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "libs/common/metrics.h"
#include "rocksdb/db.h"

namespace crm {

// A RocksDB slice as a string_view, for the absl APIs the project uses.
inline absl::string_view View(const rocksdb::Slice& s) { return {s.data(), s.size()}; }

// What differs between the project's databases.
struct DatabaseOptions {
  // Bytes per memtable of each family; 0 keeps RocksDB's default (64 MiB).
  // Smaller ones hold less memory for more flushes and compactions.
  size_t memtable_bytes = 0;
  // Families an earlier version of the service kept and this one does not:
  // dropped, with their data, when the database opens.
  std::vector<std::string> retired_families;
};

class Database;

// Reads of a Database: of its latest state, or of a snapshot, where every
// read sees the same committed writes and none made after the snapshot.
// A Database converts to its latest-state reader, so read helpers take a
// `const DbReader&` and serve both.
class DbReader {
 public:
  DbReader(const Database& db, const rocksdb::Snapshot* snapshot) : db_(&db), snapshot_(snapshot) {}

  absl::StatusOr<std::optional<std::string>> Get(absl::string_view family,
                                                 absl::string_view key) const;
  absl::StatusOr<std::vector<std::optional<std::string>>> MultiGet(
      absl::string_view family, const std::vector<std::string>& keys) const;
  // nullptr for an unknown family.
  std::unique_ptr<rocksdb::Iterator> NewIterator(absl::string_view family) const;

 private:
  rocksdb::ReadOptions Options() const;

  const Database* db_;
  const rocksdb::Snapshot* snapshot_;  // nullptr: the latest state
};

// A RocksDB instance with named column families; every RocksDB option of
// the project is set here, in one place.
class Database {
 public:
  // Opens (creating if needed) the database at `path` with the given column
  // families in addition to "default".
  static absl::StatusOr<std::unique_ptr<Database>> Open(const std::string& path,
                                                        const std::vector<std::string>& families,
                                                        const DatabaseOptions& tuning = {});
  ~Database();

  Database(const Database&) = delete;
  Database& operator=(const Database&) = delete;

  // The handle of a family passed to Open; nullptr for an unknown name.
  rocksdb::ColumnFamilyHandle* Family(absl::string_view name) const;
  // The same, INTERNAL for an unknown name (a family the code forgot to
  // list when it opened the database).
  absl::StatusOr<rocksdb::ColumnFamilyHandle*> RequireFamily(absl::string_view name) const;

  // `sync` fsyncs the WAL before returning; concurrent synced writers are
  // grouped by RocksDB's write thread and share one fsync.
  absl::Status Write(rocksdb::WriteBatch* batch, bool sync);
  absl::StatusOr<std::optional<std::string>> Get(absl::string_view family,
                                                 absl::string_view key) const;
  // The values of `keys` in one batched read (RocksDB MultiGet sorts and
  // probes them together); nullopt where a key is absent.
  absl::StatusOr<std::vector<std::optional<std::string>>> MultiGet(
      absl::string_view family, const std::vector<std::string>& keys) const;
  std::unique_ptr<rocksdb::Iterator> NewIterator(absl::string_view family) const;
  // The reader of the latest state.
  operator DbReader() const { return DbReader(*this, nullptr); }  // NOLINT: a view of it
  // Flushes memtables and the WAL: used on graceful shutdown, and before
  // a purge so that no live WAL file still holds what was deleted.
  absl::Status Flush();
  // Rewrites the family's files holding keys in [first, last] down to the
  // last level. A delete or an overwrite only adds a newer entry: the old
  // value stays in the files until a compaction meets both, which nothing
  // else forces for a key written once (an erased person's key).
  absl::Status CompactRange(absl::string_view family, absl::string_view first,
                            absl::string_view last);

  // The error that stopped this database's writes, OK while it writes: a
  // flush, WAL write or sync failed so that RocksDB takes no more writes (a
  // hard or fatal background error) until it recovers by itself (a full
  // disk that got room again) or the database is opened again.
  absl::Status StoppedBy() const;

  // As RocksDB reports a background error, and the end of a recovery.
  void BackgroundErrorForTest(rocksdb::Status error);
  void RecoveredForTest();

  // Fault injection for tests: of the writes from now on, every `every`-th
  // fails with UNAVAILABLE and writes nothing, `times` of them in all.
  void FailWritesForTest(uint64_t every, uint64_t times);
  // Fault injection for tests: every Get from `family` (only of `key`, if
  // given) fails with UNAVAILABLE until called again with an empty name.
  void FailReadsForTest(absl::string_view family, absl::string_view key = "");

  rocksdb::DB* raw() const { return db_.get(); }
  const std::string& path() const { return path_; }

 private:
  friend class DbReader;
  struct Token {};

 public:
  explicit Database(Token) {}

 private:
  class StopWatch;

  std::string path_;
  // Declared before db_: RocksDB's threads call it until db_ is closed.
  std::shared_ptr<StopWatch> stop_watch_;
  std::unique_ptr<rocksdb::DB> db_;
  std::vector<MetricsRegistry::GaugeHandle> gauges_;
  std::vector<std::unique_ptr<rocksdb::ColumnFamilyHandle>> handles_;
  absl::flat_hash_map<std::string, rocksdb::ColumnFamilyHandle*> by_name_;
  std::atomic<uint64_t> fail_every_{0};  // 0: no faults
  std::atomic<rocksdb::ColumnFamilyHandle*> failing_reads_{nullptr};
  // Set before failing_reads_, read only after it matched.
  std::string failing_key_;
  std::atomic<int64_t> fail_times_{0};  // goes below 0 when spent
  std::atomic<uint64_t> writes_since_{0};
};

absl::Status FromRocks(const rocksdb::Status& s);

// A snapshot of a Database, held until destroyed (RocksDB keeps the
// versions it sees meanwhile): for a query made of several reads that
// must agree with one another.
class DbSnapshot {
 public:
  explicit DbSnapshot(const Database& db) : db_(db), snapshot_(db.raw()->GetSnapshot()) {}
  ~DbSnapshot() { db_.raw()->ReleaseSnapshot(snapshot_); }
  DbSnapshot(const DbSnapshot&) = delete;
  DbSnapshot& operator=(const DbSnapshot&) = delete;

  // Readers and their iterators must not outlive the snapshot: none from
  // a temporary.
  operator DbReader() const& { return DbReader(db_, snapshot_); }  // NOLINT: a view of it
  operator DbReader() const&& = delete;

 private:
  const Database& db_;
  const rocksdb::Snapshot* snapshot_;
};

// The rows of `family` under several key prefixes walked as one, in the
// order of their keys past the prefix (the suffix: an id, a time-ordered
// key), from just after the suffix `after` (from the start when empty).
// The records of a merge group read as one list.
class MergedScan {
 public:
  MergedScan(const DbReader& db, absl::string_view family, const std::vector<std::string>& prefixes,
             absl::string_view after);

  bool Valid() const { return current_ != nullptr; }
  // The row at hand: the smallest suffix of all prefixes.
  absl::string_view suffix() const;
  rocksdb::Slice value() const { return current_->it->value(); }
  void Next();
  // The first error any prefix's iterator met; the scan ends at it.
  absl::Status status() const;

 private:
  struct Cursor {
    std::string prefix;
    std::unique_ptr<rocksdb::Iterator> it;
    bool Valid() const { return it->Valid() && it->key().starts_with(prefix); }
    absl::string_view Suffix() const { return View(it->key()).substr(prefix.size()); }
  };
  void Pick();

  std::vector<Cursor> cursors_;
  Cursor* current_ = nullptr;
};

}  // namespace crm
