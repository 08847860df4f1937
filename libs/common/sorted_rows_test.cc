#include "libs/common/sorted_rows.h"

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "libs/common/database.h"
#include "libs/common/testing/temp_dir.h"

namespace crm {
namespace {

// The rows of a WriteBatch in the order they are in it.
class Recorder final : public rocksdb::WriteBatch::Handler {
 public:
  rocksdb::Status PutCF(uint32_t cf, const rocksdb::Slice& key,
                        const rocksdb::Slice& value) override {
    rows.push_back(std::to_string(cf) + ":" + key.ToString() + "=" + value.ToString());
    return rocksdb::Status::OK();
  }
  rocksdb::Status DeleteCF(uint32_t cf, const rocksdb::Slice& key) override {
    rows.push_back(std::to_string(cf) + ":" + key.ToString() + " deleted");
    return rocksdb::Status::OK();
  }
  std::vector<std::string> rows;
};

class SortedRowsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto db = Database::Open(dir_.Sub("db"), {"a", "b"});
    ASSERT_TRUE(db.ok()) << db.status();
    db_ = std::move(*db);
    a_ = db_->Family("a");
    b_ = db_->Family("b");
    ASSERT_LT(a_->GetID(), b_->GetID());
  }
  std::string A(const std::string& row) { return std::to_string(a_->GetID()) + ":" + row; }
  std::string B(const std::string& row) { return std::to_string(b_->GetID()) + ":" + row; }

  testing::TempDir dir_;
  std::unique_ptr<Database> db_;
  rocksdb::ColumnFamilyHandle* a_ = nullptr;
  rocksdb::ColumnFamilyHandle* b_ = nullptr;
};

TEST_F(SortedRowsTest, BatchHoldsRowsInFamilyAndKeyOrder) {
  SortedRows rows;
  // Keys that share their first 8 bytes, differ only after them, are
  // shorter than 8 bytes or hold bytes above 0x7f.
  ASSERT_TRUE(rows.Put(b_, "k", "1").ok());
  ASSERT_TRUE(rows.Put(a_, "customer-0002", "2").ok());
  ASSERT_TRUE(rows.Put(a_, "customer-0001", "3").ok());
  ASSERT_TRUE(rows.Put(a_, "cust", "4").ok());
  ASSERT_TRUE(rows.Put(a_, std::string("\xff\x01", 2), "5").ok());
  ASSERT_TRUE(rows.Put(a_, std::string("cust\0", 5), "6").ok());
  ASSERT_TRUE(rows.Put(b_, "", "7").ok());
  rocksdb::WriteBatch batch;
  ASSERT_TRUE(rows.AddTo(batch).ok());
  Recorder recorder;
  ASSERT_TRUE(batch.Iterate(&recorder).ok());
  EXPECT_EQ(recorder.rows,
            (std::vector<std::string>{A("cust=4"), A(std::string("cust\0=6", 7)),
                                      A("customer-0001=3"), A("customer-0002=2"),
                                      A(std::string("\xff\x01=5", 4)), B("=7"), B("k=1")}));
}

TEST_F(SortedRowsTest, KeyWrittenSeveralTimesKeepsItsWritesInOrder) {
  SortedRows rows;
  ASSERT_TRUE(rows.Put(a_, "x", "first").ok());
  ASSERT_TRUE(rows.Put(a_, "y", "kept").ok());
  ASSERT_TRUE(rows.Delete(a_, "x").ok());
  ASSERT_TRUE(rows.Put(b_, "x", "other family").ok());
  ASSERT_TRUE(rows.Put(a_, "x", "last").ok());
  ASSERT_TRUE(rows.Put(a_, "z", "soon gone").ok());
  ASSERT_TRUE(rows.Delete(a_, "z").ok());
  rocksdb::WriteBatch batch;
  ASSERT_TRUE(rows.AddTo(batch).ok());
  Recorder recorder;
  ASSERT_TRUE(batch.Iterate(&recorder).ok());
  EXPECT_EQ(recorder.rows,
            (std::vector<std::string>{A("x=first"), A("x deleted"), A("x=last"), A("y=kept"),
                                      A("z=soon gone"), A("z deleted"), B("x=other family")}));

  // What the database holds after the batch, and what Find answers.
  ASSERT_TRUE(db_->Write(&batch, /*sync=*/false).ok());
  EXPECT_EQ(**db_->Get("a", "x"), "last");
  EXPECT_EQ(**db_->Get("b", "x"), "other family");
  EXPECT_FALSE(db_->Get("a", "z")->has_value());
  EXPECT_EQ(**rows.Find(a_->GetID(), "x"), "last");
  EXPECT_EQ(**rows.Find(b_->GetID(), "x"), "other family");
  ASSERT_TRUE(rows.Find(a_->GetID(), "z").has_value());
  EXPECT_FALSE(rows.Find(a_->GetID(), "z")->has_value());  // deleted
  EXPECT_FALSE(rows.Find(a_->GetID(), "w").has_value());   // never written
  EXPECT_FALSE(rows.Find(b_->GetID(), "y").has_value());
}

TEST_F(SortedRowsTest, FindComparesWholeKeysBeyondTheirFirstEightBytes) {
  SortedRows rows;
  ASSERT_TRUE(rows.Put(a_, "customer-0002", "2").ok());
  ASSERT_TRUE(rows.Put(a_, "customer-0001", "1").ok());
  ASSERT_TRUE(rows.Put(a_, "cust", "short").ok());
  rows.Sort();
  EXPECT_EQ(**rows.Find(a_->GetID(), "customer-0001"), "1");
  EXPECT_EQ(**rows.Find(a_->GetID(), "customer-0002"), "2");
  EXPECT_EQ(**rows.Find(a_->GetID(), "cust"), "short");
  EXPECT_FALSE(rows.Find(a_->GetID(), "customer-0003").has_value());
  EXPECT_FALSE(rows.Find(a_->GetID(), "customer-000").has_value());
  EXPECT_FALSE(rows.Find(a_->GetID(), std::string("cust\0", 5)).has_value());
}

TEST_F(SortedRowsTest, ManyWritesOfFewKeysEndWithTheLastOfEach) {
  SortedRows rows;
  for (int i = 0; i < 1000; ++i) {
    ASSERT_TRUE(rows.Put(a_, "k" + std::to_string(i % 7), std::to_string(i)).ok());
    if (i % 5 == 0) {
      ASSERT_TRUE(rows.Delete(a_, "k" + std::to_string((i + 3) % 7)).ok());
    }
  }
  rocksdb::WriteBatch batch;
  ASSERT_TRUE(rows.AddTo(batch).ok());
  ASSERT_TRUE(db_->Write(&batch, /*sync=*/false).ok());
  // The last write of each key, worked out in request order.
  for (int k = 0; k < 7; ++k) {
    std::optional<std::string> last;
    for (int i = 0; i < 1000; ++i) {
      if (i % 7 == k) last = std::to_string(i);
      if (i % 5 == 0 && (i + 3) % 7 == k) last.reset();
    }
    const std::string key = "k" + std::to_string(k);
    EXPECT_EQ(*db_->Get("a", key), last) << key;
    ASSERT_TRUE(rows.Find(a_->GetID(), key).has_value()) << key;
    const auto found = *rows.Find(a_->GetID(), key);
    EXPECT_EQ(found.has_value() ? std::optional<std::string>(std::string(*found)) : std::nullopt,
              last)
        << key;
  }
}

TEST_F(SortedRowsTest, FindAnswersOnlyOnceSorted) {
  SortedRows rows;
  ASSERT_TRUE(rows.Put(a_, "b", "1").ok());
  ASSERT_TRUE(rows.Put(a_, "a", "2").ok());
  EXPECT_FALSE(rows.sorted());
  EXPECT_FALSE(rows.Find(a_->GetID(), "a").has_value());
  rows.Sort();
  EXPECT_EQ(**rows.Find(a_->GetID(), "a"), "2");
  ASSERT_TRUE(rows.Put(a_, "c", "3").ok());  // a later row unsorts them again
  EXPECT_FALSE(rows.sorted());
}

// BatchBytes is an upper bound, so a batch reserved with it never grows;
// long keys and values take longer length varints.
TEST_F(SortedRowsTest, BatchBytesCoversEveryRow) {
  SortedRows rows;
  ASSERT_TRUE(rows.Put(a_, "k", "v").ok());
  ASSERT_TRUE(rows.Put(b_, std::string(300, 'k'), std::string(70000, 'v')).ok());
  ASSERT_TRUE(rows.Delete(a_, std::string(200, 'd')).ok());
  rocksdb::WriteBatch batch;
  ASSERT_TRUE(rows.AddTo(batch).ok());
  const size_t header = rocksdb::WriteBatch().GetDataSize();
  EXPECT_LE(batch.GetDataSize(), header + rows.BatchBytes());
  // Not far over either: the lengths' varints and tags only.
  EXPECT_LE(header + rows.BatchBytes() - batch.GetDataSize(), 3 * 16u);
}

}  // namespace
}  // namespace crm
