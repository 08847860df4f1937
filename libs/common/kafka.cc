#include "libs/common/kafka.h"

#include <algorithm>

#include "absl/base/const_init.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "libs/common/ids.h"
#include "libs/common/log.h"

namespace crm {

namespace {

// Routes librdkafka's own log lines and errors into the JSON log.
class KafkaLogBridge final : public RdKafka::EventCb {
 public:
  void event_cb(RdKafka::Event& event) override {
    switch (event.type()) {
      case RdKafka::Event::EVENT_ERROR:
        log::Warn("kafka", {{"error", RdKafka::err2str(event.err())}, {"detail", event.str()}});
        break;
      case RdKafka::Event::EVENT_LOG:
        if (event.severity() <= RdKafka::Event::EVENT_SEVERITY_WARNING) {
          log::Warn("kafka", {{"facility", event.fac()}, {"detail", event.str()}});
        }
        break;
      default:
        break;
    }
  }
};

absl::Mutex connection_mu(absl::kConstInit);
KafkaSettings& ConnectionSettings() ABSL_EXCLUSIVE_LOCKS_REQUIRED(connection_mu) {
  static KafkaSettings settings;
  return settings;
}

// Sets connection settings on `conf`; an error names the key after
// `prefix`, never the value (sasl.password is a secret).
absl::Status SetConnection(RdKafka::Conf& conf, const KafkaSettings& settings,
                           absl::string_view prefix) {
  std::string err;
  for (const auto& [k, v] : settings) {
    if (conf.set(k, v, err) != RdKafka::Conf::CONF_OK) {
      return absl::InvalidArgumentError(absl::StrCat(prefix, k, ": ", err));
    }
  }
  return absl::OkStatus();
}

bool IsConnectionKey(absl::string_view key) {
  return key == "security.protocol" || key == "enable.ssl.certificate.verification" ||
         absl::StartsWith(key, "ssl.") || absl::StartsWith(key, "sasl.");
}

}  // namespace

absl::StatusOr<std::unique_ptr<RdKafka::Conf>> MakeKafkaConf(const KafkaSettings& settings) {
  static KafkaLogBridge bridge;  // stateless, lives as long as any client
  std::unique_ptr<RdKafka::Conf> conf(RdKafka::Conf::create(RdKafka::Conf::CONF_GLOBAL));
  std::string err;
  if (conf->set("event_cb", static_cast<RdKafka::EventCb*>(&bridge), err) !=
      RdKafka::Conf::CONF_OK) {
    return absl::InternalError(err);
  }
  KafkaSettings connection;
  {
    absl::MutexLock lock(&connection_mu);
    connection = ConnectionSettings();
  }
  if (auto st = SetConnection(*conf, connection, "kafka connection setting "); !st.ok()) return st;
  for (const auto& [k, v] : settings) {
    if (conf->set(k, v, err) != RdKafka::Conf::CONF_OK) {
      return absl::InvalidArgumentError(absl::StrCat("kafka setting ", k, "=", v, ": ", err));
    }
  }
  return conf;
}

void SetKafkaConnectionSettings(KafkaSettings settings) {
  absl::MutexLock lock(&connection_mu);
  ConnectionSettings() = std::move(settings);
}

absl::StatusOr<KafkaSettings> ParseKafkaConnectionProperties(absl::string_view text,
                                                             absl::string_view source) {
  KafkaSettings out;
  int number = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++number;
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || line[0] == '#') continue;
    const size_t eq = line.find('=');
    const absl::string_view key =
        absl::StripAsciiWhitespace(line.substr(0, std::min(eq, line.size())));
    if (eq == absl::string_view::npos || key.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(source, " line ", number, ": expected key=value"));
    }
    if (!IsConnectionKey(key)) {
      return absl::InvalidArgumentError(
          absl::StrCat(source, " line ", number, ": ", key,
                       " is not a connection setting (security.protocol, ssl.*, sasl.*)"));
    }
    out.emplace_back(std::string(key),
                     std::string(absl::StripAsciiWhitespace(line.substr(eq + 1))));
  }
  // Checked by librdkafka now, not at the first client: a bad value stops
  // the start, naming its key.
  std::unique_ptr<RdKafka::Conf> conf(RdKafka::Conf::create(RdKafka::Conf::CONF_GLOBAL));
  if (auto st = SetConnection(*conf, out, absl::StrCat(source, ": ")); !st.ok()) return st;
  return out;
}

std::unique_ptr<RdKafka::Headers> CloudEventHeaders(const crm::v1::EventEnvelope& e,
                                                    absl::string_view key) {
  std::unique_ptr<RdKafka::Headers> h(RdKafka::Headers::create());
  h->add("ce_specversion", "1.0");
  h->add("ce_id", e.event_id());
  h->add("ce_type", absl::StrCat("crm.v1.", e.type()));
  h->add("ce_source", e.source());
  h->add("ce_subject", e.stream());
  h->add("ce_time", FormatRfc3339(FromProtoTimestamp(e.occurred_at())));
  h->add("ce_partitionkey", std::string(key));
  h->add("content-type", "application/protobuf; messageType=crm.v1.EventEnvelope");
  return h;
}

std::string HeaderValue(RdKafka::Message& m, absl::string_view name) {
  RdKafka::Headers* h = m.headers();
  if (h == nullptr) return "";
  auto all = h->get_last(std::string(name));
  if (all.err() != RdKafka::ERR_NO_ERROR || all.value() == nullptr) return "";
  return std::string(static_cast<const char*>(all.value()), all.value_size());
}

absl::StatusOr<std::vector<int32_t>> PartitionIds(RdKafka::Handle& client, const std::string& topic,
                                                  int timeout_ms) {
  std::string err;
  std::unique_ptr<RdKafka::Topic> handle(RdKafka::Topic::create(&client, topic, nullptr, err));
  if (!handle) return absl::InvalidArgumentError(absl::StrCat("topic ", topic, ": ", err));
  RdKafka::Metadata* raw = nullptr;
  if (auto e = client.metadata(false, handle.get(), &raw, timeout_ms); e != RdKafka::ERR_NO_ERROR) {
    return absl::UnavailableError(absl::StrCat("metadata of ", topic, ": ", RdKafka::err2str(e)));
  }
  std::unique_ptr<RdKafka::Metadata> metadata(raw);
  const auto* info = metadata->topics()->empty() ? nullptr : metadata->topics()->front();
  if (info == nullptr || info->err() == RdKafka::ERR__UNKNOWN_TOPIC ||
      info->err() == RdKafka::ERR_UNKNOWN_TOPIC_OR_PART) {
    return absl::NotFoundError(absl::StrCat("topic ", topic, " does not exist"));
  }
  if (info->err() != RdKafka::ERR_NO_ERROR || info->partitions()->empty()) {
    return absl::UnavailableError(absl::StrCat("topic ", topic, " has no partitions yet"));
  }
  std::vector<int32_t> ids;
  ids.reserve(info->partitions()->size());
  for (const auto* p : *info->partitions()) ids.push_back(p->id());
  return ids;
}

}  // namespace crm
