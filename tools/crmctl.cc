// crmctl: the operations CLI.
//
//   crmctl rebuild analytics --data-dir=DIR [--brokers=…]  rebuild the 360 views from the topics
//   crmctl digest analytics --data-dir=DIR                 fingerprint of the views (rebuild check)
//   crmctl tail TOPIC [--from-beginning] [--count=N] [--until-end]  decoded events as JSON lines
//   crmctl customer CUSTOMER_ID [--analytics=HOST:PORT]    print a customer's 360 view
//   crmctl erase CUSTOMER_ID --reason=R                    erase a person's personal data
//   crmctl export CUSTOMER_ID                              all data every service holds on a person
//   crmctl health HOST:PORT [--service=NAME]               grpc.health.v1 check
//   crmctl token --sub=S --roles=R[,R] [--territory=T] [--ttl=1h]  mint a bearer token
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "crm/v1/admin.grpc.pb.h"
#include "crm/v1/analytics.grpc.pb.h"
#include "crm/v1/pii.pb.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/support/client_interceptor.h"
#include "libs/common/admin_service.h"
#include "libs/common/auth/dev_key.h"
#include "libs/common/auth/jwt.h"
#include "libs/common/backup.h"
#include "libs/common/config.h"
#include "libs/common/envelope.h"
#include "libs/common/fnv.h"
#include "libs/common/kafka.h"
#include "libs/common/pii/key_vault.h"
#include "libs/common/runtime.h"
#include "libs/common/status_macros.h"
#include "libs/common/subscriber.h"
#include "rocksdb/db.h"
#include "services/analytics/store/view_store.h"

namespace {

constexpr char kUsage[] =
    "usage: crmctl COMMAND [flags]\n"
    "  rebuild analytics --data-dir=DIR [--brokers=B] [--master-key=HEX]\n"
    "                    [--previous-master-keys=HEX,HEX | --previous-master-keys-file=F]\n"
    "                    [--allow-missing-history]     rebuild the 360 views from the topics\n"
    "  digest analytics --data-dir=DIR                  fingerprint of the views\n"
    "  tail TOPIC [--from-beginning] [--count=N] [--until-end] [--brokers=B]\n"
    "                                                   print decoded events, one JSON per line\n"
    "                                                   (--until-end: stop at the topic's end)\n"
    "  customer CUSTOMER_ID [--analytics=HOST:PORT]     print a customer's 360 view\n"
    "  audit (--actor=A | --record=ID) [--analytics=HOST:PORT]\n"
    "                                                   the audit trail, one JSON per line\n"
    "  erase CUSTOMER_ID --reason=R [--leads=HOST:PORT] GDPR erasure: destroys the person's\n"
    "                                                   data keys in every service\n"
    "  export CUSTOMER_ID [--leads=H:P] [--sales=H:P] [--service-desk=H:P] [--analytics=H:P]\n"
    "                                                   everything each service holds on the\n"
    "                                                   person, one JSON per service\n"
    "  health HOST:PORT [--service=NAME]                grpc.health.v1 check (of NAME, e.g.\n"
    "                                                   crm.v1.AnalyticsService: ready to query)\n"
    "  backup HOST:PORT                                 online backup of that service's\n"
    "                                                   database into its --backup-dir\n"
    "  backups HOST:PORT                                list the service's backups\n"
    "  restore --backup-dir=DIR --data-dir=NEW [--backup-id=N|latest]\n"
    "                                                   restore (latest unless N) into a new\n"
    "                                                   data dir, service stopped\n"
    "  token --sub=S --roles=R[,R...] [--territory=T] [--ttl=1h]\n"
    "                                                   mint a bearer token (dev key unless\n"
    "                                                   --jwt-hs256-key[-file] / "
    "CRM_JWT_HS256_KEY[_FILE])\n"
    "Brokers default to CRM_KAFKA_BROKERS, then .run/broker.addr of ./crm up;\n"
    "--kafka-properties-file=F (CRM_KAFKA_PROPERTIES_FILE) sets TLS/SASL, as for the services;\n"
    "--group-id=G (CRMCTL_GROUP_ID, default crmctl) is the group the brokers check tail and\n"
    "rebuild against (they join none, commit nothing): one the Kafka identity may read.\n"
    "gRPC calls send --token (CRM_TOKEN), else an admin token for 'crmctl' signed as above; TLS "
    "with\n"
    "--tls-ca=PEM (CRM_TLS_CA), and for mTLS --tls-cert/--tls-key (CRM_TLS_CLIENT_CERT/KEY);\n"
    "--tls-server-name=NAME (CRM_TLS_SERVER_NAME) checks the certificate for NAME, not the\n"
    "address dialled.\n";

// Set by SIGINT or SIGTERM during a rebuild.
volatile std::sig_atomic_t g_interrupted = 0;

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

// The HS256 key to sign with, read as the services read theirs (a flag
// before the environment, whichever form it takes); the dev key if none.
absl::StatusOr<std::string> SigningKey(int argc, char** argv) {
  CRM_ASSIGN_OR_RETURN(std::string key, crm::Hs256KeySetting(argc, argv));
  return key.empty() ? std::string(crm::auth::kDevHs256Key) : key;
}

absl::StatusOr<std::string> MintToken(int argc, char** argv, const std::string& sub,
                                      const std::string& roles, const std::string& territory,
                                      absl::Duration ttl) {
  crm::auth::TokenSpec spec;
  spec.subject = sub;
  for (absl::string_view r : absl::StrSplit(roles, ',', absl::SkipWhitespace())) {
    r = absl::StripAsciiWhitespace(r);
    if (!crm::auth::IsKnownRole(r)) {
      return absl::InvalidArgumentError(absl::StrCat("unknown role '", r, "'"));
    }
    spec.roles.emplace_back(r);
  }
  // As services take the claim: trimmed, and refused unless it fits a record.
  spec.territory = std::string(absl::StripAsciiWhitespace(territory));
  if (!crm::auth::FitsTerritoryClaim(spec.territory)) {
    return absl::InvalidArgumentError(
        absl::StrCat("territory: at most ", crm::auth::kMaxTerritoryBytes, " bytes on one line"));
  }
  spec.issuer = crm::Setting(argc, argv, "jwt-issuer", "CRM_JWT_ISSUER", crm::auth::kDefaultIssuer);
  spec.audience =
      crm::Setting(argc, argv, "jwt-audience", "CRM_JWT_AUDIENCE", crm::auth::kDefaultAudience);
  spec.ttl = ttl;
  CRM_ASSIGN_OR_RETURN(const std::string key, SigningKey(argc, argv));
  return crm::auth::SignHs256(spec, key);
}

int Token(int argc, char** argv) {
  const std::string sub = crm::Setting(argc, argv, "sub", "CRMCTL_SUB", "");
  const std::string roles = crm::Setting(argc, argv, "roles", "CRMCTL_ROLES", "");
  absl::Duration ttl;
  if (sub.empty() || roles.empty() ||
      !absl::ParseDuration(crm::Setting(argc, argv, "ttl", "CRMCTL_TTL", "1h"), &ttl) ||
      ttl <= absl::ZeroDuration()) {
    std::fputs("crmctl token: --sub and --roles are required; --ttl is a duration (1h, 30m)\n",
               stderr);
    return 2;
  }
  auto token = MintToken(argc, argv, sub, roles,
                         crm::Setting(argc, argv, "territory", "CRMCTL_TERRITORY", ""), ttl);
  if (!token.ok()) {
    std::fprintf(stderr, "crmctl token: %s\n", token.status().ToString().c_str());
    return 2;
  }
  std::printf("%s\n", token->c_str());
  return 0;
}

// Adds "authorization: Bearer <token>" to every call. An interceptor, not
// call credentials: gRPC refuses those on plaintext loopback channels.
class BearerToken final : public grpc::experimental::Interceptor {
 public:
  explicit BearerToken(const std::string& token) : token_(token) {}
  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(
            grpc::experimental::InterceptionHookPoints::PRE_SEND_INITIAL_METADATA)) {
      methods->GetSendInitialMetadata()->emplace("authorization", "Bearer " + token_);
    }
    methods->Proceed();
  }

 private:
  const std::string& token_;
};

class BearerTokenFactory final : public grpc::experimental::ClientInterceptorFactoryInterface {
 public:
  explicit BearerTokenFactory(std::string token) : token_(std::move(token)) {}
  grpc::experimental::Interceptor* CreateClientInterceptor(
      grpc::experimental::ClientRpcInfo*) override {
    return std::make_unique<BearerToken>(token_).release();
  }

 private:
  std::string token_;
};

// A channel to `target`: TLS when --tls-ca is set (plus a client
// certificate for mTLS); with_token: every call carries a bearer token.
absl::StatusOr<std::shared_ptr<grpc::Channel>> Connect(int argc, char** argv,
                                                       const std::string& target, bool with_token) {
  std::shared_ptr<grpc::ChannelCredentials> creds;
  // Unreadable or empty files are errors (FileSetting), never a silent fall
  // back to plaintext.
  CRM_ASSIGN_OR_RETURN(std::string ca, crm::FileSetting(argc, argv, "tls-ca", "CRM_TLS_CA"));
  CRM_ASSIGN_OR_RETURN(std::string cert,
                       crm::FileSetting(argc, argv, "tls-cert", "CRM_TLS_CLIENT_CERT"));
  CRM_ASSIGN_OR_RETURN(std::string key,
                       crm::FileSetting(argc, argv, "tls-key", "CRM_TLS_CLIENT_KEY"));
  const bool tls = !ca.empty();
  if (tls) {
    grpc::SslCredentialsOptions o;
    o.pem_root_certs = std::move(ca);
    o.pem_cert_chain = std::move(cert);
    o.pem_private_key = std::move(key);
    creds = grpc::SslCredentials(o);
  } else if (!cert.empty() || !key.empty()) {
    return absl::InvalidArgumentError("tls-cert and tls-key need tls-ca");
  } else {
    creds = grpc::InsecureChannelCredentials();
  }
  std::vector<std::unique_ptr<grpc::experimental::ClientInterceptorFactoryInterface>> factories;
  if (with_token) {
    std::string token = crm::Setting(argc, argv, "token", "CRM_TOKEN", "");
    if (token.empty()) {
      // Development convenience: the dev key (or the configured one) signs
      // a short-lived admin token for this one command.
      CRM_ASSIGN_OR_RETURN(token, MintToken(argc, argv, "crmctl", "admin", "", absl::Minutes(5)));
    }
    factories.push_back(std::make_unique<BearerTokenFactory>(std::move(token)));
  }
  grpc::ChannelArguments args;
  // The name the server's certificate is checked against when the target
  // is an address it does not name (an exec probe on 127.0.0.1).
  const std::string server_name =
      crm::Setting(argc, argv, "tls-server-name", "CRM_TLS_SERVER_NAME", "");
  if (!server_name.empty()) {
    if (!tls) return absl::InvalidArgumentError("tls-server-name needs tls-ca");
    args.SetSslTargetNameOverride(server_name);
  }
  return grpc::experimental::CreateCustomChannelWithInterceptors(target, creds, args,
                                                                 std::move(factories));
}

// Connect, or null after saying why on stderr (the command then exits 2).
std::shared_ptr<grpc::Channel> ConnectOrSay(const char* command, int argc, char** argv,
                                            const std::string& target, bool with_token) {
  auto channel = Connect(argc, argv, target, with_token);
  if (!channel.ok()) {
    std::fprintf(stderr, "crmctl %s: %s\n", command, channel.status().ToString().c_str());
    return nullptr;
  }
  return *std::move(channel);
}

// The group crmctl's consumer names. It joins none and commits nothing, but
// the brokers still check it may use the group: run with a service's
// KafkaUser (in its pod), it must be one that user may read.
std::string GroupId(int argc, char** argv) {
  return crm::Setting(argc, argv, "group-id", "CRMCTL_GROUP_ID", "crmctl");
}

// A consumer that joins no group and reads partitions from a given position.
absl::StatusOr<std::unique_ptr<RdKafka::KafkaConsumer>> AssignedConsumer(
    const std::string& brokers, const std::string& group_id, const std::vector<std::string>& topics,
    bool from_beginning, int64_t* total, std::vector<std::string>* truncated = nullptr,
    bool drops_are_errors = false) {
  if (brokers.empty()) {
    return absl::InvalidArgumentError(
        "no brokers: set --brokers or CRM_KAFKA_BROKERS (.run/broker.addr is read from the "
        "directory ./crm up ran in)");
  }
  // Messages retention drops while they are read leave the position out
  // of range. librdkafka's default then jumps to the partition's end:
  // with `drops_are_errors` (a rebuild that must have all of history) the
  // read fails instead; otherwise it goes on from the oldest message left
  // (a tail's lines show the offsets).
  CRM_ASSIGN_OR_RETURN(
      auto conf,
      crm::MakeKafkaConf({{"bootstrap.servers", brokers},
                          {"group.id", group_id},
                          {"enable.auto.commit", "false"},
                          {"enable.partition.eof", "true"},
                          {"fetch.wait.max.ms", "10"},
                          {"auto.offset.reset", drops_are_errors ? "error" : "earliest"}}));
  std::string err;
  std::unique_ptr<RdKafka::KafkaConsumer> consumer(RdKafka::KafkaConsumer::create(conf.get(), err));
  if (!consumer) return absl::UnavailableError(err);
  std::vector<RdKafka::TopicPartition*> parts;
  absl::Cleanup destroy = [&] { RdKafka::TopicPartition::destroy(parts); };
  *total = 0;
  for (const auto& topic : topics) {
    auto ids = crm::PartitionIds(*consumer, topic, 5000);
    // A topic nothing was ever written to may not exist yet: nothing to read.
    if (absl::IsNotFound(ids.status())) {
      std::fprintf(stderr, "crmctl: %s, skipped\n", std::string(ids.status().message()).c_str());
      continue;
    }
    if (!ids.ok()) {
      return absl::UnavailableError(absl::StrCat(ids.status().message(), " from ", brokers));
    }
    for (const int32_t id : *ids) {
      int64_t low = 0, high = 0;
      if (auto e = consumer->query_watermark_offsets(topic, id, &low, &high, 5000);
          e != RdKafka::ERR_NO_ERROR) {
        return absl::UnavailableError(absl::StrCat("offsets of ", topic, "/", id, ": ",
                                                   RdKafka::err2str(e), " from ", brokers));
      }
      *total += high - low;
      // Retention (or the embedded broker's 5 MiB a partition) dropped
      // the partition's oldest events.
      if (truncated != nullptr && low > 0) {
        truncated->push_back(absl::StrCat(topic, "/", id, " starts at offset ", low));
      }
      parts.push_back(RdKafka::TopicPartition::create(
          topic, id, from_beginning ? RdKafka::Topic::OFFSET_BEGINNING : high));
    }
  }
  consumer->assign(parts);
  return consumer;
}

size_t AssignedCount(RdKafka::KafkaConsumer& consumer) {
  std::vector<RdKafka::TopicPartition*> assignment;
  consumer.assignment(assignment);
  const size_t n = assignment.size();
  RdKafka::TopicPartition::destroy(assignment);
  return n;
}

// `defaults` prints fields at their default too: a count of 0 is an answer.
// Fails on a payload type this build does not know (a newer service's).
absl::StatusOr<std::string> JsonOf(const google::protobuf::Message& m, bool pretty,
                                   bool defaults = false) {
  std::string out;
  google::protobuf::util::JsonPrintOptions o;
  o.add_whitespace = pretty;
  o.always_print_primitive_fields = defaults;
  o.preserve_proto_field_names = true;
  if (auto st = google::protobuf::util::MessageToJsonString(m, &out, o); !st.ok()) {
    return absl::InternalError(std::string(st.message()));
  }
  return out;
}

// JsonOf, "{}" when it fails: for messages without a payload.
std::string ToJson(const google::protobuf::Message& m, bool pretty, bool defaults = false) {
  return JsonOf(m, pretty, defaults).value_or("{}");
}

// A terminal gets a bar redrawn in place. Anything else (kubectl exec
// without -t, 2>file) gets a line every 10 s and the last one: an hours-long
// rebuild must not look hung.
void Progress(int64_t done, int64_t total, absl::Duration elapsed, bool last = false) {
  static absl::Time last_line = absl::InfinitePast();
  // Events keep arriving during a rebuild of a live cluster: past the
  // count taken at the start, the bar stays full.
  total = std::max(total, done);
  const double frac = total > 0 ? static_cast<double>(done) / static_cast<double>(total) : 1.0;
  const double rate = static_cast<double>(done) / std::max(absl::ToDoubleSeconds(elapsed), 1e-9);
  if (!isatty(2)) {
    if (!last && absl::Now() - last_line < absl::Seconds(10)) return;
    last_line = absl::Now();
    std::fprintf(stderr, "rebuild: %.1f%%  %lld/%lld events  %.0f/s\n", frac * 100,
                 static_cast<long long>(done), static_cast<long long>(total), rate);
    return;
  }
  const int width = 40;
  const int fill = static_cast<int>(frac * width);
  // Cleared to the end of the line: a shorter redraw (the rate losing a
  // digit) leaves nothing of the last one behind.
  std::fprintf(stderr, "\r[%s%s] %5.1f%%  %lld/%lld events  %.0f/s\033[K",
               std::string(fill, '#').c_str(), std::string(width - fill, ' ').c_str(), frac * 100,
               static_cast<long long>(done), static_cast<long long>(total), rate);
}

// Broker trouble librdkafka recovers from by itself: shown, then waited out.
bool IsTransientKafkaError(RdKafka::ErrorCode e) {
  return e == RdKafka::ERR__TRANSPORT || e == RdKafka::ERR__ALL_BROKERS_DOWN ||
         e == RdKafka::ERR__RESOLVE || e == RdKafka::ERR_REQUEST_TIMED_OUT ||
         e == RdKafka::ERR_LEADER_NOT_AVAILABLE || e == RdKafka::ERR_NOT_LEADER_FOR_PARTITION;
}

// Notes the data keys whose issue records fail to apply (a key that
// unwraps with none of the master keys given). A key re-wrapped in a
// rotation fails on its old record and arrives with the next: only a key
// still missing at the end, of a customer not erased, is lost.
class KeyFailureRecorder final : public crm::Projection {
 public:
  explicit KeyFailureRecorder(crm::Projection& inner) : inner_(inner) {}
  void BeginBatch() override { inner_.BeginBatch(); }
  absl::Status Apply(const crm::v1::EventEnvelope& event, crm::ProjectionTxn& txn) override {
    absl::Status st = inner_.Apply(event, txn);
    crm::v1::DataKeyIssued issued;
    if (!st.ok() && event.payload().UnpackTo(&issued)) {
      std::lock_guard<std::mutex> lock(mu_);
      failed_.emplace(issued.key_id(), issued.customer_id());
    }
    return st;
  }
  absl::Status Flush(crm::ProjectionTxn& txn) override { return inner_.Flush(txn); }
  // Keys that failed and that the vault still lacks.
  size_t Missing(const crm::pii::KeyVault& vault) const {
    std::lock_guard<std::mutex> lock(mu_);
    size_t missing = 0;
    for (const auto& [key_id, customer_id] : failed_) {
      missing += !vault.Find(key_id).has_value() && !vault.Erased(customer_id);
    }
    return missing;
  }

 private:
  crm::Projection& inner_;
  mutable std::mutex mu_;
  absl::flat_hash_map<std::string, std::string> failed_;  // key_id -> customer_id
};

// `opened`: set once this process holds the database (and may remove it).
int RebuildInto(const std::string& dir, int argc, char** argv, bool* opened) {
  // The data keys come back from crm.keys.v1 with the views; erased
  // customers' keys stay destroyed. During a master key rotation the topic
  // may still hold keys wrapped under a previous master key. The keys are
  // found as the services find theirs (--master-key-file too).
  auto master_hex = crm::MasterKeyHex(argc, argv);
  if (!master_hex.ok()) {
    std::fprintf(stderr, "crmctl rebuild: %s\n", master_hex.status().ToString().c_str());
    return 2;
  }
  auto master = crm::pii::KeyFromHex(*master_hex);
  auto previous = crm::PreviousMasterKeys(argc, argv);
  if (!previous.ok()) {
    std::fprintf(stderr, "crmctl rebuild: %s\n", previous.status().ToString().c_str());
    return 2;
  }
  // The brokers first: a wrong address must not leave a database behind.
  int64_t total = 0;
  std::vector<std::string> truncated;
  const bool allow_missing_history = HasFlag(argc, argv, "--allow-missing-history");
  auto consumer = AssignedConsumer(Brokers(argc, argv), GroupId(argc, argv), crm::AllTopics(), true,
                                   &total, &truncated, /*drops_are_errors=*/!allow_missing_history);
  if (!consumer.ok()) {
    std::fprintf(stderr, "crmctl rebuild: %s\n", consumer.status().ToString().c_str());
    return 1;
  }
  // Views rebuilt without a topic's first events miss that history, and a
  // person whose key record is gone reads as erased.
  if (!truncated.empty()) {
    std::fprintf(stderr, "crmctl rebuild: the topics no longer hold their first events (%s)%s\n",
                 absl::StrJoin(truncated, ", ").c_str(),
                 allow_missing_history
                     ? "; rebuilding from what is left (--allow-missing-history)"
                     : "; the views would miss them. Rebuild from topics that keep every "
                       "event, or pass --allow-missing-history");
    if (!allow_missing_history) return 1;
  }
  // A broker without any of the topics (another cluster, an embedded broker
  // started afresh) would "rebuild" an empty database to swap in.
  // Partitions still to reach their end. librdkafka reports an end again
  // each time a partition's end moves on, so each partition counts once.
  size_t open_partitions = AssignedCount(**consumer);
  if (open_partitions == 0 || total == 0) {
    std::fprintf(stderr, "crmctl rebuild: %s on %s: nothing to rebuild from\n",
                 open_partitions == 0 ? "none of the topics exists" : "the topics hold no events",
                 Brokers(argc, argv).c_str());
    return 1;
  }
  auto db = crm::Database::Open(dir, crm::analytics::ViewFamilies(),
                                crm::analytics::ViewDatabaseOptions());
  if (!db.ok()) {
    std::fprintf(stderr, "crmctl rebuild: %s\n", db.status().ToString().c_str());
    return 1;
  }
  *opened = true;
  auto vault = crm::pii::KeyVault::Open(**db, nullptr, crm::pii::MasterKeys(*master, *previous),
                                        "crm/analytics");
  if (!vault.ok()) {
    std::fprintf(stderr, "crmctl rebuild: %s\n", vault.status().ToString().c_str());
    return 1;
  }
  crm::analytics::Customer360Projection views;
  crm::pii::WithKeyRecords with_keys(**vault, &views);
  KeyFailureRecorder projection(with_keys);
  crm::Subscriber applier(**db, projection, {});
  absl::flat_hash_set<std::pair<std::string, int32_t>> at_end;

  const absl::Time start = absl::Now();
  absl::Time last_progress = start;
  int64_t done = 0;
  std::vector<crm::ConsumedMessage> batch;
  std::string last_error;
  // One batch is applied on another thread while the next is consumed.
  std::future<absl::Status> applying;
  int64_t applying_size = 0;
  auto finish_applying = [&]() -> absl::Status {
    if (!applying.valid()) return absl::OkStatus();
    absl::Status st = applying.get();
    if (st.ok()) done += applying_size;
    return st;
  };
  const size_t kMaxBatchBytes = crm::SubscriberOptions().max_batch_bytes;
  size_t batch_bytes = 0;
  while (open_partitions > 0) {
    if (g_interrupted != 0) {
      (void)finish_applying();
      std::fprintf(stderr, "\ncrmctl rebuild: interrupted; the data dir is left as it was\n");
      return 1;
    }
    std::unique_ptr<RdKafka::Message> msg((*consumer)->consume(200));
    if (msg->err() == RdKafka::ERR__PARTITION_EOF) {
      if (at_end.emplace(msg->topic_name(), msg->partition()).second) --open_partitions;
    } else if (msg->err() == RdKafka::ERR_NO_ERROR) {
      batch.push_back({msg->topic_name(), msg->partition(), msg->offset(),
                       std::string(static_cast<const char*>(msg->payload()), msg->len())});
      batch_bytes += msg->len();
    } else if (IsTransientKafkaError(msg->err())) {
      if (msg->errstr() != last_error) {
        last_error = msg->errstr();
        std::fprintf(stderr, "\ncrmctl rebuild: %s (waiting)\n", last_error.c_str());
      }
    } else if (msg->err() == RdKafka::ERR__AUTO_OFFSET_RESET) {
      std::fprintf(stderr,
                   "\ncrmctl rebuild: %s/%d dropped messages (retention) while they were being "
                   "read: %s; run the rebuild again, or pass --allow-missing-history\n",
                   msg->topic_name().c_str(), msg->partition(), msg->errstr().c_str());
      return 1;
    } else if (msg->err() != RdKafka::ERR__TIMED_OUT) {
      std::fprintf(stderr, "\ncrmctl rebuild: %s\n", msg->errstr().c_str());
      return 1;
    }
    // The subscriber's bounds: events may be up to 900 KB each.
    if (batch.size() >= 5000 || batch_bytes >= kMaxBatchBytes ||
        (open_partitions == 0 && !batch.empty()) ||
        (msg->err() == RdKafka::ERR__TIMED_OUT && !batch.empty())) {
      if (auto st = finish_applying(); !st.ok()) {
        std::fprintf(stderr, "\ncrmctl rebuild: %s\n", st.ToString().c_str());
        return 1;
      }
      applying_size = static_cast<int64_t>(batch.size());
      applying = std::async(std::launch::async,
                            [&applier, b = std::move(batch)] { return applier.ApplyBatch(b); });
      batch.clear();
      batch_bytes = 0;
    }
    if (absl::Now() - last_progress > absl::Milliseconds(200)) {
      Progress(done, total, absl::Now() - start);
      last_progress = absl::Now();
    }
  }
  if (auto st = finish_applying(); !st.ok()) {
    std::fprintf(stderr, "\ncrmctl rebuild: %s\n", st.ToString().c_str());
    return 1;
  }
  // Keys of people erased whose records were read during the rebuild:
  // compacted away before the directory is handed over.
  if (auto st = (*vault)->PurgeDestroyed(); !st.ok()) {
    std::fprintf(stderr, "\ncrmctl rebuild: %s\n", st.ToString().c_str());
    return 1;
  }
  // Before the summary: a run that fails prints no success line.
  if (const size_t missing = projection.Missing(**vault); missing > 0) {
    std::fprintf(stderr,
                 "\ncrmctl rebuild: %zu data keys did not unwrap with the master key given: pass "
                 "the services' --master-key-file (and --previous-master-keys during a "
                 "rotation); the views would show those people's data as erased\n",
                 missing);
    return 1;
  }
  const absl::Duration elapsed = absl::Now() - start;
  // Every partition read to its end: all of it, though a compacted topic
  // (crm.keys.v1) has fewer messages than its offsets span.
  Progress(done, done, elapsed, /*last=*/true);
  if (isatty(2)) std::fputc('\n', stderr);
  std::printf(
      "rebuilt analytics from %lld events in %.2f s: %.0f events/s (%llu applied, %llu "
      "duplicates skipped, %llu undecodable or rejected)\n",
      static_cast<long long>(done), absl::ToDoubleSeconds(elapsed),
      static_cast<double>(done) / std::max(absl::ToDoubleSeconds(elapsed), 1e-9),
      static_cast<unsigned long long>(applier.applied()),
      static_cast<unsigned long long>(applier.skipped()),
      static_cast<unsigned long long>(applier.poisoned()));
  return 0;
}

int Rebuild(int argc, char** argv) {
  const std::string dir = crm::Setting(argc, argv, "data-dir", "CRM_DATA_DIR", "");
  if (dir.empty()) {
    std::fprintf(stderr, "crmctl rebuild: --data-dir is required\n");
    return 2;
  }
  // The error_code forms: a dir that cannot be looked at is reported.
  std::error_code looked;
  const bool exists = std::filesystem::exists(dir, looked);
  const bool empty = looked || !exists || std::filesystem::is_empty(dir, looked);
  if (looked) {
    std::fprintf(stderr, "crmctl rebuild: %s: %s\n", dir.c_str(), looked.message().c_str());
    return 1;
  }
  if (!empty) {
    std::fprintf(stderr,
                 "crmctl rebuild: %s is not empty; rebuild into a new dir and point the "
                 "service at it (or remove the old one first)\n",
                 dir.c_str());
    return 2;
  }
  const bool created = !exists;
  bool opened = false;
  // Ctrl-C stops the rebuild between batches, so the dir is cleared below
  // and a retry may start. A second one ends the process at once.
  struct sigaction stop = {};
  stop.sa_handler = [](int) { g_interrupted = 1; };
  stop.sa_flags = SA_RESETHAND;
  sigemptyset(&stop.sa_mask);
  sigaction(SIGINT, &stop, nullptr);
  sigaction(SIGTERM, &stop, nullptr);
  const int rc = RebuildInto(dir, argc, argv, &opened);
  if (rc != 0 && opened) {
    // A failed rebuild leaves the dir as it found it, so a retry may start;
    // a database another rebuild holds is not touched.
    std::error_code ec;
    if (created) {
      std::filesystem::remove_all(dir, ec);
    } else {
      for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
        std::filesystem::remove_all(entry.path(), ec);
      }
    }
  }
  return rc;
}

// FNV-1a over every key and value of the view families: equal digests mean
// byte-identical views. Not a security hash; it only detects differences.
int Digest(int argc, char** argv) {
  const std::string dir = crm::Setting(argc, argv, "data-dir", "CRM_DATA_DIR", "");
  // Only an existing analytics database: opening creates what is missing,
  // and a mistyped dir would digest as an empty one.
  std::vector<std::string> families;
  const bool analytics_db =
      !dir.empty() && rocksdb::DB::ListColumnFamilies(rocksdb::DBOptions(), dir, &families).ok() &&
      std::find(families.begin(), families.end(), "customers") != families.end();
  if (!analytics_db) {
    std::fprintf(stderr, "crmctl digest: --data-dir '%s' holds no analytics database\n",
                 dir.c_str());
    return 2;
  }
  auto db = crm::Database::Open(dir, crm::analytics::ViewFamilies(),
                                crm::analytics::ViewDatabaseOptions());
  if (!db.ok()) {
    // RocksDB's reason; its lock held is a service still running on the dir.
    const std::string reason = db.status().ToString();
    std::fprintf(
        stderr, "crmctl digest: cannot open --data-dir '%s': %s%s\n", dir.c_str(), reason.c_str(),
        absl::StrContains(reason, "lock") ? " (is its service still running? stop it first)" : "");
    return 1;
  }
  crm::Fnv1a64 digest;
  uint64_t entries = 0;
  for (const char* family : crm::analytics::ViewDigestFamilies()) {
    auto it = (*db)->NewIterator(family);
    for (it->SeekToFirst(); it->Valid(); it->Next(), ++entries) {
      digest.AddField(crm::View(it->key()));
      digest.AddField(crm::View(it->value()));
    }
    // A scan cut short by a read error would print the digest of part of
    // the views: "views differ" where the truth is "cannot read".
    if (!it->status().ok()) {
      std::fprintf(stderr, "crmctl digest: cannot read %s: %s\n", family,
                   it->status().ToString().c_str());
      return 1;
    }
  }
  std::printf("%016llx %llu entries\n", static_cast<unsigned long long>(digest.value()),
              static_cast<unsigned long long>(entries));
  return 0;
}

// Errors no wait cures (no right to read the topic, no login): tailing
// would wait for ever, silently after the first report.
bool TailCannotGoOn(RdKafka::ErrorCode err) {
  switch (err) {
    case RdKafka::ERR_TOPIC_AUTHORIZATION_FAILED:
    case RdKafka::ERR_GROUP_AUTHORIZATION_FAILED:
    case RdKafka::ERR_CLUSTER_AUTHORIZATION_FAILED:
    case RdKafka::ERR_SASL_AUTHENTICATION_FAILED:
    case RdKafka::ERR__AUTHENTICATION:
    case RdKafka::ERR__SSL:
    case RdKafka::ERR__FATAL:
      return true;
    default:
      return false;
  }
}

// The crm_dlq_* headers a consumer parks a message with (where it came
// from and why), as a JSON object; empty when there are none.
std::string DeadLetterJson(RdKafka::Message& msg) {
  google::protobuf::Struct fields;
  if (const RdKafka::Headers* headers = msg.headers(); headers != nullptr) {
    for (const auto& h : headers->get_all()) {
      constexpr absl::string_view kPrefix = "crm_dlq_";
      if (!absl::StartsWith(h.key(), kPrefix) || h.value() == nullptr) continue;
      (*fields.mutable_fields())[h.key().substr(kPrefix.size())].set_string_value(
          std::string(static_cast<const char*>(h.value()), h.value_size()));
    }
  }
  return fields.fields().empty() ? "" : ToJson(fields, false);
}

int Tail(int argc, char** argv) {
  if (argc < 3 || argv[2][0] == '-') {
    std::fputs(kUsage, stderr);
    return 2;
  }
  int64_t limit = -1;
  if (const std::string c = crm::Setting(argc, argv, "count", "CRMCTL_COUNT", "");
      !c.empty() && (!absl::SimpleAtoi(c, &limit) || limit <= 0)) {
    std::fprintf(stderr, "crmctl tail: --count must be a positive number\n");
    return 2;
  }
  int64_t total = 0;
  auto consumer = AssignedConsumer(Brokers(argc, argv), GroupId(argc, argv), {argv[2]},
                                   HasFlag(argc, argv, "--from-beginning"), &total);
  if (!consumer.ok()) {
    std::fprintf(stderr, "crmctl tail: %s\n", consumer.status().ToString().c_str());
    return 1;
  }
  // --until-end: partitions still to reach the end they have when reached
  // (librdkafka reports an end again each time it moves on).
  size_t open_partitions = AssignedCount(**consumer);
  if (open_partitions == 0) {
    std::fprintf(stderr, "crmctl tail: no topic %s on the brokers\n", argv[2]);
    return 1;
  }
  const bool until_end = HasFlag(argc, argv, "--until-end");
  absl::flat_hash_set<int32_t> at_end;
  std::string last_error;
  for (int64_t n = 0; limit < 0 || n < limit;) {
    std::unique_ptr<RdKafka::Message> msg((*consumer)->consume(500));
    if (msg->err() == RdKafka::ERR__PARTITION_EOF && until_end &&
        at_end.insert(msg->partition()).second && --open_partitions == 0) {
      return 0;
    }
    if (msg->err() != RdKafka::ERR_NO_ERROR) {
      if (TailCannotGoOn(msg->err())) {
        std::fprintf(stderr, "crmctl tail: %s\n", msg->errstr().c_str());
        return 1;
      }
      // Broker trouble is shown (once while it lasts); tailing goes on.
      if (msg->err() != RdKafka::ERR__TIMED_OUT && msg->err() != RdKafka::ERR__PARTITION_EOF &&
          msg->errstr() != last_error) {
        last_error = msg->errstr();
        std::fprintf(stderr, "crmctl tail: %s\n", last_error.c_str());
      }
      continue;
    }
    last_error.clear();
    // A parked message says where it came from and why, decodable or not.
    const std::string dead_letter = DeadLetterJson(*msg);
    const std::string where =
        absl::StrCat("{\"partition\":", msg->partition(), ",\"offset\":", msg->offset(),
                     dead_letter.empty() ? "" : ",\"dead_letter\":", dead_letter);
    crm::v1::EventEnvelope e;
    if (!crm::DecodeEvent(absl::string_view(static_cast<const char*>(msg->payload()), msg->len()),
                          e)) {
      std::printf("%s,\"undecodable\":true}\n", where.c_str());
    } else if (auto json = JsonOf(e, false); json.ok()) {
      std::printf("%s,\"event\":%s}\n", where.c_str(), json->c_str());
    } else {
      // A payload type this build does not know (a newer service): the
      // envelope is still shown, and the payload named, not an empty event.
      std::string type = e.payload().type_url();
      // Kept a plain JSON string whatever the bytes.
      for (char& c : type) {
        if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '/' &&
            c != '_' && c != '-') {
          c = '?';
        }
      }
      e.clear_payload();
      std::printf("%s,\"event\":%s,\"undecodable_payload\":\"%s\"}\n", where.c_str(),
                  ToJson(e, false).c_str(), type.c_str());
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
  auto channel = ConnectOrSay("customer", argc, argv, target, true);
  if (!channel) return 2;
  auto stub = crm::v1::AnalyticsService::NewStub(channel);
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
  // The whole timeline, page after page.
  while (!view.next_page_token().empty()) {
    grpc::ClientContext next_ctx;
    next_ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    req.mutable_timeline_page()->set_page_token(view.next_page_token());
    crm::v1::Customer360 page;
    if (auto st = stub->GetCustomer360(&next_ctx, req, &page); !st.ok()) {
      std::fprintf(stderr, "crmctl customer: %s\n", st.error_message().c_str());
      return 1;
    }
    for (auto& entry : *page.mutable_timeline()) *view.add_timeline() = std::move(entry);
    view.set_next_page_token(page.next_page_token());
  }
  std::printf("%s\n", ToJson(view, true).c_str());
  return 0;
}

int Audit(int argc, char** argv) {
  const std::string target =
      crm::Setting(argc, argv, "analytics", "CRM_ANALYTICS", "127.0.0.1:50054");
  auto channel = ConnectOrSay("audit", argc, argv, target, true);
  if (!channel) return 2;
  auto stub = crm::v1::AnalyticsService::NewStub(channel);
  crm::v1::ListAuditEntriesRequest req;
  req.set_actor(crm::Setting(argc, argv, "actor", "CRMCTL_ACTOR", ""));
  req.set_record_id(crm::Setting(argc, argv, "record", "CRMCTL_RECORD", ""));
  req.mutable_page()->set_page_size(500);
  do {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    crm::v1::ListAuditEntriesResponse page;
    if (auto st = stub->ListAuditEntries(&ctx, req, &page); !st.ok()) {
      std::fprintf(stderr, "crmctl audit: %s\n", st.error_message().c_str());
      return st.error_code() == grpc::StatusCode::INVALID_ARGUMENT ? 2 : 1;
    }
    for (const auto& e : page.entries()) std::printf("%s\n", ToJson(e, false).c_str());
    req.mutable_page()->set_page_token(page.next_page_token());
  } while (!req.page().page_token().empty());
  return 0;
}

int Erase(int argc, char** argv) {
  if (argc < 3 || argv[2][0] == '-') {
    std::fputs(kUsage, stderr);
    return 2;
  }
  const std::string target = crm::Setting(argc, argv, "leads", "CRM_LEADS", "127.0.0.1:50051");
  auto channel = ConnectOrSay("erase", argc, argv, target, true);
  if (!channel) return 2;
  auto stub = crm::v1::AdminService::NewStub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  crm::v1::EraseCustomerRequest req;
  req.set_customer_id(argv[2]);
  req.set_reason(crm::Setting(argc, argv, "reason", "CRMCTL_REASON", ""));
  crm::v1::EraseCustomerResponse resp;
  if (auto st = stub->EraseCustomer(&ctx, req, &resp); !st.ok()) {
    std::fprintf(stderr, "crmctl erase: %s\n", st.error_message().c_str());
    return st.error_code() == grpc::StatusCode::INVALID_ARGUMENT ? 2 : 1;
  }
  // {"keys_destroyed":0,...}: this service held no key of the customer.
  std::printf("%s\n", ToJson(resp, false, true).c_str());
  return 0;
}

int Export(int argc, char** argv) {
  if (argc < 3 || argv[2][0] == '-') {
    std::fputs(kUsage, stderr);
    return 2;
  }
  struct Target {
    const char* flag;
    const char* env;
    const char* fallback;
  };
  constexpr Target kTargets[] = {{"leads", "CRM_LEADS", "127.0.0.1:50051"},
                                 {"sales", "CRM_SALES", "127.0.0.1:50052"},
                                 {"service-desk", "CRM_SERVICE_DESK", "127.0.0.1:50053"},
                                 {"analytics", "CRM_ANALYTICS", "127.0.0.1:50054"}};
  crm::v1::ExportCustomerRequest req;
  req.set_customer_id(argv[2]);
  int rc = 0;
  // A partial export must not pass for a complete one: every service is
  // asked, and any failure fails the command.
  for (const auto& t : kTargets) {
    const std::string target = crm::Setting(argc, argv, t.flag, t.env, t.fallback);
    auto channel = ConnectOrSay("export", argc, argv, target, true);
    if (!channel) return 2;
    auto stub = crm::v1::AdminService::NewStub(channel);
    // The pages of one service make one export; read again from the first
    // page when the customer was merged or erased between pages.
    crm::v1::CustomerExport out;
    grpc::Status st;
    for (int attempt = 0; attempt < 3; ++attempt) {
      out.Clear();
      req.clear_page_token();
      do {
        grpc::ClientContext ctx;
        ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::minutes(5));
        crm::v1::CustomerExport page;
        st = stub->ExportCustomer(&ctx, req, &page);
        if (!st.ok()) break;
        req.set_page_token(page.next_page_token());
        if (absl::Status joined = crm::JoinExportPage(out, std::move(page)); !joined.ok()) {
          st = grpc::Status(grpc::StatusCode::ABORTED, std::string(joined.message()));
          break;
        }
      } while (!req.page_token().empty());
      if (st.error_code() != grpc::StatusCode::ABORTED) break;
    }
    if (!st.ok()) {
      std::fprintf(stderr, "crmctl export: %s (%s): %s\n", t.flag, target.c_str(),
                   st.error_message().c_str());
      rc = st.error_code() == grpc::StatusCode::INVALID_ARGUMENT ? 2 : 1;
      continue;
    }
    // Never "{}" for what the service holds: an answer to a person's
    // request for their data must be whole or fail.
    auto json = JsonOf(out, false);
    if (!json.ok()) {
      std::fprintf(stderr,
                   "crmctl export: %s (%s): cannot print the export: %s (a crmctl older than "
                   "the service?)\n",
                   t.flag, target.c_str(), std::string(json.status().message()).c_str());
      rc = 1;
      continue;
    }
    std::printf("%s\n", json->c_str());
  }
  return rc;
}

int Backup(int argc, char** argv) {
  if (argc < 3 || argv[2][0] == '-') {
    std::fputs(kUsage, stderr);
    return 2;
  }
  auto channel = ConnectOrSay("backup", argc, argv, argv[2], true);
  if (!channel) return 2;
  auto stub = crm::v1::AdminService::NewStub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::minutes(30));
  crm::v1::Backup backup;
  if (auto st = stub->CreateBackup(&ctx, crm::v1::CreateBackupRequest(), &backup); !st.ok()) {
    std::fprintf(stderr, "crmctl backup: %s\n", st.error_message().c_str());
    return 1;
  }
  std::printf("%s\n", ToJson(backup, false).c_str());
  return 0;
}

int Backups(int argc, char** argv) {
  if (argc < 3 || argv[2][0] == '-') {
    std::fputs(kUsage, stderr);
    return 2;
  }
  auto channel = ConnectOrSay("backups", argc, argv, argv[2], true);
  if (!channel) return 2;
  auto stub = crm::v1::AdminService::NewStub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  crm::v1::ListBackupsResponse list;
  if (auto st = stub->ListBackups(&ctx, crm::v1::ListBackupsRequest(), &list); !st.ok()) {
    std::fprintf(stderr, "crmctl backups: %s\n", st.error_message().c_str());
    return 1;
  }
  for (const auto& b : list.backups()) std::printf("%s\n", ToJson(b, false).c_str());
  return 0;
}

int Restore(int argc, char** argv) {
  const std::string backup_dir = crm::Setting(argc, argv, "backup-dir", "CRM_BACKUP_DIR", "");
  const std::string data_dir = crm::Setting(argc, argv, "data-dir", "CRM_DATA_DIR", "");
  if (backup_dir.empty() || data_dir.empty()) {
    std::fputs("crmctl restore: --backup-dir and --data-dir are both required\n", stderr);
    return 2;
  }
  // RestoreBackup takes 0 for the latest.
  const std::string wanted = crm::Setting(argc, argv, "backup-id", "CRM_BACKUP_ID", "latest");
  uint32_t id = 0;
  // Ids start at 1: a 0 typed for an older backup must not restore the newest.
  if (wanted != "latest" && (!absl::SimpleAtoi(wanted, &id) || id == 0)) {
    std::fprintf(stderr,
                 "crmctl restore: --backup-id: want a backup id from 'crmctl backups' or "
                 "latest, not %s\n",
                 wanted.c_str());
    return 2;
  }
  auto restored = crm::RestoreBackup(backup_dir, id, data_dir);
  if (!restored.ok()) {
    std::fprintf(stderr, "crmctl restore: %s\n", restored.status().ToString().c_str());
    return 1;
  }
  std::printf("restored %s backup %u into %s\n", backup_dir.c_str(), *restored, data_dir.c_str());
  return 0;
}

int Health(int argc, char** argv) {
  if (argc < 3 || argv[2][0] == '-') {
    std::fputs(kUsage, stderr);
    return 2;
  }
  auto channel = ConnectOrSay("health", argc, argv, argv[2], false);
  if (!channel) return 2;
  auto stub = grpc::health::v1::Health::NewStub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(3));
  grpc::health::v1::HealthCheckRequest req;
  req.set_service(crm::Setting(argc, argv, "service", "CRMCTL_HEALTH_SERVICE", ""));
  grpc::health::v1::HealthCheckResponse resp;
  auto st = stub->Check(&ctx, req, &resp);
  // stdout holds a serving status only: a script reading it never takes an
  // error for one.
  if (!st.ok()) {
    std::fprintf(stderr, "crmctl health: %s\n", st.error_message().c_str());
    return 1;
  }
  std::printf("%s\n",
              grpc::health::v1::HealthCheckResponse::ServingStatus_Name(resp.status()).c_str());
  return resp.status() == grpc::health::v1::HealthCheckResponse::SERVING ? 0 : 1;
}

// rebuild and digest are of analytics' views only.
template <int (*Run)(int, char**)>
int OfAnalytics(int argc, char** argv) {
  if (argc < 3 || absl::string_view(argv[2]) != "analytics") {
    std::fputs(kUsage, stderr);
    return 2;
  }
  return Run(argc, argv);
}

struct Command {
  absl::string_view name;
  // The arguments other than flags it takes (its TOPIC, ID or HOST:PORT).
  int positionals;
  // Makes a Kafka client: the brokers may require TLS or SASL.
  bool reads_topics;
  int (*run)(int, char**);
};

constexpr Command kCommands[] = {
    {"rebuild", 1, true, OfAnalytics<Rebuild>},
    {"digest", 1, false, OfAnalytics<Digest>},
    {"tail", 1, true, Tail},
    {"customer", 1, false, Customer},
    {"audit", 0, false, Audit},
    {"health", 1, false, Health},
    {"token", 0, false, Token},
    {"backup", 1, false, Backup},
    {"erase", 1, false, Erase},
    {"export", 1, false, Export},
    {"backups", 1, false, Backups},
    {"restore", 0, false, Restore},
};

const Command* FindCommand(absl::string_view name) {
  for (const Command& c : kCommands) {
    if (c.name == name) return &c;
  }
  return nullptr;
}

// Flags are --name=value (or a switch); "--count 5", "-count=5", a stray
// argument ("restore ... 3") or a misspelt name would otherwise be ignored
// without a word, and the command run as if it had not been given.
bool FlagsAreKnown(int argc, char** argv) {
  static const absl::flat_hash_set<absl::string_view> kValues = {"actor",
                                                                 "analytics",
                                                                 "backup-dir",
                                                                 "backup-id",
                                                                 "brokers",
                                                                 "count",
                                                                 "data-dir",
                                                                 "group-id",
                                                                 "jwt-audience",
                                                                 "jwt-hs256-key",
                                                                 "jwt-hs256-key-file",
                                                                 "jwt-issuer",
                                                                 "kafka-properties-file",
                                                                 "leads",
                                                                 "master-key",
                                                                 "master-key-file",
                                                                 "previous-master-keys",
                                                                 "previous-master-keys-file",
                                                                 "reason",
                                                                 "record",
                                                                 "roles",
                                                                 "sales",
                                                                 "service",
                                                                 "service-desk",
                                                                 "sub",
                                                                 "territory",
                                                                 "tls-ca",
                                                                 "tls-cert",
                                                                 "tls-key",
                                                                 "tls-server-name",
                                                                 "token",
                                                                 "ttl"};
  static const absl::flat_hash_set<absl::string_view> kSwitches = {"from-beginning", "until-end",
                                                                   "allow-missing-history"};
  // An unknown command gets the usage instead; help takes nothing.
  const absl::string_view cmd = argc > 1 ? argv[1] : "";
  const Command* command = FindCommand(cmd);
  const int positionals = command != nullptr ? command->positionals : cmd == "help" ? 0 : -1;
  int seen = 0;
  for (int i = 2; i < argc; ++i) {
    absl::string_view arg = argv[i];
    if (!absl::ConsumePrefix(&arg, "--")) {
      if (absl::StartsWith(arg, "-")) {
        std::fprintf(stderr, "crmctl: unknown flag %s (flags start with --)\n", argv[i]);
        return false;
      }
      if (positionals >= 0 && ++seen > positionals) {
        std::fprintf(stderr, "crmctl %s: unexpected argument %s\n", argv[1], argv[i]);
        return false;
      }
      continue;
    }
    const size_t eq = arg.find('=');
    const absl::string_view name = arg.substr(0, eq);
    if (kSwitches.contains(name)) {
      if (eq == absl::string_view::npos) continue;
      std::fprintf(stderr, "crmctl: --%s takes no value\n", std::string(name).c_str());
      return false;
    }
    if (eq == absl::string_view::npos && kValues.contains(name)) {
      std::fprintf(stderr, "crmctl: --%s needs a value: --%s=VALUE\n", std::string(name).c_str(),
                   std::string(name).c_str());
      return false;
    }
    if (!kValues.contains(name)) {
      std::fprintf(stderr, "crmctl: unknown flag --%s\n", std::string(name).c_str());
      return false;
    }
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  crm::UseReleaseRuntime();
  if (!FlagsAreKnown(argc, argv)) return 2;
  // The command's arguments right after it, wherever among the flags they
  // were given: commands read them from argv[2] on.
  if (argc > 2) {
    std::stable_partition(argv + 2, argv + argc,
                          [](const char* arg) { return !absl::StartsWith(arg, "--"); });
  }
  const std::string cmd = argc > 1 ? argv[1] : "";
  if (const Command* command = FindCommand(cmd); command != nullptr) {
    if (command->reads_topics) {
      auto connection = crm::KafkaConnectionSetting(argc, argv);
      if (!connection.ok()) {
        std::fprintf(stderr, "crmctl: %s\n", connection.status().ToString().c_str());
        return 2;
      }
      crm::SetKafkaConnectionSettings(*std::move(connection));
    }
    return command->run(argc, argv);
  }
  // Asked for: the usage on stdout and success; otherwise a usage error.
  if (cmd == "help" || cmd == "--help" || cmd == "-h") {
    std::fputs(kUsage, stdout);
    return 0;
  }
  std::fputs(kUsage, stderr);
  return 2;
}
