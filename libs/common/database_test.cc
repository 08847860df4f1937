#include "libs/common/database.h"

#include <filesystem>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "gtest/gtest.h"
#include "libs/common/testing/temp_dir.h"
#include "rocksdb/write_batch.h"

namespace crm {
namespace {

// A failed flush or WAL sync that stops RocksDB's writes is kept, so the
// service can say it no longer serves (and be restarted); a soft error,
// under which writes go on, is not; a recovery clears it.
TEST(DatabaseTest, ABackgroundErrorThatStopsWritesIsReported) {
  crm::testing::TempDir dir;
  auto db = Database::Open(dir.Sub("db"), {"rows"});
  ASSERT_TRUE(db.ok()) << db.status();
  EXPECT_TRUE((*db)->StoppedBy().ok());
  (*db)->BackgroundErrorForTest(
      rocksdb::Status(rocksdb::Status::NoSpace(), rocksdb::Status::kSoftError));
  EXPECT_TRUE((*db)->StoppedBy().ok()) << "writes go on under a soft error";
  (*db)->BackgroundErrorForTest(
      rocksdb::Status(rocksdb::Status::IOError("sync failed"), rocksdb::Status::kHardError));
  EXPECT_TRUE(absl::IsUnavailable((*db)->StoppedBy())) << (*db)->StoppedBy();
  EXPECT_NE((*db)->StoppedBy().message().find("sync failed"), std::string::npos);
  (*db)->RecoveredForTest();
  EXPECT_TRUE((*db)->StoppedBy().ok());
}

// A family retired (dropped when the database opens) is gone, and the
// others flush as before: erased keys are compacted away after a flush.
TEST(DatabaseTest, ADatabaseWithARetiredFamilyFlushes) {
  crm::testing::TempDir dir;
  {
    auto db = Database::Open(dir.Sub("db"), {"rows", "old"});
    ASSERT_TRUE(db.ok()) << db.status();
  }
  DatabaseOptions tuning;
  tuning.retired_families = {"old"};
  auto db = Database::Open(dir.Sub("db"), {"rows"}, tuning);
  ASSERT_TRUE(db.ok()) << db.status();
  EXPECT_EQ((*db)->Family("old"), nullptr);
  rocksdb::WriteBatch batch;
  ASSERT_TRUE(batch.Put((*db)->Family("rows"), "a", "1").ok());
  ASSERT_TRUE((*db)->Write(&batch, /*sync=*/false).ok());
  const absl::Status flushed = (*db)->Flush();
  EXPECT_TRUE(flushed.ok()) << flushed;
}

// Reads through a snapshot agree with one another: a write after it is
// seen by the database's own reads, not by the snapshot's.
TEST(DatabaseTest, ASnapshotsReadsSeeNoLaterWrite) {
  crm::testing::TempDir dir;
  auto db = Database::Open(dir.Sub("db"), {"rows"});
  ASSERT_TRUE(db.ok()) << db.status();
  auto put = [&](const std::string& key, const std::string& value) {
    rocksdb::WriteBatch batch;
    ASSERT_TRUE(batch.Put((*db)->Family("rows"), key, value).ok());
    ASSERT_TRUE((*db)->Write(&batch, /*sync=*/false).ok());
  };
  put("a", "1");
  const DbSnapshot snapshot(**db);
  const DbReader before = snapshot;
  put("a", "2");
  put("b", "3");
  const DbReader latest = **db;
  EXPECT_EQ(*before.Get("rows", "a"), std::optional<std::string>("1"));
  EXPECT_EQ(*before.Get("rows", "b"), std::nullopt);
  EXPECT_EQ(*latest.Get("rows", "a"), std::optional<std::string>("2"));
  auto values = before.MultiGet("rows", {"a", "b"});
  ASSERT_TRUE(values.ok()) << values.status();
  EXPECT_EQ((*values)[0], std::optional<std::string>("1"));
  EXPECT_EQ((*values)[1], std::nullopt);
  int rows = 0;
  auto it = before.NewIterator("rows");
  for (it->SeekToFirst(); it->Valid(); it->Next()) ++rows;
  EXPECT_EQ(rows, 1);
  MergedScan scan(before, "rows", {""}, "");
  ASSERT_TRUE(scan.Valid());
  EXPECT_EQ(scan.value().ToString(), "1");
}

// Rows under two prefixes, interleaved by suffix, beside a third prefix
// the scan is not given: read as one list in suffix order, resumable.
TEST(MergedScanTest, WalksSeveralPrefixesAsOneInSuffixOrder) {
  testing::TempDir dir;
  auto db = Database::Open(dir.Sub("db"), {"rows"});
  ASSERT_TRUE(db.ok()) << db.status();
  rocksdb::WriteBatch batch;
  for (const auto& [key, value] : std::vector<std::pair<std::string, std::string>>{{"a/1", "a1"},
                                                                                   {"a/4", "a4"},
                                                                                   {"b/2", "b2"},
                                                                                   {"b/3", "b3"},
                                                                                   {"b/5", "b5"},
                                                                                   {"c/0", "c0"}}) {
    ASSERT_TRUE(batch.Put((*db)->Family("rows"), key, value).ok());
  }
  ASSERT_TRUE((*db)->Write(&batch, false).ok());

  auto read = [&](const std::string& after) {
    std::vector<std::string> out;
    MergedScan scan(**db, "rows", {"a/", "b/"}, after);
    for (; scan.Valid(); scan.Next()) {
      out.push_back(std::string(scan.suffix()) + "=" + std::string(View(scan.value())));
    }
    EXPECT_TRUE(scan.status().ok()) << scan.status();
    return out;
  };
  EXPECT_EQ(read(""), (std::vector<std::string>{"1=a1", "2=b2", "3=b3", "4=a4", "5=b5"}));
  EXPECT_EQ(read("3"), (std::vector<std::string>{"4=a4", "5=b5"}));
  EXPECT_TRUE(read("5").empty());
  MergedScan none(**db, "rows", {}, "");
  EXPECT_FALSE(none.Valid());
}

// A prefix whose iterator fails part-way (a damaged table block) ends the
// whole scan with its error: the other prefixes' rows after it would
// otherwise be returned, and a page token past them skip the rows the
// failed one still had.
TEST(MergedScanTest, AFailedPrefixEndsTheScan) {
  testing::TempDir dir;
  std::vector<std::string> order;  // every suffix, in scan order
  {
    auto db = Database::Open(dir.Sub("db"), {"rows"});
    ASSERT_TRUE(db.ok()) << db.status();
    rocksdb::WriteBatch batch;
    uint32_t noise = 1;
    for (int i = 0; i < 200; ++i) {
      const std::string suffix = absl::StrFormat("%03d", i);
      order.push_back(suffix);
      // b's rows fill most of the table file, a's are small.
      std::string value = absl::StrCat("v", i);
      if (i % 2 == 1) {
        for (int j = 0; j < 4096; ++j)
          value.push_back(static_cast<char>(noise = noise * 1103515245 + 12345));
      }
      ASSERT_TRUE(batch.Put((*db)->Family("rows"), (i % 2 ? "b/" : "a/") + suffix, value).ok());
    }
    ASSERT_TRUE((*db)->Write(&batch, true).ok());
    ASSERT_TRUE((*db)->Flush().ok());
  }
  // Damage the middle of the one table file: one of b's blocks.
  std::string table;
  for (const auto& entry : std::filesystem::directory_iterator(dir.Sub("db"))) {
    if (entry.path().extension() == ".sst" && entry.file_size() > 400'000) table = entry.path();
  }
  ASSERT_FALSE(table.empty());
  {
    std::fstream f(table, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(std::filesystem::file_size(table) / 2));
    f.write("\xde\xad\xbe\xef\xde\xad\xbe\xef", 8);
  }
  auto db = Database::Open(dir.Sub("db"), {"rows"});
  ASSERT_TRUE(db.ok()) << db.status();
  std::vector<std::string> read;
  MergedScan scan(**db, "rows", {"a/", "b/"}, "");
  for (; scan.Valid(); scan.Next()) read.emplace_back(scan.suffix());
  ASSERT_FALSE(scan.status().ok()) << "the damage was not met";
  ASSERT_LT(read.size(), order.size());
  EXPECT_EQ(read, std::vector<std::string>(order.begin(), order.begin() + read.size()))
      << "rows returned past the failed prefix's last one";
}

}  // namespace
}  // namespace crm
