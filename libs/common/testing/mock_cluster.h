#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

// rdkafka_mock.h needs rdkafka.h first.
#include "librdkafka/rdkafka.h"
#include "librdkafka/rdkafka_mock.h"

namespace crm::testing {

// librdkafka's mock cluster in this process: a real Kafka-protocol broker
// with the given topics (name, partitions).
class MockCluster {
 public:
  explicit MockCluster(const std::vector<std::pair<std::string, int>>& topics) {
    char err[512];
    rd_kafka_conf_t* conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "log_level", "3", err, sizeof(err));
    rk_.reset(rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err)));
    if (rk_ != nullptr) cluster_ = rd_kafka_mock_cluster_new(rk_.get(), 1);
    if (cluster_ == nullptr) return;
    for (const auto& [name, partitions] : topics) {
      rd_kafka_mock_topic_create(cluster_, name.c_str(), partitions, 1);
    }
  }
  ~MockCluster() {
    if (cluster_ != nullptr) rd_kafka_mock_cluster_destroy(cluster_);
  }
  MockCluster(const MockCluster&) = delete;
  MockCluster& operator=(const MockCluster&) = delete;

  bool ok() const { return cluster_ != nullptr; }
  // The next `count` produce requests fail with `error`.
  void FailProduces(rd_kafka_resp_err_t error, size_t count) {
    std::vector<rd_kafka_resp_err_t> errors(count, error);
    rd_kafka_mock_push_request_errors_array(cluster_, /*Produce=*/0, errors.size(), errors.data());
  }
  // Metadata requests for `topic` answer `error` (RD_KAFKA_RESP_ERR_NO_ERROR
  // again: the topic is served as before).
  void SetTopicError(const std::string& topic, rd_kafka_resp_err_t error) {
    rd_kafka_mock_topic_set_error(cluster_, topic.c_str(), error);
  }
  // The (only) broker stops answering, or answers again.
  void SetBrokerDown(bool down) {
    if (down) {
      rd_kafka_mock_broker_set_down(cluster_, 1);
    } else {
      rd_kafka_mock_broker_set_up(cluster_, 1);
    }
  }
  // Every broker answers `rtt_ms` late (0: at once).
  void SetRtt(int rtt_ms) { rd_kafka_mock_broker_set_rtt(cluster_, -1, rtt_ms); }
  std::string bootstrap() const { return rd_kafka_mock_cluster_bootstraps(cluster_); }

 private:
  struct Deleter {
    void operator()(rd_kafka_t* rk) const { rd_kafka_destroy(rk); }
  };
  std::unique_ptr<rd_kafka_t, Deleter> rk_;
  rd_kafka_mock_cluster_t* cluster_ = nullptr;
};

}  // namespace crm::testing
