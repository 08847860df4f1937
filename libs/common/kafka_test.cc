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

TEST(KafkaConnectionTest, PropertiesTakeOnlyConnectionSettingsNamingTheLine) {
  auto parsed = ParseKafkaConnectionProperties(
      "# cluster CA and this service's certificate\n"
      "security.protocol = ssl\n"
      "\n"
      "ssl.ca.location=/etc/crm/kafka/ca.crt\n"
      "sasl.password=a=b\n",
      "kafka.properties");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_THAT(*parsed,
              ::testing::ElementsAre(
                  std::pair<std::string, std::string>("security.protocol", "ssl"),
                  std::pair<std::string, std::string>("ssl.ca.location", "/etc/crm/kafka/ca.crt"),
                  std::pair<std::string, std::string>("sasl.password", "a=b")));
  // What delivery rests on stays the service's.
  EXPECT_EQ(ParseKafkaConnectionProperties("security.protocol=ssl\nacks=0\n", "f").status(),
            absl::InvalidArgumentError(
                "f line 2: acks is not a connection setting (security.protocol, ssl.*, sasl.*)"));
  EXPECT_EQ(ParseKafkaConnectionProperties("ssl.ca.location\n", "f").status(),
            absl::InvalidArgumentError("f line 1: expected key=value"));
  auto bad = ParseKafkaConnectionProperties("security.protocol=carrier-pigeon\n", "f");
  EXPECT_TRUE(absl::IsInvalidArgument(bad.status())) << bad.status();
  EXPECT_THAT(bad.status().message(), ::testing::HasSubstr("security.protocol"));
}

// Every client the process makes reaches the brokers as the connection
// settings say: here SASL, which the test broker does not speak.
TEST(KafkaConnectionTest, EveryClientUsesTheConnectionSettings) {
  testing::MockCluster cluster({{kLeadsTopic, 1}});
  ASSERT_TRUE(cluster.ok());
  SetKafkaConnectionSettings({{"security.protocol", "sasl_plaintext"},
                              {"sasl.mechanism", "PLAIN"},
                              {"sasl.username", "crm-leads"},
                              {"sasl.password", "secret"}});
  auto conf = MakeKafkaConf({{"bootstrap.servers", cluster.bootstrap()}});
  std::string protocol;
  ASSERT_TRUE(conf.ok()) << conf.status();
  ASSERT_EQ((*conf)->get("security.protocol", protocol), RdKafka::Conf::CONF_OK);
  EXPECT_EQ(protocol, "sasl_plaintext");
  auto refused = Consumer(cluster.bootstrap());
  SetKafkaConnectionSettings({});
  ASSERT_NE(refused, nullptr);
  EXPECT_TRUE(absl::IsUnavailable(PartitionIds(*refused, kLeadsTopic, 1000).status()));
  refused->close();
  auto plain = Consumer(cluster.bootstrap());
  ASSERT_NE(plain, nullptr);
  EXPECT_TRUE(PartitionIds(*plain, kLeadsTopic, 5000).ok());
  plain->close();
}

}  // namespace
}  // namespace crm
