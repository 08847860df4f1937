#pragma once

// Reading and writing the topics directly, as an outside producer or
// consumer would: for tests that check what a service published, or feed
// it an event without running the service that normally emits it.
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "crm/v1/envelope.pb.h"
#include "gtest/gtest.h"
#include "libs/common/ids.h"
#include "libs/common/kafka.h"

namespace crm::testing {

// Reads `topic` from the beginning with a consumer group of its own,
// handing each message to `take`, until `done` holds (or `timeout`). Once
// `done` holds it reads on for `linger` more, so that a record which
// should not be there (a duplicate) would still be seen.
inline void ReadTopic(const std::string& brokers, const std::string& topic,
                      const std::function<void(RdKafka::Message&)>& take,
                      const std::function<bool()>& done, absl::Duration timeout,
                      absl::Duration linger) {
  auto conf = MakeKafkaConf({{"bootstrap.servers", brokers},
                             {"group.id", NewId("test-reader")},
                             {"auto.offset.reset", "earliest"},
                             {"enable.auto.commit", "false"}});
  EXPECT_TRUE(conf.ok()) << conf.status();
  if (!conf.ok()) return;
  std::string err;
  std::unique_ptr<RdKafka::KafkaConsumer> consumer(
      RdKafka::KafkaConsumer::create(conf->get(), err));
  EXPECT_NE(consumer, nullptr) << err;
  if (consumer == nullptr) return;
  consumer->subscribe({topic});
  const absl::Time deadline = absl::Now() + timeout;
  std::optional<absl::Time> stop;  // set once `done` holds
  while (true) {
    if (!stop && done()) stop = absl::Now() + linger;
    if (stop ? absl::Now() >= *stop : absl::Now() >= deadline) break;
    std::unique_ptr<RdKafka::Message> m(consumer->consume(200));
    if (m->err() == RdKafka::ERR_NO_ERROR) take(*m);
  }
  consumer->close();
}

// ReadTopic of the envelopes that `keep` accepts, until `done` holds for
// them.
inline std::vector<crm::v1::EventEnvelope> ConsumeTopic(
    const std::string& brokers, const std::string& topic,
    const std::function<bool(const crm::v1::EventEnvelope&)>& keep,
    const std::function<bool(const std::vector<crm::v1::EventEnvelope>&)>& done,
    absl::Duration timeout = absl::Seconds(30), absl::Duration linger = absl::ZeroDuration()) {
  std::vector<crm::v1::EventEnvelope> seen;
  ReadTopic(
      brokers, topic,
      [&](RdKafka::Message& m) {
        crm::v1::EventEnvelope e;
        if (!e.ParseFromArray(m.payload(), static_cast<int>(m.len()))) return;
        if (keep(e)) seen.push_back(std::move(e));
      },
      [&] { return done(seen); }, timeout, linger);
  return seen;
}

// How many messages `topics` hold now (high less low watermark, summed over
// their partitions); a topic the broker does not know holds none. -1 when
// the broker cannot be asked.
inline int64_t MessagesOn(const std::string& brokers, const std::vector<std::string>& topics) {
  auto conf = MakeKafkaConf({{"bootstrap.servers", brokers}});
  if (!conf.ok()) return -1;
  std::string err;
  std::unique_ptr<RdKafka::Producer> client(RdKafka::Producer::create(conf->get(), err));
  if (client == nullptr) return -1;
  int64_t total = 0;
  for (const auto& topic : topics) {
    auto partitions = PartitionIds(*client, topic, /*timeout_ms=*/5000);
    if (absl::IsNotFound(partitions.status())) continue;
    if (!partitions.ok()) return -1;
    for (int32_t p : *partitions) {
      int64_t low = 0, high = 0;
      if (client->query_watermark_offsets(topic, p, &low, &high, /*timeout_ms=*/5000) !=
          RdKafka::ERR_NO_ERROR) {
        return -1;
      }
      total += high - low;
    }
  }
  return total;
}

// Publishes envelopes to `topic` keyed by customer_id, as a service's
// relay would, and waits for the broker to acknowledge them.
inline bool ProduceToTopic(const std::string& brokers, const std::string& topic,
                           const std::vector<crm::v1::EventEnvelope>& events) {
  // The relay's partitioner: a copy lands on its original's partition.
  auto conf = MakeKafkaConf({{"bootstrap.servers", brokers},
                             {"enable.idempotence", "true"},
                             {"partitioner", "murmur2_random"}});
  if (!conf.ok()) return false;
  std::string err;
  std::unique_ptr<RdKafka::Producer> producer(RdKafka::Producer::create(conf->get(), err));
  if (producer == nullptr) return false;
  for (const auto& e : events) {
    const std::string value = e.SerializeAsString();
    auto headers = CloudEventHeaders(e, e.customer_id());
    const auto code =
        producer->produce(topic, RdKafka::Topic::PARTITION_UA, RdKafka::Producer::RK_MSG_COPY,
                          const_cast<char*>(value.data()), value.size(), e.customer_id().data(),
                          e.customer_id().size(), 0, headers.get(), nullptr);
    if (code != RdKafka::ERR_NO_ERROR) return false;
    headers.release();  // librdkafka owns them now
  }
  return producer->flush(10000) == RdKafka::ERR_NO_ERROR && producer->outq_len() == 0;
}

}  // namespace crm::testing
