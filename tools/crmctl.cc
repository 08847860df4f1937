// crmctl: the operations CLI.
//
//   crmctl rebuild analytics --data-dir=DIR [--brokers=…]  rebuild the 360 views from the topics
//   crmctl digest analytics --data-dir=DIR                 fingerprint of the views (rebuild check)
//   crmctl tail TOPIC [--from-beginning] [--count=N]       print decoded events as JSON lines
//   crmctl customer CUSTOMER_ID [--analytics=HOST:PORT]    print a customer's 360 view
//   crmctl health HOST:PORT                                grpc.health.v1 check
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "crm/v1/analytics.grpc.pb.h"
#include "google/protobuf/util/json_util.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "libs/common/config.h"
#include "libs/common/kafka.h"
#include "libs/common/status_macros.h"
#include "libs/common/subscriber.h"
#include "services/analytics/store/view_store.h"

namespace {

constexpr char kUsage[] =
    "usage: crmctl COMMAND [flags]\n"
    "  rebuild analytics --data-dir=DIR [--brokers=B]   rebuild the 360 views from the topics\n"
    "  digest analytics --data-dir=DIR                  fingerprint of the views\n"
    "  tail TOPIC [--from-beginning] [--count=N] [--brokers=B]\n"
    "                                                   print decoded events, one JSON per line\n"
    "  customer CUSTOMER_ID [--analytics=HOST:PORT]     print a customer's 360 view\n"
    "  health HOST:PORT                                 grpc.health.v1 check\n"
    "Brokers default to CRM_KAFKA_BROKERS, then .run/broker.addr of ./crm up.\n";

bool HasFlag(int argc, char** argv, const std::string& flag) {
  for (int i = 1; i < argc; ++i) {
    if (argv[i] == flag) return true;
  }
  return false;
}

std::string Brokers(int argc, char** argv) {
  std::string b = crm::Setting(argc, argv, "brokers", "CRM_KAFKA_BROKERS", "");
  if (b.empty()) {
    if (FILE* f = std::fopen(".run/broker.addr", "r"); f != nullptr) {
      char buf[256] = {};
      if (std::fgets(buf, sizeof(buf), f) != nullptr) b = buf;
      std::fclose(f);
      while (!b.empty() && (b.back() == '\n' || b.back() == '\r')) b.pop_back();
    }
  }
  return b;
}

// A consumer without a group that reads partitions from a given position.
absl::StatusOr<std::unique_ptr<RdKafka::KafkaConsumer>> AssignedConsumer(
    const std::string& brokers, const std::vector<std::string>& topics, bool from_beginning,
    int64_t* total) {
  CRM_ASSIGN_OR_RETURN(auto conf, crm::MakeKafkaConf({{"bootstrap.servers", brokers},
                                                      {"group.id", "crmctl"},
                                                      {"enable.auto.commit", "false"},
                                                      {"enable.partition.eof", "true"},
                                                      {"fetch.wait.max.ms", "10"}}));
  std::string err;
  std::unique_ptr<RdKafka::KafkaConsumer> consumer(
      RdKafka::KafkaConsumer::create(conf.get(), err));
  if (!consumer) return absl::UnavailableError(err);
  std::vector<RdKafka::TopicPartition*> parts;
  *total = 0;
  for (const auto& topic : topics) {
    std::unique_ptr<RdKafka::Topic> t(RdKafka::Topic::create(consumer.get(), topic, nullptr, err));
    RdKafka::Metadata* raw = nullptr;
    if (consumer->metadata(false, t.get(), &raw, 5000) != RdKafka::ERR_NO_ERROR) {
      return absl::UnavailableError(absl::StrCat("no metadata for ", topic, " from ", brokers));
    }
    std::unique_ptr<RdKafka::Metadata> md(raw);
    for (const auto* p : *md->topics()->front()->partitions()) {
      int64_t low = 0, high = 0;
      consumer->query_watermark_offsets(topic, p->id(), &low, &high, 5000);
      *total += high - low;
      parts.push_back(RdKafka::TopicPartition::create(
          topic, p->id(), from_beginning ? RdKafka::Topic::OFFSET_BEGINNING : high));
    }
  }
  consumer->assign(parts);
  RdKafka::TopicPartition::destroy(parts);
  return consumer;
}

std::string ToJson(const google::protobuf::Message& m, bool pretty) {
  std::string out;
  google::protobuf::util::JsonPrintOptions o;
  o.add_whitespace = pretty;
  o.preserve_proto_field_names = true;
  if (!google::protobuf::util::MessageToJsonString(m, &out, o).ok()) return "{}";
  return out;
}

void Progress(int64_t done, int64_t total, absl::Duration elapsed) {
  if (!isatty(2)) return;
  const double frac = total > 0 ? static_cast<double>(done) / static_cast<double>(total) : 1.0;
  const int width = 40;
  const int fill = static_cast<int>(frac * width);
  std::fprintf(stderr, "\r[%s%s] %5.1f%%  %lld/%lld events  %.0f/s",
               std::string(fill, '#').c_str(), std::string(width - fill, ' ').c_str(),
               frac * 100, static_cast<long long>(done), static_cast<long long>(total),
               static_cast<double>(done) / std::max(absl::ToDoubleSeconds(elapsed), 1e-9));
}

int Rebuild(int argc, char** argv) {
  const std::string dir = crm::Setting(argc, argv, "data-dir", "CRM_DATA_DIR", "");
  if (dir.empty()) {
    std::fprintf(stderr, "crmctl rebuild: --data-dir is required\n");
    return 2;
  }
  if (std::filesystem::exists(dir) && !std::filesystem::is_empty(dir)) {
    std::fprintf(stderr,
                 "crmctl rebuild: %s is not empty; rebuild into a new dir and point the "
                 "service at it (or remove the old one first)\n",
                 dir.c_str());
    return 2;
  }
  const std::string brokers = Brokers(argc, argv);
  auto db = crm::Database::Open(dir, crm::analytics::ViewFamilies());
  if (!db.ok()) {
    std::fprintf(stderr, "crmctl rebuild: %s\n", db.status().ToString().c_str());
    return 1;
  }
  crm::analytics::Customer360Projection projection;
  crm::Subscriber applier(**db, projection, {});
  int64_t total = 0;
  auto consumer = AssignedConsumer(brokers, crm::AllTopics(), true, &total);
  if (!consumer.ok()) {
    std::fprintf(stderr, "crmctl rebuild: %s\n", consumer.status().ToString().c_str());
    return 1;
  }
  // Partitions still to reach their end; eof is reported once per partition.
  size_t open_partitions = 0;
  std::vector<RdKafka::TopicPartition*> assignment;
  (*consumer)->assignment(assignment);
  open_partitions = assignment.size();
  RdKafka::TopicPartition::destroy(assignment);

  const absl::Time start = absl::Now();
  absl::Time last_progress = start;
  int64_t done = 0;
  std::vector<crm::ConsumedMessage> batch;
  while (open_partitions > 0) {
    std::unique_ptr<RdKafka::Message> msg((*consumer)->consume(200));
    if (msg->err() == RdKafka::ERR__PARTITION_EOF) {
      --open_partitions;
    } else if (msg->err() == RdKafka::ERR_NO_ERROR) {
      batch.push_back({msg->topic_name(), msg->partition(), msg->offset(),
                       std::string(static_cast<const char*>(msg->payload()), msg->len())});
    } else if (msg->err() != RdKafka::ERR__TIMED_OUT) {
      std::fprintf(stderr, "\ncrmctl rebuild: %s\n", msg->errstr().c_str());
      return 1;
    }
    if (batch.size() >= 5000 || (open_partitions == 0 && !batch.empty()) ||
        (msg->err() == RdKafka::ERR__TIMED_OUT && !batch.empty())) {
      if (auto st = applier.ApplyBatch(batch); !st.ok()) {
        std::fprintf(stderr, "\ncrmctl rebuild: %s\n", st.ToString().c_str());
        return 1;
      }
      done += static_cast<int64_t>(batch.size());
      batch.clear();
    }
    if (absl::Now() - last_progress > absl::Milliseconds(200)) {
      Progress(done, total, absl::Now() - start);
      last_progress = absl::Now();
    }
  }
  const absl::Duration elapsed = absl::Now() - start;
  Progress(done, total, elapsed);
  if (isatty(2)) std::fputc('\n', stderr);
  std::printf("rebuilt analytics from %lld events in %.2f s: %.0f events/s (%llu applied, %llu "
              "duplicates skipped, %llu undecodable)\n",
              static_cast<long long>(done), absl::ToDoubleSeconds(elapsed),
              static_cast<double>(done) / std::max(absl::ToDoubleSeconds(elapsed), 1e-9),
              static_cast<unsigned long long>(applier.applied()),
              static_cast<unsigned long long>(applier.skipped()),
              static_cast<unsigned long long>(applier.poisoned()));
  return 0;
}

// FNV-1a over every key and value of the view families: equal digests mean
// byte-identical views. Not a security hash; it only detects differences.
int Digest(int argc, char** argv) {
  const std::string dir = crm::Setting(argc, argv, "data-dir", "CRM_DATA_DIR", "");
  auto db = crm::Database::Open(dir, crm::analytics::ViewFamilies());
  if (dir.empty() || !db.ok()) {
    std::fprintf(stderr, "crmctl digest: cannot open --data-dir '%s'\n", dir.c_str());
    return 2;
  }
  uint64_t h = 1469598103934665603ULL;
  auto mix = [&h](const rocksdb::Slice& s) {
    for (size_t i = 0; i < s.size(); ++i) {
      h ^= static_cast<uint8_t>(s[i]);
      h *= 1099511628211ULL;
    }
    h ^= 0xff;  // separator so "ab"+"c" differs from "a"+"bc"
    h *= 1099511628211ULL;
  };
  uint64_t entries = 0;
  for (const char* family : crm::analytics::ViewDigestFamilies()) {
    auto it = (*db)->NewIterator(family);
    for (it->SeekToFirst(); it->Valid(); it->Next(), ++entries) {
      mix(it->key());
      mix(it->value());
    }
  }
  std::printf("%016llx %llu entries\n", static_cast<unsigned long long>(h),
              static_cast<unsigned long long>(entries));
  return 0;
}

int Tail(int argc, char** argv) {
  if (argc < 3 || argv[2][0] == '-') {
    std::fputs(kUsage, stderr);
    return 2;
  }
  int64_t limit = -1;
  if (const std::string c = crm::Setting(argc, argv, "count", "CRMCTL_COUNT", "");
      !c.empty() && !absl::SimpleAtoi(c, &limit)) {
    std::fprintf(stderr, "crmctl tail: --count must be a number\n");
    return 2;
  }
  int64_t total = 0;
  auto consumer =
      AssignedConsumer(Brokers(argc, argv), {argv[2]}, HasFlag(argc, argv, "--from-beginning"),
                       &total);
  if (!consumer.ok()) {
    std::fprintf(stderr, "crmctl tail: %s\n", consumer.status().ToString().c_str());
    return 1;
  }
  for (int64_t n = 0; limit < 0 || n < limit;) {
    std::unique_ptr<RdKafka::Message> msg((*consumer)->consume(500));
    if (msg->err() != RdKafka::ERR_NO_ERROR) continue;
    crm::v1::EventEnvelope e;
    if (!e.ParseFromArray(msg->payload(), static_cast<int>(msg->len()))) {
      std::printf("{\"partition\":%d,\"offset\":%lld,\"undecodable\":true}\n", msg->partition(),
                  static_cast<long long>(msg->offset()));
    } else {
      std::printf("{\"partition\":%d,\"offset\":%lld,\"event\":%s}\n", msg->partition(),
                  static_cast<long long>(msg->offset()), ToJson(e, false).c_str());
    }
    std::fflush(stdout);
    ++n;
  }
  return 0;
}

int Customer(int argc, char** argv) {
  if (argc < 3 || argv[2][0] == '-') {
    std::fputs(kUsage, stderr);
    return 2;
  }
  const std::string target =
      crm::Setting(argc, argv, "analytics", "CRM_ANALYTICS", "127.0.0.1:50054");
  auto stub = crm::v1::AnalyticsService::NewStub(
      grpc::CreateChannel(target, grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  crm::v1::GetCustomer360Request req;
  req.set_customer_id(argv[2]);
  req.mutable_timeline_page()->set_page_size(500);
  crm::v1::Customer360 view;
  if (auto st = stub->GetCustomer360(&ctx, req, &view); !st.ok()) {
    std::fprintf(stderr, "crmctl customer: %s\n", st.error_message().c_str());
    return 1;
  }
  std::printf("%s\n", ToJson(view, true).c_str());
  return 0;
}

int Health(int argc, char** argv) {
  if (argc < 3) {
    std::fputs(kUsage, stderr);
    return 2;
  }
  auto stub = grpc::health::v1::Health::NewStub(
      grpc::CreateChannel(argv[2], grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(3));
  grpc::health::v1::HealthCheckRequest req;
  grpc::health::v1::HealthCheckResponse resp;
  auto st = stub->Check(&ctx, req, &resp);
  std::printf("%s\n", st.ok() ? grpc::health::v1::HealthCheckResponse::ServingStatus_Name(
                                    resp.status())
                                    .c_str()
                              : st.error_message().c_str());
  return st.ok() && resp.status() == grpc::health::v1::HealthCheckResponse::SERVING ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string cmd = argc > 1 ? argv[1] : "";
  const std::string what = argc > 2 ? argv[2] : "";
  if (cmd == "rebuild" && what == "analytics") return Rebuild(argc, argv);
  if (cmd == "digest" && what == "analytics") return Digest(argc, argv);
  if (cmd == "tail") return Tail(argc, argv);
  if (cmd == "customer") return Customer(argc, argv);
  if (cmd == "health") return Health(argc, argv);
  std::fputs(kUsage, stderr);
  return 2;
}
