#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "crm/v1/envelope.pb.h"
#include "libs/common/database.h"
#include "libs/common/kafka.h"
#include "libs/common/metrics.h"
#include "libs/common/sorted_rows.h"

namespace crm {

// The writes of one consumed batch: projection updates, the consumed
// offsets and the streams' applied versions commit together, so a crash
// either keeps all of a batch's effect or none of it.
class ProjectionTxn {
 public:
  // `pending`, if given, is the sealed transaction of the previous batch,
  // possibly still being committed: reads see its writes as if committed.
  explicit ProjectionTxn(Database& db, const ProjectionTxn* pending = nullptr)
      : db_(db), pending_(pending) {}

  // Reads this transaction's own writes first, then the pending one's.
  absl::StatusOr<std::optional<std::string>> Get(absl::string_view family, absl::string_view key);
  absl::Status Put(absl::string_view family, absl::string_view key, absl::string_view value);
  // For rows this batch never reads back (timeline entries, offsets): skips
  // the read-your-writes overlay, the cheapest write there is. The next
  // batch does read them back (through `pending`) once this one is sealed.
  absl::Status PutWriteOnly(absl::string_view family, absl::string_view key,
                            absl::string_view value);
  absl::Status Delete(absl::string_view family, absl::string_view key);
  // Ends the writes: the batch is complete and Lookup answers for every
  // row. Commit seals first if need be.
  void Seal();
  absl::Status Commit();

  // This sealed transaction's write of a key: nullopt if it wrote none,
  // an empty optional inside if it deleted it.
  std::optional<std::optional<std::string>> Lookup(uint32_t family_id, absl::string_view key) const;

 private:
  absl::StatusOr<rocksdb::ColumnFamilyHandle*> Cf(absl::string_view family) const;

  Database& db_;
  const ProjectionTxn* pending_;  // null once sealed: reads are over
  // Write-only rows: sorted when sealed (see SortedRows), searchable from
  // then on, and added to the batch in that order by Commit.
  SortedRows write_only_;
  bool sealed_ = false;
  // The other rows: (family id, key) -> the last write of this batch, the
  // only one Commit writes.
  struct Written {
    rocksdb::ColumnFamilyHandle* cf;
    std::optional<std::string> value;  // nullopt = deleted
  };
  absl::flat_hash_map<std::pair<uint32_t, std::string>, Written> overlay_;
};

// A read model fed by events. Apply must be deterministic: a rebuild from
// the topics gives the same bytes.
class Projection {
 public:
  virtual ~Projection() = default;
  // Called before the first Apply of a consumed batch.
  virtual void BeginBatch() {}
  virtual absl::Status Apply(const crm::v1::EventEnvelope& event, ProjectionTxn& txn) = 0;
  // Called after the last Apply of a batch, before it commits: a projection
  // that keeps hot rows in memory during a batch writes them here.
  virtual absl::Status Flush(ProjectionTxn& txn) { return absl::OkStatus(); }
  // Called on the subscriber's thread once a batch's writes are committed
  // (with pipelined commits, possibly after the next batch was applied):
  // for work that must follow the commit, not precede it. Committed is not
  // synced: a power loss may undo the batch, which is then consumed again,
  // so the work must be safe to repeat.
  virtual void Committed() {}
};

struct ConsumedMessage {
  std::string topic;
  int32_t partition = 0;
  int64_t offset = 0;
  std::string value;
};

// An event no projection could use, with why; parked for a person to look at.
struct DeadLetter {
  ConsumedMessage message;
  std::string reason;
};
// Stores dead letters durably before the batch that skipped them commits;
// an error keeps the batch uncommitted so nothing is lost.
using DeadLetterSink = std::function<absl::Status(const std::vector<DeadLetter>&)>;

struct SubscriberOptions {
  std::string brokers;
  std::string group_id;
  std::vector<std::string> topics;
  size_t max_batch = 5000;
  // A batch also ends once its messages hold this many bytes: events may
  // be up to 900 KB each, and a pipelined commit holds three batches.
  size_t max_batch_bytes = 64 << 20;
  KafkaSettings extra_settings;
  // Where undecodable or rejected events go: a topic (Start() makes the
  // producer) or a sink of the caller's. Neither: they are only logged.
  std::string dead_letter_topic;
  DeadLetterSink dead_letter_sink;
  // Commits a batch on another thread while the next one is applied (its
  // reads see the pending batch's writes). Only for projections that read
  // solely through their ProjectionTxn and have no effects outside it.
  bool pipelined_commit = false;
  // If set, nothing is consumed (the group is not even joined) until it
  // returns true; checked every 100 ms. E.g. until the key subscriber has
  // caught up, so every erasure is known before the events it erases.
  std::function<bool()> start_when;
  // Reads every partition of `topics` itself (assigned, not shared out in
  // the group): for records each replica needs all of, such as the data
  // keys. Nothing joins a group, so a start waits for no rebalance.
  // Partitions added to a topic later are read after a restart.
  bool every_partition = false;
};

// Produces dead letters to a topic with headers naming where they came from
// (crm_dlq_topic, crm_dlq_partition, crm_dlq_offset, crm_dlq_reason,
// crm_dlq_group), waiting for the broker's acknowledgement. Called from one
// thread at a time (the subscriber's apply thread).
class KafkaDeadLetters {
 public:
  static absl::StatusOr<std::unique_ptr<KafkaDeadLetters>> Create(std::string brokers,
                                                                  std::string topic,
                                                                  std::string group_id);
  // Use Create: it makes the first producer.
  KafkaDeadLetters(std::string brokers, std::string topic, std::string group_id);
  ~KafkaDeadLetters();
  absl::Status Park(const std::vector<DeadLetter>& letters);
  // The next Park finds the producer failed as by a fatal broker error.
  void FailProducerForTesting();

 private:
  // A producer with a fatal error (the broker no longer takes its id or
  // sequence) refuses every message for good: a new one is made.
  absl::Status Renew();

  const std::string brokers_, topic_, group_id_;
  struct Failures;
  std::unique_ptr<Failures> failures_;  // the producer's callback: outlives it
  std::unique_ptr<RdKafka::Producer> producer_;
};

// A KafkaDeadLetters as a sink.
absl::StatusOr<DeadLetterSink> KafkaDeadLetterSink(const std::string& brokers,
                                                   const std::string& topic,
                                                   const std::string& group_id);

// A consumer group member that applies events to a projection exactly once
// in effect: offsets live in the projection's own RocksDB (not only in
// Kafka), and an event whose stream version was already applied is skipped,
// which absorbs re-published duplicates.
class Subscriber {
 public:
  // Column families the Database passed in must have.
  static std::vector<std::string> Families();

  Subscriber(Database& db, Projection& projection, SubscriberOptions options);
  ~Subscriber();
  Subscriber(const Subscriber&) = delete;
  Subscriber& operator=(const Subscriber&) = delete;

  absl::Status Start();
  void Stop();

  // Applies messages already taken off the topic; used by the consume loop
  // and directly by tests.
  absl::Status ApplyBatch(const std::vector<ConsumedMessage>& messages);

  // The next offset to consume for a partition, if any was stored.
  absl::StatusOr<std::optional<int64_t>> StoredOffset(const std::string& topic,
                                                      int32_t partition) const;

  uint64_t applied() const { return applied_.load(); }
  uint64_t skipped() const { return skipped_.load(); }
  uint64_t poisoned() const { return poisoned_.load(); }
  int64_t lag() const { return lag_.load(); }
  // Messages the broker no longer held when this consumer reached their
  // offsets: lost history (retention, or the embedded broker's bound per
  // partition), events the projection never saw. Logged as an error too.
  uint64_t history_lost() const { return history_lost_.load(); }
  // The lag was measured over assigned partitions at least once and is at
  // most `max` now: before that, a zero lag only means nothing is known yet.
  bool lag_within(int64_t max) const { return measured_.load() && lag_.load() <= max; }
  bool caught_up() const { return lag_within(0); }
  // Everything the assigned partitions held when the lag was first measured
  // is applied and committed. Unlike caught_up() it is reached under steady
  // traffic too, where a lag of exactly 0 may rarely be seen.
  bool reached_start() const { return reached_start_.load(); }

 private:
  class Rebalance;
  // A batch applied but not committed: its transaction, sealed.
  struct Prepared {
    std::unique_ptr<ProjectionTxn> txn;
    uint64_t applied = 0;
    uint64_t skipped = 0;
    uint64_t poisoned = 0;
  };
  // Applies `messages` into a new transaction reading through `pending`.
  absl::StatusOr<Prepared> Prepare(const std::vector<ConsumedMessage>& messages,
                                   const ProjectionTxn* pending);
  void Committed(const std::vector<ConsumedMessage>& batch, const Prepared& prepared);
  void Failed(const absl::Status& st,
              std::initializer_list<const std::vector<ConsumedMessage>*> batches);
  using PartitionOffsets = absl::flat_hash_map<std::pair<std::string, int32_t>, int64_t>;
  // Two threads so that taking the next batch off the topic overlaps
  // applying the current one: Consume hands one batch at a time to Apply.
  void Consume();
  absl::Status Subscribe();
  absl::Status AssignEveryPartition();
  void Apply();
  using Partitions = absl::flat_hash_set<std::pair<std::string, int32_t>>;
  // Partitions found to be read again are added to `unsought`: none of
  // their messages may be taken before the seek back to their start.
  void RefreshLag(Partitions& unsought);
  // Where a partition's reading resumes: the next offset, and the event id
  // of the message before it, which a partition refilled on a new broker
  // may no longer hold there.
  struct StoredPosition {
    int64_t offset = 0;
    std::string last_event_id;
  };
  absl::StatusOr<std::optional<StoredPosition>> StoredPositionOf(const std::string& topic,
                                                                 int32_t partition) const;
  // The offset to start `tp` at on assignment. Resumes one message early
  // when the event there is known, to check it (see `anchors_`).
  absl::StatusOr<int64_t> ResumeOffset(const std::string& topic, int32_t partition);
  // Takes a message of a partition whose anchor is unchecked: true if it
  // is to be consumed; false if it was the anchor (applied already) or the
  // partition is to be read again from its start.
  bool CheckAnchor(const RdKafka::Message& message, Partitions& unsought);
  // Seeks `tp` back to its start, for the rest of this assignment: a batch
  // of it that fails later goes back there too, not to its own offsets.
  void ReadAgainFromStart(const std::pair<std::string, int32_t>& tp, bool seek = true)
      ABSL_LOCKS_EXCLUDED(mu_);
  // Where a failed or dropped `batch` is consumed again from.
  void AddRewinds(const std::vector<ConsumedMessage>& batch) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Seeks back to where failed batches began. Returns the partitions whose
  // seek failed: their offsets are kept for the next try, and none of their
  // messages may be taken meanwhile, or the failed batch would be skipped.
  Partitions SeekBack(const PartitionOffsets& rewind);

  Database& db_;
  Projection& projection_;
  SubscriberOptions options_;
  std::unique_ptr<Rebalance> rebalance_cb_;
  std::unique_ptr<RdKafka::KafkaConsumer> consumer_;
  std::thread consume_thread_;
  std::thread apply_thread_;
  std::atomic<bool> stopping_{false};
  absl::Mutex mu_;
  // The batch waiting to be applied.
  std::optional<std::vector<ConsumedMessage>> ready_ ABSL_GUARDED_BY(mu_);
  // Bumped when a batch fails: batches consumed before that are dropped,
  // and Consume seeks back to `rewind_` before it takes more.
  uint64_t generation_ ABSL_GUARDED_BY(mu_) = 0;
  PartitionOffsets rewind_ ABSL_GUARDED_BY(mu_);
  // Partitions read again from their start in this assignment, and the next
  // offset committed of each since: until it passes the start mark, their
  // stored offsets (from before) say nothing of what is applied.
  Partitions rereading_ ABSL_GUARDED_BY(mu_);
  PartitionOffsets reread_committed_ ABSL_GUARDED_BY(mu_);
  std::atomic<uint64_t> applied_{0};
  std::atomic<uint64_t> skipped_{0};
  std::atomic<uint64_t> poisoned_{0};
  std::atomic<uint64_t> history_lost_{0};
  // Messages behind the partitions' high watermarks, refreshed by Consume().
  std::atomic<int64_t> lag_{0};
  // Messages handed to Apply and not yet committed: part of the lag, or a
  // readiness gate would pass while the last batch is still being applied.
  std::atomic<int64_t> in_flight_{0};
  std::atomic<bool> measured_{false};
  // Each partition's high watermark when the lag was first measured
  // (Consume thread only), and whether the stored offsets reached them.
  std::optional<PartitionOffsets> start_marks_;
  std::atomic<bool> reached_start_{false};
  // The group's last assignment gave this member no partition.
  std::atomic<bool> assigned_nothing_{false};
  std::vector<MetricsRegistry::GaugeHandle> gauges_;
  // Partitions assigned one message early, with the event expected there.
  // The embedded broker restarted empty is refilled by each service from
  // its own log: the offsets stored here may then name other events (a
  // duplicate sent before is not sent again; shared topics interleave
  // differently). When the expected event is not there, the partition is
  // read again from its start; applied events are skipped by version.
  // Consume thread only (rebalances are served from consume()).
  absl::flat_hash_map<std::pair<std::string, int32_t>, StoredPosition> anchors_;
  // Where the next message of each partition should be: where reading was
  // set to start (the stored offset, not the anchor before it), then one
  // past the last message consumed. A message past it means the broker
  // lost those in between. Consume thread only, as is the offset each
  // partition's loss was counted up to (a gap met again counts once).
  absl::flat_hash_map<std::pair<std::string, int32_t>, int64_t> expected_offsets_;
  absl::flat_hash_map<std::pair<std::string, int32_t>, int64_t> lost_through_;
  // Counts and logs a message of `topic` at `offset` past the expected one.
  void CheckContiguous(const std::string& topic, int32_t partition, int64_t offset);
  // Reading of a partition set to start at `offset` (a librdkafka logical
  // offset: the beginning is offset 0).
  void ExpectFrom(const std::string& topic, int32_t partition, int64_t offset);
  // The consumer's seek; tests make it fail.
  std::function<RdKafka::ErrorCode(const RdKafka::TopicPartition&)> seek_;
  friend class SubscriberTestPeer;
};

}  // namespace crm
