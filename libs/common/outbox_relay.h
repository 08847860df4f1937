#pragma once

#include <array>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/btree_set.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/time/time.h"
#include "libs/common/event_store.h"
#include "libs/common/kafka.h"
#include "libs/common/metrics.h"

namespace crm {

struct RelayOptions {
  std::string brokers;
  std::string topic;
  // Where audit streams (refusals, libs/common/audit) go instead of `topic`.
  std::string audit_topic = kAuditTopic;
  // Where key records (libs/common/pii) go, keyed by their stream.
  std::string keys_topic = kKeysTopic;
  // Bound on messages handed to librdkafka and not yet reported; the rest
  // wait durably in the outbox, so memory stays flat while a broker is down.
  size_t max_in_flight = 20000;
  // Bound on the bytes of one read of the outbox (events reach 900 KB).
  size_t max_read_bytes = 64 << 20;
  // Bound on the bytes of messages handed to librdkafka and not yet
  // reported (its queue.buffering.max.kbytes, 1 GiB by default): a broker
  // outage with large events must not hold 20,000 of them in memory. At
  // least one event's bound.
  size_t max_in_flight_bytes = 64 << 20;
  // librdkafka's compression.type (ServiceConfig::kafka_compression).
  std::string compression = "none";
  KafkaSettings extra_settings = {};
};

// Drains the outbox to Kafka with the idempotent producer (acks=all), key =
// customer_id. The outbox cursor passes an entry only after its delivery
// report (and those of every entry before it) says the broker has it.
// Messages never time out inside librdkafka, so a broker outage delays
// delivery but neither drops nor reorders a stream. A fatal producer error
// (the idempotent producer lost its sequence) ends that producer: the relay
// makes a new one and sends again from the cursor.
class OutboxRelay {
 public:
  OutboxRelay(EventStore& store, RelayOptions options);
  ~OutboxRelay();

  OutboxRelay(const OutboxRelay&) = delete;
  OutboxRelay& operator=(const OutboxRelay&) = delete;

  // Starts the relay; from then on every append to the store wakes it.
  absl::Status Start();
  // Wakes the relay after an append.
  void Notify();
  // Gives in-flight messages up to `flush_timeout` to be delivered, then
  // stops; undelivered entries stay in the outbox for the next start.
  void Stop(absl::Duration flush_timeout = absl::Seconds(5));

  uint64_t published() const { return published_.load(); }
  uint64_t republished() const { return republished_.load(); }
  // Outbox entries read so far: while librdkafka's queue is full nothing
  // more is read, so a broker outage costs no reads.
  uint64_t entries_read() const { return entries_read_.load(); }
  // Messages handed to librdkafka and not yet reported.
  size_t in_flight() const { return in_flight_count_.load(); }
  // Producers made again after a fatal error.
  uint64_t producer_restarts() const { return producer_restarts_.load(); }

  // Has librdkafka raise a fatal error on the relay's producer, on the relay
  // thread; for tests of the recovery.
  void FailProducerForTesting();

 private:
  class DeliveryReport;

  void Run();
  // The producer and its topic handles, from options_.
  absl::Status CreateProducer();
  // Every topic the relay routes to: a handle and a published counter each.
  std::array<const std::string*, 3> RoutedTopics() const {
    return {&options_.topic, &options_.keys_topic, &options_.audit_topic};
  }
  // After a fatal error: drops the producer and what it held in flight; the
  // next one sends again from the outbox cursor.
  void DropProducer();
  // Makes a new producer after DropProducer. False when it could not be
  // made (tried again later).
  bool RestartProducer();
  // OK once it could tell whether the topic is empty, else why not; refills
  // the topic from the event log when it is (the embedded broker keeps
  // messages in memory only).
  absl::Status RefillIfTopicEmpty();
  void ProduceFromOutbox();
  void ServeReports(int timeout_ms);
  void OnDelivery(RdKafka::Message& message);

  EventStore& store_;
  RelayOptions options_;
  std::unique_ptr<DeliveryReport> report_cb_;
  std::unique_ptr<RdKafka::Producer> producer_;
  // Handles on every topic the relay routes to, held from the start so their
  // metadata is known before the first record for them.
  std::vector<std::unique_ptr<RdKafka::Topic>> topics_;
  std::thread thread_;

  std::mutex mu_;
  std::condition_variable cv_;
  bool wake_ = false;
  bool stopping_ = false;
  bool fail_producer_ = false;
  absl::Duration flush_timeout_ = absl::Seconds(5);

  // Touched only on the relay thread (reports are served there too).
  // Ordered: the lowest one in flight bounds the outbox cursor.
  absl::btree_set<uint64_t> in_flight_;
  std::atomic<size_t> in_flight_count_{0};  // its size, for in_flight()
  // Outbox entries below this position are in flight or delivered.
  uint64_t read_from_ = 0;
  // What the outbox cursor was last moved to.
  uint64_t marked_ = 0;
  // Whether the last cursor write failed: a stopped store fails every pass,
  // logged once until a write succeeds again.
  bool cursor_failing_ = false;
  // Messages in flight when librdkafka last said its queue was full: no
  // more is read until fewer are.
  std::optional<size_t> queue_full_at_;
  std::atomic<uint64_t> entries_read_{0};
  std::atomic<uint64_t> published_{0};
  // Acknowledged records per topic they went to (options_.topic, keys, audit).
  absl::flat_hash_map<std::string, Counter*> published_total_;
  // Failed delivery reports since the last poll, and the first one's error.
  uint64_t failed_reports_ = 0;
  std::string last_failure_;
  // The topic of the report last_failure_ came from: audit and key records
  // go to other topics than the domain events, and may fail on their own.
  std::string last_failed_topic_;
  std::atomic<uint64_t> republished_{0};
  std::atomic<uint64_t> producer_restarts_{0};
  Counter* restarts_total_ = nullptr;
};

}  // namespace crm
