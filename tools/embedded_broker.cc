// crm-broker: the embedded Kafka broker for development and tests.
//
// Starts librdkafka's mock cluster (a real Kafka-protocol broker on
// 127.0.0.1, in memory only), creates the CRM topics, prints the bootstrap
// address and writes it to --address-file. Signals: SIGTERM/SIGINT stop it;
// SIGUSR1 takes every broker down (connections refused, as in an outage)
// and SIGUSR2 brings them back with their data.
#include <signal.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "librdkafka/rdkafka.h"
#include "librdkafka/rdkafka_mock.h"
#include "libs/common/config.h"
#include "libs/common/kafka.h"

namespace {

struct KafkaHandleDeleter {
  void operator()(rd_kafka_t* rk) const { rd_kafka_destroy(rk); }
};

}  // namespace

int main(int argc, char** argv) {
  sigset_t set;
  sigemptyset(&set);
  for (int s : {SIGTERM, SIGINT, SIGUSR1, SIGUSR2}) sigaddset(&set, s);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);

  const std::string address_file = crm::Setting(argc, argv, "address-file", "CRM_BROKER_FILE", "");
  int partitions = 0;
  int brokers = 0;
  if (!absl::SimpleAtoi(crm::Setting(argc, argv, "partitions", "CRM_BROKER_PARTITIONS", "6"),
                        &partitions) ||
      partitions < 1 ||
      !absl::SimpleAtoi(crm::Setting(argc, argv, "brokers", "CRM_BROKER_COUNT", "1"), &brokers) ||
      brokers < 1) {
    std::fprintf(stderr, "crm-broker: --partitions and --brokers must be positive numbers\n");
    return 2;
  }
  // A misspelt flag ("--partition=12") or one without its value would
  // otherwise be ignored and the defaults served.
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg.substr(0, 2) != "--" || arg.find('=') == std::string_view::npos) {
      std::fprintf(stderr, "crm-broker: unexpected argument '%s': flags are --name=value\n",
                   argv[i]);
      return 2;
    }
  }
  if (auto st = crm::CheckUnreadSettings(std::vector<std::string>(argv, argv + argc)); !st.ok()) {
    std::fprintf(stderr, "crm-broker: %s\n", std::string(st.message()).c_str());
    return 2;
  }

  // The mock cluster needs a client instance to live in.
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  char err[512];
  rd_kafka_conf_set(conf, "log_level", "3", err, sizeof(err));
  std::unique_ptr<rd_kafka_t, KafkaHandleDeleter> rk(
      rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err)));
  if (!rk) {
    std::fprintf(stderr, "crm-broker: %s\n", err);
    return 1;
  }
  rd_kafka_mock_cluster_t* cluster = rd_kafka_mock_cluster_new(rk.get(), brokers);
  if (cluster == nullptr) {
    std::fprintf(stderr, "crm-broker: cannot start the mock cluster\n");
    return 1;
  }
  std::vector<std::string> topics = crm::AllTopics();
  topics.push_back(crm::kDeadLetterTopic);
  for (const auto& topic : topics) {
    if (auto e = rd_kafka_mock_topic_create(cluster, topic.c_str(), partitions, 1); e) {
      std::fprintf(stderr, "crm-broker: create %s: %s\n", topic.c_str(), rd_kafka_err2str(e));
      return 1;
    }
  }
  const std::string bootstrap = rd_kafka_mock_cluster_bootstraps(cluster);
  if (!address_file.empty()) {
    const std::string tmp = address_file + ".tmp";
    std::ofstream out(tmp);
    out << bootstrap << "\n";
    out.close();
    // Readers never see half a line. One waiting for a file that never
    // comes would only time out, without this reason.
    if (!out || std::rename(tmp.c_str(), address_file.c_str()) != 0) {
      std::fprintf(stderr, "crm-broker: cannot write --address-file=%s: %s\n", address_file.c_str(),
                   std::strerror(errno));
      std::remove(tmp.c_str());
      rd_kafka_mock_cluster_destroy(cluster);
      return 1;
    }
  }
  std::printf("%s\n", bootstrap.c_str());
  std::fflush(stdout);
  std::fprintf(stderr,
               "{\"level\":\"info\",\"service\":\"broker\",\"msg\":\"serving\",\"bootstrap\":\"%"
               "s\",\"partitions\":\"%d\"}\n",
               bootstrap.c_str(), partitions);

  for (;;) {
    int sig = 0;
    sigwait(&set, &sig);
    if (sig == SIGUSR1 || sig == SIGUSR2) {
      for (int id = 1; id <= brokers; ++id) {
        if (sig == SIGUSR1) {
          rd_kafka_mock_broker_set_down(cluster, id);
        } else {
          rd_kafka_mock_broker_set_up(cluster, id);
        }
      }
      std::fprintf(stderr, "{\"level\":\"info\",\"service\":\"broker\",\"msg\":\"%s\"}\n",
                   sig == SIGUSR1 ? "brokers down" : "brokers up");
      continue;
    }
    break;
  }
  rd_kafka_mock_cluster_destroy(cluster);
  if (!address_file.empty()) std::remove(address_file.c_str());
  return 0;
}
