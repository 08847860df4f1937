#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "crm/v1/envelope.pb.h"
#include "librdkafka/rdkafkacpp.h"

namespace crm {

inline constexpr char kLeadsTopic[] = "crm.leads.v1";
inline constexpr char kSalesTopic[] = "crm.sales.v1";
inline constexpr char kServiceDeskTopic[] = "crm.service-desk.v1";
inline constexpr char kAnalyticsTopic[] = "crm.analytics.v1";
// Refused calls and failed-authentication flags from every service.
inline constexpr char kAuditTopic[] = "crm.audit.v1";
// Data keys of customers' personal data and erasures (libs/common/pii);
// compacted, keyed by record stream.
inline constexpr char kKeysTopic[] = "crm.keys.v1";
// Events no projection could use are parked here with the reason.
inline constexpr char kDeadLetterTopic[] = "crm.dlq.v1";
inline const std::vector<std::string>& AllTopics();
// All but the keys topic, which each service reads on a group of its own.
inline const std::vector<std::string>& DomainTopics();

using KafkaSettings = std::vector<std::pair<std::string, std::string>>;

// Builds a librdkafka configuration, starting from the process's
// connection settings; any invalid setting is an error naming it.
absl::StatusOr<std::unique_ptr<RdKafka::Conf>> MakeKafkaConf(const KafkaSettings& settings);

// How every client of this process reaches the brokers (TLS, SASL): set
// once at start, before the first client is made.
void SetKafkaConnectionSettings(KafkaSettings settings);

// librdkafka properties ("key=value" lines, blank lines and '#' comments)
// for the connection: security.protocol, ssl.*, sasl.* and
// enable.ssl.certificate.verification only. The rest of a client's settings
// are the service's own (acks, idempotence: what delivery rests on).
// INVALID_ARGUMENT naming `source` and the line.
absl::StatusOr<KafkaSettings> ParseKafkaConnectionProperties(absl::string_view text,
                                                             absl::string_view source);

// CloudEvents Kafka protocol binding, binary mode: the value is the
// serialized envelope and the ce_* headers let consumers route without
// decoding it. `key` is the message's key, which ce_partitionkey repeats
// (the customer id; a key record's stream on crm.keys.v1).
std::unique_ptr<RdKafka::Headers> CloudEventHeaders(const crm::v1::EventEnvelope& e,
                                                    absl::string_view key);

// The message's header value, empty if absent.
std::string HeaderValue(RdKafka::Message& m, absl::string_view name);

// The ids of `topic`'s partitions, from the broker's metadata: NOT_FOUND
// when the broker does not know the topic, UNAVAILABLE while it does not
// answer within `timeout_ms` or the topic has no partitions yet.
absl::StatusOr<std::vector<int32_t>> PartitionIds(RdKafka::Handle& client, const std::string& topic,
                                                  int timeout_ms);

inline const std::vector<std::string>& DomainTopics() {
  static const std::vector<std::string> topics = {kLeadsTopic, kSalesTopic, kServiceDeskTopic,
                                                  kAnalyticsTopic, kAuditTopic};
  return topics;
}

inline const std::vector<std::string>& AllTopics() {
  static const std::vector<std::string> topics = [] {
    std::vector<std::string> all = DomainTopics();
    all.push_back(kKeysTopic);
    return all;
  }();
  return topics;
}

}  // namespace crm
