#include "libs/common/outbox_relay.h"

#include <algorithm>
#include <cstdint>
#include <utility>

#include "absl/strings/str_cat.h"
#include "librdkafka/rdkafka.h"
#include "libs/common/audit/audit_stream.h"
#include "libs/common/ids.h"
#include "libs/common/log.h"
#include "libs/common/metrics.h"
#include "libs/common/pii/key_stream.h"
#include "libs/common/status_macros.h"
#include "libs/common/thread_name.h"

namespace crm {

class OutboxRelay::DeliveryReport final : public RdKafka::DeliveryReportCb {
 public:
  explicit DeliveryReport(OutboxRelay* relay) : relay_(relay) {}
  void dr_cb(RdKafka::Message& message) override { relay_->OnDelivery(message); }

 private:
  OutboxRelay* relay_;
};

OutboxRelay::OutboxRelay(EventStore& store, RelayOptions options)
    : store_(store), options_(std::move(options)) {}

OutboxRelay::~OutboxRelay() { Stop(absl::ZeroDuration()); }

absl::Status OutboxRelay::CreateProducer() {
  KafkaSettings settings = {
      {"bootstrap.servers", options_.brokers},
      {"enable.idempotence", "true"},
      // A batch that fails for good (a broker or topic refusing it) must
      // not leave a gap that later events of the partition close over: a
      // resend would land after them, and subscribers would skip it as a
      // version already passed. This makes such a failure fatal instead;
      // the relay then starts a new producer from its cursor, in order.
      {"enable.gapless.guarantee", "true"},
      {"acks", "all"},
      // 0 = never time out: an outage delays delivery, it never fails it,
      // so a later message of a stream cannot overtake an earlier one.
      {"message.timeout.ms", "0"},
      {"linger.ms", "2"},
      {"compression.type", options_.compression},
      // Same partition for a key as the Java client, for outside producers.
      {"partitioner", "murmur2_random"},
      {"queue.buffering.max.messages", absl::StrCat(options_.max_in_flight + 1000)},
      {"queue.buffering.max.kbytes",
       absl::StrCat(
           std::max<size_t>(options_.max_in_flight_bytes, EventStore::kMaxEventBytes << 1) >> 10)},
  };
  settings.insert(settings.end(), options_.extra_settings.begin(), options_.extra_settings.end());
  auto conf = MakeKafkaConf(settings);
  if (!conf.ok()) return conf.status();
  std::string err;
  if ((*conf)->set("dr_cb", report_cb_.get(), err) != RdKafka::Conf::CONF_OK) {
    return absl::InternalError(err);
  }
  topics_.clear();  // handles go before their producer
  producer_.reset(RdKafka::Producer::create(conf->get(), err));
  if (!producer_) return absl::UnavailableError(absl::StrCat("kafka producer: ", err));
  for (const std::string* name : RoutedTopics()) {
    std::unique_ptr<RdKafka::Topic> topic(
        RdKafka::Topic::create(producer_.get(), *name, nullptr, err));
    if (!topic) return absl::InvalidArgumentError(absl::StrCat("topic ", *name, ": ", err));
    topics_.push_back(std::move(topic));
  }
  return absl::OkStatus();
}

absl::Status OutboxRelay::Start() {
  report_cb_ = std::make_unique<DeliveryReport>(this);
  if (auto st = CreateProducer(); !st.ok()) return st;
  for (const std::string* name : RoutedTopics()) {
    published_total_[*name] = &MetricsRegistry::Default().GetCounter(
        "crm_events_published_total", "Events acknowledged by the broker", {{"topic", *name}});
  }
  restarts_total_ = &MetricsRegistry::Default().GetCounter(
      "crm_relay_producer_restarts_total", "Producers the relay made again after a fatal error",
      {{"topic", options_.topic}});
  // Set before any caller appends (services start serving after this).
  store_.SetAppendListener([this] { Notify(); }, this);
  thread_ = std::thread([this] {
    NameThisThread("crm-relay");
    Run();
  });
  return absl::OkStatus();
}

void OutboxRelay::DropProducer() {
  topics_.clear();  // handles go before their producer
  producer_.reset();
  // What it held is dropped unreported; every entry past the cursor goes
  // out again. Those it had delivered become duplicates, which subscribers
  // skip by stream version.
  in_flight_.clear();
  in_flight_count_.store(0);
  queue_full_at_.reset();  // a new producer has an empty queue
  read_from_ = marked_;
}

bool OutboxRelay::RestartProducer() {
  if (auto st = CreateProducer(); !st.ok()) {
    log::Error("kafka producer restart failed",
               {{"topic", options_.topic}, {"error", st.ToString()}});
    DropProducer();
    return false;
  }
  producer_restarts_.fetch_add(1);
  restarts_total_->Inc();
  log::Info("kafka producer restarted",
            {{"topic", options_.topic}, {"from_position", absl::StrCat(read_from_)}});
  return true;
}

void OutboxRelay::FailProducerForTesting() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    fail_producer_ = true;
  }
  cv_.notify_one();
}

void OutboxRelay::Notify() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    wake_ = true;
  }
  cv_.notify_one();
}

void OutboxRelay::Stop(absl::Duration flush_timeout) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_ && !thread_.joinable()) return;
    stopping_ = true;
    flush_timeout_ = flush_timeout;
  }
  cv_.notify_one();
  if (thread_.joinable()) {
    thread_.join();
    // The store may outlive this relay and go on appending.
    store_.ClearAppendListener(this);
  }
}

void OutboxRelay::OnDelivery(RdKafka::Message& message) {
  const auto position = static_cast<uint64_t>(reinterpret_cast<uintptr_t>(message.msg_opaque()));
  in_flight_.erase(position);
  in_flight_count_.store(in_flight_.size());
  if (message.err() == RdKafka::ERR_NO_ERROR) {
    published_.fetch_add(1);
    if (auto it = published_total_.find(message.topic_name()); it != published_total_.end()) {
      it->second->Inc();
    }
  } else {
    // Only permanent errors end up here (no timeouts); the entry stays in
    // the outbox and is produced again (with any delivered after it:
    // duplicates that subscribers skip by stream version).
    read_from_ = std::min(read_from_, position);
    // One line per poll, not per message: a fatal error fails them all.
    if (failed_reports_++ == 0) {
      last_failure_ = message.errstr();
      last_failed_topic_ = message.topic_name();
    }
  }
}

void OutboxRelay::ServeReports(int timeout_ms) {
  if (!producer_) return;
  producer_->poll(timeout_ms);
  if (failed_reports_ > 0) {
    log::Error("delivery failed", {{"topic", last_failed_topic_},
                                   {"error", last_failure_},
                                   {"messages", absl::StrCat(failed_reports_)}});
    failed_reports_ = 0;
  }
  // Everything below the lowest entry in flight, and below read_from_, has
  // been delivered (or lies in a gap no append wrote).
  const uint64_t delivered =
      in_flight_.empty() ? read_from_ : std::min(read_from_, *in_flight_.begin());
  if (delivered <= marked_) return;
  if (auto st = store_.MarkRelayed(delivered); !st.ok()) {
    if (!cursor_failing_) log::Error("outbox cursor write failed", {{"error", st.ToString()}});
    cursor_failing_ = true;
    return;
  }
  if (cursor_failing_) log::Info("outbox cursor written again", {});
  cursor_failing_ = false;
  marked_ = delivered;
}

absl::Status OutboxRelay::RefillIfTopicEmpty() {
  CRM_ASSIGN_OR_RETURN(const auto ids, PartitionIds(*producer_, options_.topic, 2000));
  for (const int32_t id : ids) {
    int64_t low = 0;
    int64_t high = 0;
    if (auto e = producer_->query_watermark_offsets(options_.topic, id, &low, &high, 2000);
        e != RdKafka::ERR_NO_ERROR) {
      return absl::UnavailableError(
          absl::StrCat("end offset of partition ", id, ": ", RdKafka::err2str(e)));
    }
    if (high > 0) return absl::OkStatus();
  }
  if (store_.LogSize() == 0) return absl::OkStatus();
  // An empty topic says the broker is new only if this log has something
  // for it: refusals and key records go to shared topics, and a log of only
  // those (analytics before its first alert) would be republished whole at
  // every start.
  CRM_ASSIGN_OR_RETURN(const bool has_domain_events,
                       store_.LogHasStream([](absl::string_view stream) {
                         return !pii::IsKeyRecordStream(stream) && !audit::IsAuditStream(stream);
                       }));
  if (!has_domain_events) return absl::OkStatus();
  CRM_ASSIGN_OR_RETURN(const auto queued, store_.RequeueLog());
  republished_.store(queued);
  read_from_ = 0;  // the log went back in at its original positions
  marked_ = 0;
  log::Info("topic empty, republishing event log",
            {{"topic", options_.topic}, {"events", absl::StrCat(queued)}});
  return absl::OkStatus();
}

void OutboxRelay::ProduceFromOutbox() {
  if (in_flight_.size() >= options_.max_in_flight) return;
  size_t room = options_.max_in_flight - in_flight_.size();
  if (queue_full_at_.has_value()) {
    // librdkafka's queue was full at that many: read what the reports since
    // have freed, and one more to learn whether it takes more now.
    if (in_flight_.size() >= *queue_full_at_) return;
    room = std::min(room, *queue_full_at_ - in_flight_.size() + 1);
  }
  // Read before the outbox, so every entry below it is in what we read.
  const uint64_t stable = store_.StablePosition();
  auto entries = store_.ReadOutbox(read_from_, room, options_.max_read_bytes);
  if (!entries.ok()) {
    log::Error("outbox read failed", {{"error", entries.status().ToString()}});
    return;
  }
  entries_read_.fetch_add(entries->size());
  // Whether every entry below `stable` was read and handed on; then what
  // is left below it are gaps of appends that failed to write.
  // A read cut by the byte bound ends short of `room` with more to come.
  size_t bytes = 0;
  for (const auto& entry : *entries) bytes += entry.bytes.size();
  bool took_all = entries->size() < room && bytes < options_.max_read_bytes;
  for (auto& entry : *entries) {
    // Past `stable` an append still being written may own a gap; what
    // lies there waits for the next round, so that nothing below
    // read_from_ is read again once delivered.
    if (entry.position >= stable) break;
    if (in_flight_.size() >= options_.max_in_flight) {
      took_all = false;
      break;
    }
    if (in_flight_.contains(entry.position)) {
      read_from_ = std::max(read_from_, entry.position + 1);
      continue;
    }
    const std::string& value = entry.bytes;
    const std::string& stream = entry.envelope.stream();
    const bool key_record = pii::IsKeyRecordStream(stream);
    // Key records are keyed by stream: a compacted topic keeps only a key's
    // last record, so a destroyed key's wrapped bytes are dropped.
    const std::string& key = key_record ? stream : entry.envelope.customer_id();
    auto headers = CloudEventHeaders(entry.envelope, key);
    const int64_t ts_ms = absl::ToUnixMillis(FromProtoTimestamp(entry.envelope.occurred_at()));
    const std::string& topic = key_record                     ? options_.keys_topic
                               : audit::IsAuditStream(stream) ? options_.audit_topic
                                                              : options_.topic;
    auto err = producer_->produce(topic, RdKafka::Topic::PARTITION_UA,
                                  RdKafka::Producer::RK_MSG_COPY, const_cast<char*>(value.data()),
                                  value.size(), key.data(), key.size(), ts_ms, headers.get(),
                                  reinterpret_cast<void*>(static_cast<uintptr_t>(entry.position)));
    if (err == RdKafka::ERR_NO_ERROR) {
      headers.release();  // librdkafka owns them now
      in_flight_.insert(entry.position);
      in_flight_count_.store(in_flight_.size());
      read_from_ = std::max(read_from_, entry.position + 1);
      // Past the size it was full at: it takes more now, read freely.
      if (queue_full_at_.has_value() && in_flight_.size() > *queue_full_at_) {
        queue_full_at_.reset();
      }
    } else {
      if (err == RdKafka::ERR__QUEUE_FULL) {
        // Waits for a report of one in flight (with none, tries again).
        if (!in_flight_.empty()) queue_full_at_ = in_flight_.size();
      } else {
        log::Error("produce failed", {{"topic", topic},
                                      {"position", absl::StrCat(entry.position)},
                                      {"error", RdKafka::err2str(err)}});
      }
      took_all = false;
      break;
    }
  }
  if (took_all) read_from_ = std::max(read_from_, stable);
}

void OutboxRelay::Run() {
  bool refill_checked = false;
  absl::Time next_refill_try = absl::InfinitePast();
  absl::Time next_refill_warning = absl::InfinitePast();
  // A fatal error that comes back at once (a broker that refuses the
  // producer id) must not spin: restarts back off until one delivers.
  absl::Time next_restart_try = absl::InfinitePast();
  absl::Duration restart_backoff = absl::Seconds(1);
  uint64_t published_at_restart = 0;
  for (;;) {
    bool fail_producer = false;
    {
      std::unique_lock<std::mutex> lock(mu_);
      if (stopping_) break;
      std::swap(fail_producer, fail_producer_);
    }
    if (fail_producer && producer_) {
      rd_kafka_test_fatal_error(producer_->c_ptr(), RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER,
                                "failed for a test");
    }
    std::string fatal;
    if (producer_ && producer_->fatal_error(fatal) != RdKafka::ERR_NO_ERROR) {
      log::Error("kafka producer failed", {{"topic", options_.topic}, {"error", fatal}});
      DropProducer();
    }
    if (!producer_ && absl::Now() >= next_restart_try) {
      if (published_.load() > published_at_restart) restart_backoff = absl::Seconds(1);
      if (RestartProducer()) {
        published_at_restart = published_.load();
        next_restart_try = absl::Now() + restart_backoff;
        restart_backoff = std::min(restart_backoff * 2, absl::Minutes(1));
      } else {
        next_restart_try = absl::Now() + absl::Seconds(1);
      }
    }
    if (producer_) {
      if (!refill_checked && absl::Now() >= next_refill_try) {
        const absl::Status checked = RefillIfTopicEmpty();
        refill_checked = checked.ok();
        // Nothing is published until then: say why, once a minute (a topic
        // missing where none is created on first use, a refused Describe, a
        // partition without a leader would otherwise only grow the outbox).
        if (!checked.ok() && absl::Now() >= next_refill_warning) {
          log::Warn("relay waits: cannot tell whether the topic is empty, or refill it",
                    {{"topic", options_.topic}, {"error", checked.ToString()}});
          next_refill_warning = absl::Now() + absl::Minutes(1);
        }
        next_refill_try = absl::Now() + absl::Seconds(1);
      }
      if (refill_checked) ProduceFromOutbox();
      ServeReports(0);
    }
    std::unique_lock<std::mutex> lock(mu_);
    // Short waits while messages are in flight so reports are served soon.
    const auto wait =
        in_flight_.empty() ? std::chrono::milliseconds(200) : std::chrono::milliseconds(5);
    cv_.wait_for(lock, wait, [this] { return wake_ || stopping_ || fail_producer_; });
    wake_ = false;
  }
  // Graceful stop: let librdkafka deliver what it holds, then record it.
  const absl::Time deadline = absl::Now() + flush_timeout_;
  while (producer_ && !in_flight_.empty() && absl::Now() < deadline) ServeReports(50);
  ServeReports(0);
}

}  // namespace crm
