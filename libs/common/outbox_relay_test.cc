#include "libs/common/outbox_relay.h"

#include <atomic>
#include <filesystem>
#include <fstream>
#include <memory>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "libs/common/kafka.h"
#include "libs/common/pii/key_stream.h"
#include "libs/common/testing/mock_cluster.h"
#include "libs/common/testing/temp_dir.h"

namespace crm {
namespace {

constexpr char kTopic[] = "relay.test";
constexpr char kAuditTestTopic[] = "relay.audit";
constexpr char kKeysTestTopic[] = "relay.keys";

// The topics the relay writes to.
class MockCluster : public crm::testing::MockCluster {
 public:
  MockCluster()
      : crm::testing::MockCluster({{kTopic, 2}, {kAuditTestTopic, 1}, {kKeysTestTopic, 1}}) {}
};

// Threads of this process with the name `name` (/proc/self/task/*/comm).
int ThreadsNamed(const std::string& name) {
  int n = 0;
  for (const auto& task : std::filesystem::directory_iterator("/proc/self/task")) {
    std::ifstream comm(task.path() / "comm");
    std::string line;
    if (std::getline(comm, line) && line == name) ++n;
  }
  return n;
}

// How often each event id is on the topic.
absl::flat_hash_map<std::string, int> ReadTopic(const std::string& brokers, size_t want,
                                                const std::string& topic = kTopic) {
  absl::flat_hash_map<std::string, int> seen;
  auto conf = MakeKafkaConf({{"bootstrap.servers", brokers},
                             {"group.id", "relay-test-reader-" + topic},
                             {"auto.offset.reset", "earliest"},
                             {"enable.auto.commit", "false"}});
  EXPECT_TRUE(conf.ok()) << conf.status();
  if (!conf.ok()) return seen;
  std::string err;
  std::unique_ptr<RdKafka::KafkaConsumer> consumer(
      RdKafka::KafkaConsumer::create(conf->get(), err));
  EXPECT_NE(consumer, nullptr) << err;
  if (consumer == nullptr) return seen;
  consumer->subscribe({topic});
  size_t total = 0;
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  // Past `want`, read on briefly so a duplicate would be seen.
  absl::Time stop = absl::InfiniteFuture();
  while (absl::Now() < std::min(deadline, stop)) {
    std::unique_ptr<RdKafka::Message> m(consumer->consume(100));
    if (m->err() != RdKafka::ERR_NO_ERROR) continue;
    crm::v1::EventEnvelope e;
    if (!e.ParseFromArray(m->payload(), static_cast<int>(m->len()))) continue;
    ++seen[e.event_id()];
    if (++total == want) stop = absl::Now() + absl::Seconds(1);
  }
  consumer->close();
  return seen;
}

// A store and a broker, and a relay between them once StartRelay() ran.
class OutboxRelayTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(cluster_.ok());
    auto store = EventStore::Open(dir_.Sub("db"), {});
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
  }
  void TearDown() override {
    if (relay_) relay_->Stop(absl::Seconds(1));
  }
  RelayOptions Options() const {
    RelayOptions options;
    options.brokers = cluster_.bootstrap();
    options.topic = kTopic;
    return options;
  }
  // One event on a stream of its own, with `id` as its event id.
  absl::Status Append(const std::string& id) { return AppendTo(absl::StrCat("s-", id), id); }
  absl::Status AppendTo(const std::string& stream, const std::string& id) {
    return store_->Append(EventOn(stream, id)).status();
  }
  static AppendRequest EventOn(const std::string& stream, const std::string& id) {
    AppendRequest r;
    r.stream = stream;
    crm::v1::EventEnvelope e;
    e.set_event_id(id);
    e.set_customer_id(absl::StrCat("cus-", id));
    e.set_type("Tested");
    r.events.push_back(e);
    return r;
  }
  // Whether the outbox emptied within `within`.
  bool Drained(absl::Duration within) {
    const absl::Time deadline = absl::Now() + within;
    while (store_->OutboxSize() > 0 && absl::Now() < deadline) {
      absl::SleepFor(absl::Milliseconds(20));
    }
    return store_->OutboxSize() == 0;
  }
  void StartRelay(RelayOptions options) {
    relay_ = std::make_unique<OutboxRelay>(*store_, std::move(options));
    ASSERT_TRUE(relay_->Start().ok());
  }

  MockCluster cluster_;
  crm::testing::TempDir dir_;
  std::unique_ptr<EventStore> store_;
  std::unique_ptr<OutboxRelay> relay_;
};

TEST_F(OutboxRelayTest, ConcurrentAppendsArePublishedExactlyOnceAndTheOutboxDrains) {
  RelayOptions options = Options();
  // Small, so the relay reads the outbox many times while appends race.
  options.max_in_flight = 64;
  StartRelay(options);

  // The first event lets the relay settle its empty-topic check.
  ASSERT_TRUE(Append("warm-up").ok());
  const absl::Time settle = absl::Now() + absl::Seconds(20);
  while (relay_->published() < 1 && absl::Now() < settle) absl::SleepFor(absl::Milliseconds(10));
  ASSERT_EQ(relay_->published(), 1u);

  constexpr int kWriters = 8;
  constexpr int kEach = 400;
  std::vector<std::thread> writers;
  std::atomic<int> failed{0};
  for (int w = 0; w < kWriters; ++w) {
    writers.emplace_back([&, w] {
      for (int i = 0; i < kEach; ++i) {
        if (!Append(absl::StrCat("w", w, "-", i)).ok()) failed.fetch_add(1);
      }
    });
  }
  for (auto& t : writers) t.join();
  ASSERT_EQ(failed.load(), 0);
  constexpr size_t kTotal = 1 + kWriters * kEach;
  const absl::Time drain = absl::Now() + absl::Seconds(30);
  while (store_->OutboxSize() > 0 && absl::Now() < drain) absl::SleepFor(absl::Milliseconds(20));
  EXPECT_EQ(store_->OutboxSize(), 0u);
  EXPECT_EQ(relay_->published(), kTotal);
  auto left = store_->ReadOutbox(0, 10);
  ASSERT_TRUE(left.ok());
  EXPECT_TRUE(left->empty());

  const auto seen = ReadTopic(cluster_.bootstrap(), kTotal);
  EXPECT_EQ(seen.size(), kTotal);
  for (const auto& [id, count] : seen) EXPECT_EQ(count, 1) << id;
}

// Operators tell the relay from the request handlers in top -H and perf.
TEST_F(OutboxRelayTest, TheRelayRunsOnAThreadNamedForIt) {
  EXPECT_EQ(ThreadsNamed("crm-relay"), 0);
  StartRelay(Options());
  const absl::Time deadline = absl::Now() + absl::Seconds(5);
  while (ThreadsNamed("crm-relay") == 0 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  EXPECT_EQ(ThreadsNamed("crm-relay"), 1);
  relay_.reset();
  // A joined thread can stay listed for a moment.
  const absl::Time gone = absl::Now() + absl::Seconds(5);
  while (ThreadsNamed("crm-relay") > 0 && absl::Now() < gone) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  EXPECT_EQ(ThreadsNamed("crm-relay"), 0);
}

// A store outlives its relay (a relay stopped for a restart of its own):
// appends go on, and a new relay is woken by them.
TEST_F(OutboxRelayTest, AStoreOutlivingItsRelayAppendsOnAndWakesTheNextOne) {
  StartRelay(Options());
  ASSERT_TRUE(Append("before").ok());
  ASSERT_TRUE(Drained(absl::Seconds(30)));
  relay_.reset();
  ASSERT_TRUE(Append("between").ok());
  EXPECT_EQ(store_->OutboxSize(), 1u);
  StartRelay(Options());
  ASSERT_TRUE(Append("after").ok());
  EXPECT_TRUE(Drained(absl::Seconds(30)));
}

// Compression is the operator's choice (--kafka-compression): a compressed
// topic reads like a plain one, and a codec librdkafka lacks stops Start.
TEST_F(OutboxRelayTest, EventsAreReadBackWithTheChosenCompression) {
  RelayOptions options = Options();
  options.compression = "lz4";
  StartRelay(options);
  constexpr int kEvents = 30;
  for (int i = 0; i < kEvents; ++i) ASSERT_TRUE(Append(absl::StrCat("z", i)).ok());
  const auto seen = ReadTopic(cluster_.bootstrap(), kEvents);
  EXPECT_EQ(seen.size(), static_cast<size_t>(kEvents));
  for (int i = 0; i < kEvents; ++i) EXPECT_EQ(seen.contains(absl::StrCat("z", i)), true) << i;

  RelayOptions unknown = Options();
  unknown.compression = "brotli";
  OutboxRelay relay(*store_, unknown);
  EXPECT_FALSE(relay.Start().ok());
}

// The outbox is the log past a stored cursor: a relay started again after
// a restart goes on from there instead of publishing the log once more.
TEST_F(OutboxRelayTest, ARestartedRelayGoesOnFromTheStoredCursor) {
  StartRelay(Options());
  constexpr int kFirst = 50;
  for (int i = 0; i < kFirst; ++i) ASSERT_TRUE(Append(absl::StrCat("a", i)).ok());
  ASSERT_TRUE(Drained(absl::Seconds(30)));
  relay_->Stop();
  relay_.reset();

  store_.reset();
  auto reopened = EventStore::Open(dir_.Sub("db"), {});
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  store_ = std::move(*reopened);
  EXPECT_EQ(store_->OutboxSize(), 0u);
  EXPECT_TRUE(store_->ReadOutbox(0, 10)->empty());

  StartRelay(Options());
  ASSERT_TRUE(Append("b0").ok());
  ASSERT_TRUE(Drained(absl::Seconds(30)));
  absl::SleepFor(absl::Milliseconds(300));  // time enough to publish more, wrongly
  EXPECT_EQ(relay_->published(), 1u);
  const auto seen = ReadTopic(cluster_.bootstrap(), kFirst + 1);
  EXPECT_EQ(seen.size(), static_cast<size_t>(kFirst + 1));
  for (const auto& [id, count] : seen) EXPECT_EQ(count, 1) << id;
}

// A fatal error ends an idempotent producer for good (it lost its sequence);
// the relay makes a new one and sends on from the cursor, so the outbox
// drains and nothing appended before, during or after is missing.
TEST_F(OutboxRelayTest, AFatalProducerErrorIsFollowedByANewProducer) {
  StartRelay(Options());
  constexpr int kBefore = 20;
  for (int i = 0; i < kBefore; ++i) ASSERT_TRUE(Append(absl::StrCat("before", i)).ok());
  ASSERT_TRUE(Drained(absl::Seconds(30)));
  EXPECT_EQ(relay_->producer_restarts(), 0u);

  // A broker that answers nothing for ten minutes keeps these in flight,
  // however slowly they are appended, when the producer fails: the new
  // producer must send them again. Its answers are due at once again before
  // the failure; the old producer's requests already sent stay unanswered
  // and its five in flight leave it nothing more to send.
  cluster_.SetRtt(600'000);
  constexpr int kDuring = 200;
  constexpr int kAfter = 50;
  for (int i = 0; i < kDuring; ++i) ASSERT_TRUE(Append(absl::StrCat("during", i)).ok());
  absl::SleepFor(absl::Milliseconds(100));
  ASSERT_EQ(relay_->published(), static_cast<uint64_t>(kBefore));
  cluster_.SetRtt(0);
  relay_->FailProducerForTesting();
  for (int i = 0; i < kAfter; ++i) ASSERT_TRUE(Append(absl::StrCat("after", i)).ok());
  EXPECT_TRUE(Drained(absl::Seconds(30)));
  EXPECT_EQ(relay_->producer_restarts(), 1u);

  constexpr size_t kTotal = kBefore + kDuring + kAfter;
  const auto seen = ReadTopic(cluster_.bootstrap(), kTotal);
  EXPECT_EQ(seen.size(), kTotal);
  // Delivered before the failure and past the cursor: not sent again.
  for (int i = 0; i < kBefore; ++i) {
    const auto it = seen.find(absl::StrCat("before", i));
    ASSERT_NE(it, seen.end()) << i;
    EXPECT_EQ(it->second, 1) << i;
  }
}

// Reads cut by the byte bound go on where they stopped: every event is
// published once and the outbox drains.
TEST_F(OutboxRelayTest, ReadsCutByTheByteBoundMissNothing) {
  for (int i = 0; i < 50; ++i) ASSERT_TRUE(Append(absl::StrCat("cut-", i)).ok());
  RelayOptions options = Options();
  options.max_read_bytes = 1;  // one event per read
  StartRelay(options);
  relay_->Notify();
  ASSERT_TRUE(Drained(absl::Seconds(20)));
  const auto seen = ReadTopic(cluster_.bootstrap(), 50);
  EXPECT_EQ(seen.size(), 50u);
  for (const auto& [id, n] : seen) EXPECT_EQ(n, 1) << id;
}

// While librdkafka's queue is full (a broker that stopped answering) the
// relay waits for reports instead of reading the outbox again every pass.
TEST_F(OutboxRelayTest, AFullProducerQueueIsNotReadIntoAgainAndAgain) {
  RelayOptions options = Options();
  options.extra_settings = {{"queue.buffering.max.messages", "10"}};
  StartRelay(options);
  ASSERT_TRUE(Append("first").ok());
  relay_->Notify();
  ASSERT_TRUE(Drained(absl::Seconds(10)));
  cluster_.SetRtt(1000);
  // One write: the relay meets the whole backlog at once, however slow the
  // disk (a report that frees room lets it read again).
  std::vector<AppendRequest> backlog;
  for (int i = 0; i < 500; ++i) {
    backlog.push_back(EventOn(absl::StrCat("s-slow-", i), absl::StrCat("slow-", i)));
  }
  ASSERT_TRUE(store_->AppendBatch(std::move(backlog)).ok());
  relay_->Notify();
  absl::SleepFor(absl::Milliseconds(500));
  EXPECT_LT(relay_->entries_read(), 2000u);
  cluster_.SetRtt(0);
  EXPECT_TRUE(Drained(absl::Seconds(30)));
}

// A broker outage with large events: librdkafka holds a bounded number of
// bytes, the rest wait in the outbox.
TEST_F(OutboxRelayTest, WhatIsInFlightIsBoundedInBytes) {
  RelayOptions options = Options();
  options.max_in_flight_bytes = 4 << 20;
  StartRelay(options);
  ASSERT_TRUE(Append("first").ok());
  relay_->Notify();
  ASSERT_TRUE(Drained(absl::Seconds(10)));
  cluster_.SetBrokerDown(true);
  std::vector<AppendRequest> large;
  for (int i = 0; i < 40; ++i) {
    large.push_back(EventOn(absl::StrCat("s-large-", i), absl::StrCat("large-", i)));
    large.back().events[0].set_correlation_id(std::string(800'000, 'x'));
  }
  ASSERT_TRUE(store_->AppendBatch(std::move(large)).ok());
  relay_->Notify();
  for (const absl::Time until = absl::Now() + absl::Seconds(10);
       relay_->in_flight() == 0 && absl::Now() < until;) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  ASSERT_GT(relay_->in_flight(), 0u);
  // Room for more to be taken, had the bound not held.
  absl::SleepFor(absl::Milliseconds(500));
  EXPECT_LE(relay_->in_flight(), 6u) << "about 4 MiB of 800 KB events";
  cluster_.SetBrokerDown(false);
  EXPECT_TRUE(Drained(absl::Seconds(60)));
}

TEST_F(OutboxRelayTest, AuditStreamsGoToTheAuditTopicOnly) {
  RelayOptions options = Options();
  options.audit_topic = kAuditTestTopic;
  StartRelay(options);
  for (int i = 0; i < 10; ++i) {
    ASSERT_TRUE(AppendTo(absl::StrCat(i % 2 == 0 ? "audit-" : "lead-", i),
                         absl::StrCat(i % 2 == 0 ? "audit" : "domain", i))
                    .ok());
  }
  const auto domain = ReadTopic(cluster_.bootstrap(), 5, kTopic);
  const auto audit = ReadTopic(cluster_.bootstrap(), 5, kAuditTestTopic);
  EXPECT_EQ(domain.size(), 5u);
  EXPECT_EQ(audit.size(), 5u);
  for (const auto& [id, count] : domain) EXPECT_TRUE(absl::StartsWith(id, "domain")) << id;
  for (const auto& [id, count] : audit) EXPECT_TRUE(absl::StartsWith(id, "audit")) << id;
}

// A key record is keyed by its stream (compaction keeps a key's last
// record), and the CloudEvents partition key says so; domain events are
// keyed by customer.
TEST_F(OutboxRelayTest, TheMessageKeyAndCePartitionkeyAgree) {
  RelayOptions options = Options();
  options.keys_topic = kKeysTestTopic;
  StartRelay(options);
  ASSERT_TRUE(AppendTo(absl::StrCat(pii::kKeyStreamPrefix, "k1"), "key1").ok());
  ASSERT_TRUE(AppendTo("lead-1", "domain1").ok());
  auto keyed = [&](const std::string& topic) {
    std::pair<std::string, std::string> key_and_header;
    auto conf = MakeKafkaConf({{"bootstrap.servers", cluster_.bootstrap()},
                               {"group.id", "relay-test-keys-" + topic},
                               {"auto.offset.reset", "earliest"}});
    EXPECT_TRUE(conf.ok()) << conf.status();
    if (!conf.ok()) return key_and_header;
    std::string err;
    std::unique_ptr<RdKafka::KafkaConsumer> consumer(
        RdKafka::KafkaConsumer::create(conf->get(), err));
    EXPECT_NE(consumer, nullptr) << err;
    if (consumer == nullptr) return key_and_header;
    consumer->subscribe({topic});
    for (const absl::Time deadline = absl::Now() + absl::Seconds(30); absl::Now() < deadline;) {
      std::unique_ptr<RdKafka::Message> m(consumer->consume(100));
      if (m->err() != RdKafka::ERR_NO_ERROR) continue;
      key_and_header = {m->key() != nullptr ? *m->key() : "", HeaderValue(*m, "ce_partitionkey")};
      break;
    }
    consumer->close();
    return key_and_header;
  };
  const std::string key_stream = absl::StrCat(pii::kKeyStreamPrefix, "k1");
  EXPECT_EQ(keyed(kKeysTestTopic), std::make_pair(key_stream, key_stream));
  EXPECT_EQ(keyed(kTopic), std::make_pair(std::string("cus-domain1"), std::string("cus-domain1")));
}

// A log of refusals only leaves the domain topic empty for good: a restart
// must not take that for a new broker and publish the refusals again.
TEST_F(OutboxRelayTest, ALogOfRefusalsOnlyIsNotRepublishedAtEachStart) {
  RelayOptions options = Options();
  options.audit_topic = kAuditTestTopic;
  StartRelay(options);
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(AppendTo(absl::StrCat("audit-", i), absl::StrCat("audit", i)).ok());
  }
  ASSERT_TRUE(Drained(absl::Seconds(20)));
  relay_->Stop();
  StartRelay(options);
  // The relay publishes only once its refill check has run: an event
  // published after the restart shows the check is behind it.
  ASSERT_TRUE(AppendTo("audit-5", "audit5").ok());
  ASSERT_TRUE(Drained(absl::Seconds(20)));
  EXPECT_EQ(relay_->republished(), 0u);
  EXPECT_EQ(store_->OutboxSize(), 0u);
  // Once the log holds a domain event, an empty domain topic is a new broker.
  EXPECT_TRUE(store_->LogHasStream([](absl::string_view s) { return s == "audit-3"; }).value());
  EXPECT_FALSE(store_->LogHasStream([](absl::string_view s) { return s == "lead-1"; }).value());
}

// The relay publishes nothing until it can tell whether its topic is
// empty; when it cannot (here: Describe is refused), it says why instead
// of only letting the outbox grow, and goes on once it can.
TEST_F(OutboxRelayTest, ARelayThatCannotCheckItsTopicSaysWhyAndGoesOnWhenItCan) {
  cluster_.SetTopicError(kTopic, RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED);
  ASSERT_TRUE(Append("e1").ok());
  ::testing::internal::CaptureStderr();
  StartRelay(Options());
  absl::SleepFor(absl::Seconds(3));
  const std::string logged = ::testing::internal::GetCapturedStderr();
  EXPECT_THAT(logged, ::testing::HasSubstr("relay waits: cannot tell whether the topic is empty"));
  EXPECT_THAT(logged, ::testing::HasSubstr(kTopic));
  EXPECT_EQ(store_->OutboxSize(), 1u);
  cluster_.SetTopicError(kTopic, RD_KAFKA_RESP_ERR_NO_ERROR);
  EXPECT_TRUE(Drained(absl::Seconds(20)));
}

}  // namespace
}  // namespace crm
