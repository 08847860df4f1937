#pragma once

#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "libs/common/database.h"

namespace rocksdb {
class BackupEngine;
}  // namespace rocksdb

namespace crm {

// Stops the backups of one service from another thread: a shutdown does not
// wait for a backup copying a large database past the pod's grace period.
// A backup stopped, or started once Stop was called, is CANCELLED and not
// listed; what it had copied (its parts' backups too) is deleted.
class BackupStopper {
 public:
  void Stop();
  bool stopped() const;
  // Called, without the stopper's lock, on a RocksDB copy thread as each
  // 4 MiB of a file are copied (a small backup may never call it): a test
  // stops a backup there, mid-copy. It must not block.
  void SetProgressHook(std::function<void()> hook);

  // For CreateBackup: the engine of the backup under way, stopped by Stop
  // until Detach. False (nothing attached) once stopped.
  bool Attach(rocksdb::BackupEngine* engine);
  void Detach();
  void Progress();

 private:
  mutable std::mutex mu_;
  rocksdb::BackupEngine* engine_ = nullptr;
  bool stopped_ = false;
  std::function<void()> progress_hook_;
};

struct BackupSummary {
  uint32_t backup_id = 0;
  // InfinitePast when unknown (a backup whose metadata is unreadable).
  absl::Time created_at = absl::InfinitePast();
  uint64_t size_bytes = 0;
  uint32_t file_count = 0;
  // Why the backup cannot be restored (unreadable metadata, a part missing
  // or damaged); empty when it looks whole. Restore verifies checksums too.
  std::string damaged;
};

// Backups of a service's RocksDB with RocksDB's BackupEngine: consistent
// while the service keeps writing, incremental (SST files are shared between
// the backups in one directory) and checksummed.

// Another database of the service that belongs in its backups, e.g.
// analytics' own event log next to its views: backed up into
// `backup_dir`/part-<name> with every backup of the main database and
// restored with it into `data_dir`/<name>.
struct BackupPart {
  std::string name;
  Database* db = nullptr;
};

// Backs up the open database (and `parts`) into `backup_dir` (created if
// missing). The memtables are flushed first, so a backup holds everything
// acknowledged before the call. The parts are backed up first and the main
// backup names their backup ids, so a backup is only listed once it is
// whole. Callers serialize backups into one directory. The summary counts
// the parts' files too. `stopper`, if given, can cut it short (CANCELLED).
absl::StatusOr<BackupSummary> CreateBackup(Database& db, const std::string& backup_dir,
                                           const std::vector<BackupPart>& parts = {},
                                           BackupStopper* stopper = nullptr);

// Oldest first, damaged ones included and saying why: one bad backup does
// not hide the others from the operator choosing one to restore.
absl::StatusOr<std::vector<BackupSummary>> ListBackups(const std::string& backup_dir);

// Deletes all but the newest `keep` backups (at least 1) of `backup_dir`
// and the parts only they named, with the files no kept backup shares.
// Returns how many were deleted. Refuses (FAILED_PRECONDITION, nothing
// deleted) while one of the newest `keep` is listed damaged: the older
// ones may be all there is to restore. Callers serialize it with backups.
absl::StatusOr<int> PurgeBackups(const std::string& backup_dir, uint32_t keep);

// Restores backup `backup_id` (0: the latest) into `data_dir`, which must
// not hold a database: a restore never overwrites live data. The backup's
// checksums, and its parts', are verified first; a damaged backup is
// DATA_LOSS. Parts are restored into `data_dir`/<name>. All of it is
// written into "<data_dir>.restoring" first (beside the directory a
// symlink names) and renamed to `data_dir` (which may be an empty
// directory, not a mount point) once whole and synced. Returns the id
// restored. "The latest" is the newest backup taken: when that one is
// damaged (a file missing after a copy), it is DATA_LOSS naming it, never a
// quiet restore of an older one; name an older id to restore that.
absl::StatusOr<uint32_t> RestoreBackup(const std::string& backup_dir, uint32_t backup_id,
                                       const std::string& data_dir);

// The file RestoreBackup leaves in `data_dir`: the data came from a backup
// and may hold keys of people erased since it was taken.
inline constexpr char kRestoredMark[] = "RESTORED";

// Readiness of a command service started on `data_dir`
// (ServiceHost::GateReadiness): ready at once, unless the dir was restored
// from a backup; then only once `keys_read` (its key reader has applied
// what crm.keys.v1 held at start, the erasures since the backup among
// them), when the mark is removed. Until then a person erased after the
// backup could be matched to their erased customer and sealed with a key
// the erasure then destroys. `make_durable` (the key rows' database's
// Flush) runs first: the key reader commits without a sync, and a mark
// removed before its erasures are on disk would not come back after a
// power cut that took them.
std::function<bool()> ReadyAfterRestore(const std::string& data_dir,
                                        std::function<bool()> keys_read,
                                        std::function<absl::Status()> make_durable);

}  // namespace crm
