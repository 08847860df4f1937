#include "libs/common/database.h"

#include <algorithm>
#include <filesystem>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "libs/common/service_detail.h"
#include "libs/common/status_macros.h"
#include "rocksdb/cache.h"
#include "rocksdb/filter_policy.h"
#include "rocksdb/listener.h"
#include "rocksdb/options.h"
#include "rocksdb/slice_transform.h"
#include "rocksdb/table.h"

namespace crm {

MergedScan::MergedScan(const DbReader& db, absl::string_view family,
                       const std::vector<std::string>& prefixes, absl::string_view after) {
  cursors_.reserve(prefixes.size());
  for (const auto& prefix : prefixes) {
    Cursor& c = cursors_.emplace_back(Cursor{prefix, db.NewIterator(family)});
    std::string start = absl::StrCat(prefix, after);
    if (!after.empty()) start.push_back('\0');  // just after it
    c.it->Seek(start);
  }
  Pick();
}

absl::string_view MergedScan::suffix() const { return current_->Suffix(); }

void MergedScan::Next() {
  current_->it->Next();
  Pick();
}

void MergedScan::Pick() {
  current_ = nullptr;
  for (auto& c : cursors_) {
    // A failed prefix ends the scan (status() tells): the others' rows past
    // it would hide the rows it still had.
    if (!c.it->Valid() && !c.it->status().ok()) {
      current_ = nullptr;
      return;
    }
    if (c.Valid() && (current_ == nullptr || c.Suffix() < current_->Suffix())) current_ = &c;
  }
}

absl::Status MergedScan::status() const {
  for (const auto& c : cursors_) CRM_RETURN_IF_ERROR(FromRocks(c.it->status()));
  return absl::OkStatus();
}

absl::Status FromRocks(const rocksdb::Status& s) {
  if (s.ok()) return absl::OkStatus();
  if (s.IsNotFound()) return absl::NotFoundError(s.ToString());
  if (s.IsBusy() || s.IsTryAgain()) return absl::AbortedError(s.ToString());
  // The disk or the process, not the request: a full volume, a failed
  // sync, a shutdown. Worth a retry later, which UNAVAILABLE tells
  // callers and gRPC retry policies. A file gone missing is damage, as
  // INTERNAL says.
  if ((s.IsIOError() && !s.IsPathNotFound()) || s.IsShutdownInProgress() || s.IsTimedOut()) {
    return WithServiceDetail(absl::UnavailableError(absl::StrCat("rocksdb: ", s.ToString())));
  }
  return absl::InternalError(absl::StrCat("rocksdb: ", s.ToString()));
}

// Keeps the background error that stopped the writes; RocksDB calls it
// on its own threads.
class Database::StopWatch final : public rocksdb::EventListener {
 public:
  void OnBackgroundError(rocksdb::BackgroundErrorReason, rocksdb::Status* error) override {
    if (error == nullptr || error->ok() || error->severity() < rocksdb::Status::kHardError) return;
    absl::MutexLock lock(&mu_);
    stopped_by_ =
        absl::UnavailableError(absl::StrCat("rocksdb stopped writing: ", error->ToString()));
  }
  void OnErrorRecoveryEnd(const rocksdb::BackgroundErrorRecoveryInfo& info) override {
    if (!info.new_bg_error.ok()) return;
    absl::MutexLock lock(&mu_);
    stopped_by_ = absl::OkStatus();
  }
  absl::Status stopped_by() const {
    absl::MutexLock lock(&mu_);
    return stopped_by_;
  }

 private:
  mutable absl::Mutex mu_;
  absl::Status stopped_by_ ABSL_GUARDED_BY(mu_);
};

absl::Status Database::StoppedBy() const { return stop_watch_->stopped_by(); }

void Database::BackgroundErrorForTest(rocksdb::Status error) {
  stop_watch_->OnBackgroundError(rocksdb::BackgroundErrorReason::kFlush, &error);
}

void Database::RecoveredForTest() {
  rocksdb::BackgroundErrorRecoveryInfo info;
  stop_watch_->OnErrorRecoveryEnd(info);
}

namespace {

// Memory is bounded per database, not per column family (a service has a
// dozen): one block cache shared by all families and one budget for all
// memtables, so RSS stays flat however many events the log holds.
// The memtable budget was measured both ways on CaptureLead: 24 MiB flushed
// so often that calls took 30-45% more CPU; 384 MiB was no faster than 128.
constexpr size_t kBlockCacheBytes = 64 << 20;
constexpr size_t kMemtableBudgetBytes = 128 << 20;

rocksdb::ColumnFamilyOptions FamilyOptions(const std::shared_ptr<rocksdb::Cache>& cache,
                                           const DatabaseOptions& tuning) {
  rocksdb::ColumnFamilyOptions cf;
  if (tuning.memtable_bytes > 0) cf.write_buffer_size = tuning.memtable_bytes;
  // Point lookups by key dominate (state, dedupe, offsets): a bloom filter
  // avoids touching files for absent keys, e.g. first contact of a person.
  rocksdb::BlockBasedTableOptions table;
  table.block_cache = cache;
  table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
  cf.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
  // Flushes and L0->L1 compactions write every byte once more, and soon
  // rewrite it again: compressing there cost a third of a flush's CPU
  // (Kafka rebuild profile). Levels that keep data long are compressed.
  cf.compression_per_level.assign(cf.num_levels, rocksdb::kLZ4Compression);
  cf.compression_per_level[0] = rocksdb::kNoCompression;
  cf.compression_per_level[1] = rocksdb::kNoCompression;
  // Most lookups miss (a new stream, a first contact, a record not yet
  // projected): a bloom filter over each memtable's keys answers a miss
  // without walking the skiplist.
  cf.memtable_whole_key_filtering = true;
  cf.memtable_prefix_bloom_size_ratio = 0.02;
  // Batches are written sorted by key (SortedRows). Without a hint the
  // skiplist searches from the top for every key that does not directly
  // follow the last one inserted; with one hint per family (an empty
  // prefix) it walks up from the last insert only as far as it must.
  // Kafka rebuild: memtable inserts ~36% less CPU. Needs
  // allow_concurrent_memtable_write off (set below).
  cf.memtable_insert_with_hint_prefix_extractor.reset(rocksdb::NewCappedPrefixTransform(0));
  return cf;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Database>> Database::Open(const std::string& path,
                                                         const std::vector<std::string>& families,
                                                         const DatabaseOptions& tuning) {
  std::error_code ec;
  std::filesystem::create_directories(path, ec);
  if (ec) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot create data dir ", path, ": ", ec.message()));
  }
  rocksdb::DBOptions options;
  options.create_if_missing = true;
  options.create_missing_column_families = true;
  // Two cores: one flush and one compaction thread.
  options.max_background_jobs = 2;
  // Lets synced writers of different streams join one WAL fsync.
  options.enable_pipelined_write = true;
  // The group leader inserts the whole group into the memtable: parallel
  // inserts by every member cost two more hand-offs per write and gain
  // nothing on two cores (64 synced writers: ~18k -> ~25k appends/s).
  options.allow_concurrent_memtable_write = false;
  // Writers waiting for the group leader block instead of spinning: with
  // two cores a spinning follower takes the CPU the leader needs.
  options.enable_write_thread_adaptive_yield = false;
  options.keep_log_file_num = 4;
  // Write SST data out as it is produced, so a WAL fsync does not wait
  // for a burst of flush or compaction output (ext4 ordered mode).
  options.bytes_per_sync = 1 << 20;
  options.db_write_buffer_size = kMemtableBudgetBytes;
  // Families written rarely would otherwise keep old WAL files alive.
  options.max_total_wal_size = 2 * kMemtableBudgetBytes;
  const std::shared_ptr<rocksdb::Cache> cache = rocksdb::NewLRUCache(kBlockCacheBytes);
  auto stop_watch = std::make_shared<StopWatch>();
  options.listeners.push_back(stop_watch);

  std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
  descriptors.emplace_back(rocksdb::kDefaultColumnFamilyName, FamilyOptions(cache, tuning));
  for (const auto& f : families) descriptors.emplace_back(f, FamilyOptions(cache, tuning));

  // RocksDB opens only with every family it has: retired ones are opened
  // to be dropped.
  const size_t kept = descriptors.size();
  if (!tuning.retired_families.empty()) {
    std::vector<std::string> existing;
    // Fails for a new database, which has none to drop.
    if (rocksdb::DB::ListColumnFamilies(options, path, &existing).ok()) {
      for (const auto& f : tuning.retired_families) {
        if (std::find(existing.begin(), existing.end(), f) != existing.end()) {
          descriptors.emplace_back(f, FamilyOptions(cache, tuning));
        }
      }
    }
  }

  std::vector<rocksdb::ColumnFamilyHandle*> raw_handles;
  rocksdb::DB* raw_db = nullptr;
  if (auto s = rocksdb::DB::Open(options, path, descriptors, &raw_handles, &raw_db); !s.ok()) {
    return absl::UnavailableError(
        absl::StrCat("cannot open RocksDB at ", path, ": ", s.ToString()));
  }
  auto db = std::make_unique<Database>(Token{});
  db->path_ = path;
  db->stop_watch_ = std::move(stop_watch);
  db->db_.reset(raw_db);
  for (size_t i = 0; i < raw_handles.size(); ++i) {
    db->handles_.emplace_back(raw_handles[i]);
    if (i < kept) db->by_name_[descriptors[i].name] = raw_handles[i];
  }
  for (size_t i = kept; i < raw_handles.size(); ++i) {
    if (auto s = raw_db->DropColumnFamily(raw_handles[i]); !s.ok()) {
      return absl::UnavailableError(absl::StrCat("cannot drop retired column family ",
                                                 descriptors[i].name, ": ", s.ToString()));
    }
  }
  // RocksDB's own figures, read at scrape time.
  const Labels labels = {{"db", std::filesystem::path(path).filename().string()}};
  rocksdb::DB* raw = db->db_.get();
  auto property = [raw](const char* name) {
    return [raw, name] {
      uint64_t v = 0;
      raw->GetAggregatedIntProperty(name, &v);
      return static_cast<double>(v);
    };
  };
  auto& registry = MetricsRegistry::Default();
  db->gauges_.push_back(registry.AddGauge("crm_rocksdb_estimated_keys",
                                          "Estimated number of keys (all column families)", labels,
                                          property("rocksdb.estimate-num-keys")));
  db->gauges_.push_back(registry.AddGauge("crm_rocksdb_memtable_bytes", "Bytes in memtables",
                                          labels, property("rocksdb.cur-size-all-mem-tables")));
  db->gauges_.push_back(registry.AddGauge("crm_rocksdb_sst_bytes", "Bytes in SST files", labels,
                                          property("rocksdb.total-sst-files-size")));
  return db;
}

Database::~Database() {
  gauges_.clear();  // no scrape may read a closing database
  if (!db_) return;
  db_->FlushWAL(/*sync=*/true);
  // Handles must be released before the DB closes.
  for (auto& h : handles_) db_->DestroyColumnFamilyHandle(h.release());
  db_->Close();
}

rocksdb::ColumnFamilyHandle* Database::Family(absl::string_view name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : it->second;
}

absl::StatusOr<rocksdb::ColumnFamilyHandle*> Database::RequireFamily(absl::string_view name) const {
  auto* cf = Family(name);
  if (cf == nullptr) return absl::InternalError(absl::StrCat("no column family ", name));
  return cf;
}

void Database::FailWritesForTest(uint64_t every, uint64_t times) {
  writes_since_.store(0);
  fail_times_.store(static_cast<int64_t>(times));
  fail_every_.store(every);
}

void Database::FailReadsForTest(absl::string_view family, absl::string_view key) {
  failing_reads_.store(nullptr);
  failing_key_ = std::string(key);
  failing_reads_.store(family.empty() ? nullptr : Family(family));
}

absl::Status Database::Write(rocksdb::WriteBatch* batch, bool sync) {
  if (const uint64_t every = fail_every_.load(std::memory_order_relaxed); every > 0) {
    if ((writes_since_.fetch_add(1) + 1) % every == 0 && fail_times_.fetch_sub(1) > 0) {
      return absl::UnavailableError("injected write failure");
    }
  }
  rocksdb::WriteOptions wo;
  wo.sync = sync;
  return FromRocks(db_->Write(wo, batch));
}

rocksdb::ReadOptions DbReader::Options() const {
  rocksdb::ReadOptions options;
  options.snapshot = snapshot_;
  return options;
}

absl::StatusOr<std::vector<std::optional<std::string>>> DbReader::MultiGet(
    absl::string_view family, const std::vector<std::string>& keys) const {
  CRM_ASSIGN_OR_RETURN(auto* cf, db_->RequireFamily(family));
  std::vector<std::optional<std::string>> out(keys.size());
  if (keys.empty()) return out;
  std::vector<rocksdb::Slice> slices(keys.begin(), keys.end());
  std::vector<rocksdb::PinnableSlice> values(keys.size());
  std::vector<rocksdb::Status> statuses(keys.size());
  db_->raw()->MultiGet(Options(), cf, keys.size(), slices.data(), values.data(), statuses.data());
  for (size_t i = 0; i < keys.size(); ++i) {
    if (statuses[i].IsNotFound()) continue;
    CRM_RETURN_IF_ERROR(FromRocks(statuses[i]));
    out[i] = values[i].ToString();
  }
  return out;
}

absl::StatusOr<std::optional<std::string>> DbReader::Get(absl::string_view family,
                                                         absl::string_view key) const {
  CRM_ASSIGN_OR_RETURN(auto* cf, db_->RequireFamily(family));
  if (cf == db_->failing_reads_.load() && (db_->failing_key_.empty() || key == db_->failing_key_)) {
    return absl::UnavailableError("injected read failure");
  }
  std::string value;
  auto s = db_->raw()->Get(Options(), cf, rocksdb::Slice(key.data(), key.size()), &value);
  if (s.IsNotFound()) return std::nullopt;
  if (!s.ok()) return FromRocks(s);
  return value;
}

std::unique_ptr<rocksdb::Iterator> DbReader::NewIterator(absl::string_view family) const {
  auto* cf = db_->Family(family);
  if (cf == nullptr) return nullptr;
  return std::unique_ptr<rocksdb::Iterator>(db_->raw()->NewIterator(Options(), cf));
}

absl::StatusOr<std::vector<std::optional<std::string>>> Database::MultiGet(
    absl::string_view family, const std::vector<std::string>& keys) const {
  return DbReader(*this, nullptr).MultiGet(family, keys);
}

absl::StatusOr<std::optional<std::string>> Database::Get(absl::string_view family,
                                                         absl::string_view key) const {
  return DbReader(*this, nullptr).Get(family, key);
}

std::unique_ptr<rocksdb::Iterator> Database::NewIterator(absl::string_view family) const {
  return DbReader(*this, nullptr).NewIterator(family);
}

absl::Status Database::Flush() {
  if (auto s = db_->FlushWAL(/*sync=*/true); !s.ok()) return FromRocks(s);
  // The families in use: a retired one dropped at open fails a flush.
  std::vector<rocksdb::ColumnFamilyHandle*> all;
  for (const auto& [name, handle] : by_name_) all.push_back(handle);
  return FromRocks(db_->Flush(rocksdb::FlushOptions(), all));
}

absl::Status Database::CompactRange(absl::string_view family, absl::string_view first,
                                    absl::string_view last) {
  CRM_ASSIGN_OR_RETURN(rocksdb::ColumnFamilyHandle * cf, RequireFamily(family));
  rocksdb::CompactRangeOptions options;
  // The last level too: it may hold the old value with nothing below it.
  options.bottommost_level_compaction = rocksdb::BottommostLevelCompaction::kForce;
  // Automatic compactions are not held back meanwhile (a manual one is
  // exclusive by default), so writes are not throttled behind it.
  options.exclusive_manual_compaction = false;
  const rocksdb::Slice begin(first.data(), first.size());
  const rocksdb::Slice end(last.data(), last.size());
  return FromRocks(db_->CompactRange(options, cf, &begin, &end));
}

}  // namespace crm
