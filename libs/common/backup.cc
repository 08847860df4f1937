#include "libs/common/backup.h"

#include <filesystem>
#include <memory>

#include "absl/strings/str_cat.h"
#include "rocksdb/env.h"
#include "rocksdb/utilities/backup_engine.h"

namespace crm {

namespace {

absl::StatusOr<std::unique_ptr<rocksdb::BackupEngine>> OpenEngine(const std::string& backup_dir) {
  if (backup_dir.empty()) return absl::InvalidArgumentError("backup_dir: required");
  rocksdb::BackupEngineOptions options(backup_dir);
  // Backups are as durable as the data: files are fsynced as they land.
  options.sync = true;
  options.max_background_operations = 2;
  rocksdb::BackupEngine* raw = nullptr;
  auto s = rocksdb::BackupEngine::Open(rocksdb::Env::Default(), options, &raw);
  std::unique_ptr<rocksdb::BackupEngine> engine(raw);
  if (!s.ok()) return FromRocks(s);
  return engine;
}

BackupSummary Summarize(const rocksdb::BackupInfo& info) {
  BackupSummary b;
  b.backup_id = info.backup_id;
  b.created_at = absl::FromUnixSeconds(info.timestamp);
  b.size_bytes = info.size;
  b.file_count = info.number_files;
  return b;
}

}  // namespace

absl::StatusOr<BackupSummary> CreateBackup(Database& db, const std::string& backup_dir) {
  auto engine = OpenEngine(backup_dir);
  if (!engine.ok()) return engine.status();
  rocksdb::CreateBackupOptions options;
  options.flush_before_backup = true;
  rocksdb::BackupID id = 0;
  if (auto s = (*engine)->CreateNewBackup(options, db.raw(), &id); !s.ok()) return FromRocks(s);
  rocksdb::BackupInfo info;
  if (auto s = (*engine)->GetBackupInfo(id, &info); !s.ok()) return FromRocks(s);
  return Summarize(info);
}

absl::StatusOr<std::vector<BackupSummary>> ListBackups(const std::string& backup_dir) {
  if (!std::filesystem::exists(backup_dir)) {
    return absl::NotFoundError(absl::StrCat("backup_dir: ", backup_dir, " does not exist"));
  }
  auto engine = OpenEngine(backup_dir);
  if (!engine.ok()) return engine.status();
  std::vector<rocksdb::BackupInfo> infos;
  (*engine)->GetBackupInfo(&infos);
  std::vector<BackupSummary> out;
  out.reserve(infos.size());
  for (const auto& info : infos) out.push_back(Summarize(info));
  return out;
}

absl::Status RestoreBackup(const std::string& backup_dir, uint32_t backup_id,
                           const std::string& data_dir) {
  if (data_dir.empty()) return absl::InvalidArgumentError("data_dir: required");
  std::error_code ec;
  if (std::filesystem::exists(data_dir, ec) && !std::filesystem::is_empty(data_dir, ec)) {
    return absl::FailedPreconditionError(
        absl::StrCat("data_dir: ", data_dir, " is not empty; restore into a new directory"));
  }
  auto backups = ListBackups(backup_dir);
  if (!backups.ok()) return backups.status();
  if (backups->empty()) {
    return absl::NotFoundError(absl::StrCat("backup_dir: no backups in ", backup_dir));
  }
  const uint32_t id = backup_id == 0 ? backups->back().backup_id : backup_id;
  auto engine = OpenEngine(backup_dir);
  if (!engine.ok()) return engine.status();
  if (auto s = (*engine)->VerifyBackup(id, /*verify_with_checksum=*/true); !s.ok()) {
    if (s.IsNotFound()) return absl::NotFoundError(absl::StrCat("backup_id: no backup ", id));
    return absl::DataLossError(absl::StrCat("backup ", id, " is damaged: ", s.ToString()));
  }
  rocksdb::RestoreOptions options;
  if (auto s = (*engine)->RestoreDBFromBackup(options, id, data_dir, data_dir); !s.ok()) {
    return FromRocks(s);
  }
  return absl::OkStatus();
}

}  // namespace crm
