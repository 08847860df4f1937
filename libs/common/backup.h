#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "libs/common/database.h"

namespace crm {

struct BackupSummary {
  uint32_t backup_id = 0;
  absl::Time created_at;
  uint64_t size_bytes = 0;
  uint32_t file_count = 0;
};

// Backups of a service's RocksDB with RocksDB's BackupEngine: consistent
// while the service keeps writing, incremental (SST files are shared between
// the backups in one directory) and checksummed.

// Backs up the open database into `backup_dir` (created if missing). The
// memtables are flushed first, so a backup holds everything acknowledged
// before the call. Callers serialize backups into one directory.
absl::StatusOr<BackupSummary> CreateBackup(Database& db, const std::string& backup_dir);

// Oldest first.
absl::StatusOr<std::vector<BackupSummary>> ListBackups(const std::string& backup_dir);

// Restores backup `backup_id` (0: the latest) into `data_dir`, which must
// not hold a database: a restore never overwrites live data. The backup's
// checksums are verified first; a damaged backup is DATA_LOSS.
absl::Status RestoreBackup(const std::string& backup_dir, uint32_t backup_id,
                           const std::string& data_dir);

}  // namespace crm
