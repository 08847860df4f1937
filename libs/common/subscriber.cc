#include "libs/common/subscriber.h"

#include <algorithm>
#include <cstdint>
#include <future>
#include <initializer_list>
#include <optional>
#include <utility>

#include "absl/cleanup/cleanup.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "google/protobuf/arena.h"
#include "librdkafka/rdkafka.h"
#include "libs/common/envelope.h"
#include "libs/common/event_store.h"
#include "libs/common/fnv.h"
#include "libs/common/key_codec.h"
#include "libs/common/log.h"
#include "libs/common/status_macros.h"
#include "libs/common/thread_name.h"

namespace crm {
namespace {

constexpr char kOffsets[] = "sub_offsets";  // topic \0 partition -> next offset
constexpr char kApplied[] = "sub_applied";  // stream -> last applied version

std::string OffsetKey(absl::string_view topic, int32_t partition) {
  std::string k = PrefixKey(topic);
  AppendBigEndian64(&k, static_cast<uint32_t>(partition));
  return k;
}

// The anchor of a message that is no event (parked as undecodable): a
// fingerprint of its bytes (stable across processes and releases, unlike
// absl::Hash), marked so it is never taken for an event id.
std::string RawAnchor(absl::string_view bytes) {
  std::string anchor(1, '\x01');
  anchor += BigEndian64(Fnv1a64().AddBytes(bytes).value());
  return anchor;
}

// Failures that say nothing about the event itself.
bool IsTransient(const absl::Status& st) {
  switch (st.code()) {
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kAborted:
    case absl::StatusCode::kResourceExhausted:
    case absl::StatusCode::kDeadlineExceeded:
    case absl::StatusCode::kInternal:
    case absl::StatusCode::kUnknown:
    case absl::StatusCode::kCancelled:
      return true;
    default:
      return false;
  }
}

}  // namespace

absl::StatusOr<rocksdb::ColumnFamilyHandle*> ProjectionTxn::Cf(absl::string_view family) const {
  return db_.RequireFamily(family);
}

absl::StatusOr<std::optional<std::string>> ProjectionTxn::Get(absl::string_view family,
                                                              absl::string_view key) {
  CRM_ASSIGN_OR_RETURN(auto* cf, Cf(family));
  if (auto it = overlay_.find(std::make_pair(cf->GetID(), std::string(key)));
      it != overlay_.end()) {
    return it->second.value;
  }
  if (pending_ != nullptr) {
    if (auto written = pending_->Lookup(cf->GetID(), key); written.has_value()) return *written;
  }
  return db_.Get(family, key);
}

std::optional<std::optional<std::string>> ProjectionTxn::Lookup(uint32_t family_id,
                                                                absl::string_view key) const {
  // Write-only rows follow the others in the batch, so they win.
  if (sealed_) {
    if (auto written = write_only_.Find(family_id, key); written.has_value()) {
      if (!written->has_value()) return std::optional<std::string>();
      return std::string(**written);
    }
  }
  if (auto it = overlay_.find(std::make_pair(family_id, std::string(key))); it != overlay_.end()) {
    return it->second.value;
  }
  return std::nullopt;
}

absl::Status ProjectionTxn::Put(absl::string_view family, absl::string_view key,
                                absl::string_view value) {
  CRM_ASSIGN_OR_RETURN(auto* cf, Cf(family));
  CRM_RETURN_IF_ERROR(SortedRows::Fits(key, value));
  overlay_[std::make_pair(cf->GetID(), std::string(key))] = {cf, std::string(value)};
  return absl::OkStatus();
}

absl::Status ProjectionTxn::PutWriteOnly(absl::string_view family, absl::string_view key,
                                         absl::string_view value) {
  // Once sealed, Lookup answers from the sorted rows: a later row would
  // be invisible to it.
  if (sealed_) return absl::FailedPreconditionError("write to a sealed projection batch");
  CRM_ASSIGN_OR_RETURN(auto* cf, Cf(family));
  return write_only_.Put(cf, key, value);
}

absl::Status ProjectionTxn::Delete(absl::string_view family, absl::string_view key) {
  CRM_ASSIGN_OR_RETURN(auto* cf, Cf(family));
  CRM_RETURN_IF_ERROR(SortedRows::Fits(key, {}));
  overlay_[std::make_pair(cf->GetID(), std::string(key))] = {cf, std::nullopt};
  return absl::OkStatus();
}

void ProjectionTxn::Seal() {
  if (sealed_) return;
  sealed_ = true;
  // The pending transaction may be gone before this one commits.
  pending_ = nullptr;
  write_only_.Sort();
}

absl::Status ProjectionTxn::Commit() {
  Seal();
  // A key's last write only, sorted like the write-only rows, which come
  // after them so they win.
  SortedRows rows;
  size_t bytes = 0;
  for (const auto& [id_key, written] : overlay_) {
    bytes += id_key.second.size() + (written.value.has_value() ? written.value->size() : 0);
  }
  rows.Reserve(overlay_.size(), bytes);
  for (const auto& [id_key, written] : overlay_) {
    CRM_RETURN_IF_ERROR(written.value.has_value()
                            ? rows.Put(written.cf, id_key.second, *written.value)
                            : rows.Delete(written.cf, id_key.second));
  }
  constexpr size_t kHeader = 12;  // sequence number and count
  // Reserved whole: a rebuild batch is megabytes, and grown by doubling
  // it was an eighth of the rebuild's CPU in copies and page faults.
  rocksdb::WriteBatch batch(kHeader + rows.BatchBytes() + write_only_.BatchBytes());
  CRM_RETURN_IF_ERROR(rows.AddTo(batch));
  CRM_RETURN_IF_ERROR(write_only_.AddTo(batch));
  // Not synced: a crash loses the projection update and the offset
  // together, and the events are consumed again.
  return db_.Write(&batch, /*sync=*/false);
}

class Subscriber::Rebalance final : public RdKafka::RebalanceCb {
 public:
  explicit Rebalance(Subscriber* s) : s_(s) {}
  void rebalance_cb(RdKafka::KafkaConsumer* consumer, RdKafka::ErrorCode err,
                    std::vector<RdKafka::TopicPartition*>& partitions) override {
    if (err == RdKafka::ERR__ASSIGN_PARTITIONS) {
      s_->anchors_.clear();
      {
        absl::MutexLock lock(&s_->mu_);
        s_->rereading_.clear();
        s_->reread_committed_.clear();
      }
      for (auto* tp : partitions) {
        auto resume = s_->ResumeOffset(tp->topic(), tp->partition());
        if (!resume.ok()) {
          // Reading from the beginning is safe (versions skip what was
          // applied) but replays the whole partition: say why.
          log::Error("stored offset unreadable; partition read from its beginning",
                     {{"group", s_->options_.group_id},
                      {"topic", tp->topic()},
                      {"partition", absl::StrCat(tp->partition())},
                      {"error", resume.status().ToString()}});
        }
        tp->set_offset(resume.value_or(RdKafka::Topic::OFFSET_BEGINNING));
        s_->ExpectFrom(tp->topic(), tp->partition(), tp->offset());
      }
      if (auto e = consumer->assign(partitions); e != RdKafka::ERR_NO_ERROR) {
        log::Error("assign failed", {{"group", s_->options_.group_id},
                                     {"count", absl::StrCat(partitions.size())},
                                     {"error", RdKafka::err2str(e)}});
      }
      s_->assigned_nothing_.store(partitions.empty());
      // Partitions new to this member have no known lag until fetched:
      // caught_up() waits for a measure over all of them.
      s_->measured_.store(false);
      log::Info("partitions assigned",
                {{"group", s_->options_.group_id}, {"count", absl::StrCat(partitions.size())}});
    } else {
      s_->anchors_.clear();
      s_->expected_offsets_.clear();
      consumer->unassign();
      s_->assigned_nothing_.store(false);
      s_->measured_.store(false);
    }
  }

 private:
  Subscriber* s_;
};

namespace {

// The most of a dead letter's value that is parked: an event's bound, well
// under the producer's message.max.bytes with the headers.
constexpr size_t kMaxDeadLetterBytes = EventStore::kMaxEventBytes;

}  // namespace

// The first failed delivery of a Park: flush() returns once every delivery
// is reported, failed ones included, so only the reports tell. Each letter
// carries its call's number: a call that gave up with letters in flight
// gets their reports during a later call, which they must not fail.
struct KafkaDeadLetters::Failures final : RdKafka::DeliveryReportCb {
  void dr_cb(RdKafka::Message& message) override {
    if (message.err() == RdKafka::ERR_NO_ERROR || !first.empty()) return;
    if (reinterpret_cast<uintptr_t>(message.msg_opaque()) == call) first = message.errstr();
  }
  // Both written and read on the thread that parks and flushes.
  uintptr_t call = 0;
  std::string first;
};

KafkaDeadLetters::KafkaDeadLetters(std::string brokers, std::string topic, std::string group_id)
    : brokers_(std::move(brokers)),
      topic_(std::move(topic)),
      group_id_(std::move(group_id)),
      failures_(std::make_unique<Failures>()) {}

KafkaDeadLetters::~KafkaDeadLetters() = default;

absl::StatusOr<std::unique_ptr<KafkaDeadLetters>> KafkaDeadLetters::Create(std::string brokers,
                                                                           std::string topic,
                                                                           std::string group_id) {
  auto letters =
      std::make_unique<KafkaDeadLetters>(std::move(brokers), std::move(topic), std::move(group_id));
  CRM_RETURN_IF_ERROR(letters->Renew());
  return letters;
}

absl::Status KafkaDeadLetters::Renew() {
  producer_.reset();
  CRM_ASSIGN_OR_RETURN(auto conf, MakeKafkaConf({{"bootstrap.servers", brokers_},
                                                 {"enable.idempotence", "true"},
                                                 {"acks", "all"}}));
  std::string err;
  if (conf->set("dr_cb", failures_.get(), err) != RdKafka::Conf::CONF_OK) {
    return absl::InternalError(absl::StrCat("dead-letter producer: ", err));
  }
  producer_.reset(RdKafka::Producer::create(conf.get(), err));
  if (!producer_) return absl::UnavailableError(absl::StrCat("dead-letter producer: ", err));
  return absl::OkStatus();
}

void KafkaDeadLetters::FailProducerForTesting() {
  if (producer_) {
    rd_kafka_test_fatal_error(producer_->c_ptr(), RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER,
                              "failed for a test");
  }
}

absl::Status KafkaDeadLetters::Park(const std::vector<DeadLetter>& letters) {
  std::string fatal;
  if (!producer_ || producer_->fatal_error(fatal) != RdKafka::ERR_NO_ERROR) {
    if (producer_) log::Error("dead-letter producer failed", {{"error", fatal}});
    CRM_RETURN_IF_ERROR(Renew());
  }
  // A failed call's letters are dropped from the producer's queue: the
  // batch is retried and parks them again, and left queued they would go
  // out with the retry's copies once the broker is back.
  auto give_up = [&](absl::Status status) {
    producer_->purge(RdKafka::Producer::PURGE_QUEUE);
    producer_->flush(0);  // serves the purged messages' reports
    return status;
  };
  failures_->first.clear();
  void* const call = reinterpret_cast<void*>(++failures_->call);
  for (const auto& d : letters) {
    std::unique_ptr<RdKafka::Headers> h(RdKafka::Headers::create());
    h->add("crm_dlq_topic", d.message.topic);
    h->add("crm_dlq_partition", absl::StrCat(d.message.partition));
    h->add("crm_dlq_offset", absl::StrCat(d.message.offset));
    h->add("crm_dlq_reason", d.reason);
    h->add("crm_dlq_group", group_id_);
    // A topic takes messages a little over the producer's limit: parked
    // whole, such a message would be refused on every retry and hold the
    // subscriber. Its head is enough to tell what it was; the origin
    // offset finds the rest.
    size_t size = d.message.value.size();
    if (size > kMaxDeadLetterBytes) {
      h->add("crm_dlq_truncated_from", absl::StrCat(size));
      size = kMaxDeadLetterBytes;
    }
    auto e = producer_->produce(
        topic_, RdKafka::Topic::PARTITION_UA, RdKafka::Producer::RK_MSG_COPY,
        const_cast<char*>(d.message.value.data()), size, nullptr, 0, 0, h.get(), call);
    if (e != RdKafka::ERR_NO_ERROR) {
      return give_up(
          absl::UnavailableError(absl::StrCat("dead-letter produce: ", RdKafka::err2str(e))));
    }
    h.release();  // owned by librdkafka once produced
  }
  if (producer_->flush(10000) != RdKafka::ERR_NO_ERROR || producer_->outq_len() > 0) {
    return give_up(absl::UnavailableError("dead-letter topic did not acknowledge in 10 s"));
  }
  if (!failures_->first.empty()) {
    return absl::UnavailableError(absl::StrCat("dead-letter delivery: ", failures_->first));
  }
  return absl::OkStatus();
}

absl::StatusOr<DeadLetterSink> KafkaDeadLetterSink(const std::string& brokers,
                                                   const std::string& topic,
                                                   const std::string& group_id) {
  CRM_ASSIGN_OR_RETURN(std::shared_ptr<KafkaDeadLetters> letters,
                       KafkaDeadLetters::Create(brokers, topic, group_id));
  return DeadLetterSink(
      [letters](const std::vector<DeadLetter>& batch) { return letters->Park(batch); });
}

std::vector<std::string> Subscriber::Families() { return {kOffsets, kApplied}; }

Subscriber::Subscriber(Database& db, Projection& projection, SubscriberOptions options)
    : db_(db), projection_(projection), options_(std::move(options)) {
  seek_ = [this](const RdKafka::TopicPartition& tp) {
    return consumer_->seek(tp, /*timeout_ms=*/1000);
  };
  auto& registry = MetricsRegistry::Default();
  const Labels labels = {{"group", options_.group_id}};
  auto gauge = [&](const char* name, const char* help, const std::atomic<uint64_t>& v) {
    gauges_.push_back(
        registry.AddGauge(name, help, labels, [&v] { return static_cast<double>(v.load()); }));
  };
  gauge("crm_events_consumed_applied", "Events applied to the projection since start", applied_);
  gauge("crm_events_consumed_duplicates", "Events skipped as already applied since start",
        skipped_);
  gauge("crm_events_dead_lettered", "Events parked on the dead-letter topic since start",
        poisoned_);
  gauge("crm_consumer_history_lost",
        "Messages the broker no longer held when they were to be consumed, since start",
        history_lost_);
  gauges_.push_back(registry.AddGauge("crm_consumer_lag", "Messages behind the high watermarks",
                                      labels, [this] { return static_cast<double>(lag_.load()); }));
}

Subscriber::~Subscriber() { Stop(); }

absl::StatusOr<std::optional<Subscriber::StoredPosition>> Subscriber::StoredPositionOf(
    const std::string& topic, int32_t partition) const {
  CRM_ASSIGN_OR_RETURN(auto raw, db_.Get(kOffsets, OffsetKey(topic, partition)));
  // The next offset, then the event id before it (absent in older stores).
  if (!raw.has_value() || raw->size() < 8) return std::nullopt;
  return StoredPosition{static_cast<int64_t>(ReadBigEndian64(*raw)), raw->substr(8)};
}

absl::StatusOr<std::optional<int64_t>> Subscriber::StoredOffset(const std::string& topic,
                                                                int32_t partition) const {
  CRM_ASSIGN_OR_RETURN(auto stored, StoredPositionOf(topic, partition));
  if (!stored.has_value()) return std::nullopt;
  return stored->offset;
}

absl::StatusOr<int64_t> Subscriber::ResumeOffset(const std::string& topic, int32_t partition) {
  CRM_ASSIGN_OR_RETURN(auto stored, StoredPositionOf(topic, partition));
  // A partition never read starts at the beginning: a projection needs
  // the whole history.
  if (!stored.has_value()) return RdKafka::Topic::OFFSET_BEGINNING;
  if (stored->offset <= 0 || stored->last_event_id.empty()) return stored->offset;
  const int64_t anchor = stored->offset - 1;
  anchors_[{topic, partition}] = StoredPosition{anchor, std::move(stored->last_event_id)};
  return anchor;
}

bool Subscriber::CheckAnchor(const RdKafka::Message& message, Partitions& unsought) {
  const std::pair<std::string, int32_t> key(message.topic_name(), message.partition());
  auto it = anchors_.find(key);
  if (it == anchors_.end()) return true;
  const StoredPosition anchor = std::move(it->second);
  anchors_.erase(it);
  // Elsewhere: the stored offset lay past the partition's end, and reading
  // restarted at its beginning (auto.offset.reset), which skips nothing;
  // the partition is being read again all the same.
  if (message.offset() != anchor.offset) {
    ReadAgainFromStart(key, /*seek=*/false);
    return true;
  }
  const absl::string_view bytes(static_cast<const char*>(message.payload()), message.len());
  crm::v1::EventEnvelope event;
  if (absl::StartsWith(anchor.last_event_id, "\x01")
          ? RawAnchor(bytes) == anchor.last_event_id
          : event.ParseFromArray(bytes.data(), static_cast<int>(bytes.size())) &&
                event.event_id() == anchor.last_event_id) {
    return false;  // the message last consumed: resume after it
  }
  log::Warn("partition holds other events than those applied, reading it again from its start",
            {{"topic", key.first},
             {"partition", absl::StrCat(key.second)},
             {"offset", absl::StrCat(anchor.offset)}});
  ReadAgainFromStart(key);
  unsought.insert(key);
  return false;
}

void Subscriber::ExpectFrom(const std::string& topic, int32_t partition, int64_t offset) {
  std::pair<std::string, int32_t> key(topic, partition);
  if (offset == RdKafka::Topic::OFFSET_BEGINNING) offset = 0;
  // Started one message early to check the anchor: a broker that no longer
  // holds that message lost nothing unapplied, only what is past it.
  if (auto a = anchors_.find(key); a != anchors_.end() && a->second.offset == offset) ++offset;
  if (offset < 0) {
    expected_offsets_.erase(key);  // the end, or a stored position: not known here
  } else {
    expected_offsets_[std::move(key)] = offset;
  }
}

void Subscriber::CheckContiguous(const std::string& topic, int32_t partition, int64_t offset) {
  // Offsets of a partition are consecutive, except where compaction took
  // superseded records away: the keys topic is compacted by design.
  if (topic == kKeysTopic) return;
  std::pair<std::string, int32_t> key(topic, partition);
  auto it = expected_offsets_.find(key);
  if (it != expected_offsets_.end() && offset > it->second) {
    // A gap met again (the partition read again from its start after a
    // failed batch or a rebalance) is counted once.
    int64_t& reported = lost_through_[key];
    const int64_t from = std::max(it->second, reported);
    if (offset > from) {
      history_lost_.fetch_add(static_cast<uint64_t>(offset - from));
      reported = offset;
      log::Error(
          "events lost: the broker no longer holds them; the projection misses them until it "
          "is rebuilt from a broker with the whole history (or the topics refilled)",
          {{"group", options_.group_id},
           {"topic", topic},
           {"partition", absl::StrCat(partition)},
           {"from_offset", absl::StrCat(from)},
           {"to_offset", absl::StrCat(offset)}});
    }
  }
  expected_offsets_[std::move(key)] = offset + 1;
}

void Subscriber::ReadAgainFromStart(const std::pair<std::string, int32_t>& tp, bool seek) {
  absl::MutexLock lock(&mu_);
  if (seek) rewind_[tp] = 0;
  rereading_.insert(tp);
  reread_committed_.erase(tp);
}

void Subscriber::AddRewinds(const std::vector<ConsumedMessage>& batch) {
  for (const auto& m : batch) {
    std::pair<std::string, int32_t> tp(m.topic, m.partition);
    const int64_t from = rereading_.contains(tp) ? 0 : m.offset;
    auto [it, added] = rewind_.try_emplace(std::move(tp), from);
    if (!added) it->second = std::min(it->second, from);
  }
}

absl::StatusOr<Subscriber::Prepared> Subscriber::Prepare(
    const std::vector<ConsumedMessage>& messages, const ProjectionTxn* pending) {
  Prepared prepared;
  prepared.txn = std::make_unique<ProjectionTxn>(db_, pending);
  ProjectionTxn& txn = *prepared.txn;
  projection_.BeginBatch();
  uint64_t applied = 0;
  uint64_t skipped = 0;
  uint64_t poisoned = 0;  // counted once the batch commits, as the others
  // Streams' applied versions and partitions' next offsets, kept in memory
  // for the batch and written once at its end.
  absl::flat_hash_map<std::string, int64_t> versions;
  // Per partition, its last message in the batch.
  absl::flat_hash_map<std::pair<std::string, int32_t>, size_t> last_of_partition;
  // Decoded envelopes live on one arena per batch: no allocation per field.
  google::protobuf::Arena arena;
  std::vector<DeadLetter> dead;
  std::vector<crm::v1::EventEnvelope*> events(messages.size(), nullptr);
  for (size_t i = 0; i < messages.size(); ++i) {
    const auto& m = messages[i];
    last_of_partition[{m.topic, m.partition}] = i;
    auto& event = *google::protobuf::Arena::CreateMessage<crm::v1::EventEnvelope>(&arena);
    if (!DecodeEvent(m.value, event)) {
      ++poisoned;
      log::Error("undecodable event parked", {{"topic", m.topic},
                                              {"partition", absl::StrCat(m.partition)},
                                              {"offset", absl::StrCat(m.offset)}});
      dead.push_back({m,
                      "undecodable: not a crm.v1.EventEnvelope with stream, version and valid "
                      "occurred_at"});
      continue;
    }
    events[i] = &event;
    versions.try_emplace(event.stream(), 0);
  }
  // Every stream's applied version: the pending batch's if it wrote one,
  // the rest in one batched read.
  {
    // A damaged row is no "none applied": read as 0, every event of the
    // stream would be applied a second time.
    auto set = [&](const std::string& stream,
                   const std::optional<std::string>& raw) -> absl::Status {
      if (!raw.has_value()) return absl::OkStatus();
      if (raw->size() != 8) {
        return absl::DataLossError(absl::StrCat("corrupt applied version of stream ", stream));
      }
      versions[stream] = static_cast<int64_t>(ReadBigEndian64(*raw));
      return absl::OkStatus();
    };
    CRM_ASSIGN_OR_RETURN(auto* applied_cf, db_.RequireFamily(kApplied));
    const uint32_t applied_family = applied_cf->GetID();
    std::vector<std::string> streams;
    streams.reserve(versions.size());
    for (const auto& [stream, version] : versions) {
      auto written = pending != nullptr ? pending->Lookup(applied_family, stream) : std::nullopt;
      if (written.has_value()) {
        CRM_RETURN_IF_ERROR(set(stream, *written));
      } else {
        streams.push_back(stream);
      }
    }
    CRM_ASSIGN_OR_RETURN(auto raw, db_.MultiGet(kApplied, streams));
    for (size_t i = 0; i < streams.size(); ++i) CRM_RETURN_IF_ERROR(set(streams[i], raw[i]));
  }
  for (size_t i = 0; i < messages.size(); ++i) {
    if (events[i] == nullptr) continue;
    const auto& m = messages[i];
    const auto& event = *events[i];
    auto it = versions.find(event.stream());
    const int64_t last = it->second;
    if (event.stream_version() <= last) {
      ++skipped;
      continue;
    }
    if (event.stream_version() != last + 1) {
      log::Warn("stream version gap", {{"stream", event.stream()},
                                       {"last_applied", absl::StrCat(last)},
                                       {"got", absl::StrCat(event.stream_version())}});
    }
    // Applied even when the projection rejects it for good: the same bytes
    // would be rejected again on every redelivery.
    it->second = event.stream_version();
    if (auto st = projection_.Apply(event, txn); IsTransient(st)) {
      // The event is fine, the moment is not (a busy store, a version race
      // in a reaction): the whole batch is retried rather than parked.
      return st;
    } else if (!st.ok()) {
      // A projection that cannot use an event must not stop the others.
      ++poisoned;
      log::Error("event rejected by projection, parked",
                 {{"event_id", event.event_id()}, {"error", st.ToString()}});
      dead.push_back({m, st.ToString()});
      continue;
    }
    ++applied;
  }
  CRM_RETURN_IF_ERROR(projection_.Flush(txn));
  if (!dead.empty() && options_.dead_letter_sink) {
    CRM_RETURN_IF_ERROR(options_.dead_letter_sink(dead));
  }
  for (const auto& [stream, version] : versions) {
    CRM_RETURN_IF_ERROR(
        txn.PutWriteOnly(kApplied, stream, BigEndian64(static_cast<uint64_t>(version))));
  }
  for (const auto& [tp, i] : last_of_partition) {
    // The next offset, and the event consumed before it (see anchors_);
    // one that was no event is known by its bytes.
    std::string position = BigEndian64(static_cast<uint64_t>(messages[i].offset + 1));
    position += events[i] != nullptr ? events[i]->event_id() : RawAnchor(messages[i].value);
    CRM_RETURN_IF_ERROR(txn.PutWriteOnly(kOffsets, OffsetKey(tp.first, tp.second), position));
  }
  txn.Seal();
  prepared.applied = applied;
  prepared.skipped = skipped;
  prepared.poisoned = poisoned;
  return prepared;
}

absl::Status Subscriber::ApplyBatch(const std::vector<ConsumedMessage>& messages) {
  if (messages.empty()) return absl::OkStatus();
  CRM_ASSIGN_OR_RETURN(Prepared prepared, Prepare(messages, nullptr));
  CRM_RETURN_IF_ERROR(prepared.txn->Commit());
  applied_.fetch_add(prepared.applied);
  skipped_.fetch_add(prepared.skipped);
  poisoned_.fetch_add(prepared.poisoned);
  projection_.Committed();
  return absl::OkStatus();
}

absl::Status Subscriber::AssignEveryPartition() {
  std::vector<RdKafka::TopicPartition*> partitions;
  absl::Cleanup destroy = [&] { RdKafka::TopicPartition::destroy(partitions); };
  for (const auto& name : options_.topics) {
    CRM_ASSIGN_OR_RETURN(auto ids, PartitionIds(*consumer_, name, 5000));
    for (const int32_t id : ids) {
      auto resume = ResumeOffset(name, id);
      if (!resume.ok()) return resume.status();
      ExpectFrom(name, id, *resume);
      partitions.push_back(RdKafka::TopicPartition::create(name, id, *resume));
    }
  }
  if (auto e = consumer_->assign(partitions); e != RdKafka::ERR_NO_ERROR) {
    return absl::UnavailableError(absl::StrCat("assign: ", RdKafka::err2str(e)));
  }
  log::Info("partitions assigned",
            {{"group", options_.group_id}, {"count", absl::StrCat(partitions.size())}});
  return absl::OkStatus();
}

absl::Status Subscriber::Subscribe() {
  if (options_.every_partition) return AssignEveryPartition();
  if (auto e = consumer_->subscribe(options_.topics); e != RdKafka::ERR_NO_ERROR) {
    return absl::UnavailableError(absl::StrCat("subscribe: ", RdKafka::err2str(e)));
  }
  return absl::OkStatus();
}

absl::Status Subscriber::Start() {
  KafkaSettings settings = {
      {"bootstrap.servers", options_.brokers}, {"group.id", options_.group_id},
      {"enable.auto.commit", "false"},         {"enable.auto.offset.store", "false"},
      {"auto.offset.reset", "earliest"},       {"session.timeout.ms", "10000"},
      {"heartbeat.interval.ms", "1000"},       {"fetch.wait.max.ms", "50"},
  };
  settings.insert(settings.end(), options_.extra_settings.begin(), options_.extra_settings.end());
  if (!options_.dead_letter_topic.empty() && !options_.dead_letter_sink) {
    CRM_ASSIGN_OR_RETURN(
        options_.dead_letter_sink,
        KafkaDeadLetterSink(options_.brokers, options_.dead_letter_topic, options_.group_id));
  }
  CRM_ASSIGN_OR_RETURN(auto conf, MakeKafkaConf(settings));
  rebalance_cb_ = std::make_unique<Rebalance>(this);
  std::string err;
  if (conf->set("rebalance_cb", rebalance_cb_.get(), err) != RdKafka::Conf::CONF_OK) {
    return absl::InternalError(err);
  }
  consumer_.reset(RdKafka::KafkaConsumer::create(conf.get(), err));
  if (!consumer_) return absl::UnavailableError(absl::StrCat("kafka consumer: ", err));
  // Assigning needs the topics' metadata: the consume thread waits for it,
  // as a group member waits for its assignment.
  if (!options_.start_when && !options_.every_partition) CRM_RETURN_IF_ERROR(Subscribe());
  consume_thread_ = std::thread([this] {
    NameThisThread("crm-consume");
    Consume();
  });
  apply_thread_ = std::thread([this] {
    NameThisThread("crm-apply");
    Apply();
  });
  return absl::OkStatus();
}

void Subscriber::Stop() {
  {
    // Under the lock, so both threads' waits see it.
    absl::MutexLock lock(&mu_);
    stopping_.store(true);
  }
  if (consume_thread_.joinable()) consume_thread_.join();
  if (apply_thread_.joinable()) apply_thread_.join();
  if (consumer_) {
    consumer_->close();
    consumer_.reset();
  }
}

void Subscriber::RefreshLag(Partitions& unsought) {
  std::vector<RdKafka::TopicPartition*> parts;
  if (consumer_->assignment(parts) != RdKafka::ERR_NO_ERROR) return;
  consumer_->position(parts);
  // A failed batch leaves the count in flight when it is dropped and is
  // consumed again from its rewind offset, possibly after the position has
  // moved past it (a seek back not done yet, or one that failed): the
  // rewind offset is the position then. Both read together, as Failed()
  // writes them.
  PartitionOffsets rewinding;
  int64_t in_flight = 0;
  {
    absl::MutexLock lock(&mu_);
    rewinding = rewind_;
    in_flight = in_flight_.load();
  }
  int64_t lag = 0;
  // A member the group gave no partition (more members than partitions)
  // has nothing to read: caught up, not unknown forever.
  bool known = !parts.empty() || assigned_nothing_.load();
  PartitionOffsets highs;
  for (auto* tp : parts) {
    int64_t low = 0, high = 0;
    // Cached from fetch responses: no broker round trip.
    if (consumer_->get_watermark_offsets(tp->topic(), tp->partition(), &low, &high) ==
            RdKafka::ERR_NO_ERROR &&
        high >= 0) {
      const std::pair<std::string, int32_t> key(tp->topic(), tp->partition());
      highs.emplace(key, high);
      // The message before the stored offset is not there at all: the
      // partition was refilled with fewer events (duplicates not sent
      // again), and may never get a message there to check.
      if (auto a = anchors_.find(key); a != anchors_.end() && high <= a->second.offset) {
        log::Warn("partition ends before the events applied, reading it again from its start",
                  {{"topic", key.first},
                   {"partition", absl::StrCat(key.second)},
                   {"end", absl::StrCat(high)}});
        anchors_.erase(a);
        ReadAgainFromStart(key);
        unsought.insert(key);
        rewinding[key] = 0;  // all of it is to be read, in this lag too
      }
      // Nothing consumed yet: the fetch starts at the stored offset, which
      // on a broker refilled after a loss may lie past messages the
      // partition now has again.
      int64_t pos = tp->offset();
      if (pos < 0) {
        auto stored = StoredOffset(tp->topic(), tp->partition());
        pos = stored.ok() && stored->has_value() ? std::min(**stored, high) : low;
      }
      if (auto r = rewinding.find({tp->topic(), tp->partition()}); r != rewinding.end()) {
        pos = std::min(pos, r->second);
      }
      lag += std::max<int64_t>(0, high - pos);
    } else {
      known = false;  // nothing fetched yet: how far behind is not known
    }
  }
  RdKafka::TopicPartition::destroy(parts);
  lag_.store(lag + in_flight);
  if (known) measured_.store(true);
  if (known && !reached_start_.load()) {
    if (!start_marks_.has_value()) start_marks_ = std::move(highs);
    // Committed offsets, not positions: what was taken may not be applied.
    // A partition whose anchor is unchecked, or that is read again from its
    // start, counts only by what this run has committed of it.
    PartitionOffsets reread;
    {
      absl::MutexLock lock(&mu_);
      for (const auto& tp : rereading_) {
        auto it = reread_committed_.find(tp);
        reread[tp] = it == reread_committed_.end() ? 0 : it->second;
      }
    }
    bool reached = true;
    for (const auto& [tp, mark] : *start_marks_) {
      if (anchors_.contains(tp)) {
        reached = false;
      } else if (auto it = reread.find(tp); it != reread.end()) {
        if (it->second < mark) reached = false;
      } else if (auto stored = StoredOffset(tp.first, tp.second);
                 !stored.ok() || stored->value_or(0) < mark) {
        reached = false;
      }
    }
    if (reached) {
      reached_start_.store(true);
      // What an operator waits for after a restore (docs/operations.md).
      log::Info("caught up with the topics as they were at start", {{"group", options_.group_id}});
    }
  }
}

Subscriber::Partitions Subscriber::SeekBack(const PartitionOffsets& rewind) {
  PartitionOffsets failed;
  for (const auto& [tp_key, offset] : rewind) {
    std::unique_ptr<RdKafka::TopicPartition> tp(
        RdKafka::TopicPartition::create(tp_key.first, tp_key.second, offset));
    ExpectFrom(tp_key.first, tp_key.second, offset);
    if (const RdKafka::ErrorCode e = seek_(*tp); e != RdKafka::ERR_NO_ERROR) {
      log::Warn("seek back failed, retrying", {{"topic", tp_key.first},
                                               {"partition", absl::StrCat(tp_key.second)},
                                               {"offset", absl::StrCat(offset)},
                                               {"error", RdKafka::err2str(e)}});
      failed.emplace(tp_key, offset);
    }
  }
  Partitions unsought;
  if (failed.empty()) return unsought;
  // A partition no longer assigned needs no seek: whoever is assigned it
  // next starts from the offset stored with the projection.
  std::vector<RdKafka::TopicPartition*> parts;
  if (consumer_->assignment(parts) == RdKafka::ERR_NO_ERROR) {
    Partitions assigned;
    for (const auto* tp : parts) assigned.emplace(tp->topic(), tp->partition());
    absl::erase_if(failed, [&](const auto& entry) { return !assigned.contains(entry.first); });
  }
  RdKafka::TopicPartition::destroy(parts);
  absl::MutexLock lock(&mu_);
  for (const auto& [tp_key, offset] : failed) {
    unsought.insert(tp_key);
    // A batch that failed since then may start earlier still.
    auto [it, inserted] = rewind_.try_emplace(tp_key, offset);
    if (!inserted) it->second = std::min(it->second, offset);
  }
  return unsought;
}

void Subscriber::Consume() {
  if (options_.start_when || options_.every_partition) {
    while (!stopping_.load() && options_.start_when && !options_.start_when()) {
      absl::SleepFor(absl::Milliseconds(100));
    }
    // Assigning is retried while the broker or the topics are not there;
    // so is subscribing: this thread ending would leave the service up
    // with nothing consumed and no word of it after one log line.
    for (;;) {
      if (stopping_.load()) return;
      const absl::Status st = Subscribe();
      if (st.ok()) break;
      log::Error("subscribe", {{"error", st.ToString()}});
      absl::SleepFor(absl::Seconds(1));
    }
  }
  std::vector<ConsumedMessage> batch;
  batch.reserve(options_.max_batch);
  absl::Time next_lag = absl::Now();
  while (!stopping_.load()) {
    uint64_t generation;
    PartitionOffsets rewind;
    {
      absl::MutexLock lock(&mu_);
      generation = generation_;
      rewind.swap(rewind_);
    }
    // Messages of a partition whose seek failed are dropped until a seek
    // succeeds: taken, they would skip the failed batch. The others are
    // still consumed, which also serves rebalances.
    Partitions unsought = SeekBack(rewind);
    // After any seek back, so the position counts what is to be consumed again.
    if (absl::Now() >= next_lag) {
      RefreshLag(unsought);
      // Soon again until first measured: start_when gates wait on it.
      next_lag = absl::Now() + (measured_.load() ? absl::Seconds(2) : absl::Milliseconds(200));
    }
    // Gather a batch: block briefly for the first message, then for what
    // arrives within the gather window. Never consume(0) in a loop: that
    // spins a core for the whole window while events trickle in.
    const absl::Time until = absl::Now() + absl::Milliseconds(20);
    size_t batch_bytes = 0;
    while (batch.size() < options_.max_batch && batch_bytes < options_.max_batch_bytes &&
           !stopping_.load()) {
      const int timeout = batch.empty() ? 100
                                        : static_cast<int>(std::max<int64_t>(
                                              0, absl::ToInt64Milliseconds(until - absl::Now())));
      std::unique_ptr<RdKafka::Message> msg(consumer_->consume(timeout));
      if (msg->err() == RdKafka::ERR__TIMED_OUT) {
        // Idle: still go out to refresh the lag when it is due, or a lag
        // measured while messages were pending would stand until the next
        // message arrives.
        if (batch.empty()) {
          if (absl::Now() >= next_lag) break;
          continue;
        }
        if (absl::Now() >= until) break;
        continue;
      }
      if (msg->err() != RdKafka::ERR_NO_ERROR) {
        if (msg->err() != RdKafka::ERR__PARTITION_EOF) {
          log::Warn("consume", {{"error", msg->errstr()}});
        }
        break;
      }
      // The seek is tried again once this batch is handed over, or when
      // the lag is next due (every 2 s) while nothing else arrives.
      if (!unsought.empty() && unsought.contains({msg->topic_name(), msg->partition()})) {
        if (batch.empty() && absl::Now() >= next_lag) break;
        continue;
      }
      CheckContiguous(msg->topic_name(), msg->partition(), msg->offset());
      if (!anchors_.empty() && !CheckAnchor(*msg, unsought)) continue;
      ConsumedMessage m;
      m.topic = msg->topic_name();
      m.partition = msg->partition();
      m.offset = msg->offset();
      m.value.assign(static_cast<const char*>(msg->payload()), msg->len());
      batch_bytes += m.value.size();
      batch.push_back(std::move(m));
    }
    if (batch.empty()) continue;
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(
        +[](Subscriber* s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s->mu_) {
          return !s->ready_.has_value() || s->stopping_.load();
        },
        this));
    if (generation == generation_) {
      in_flight_.fetch_add(static_cast<int64_t>(batch.size()));
      ready_ = std::move(batch);
    } else {
      // A batch failed after this one was taken: this one is dropped and
      // taken again after the seek back (an earlier offset already there
      // for a partition wins).
      AddRewinds(batch);
    }
    batch.clear();
  }
}

void Subscriber::Committed(const std::vector<ConsumedMessage>& batch, const Prepared& prepared) {
  projection_.Committed();
  applied_.fetch_add(prepared.applied);
  skipped_.fetch_add(prepared.skipped);
  poisoned_.fetch_add(prepared.poisoned);
  in_flight_.fetch_sub(static_cast<int64_t>(batch.size()));
  absl::MutexLock lock(&mu_);
  if (rereading_.empty()) return;
  for (const auto& m : batch) {
    std::pair<std::string, int32_t> tp(m.topic, m.partition);
    if (!rereading_.contains(tp)) continue;
    int64_t& next = reread_committed_[std::move(tp)];
    next = std::max(next, m.offset + 1);
  }
}

void Subscriber::Failed(const absl::Status& st,
                        std::initializer_list<const std::vector<ConsumedMessage>*> batches) {
  // The batches did not commit: they are consumed again from their first
  // offsets, and whatever was taken after them is dropped.
  log::Error("apply failed, retrying batch", {{"error", st.ToString()}});
  {
    absl::MutexLock lock(&mu_);
    ++generation_;
    int64_t dropped = 0;
    for (const auto* batch : batches) {
      AddRewinds(*batch);
      dropped += static_cast<int64_t>(batch->size());
    }
    if (ready_.has_value()) {
      AddRewinds(*ready_);
      dropped += static_cast<int64_t>(ready_->size());
    }
    ready_.reset();
    in_flight_.fetch_sub(dropped);
  }
  absl::SleepFor(absl::Milliseconds(200));
}

void Subscriber::Apply() {
  // With pipelined_commit: the batch whose commit runs on another thread
  // while the next one is prepared on top of its writes.
  struct Committing {
    std::vector<ConsumedMessage> batch;
    Prepared prepared;
    std::future<absl::Status> done;
  };
  std::optional<Committing> committing;
  // Waits for the commit in flight; false if it failed (and was handled).
  auto settle = [&](const std::vector<ConsumedMessage>* next) {
    const absl::Status st = committing->done.get();
    if (st.ok()) {
      Committed(committing->batch, committing->prepared);
    } else if (next != nullptr) {
      Failed(st, {&committing->batch, next});
    } else {
      Failed(st, {&committing->batch});
    }
    committing.reset();
    return st.ok();
  };
  while (true) {
    if (committing.has_value()) {
      bool idle;
      {
        absl::MutexLock lock(&mu_);
        idle = !ready_.has_value();
      }
      // Nothing to overlap with: the counters must not wait for a batch
      // that may never come.
      if (idle) settle(nullptr);
    }
    std::vector<ConsumedMessage> batch;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](Subscriber* s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s->mu_) {
            return s->ready_.has_value() || s->stopping_.load();
          },
          this));
      if (!stopping_.load()) {
        batch = *std::move(ready_);
        ready_.reset();
      }
    }
    if (batch.empty()) {  // stopping
      if (committing.has_value()) settle(nullptr);
      return;
    }
    auto prepared =
        Prepare(batch, committing.has_value() ? committing->prepared.txn.get() : nullptr);
    // The batch was prepared on the writes of the one in flight: if that
    // commit fails, both are consumed again.
    if (committing.has_value() && !settle(&batch)) continue;
    if (!prepared.ok()) {
      Failed(prepared.status(), {&batch});
      continue;
    }
    if (!options_.pipelined_commit) {
      if (auto st = prepared->txn->Commit(); !st.ok()) {
        Failed(st, {&batch});
      } else {
        Committed(batch, *prepared);
      }
      continue;
    }
    committing.emplace(Committing{std::move(batch), *std::move(prepared), {}});
    committing->done = std::async(std::launch::async, [txn = committing->prepared.txn.get()] {
      NameThisThread("crm-commit");
      return txn->Commit();
    });
  }
}

}  // namespace crm
