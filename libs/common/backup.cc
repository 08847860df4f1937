#include "libs/common/backup.h"

#include <filesystem>
#include <memory>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
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

std::string PartDir(const std::string& backup_dir, absl::string_view name) {
  return absl::StrCat(backup_dir, "/part-", name);
}

// The parts of a backup, from its metadata: "name=id" per line.
absl::StatusOr<std::vector<std::pair<std::string, rocksdb::BackupID>>> PartsOf(
    const rocksdb::BackupInfo& info) {
  std::vector<std::pair<std::string, rocksdb::BackupID>> parts;
  for (absl::string_view line : absl::StrSplit(info.app_metadata, '\n', absl::SkipEmpty())) {
    std::pair<absl::string_view, absl::string_view> kv = absl::StrSplit(line, '=');
    rocksdb::BackupID id = 0;
    if (kv.first.empty() || !absl::SimpleAtoi(kv.second, &id)) {
      return absl::DataLossError(absl::StrCat("backup ", info.backup_id, " has corrupt metadata"));
    }
    parts.emplace_back(std::string(kv.first), id);
  }
  return parts;
}

absl::StatusOr<BackupSummary> Summarize(const std::string& backup_dir,
                                        const rocksdb::BackupInfo& info) {
  BackupSummary b;
  b.backup_id = info.backup_id;
  b.created_at = absl::FromUnixSeconds(info.timestamp);
  b.size_bytes = info.size;
  b.file_count = info.number_files;
  auto parts = PartsOf(info);
  if (!parts.ok()) return parts.status();
  for (const auto& [name, id] : *parts) {
    auto engine = OpenEngine(PartDir(backup_dir, name));
    if (!engine.ok()) return engine.status();
    rocksdb::BackupInfo part;
    if (auto s = (*engine)->GetBackupInfo(id, &part); !s.ok()) return FromRocks(s);
    b.size_bytes += part.size;
    b.file_count += part.number_files;
  }
  return b;
}

absl::StatusOr<rocksdb::BackupID> BackUp(Database& db, const std::string& backup_dir,
                                         const std::string& metadata) {
  // The engine creates its own directory, not missing parents (a part's).
  std::error_code ec;
  std::filesystem::create_directories(backup_dir, ec);
  if (ec) return absl::InternalError(absl::StrCat("backup_dir: ", backup_dir, ": ", ec.message()));
  auto engine = OpenEngine(backup_dir);
  if (!engine.ok()) return engine.status();
  rocksdb::CreateBackupOptions options;
  options.flush_before_backup = true;
  rocksdb::BackupID id = 0;
  if (auto s = (*engine)->CreateNewBackupWithMetadata(options, db.raw(), metadata, &id); !s.ok()) {
    return FromRocks(s);
  }
  return id;
}

absl::Status Verify(rocksdb::BackupEngine& engine, rocksdb::BackupID id) {
  if (auto s = engine.VerifyBackup(id, /*verify_with_checksum=*/true); !s.ok()) {
    if (s.IsNotFound()) return absl::NotFoundError(absl::StrCat("backup_id: no backup ", id));
    return absl::DataLossError(absl::StrCat("backup ", id, " is damaged: ", s.ToString()));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<BackupSummary> CreateBackup(Database& db, const std::string& backup_dir,
                                           const std::vector<BackupPart>& parts) {
  std::string metadata;
  for (const auto& part : parts) {
    auto id = BackUp(*part.db, PartDir(backup_dir, part.name), "");
    if (!id.ok()) return id.status();
    absl::StrAppend(&metadata, part.name, "=", *id, "\n");
  }
  auto id = BackUp(db, backup_dir, metadata);
  if (!id.ok()) return id.status();
  auto engine = OpenEngine(backup_dir);
  if (!engine.ok()) return engine.status();
  rocksdb::BackupInfo info;
  if (auto s = (*engine)->GetBackupInfo(*id, &info); !s.ok()) return FromRocks(s);
  return Summarize(backup_dir, info);
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
  for (const auto& info : infos) {
    auto summary = Summarize(backup_dir, info);
    if (!summary.ok()) return summary.status();
    out.push_back(*summary);
  }
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
  if (auto st = Verify(**engine, id); !st.ok()) return st;
  rocksdb::BackupInfo info;
  if (auto s = (*engine)->GetBackupInfo(id, &info); !s.ok()) return FromRocks(s);
  auto parts = PartsOf(info);
  if (!parts.ok()) return parts.status();
  // Every part verified before anything is written: no half restores.
  std::vector<std::unique_ptr<rocksdb::BackupEngine>> part_engines;
  for (const auto& [name, part_id] : *parts) {
    auto part = OpenEngine(PartDir(backup_dir, name));
    if (!part.ok()) return part.status();
    if (auto st = Verify(**part, part_id); !st.ok()) return st;
    part_engines.push_back(*std::move(part));
  }
  rocksdb::RestoreOptions options;
  if (auto s = (*engine)->RestoreDBFromBackup(options, id, data_dir, data_dir); !s.ok()) {
    return FromRocks(s);
  }
  for (size_t i = 0; i < parts->size(); ++i) {
    const std::string dir = absl::StrCat(data_dir, "/", (*parts)[i].first);
    if (auto s = part_engines[i]->RestoreDBFromBackup(options, (*parts)[i].second, dir, dir);
        !s.ok()) {
      return FromRocks(s);
    }
  }
  return absl::OkStatus();
}

}  // namespace crm
