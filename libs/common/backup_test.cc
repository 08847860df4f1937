#include "libs/common/backup.h"

#include <atomic>
#include <filesystem>
#include <fstream>
#include <random>
#include <thread>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "libs/common/event_store.h"
#include "libs/common/testing/temp_dir.h"
#include "rocksdb/db.h"

namespace crm {
namespace {

absl::Status AppendOne(EventStore& store, const std::string& stream, int64_t expected) {
  AppendRequest r;
  r.stream = stream;
  r.expected_version = expected;
  crm::v1::EventEnvelope e;
  e.set_event_id(absl::StrCat(stream, "/", expected + 1));
  e.set_customer_id("cus_1");
  e.set_type("Tested");
  r.events.push_back(e);
  r.state = absl::StrCat("state of ", stream, " at ", expected + 1);
  r.projection_writes.push_back({"index", stream, absl::StrCat(expected + 1)});
  return store.Append(std::move(r)).status();
}

// The version of `stream` in the database at `dir` (a restore); -1 when it
// does not open.
int64_t VersionIn(const std::string& dir, const std::string& stream) {
  auto store = EventStore::Open(dir, {"index"});
  EXPECT_TRUE(store.ok()) << dir << ": " << store.status();
  if (!store.ok()) return -1;
  auto state = (*store)->LoadState(stream);
  EXPECT_TRUE(state.ok()) << state.status();
  return state.ok() ? state->version : -1;
}

// Writes `mib` MiB that do not compress into `db` and flushes them into a
// table file: a backup's copy takes a while and passes RocksDB's progress
// callback (every 4 MiB).
void FillIncompressible(Database& db, int mib, uint64_t seed) {
  std::mt19937_64 random(seed);
  std::string value(1 << 20, '\0');
  for (int i = 0; i < mib; ++i) {
    for (auto& c : value) c = static_cast<char>(random());
    ASSERT_TRUE(db.raw()->Put(rocksdb::WriteOptions(), absl::StrCat("bulk", i), value).ok());
  }
  ASSERT_TRUE(db.Flush().ok());
}

// Removes one file of backup `id` in `backup_dir`, as a copy of the dir
// that missed it would.
void RemoveAFileOf(const std::string& backup_dir, int id) {
  int removed = 0;
  for (const auto& f :
       std::filesystem::directory_iterator(absl::StrCat(backup_dir, "/private/", id))) {
    std::filesystem::remove(f.path());
    if (++removed == 1) break;
  }
  ASSERT_EQ(removed, 1);
}

class BackupTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto store = EventStore::Open(dir_.Sub("live"), {"index"});
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
  }
  crm::testing::TempDir dir_;
  std::unique_ptr<EventStore> store_;
};

TEST_F(BackupTest, ABackupTakenUnderWritesRestoresEveryAcknowledgedAppendConsistently) {
  for (int i = 0; i < 200; ++i) ASSERT_TRUE(AppendOne(*store_, "before", i).ok());
  std::atomic<bool> stop{false};
  std::atomic<int64_t> during{0};
  std::thread writer([&] {
    for (int64_t v = 0; !stop.load(); ++v) {
      ASSERT_TRUE(AppendOne(*store_, "during", v).ok());
      during.store(v + 1);
    }
  });
  // The backup starts with the writer under way, so it has some of its
  // appends to keep whole.
  for (const absl::Time give_up = absl::Now() + absl::Seconds(60);
       during.load() < 10 && absl::Now() < give_up;) {
    absl::SleepFor(absl::Milliseconds(1));
  }
  if (during.load() < 10) {
    stop.store(true);
    writer.join();
    FAIL() << "the writer made no progress";
  }
  auto backup = CreateBackup(store_->db(), dir_.Sub("backups"));
  stop.store(true);
  writer.join();
  ASSERT_TRUE(backup.ok()) << backup.status();
  EXPECT_EQ(backup->backup_id, 1u);
  EXPECT_GT(backup->size_bytes, 0u);

  ASSERT_TRUE(RestoreBackup(dir_.Sub("backups"), 0, dir_.Sub("restored")).ok());
  auto restored = EventStore::Open(dir_.Sub("restored"), {"index"});
  ASSERT_TRUE(restored.ok()) << restored.status();
  auto before = (*restored)->LoadState("before");
  ASSERT_TRUE(before.ok()) << before.status();
  EXPECT_EQ(before->version, 200);
  EXPECT_EQ(before->state, "state of before at 200");
  EXPECT_EQ((*restored)->ReadStream("before")->size(), 200u);
  // Whatever part of the concurrent stream made it in is whole: state,
  // events and projection agree.
  auto partial = (*restored)->LoadState("during");
  ASSERT_TRUE(partial.ok()) << partial.status();
  const int64_t version = partial->version;
  EXPECT_GE(version, 10);
  EXPECT_LE(version, during.load());
  EXPECT_EQ((*restored)->ReadStream("during")->size(), static_cast<size_t>(version));
  EXPECT_EQ(*(*restored)->db().Get("index", "during"), absl::StrCat(version));
  // The restored store appends where the backup left off.
  EXPECT_TRUE(AppendOne(**restored, "before", 200).ok());
}

TEST_F(BackupTest, BackupsAreNumberedAndListedOldestFirst) {
  ASSERT_TRUE(AppendOne(*store_, "s", 0).ok());
  ASSERT_TRUE(CreateBackup(store_->db(), dir_.Sub("backups")).ok());
  ASSERT_TRUE(AppendOne(*store_, "s", 1).ok());
  ASSERT_TRUE(CreateBackup(store_->db(), dir_.Sub("backups")).ok());
  auto list = ListBackups(dir_.Sub("backups"));
  ASSERT_TRUE(list.ok()) << list.status();
  ASSERT_EQ(list->size(), 2u);
  EXPECT_EQ((*list)[0].backup_id, 1u);
  EXPECT_EQ((*list)[1].backup_id, 2u);

  // An older backup restores the older state.
  ASSERT_TRUE(RestoreBackup(dir_.Sub("backups"), 1, dir_.Sub("first")).ok());
  EXPECT_EQ(VersionIn(dir_.Sub("first"), "s"), 1);
}

// A shutdown does not wait for a backup: one stopped before it starts is
// CANCELLED and leaves no backup listed, and the next backup is whole.
TEST_F(BackupTest, AStoppedBackupIsCancelledAndTheNextOneIsWhole) {
  ASSERT_TRUE(AppendOne(*store_, "s", 0).ok());
  BackupStopper stopper;
  stopper.Stop();
  auto stopped = CreateBackup(store_->db(), dir_.Sub("backups"), {}, &stopper);
  EXPECT_EQ(stopped.status().code(), absl::StatusCode::kCancelled) << stopped.status();
  auto listed = ListBackups(dir_.Sub("backups"));
  EXPECT_TRUE(!listed.ok() || listed->empty());
  ASSERT_TRUE(CreateBackup(store_->db(), dir_.Sub("backups")).ok());
  ASSERT_TRUE(RestoreBackup(dir_.Sub("backups"), 0, dir_.Sub("restored")).ok());
}

// Stopped while it copies (a few MiB in): the copy ends there, the backup
// is CANCELLED and not listed, the part backed up before it is deleted, and
// the next backup is whole.
TEST_F(BackupTest, ABackupStoppedWhileItCopiesIsCancelledAndTheNextOneIsWhole) {
  auto emitted = EventStore::Open(dir_.Sub("live-emitted"), {"index"});
  ASSERT_TRUE(emitted.ok()) << emitted.status();
  ASSERT_TRUE(AppendOne(**emitted, "alerts", 0).ok());
  ASSERT_TRUE(AppendOne(*store_, "s", 0).ok());
  ASSERT_NO_FATAL_FAILURE(FillIncompressible(store_->db(), 16, 7));
  const std::string backups = dir_.Sub("backups");
  const std::vector<BackupPart> parts = {{"emitted", &(*emitted)->db()}};
  BackupStopper stopper;
  int progress = 0;
  stopper.SetProgressHook([&] {
    ++progress;
    stopper.Stop();
  });
  auto stopped = CreateBackup(store_->db(), backups, parts, &stopper);
  EXPECT_EQ(stopped.status().code(), absl::StatusCode::kCancelled) << stopped.status();
  EXPECT_GE(progress, 1) << "stopped mid-copy";
  auto listed = ListBackups(backups);
  ASSERT_TRUE(listed.ok()) << listed.status();
  EXPECT_TRUE(listed->empty());
  auto part_listed = ListBackups(backups + "/part-emitted");
  ASSERT_TRUE(part_listed.ok()) << part_listed.status();
  EXPECT_TRUE(part_listed->empty()) << "a part no backup names";

  auto next = CreateBackup(store_->db(), backups, parts);
  ASSERT_TRUE(next.ok()) << next.status();
  ASSERT_TRUE(RestoreBackup(backups, 0, dir_.Sub("restored")).ok());
  EXPECT_EQ(VersionIn(dir_.Sub("restored"), "s"), 1);
  EXPECT_EQ(VersionIn(dir_.Sub("restored") + "/emitted", "alerts"), 1);
}

// Stopped while it copies its second part: the first part's backup, which
// no main backup names, is deleted too.
TEST_F(BackupTest, ABackupStoppedInALaterPartDeletesTheEarlierPartsBackups) {
  auto first = EventStore::Open(dir_.Sub("live-first"), {"index"});
  auto second = EventStore::Open(dir_.Sub("live-second"), {"index"});
  ASSERT_TRUE(first.ok() && second.ok());
  ASSERT_TRUE(AppendOne(**first, "a", 0).ok());
  ASSERT_NO_FATAL_FAILURE(FillIncompressible((*second)->db(), 16, 11));
  const std::string backups = dir_.Sub("backups");
  BackupStopper stopper;
  stopper.SetProgressHook([&] { stopper.Stop(); });
  auto stopped = CreateBackup(store_->db(), backups,
                              {{"first", &(*first)->db()}, {"second", &(*second)->db()}}, &stopper);
  EXPECT_EQ(stopped.status().code(), absl::StatusCode::kCancelled) << stopped.status();
  for (const char* part : {"first", "second"}) {
    auto listed = ListBackups(absl::StrCat(backups, "/part-", part));
    ASSERT_TRUE(listed.ok()) << part << ": " << listed.status();
    EXPECT_TRUE(listed->empty()) << part;
  }
  EXPECT_FALSE(std::filesystem::exists(backups + "/meta")) << "no main backup was started";
}

// A backup dir that cannot be looked at (here a symlink loop; without
// permission to search a parent alike) is an error to report: it threw,
// and took the service down with the admin call listing its backups.
TEST_F(BackupTest, ABackupDirThatCannotBeLookedAtIsAnErrorNotACrash) {
  const std::string loop = dir_.Sub("loop");
  std::filesystem::create_symlink(loop, loop);
  auto list = ListBackups(loop + "/backups");
  EXPECT_TRUE(absl::IsFailedPrecondition(list.status())) << list.status();
  EXPECT_THAT(std::string(list.status().message()), ::testing::HasSubstr("backup_dir: "));
  EXPECT_TRUE(absl::IsNotFound(ListBackups(dir_.Sub("none")).status()));
}

// A copy of the backup dir that missed a file of the newest backup: "the
// latest" must not quietly mean the one before, losing what came after.
TEST_F(BackupTest, TheLatestBackupDamagedIsDataLossNotAnOlderRestore) {
  ASSERT_TRUE(AppendOne(*store_, "s", 0).ok());
  ASSERT_TRUE(CreateBackup(store_->db(), dir_.Sub("backups")).ok());
  ASSERT_TRUE(AppendOne(*store_, "s", 1).ok());
  ASSERT_TRUE(CreateBackup(store_->db(), dir_.Sub("backups")).ok());
  auto latest = RestoreBackup(dir_.Sub("backups"), 0, dir_.Sub("whole"));
  ASSERT_TRUE(latest.ok()) << latest.status();
  EXPECT_EQ(*latest, 2u);

  ASSERT_NO_FATAL_FAILURE(RemoveAFileOf(dir_.Sub("backups"), 2));
  auto st = RestoreBackup(dir_.Sub("backups"), 0, dir_.Sub("x")).status();
  EXPECT_EQ(st.code(), absl::StatusCode::kDataLoss) << st;
  EXPECT_NE(st.message().find("latest backup, 2, is damaged"), std::string::npos) << st;
  EXPECT_FALSE(std::filesystem::exists(dir_.Sub("x") + "/CURRENT"));
  auto older = RestoreBackup(dir_.Sub("backups"), 1, dir_.Sub("first"));
  ASSERT_TRUE(older.ok()) << older.status();
  EXPECT_EQ(*older, 1u);
  // Named, the damaged one is damaged too, not missing.
  st = RestoreBackup(dir_.Sub("backups"), 2, dir_.Sub("y")).status();
  EXPECT_EQ(st.code(), absl::StatusCode::kDataLoss) << st;
  EXPECT_NE(st.message().find("backup 2 is damaged"), std::string::npos) << st;
}

// A dir whose only backup is damaged holds a backup: DATA_LOSS naming it,
// as ListBackups lists it, not "no backups".
TEST_F(BackupTest, TheOnlyBackupDamagedIsDataLossNotNoBackups) {
  ASSERT_TRUE(AppendOne(*store_, "s", 0).ok());
  ASSERT_TRUE(CreateBackup(store_->db(), dir_.Sub("backups")).ok());
  ASSERT_NO_FATAL_FAILURE(RemoveAFileOf(dir_.Sub("backups"), 1));
  auto listed = ListBackups(dir_.Sub("backups"));
  ASSERT_TRUE(listed.ok()) << listed.status();
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_FALSE(listed->front().damaged.empty());
  for (uint32_t id : {0u, 1u}) {
    auto st = RestoreBackup(dir_.Sub("backups"), id, dir_.Sub("x")).status();
    EXPECT_EQ(st.code(), absl::StatusCode::kDataLoss) << id << ": " << st;
    EXPECT_NE(st.message().find(id == 0 ? "latest backup, 1, is damaged" : "backup 1 is damaged"),
              std::string::npos)
        << st;
  }
  EXPECT_FALSE(std::filesystem::exists(dir_.Sub("x") + "/CURRENT"));
}

TEST_F(BackupTest, ADamagedBackupIsListedAsDamagedBesideTheWholeOnes) {
  ASSERT_TRUE(AppendOne(*store_, "s", 0).ok());
  ASSERT_TRUE(CreateBackup(store_->db(), dir_.Sub("backups")).ok());
  ASSERT_TRUE(AppendOne(*store_, "s", 1).ok());
  ASSERT_TRUE(CreateBackup(store_->db(), dir_.Sub("backups")).ok());
  std::ofstream(dir_.Sub("backups") + "/meta/1", std::ios::trunc) << "not a backup\n";

  auto list = ListBackups(dir_.Sub("backups"));
  ASSERT_TRUE(list.ok()) << list.status();
  ASSERT_EQ(list->size(), 2u);
  EXPECT_EQ((*list)[0].backup_id, 1u);
  EXPECT_NE((*list)[0].damaged.find("metadata"), std::string::npos) << (*list)[0].damaged;
  EXPECT_EQ((*list)[0].created_at, absl::InfinitePast()) << "unknown, not 1970";
  EXPECT_EQ((*list)[1].backup_id, 2u);
  EXPECT_EQ((*list)[1].damaged, "");
  EXPECT_GT((*list)[1].file_count, 0u);
}

TEST_F(BackupTest, RestoreRefusesToOverwriteDataAndReportsMissingOrDamagedBackups) {
  ASSERT_TRUE(AppendOne(*store_, "s", 0).ok());
  EXPECT_EQ(RestoreBackup(dir_.Sub("none"), 0, dir_.Sub("x")).status().code(),
            absl::StatusCode::kNotFound);
  ASSERT_TRUE(CreateBackup(store_->db(), dir_.Sub("backups")).ok());
  EXPECT_EQ(RestoreBackup(dir_.Sub("backups"), 0, dir_.Sub("live")).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(RestoreBackup(dir_.Sub("backups"), 7, dir_.Sub("y")).status().code(),
            absl::StatusCode::kNotFound);

  // Flip a byte in every backed-up table file.
  int damaged = 0;
  for (const auto& f : std::filesystem::recursive_directory_iterator(dir_.Sub("backups"))) {
    if (f.path().extension() != ".sst") continue;
    std::fstream io(f.path(), std::ios::in | std::ios::out | std::ios::binary);
    io.seekp(10);
    io.put('\x5a');
    ++damaged;
  }
  ASSERT_GT(damaged, 0);
  EXPECT_EQ(RestoreBackup(dir_.Sub("backups"), 0, dir_.Sub("z")).status().code(),
            absl::StatusCode::kDataLoss);
}

TEST_F(BackupTest, PartsAreBackedUpAndRestoredWithTheMainDatabase) {
  auto emitted = EventStore::Open(dir_.Sub("live-emitted"), {"index"});
  ASSERT_TRUE(emitted.ok()) << emitted.status();
  ASSERT_TRUE(AppendOne(*store_, "views", 0).ok());
  ASSERT_TRUE(AppendOne(**emitted, "alerts", 0).ok());
  const std::string backups = dir_.Sub("backups");
  // A stray backup of the part alone: the part's ids no longer match the
  // main ones, and the main backup's record of its part must decide.
  ASSERT_TRUE(CreateBackup((*emitted)->db(), backups + "/part-emitted").ok());
  ASSERT_TRUE(AppendOne(**emitted, "alerts", 1).ok());
  auto backup = CreateBackup(store_->db(), backups, {{"emitted", &(*emitted)->db()}});
  ASSERT_TRUE(backup.ok()) << backup.status();
  EXPECT_EQ(backup->backup_id, 1u);
  auto alone = CreateBackup(store_->db(), dir_.Sub("alone"));
  ASSERT_TRUE(alone.ok());
  EXPECT_GT(backup->file_count, alone->file_count) << "the part's files count";
  ASSERT_TRUE(AppendOne(**emitted, "alerts", 2).ok());

  ASSERT_TRUE(RestoreBackup(backups, 0, dir_.Sub("restored")).ok());
  EXPECT_EQ(VersionIn(dir_.Sub("restored"), "views"), 1);
  EXPECT_EQ(VersionIn(dir_.Sub("restored") + "/emitted", "alerts"), 2)
      << "as of the backup, not the stray one";

  // A damaged part fails the restore before anything is written.
  for (const auto& f : std::filesystem::recursive_directory_iterator(backups + "/part-emitted")) {
    if (f.path().extension() != ".sst") continue;
    std::fstream io(f.path(), std::ios::in | std::ios::out | std::ios::binary);
    io.seekp(10);
    io.put('\x5a');
  }
  EXPECT_EQ(RestoreBackup(backups, 0, dir_.Sub("again")).status().code(),
            absl::StatusCode::kDataLoss);
  EXPECT_FALSE(std::filesystem::exists(dir_.Sub("again") + "/CURRENT"));
}

// The data dir appears by one rename once the database, its parts and the
// RESTORED mark are all written: a restore cut short leaves only a
// "<dir>.restoring" beside it, which the next restore clears.
// A restored service is ready once its key reader is through, and what the
// reader applied is synced before the restore mark goes: a mark removed
// first could outlive the erasures a power cut took.
TEST_F(BackupTest, TheRestoreMarkGoesOnlyOnceTheKeysReadAreSynced) {
  const std::string data_dir = dir_.Sub("restored-gate");
  std::filesystem::create_directories(data_dir);
  const auto mark = std::filesystem::path(data_dir) / kRestoredMark;
  std::ofstream(mark) << "restored\n";
  bool keys_read = false;
  absl::Status sync = absl::UnavailableError("disk gone");
  int syncs = 0;
  auto ready = ReadyAfterRestore(
      data_dir, [&] { return keys_read; },
      [&] {
        ++syncs;
        EXPECT_TRUE(std::filesystem::exists(mark)) << "synced before the mark goes";
        return sync;
      });
  EXPECT_FALSE(ready());
  EXPECT_EQ(syncs, 0);
  keys_read = true;
  EXPECT_FALSE(ready()) << "not synced";
  EXPECT_TRUE(std::filesystem::exists(mark));
  sync = absl::OkStatus();
  EXPECT_TRUE(ready());
  EXPECT_EQ(syncs, 2);
  EXPECT_FALSE(std::filesystem::exists(mark));
  // Polled on with other checks (analytics' views catching up): no sync
  // (a flush of the whole database) each time.
  EXPECT_TRUE(ready());
  EXPECT_TRUE(ready());
  EXPECT_EQ(syncs, 2);
  // Not restored: ready at once, nothing synced.
  EXPECT_TRUE(ReadyAfterRestore(
      dir_.Sub("never-restored"), [] { return false; },
      [&] {
        ++syncs;
        return absl::OkStatus();
      })());
  EXPECT_EQ(syncs, 2);
}

TEST_F(BackupTest, ARestoredDataDirAppearsWholeOrNotAtAll) {
  auto emitted = EventStore::Open(dir_.Sub("live-emitted"), {"index"});
  ASSERT_TRUE(emitted.ok()) << emitted.status();
  ASSERT_TRUE(AppendOne(*store_, "views", 0).ok());
  ASSERT_TRUE(AppendOne(**emitted, "alerts", 0).ok());
  const std::string backups = dir_.Sub("backups");
  ASSERT_TRUE(CreateBackup(store_->db(), backups, {{"emitted", &(*emitted)->db()}}).ok());

  const std::string restored = dir_.Sub("restored");
  std::filesystem::create_directories(restored + ".restoring/emitted");
  std::ofstream(restored + ".restoring/CURRENT") << "left by a restore cut short\n";
  ASSERT_TRUE(RestoreBackup(backups, 0, restored).ok());
  EXPECT_FALSE(std::filesystem::exists(restored + ".restoring"));
  EXPECT_TRUE(std::filesystem::exists(restored + "/" + kRestoredMark));
  {
    auto views = EventStore::Open(restored, {"index"});
    ASSERT_TRUE(views.ok()) << views.status();
    EXPECT_EQ((*views)->LoadState("views")->version, 1);
    auto alerts = EventStore::Open(restored + "/emitted", {"index"});
    ASSERT_TRUE(alerts.ok()) << alerts.status();
    EXPECT_EQ((*alerts)->LoadState("alerts")->version, 1);
  }

  // Named with a trailing slash, into an empty directory that exists.
  const std::string slash = dir_.Sub("slash");
  std::filesystem::create_directories(slash);
  ASSERT_TRUE(RestoreBackup(backups, 0, slash + "/").ok());
  EXPECT_TRUE(std::filesystem::exists(slash + "/CURRENT"));
  EXPECT_FALSE(std::filesystem::exists(slash + "/.restoring"));

  // Through a symlink to an empty directory elsewhere: restored there,
  // staged beside it on its file system, the link kept.
  const std::string real = dir_.Sub("real");
  const std::string link = dir_.Sub("link");
  std::filesystem::create_directories(real);
  std::filesystem::create_directory_symlink(real, link);
  ASSERT_TRUE(RestoreBackup(backups, 0, link).ok());
  EXPECT_TRUE(std::filesystem::is_symlink(link));
  EXPECT_TRUE(std::filesystem::exists(real + "/CURRENT"));
  EXPECT_TRUE(std::filesystem::exists(real + "/emitted/CURRENT"));
  EXPECT_FALSE(std::filesystem::exists(link + ".restoring"));
  EXPECT_FALSE(std::filesystem::exists(real + ".restoring"));

  // A relative name, as typed in a shell.
  const auto cwd = std::filesystem::current_path();
  std::filesystem::current_path(dir_.Sub(""));
  const auto relative = RestoreBackup(backups, 0, "relative");
  std::filesystem::current_path(cwd);
  ASSERT_TRUE(relative.ok()) << relative.status();
  EXPECT_TRUE(std::filesystem::exists(dir_.Sub("relative") + "/CURRENT"));

  // Restored whole, then refused its place (an empty file, not a
  // directory): nothing is left behind, the file is as it was.
  const std::string file = dir_.Sub("file");
  std::ofstream(file).close();
  EXPECT_EQ(RestoreBackup(backups, 0, file).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(std::filesystem::is_regular_file(file));
  EXPECT_FALSE(std::filesystem::exists(file + ".restoring"));
}

// Retention: the newest backups stay, with their parts, and restore; the
// older ones, their parts and the parts no backup names (a stray) go.
TEST_F(BackupTest, APurgeKeepsTheNewestBackupsWithTheirParts) {
  auto emitted = EventStore::Open(dir_.Sub("live-emitted"), {"index"});
  ASSERT_TRUE(emitted.ok()) << emitted.status();
  const std::string backups = dir_.Sub("backups");
  ASSERT_TRUE(CreateBackup((*emitted)->db(), backups + "/part-emitted").ok());  // a stray
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(AppendOne(*store_, "views", i).ok());
    ASSERT_TRUE(AppendOne(**emitted, "alerts", i).ok());
    ASSERT_TRUE(CreateBackup(store_->db(), backups, {{"emitted", &(*emitted)->db()}}).ok());
  }
  auto meta_files = [](const std::string& dir) {
    int n = 0;
    for (const auto& f : std::filesystem::directory_iterator(dir + "/meta"))
      n += f.is_regular_file();
    return n;
  };
  ASSERT_EQ(meta_files(backups + "/part-emitted"), 5);
  EXPECT_EQ(PurgeBackups(backups, 0).status().code(), absl::StatusCode::kInvalidArgument);
  // The oldest one's metadata unreadable: RocksDB lists it apart, and it
  // goes too.
  { std::ofstream(backups + "/meta/1", std::ios::trunc) << "garbage"; }
  ASSERT_FALSE(ListBackups(backups)->front().damaged.empty());

  auto purged = PurgeBackups(backups, 2);
  ASSERT_TRUE(purged.ok()) << purged.status();
  EXPECT_EQ(*purged, 2);
  auto list = ListBackups(backups);
  ASSERT_TRUE(list.ok()) << list.status();
  ASSERT_EQ(list->size(), 2u);
  EXPECT_EQ((*list)[0].backup_id, 3u);
  EXPECT_TRUE((*list)[0].damaged.empty()) << (*list)[0].damaged;
  EXPECT_EQ(meta_files(backups + "/part-emitted"), 2) << "the purged backups' parts stay";
  ASSERT_TRUE(RestoreBackup(backups, 3, dir_.Sub("third")).ok());
  EXPECT_EQ(VersionIn(dir_.Sub("third") + "/emitted", "alerts"), 3);
  EXPECT_EQ(RestoreBackup(backups, 1, dir_.Sub("first")).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(*PurgeBackups(backups, 2), 0);

  // The newest damaged (its part gone): the older one may be all there is.
  std::filesystem::remove_all(backups + "/part-emitted");
  auto refused = PurgeBackups(backups, 1);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition) << refused.status();
  EXPECT_EQ(ListBackups(backups)->size(), 2u);
}

// A copy of the backup dir without its part: the backup is damaged, not
// absent, and listing or restoring it says so (and creates nothing).
TEST_F(BackupTest, AMissingPartIsDataLossNamingIt) {
  auto emitted = EventStore::Open(dir_.Sub("live-emitted"), {"index"});
  ASSERT_TRUE(emitted.ok()) << emitted.status();
  ASSERT_TRUE(AppendOne(*store_, "views", 0).ok());
  const std::string backups = dir_.Sub("backups");
  ASSERT_TRUE(CreateBackup(store_->db(), backups, {{"emitted", &(*emitted)->db()}}).ok());
  std::filesystem::remove_all(backups + "/part-emitted");

  auto list = ListBackups(backups);
  ASSERT_TRUE(list.ok()) << list.status();
  ASSERT_EQ(list->size(), 1u);
  EXPECT_NE((*list)[0].damaged.find("part emitted"), std::string::npos) << (*list)[0].damaged;
  auto restored = RestoreBackup(backups, 1, dir_.Sub("restored"));
  EXPECT_EQ(restored.status().code(), absl::StatusCode::kDataLoss) << restored.status();
  EXPECT_FALSE(std::filesystem::exists(backups + "/part-emitted"));
  EXPECT_FALSE(std::filesystem::exists(dir_.Sub("restored") + "/CURRENT"));
}

}  // namespace
}  // namespace crm
