#include "libs/common/subscriber.h"

#include <algorithm>
#include <atomic>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "libs/common/event_store.h"
#include "libs/common/testing/mock_cluster.h"
#include "libs/common/testing/temp_dir.h"
#include "rocksdb/write_batch.h"

namespace crm {

class SubscriberTestPeer {
 public:
  // The subscriber's next `n` seeks fail as timed out; counts them in `failed`.
  static void FailSeeks(Subscriber& s, int n, std::atomic<int>& failed) {
    s.seek_ = [real = std::move(s.seek_), n, &failed](const RdKafka::TopicPartition& tp) mutable {
      if (n > 0) {
        --n;
        failed.fetch_add(1);
        return RdKafka::ERR__TIMED_OUT;
      }
      return real(tp);
    };
  }
  // The consume thread's view of a partition: reading set to start at
  // `offset` (with the anchor before `anchor_of`, if given), and a message
  // consumed at `offset`.
  static void StartAt(Subscriber& s, const std::string& topic, int32_t partition, int64_t offset,
                      std::optional<int64_t> anchor_of = std::nullopt) {
    if (anchor_of.has_value()) {
      s.anchors_[{topic, partition}] = Subscriber::StoredPosition{*anchor_of - 1, "evt"};
    }
    s.ExpectFrom(topic, partition, offset);
  }
  static void Consumed(Subscriber& s, const std::string& topic, int32_t partition, int64_t offset) {
    s.CheckContiguous(topic, partition, offset);
  }
};

namespace {

// Adds one to the count under `key`, read through the transaction.
absl::Status AddOne(ProjectionTxn& txn, const std::string& key) {
  auto current = txn.Get("counts", key);
  if (!current.ok()) return current.status();
  const int n = current->has_value() ? std::stoi(**current) : 0;
  return txn.Put("counts", key, absl::StrCat(n + 1));
}

// A database with the subscriber's families and "counts".
absl::StatusOr<std::unique_ptr<Database>> CountsDatabase(const testing::TempDir& dir) {
  auto families = Subscriber::Families();
  families.push_back("counts");
  return Database::Open(dir.Sub("db"), families);
}

// Counts events per customer: any double application shows as a wrong count.
class CountingProjection final : public Projection {
 public:
  absl::Status Apply(const crm::v1::EventEnvelope& e, ProjectionTxn& txn) override {
    return AddOne(txn, e.customer_id());
  }
};

ConsumedMessage Message(const std::string& stream, int64_t version, int64_t offset,
                        int32_t partition = 0) {
  crm::v1::EventEnvelope e;
  e.set_stream(stream);
  e.set_stream_version(version);
  e.set_customer_id("cus-" + stream);
  e.set_type("Something");
  return {"crm.leads.v1", partition, offset, e.SerializeAsString()};
}

// Options whose dead-letter sink collects the letters in `parked`.
SubscriberOptions ParkingIn(std::vector<DeadLetter>& parked) {
  SubscriberOptions options;
  options.dead_letter_sink = [&parked](const std::vector<DeadLetter>& letters) {
    parked.insert(parked.end(), letters.begin(), letters.end());
    return absl::OkStatus();
  };
  return options;
}

class SubscriberTest : public ::testing::Test {
 protected:
  void SetUp() override {
    db_ = std::move(*CountsDatabase(dir_));
    subscriber_ = std::make_unique<Subscriber>(*db_, projection_, SubscriberOptions{});
  }
  std::string Count(const std::string& customer) {
    auto v = db_->Get("counts", customer);
    return v.ok() && v->has_value() ? **v : "0";
  }
  testing::TempDir dir_;
  std::unique_ptr<Database> db_;
  CountingProjection projection_;
  std::unique_ptr<Subscriber> subscriber_;
};

TEST_F(SubscriberTest, SkipsEventsAlreadyAppliedIncludingRepublishedOnes) {
  ASSERT_TRUE(subscriber_->ApplyBatch({Message("a", 1, 0), Message("a", 2, 1)}).ok());
  // The producer re-published the whole log after a broker restart.
  ASSERT_TRUE(
      subscriber_->ApplyBatch({Message("a", 1, 2), Message("a", 2, 3), Message("a", 3, 4)}).ok());
  EXPECT_EQ(Count("cus-a"), "3");
  EXPECT_EQ(subscriber_->applied(), 3u);
  EXPECT_EQ(subscriber_->skipped(), 2u);
}

TEST_F(SubscriberTest, ADamagedAppliedVersionFailsTheBatchInsteadOfApplyingItAgain) {
  ASSERT_TRUE(subscriber_->ApplyBatch({Message("a", 1, 0)}).ok());
  rocksdb::WriteBatch damage;
  damage.Put(db_->Family("sub_applied"), "a", "abc");
  ASSERT_TRUE(db_->Write(&damage, /*sync=*/false).ok());
  const absl::Status st = subscriber_->ApplyBatch({Message("a", 1, 1), Message("a", 2, 2)});
  EXPECT_EQ(st.code(), absl::StatusCode::kDataLoss) << st;
  EXPECT_EQ(Count("cus-a"), "1");
  EXPECT_EQ(subscriber_->applied(), 1u);
}

// Tells the projection of a batch's commit once its writes are stored.
class CommitWatcher final : public Projection {
 public:
  explicit CommitWatcher(const Database& db) : db_(db) {}
  absl::Status Apply(const crm::v1::EventEnvelope& e, ProjectionTxn& txn) override {
    return AddOne(txn, e.customer_id());
  }
  void Committed() override { seen.push_back(db_.Get("counts", "cus-a")->value_or("0")); }
  std::vector<std::string> seen;

 private:
  const Database& db_;
};

TEST_F(SubscriberTest, TheProjectionIsToldOfACommitAfterItsWritesAreStored) {
  CommitWatcher watcher(*db_);
  Subscriber subscriber(*db_, watcher, SubscriberOptions{});
  ASSERT_TRUE(subscriber.ApplyBatch({Message("a", 1, 0), Message("a", 2, 1)}).ok());
  EXPECT_EQ(watcher.seen, std::vector<std::string>{"2"});
  // A batch that does not commit is not reported.
  db_->FailWritesForTest(/*every=*/1, /*times=*/1);
  EXPECT_FALSE(subscriber.ApplyBatch({Message("a", 3, 2)}).ok());
  EXPECT_EQ(watcher.seen, std::vector<std::string>{"2"});
}

TEST_F(SubscriberTest, DuplicatesInsideOneBatchAreSkipped) {
  ASSERT_TRUE(subscriber_
                  ->ApplyBatch({Message("a", 1, 0), Message("a", 1, 1), Message("b", 1, 2),
                                Message("a", 2, 3)})
                  .ok());
  EXPECT_EQ(Count("cus-a"), "2");
  EXPECT_EQ(Count("cus-b"), "1");
}

TEST_F(SubscriberTest, ATransactionReadsThePendingBatchsWritesBeforeTheyCommit) {
  ASSERT_TRUE(db_->Get("counts", "gone").ok());
  ProjectionTxn seed(*db_);
  ASSERT_TRUE(seed.Put("counts", "gone", "old").ok());
  ASSERT_TRUE(seed.Put("counts", "stored", "in db").ok());
  ASSERT_TRUE(seed.Commit().ok());

  ProjectionTxn pending(*db_);
  ASSERT_TRUE(pending.Put("counts", "a", "1").ok());
  ASSERT_TRUE(pending.PutWriteOnly("counts", "b", "first").ok());
  ASSERT_TRUE(pending.PutWriteOnly("counts", "b", "second").ok());
  ASSERT_TRUE(pending.Delete("counts", "gone").ok());
  pending.Seal();

  ProjectionTxn next(*db_, &pending);
  EXPECT_EQ(next.Get("counts", "a")->value_or("-"), "1");
  EXPECT_EQ(next.Get("counts", "b")->value_or("-"), "second");  // the later write wins
  EXPECT_FALSE(next.Get("counts", "gone")->has_value());
  EXPECT_EQ(next.Get("counts", "stored")->value_or("-"), "in db");
  ASSERT_TRUE(next.Put("counts", "a", "2").ok());
  EXPECT_EQ(next.Get("counts", "a")->value_or("-"), "2");  // its own write first

  // Committed in order, the database agrees with what was read.
  ASSERT_TRUE(pending.Commit().ok());
  next.Seal();
  ASSERT_TRUE(next.Commit().ok());
  EXPECT_EQ(Count("a"), "2");
  EXPECT_EQ(Count("b"), "second");
  EXPECT_FALSE(db_->Get("counts", "gone")->has_value());
}

// A batch commits each key's last write: a put after a delete puts, a
// delete after a put deletes, and a write-only row wins over the others.
TEST_F(SubscriberTest, ABatchCommitsTheLastWriteOfEachKey) {
  ProjectionTxn seed(*db_);
  ASSERT_TRUE(seed.Put("counts", "deleted", "stored").ok());
  ASSERT_TRUE(seed.Commit().ok());

  ProjectionTxn txn(*db_);
  ASSERT_TRUE(txn.Put("counts", "back", "1").ok());
  ASSERT_TRUE(txn.Delete("counts", "back").ok());
  ASSERT_TRUE(txn.Put("counts", "back", "2").ok());
  ASSERT_TRUE(txn.Put("counts", "deleted", "3").ok());
  ASSERT_TRUE(txn.Delete("counts", "deleted").ok());
  ASSERT_TRUE(txn.Put("counts", "both", "read-write").ok());
  ASSERT_TRUE(txn.PutWriteOnly("counts", "both", "write-only").ok());
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(txn.Put("counts", "many", absl::StrCat(i)).ok());
  auto entries = [&] {
    uint64_t n = 0;
    db_->raw()->GetIntProperty(db_->Family("counts"), "rocksdb.num-entries-active-mem-table", &n);
    return n;
  };
  const uint64_t before = entries();
  ASSERT_TRUE(txn.Commit().ok());
  // One row per key (back, deleted, both twice: read-write and write-only,
  // many), not one per write.
  EXPECT_EQ(entries() - before, 5u);

  EXPECT_EQ(Count("back"), "2");
  EXPECT_FALSE(db_->Get("counts", "deleted")->has_value());
  EXPECT_EQ(Count("both"), "write-only");
  EXPECT_EQ(Count("many"), "99");
}

// The sealed rows are searched by key: keys that share their first bytes,
// are prefixes of one another, hold zero bytes or bytes above 0x7f are
// each found, and a key written twice answers its later value.
TEST_F(SubscriberTest, APendingBatchFindsEveryKeyItWroteWhateverItsBytes) {
  const std::vector<std::string> keys = {"abcdefgh1",
                                         std::string("ab\0x", 4),
                                         "ab",
                                         "abcdefgh",
                                         std::string("ab\0", 3),
                                         "\xff\xfe",
                                         "abcdefg",
                                         "abcdefgh0",
                                         "\x80",
                                         std::string(1, '\0'),
                                         "zz"};
  ProjectionTxn pending(*db_);
  for (size_t i = 0; i < keys.size(); ++i) {
    ASSERT_TRUE(pending.PutWriteOnly("counts", keys[i], absl::StrCat("v", i)).ok());
  }
  ASSERT_TRUE(pending.PutWriteOnly("counts", "ab", "again").ok());
  pending.Seal();

  ProjectionTxn next(*db_, &pending);
  for (size_t i = 0; i < keys.size(); ++i) {
    const std::string want = keys[i] == "ab" ? "again" : absl::StrCat("v", i);
    EXPECT_EQ(next.Get("counts", keys[i])->value_or("-"), want) << absl::CEscape(keys[i]);
  }
  for (const std::string absent : {"a", "abcdefgh2", "abcdefgi", "ab\x01", "zzz"}) {
    EXPECT_FALSE(next.Get("counts", absent)->has_value()) << absl::CEscape(absent);
  }
}

TEST_F(SubscriberTest, StoresNextOffsetPerPartitionWithTheEffect) {
  ASSERT_TRUE(subscriber_->ApplyBatch({Message("a", 1, 10, 0), Message("b", 1, 7, 3)}).ok());
  EXPECT_EQ(**subscriber_->StoredOffset("crm.leads.v1", 0), 11);
  EXPECT_EQ(**subscriber_->StoredOffset("crm.leads.v1", 3), 8);
  EXPECT_FALSE(subscriber_->StoredOffset("crm.leads.v1", 1)->has_value());

  // Reopening the database (a restart) keeps offsets and dedupe state.
  subscriber_.reset();
  db_.reset();
  SetUp();
  EXPECT_EQ(**subscriber_->StoredOffset("crm.leads.v1", 0), 11);
  ASSERT_TRUE(subscriber_->ApplyBatch({Message("a", 1, 11)}).ok());
  EXPECT_EQ(Count("cus-a"), "1");
}

TEST_F(SubscriberTest, UndecodableMessageIsParkedAndTheRestApplied) {
  std::vector<DeadLetter> parked;
  Subscriber subscriber(*db_, projection_, ParkingIn(parked));
  ConsumedMessage poison{"crm.leads.v1", 0, 0, "\xff\xff not a protobuf"};
  ASSERT_TRUE(subscriber.ApplyBatch({poison, Message("a", 1, 1)}).ok());
  EXPECT_EQ(subscriber.poisoned(), 1u);
  EXPECT_EQ(Count("cus-a"), "1");
  EXPECT_EQ(**subscriber.StoredOffset("crm.leads.v1", 0), 2);
  ASSERT_EQ(parked.size(), 1u);
  EXPECT_EQ(parked[0].message.value, poison.value);
  EXPECT_EQ(parked[0].message.offset, 0);
  EXPECT_NE(parked[0].reason.find("undecodable"), std::string::npos);
}

TEST_F(SubscriberTest, AnEventStampedOutsideTheCalendarIsParked) {
  std::vector<DeadLetter> parked;
  Subscriber subscriber(*db_, projection_, ParkingIn(parked));
  crm::v1::EventEnvelope e;
  e.set_stream("far");
  e.set_stream_version(1);
  e.set_customer_id("cus-far");
  e.mutable_occurred_at()->set_seconds(std::numeric_limits<int64_t>::max());
  ConsumedMessage far{"crm.leads.v1", 0, 0, e.SerializeAsString()};
  e.mutable_occurred_at()->set_seconds(0);
  e.mutable_occurred_at()->set_nanos(-1);
  ConsumedMessage bad_nanos{"crm.leads.v1", 0, 1, e.SerializeAsString()};
  ASSERT_TRUE(subscriber.ApplyBatch({far, bad_nanos, Message("a", 1, 2)}).ok());
  EXPECT_EQ(subscriber.poisoned(), 2u);
  EXPECT_EQ(Count("cus-far"), "0");
  EXPECT_EQ(Count("cus-a"), "1");
  ASSERT_EQ(parked.size(), 2u);
  EXPECT_NE(parked[0].reason.find("occurred_at"), std::string::npos);
}

// Fails the first `failures` calls with `code`, then counts like CountingProjection.
class FlakyProjection final : public Projection {
 public:
  FlakyProjection(absl::StatusCode code, int failures) : code_(code), failures_(failures) {}
  absl::Status Apply(const crm::v1::EventEnvelope& e, ProjectionTxn& txn) override {
    if (failures_-- > 0) return absl::Status(code_, "flaky");
    return counting_.Apply(e, txn);
  }

 private:
  absl::StatusCode code_;
  int failures_;
  CountingProjection counting_;
};

TEST_F(SubscriberTest, TransientProjectionFailureRetriesTheBatchInsteadOfParking) {
  FlakyProjection flaky(absl::StatusCode::kUnavailable, 1);
  int parked = 0;
  SubscriberOptions options;
  options.dead_letter_sink = [&](const std::vector<DeadLetter>& l) {
    parked += static_cast<int>(l.size());
    return absl::OkStatus();
  };
  Subscriber subscriber(*db_, flaky, options);
  const std::vector<ConsumedMessage> batch = {Message("a", 1, 0), Message("b", 1, 1)};
  EXPECT_EQ(subscriber.ApplyBatch(batch).code(), absl::StatusCode::kUnavailable);
  EXPECT_FALSE(subscriber.StoredOffset("crm.leads.v1", 0)->has_value());
  ASSERT_TRUE(subscriber.ApplyBatch(batch).ok());  // the redelivery
  EXPECT_EQ(Count("cus-a"), "1");
  EXPECT_EQ(Count("cus-b"), "1");
  EXPECT_EQ(parked, 0);
}

TEST_F(SubscriberTest, PermanentProjectionFailureParksTheEventAndGoesOn) {
  FlakyProjection bad(absl::StatusCode::kFailedPrecondition, 1);
  int parked = 0;
  SubscriberOptions options;
  options.dead_letter_sink = [&](const std::vector<DeadLetter>& l) {
    parked += static_cast<int>(l.size());
    return absl::OkStatus();
  };
  Subscriber subscriber(*db_, bad, options);
  ASSERT_TRUE(subscriber.ApplyBatch({Message("a", 1, 0), Message("b", 1, 1)}).ok());
  EXPECT_EQ(parked, 1);
  EXPECT_EQ(Count("cus-a"), "0");
  EXPECT_EQ(Count("cus-b"), "1");
  // Redelivered, the parked event is not tried again.
  ASSERT_TRUE(subscriber.ApplyBatch({Message("a", 1, 2)}).ok());
  EXPECT_EQ(Count("cus-a"), "0");
}

TEST_F(SubscriberTest, BatchDoesNotCommitWhenItsDeadLettersCannotBeStored) {
  SubscriberOptions options;
  options.dead_letter_sink = [](const std::vector<DeadLetter>&) {
    return absl::UnavailableError("dead-letter topic down");
  };
  Subscriber subscriber(*db_, projection_, options);
  ConsumedMessage poison{"crm.leads.v1", 0, 0, "garbage"};
  EXPECT_FALSE(subscriber.ApplyBatch({Message("a", 1, 1), poison}).ok());
  // Nothing of the batch took effect: it will be consumed again.
  EXPECT_EQ(Count("cus-a"), "0");
  EXPECT_FALSE(subscriber.StoredOffset("crm.leads.v1", 0)->has_value());
}

// Options for a subscriber of `topic` on `cluster`, in a group of its own.
SubscriberOptions KafkaOptions(const crm::testing::MockCluster& cluster, const std::string& topic) {
  SubscriberOptions options;
  options.brokers = cluster.bootstrap();
  options.group_id = topic + "-group";
  options.topics = {topic};
  return options;
}

// Publishes `events` to one partition and waits until the broker has them.
void PublishEvents(const crm::testing::MockCluster& cluster, const std::string& topic,
                   int32_t partition, const std::vector<crm::v1::EventEnvelope>& events) {
  auto conf = MakeKafkaConf({{"bootstrap.servers", cluster.bootstrap()}});
  ASSERT_TRUE(conf.ok()) << conf.status();
  std::string err;
  std::unique_ptr<RdKafka::Producer> producer(RdKafka::Producer::create(conf->get(), err));
  ASSERT_NE(producer, nullptr) << err;
  for (const auto& e : events) {
    const std::string value = e.SerializeAsString();
    ASSERT_EQ(
        producer->produce(topic, partition, RdKafka::Producer::RK_MSG_COPY,
                          const_cast<char*>(value.data()), value.size(), nullptr, 0, 0, nullptr),
        RdKafka::ERR_NO_ERROR);
  }
  ASSERT_EQ(producer->flush(10000), RdKafka::ERR_NO_ERROR);
}

crm::v1::EventEnvelope Versioned(const std::string& stream, int64_t version) {
  crm::v1::EventEnvelope e;
  e.set_stream(stream);
  e.set_stream_version(version);
  return e;
}

// Publishes a version-1 event for each of `streams`.
void Publish(const crm::testing::MockCluster& cluster, const std::string& topic, int32_t partition,
             const std::vector<std::string>& streams) {
  std::vector<crm::v1::EventEnvelope> events;
  for (const auto& stream : streams) events.push_back(Versioned(stream, 1));
  PublishEvents(cluster, topic, partition, events);
}

// "<prefix>0" .. "<prefix>(n-1)".
std::vector<std::string> Streams(const std::string& prefix, int n) {
  std::vector<std::string> out;
  for (int i = 0; i < n; ++i) out.push_back(absl::StrCat(prefix, i));
  return out;
}

// Polls `done` every 20 ms for up to 30 s.
bool Eventually(const std::function<bool()>& done) {
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (!done()) {
    if (absl::Now() >= deadline) return false;
    absl::SleepFor(absl::Milliseconds(20));
  }
  return true;
}

// `n` version-1 events of about 20 KB each, streams "<prefix>0" on.
std::vector<crm::v1::EventEnvelope> BigEvents(const std::string& prefix, int n) {
  std::vector<crm::v1::EventEnvelope> events;
  for (int i = 0; i < n; ++i) {
    events.push_back(Versioned(absl::StrCat(prefix, i), 1));
    events.back().set_actor(std::string(20'000, 'x'));
  }
  return events;
}

// The most events any one batch applied.
class LargestBatch final : public Projection {
 public:
  void BeginBatch() override { in_batch_ = 0; }
  absl::Status Apply(const crm::v1::EventEnvelope&, ProjectionTxn&) override {
    largest_.store(std::max(largest_.load(), ++in_batch_));
    return absl::OkStatus();
  }
  int largest() const { return largest_.load(); }

 private:
  int in_batch_ = 0;  // the apply thread's
  std::atomic<int> largest_{0};
};

TEST(SubscriberBatchTest, ABatchEndsAtItsByteBound) {
  // Events up to 900 KB each: 5,000 of them would be gigabytes in memory.
  crm::testing::MockCluster cluster({{"bytes.test", 1}});
  ASSERT_TRUE(cluster.ok());
  constexpr int kEvents = 30;
  ASSERT_NO_FATAL_FAILURE(PublishEvents(cluster, "bytes.test", 0, BigEvents("big-", kEvents)));

  crm::testing::TempDir dir;
  auto db = CountsDatabase(dir);
  ASSERT_TRUE(db.ok()) << db.status();
  LargestBatch projection;
  SubscriberOptions options = KafkaOptions(cluster, "bytes.test");
  options.max_batch_bytes = 50'000;  // reached by the third event
  Subscriber subscriber(**db, projection, options);
  ASSERT_TRUE(subscriber.Start().ok());
  EXPECT_TRUE(Eventually([&] { return subscriber.applied() == kEvents; }));
  subscriber.Stop();
  EXPECT_GE(projection.largest(), 1);
  EXPECT_LE(projection.largest(), 3);
}

TEST(SubscriberHistoryTest, EachLostMessageCountsOnceAndOnlyPastWhatWasApplied) {
  testing::TempDir dir;
  auto db = CountsDatabase(dir);
  ASSERT_TRUE(db.ok()) << db.status();
  CountingProjection projection;
  Subscriber s(**db, projection, SubscriberOptions{});
  using Peer = SubscriberTestPeer;
  // From the beginning, the first message held is offset 10.
  Peer::StartAt(s, "t", 0, RdKafka::Topic::OFFSET_BEGINNING);
  Peer::Consumed(s, "t", 0, 10);
  Peer::Consumed(s, "t", 0, 11);
  EXPECT_EQ(s.history_lost(), 10u);
  // Read again from the start (a failed batch, a rebalance): the same gap.
  Peer::StartAt(s, "t", 0, 0);
  Peer::Consumed(s, "t", 0, 10);
  EXPECT_EQ(s.history_lost(), 10u);
  // A later gap counts what it adds; going back (a seek) counts nothing.
  Peer::Consumed(s, "t", 0, 15);
  Peer::StartAt(s, "t", 0, 12);
  Peer::Consumed(s, "t", 0, 12);
  EXPECT_EQ(s.history_lost(), 14u);  // 11..14
  // Resumed one message before the stored offset 50 to check the anchor:
  // a broker that dropped up to 60 lost 50..59, not the anchor applied.
  Peer::StartAt(s, "t", 1, 49, /*anchor_of=*/50);
  Peer::Consumed(s, "t", 1, 60);
  EXPECT_EQ(s.history_lost(), 24u);
  // The keys topic is compacted: its gaps are records superseded.
  Peer::StartAt(s, kKeysTopic, 0, 0);
  Peer::Consumed(s, kKeysTopic, 0, 7);
  EXPECT_EQ(s.history_lost(), 24u);
}

TEST(SubscriberHistoryTest, EventsTheBrokerNoLongerHoldsAreCountedAsLost) {
  // The embedded broker keeps at most 5 MiB per partition and drops the
  // oldest messages past that: 6.6 MB here.
  crm::testing::MockCluster cluster({{"history.test", 1}});
  ASSERT_TRUE(cluster.ok());
  constexpr int kEvents = 330;
  ASSERT_NO_FATAL_FAILURE(PublishEvents(cluster, "history.test", 0, BigEvents("old-", kEvents)));

  crm::testing::TempDir dir;
  auto db = CountsDatabase(dir);
  ASSERT_TRUE(db.ok()) << db.status();
  CountingProjection projection;
  Subscriber subscriber(**db, projection, KafkaOptions(cluster, "history.test"));
  ASSERT_TRUE(subscriber.Start().ok());
  ASSERT_TRUE(Eventually([&] { return subscriber.caught_up() && subscriber.applied() > 0; }));
  subscriber.Stop();
  // What was applied and what is reported lost make up the whole history.
  EXPECT_GT(subscriber.history_lost(), 0u);
  EXPECT_LT(subscriber.applied(), static_cast<uint64_t>(kEvents));
  EXPECT_EQ(subscriber.applied() + subscriber.history_lost(), static_cast<uint64_t>(kEvents));
}

TEST(SubscriberHistoryTest, AWholeHistoryLosesNothing) {
  crm::testing::MockCluster cluster({{"whole.test", 2}});
  ASSERT_TRUE(cluster.ok());
  Publish(cluster, "whole.test", 0, Streams("a", 50));
  Publish(cluster, "whole.test", 1, Streams("b", 50));
  crm::testing::TempDir dir;
  auto db = CountsDatabase(dir);
  ASSERT_TRUE(db.ok()) << db.status();
  CountingProjection projection;
  {
    Subscriber subscriber(**db, projection, KafkaOptions(cluster, "whole.test"));
    ASSERT_TRUE(subscriber.Start().ok());
    ASSERT_TRUE(Eventually([&] { return subscriber.applied() == 100; }));
    subscriber.Stop();
    EXPECT_EQ(subscriber.history_lost(), 0u);
  }
  // Resumed from the stored offsets (one message early, to check it).
  Publish(cluster, "whole.test", 0, Streams("c", 10));
  // A group of its own: the first member's leaving is not waited for.
  SubscriberOptions again = KafkaOptions(cluster, "whole.test");
  again.group_id = "whole.test-again";
  Subscriber resumed(**db, projection, again);
  ASSERT_TRUE(resumed.Start().ok());
  ASSERT_TRUE(Eventually([&] { return resumed.applied() == 10; }));
  resumed.Stop();
  EXPECT_EQ(resumed.history_lost(), 0u);
}

// Slow enough that the consumer lags for several of its 2 s lag refreshes.
class SlowProjection final : public Projection {
 public:
  absl::Status Apply(const crm::v1::EventEnvelope&, ProjectionTxn&) override {
    absl::SleepFor(absl::Milliseconds(50));
    return absl::OkStatus();
  }
};

TEST(SubscriberLagTest, LagReturnsToZeroOnceCaughtUpAndIdle) {
  // Readiness gates (the churn monitor's) wait for lag 0: a lag measured
  // while messages were pending must not stand once the consumer is idle.
  crm::testing::MockCluster cluster({{"lag.test", 1}});
  ASSERT_TRUE(cluster.ok());
  crm::testing::TempDir dir;
  auto db = Database::Open(dir.Sub("db"), Subscriber::Families());
  ASSERT_TRUE(db.ok()) << db.status();
  SlowProjection projection;
  SubscriberOptions options = KafkaOptions(cluster, "lag.test");
  options.max_batch = 1;
  Subscriber subscriber(**db, projection, options);
  ASSERT_TRUE(subscriber.Start().ok());
  // Joining the group takes seconds: until then nothing is known.
  EXPECT_FALSE(subscriber.caught_up());

  constexpr int kMessages = 100;  // 5 s of applying
  ASSERT_NO_FATAL_FAILURE(Publish(cluster, "lag.test", 0, Streams("s-", kMessages)));

  bool lagged = false;
  const absl::Time deadline = absl::Now() + absl::Seconds(60);
  while (subscriber.applied() < kMessages && absl::Now() < deadline) {
    lagged = lagged || subscriber.lag() > 0;
    absl::SleepFor(absl::Milliseconds(50));
  }
  ASSERT_EQ(subscriber.applied(), static_cast<uint64_t>(kMessages));
  EXPECT_TRUE(lagged) << "the lag was never measured while behind";
  // Idle now: the next refresh (every 2 s) must see it caught up.
  const absl::Time idle_deadline = absl::Now() + absl::Seconds(10);
  while (subscriber.lag() != 0 && absl::Now() < idle_deadline) {
    absl::SleepFor(absl::Milliseconds(50));
  }
  EXPECT_EQ(subscriber.lag(), 0);
  EXPECT_TRUE(subscriber.caught_up());
  subscriber.Stop();
}

// More group members than partitions: the member given none has nothing to
// read, so it is caught up (a readiness gate on it must open), not unknown.
TEST(SubscriberLagTest, AMemberGivenNoPartitionIsCaughtUp) {
  crm::testing::MockCluster cluster({{"spare.test", 1}});
  ASSERT_TRUE(cluster.ok());
  crm::testing::TempDir dir;
  SlowProjection projection;
  std::vector<std::unique_ptr<Database>> dbs;
  std::vector<std::unique_ptr<Subscriber>> members;
  for (int i = 0; i < 2; ++i) {
    auto db = Database::Open(dir.Sub(absl::StrCat("db", i)), Subscriber::Families());
    ASSERT_TRUE(db.ok()) << db.status();
    dbs.push_back(*std::move(db));
    members.push_back(
        std::make_unique<Subscriber>(*dbs.back(), projection, KafkaOptions(cluster, "spare.test")));
    ASSERT_TRUE(members.back()->Start().ok());
  }
  ASSERT_NO_FATAL_FAILURE(Publish(cluster, "spare.test", 0, Streams("s-", 3)));
  EXPECT_TRUE(Eventually([&] {
    return members[0]->applied() + members[1]->applied() == 3 && members[0]->caught_up() &&
           members[1]->caught_up();
  })) << members[0]->applied()
      << " " << members[1]->applied();
  for (auto& m : members) m->Stop();
}

// Holds one stream's event until released.
class SlowOnStream final : public Projection {
 public:
  explicit SlowOnStream(std::string stream) : stream_(std::move(stream)) {}
  absl::Status Apply(const crm::v1::EventEnvelope& e, ProjectionTxn&) override {
    if (e.stream() == stream_) {
      started_ = true;
      // Bounded, so a test that fails before releasing still ends.
      release_.WaitForNotificationWithTimeout(absl::Seconds(60));
    }
    return absl::OkStatus();
  }
  bool started() const { return started_.load(); }
  void Release() { release_.Notify(); }

 private:
  const std::string stream_;
  std::atomic<bool> started_{false};
  absl::Notification release_;
};

TEST(SubscriberLagTest, LagCountsMessagesTakenButNotYetApplied) {
  // The last event is off the topic long before it is applied: the lag
  // must not read zero until it is (readiness gates rely on it).
  crm::testing::MockCluster cluster({{"inflight.test", 1}});
  ASSERT_TRUE(cluster.ok());
  crm::testing::TempDir dir;
  auto db = Database::Open(dir.Sub("db"), Subscriber::Families());
  ASSERT_TRUE(db.ok()) << db.status();
  constexpr int kMessages = 10;
  SlowOnStream projection(absl::StrCat("s-", kMessages - 1));
  Subscriber subscriber(**db, projection, KafkaOptions(cluster, "inflight.test"));
  ASSERT_TRUE(subscriber.Start().ok());
  ASSERT_NO_FATAL_FAILURE(Publish(cluster, "inflight.test", 0, Streams("s-", kMessages)));

  const absl::Time deadline = absl::Now() + absl::Seconds(60);
  while (!projection.started() && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(5));
  ASSERT_TRUE(projection.started());
  // The lag is refreshed every 2 s: refreshes fall inside the hold, which
  // lasts until the checks are done however slow the machine.
  absl::SleepFor(absl::Milliseconds(2600));
  EXPECT_GT(subscriber.lag(), 0);
  EXPECT_LT(subscriber.applied(), static_cast<uint64_t>(kMessages));
  projection.Release();
  while (subscriber.lag() != 0 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  ASSERT_EQ(subscriber.lag(), 0);
  EXPECT_EQ(subscriber.applied(), static_cast<uint64_t>(kMessages));
  subscriber.Stop();
}

// Fails the first time it meets each of some streams, slowly applies the
// rest, and counts applications per stream.
class FailsOnceOnStreams final : public Projection {
 public:
  explicit FailsOnceOnStreams(absl::flat_hash_set<std::string> streams)
      : to_fail_(std::move(streams)) {}
  absl::Status Apply(const crm::v1::EventEnvelope& e, ProjectionTxn& txn) override {
    if (to_fail_.erase(e.stream()) > 0) return absl::UnavailableError("busy for a moment");
    absl::SleepFor(absl::Microseconds(500));  // lets the consumer run ahead
    return AddOne(txn, e.stream());
  }

 private:
  absl::flat_hash_set<std::string> to_fail_;  // only the apply thread calls Apply
};

// A batch read again after a transient failure meets its poison again but
// counts it once: crm_events_dead_lettered counts the letters of batches
// that committed, not each time a poison is found.
TEST_F(SubscriberTest, APoisonInABatchRetriedIsCountedOnce) {
  std::vector<DeadLetter> parked;
  FailsOnceOnStreams projection({"b"});
  Subscriber subscriber(*db_, projection, ParkingIn(parked));
  const std::vector<ConsumedMessage> batch = {{"crm.leads.v1", 0, 0, "\xff\xff not a protobuf"},
                                              Message("b", 1, 1)};
  EXPECT_TRUE(absl::IsUnavailable(subscriber.ApplyBatch(batch)));
  EXPECT_EQ(subscriber.poisoned(), 0u);
  ASSERT_TRUE(subscriber.ApplyBatch(batch).ok());
  EXPECT_EQ(subscriber.poisoned(), 1u);
  EXPECT_EQ(subscriber.applied(), 1u);
  EXPECT_EQ(parked.size(), 1u);
}

// Both ways of committing (in the apply thread, and on another thread
// while the next batch is applied), with the seeks back working or
// failing a few times first.
class SubscriberRetryTest : public ::testing::TestWithParam<std::tuple<bool, int>> {};

TEST_P(SubscriberRetryTest, AFailedBatchAndTheBatchesTakenAfterItAreAllAppliedOnce) {
  // The next batches are taken off the topic while one is applied: when it
  // fails, it and every batch taken after it (from any partition) must be
  // consumed again, none lost, none applied twice.
  constexpr int kPartitions = 4;
  constexpr int kPerPartition = 96;
  constexpr int kBatch = 8;
  crm::testing::MockCluster cluster({{"retry.test", kPartitions}});
  ASSERT_TRUE(cluster.ok());
  crm::testing::TempDir dir;
  auto db = CountsDatabase(dir);
  ASSERT_TRUE(db.ok()) << db.status();

  for (int p = 0; p < kPartitions; ++p) {
    ASSERT_NO_FATAL_FAILURE(
        Publish(cluster, "retry.test", p, Streams(absl::StrCat("s-", p, "-"), kPerPartition)));
  }

  // Each partition's last event fails once: its batch ends the partition's
  // run on the consumer's queue, so the batches taken after it come from
  // other partitions, which the failed batch does not name.
  absl::flat_hash_set<std::string> to_fail;
  for (int p = 0; p < kPartitions; ++p)
    to_fail.insert(absl::StrCat("s-", p, "-", kPerPartition - 1));
  FailsOnceOnStreams projection(std::move(to_fail));
  SubscriberOptions options = KafkaOptions(cluster, "retry.test");
  options.max_batch = kBatch;
  options.pipelined_commit = std::get<0>(GetParam());
  Subscriber subscriber(**db, projection, options);
  const int failing_seeks = std::get<1>(GetParam());
  std::atomic<int> seeks_failed{0};
  SubscriberTestPeer::FailSeeks(subscriber, failing_seeks, seeks_failed);
  ASSERT_TRUE(subscriber.Start().ok());
  constexpr uint64_t kTotal = kPartitions * kPerPartition;
  const absl::Time deadline = absl::Now() + absl::Seconds(60);
  while (subscriber.applied() < kTotal && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  absl::SleepFor(absl::Milliseconds(300));  // anything applied twice would show by now
  subscriber.Stop();
  EXPECT_EQ(seeks_failed.load(), failing_seeks);
  EXPECT_EQ(subscriber.applied(), kTotal);
  for (int p = 0; p < kPartitions; ++p) {
    for (int i = 0; i < kPerPartition; ++i) {
      const std::string stream = absl::StrCat("s-", p, "-", i);
      auto count = (*db)->Get("counts", stream);
      ASSERT_TRUE(count.ok()) << count.status();
      EXPECT_EQ(count->value_or("0"), "1") << stream;
    }
    auto next = subscriber.StoredOffset("retry.test", p);
    ASSERT_TRUE(next.ok()) << next.status();
    EXPECT_EQ(next->value_or(-1), kPerPartition) << "partition " << p;
  }
}

// Counts each stream version applied; fails once at one of them.
class FailsOnceAtVersion final : public Projection {
 public:
  explicit FailsOnceAtVersion(int64_t version) : fail_at_(version) {}
  absl::Status Apply(const crm::v1::EventEnvelope& e, ProjectionTxn& txn) override {
    if (e.stream_version() == fail_at_) {
      fail_at_ = 0;
      return absl::UnavailableError("busy for a moment");
    }
    absl::SleepFor(absl::Microseconds(500));  // lets the consumer run ahead
    return AddOne(txn, absl::StrCat(e.stream(), "/", e.stream_version()));
  }

 private:
  int64_t fail_at_;  // only the apply thread calls Apply
};

// While the seek back to a failed batch keeps failing, later events of its
// partition must not be applied: the failed one would then be skipped as
// already seen (a lower version of the same stream), and a crash would
// resume after it.
TEST(SubscriberSeekTest, APartitionWhoseSeekFailsIsHeldBackUntilASeekSucceeds) {
  constexpr int kVersions = 200;
  crm::testing::MockCluster cluster({{"seekfail.test", 1}});
  ASSERT_TRUE(cluster.ok());
  std::vector<crm::v1::EventEnvelope> events;
  for (int v = 1; v <= kVersions; ++v) events.push_back(Versioned("s", v));
  ASSERT_NO_FATAL_FAILURE(PublishEvents(cluster, "seekfail.test", 0, events));
  crm::testing::TempDir dir;
  auto db = CountsDatabase(dir);
  ASSERT_TRUE(db.ok()) << db.status();
  FailsOnceAtVersion projection(50);
  SubscriberOptions options = KafkaOptions(cluster, "seekfail.test");
  options.max_batch = 8;
  Subscriber subscriber(**db, projection, options);
  std::atomic<int> seeks_failed{0};
  SubscriberTestPeer::FailSeeks(subscriber, 5, seeks_failed);
  ASSERT_TRUE(subscriber.Start().ok());
  EXPECT_TRUE(Eventually([&] {
    auto next = subscriber.StoredOffset("seekfail.test", 0);
    return next.ok() && next->value_or(0) == kVersions;
  }));
  subscriber.Stop();
  EXPECT_EQ(seeks_failed.load(), 5);
  for (int v = 1; v <= kVersions; ++v) {
    auto count = (*db)->Get("counts", absl::StrCat("s/", v));
    ASSERT_TRUE(count.ok()) << count.status();
    EXPECT_EQ(count->value_or("0"), "1") << "version " << v;
  }
}

// A batch that failed is not applied while its seek back keeps failing, so
// the lag must count it: read as caught up, readiness and the erasure gate
// (start_when on the key reader) would open with it missing.
TEST(SubscriberSeekTest, TheLagCountsAFailedBatchWhileItsSeekBackFails) {
  constexpr int kVersions = 20;
  crm::testing::MockCluster cluster({{"seeklag.test", 1}});
  ASSERT_TRUE(cluster.ok());
  std::vector<crm::v1::EventEnvelope> events;
  for (int v = 1; v <= kVersions; ++v) events.push_back(Versioned("s", v));
  ASSERT_NO_FATAL_FAILURE(PublishEvents(cluster, "seeklag.test", 0, events));
  crm::testing::TempDir dir;
  auto db = CountsDatabase(dir);
  ASSERT_TRUE(db.ok()) << db.status();
  FailsOnceAtVersion projection(kVersions);  // the last event: nothing comes after it
  Subscriber subscriber(**db, projection, KafkaOptions(cluster, "seeklag.test"));
  std::atomic<int> seeks_failed{0};
  constexpr int kFailedSeeks = 2;  // retried about every 2 s
  SubscriberTestPeer::FailSeeks(subscriber, kFailedSeeks, seeks_failed);
  ASSERT_TRUE(subscriber.Start().ok());
  const absl::Time deadline = absl::Now() + absl::Seconds(60);
  while (seeks_failed.load() == 0 && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(5));
  ASSERT_GT(seeks_failed.load(), 0);
  // Until the second seek back fails (2 s on), with at least one lag
  // measured after the first: never caught up.
  bool caught_up = false;
  int samples = 0;
  while (seeks_failed.load() < kFailedSeeks && absl::Now() < deadline) {
    caught_up |= subscriber.caught_up();
    ++samples;
    absl::SleepFor(absl::Milliseconds(5));
  }
  ASSERT_GT(samples, 0) << "the seek back was retried before the lag was read";
  EXPECT_FALSE(caught_up) << "caught up with a batch not applied";
  EXPECT_TRUE(Eventually([&] {
    auto next = subscriber.StoredOffset("seeklag.test", 0);
    return next.ok() && next->value_or(0) == kVersions && subscriber.lag() == 0;
  }));
  subscriber.Stop();
}

INSTANTIATE_TEST_SUITE_P(CommitInline, SubscriberRetryTest,
                         ::testing::Values(std::make_tuple(false, 0)));
INSTANTIATE_TEST_SUITE_P(CommitPipelined, SubscriberRetryTest,
                         ::testing::Values(std::make_tuple(true, 0)));
// A failed seek must not let the consumer go on past the failed batch.
INSTANTIATE_TEST_SUITE_P(SeeksFailFirst, SubscriberRetryTest,
                         ::testing::Values(std::make_tuple(false, 3), std::make_tuple(true, 3)));

// Adds every event to one running total and counts each stream, reading
// the previous values through the transaction: a batch that read what the
// batch before it wrote from the database before that batch committed
// would lose increments. Notes the stored total each time it is told a
// batch committed.
class RunningTotal final : public Projection {
 public:
  explicit RunningTotal(const Database& db) : db_(db) {}
  absl::Status Apply(const crm::v1::EventEnvelope& e, ProjectionTxn& txn) override {
    for (const std::string& key : {std::string("total"), e.stream()}) {
      if (auto st = AddOne(txn, key); !st.ok()) return st;
    }
    absl::SleepFor(absl::Microseconds(200));  // lets the consumer run ahead
    return absl::OkStatus();
  }
  void Committed() override {
    totals.push_back(std::stoi(db_.Get("counts", "total")->value_or("0")));
  }
  std::vector<int> totals;  // read on the subscriber's thread only

 private:
  const Database& db_;
};

// With a parameter of true, commits fail (RocksDB write errors) while the
// batch after each is prepared on its writes, often from another
// partition: both must be consumed again.
class SubscriberPipelineTest : public ::testing::TestWithParam<bool> {};

TEST_P(SubscriberPipelineTest, EveryEventCountsOnceWhenBatchesCommitWhileTheNextIsApplied) {
  constexpr int kPartitions = 4;
  constexpr int kPerPartition = 75;
  constexpr int kStreams = kPartitions * kPerPartition;
  crm::testing::MockCluster cluster({{"pipeline.test", kPartitions}});
  ASSERT_TRUE(cluster.ok());
  crm::testing::TempDir dir;
  auto db = CountsDatabase(dir);
  ASSERT_TRUE(db.ok()) << db.status();
  // Every event twice, as a relay re-publishing after a crash would: the
  // copies land in later batches, while the first ones may be pending.
  // Published in sets of 5 per partition and fetched one set at a time, so
  // that consecutive batches mix partitions.
  constexpr int kSet = 5;
  for (int copy = 0; copy < 2; ++copy) {
    for (int from = 0; from < kPerPartition; from += kSet) {
      for (int p = 0; p < kPartitions; ++p) {
        std::vector<std::string> set;
        for (int i = from; i < from + kSet; ++i) set.push_back(absl::StrCat("s-", p, "-", i));
        ASSERT_NO_FATAL_FAILURE(Publish(cluster, "pipeline.test", p, set));
      }
    }
  }

  RunningTotal projection(**db);
  SubscriberOptions options = KafkaOptions(cluster, "pipeline.test");
  options.max_batch = 7;
  options.extra_settings = {{"max.partition.fetch.bytes", "1"}};
  options.pipelined_commit = true;
  if (GetParam()) (*db)->FailWritesForTest(/*every=*/3, /*times=*/12);
  Subscriber subscriber(**db, projection, options);
  ASSERT_TRUE(subscriber.Start().ok());
  const absl::Time deadline = absl::Now() + absl::Seconds(60);
  while (subscriber.applied() + subscriber.skipped() < 2 * kStreams && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  subscriber.Stop();
  EXPECT_EQ(subscriber.applied(), static_cast<uint64_t>(kStreams));
  EXPECT_EQ(subscriber.skipped(), static_cast<uint64_t>(kStreams));
  EXPECT_EQ((*db)->Get("counts", "total")->value_or("0"), absl::StrCat(kStreams));
  for (int p = 0; p < kPartitions; ++p) {
    for (const auto& stream : Streams(absl::StrCat("s-", p, "-"), kPerPartition)) {
      EXPECT_EQ((*db)->Get("counts", stream)->value_or("0"), "1") << stream;
    }
    EXPECT_EQ(subscriber.StoredOffset("pipeline.test", p)->value_or(-1), 2 * kPerPartition);
  }
  // Told of each commit after it: the totals it read never fall, and the
  // last is the whole count.
  ASSERT_FALSE(projection.totals.empty());
  EXPECT_TRUE(std::is_sorted(projection.totals.begin(), projection.totals.end()));
  EXPECT_EQ(projection.totals.back(), kStreams);
}

INSTANTIATE_TEST_SUITE_P(AllCommitsWritten, SubscriberPipelineTest, ::testing::Values(false));
INSTANTIATE_TEST_SUITE_P(CommitsFail, SubscriberPipelineTest, ::testing::Values(true));

TEST(SubscriberLagTest, CaughtUpOnABrokerThatLostItsMessages) {
  // A broker replaced by an empty one (the embedded broker's restart, a
  // lost cluster) and refilled: the subscriber, idle at its stored
  // offsets, is caught up; services hold their domain subscriber until it
  // is.
  crm::testing::TempDir dir;
  auto db = CountsDatabase(dir);
  ASSERT_TRUE(db.ok()) << db.status();
  {
    crm::testing::MockCluster cluster({{"lost.test", 2}});
    ASSERT_TRUE(cluster.ok());
    ASSERT_NO_FATAL_FAILURE(Publish(cluster, "lost.test", 0, Streams("a-", 5)));
    CountingProjection projection;
    Subscriber subscriber(**db, projection, KafkaOptions(cluster, "lost.test"));
    ASSERT_TRUE(subscriber.Start().ok());
    ASSERT_TRUE(Eventually([&] { return subscriber.caught_up() && subscriber.applied() == 5; }));
    subscriber.Stop();
  }
  crm::testing::MockCluster empty({{"lost.test", 2}});
  ASSERT_TRUE(empty.ok());
  // Refilled (a command service re-publishes its log) up to the stored
  // offset: nothing left to read there, and nothing consumed to report a
  // position from.
  ASSERT_NO_FATAL_FAILURE(Publish(empty, "lost.test", 0, Streams("a-", 5)));
  CountingProjection projection;
  Subscriber subscriber(**db, projection, KafkaOptions(empty, "lost.test"));
  ASSERT_TRUE(subscriber.Start().ok());
  EXPECT_TRUE(Eventually([&] { return subscriber.caught_up(); }));
  // And what is published now is read.
  ASSERT_NO_FATAL_FAILURE(Publish(empty, "lost.test", 0, Streams("b-", 3)));
  EXPECT_TRUE(Eventually([&] { return subscriber.applied() == 3; }));
  subscriber.Stop();
}

// Events with ids, as services publish them: version 1 of each stream,
// then `copies` more of the last (sent again after a crash).
std::vector<crm::v1::EventEnvelope> Identified(const std::vector<std::string>& streams,
                                               int copies = 0) {
  std::vector<crm::v1::EventEnvelope> events;
  for (const auto& stream : streams) {
    events.push_back(Versioned(stream, 1));
    events.back().set_event_id("evt-" + stream);
  }
  for (int i = 0; i < copies; ++i) events.push_back(events.back());
  return events;
}

// `first` then `later`, as names of streams.
std::vector<std::string> Then(std::vector<std::string> first,
                              const std::vector<std::string>& later) {
  first.insert(first.end(), later.begin(), later.end());
  return first;
}

// Consumes `events` into `db` from a broker of their own, which is then
// lost: the offsets stored are of a partition that no longer exists.
void ConsumeOnABrokerLost(Database& db, const std::string& topic,
                          const std::vector<crm::v1::EventEnvelope>& events, uint64_t applied,
                          uint64_t skipped) {
  crm::testing::MockCluster cluster({{topic, 1}});
  ASSERT_TRUE(cluster.ok());
  ASSERT_NO_FATAL_FAILURE(PublishEvents(cluster, topic, 0, events));
  CountingProjection projection;
  Subscriber subscriber(db, projection, KafkaOptions(cluster, topic));
  ASSERT_TRUE(subscriber.Start().ok());
  ASSERT_TRUE(Eventually(
      [&] { return subscriber.applied() == applied && subscriber.skipped() == skipped; }));
  subscriber.Stop();
}

TEST(SubscriberLagTest, ABrokerRefilledPastTheStoredOffsetWithOtherEventsIsReadAgain) {
  // The old broker held a duplicate (sent again after a crash) that the
  // refill does not repeat: the stored offset now lies one event too far,
  // and the event there is not the one last applied.
  crm::testing::TempDir dir;
  auto db = CountsDatabase(dir);
  ASSERT_TRUE(db.ok()) << db.status();
  ASSERT_NO_FATAL_FAILURE(
      ConsumeOnABrokerLost(**db, "refill.test", Identified(Streams("a-", 5), 1), 5, 1));
  CountingProjection idle;
  ASSERT_EQ(Subscriber(**db, idle, {}).StoredOffset("refill.test", 0)->value_or(-1), 6);
  crm::testing::MockCluster refilled({{"refill.test", 1}});
  ASSERT_TRUE(refilled.ok());
  ASSERT_NO_FATAL_FAILURE(PublishEvents(refilled, "refill.test", 0,
                                        Identified(Then(Streams("a-", 5), Streams("b-", 2)))));
  CountingProjection projection;
  Subscriber subscriber(**db, projection, KafkaOptions(refilled, "refill.test"));
  ASSERT_TRUE(subscriber.Start().ok());
  // Both new events, b-0 at offset 5 included; the old ones skipped.
  EXPECT_TRUE(Eventually([&] { return subscriber.applied() == 2 && subscriber.caught_up(); }))
      << "applied " << subscriber.applied();
  EXPECT_EQ(subscriber.skipped(), 5u);
  subscriber.Stop();
  auto total = (*db)->Get("counts", "");
  ASSERT_TRUE(total.ok() && total->has_value());
  EXPECT_EQ(**total, "7") << "every event applied once";
}

TEST(SubscriberLagTest, ABrokerRefilledPastAnUnreadableLastMessageIsReadAgain) {
  // The last message consumed was no event (parked); the refill (a service
  // re-publishing its log) does not repeat it, and holds a new event where
  // it was: known by its bytes, the anchor there tells the two apart.
  crm::testing::TempDir dir;
  auto db = CountsDatabase(dir);
  ASSERT_TRUE(db.ok()) << db.status();
  const auto old = Identified(Streams("a-", 2));
  {
    CountingProjection projection;
    Subscriber consumed(**db, projection, {});
    ASSERT_TRUE(consumed
                    .ApplyBatch({{"unreadable.test", 0, 0, old[0].SerializeAsString()},
                                 {"unreadable.test", 0, 1, old[1].SerializeAsString()},
                                 {"unreadable.test", 0, 2, "not an envelope"}})
                    .ok());
    ASSERT_EQ(consumed.StoredOffset("unreadable.test", 0)->value_or(-1), 3);
  }
  crm::testing::MockCluster refilled({{"unreadable.test", 1}});
  ASSERT_TRUE(refilled.ok());
  ASSERT_NO_FATAL_FAILURE(PublishEvents(refilled, "unreadable.test", 0,
                                        Identified(Then(Streams("a-", 2), Streams("b-", 2)))));
  CountingProjection projection;
  Subscriber subscriber(**db, projection, KafkaOptions(refilled, "unreadable.test"));
  ASSERT_TRUE(subscriber.Start().ok());
  // b-0, now where the unreadable message was, is applied too.
  EXPECT_TRUE(Eventually([&] { return subscriber.applied() == 2 && subscriber.caught_up(); }))
      << "applied " << subscriber.applied();
  subscriber.Stop();
  auto total = (*db)->Get("counts", "");
  ASSERT_TRUE(total.ok() && total->has_value());
  EXPECT_EQ(**total, "4") << "every event applied once";
}

TEST(SubscriberLagTest, ABrokerRefilledWithFewerEventsThanTheStoredOffsetIsReadAgain) {
  // The old partition held two duplicates; the refill holds one event this
  // subscriber never read, and ends right where its stored anchor was: no
  // message comes there to check, the partition is quiet.
  crm::testing::TempDir dir;
  auto db = CountsDatabase(dir);
  ASSERT_TRUE(db.ok()) << db.status();
  ASSERT_NO_FATAL_FAILURE(
      ConsumeOnABrokerLost(**db, "short.test", Identified(Streams("a-", 2), 2), 2, 2));
  crm::testing::MockCluster refilled({{"short.test", 1}});
  ASSERT_TRUE(refilled.ok());
  ASSERT_NO_FATAL_FAILURE(
      PublishEvents(refilled, "short.test", 0, Identified(Then(Streams("a-", 2), {"b-0"}))));
  CountingProjection projection;
  Subscriber subscriber(**db, projection, KafkaOptions(refilled, "short.test"));
  ASSERT_TRUE(subscriber.Start().ok());
  EXPECT_TRUE(Eventually([&] { return subscriber.applied() == 1 && subscriber.caught_up(); }))
      << "applied " << subscriber.applied();
  subscriber.Stop();
}

// Counts like CountingProjection, but holds each apply until released.
class HeldProjection final : public Projection {
 public:
  absl::Status Apply(const crm::v1::EventEnvelope& e, ProjectionTxn& txn) override {
    if (!entered_.HasBeenNotified()) entered_.Notify();
    release_.WaitForNotification();
    return AddOne(txn, e.customer_id());
  }
  absl::Notification entered_;
  absl::Notification release_;
};

// After `old` was consumed on a broker since lost, `refill` (the old
// events and b-0) is read again from its start: the key gate stays shut
// until b-0 is applied, though the stored offset may be at the start mark.
void ExpectTheStartReachedOnlyOnceReadAgain(const std::string& topic,
                                            const std::vector<crm::v1::EventEnvelope>& old,
                                            uint64_t applied, uint64_t skipped,
                                            const std::vector<crm::v1::EventEnvelope>& refill) {
  crm::testing::TempDir dir;
  auto db = CountsDatabase(dir);
  ASSERT_TRUE(db.ok()) << db.status();
  ASSERT_NO_FATAL_FAILURE(ConsumeOnABrokerLost(**db, topic, old, applied, skipped));
  crm::testing::MockCluster refilled({{topic, 1}});
  ASSERT_TRUE(refilled.ok());
  ASSERT_NO_FATAL_FAILURE(PublishEvents(refilled, topic, 0, refill));
  HeldProjection projection;
  Subscriber subscriber(**db, projection, KafkaOptions(refilled, topic));
  ASSERT_TRUE(subscriber.Start().ok());
  // b-0 is being applied (held), and the lag has been measured.
  ASSERT_TRUE(Eventually(
      [&] { return projection.entered_.HasBeenNotified() && subscriber.lag_within(1000); }));
  EXPECT_FALSE(subscriber.reached_start()) << "b-0 is not applied yet";
  projection.release_.Notify();
  EXPECT_TRUE(Eventually([&] { return subscriber.reached_start(); }));
  EXPECT_EQ(subscriber.applied(), 1u);
  subscriber.Stop();
}

TEST(SubscriberStartWhenTest, APartitionReadAgainFromItsStartHasNotReachedTheStart) {
  // As many events as the stored offset says, another one at the anchor.
  ExpectTheStartReachedOnlyOnceReadAgain("gate.test", Identified(Streams("a-", 5), 1), 5, 1,
                                         Identified(Then(Streams("a-", 5), {"b-0"})));
}

TEST(SubscriberStartWhenTest, APartitionEndingWellBeforeItsAnchorHasNotReachedTheStart) {
  // Three duplicates in the old partition: the refill ends two messages
  // before the stored anchor, and reading restarts at the beginning by
  // itself (the offset is out of range).
  ExpectTheStartReachedOnlyOnceReadAgain("short-gate.test", Identified(Streams("a-", 2), 3), 2, 3,
                                         Identified(Then(Streams("a-", 2), {"b-0"})));
}

TEST(SubscriberLagTest, ABrokerRefilledAlikeResumesAfterTheLastEventApplied) {
  crm::testing::TempDir dir;
  auto db = CountsDatabase(dir);
  ASSERT_TRUE(db.ok()) << db.status();
  ASSERT_NO_FATAL_FAILURE(
      ConsumeOnABrokerLost(**db, "alike.test", Identified(Streams("a-", 5)), 5, 0));
  crm::testing::MockCluster refilled({{"alike.test", 1}});
  ASSERT_TRUE(refilled.ok());
  ASSERT_NO_FATAL_FAILURE(PublishEvents(refilled, "alike.test", 0, Identified(Streams("a-", 5))));
  CountingProjection projection;
  Subscriber subscriber(**db, projection, KafkaOptions(refilled, "alike.test"));
  ASSERT_TRUE(subscriber.Start().ok());
  ASSERT_NO_FATAL_FAILURE(PublishEvents(refilled, "alike.test", 0, Identified(Streams("b-", 3))));
  EXPECT_TRUE(Eventually([&] { return subscriber.applied() == 3 && subscriber.caught_up(); }));
  // Only the last event applied is read again, to check it, and not applied.
  EXPECT_EQ(subscriber.skipped(), 0u);
  subscriber.Stop();
}

TEST(SubscriberEveryPartitionTest, EachReaderOfOneGroupReadsAllAndResumesWhereItStopped) {
  // Key records: every replica needs every partition, under one group name.
  constexpr int kPartitions = 4;
  crm::testing::MockCluster cluster({{"every.test", kPartitions}});
  ASSERT_TRUE(cluster.ok());
  for (int p = 0; p < kPartitions; ++p) {
    ASSERT_NO_FATAL_FAILURE(
        Publish(cluster, "every.test", p, Streams(absl::StrCat("p", p, "-"), 5)));
  }
  crm::testing::TempDir dir_a, dir_b;
  auto db_a = CountsDatabase(dir_a);
  auto db_b = CountsDatabase(dir_b);
  ASSERT_TRUE(db_a.ok() && db_b.ok());
  CountingProjection projection;
  SubscriberOptions options = KafkaOptions(cluster, "every.test");
  options.every_partition = true;
  auto a = std::make_unique<Subscriber>(**db_a, projection, options);
  Subscriber b(**db_b, projection, options);
  ASSERT_TRUE(a->Start().ok());
  ASSERT_TRUE(b.Start().ok());
  constexpr uint64_t kAll = kPartitions * 5;
  EXPECT_TRUE(Eventually([&] { return a->applied() == kAll && b.applied() == kAll; }))
      << a->applied() << " and " << b.applied() << " of " << kAll;
  EXPECT_TRUE(Eventually([&] { return a->caught_up() && b.caught_up(); }));

  // Restarted, a reader takes up at its own stored offsets: only the new one.
  a->Stop();
  a = std::make_unique<Subscriber>(**db_a, projection, options);
  ASSERT_TRUE(a->Start().ok());
  ASSERT_NO_FATAL_FAILURE(Publish(cluster, "every.test", 2, {"late"}));
  EXPECT_TRUE(Eventually([&] { return a->applied() == 1 && b.applied() == kAll + 1; }))
      << a->applied() << " and " << b.applied();
  absl::SleepFor(absl::Milliseconds(300));
  EXPECT_EQ(a->applied(), 1u);
  a->Stop();
  b.Stop();
}

TEST(SubscriberStartWhenTest, ConsumesNothingUntilStartWhenHolds) {
  // Services hold their domain subscriber until the key subscriber has
  // caught up: nothing may be applied before.
  constexpr int kMessages = 20;
  crm::testing::MockCluster cluster({{"hold.test", 2}});
  ASSERT_TRUE(cluster.ok());
  ASSERT_NO_FATAL_FAILURE(Publish(cluster, "hold.test", 0, Streams("a-", kMessages / 2)));
  ASSERT_NO_FATAL_FAILURE(Publish(cluster, "hold.test", 1, Streams("b-", kMessages / 2)));
  crm::testing::TempDir dir;
  auto held_db = CountsDatabase(dir);
  ASSERT_TRUE(held_db.ok()) << held_db.status();
  crm::testing::TempDir free_dir;
  auto free_db = CountsDatabase(free_dir);
  ASSERT_TRUE(free_db.ok()) << free_db.status();

  std::atomic<bool> open{false};
  CountingProjection held_projection;
  SubscriberOptions options = KafkaOptions(cluster, "hold.test");
  options.start_when = [&open] { return open.load(); };
  Subscriber held(**held_db, held_projection, options);
  ASSERT_TRUE(held.Start().ok());
  // The same messages are there to be read: a subscriber without the
  // condition, started later, reads them all.
  CountingProjection free_projection;
  SubscriberOptions free_options = KafkaOptions(cluster, "hold.test");
  free_options.group_id = "hold.test-free";
  Subscriber free(**free_db, free_projection, free_options);
  ASSERT_TRUE(free.Start().ok());
  Eventually([&] { return free.applied() >= kMessages; });
  ASSERT_EQ(free.applied(), static_cast<uint64_t>(kMessages));
  EXPECT_EQ(held.applied(), 0u);
  EXPECT_FALSE(held.caught_up());

  open = true;
  Eventually([&] { return held.applied() >= kMessages; });
  EXPECT_EQ(held.applied(), static_cast<uint64_t>(kMessages));
  held.Stop();
  free.Stop();
}

// The key subscriber gates the domain one: under steady traffic (keys
// issued for every new contact) the gate must still open, once what the
// topic held at the start is applied.
TEST(SubscriberStartWhenTest, TheStartIsReachedUnderSteadyTraffic) {
  constexpr int kBefore = 200;
  crm::testing::MockCluster cluster({{"steady.test", 1}});
  ASSERT_TRUE(cluster.ok());
  ASSERT_NO_FATAL_FAILURE(Publish(cluster, "steady.test", 0, Streams("before-", kBefore)));
  std::atomic<bool> stop{false};
  std::thread traffic([&] {
    auto conf = MakeKafkaConf({{"bootstrap.servers", cluster.bootstrap()}, {"linger.ms", "0"}});
    if (!conf.ok()) return;
    std::string err;
    std::unique_ptr<RdKafka::Producer> producer(RdKafka::Producer::create(conf->get(), err));
    if (!producer) return;
    for (int n = 0; !stop.load(); ++n) {
      const std::string value = Versioned(absl::StrCat("during-", n), 1).SerializeAsString();
      producer->produce("steady.test", 0, RdKafka::Producer::RK_MSG_COPY,
                        const_cast<char*>(value.data()), value.size(), nullptr, 0, 0, nullptr);
      producer->poll(0);
      absl::SleepFor(absl::Milliseconds(2));
    }
    producer->flush(5000);
  });
  crm::testing::TempDir dir;
  auto db = CountsDatabase(dir);
  ASSERT_TRUE(db.ok()) << db.status();
  CountingProjection projection;
  Subscriber subscriber(**db, projection, KafkaOptions(cluster, "steady.test"));
  ASSERT_TRUE(subscriber.Start().ok());
  const bool reached = Eventually([&] { return subscriber.reached_start(); });
  const uint64_t applied_then = subscriber.applied();
  stop = true;
  traffic.join();
  subscriber.Stop();
  EXPECT_TRUE(reached);
  EXPECT_GE(applied_then, static_cast<uint64_t>(kBefore)) << "everything before the start";
}

// A dead-letter sink on a broker of its own, and a letter to park.
class KafkaDeadLetterSinkTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(cluster_.ok());
    auto sink = KafkaDeadLetterSink(cluster_.bootstrap(), "crm.dlq.v1", "group-1");
    ASSERT_TRUE(sink.ok()) << sink.status();
    sink_ = *std::move(sink);
  }

  struct Letter {
    std::string value;
    std::map<std::string, std::string> headers;
  };
  // The letters on the dead-letter topic, read to its end (copied: a
  // message held past its consumer would keep the consumer from closing).
  std::vector<Letter> Parked() {
    std::vector<Letter> parked;
    auto conf = MakeKafkaConf({{"bootstrap.servers", cluster_.bootstrap()},
                               {"group.id", "dlq-count"},
                               {"enable.partition.eof", "true"}});
    EXPECT_TRUE(conf.ok()) << conf.status();
    if (!conf.ok()) return parked;
    std::string err;
    std::unique_ptr<RdKafka::KafkaConsumer> consumer(
        RdKafka::KafkaConsumer::create(conf->get(), err));
    EXPECT_NE(consumer, nullptr) << err;
    if (consumer == nullptr) return parked;
    std::unique_ptr<RdKafka::TopicPartition> part(
        RdKafka::TopicPartition::create("crm.dlq.v1", 0, RdKafka::Topic::OFFSET_BEGINNING));
    std::vector<RdKafka::TopicPartition*> parts = {part.get()};
    EXPECT_EQ(consumer->assign(parts), RdKafka::ERR_NO_ERROR);
    for (const absl::Time until = absl::Now() + absl::Seconds(10); absl::Now() < until;) {
      std::unique_ptr<RdKafka::Message> m(consumer->consume(200));
      if (m->err() == RdKafka::ERR__PARTITION_EOF) break;
      if (m->err() != RdKafka::ERR_NO_ERROR) continue;
      Letter& letter = parked.emplace_back();
      letter.value.assign(static_cast<const char*>(m->payload()), m->len());
      if (RdKafka::Headers* headers = m->headers(); headers != nullptr) {
        for (const auto& h : headers->get_all()) {
          letter.headers[h.key()].assign(static_cast<const char*>(h.value()), h.value_size());
        }
      }
    }
    consumer->close();
    return parked;
  }

  testing::MockCluster cluster_{{{"crm.dlq.v1", 1}}};
  DeadLetterSink sink_;
  const std::vector<DeadLetter> letters_ = {{{"crm.leads.v1", 0, 5, "not an envelope"}, "bad"}};
};

// A delivery the broker refuses for good must fail the sink: the batch
// then stays uncommitted instead of moving past letters that were lost.
TEST_F(KafkaDeadLetterSinkTest, ADeliveryTheBrokerRefusesIsAnError) {
  ASSERT_TRUE(sink_(letters_).ok());
  cluster_.FailProduces(RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE, 1);
  const absl::Status refused = sink_(letters_);
  EXPECT_TRUE(absl::IsUnavailable(refused)) << refused;
  const absl::Status next = sink_(letters_);
  EXPECT_TRUE(next.ok()) << "the next delivery goes through: " << next;
}

// Letters of a call that timed out are not sent later beside the retry's
// copies: an outage would otherwise park every poison message many times.
TEST_F(KafkaDeadLetterSinkTest, ALetterOfAFailedCallIsParkedOnceByTheRetry) {
  cluster_.SetBrokerDown(true);
  const absl::Status failed = sink_(letters_);
  EXPECT_TRUE(absl::IsUnavailable(failed)) << failed;
  cluster_.SetBrokerDown(false);
  // As the subscriber retries a batch: reconnecting after a long outage may
  // take longer than one call waits.
  absl::Status retried = sink_(letters_);
  for (int attempt = 1; attempt < 3 && !retried.ok(); ++attempt) retried = sink_(letters_);
  ASSERT_TRUE(retried.ok()) << retried;
  EXPECT_EQ(Parked().size(), 1u);
}

// A call that gave up with a letter in flight: the letter's late failure
// is that call's (already retried), not the next call's, whose letters
// were acknowledged. Failing it would hold the subscriber once more.
TEST_F(KafkaDeadLetterSinkTest, ALateReportOfAnEarlierCallDoesNotFailTheNext) {
  ASSERT_TRUE(sink_(letters_).ok());
  cluster_.FailProduces(RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE, 1);
  cluster_.SetRtt(11'000);  // answered after the call's 10 s
  const absl::Status gave_up = sink_(letters_);
  EXPECT_TRUE(absl::IsUnavailable(gave_up)) << gave_up;
  cluster_.SetRtt(0);
  const absl::Status next = sink_(letters_);
  EXPECT_TRUE(next.ok()) << next;
}

// A fatal producer error (the broker no longer takes its id or sequence)
// ends that producer for good: the next poison message must still be
// parked, or the subscriber would stop at it until restarted.
TEST_F(KafkaDeadLetterSinkTest, AProducerFailedForGoodIsMadeAgain) {
  auto letters = KafkaDeadLetters::Create(cluster_.bootstrap(), "crm.dlq.v1", "group-1");
  ASSERT_TRUE(letters.ok()) << letters.status();
  ASSERT_TRUE((*letters)->Park(letters_).ok());
  (*letters)->FailProducerForTesting();
  const absl::Status parked = (*letters)->Park(letters_);
  EXPECT_TRUE(parked.ok()) << parked;
  EXPECT_EQ(Parked().size(), 2u) << "the first letter and the one the new producer parked";
}

// A topic takes messages a little larger than a producer sends by default:
// such a poison message is parked (its head), not refused on every retry.
TEST_F(KafkaDeadLetterSinkTest, AMessageOverTheProducersLimitIsParkedCut) {
  const std::vector<DeadLetter> letters = {
      {{"crm.leads.v1", 0, 7, std::string(1'048'000, 'x')}, "undecodable"}};
  const absl::Status parked = sink_(letters);
  ASSERT_TRUE(parked.ok()) << parked;
  const auto on_topic = Parked();
  ASSERT_EQ(on_topic.size(), 1u);
  EXPECT_EQ(on_topic[0].value, std::string(EventStore::kMaxEventBytes, 'x'));
  EXPECT_EQ(on_topic[0].headers.at("crm_dlq_truncated_from"), "1048000");
  EXPECT_EQ(on_topic[0].headers.at("crm_dlq_offset"), "7");
  EXPECT_EQ(on_topic[0].headers.at("crm_dlq_reason"), "undecodable");
}

}  // namespace
}  // namespace crm
