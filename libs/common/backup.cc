#include "libs/common/backup.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <utility>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "libs/common/log.h"
#include "libs/common/status_macros.h"
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

BackupSummary Summarize(const rocksdb::BackupInfo& info) {
  BackupSummary b;
  b.backup_id = info.backup_id;
  b.created_at = absl::FromUnixSeconds(info.timestamp);
  b.size_bytes = info.size;
  b.file_count = info.number_files;
  return b;
}

void AddPart(const rocksdb::BackupInfo& part, BackupSummary& b) {
  b.size_bytes += part.size;
  b.file_count += part.number_files;
}

// The engine of a backup directory that must exist already (opening an
// engine creates its directory).
absl::StatusOr<std::unique_ptr<rocksdb::BackupEngine>> OpenExisting(const std::string& backup_dir) {
  // The error_code form: a path that cannot be looked at (no permission,
  // a symlink loop) is an error to report, not an exception.
  std::error_code ec;
  const bool exists = std::filesystem::exists(backup_dir, ec);
  if (ec) {
    return absl::FailedPreconditionError(
        absl::StrCat("backup_dir: ", backup_dir, ": ", ec.message()));
  }
  if (!exists) {
    return absl::NotFoundError(absl::StrCat("backup_dir: ", backup_dir, " does not exist"));
  }
  return OpenEngine(backup_dir);
}

// A part the main backup names that cannot be found or read is damage to
// that backup, not a backup that does not exist.
absl::Status PartDamaged(uint32_t backup_id, const std::string& name, uint32_t part_id,
                         const absl::Status& cause) {
  return absl::DataLossError(absl::StrCat("backup ", backup_id, ": its part ", name, " (backup ",
                                          part_id, ") is missing or damaged: ", cause.message()));
}

// The engines of a backup directory's parts, each opened once.
class PartEngines {
 public:
  explicit PartEngines(const std::string& backup_dir) : backup_dir_(backup_dir) {}

  absl::StatusOr<rocksdb::BackupEngine*> Get(const std::string& name) {
    auto [it, inserted] = engines_.try_emplace(name);
    if (inserted) {
      // Opened only if there: listing must not leave an empty part dir.
      auto engine = OpenExisting(PartDir(backup_dir_, name));
      if (!engine.ok()) {
        engines_.erase(it);
        return engine.status();
      }
      it->second = *std::move(engine);
    }
    return it->second.get();
  }

 private:
  const std::string backup_dir_;
  absl::flat_hash_map<std::string, std::unique_ptr<rocksdb::BackupEngine>> engines_;
};

absl::Status Stopped() {
  return absl::CancelledError("backup stopped: the service is shutting down");
}

// Backs up `db` into `backup_dir` and returns what the engine recorded.
absl::StatusOr<rocksdb::BackupInfo> BackUp(Database& db, const std::string& backup_dir,
                                           const std::string& metadata, BackupStopper* stopper) {
  // The engine creates its own directory, not missing parents (a part's).
  std::error_code ec;
  std::filesystem::create_directories(backup_dir, ec);
  if (ec) return absl::InternalError(absl::StrCat("backup_dir: ", backup_dir, ": ", ec.message()));
  auto engine = OpenEngine(backup_dir);
  if (!engine.ok()) return engine.status();
  rocksdb::CreateBackupOptions options;
  options.flush_before_backup = true;
  rocksdb::BackupID id = 0;
  if (stopper != nullptr) {
    if (!stopper->Attach(engine->get())) return Stopped();
    options.progress_callback = [stopper] { stopper->Progress(); };
  }
  const rocksdb::Status s =
      (*engine)->CreateNewBackupWithMetadata(options, db.raw(), metadata, &id);
  if (stopper != nullptr) stopper->Detach();
  // StopBackup's Incomplete; the engine deleted the partial copy before
  // returning.
  if (s.IsIncomplete() && stopper != nullptr && stopper->stopped()) return Stopped();
  if (!s.ok()) return FromRocks(s);
  rocksdb::BackupInfo info;
  if (auto s = (*engine)->GetBackupInfo(id, &info); !s.ok()) return FromRocks(s);
  return info;
}

// Deletes the part backups taken for a backup that failed or was stopped
// (`taken[i]` of `parts[i]`): no main backup names them, so they would stay
// for good (only a purge past --backup-keep looks for them). Best effort.
void DeletePartBackups(const std::string& backup_dir, const std::vector<BackupPart>& parts,
                       const std::vector<rocksdb::BackupInfo>& taken) {
  for (size_t i = 0; i < taken.size(); ++i) {
    auto engine = OpenEngine(PartDir(backup_dir, parts[i].name));
    auto deleted =
        engine.ok() ? FromRocks((*engine)->DeleteBackup(taken[i].backup_id)) : engine.status();
    if (!deleted.ok()) {
      log::Error("part of a failed backup not deleted",
                 {{"part", parts[i].name}, {"error", deleted.ToString()}});
    }
  }
}

absl::Status Verify(rocksdb::BackupEngine& engine, rocksdb::BackupID id) {
  if (auto s = engine.VerifyBackup(id, /*verify_with_checksum=*/true); !s.ok()) {
    if (s.IsNotFound()) return absl::NotFoundError(absl::StrCat("backup_id: no backup ", id));
    return absl::DataLossError(absl::StrCat("backup ", id, " is damaged: ", s.ToString()));
  }
  return absl::OkStatus();
}

}  // namespace

void BackupStopper::Stop() {
  std::lock_guard<std::mutex> lock(mu_);
  stopped_ = true;
  // Returns at once; the copy ends at its next chunk.
  if (engine_ != nullptr) engine_->StopBackup();
}

bool BackupStopper::stopped() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stopped_;
}

bool BackupStopper::Attach(rocksdb::BackupEngine* engine) {
  std::lock_guard<std::mutex> lock(mu_);
  if (stopped_) return false;
  engine_ = engine;
  return true;
}

void BackupStopper::Detach() {
  std::lock_guard<std::mutex> lock(mu_);
  engine_ = nullptr;
}

void BackupStopper::SetProgressHook(std::function<void()> hook) {
  std::lock_guard<std::mutex> lock(mu_);
  progress_hook_ = std::move(hook);
}

void BackupStopper::Progress() {
  std::function<void()> hook;
  {
    std::lock_guard<std::mutex> lock(mu_);
    hook = progress_hook_;
  }
  if (hook) hook();  // unlocked: it may Stop
}

absl::StatusOr<BackupSummary> CreateBackup(Database& db, const std::string& backup_dir,
                                           const std::vector<BackupPart>& parts,
                                           BackupStopper* stopper) {
  std::string metadata;
  std::vector<rocksdb::BackupInfo> part_infos;
  for (const auto& part : parts) {
    auto info = BackUp(*part.db, PartDir(backup_dir, part.name), "", stopper);
    if (!info.ok()) {
      DeletePartBackups(backup_dir, parts, part_infos);
      return info.status();
    }
    absl::StrAppend(&metadata, part.name, "=", info->backup_id, "\n");
    part_infos.push_back(*std::move(info));
  }
  auto info = BackUp(db, backup_dir, metadata, stopper);
  if (!info.ok()) {
    DeletePartBackups(backup_dir, parts, part_infos);
    return info.status();
  }
  BackupSummary summary = Summarize(*info);
  for (const auto& part : part_infos) AddPart(part, summary);
  return summary;
}

absl::StatusOr<std::vector<BackupSummary>> ListBackups(const std::string& backup_dir) {
  auto engine = OpenExisting(backup_dir);
  if (!engine.ok()) return engine.status();
  std::vector<rocksdb::BackupInfo> infos;
  (*engine)->GetBackupInfo(&infos);
  PartEngines part_engines(backup_dir);
  std::vector<BackupSummary> out;
  out.reserve(infos.size());
  for (const auto& info : infos) {
    BackupSummary& summary = out.emplace_back(Summarize(info));
    auto parts = PartsOf(info);
    if (!parts.ok()) {
      summary.damaged = std::string(parts.status().message());
      continue;
    }
    for (const auto& [name, id] : *parts) {
      auto part_engine = part_engines.Get(name);
      rocksdb::BackupInfo part;
      const absl::Status read = part_engine.ok()
                                    ? FromRocks((*part_engine)->GetBackupInfo(id, &part))
                                    : part_engine.status();
      if (!read.ok()) {
        summary.damaged = std::string(PartDamaged(info.backup_id, name, id, read).message());
        break;
      }
      AddPart(part, summary);
    }
  }
  // RocksDB leaves backups whose own metadata it cannot read out of the list.
  std::vector<rocksdb::BackupID> corrupt;
  (*engine)->GetCorruptedBackups(&corrupt);
  for (rocksdb::BackupID id : corrupt) {
    BackupSummary& summary = out.emplace_back();
    summary.backup_id = id;
    summary.damaged = absl::StrCat("backup ", id, ": its metadata is missing or unreadable");
  }
  std::sort(out.begin(), out.end(), [](const BackupSummary& a, const BackupSummary& b) {
    return a.backup_id < b.backup_id;
  });
  return out;
}

absl::StatusOr<int> PurgeBackups(const std::string& backup_dir, uint32_t keep) {
  if (keep == 0) return absl::InvalidArgumentError("keep: at least 1");
  auto listed = ListBackups(backup_dir);
  if (!listed.ok()) return listed.status();
  if (listed->size() <= keep) return 0;
  for (auto b = listed->end() - keep; b != listed->end(); ++b) {
    if (!b->damaged.empty()) {
      return absl::FailedPreconditionError(absl::StrCat("backup ", b->backup_id, " is damaged (",
                                                        b->damaged, "): older backups are kept"));
    }
  }
  auto engine = OpenExisting(backup_dir);
  if (!engine.ok()) return engine.status();
  if (auto s = (*engine)->PurgeOldBackups(keep); !s.ok()) return FromRocks(s);
  // PurgeOldBackups skips backups whose metadata it cannot read; all of
  // them are older than the newest `keep` (checked above).
  std::vector<rocksdb::BackupID> corrupt;
  (*engine)->GetCorruptedBackups(&corrupt);
  for (rocksdb::BackupID id : corrupt) {
    if (auto s = (*engine)->DeleteBackup(id); !s.ok()) return FromRocks(s);
  }
  // The parts the kept backups name; every other part backup goes. Every
  // backup listed and not kept is gone: the count deleted.
  std::vector<rocksdb::BackupInfo> kept;
  (*engine)->GetBackupInfo(&kept);
  const int deleted = static_cast<int>(listed->size() - kept.size());
  absl::flat_hash_map<std::string, absl::flat_hash_set<rocksdb::BackupID>> named;
  for (const auto& info : kept) {
    auto parts = PartsOf(info);
    if (!parts.ok()) return parts.status();
    for (const auto& [name, id] : *parts) named[name].insert(id);
  }
  // The error_code forms throughout: a directory that cannot be read is an
  // error to report, not an exception.
  std::error_code ec;
  auto listing_failed = [&] {
    return absl::InternalError(absl::StrCat("backup_dir: ", backup_dir, ": ", ec.message()));
  };
  std::filesystem::directory_iterator it(backup_dir, ec);
  if (ec) return listing_failed();
  for (; it != std::filesystem::directory_iterator(); it.increment(ec)) {
    if (ec) return listing_failed();
    const std::string file = it->path().filename().string();
    std::error_code kind;
    if (!absl::StartsWith(file, "part-") || !it->is_directory(kind)) continue;
    auto part = OpenExisting(it->path().string());
    if (!part.ok()) return part.status();
    std::vector<rocksdb::BackupID> ids;
    std::vector<rocksdb::BackupInfo> infos;
    (*part)->GetBackupInfo(&infos);
    for (const auto& info : infos) ids.push_back(info.backup_id);
    std::vector<rocksdb::BackupID> corrupt_parts;
    (*part)->GetCorruptedBackups(&corrupt_parts);
    ids.insert(ids.end(), corrupt_parts.begin(), corrupt_parts.end());
    const auto& wanted = named[file.substr(5)];
    for (rocksdb::BackupID id : ids) {
      if (wanted.contains(id)) continue;
      if (auto s = (*part)->DeleteBackup(id); !s.ok()) return FromRocks(s);
    }
    if (auto s = (*part)->GarbageCollect(); !s.ok()) return FromRocks(s);
  }
  if (ec) return listing_failed();
  return deleted;
}

namespace {

// fsync of a file or directory.
absl::Status SyncPath(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return absl::InternalError(absl::StrCat("cannot open ", path, " to sync it"));
  const int synced = ::fsync(fd);
  ::close(fd);
  if (synced != 0) return absl::InternalError(absl::StrCat("cannot sync ", path));
  return absl::OkStatus();
}

// Every file under `root`, then every directory, deepest first, `root`
// last: RocksDB's restore copies without syncing anything.
absl::Status SyncTree(const std::string& root) {
  std::vector<std::string> dirs = {root};
  std::error_code ec;
  for (auto it = std::filesystem::recursive_directory_iterator(root, ec);
       !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    if (it->is_directory(ec)) {
      dirs.push_back(it->path().string());
    } else if (it->is_regular_file(ec)) {
      CRM_RETURN_IF_ERROR(SyncPath(it->path().string()));
    }
  }
  if (ec) return absl::InternalError(absl::StrCat("cannot list ", root, ": ", ec.message()));
  for (auto d = dirs.rbegin(); d != dirs.rend(); ++d) CRM_RETURN_IF_ERROR(SyncPath(*d));
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<uint32_t> RestoreBackup(const std::string& backup_dir, uint32_t backup_id,
                                       const std::string& data_dir) {
  if (data_dir.empty()) return absl::InvalidArgumentError("data_dir: required");
  std::error_code ec;
  if (std::filesystem::exists(data_dir, ec) && !std::filesystem::is_empty(data_dir, ec)) {
    return absl::FailedPreconditionError(
        absl::StrCat("data_dir: ", data_dir, " is not empty; restore into a new directory"));
  }
  auto engine = OpenExisting(backup_dir);
  if (!engine.ok()) return engine.status();
  std::vector<rocksdb::BackupInfo> infos;
  (*engine)->GetBackupInfo(&infos);
  // RocksDB leaves a backup with missing files out of the list above: a dir
  // holding only such backups holds backups, damaged ones.
  std::vector<rocksdb::BackupID> damaged;
  (*engine)->GetCorruptedBackups(&damaged);
  if (infos.empty() && damaged.empty()) {
    return absl::NotFoundError(absl::StrCat("backup_dir: no backups in ", backup_dir));
  }
  if (backup_id == 0) {
    if (auto newest = std::max_element(damaged.begin(), damaged.end());
        newest != damaged.end() && (infos.empty() || *newest > infos.back().backup_id)) {
      return absl::DataLossError(
          infos.empty() ? absl::StrCat("backup_id: the latest backup, ", *newest,
                                       ", is damaged, and no older one is whole")
                        : absl::StrCat("backup_id: the latest backup, ", *newest,
                                       ", is damaged; pass --backup-id=", infos.back().backup_id,
                                       " (or older) to restore an earlier one and lose what "
                                       "came after it"));
    }
  }
  const uint32_t id = backup_id == 0 ? infos.back().backup_id : backup_id;
  if (std::find(damaged.begin(), damaged.end(), id) != damaged.end()) {
    return absl::DataLossError(
        absl::StrCat("backup ", id, " is damaged: a file it names is missing"));
  }
  if (auto st = Verify(**engine, id); !st.ok()) return st;
  rocksdb::BackupInfo info;
  if (auto s = (*engine)->GetBackupInfo(id, &info); !s.ok()) return FromRocks(s);
  auto parts = PartsOf(info);
  if (!parts.ok()) return parts.status();
  // Every part verified before anything is written: no half restores.
  PartEngines part_engines(backup_dir);
  for (const auto& [name, part_id] : *parts) {
    auto part_engine = part_engines.Get(name);
    if (!part_engine.ok()) return PartDamaged(id, name, part_id, part_engine.status());
    if (auto st = Verify(**part_engine, part_id); !st.ok()) {
      return PartDamaged(id, name, part_id, st);
    }
  }
  // Restored beside `data_dir` and renamed into place whole: a restore cut
  // short (Ctrl-C, a full disk) must not leave a data dir that looks whole
  // (the database but not its parts, or no RESTORED mark) for a service to
  // start on. What one cut short left there is nobody's data.
  // Through symlinks: the staging dir goes beside the real directory, on
  // its file system.
  std::filesystem::path target =
      std::filesystem::weakly_canonical(std::filesystem::absolute(data_dir), ec);
  if (ec) return absl::InternalError(absl::StrCat("data_dir: ", data_dir, ": ", ec.message()));
  if (!target.has_filename()) target = target.parent_path();  // "dir/"
  if (struct stat dir, parent; ::stat(target.c_str(), &dir) == 0 &&
                               ::stat(target.parent_path().c_str(), &parent) == 0 &&
                               dir.st_dev != parent.st_dev) {
    return absl::FailedPreconditionError(
        absl::StrCat("data_dir: ", data_dir,
                     " is a mount point; restore into a new directory inside it, then move the "
                     "files (docs/operations.md)"));
  }
  const std::string staging = target.string() + ".restoring";
  std::filesystem::remove_all(staging, ec);
  if (ec) {
    return absl::InternalError(absl::StrCat("cannot remove ", staging, ": ", ec.message()));
  }
  absl::Cleanup drop_staging = [&staging] {
    std::error_code ignored;
    std::filesystem::remove_all(staging, ignored);
  };
  rocksdb::RestoreOptions options;
  if (auto s = (*engine)->RestoreDBFromBackup(options, id, staging, staging); !s.ok()) {
    return FromRocks(s);
  }
  for (const auto& [name, part_id] : *parts) {
    const std::string dir = absl::StrCat(staging, "/", name);
    if (auto s = (*part_engines.Get(name))->RestoreDBFromBackup(options, part_id, dir, dir);
        !s.ok()) {
      return FromRocks(s);
    }
  }
  const std::string mark_path = (std::filesystem::path(staging) / kRestoredMark).string();
  std::ofstream mark(mark_path);
  mark << "backup " << id << "\n";
  mark.close();
  if (!mark) return absl::InternalError(absl::StrCat("cannot write ", kRestoredMark));
  // On disk before the rename makes it the data dir: the files, the mark
  // and the directories that list them.
  CRM_RETURN_IF_ERROR(SyncTree(staging));
  // Replaces an empty directory.
  std::filesystem::rename(staging, target, ec);
  if (ec) {
    return absl::FailedPreconditionError(
        absl::StrCat("data_dir: cannot move the restored data into ", data_dir, ": ", ec.message(),
                     "; restore into a new directory"));
  }
  // The rename survives a power cut only once its directory is synced.
  // The restore is done either way: a failure is no reason to redo it.
  if (auto st = SyncPath(target.parent_path().string()); !st.ok()) {
    log::Warn("restored, but the data dir's parent could not be synced",
              {{"data_dir", data_dir}, {"error", st.ToString()}});
  }
  return id;
}

std::function<bool()> ReadyAfterRestore(const std::string& data_dir,
                                        std::function<bool()> keys_read,
                                        std::function<absl::Status()> make_durable) {
  const std::filesystem::path mark = std::filesystem::path(data_dir) / kRestoredMark;
  std::error_code ec;
  if (!std::filesystem::exists(mark, ec)) return [] { return true; };
  log::Warn("restored from a backup: not ready until the keys topic is read",
            {{"data_dir", data_dir}});
  // Once passed it stays passed: a caller polls it with other checks (the
  // views catching up) and each sync flushes the whole database.
  auto passed = std::make_shared<std::atomic<bool>>(false);
  return [mark, passed, keys_read = std::move(keys_read), make_durable = std::move(make_durable)] {
    if (passed->load()) return true;
    if (!keys_read()) return false;
    if (absl::Status st = make_durable(); !st.ok()) {
      log::Error("cannot sync what the key reader applied; the restore mark stays",
                 {{"error", st.ToString()}});
      return false;
    }
    std::error_code ec;
    std::filesystem::remove(mark, ec);
    if (ec) log::Error("cannot remove the restore mark", {{"error", ec.message()}});
    passed->store(true);
    return true;
  };
}

}  // namespace crm
