// Durable-append and projection figures, with the raw limits of this
// machine measured in the same run:
//   raw RocksDB synced writes/s (one writer) vs EventStore appends/s with one
//   and with 64 concurrent writers (group commit);
//   projection apply events/s; 360 read p50/p99 for a 1,000-event customer;
//   librdkafka produce and raw consume msgs/s on the embedded broker vs
//   rebuild (consume + apply) events/s.
#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "bench/figures.h"
#include "crm/v1/leads.pb.h"
#include "librdkafka/rdkafka.h"
#include "librdkafka/rdkafka_mock.h"
#include "libs/common/envelope.h"
#include "libs/common/event_store.h"
#include "libs/common/ids.h"
#include "libs/common/kafka.h"
#include "libs/common/pii/key_vault.h"
#include "libs/common/runtime.h"
#include "libs/common/subscriber.h"
#include "libs/common/testing/temp_dir.h"
#include "services/analytics/store/view_store.h"

namespace crm::bench {
namespace {

crm::v1::EventEnvelope LeadEvent(const std::string& customer, int n, absl::Time at) {
  crm::v1::LeadCaptured lead;
  lead.set_lead_id(absl::StrCat("lead_", n));
  lead.set_customer_id(customer);
  lead.set_channel(crm::v1::LEAD_CHANNEL_WEB_FORM);
  lead.mutable_contact()->set_email(absl::StrCat("person", n, "@example.com"));
  lead.mutable_contact()->set_first_name("Bench");
  lead.set_company("Example Ltd");
  EventContext ctx{"crm/leads", "bench", "corr", "cause", at};
  auto e = MakeEnvelope(lead, customer, ctx);
  e.set_stream(absl::StrCat("lead-", n));
  e.set_stream_version(1);
  return e;
}

void SyncedAppends() {
  crm::testing::TempDir dir;
  auto store = std::move(*EventStore::Open(dir.Sub("db"), {}));
  // Raw limit: one synced RocksDB write after another.
  {
    rocksdb::WriteOptions wo;
    wo.sync = true;
    const int n = 2000;
    const absl::Time start = absl::Now();
    for (int i = 0; i < n; ++i) {
      // A failed write is no write: counted, it would inflate the limit.
      if (auto s = store->db().raw()->Put(wo, absl::StrCat("raw", i), std::string(300, 'x'));
          !s.ok()) {
        std::fprintf(stderr, "synced write failed: %s\n", s.ToString().c_str());
        std::abort();
      }
    }
    Figure("rocksdb synced writes (1 writer)", PerSecond(n, absl::Now() - start), "writes/s");
  }
  auto run = [&](int writers, int per_writer, const std::string& label) {
    std::atomic<int> next{0};
    std::vector<std::thread> threads;
    const absl::Time start = absl::Now();
    for (int w = 0; w < writers; ++w) {
      threads.emplace_back([&, w] {
        for (int i = 0; i < per_writer; ++i) {
          const int n = next.fetch_add(1);
          AppendRequest req;
          req.stream = absl::StrCat(label, "-", n);
          req.events.push_back(LeadEvent(absl::StrCat("cus_", n), n, absl::Now()));
          req.state = std::string(200, 's');
          req.request_key = absl::StrCat(label, "/", n);
          if (!store->Append(std::move(req)).ok()) std::abort();
        }
      });
    }
    for (auto& t : threads) t.join();
    Figure(absl::StrCat("event store appends, synced (", writers, " writers)"),
           PerSecond(writers * per_writer, absl::Now() - start), "appends/s");
  };
  run(1, 2000, "one");
  run(64, 200, "many");
}

void ProjectionAndReads() {
  crm::testing::TempDir dir;
  auto db = std::move(*Database::Open(dir.Sub("views"), analytics::ViewFamilies(),
                                      analytics::ViewDatabaseOptions()));
  analytics::Customer360Projection projection;
  Subscriber applier(*db, projection, {});
  const int total = 200000;
  constexpr int kRead = 20;  // customers whose 360 is read
  const absl::Time base = absl::FromUnixSeconds(1700000000);
  // Messages as the consumer hands them over, made before the clock starts.
  std::vector<std::vector<ConsumedMessage>> batches(1);
  for (int n = 0; n < total; ++n) {
    // Twenty customers get 1,000 events each; the rest spread over 50,000.
    const std::string customer =
        n < kRead * 1000 ? absl::StrCat("cus_read_", n % kRead) : absl::StrCat("cus_", n % 50000);
    if (batches.back().size() == 5000) batches.emplace_back();
    batches.back().push_back({kLeadsTopic, n % 6, n,
                              LeadEvent(customer, n, base + absl::Seconds(n)).SerializeAsString()});
  }
  const absl::Time start = absl::Now();
  const double cpu_start = ProcessCpuSeconds();
  for (const auto& batch : batches) {
    if (!applier.ApplyBatch(batch).ok()) std::abort();
  }
  Figure("projection apply (in process)", PerSecond(total, absl::Now() - start), "events/s");
  Figure("projection apply, CPU per event", 1e6 * (ProcessCpuSeconds() - cpu_start) / total, "us");

  // Read from table files, as a service that has run a while reads most
  // customers, not from the memtables the events were just written to; one
  // customer after another, not the same one over and over.
  if (!db->Flush().ok()) std::abort();
  analytics::ViewStore views(*db);
  std::vector<absl::Duration> samples;
  for (int i = 0; i < 20000; ++i) {
    const std::string customer = absl::StrCat("cus_read_", i % kRead);
    const absl::Time t0 = absl::Now();
    auto view = views.GetCustomer360(customer, 50, "");
    samples.push_back(absl::Now() - t0);
    if (!view.ok() || view->event_count() != 1000) std::abort();
  }
  Figure("360 read p50 (1,000-event customer, in process)", QuantileMicros(samples, 0.5), "us");
  Figure("360 read p99 (1,000-event customer, in process)", QuantileMicros(samples, 0.99), "us");
}

void KafkaRebuild() {
  // The embedded broker in this process: the same mock cluster crm-broker runs.
  std::string err;
  auto conf = std::move(*MakeKafkaConf({{"test.mock.num.brokers", "1"}}));
  std::unique_ptr<RdKafka::Producer> holder(RdKafka::Producer::create(conf.get(), err));
  rd_kafka_mock_cluster_t* cluster = rd_kafka_handle_mock_cluster(holder->c_ptr());
  // The embedded broker keeps only the newest 5 MiB of each partition
  // (librdkafka's mock cluster drops older message sets): enough
  // partitions that all 200,000 events (about 60 MB) stay on the topic.
  constexpr int kPartitions = 48;
  rd_kafka_mock_topic_create(cluster, kLeadsTopic, kPartitions, 1);
  const std::string brokers = rd_kafka_mock_cluster_bootstraps(cluster);

  const int total = 200000;
  auto pconf = std::move(*MakeKafkaConf({{"bootstrap.servers", brokers},
                                         {"enable.idempotence", "true"},
                                         {"acks", "all"},
                                         {"linger.ms", "5"},
                                         {"queue.buffering.max.messages", "500000"}}));
  // Counts what the broker acknowledged: a figure must not count messages
  // librdkafka accepted and then failed to deliver.
  struct Delivered final : RdKafka::DeliveryReportCb {
    void dr_cb(RdKafka::Message& m) override {
      if (m.err() == RdKafka::ERR_NO_ERROR) {
        ++ok;
      } else if (failed++ == 0) {
        std::fprintf(stderr, "delivery failed: %s\n", m.errstr().c_str());
      }
    }
    int64_t ok = 0;
    int64_t failed = 0;
  } delivered;
  pconf->set("dr_cb", &delivered, err);
  std::unique_ptr<RdKafka::Producer> producer(RdKafka::Producer::create(pconf.get(), err));
  const absl::Time base = absl::FromUnixSeconds(1700000000);
  std::vector<std::string> values;
  values.reserve(total);
  for (int n = 0; n < total; ++n) {
    values.push_back(
        LeadEvent(absl::StrCat("cus_", n % 50000), n, base + absl::Seconds(n)).SerializeAsString());
  }
  absl::Time start = absl::Now();
  for (int n = 0; n < total; ++n) {
    const std::string key = absl::StrCat("cus_", n % 50000);
    while (producer->produce(kLeadsTopic, RdKafka::Topic::PARTITION_UA,
                             RdKafka::Producer::RK_MSG_COPY, values[n].data(), values[n].size(),
                             key.data(), key.size(), 0, nullptr) == RdKafka::ERR__QUEUE_FULL) {
      producer->poll(10);
    }
  }
  producer->flush(60000);
  if (delivered.ok != total) {
    std::fprintf(stderr, "produced %lld of %d (%lld failed)\n",
                 static_cast<long long>(delivered.ok), total,
                 static_cast<long long>(delivered.failed));
    std::abort();
  }
  Figure("librdkafka produce (embedded broker)", PerSecond(total, absl::Now() - start), "msgs/s");

  auto consume_all = [&](const std::function<void(RdKafka::Message&)>& on_message) {
    auto cconf = std::move(*MakeKafkaConf({{"bootstrap.servers", brokers},
                                           {"group.id", "bench"},
                                           {"enable.partition.eof", "true"},
                                           {"enable.auto.commit", "false"}}));
    std::unique_ptr<RdKafka::KafkaConsumer> consumer(
        RdKafka::KafkaConsumer::create(cconf.get(), err));
    std::vector<RdKafka::TopicPartition*> parts;
    for (int p = 0; p < kPartitions; ++p) {
      parts.push_back(
          RdKafka::TopicPartition::create(kLeadsTopic, p, RdKafka::Topic::OFFSET_BEGINNING));
    }
    consumer->assign(parts);
    RdKafka::TopicPartition::destroy(parts);
    int eof = 0;
    // A broker that stops answering must fail the bench, not hang it.
    const absl::Time give_up = absl::Now() + absl::Minutes(2);
    while (eof < kPartitions) {
      if (absl::Now() > give_up) {
        std::fprintf(stderr, "raw consume stalled: %d of %d partitions at their end\n", eof,
                     kPartitions);
        std::abort();
      }
      std::unique_ptr<RdKafka::Message> m(consumer->consume(1000));
      if (m->err() == RdKafka::ERR__PARTITION_EOF) {
        ++eof;
      } else if (m->err() == RdKafka::ERR_NO_ERROR) {
        on_message(*m);
      }
    }
    const absl::Time end = absl::Now();
    consumer->close();
    return end;
  };

  // Timed from the first message, as the rebuild is from its first batch:
  // connecting and the first fetch are start-up on both sides.
  int64_t raw = 0;
  absl::Time raw_first;
  const absl::Time raw_end = consume_all([&](RdKafka::Message&) {
    if (raw++ == 0) raw_first = absl::Now();
  });
  const double raw_rate = PerSecond(static_cast<double>(raw - 1), raw_end - raw_first);
  if (raw != total) {
    std::fprintf(stderr, "consumed %lld of the %d events produced\n", static_cast<long long>(raw),
                 total);
    std::abort();
  }
  Figure("librdkafka consume, raw (embedded broker)", raw_rate, "msgs/s");

  // The analytics subscriber itself, as a rebuild runs it (consumer group,
  // batches of up to 5,000, offsets committed with the views).
  crm::testing::TempDir dir;
  auto db = std::move(*Database::Open(dir.Sub("rebuild"), analytics::ViewFamilies(),
                                      analytics::ViewDatabaseOptions()));
  analytics::Customer360Projection projection;
  SubscriberOptions options;
  options.brokers = brokers;
  options.group_id = "bench-rebuild";
  options.topics = {kLeadsTopic};
  options.pipelined_commit = true;  // as crm-analytics runs it
  Subscriber subscriber(*db, projection, options);
  if (!subscriber.Start().ok()) std::abort();
  auto done = [&] { return static_cast<int64_t>(subscriber.applied() + subscriber.skipped()); };
  // Waits until `reached`, polling every millisecond; a rebuild that gets
  // nowhere for 2 minutes aborts the bench rather than hang it.
  auto await = [&](const std::function<bool()>& reached, const char* what) {
    for (const absl::Time give_up = absl::Now() + absl::Minutes(2); !reached();) {
      if (absl::Now() > give_up) {
        std::fprintf(stderr, "rebuild %s: applied %llu skipped %llu poisoned %llu lag %lld\n", what,
                     static_cast<unsigned long long>(subscriber.applied()),
                     static_cast<unsigned long long>(subscriber.skipped()),
                     static_cast<unsigned long long>(subscriber.poisoned()),
                     static_cast<long long>(subscriber.lag()));
        std::abort();
      }
      absl::SleepFor(absl::Milliseconds(1));
    }
  };
  // Joining the consumer group takes seconds on the embedded broker and is
  // start-up, not throughput: the clock starts when the first batch lands.
  await([&] { return done() > 0; }, "never started");
  const absl::Time first = absl::Now();
  const double cpu_first = ProcessCpuSeconds();
  const int64_t at_first = done();
  await([&] { return done() >= total; }, "stalled");
  const absl::Duration rebuild_time = absl::Now() - first;
  const double rebuild_cpu = ProcessCpuSeconds() - cpu_first;
  subscriber.Stop();
  const double rebuild_rate = PerSecond(static_cast<double>(total - at_first), rebuild_time);

  Figure("rebuild analytics from Kafka", rebuild_rate, "events/s");
  // Broker, consumer, apply and RocksDB threads: this process holds them all.
  Figure("rebuild, CPU per event (all threads)",
         1e6 * rebuild_cpu / static_cast<double>(total - at_first), "us");
  Figure("rebuild / raw consume", 100.0 * rebuild_rate / raw_rate, "%");
}

// Resident and peak memory of this process, from /proc/self/status.
double StatusKiB(const std::string& field) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(field + ":", 0) == 0) return std::atof(line.c_str() + field.size() + 1);
  }
  return 0;
}

// Memory must not grow with the log: 1M events (a lead's worth of rows
// each: event, log position, state, index row) through the store, and the RSS
// after them. Batched appends, so the figure comes in seconds.
void MemoryAtOneMillionEvents() {
  crm::testing::TempDir dir;
  auto store = std::move(*EventStore::Open(dir.Sub("db"), {"index"}));
  const double before = StatusKiB("VmRSS");
  constexpr int kEvents = 1'000'000;
  constexpr int kBatch = 1000;
  const absl::Time start = absl::Now();
  for (int first = 0; first < kEvents; first += kBatch) {
    std::vector<AppendRequest> batch;
    batch.reserve(kBatch);
    for (int n = first; n < first + kBatch; ++n) {
      AppendRequest req;
      req.stream = absl::StrCat("lead-", n);
      req.events.push_back(LeadEvent(absl::StrCat("cus_", n), n, absl::Now()));
      req.state = std::string(200, 's');
      req.projection_writes.push_back({"index", absl::StrCat("email/", n), req.stream});
      batch.push_back(std::move(req));
    }
    if (!store->AppendBatch(std::move(batch)).ok()) std::abort();
    // The relay's part: the outbox cursor moves past delivered entries.
    if (!store->MarkRelayed(first + kBatch + 1).ok()) std::abort();
  }
  Figure("event store, 1M events appended (batched)", PerSecond(kEvents, absl::Now() - start),
         "events/s");
  Figure("event store RSS before 1M events", before / 1024, "MiB");
  Figure("event store RSS after 1M events", StatusKiB("VmRSS") / 1024, "MiB");
  Figure("event store peak RSS over 1M events", StatusKiB("VmHWM") / 1024, "MiB");
}

// Issues a key for each of `count` new customers, appended a batch at a
// time as an import does.
void IssueKeys(pii::KeyVault& vault, EventStore& store, int count) {
  constexpr int kBatch = 1000;
  EventContext ctx{"crm/bench", "bench", "corr", "cause", absl::Now()};
  for (int first = 0; first < count; first += kBatch) {
    std::vector<AppendRequest> issues;
    std::vector<std::pair<std::string, pii::DataKey>> keys;
    for (int n = first; n < std::min(count, first + kBatch); ++n) {
      std::string customer = absl::StrCat("cus_", n);
      pii::KeyVault::Sealing sealing = *vault.KeyFor(customer, ctx);
      issues.push_back(std::move(*sealing.issue));
      keys.emplace_back(std::move(customer), std::move(sealing.key));
    }
    if (!store.AppendBatch(std::move(issues)).ok()) std::abort();
    for (const auto& [customer, key] : keys) vault.Issued(customer, key);
  }
}

// Personal-data keys: one per customer, in every service that seals or
// reads that customer's data. The RSS they add and the time to open the
// vault again must not grow with the customer base.
void KeyVaultAtOneMillionCustomers() {
  crm::testing::TempDir dir;
  auto store = std::move(*EventStore::Open(dir.Sub("db"), {pii::KeyVault::kFamily}));
  const pii::Key master = pii::RandomKey();
  auto vault = std::move(*pii::KeyVault::Open(store->db(), store.get(), master, "crm/bench"));
  const double before = StatusKiB("VmRSS");
  constexpr int kCustomers = 1'000'000;
  const absl::Time start = absl::Now();
  IssueKeys(*vault, *store, kCustomers);
  Figure("key vault, 1M customers' keys issued (batched)",
         PerSecond(kCustomers, absl::Now() - start), "keys/s");
  Figure("key vault RSS added by 1M customers' keys", (StatusKiB("VmRSS") - before) / 1024, "MiB");
  vault.reset();
  const absl::Time reopen = absl::Now();
  vault = std::move(*pii::KeyVault::Open(store->db(), store.get(), master, "crm/bench"));
  Figure("key vault open with 1M customers' keys", absl::ToDoubleMilliseconds(absl::Now() - reopen),
         "ms");
}

// Master key rotation: the first start with a new master key re-wraps
// every key of the service (a new record on each key's stream), and the
// service serves nothing until it is done.
void KeyVaultRotation(int keys) {
  crm::testing::TempDir dir;
  auto store = std::move(*EventStore::Open(dir.Sub("db"), {pii::KeyVault::kFamily}));
  const pii::Key previous = pii::RandomKey();
  {
    auto vault = std::move(*pii::KeyVault::Open(store->db(), store.get(), previous, "crm/bench"));
    IssueKeys(*vault, *store, keys);
  }
  const absl::Time start = absl::Now();
  auto vault = pii::KeyVault::Open(store->db(), store.get(),
                                   pii::MasterKeys(pii::RandomKey(), {previous}), "crm/bench");
  const absl::Duration took = absl::Now() - start;
  // Every key, and the blind index key.
  if (!vault.ok() || (*vault)->rewrapped() != keys + 1) std::abort();
  Figure(absl::StrCat("key vault, start re-wrapping ", keys, " own keys"),
         absl::ToDoubleSeconds(took), "s");
  Figure("key vault, keys re-wrapped per second at start", PerSecond(keys, took), "keys/s");
}

}  // namespace
}  // namespace crm::bench

// With no argument every part runs; otherwise only the named ones
// (appends, projection, kafka, memory, vault, rotation).
int main(int argc, char** argv) {
  crm::UseReleaseRuntime();
  auto wanted = [&](const char* part) {
    if (argc < 2) return true;
    for (int i = 1; i < argc; ++i) {
      if (std::string(argv[i]) == part) return true;
    }
    return false;
  };
  if (wanted("appends")) crm::bench::SyncedAppends();
  if (wanted("projection")) crm::bench::ProjectionAndReads();
  if (wanted("kafka")) crm::bench::KafkaRebuild();
  if (wanted("memory")) crm::bench::MemoryAtOneMillionEvents();
  if (wanted("vault")) crm::bench::KeyVaultAtOneMillionCustomers();
  if (wanted("rotation")) crm::bench::KeyVaultRotation(100'000);
  return 0;
}
