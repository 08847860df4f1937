#include "libs/common/kafka.h"

#include <memory>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "libs/common/testing/mock_cluster.h"

namespace crm {
namespace {

std::unique_ptr<RdKafka::KafkaConsumer> Consumer(const std::string& brokers) {
  auto conf = MakeKafkaConf({{"bootstrap.servers", brokers}, {"group.id", "ids"}});
  if (!conf.ok()) return nullptr;
  std::string err;
  return std::unique_ptr<RdKafka::KafkaConsumer>(RdKafka::KafkaConsumer::create(conf->get(), err));
}

TEST(PartitionIdsTest, ListsEveryPartitionOfATopic) {
  testing::MockCluster cluster({{kLeadsTopic, 3}});
  ASSERT_TRUE(cluster.ok());
  auto consumer = Consumer(cluster.bootstrap());
  ASSERT_NE(consumer, nullptr);
  auto ids = PartitionIds(*consumer, kLeadsTopic, 5000);
  ASSERT_TRUE(ids.ok()) << ids.status();
  EXPECT_THAT(*ids, ::testing::UnorderedElementsAre(0, 1, 2));
  consumer->close();
}

// Callers retry on UNAVAILABLE (the subscriber every second): a broker that
// does not answer must give that, naming the topic, once the timeout is up.
TEST(PartitionIdsTest, UnavailableNamingTheTopicWhenNoBrokerAnswers) {
  auto consumer = Consumer("127.0.0.1:1");
  ASSERT_NE(consumer, nullptr);
  auto ids = PartitionIds(*consumer, kLeadsTopic, 300);
  EXPECT_TRUE(absl::IsUnavailable(ids.status())) << ids.status();
  EXPECT_THAT(ids.status().message(), ::testing::HasSubstr(kLeadsTopic));
  consumer->close();
}

}  // namespace
}  // namespace crm
