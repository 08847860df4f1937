#include "libs/common/config.h"

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <optional>
#include <sstream>
#include <tuple>
#include <vector>

#include "absl/algorithm/container.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "libs/common/auth/dev_key.h"
#include "libs/common/log.h"
#include "libs/common/pii/cipher.h"
#include "libs/common/status_macros.h"

namespace crm {

namespace {

// Every flag and variable name a Setting has asked for.
struct ReadNames {
  absl::Mutex mu;
  absl::flat_hash_set<std::string> flags ABSL_GUARDED_BY(mu);
  absl::flat_hash_set<std::string> variables ABSL_GUARDED_BY(mu);
};

ReadNames& Read() {
  static ReadNames names;
  return names;
}

void NoteRead(const std::string& flag, const std::string& env) {
  ReadNames& read = Read();
  absl::MutexLock lock(&read.mu);
  read.flags.insert(flag);
  read.variables.insert(env);
}

// The flag's value (the last occurrence wins, so a flag appended to a
// command line overrides an earlier default), else nullopt.
std::optional<std::string> FlagValue(int argc, char** argv, const std::string& flag) {
  const std::string prefix = absl::StrCat("--", flag, "=");
  for (int i = argc - 1; i >= 1; --i) {
    if (absl::StartsWith(argv[i], prefix)) return std::string(argv[i] + prefix.size());
  }
  return std::nullopt;
}

std::string EnvValue(const std::string& env) {
  const char* v = std::getenv(env.c_str());
  return v == nullptr ? "" : v;
}

}  // namespace

UnreadSettings FindUnreadSettings(const std::vector<std::string>& args) {
  ReadNames& read = Read();
  absl::MutexLock lock(&read.mu);
  UnreadSettings unread;
  for (size_t i = 1; i < args.size(); ++i) {
    absl::string_view name = args[i];
    if (!absl::ConsumePrefix(&name, "--")) continue;
    name = name.substr(0, name.find('='));
    if (!read.flags.contains(name)) unread.flags.emplace_back(name);
  }
  for (char** e = environ; *e != nullptr; ++e) {
    const absl::string_view var = *e;
    const absl::string_view name = var.substr(0, var.find('='));
    if (absl::StartsWith(name, "CRM_") && !read.variables.contains(name)) {
      unread.variables.emplace_back(name);
    }
  }
  return unread;
}

absl::Status CheckUnreadSettings(const std::vector<std::string>& args) {
  const UnreadSettings unread = FindUnreadSettings(args);
  for (const auto& name : unread.variables) log::Warn("unknown setting", {{"variable", name}});
  if (unread.flags.empty()) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("unknown flag --", absl::StrJoin(unread.flags, ", --")));
}

std::string Setting(int argc, char** argv, const std::string& flag, const std::string& env,
                    const std::string& fallback) {
  NoteRead(flag, env);
  if (auto v = FlagValue(argc, argv, flag)) return *std::move(v);
  if (std::string v = EnvValue(env); !v.empty()) return v;
  return fallback;
}

namespace {

// The whole file, or NOT_FOUND naming the setting.
absl::StatusOr<std::string> ReadSettingFile(const std::string& flag, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(flag, ": cannot read ", path));
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

}  // namespace

absl::StatusOr<std::string> FileSetting(int argc, char** argv, const std::string& flag,
                                        const std::string& env) {
  const std::string path = Setting(argc, argv, flag, env, "");
  if (path.empty()) return std::string();
  CRM_ASSIGN_OR_RETURN(std::string content, ReadSettingFile(flag, path));
  // A Secret or ConfigMap mounted empty must not turn TLS, mTLS or a
  // token key off, or connect to Kafka without its settings.
  if (absl::StripAsciiWhitespace(content).empty()) {
    return absl::InvalidArgumentError(absl::StrCat(flag, ": the file is empty"));
  }
  return content;
}

namespace {

struct NamedSetting {
  std::string name;  // the flag it came from, for errors
  std::string value;
  bool from_file = false;
};

// A secret given in the setting itself or in a file (`flag`-file,
// `env`_FILE). Flags come before the environment, as for every setting;
// both forms at one level are refused: which one would win is a guess
// nobody should have to make. A file's content comes with `from_file`, for
// callers that trim what an editor leaves at its end.
absl::StatusOr<NamedSetting> InlineOrFileSetting(int argc, char** argv, const std::string& flag,
                                                 const std::string& env) {
  const std::string file_flag = flag + "-file";
  const std::string file_env = env + "_FILE";
  NoteRead(flag, env);
  NoteRead(file_flag, file_env);
  std::optional<std::string> inline_value = FlagValue(argc, argv, flag);
  std::optional<std::string> path = FlagValue(argc, argv, file_flag);
  if (!inline_value && !path) {
    if (std::string v = EnvValue(env); !v.empty()) inline_value = std::move(v);
    if (std::string v = EnvValue(file_env); !v.empty()) path = std::move(v);
  }
  if (inline_value && path) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, " and ", file_flag, ": set one or the other, not both"));
  }
  if (!path || path->empty()) return NamedSetting{flag, inline_value.value_or(""), false};
  auto content = ReadSettingFile(file_flag, *path);
  if (!content.ok()) return content.status();
  return NamedSetting{file_flag, *std::move(content), true};
}

bool Truthy(absl::string_view v) { return v == "1" || v == "true" || v == "yes"; }

}  // namespace

absl::StatusOr<KafkaSettings> KafkaConnectionSetting(int argc, char** argv) {
  CRM_ASSIGN_OR_RETURN(const std::string text, FileSetting(argc, argv, "kafka-properties-file",
                                                           "CRM_KAFKA_PROPERTIES_FILE"));
  return ParseKafkaConnectionProperties(text, "kafka-properties-file");
}

absl::StatusOr<std::string> Hs256KeySetting(int argc, char** argv) {
  auto hs256 = InlineOrFileSetting(argc, argv, "jwt-hs256-key", "CRM_JWT_HS256_KEY");
  if (!hs256.ok()) return hs256.status();
  if (!hs256->from_file) return hs256->value;  // taken as it is, as token issuers take it
  // Key files written with echo end in a newline that is not part of the key.
  std::string key(absl::StripTrailingAsciiWhitespace(hs256->value));
  if (key.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(hs256->name, ": the file is empty"));
  }
  return key;
}

namespace {

// HMAC pads a key shorter than its block with zeros and hashes a longer
// one: a key that differs in bytes may sign as the public one does (the
// development key and a NUL a key file ends in).
bool SignsAsTheDevKey(absl::string_view key) {
  constexpr absl::string_view kProbe = "crm development key probe";
  return pii::Hmac(key, kProbe) == pii::Hmac(absl::string_view(auth::kDevHs256Key), kProbe);
}

absl::Status LoadSecurity(int argc, char** argv, ServiceConfig& c) {
  CRM_ASSIGN_OR_RETURN(c.jwt_hs256_key, Hs256KeySetting(argc, argv));
  auto rs256 =
      FileSetting(argc, argv, "jwt-rs256-public-key-file", "CRM_JWT_RS256_PUBLIC_KEY_FILE");
  if (!rs256.ok()) return rs256.status();
  c.jwt_rs256_public_key_pem = *std::move(rs256);
  if (c.jwt_hs256_key.empty() && c.jwt_rs256_public_key_pem.empty()) {
    return absl::InvalidArgumentError(
        "no token key: set --jwt-hs256-key-file (CRM_JWT_HS256_KEY_FILE) or "
        "--jwt-rs256-public-key-file (CRM_JWT_RS256_PUBLIC_KEY_FILE); ./crm up uses the "
        "development key");
  }
  c.jwt_issuer = Setting(argc, argv, "jwt-issuer", "CRM_JWT_ISSUER", auth::kDefaultIssuer);
  c.jwt_audience = Setting(argc, argv, "jwt-audience", "CRM_JWT_AUDIENCE", auth::kDefaultAudience);

  for (auto [flag, env, out] :
       {std::make_tuple("tls-cert", "CRM_TLS_CERT", &c.tls_cert_pem),
        std::make_tuple("tls-key", "CRM_TLS_KEY", &c.tls_key_pem),
        std::make_tuple("tls-client-ca", "CRM_TLS_CLIENT_CA", &c.tls_client_ca_pem)}) {
    auto pem = FileSetting(argc, argv, flag, env);
    if (!pem.ok()) return pem.status();
    *out = *std::move(pem);
  }
  if (c.tls_cert_pem.empty() != c.tls_key_pem.empty()) {
    return absl::InvalidArgumentError("tls-cert and tls-key: set both or neither");
  }
  if (!c.tls_client_ca_pem.empty() && c.tls_cert_pem.empty()) {
    return absl::InvalidArgumentError("tls-client-ca: needs tls-cert and tls-key");
  }
  // Personal data: the master key wraps every customer's data key.
  auto master = MasterKeyHex(argc, argv);
  if (!master.ok()) return master.status();
  c.pii_master_key_hex = *std::move(master);
  auto previous = PreviousMasterKeys(argc, argv);
  if (!previous.ok()) return previous.status();
  c.pii_previous_master_keys = *std::move(previous);

  c.allow_insecure = Truthy(Setting(argc, argv, "allow-insecure", "CRM_ALLOW_INSECURE", ""));
  for (int i = 1; i < argc; ++i) {
    if (absl::string_view(argv[i]) == "--allow-insecure") c.allow_insecure = true;
  }
  if (IsLoopbackAddress(c.listen)) return absl::OkStatus();
  // --allow-insecure is for plaintext behind a mesh that encrypts; the
  // development keys are public whatever the transport, so no flag lets
  // them reach the network (an empty key setting falls back to them).
  if (c.tls_cert_pem.empty() && !c.allow_insecure) {
    return absl::FailedPreconditionError(absl::StrCat(
        "refusing plaintext gRPC on non-loopback address ", c.listen,
        ": set --tls-cert and --tls-key (and --tls-client-ca for mTLS), or --allow-insecure "
        "behind a mesh that encrypts"));
  }
  if (SignsAsTheDevKey(c.jwt_hs256_key)) {
    return absl::FailedPreconditionError(
        absl::StrCat("refusing the public development token key on non-loopback address ", c.listen,
                     ": set a key of your own"));
  }
  if (c.pii_master_key_hex == auth::kDevPiiMasterKeyHex) {
    return absl::FailedPreconditionError(
        absl::StrCat("refusing the public development PII master key on non-loopback address ",
                     c.listen, ": set --master-key-file (CRM_MASTER_KEY_FILE)"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::string> MasterKeyHex(int argc, char** argv) {
  auto setting = InlineOrFileSetting(argc, argv, "master-key", "CRM_MASTER_KEY");
  if (!setting.ok()) return setting.status();
  // Lowercase: one key has one spelling, for the refusal of the public one.
  std::string hex = absl::AsciiStrToLower(absl::StripAsciiWhitespace(setting->value));
  // A Secret mounted empty is not "no key given": that is the public
  // development key, which would seal everything on a loopback listener.
  if (hex.empty() && setting->from_file) {
    return absl::InvalidArgumentError(absl::StrCat(setting->name, ": the file is empty"));
  }
  if (hex.empty()) hex = auth::kDevPiiMasterKeyHex;
  if (auto key = pii::KeyFromHex(hex); !key.ok()) {
    // Named as given (master-key-file for a mounted Secret), never echoed.
    return absl::InvalidArgumentError(absl::StrCat(setting->name, ": ", key.status().message()));
  }
  return hex;
}

absl::StatusOr<std::vector<pii::Key>> PreviousMasterKeys(int argc, char** argv) {
  auto read = InlineOrFileSetting(argc, argv, "previous-master-keys", "CRM_PREVIOUS_MASTER_KEYS");
  if (!read.ok()) return read.status();
  const std::string& setting = read->name;
  const std::string& list = read->value;
  std::vector<pii::Key> keys;
  int n = 0;
  for (absl::string_view hex :
       absl::StrSplit(list, absl::ByAnyChar(",\n"), absl::SkipWhitespace())) {
    ++n;
    auto key = pii::KeyFromHex(absl::StripAsciiWhitespace(hex));
    // The key itself is not echoed: it is a secret, even when malformed.
    if (!key.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(setting, ": key ", n, ": ", key.status().message()));
    }
    keys.push_back(*key);
  }
  return keys;
}

bool IsLoopbackAddress(const std::string& listen) {
  absl::string_view host = listen;
  if (absl::StartsWith(host, "unix:")) return true;
  if (const size_t colon = host.rfind(':'); colon != absl::string_view::npos) {
    host = host.substr(0, colon);
  }
  if (host == "localhost" || host == "[::1]") return true;
  // 127.0.0.0/8 as a literal address only: "127.example.com" is a name
  // that may resolve anywhere.
  std::vector<absl::string_view> octets = absl::StrSplit(host, '.');
  if (octets.size() != 4 || octets[0] != "127") return false;
  for (absl::string_view octet : octets) {
    int value = 0;
    if (octet.empty() || octet.size() > 3 || !absl::c_all_of(octet, absl::ascii_isdigit) ||
        !absl::SimpleAtoi(octet, &value) || value > 255) {
      return false;
    }
  }
  return true;
}

absl::StatusOr<ServiceConfig> LoadServiceConfig(int argc, char** argv,
                                                const std::string& service_name,
                                                const std::string& default_listen) {
  for (int i = 1; i < argc; ++i) {
    const absl::string_view arg = argv[i];
    if (arg == "--allow-insecure") continue;  // the one flag without a value
    if (!absl::StartsWith(arg, "--") || arg.find('=') == absl::string_view::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("unexpected argument '", arg, "': flags are --name=value"));
    }
  }
  ServiceConfig c;
  c.service_name = service_name;
  c.args.assign(argv, argv + argc);
  c.listen = Setting(argc, argv, "listen", "CRM_LISTEN", default_listen);
  c.data_dir =
      Setting(argc, argv, "data-dir", "CRM_DATA_DIR", absl::StrCat("./data/", service_name));
  // "/srv/leads/" is "/srv/leads": the default backup dir is its sibling,
  // never a directory inside the data it protects.
  while (c.data_dir.size() > 1 && c.data_dir.back() == '/') c.data_dir.pop_back();
  c.backup_dir = Setting(argc, argv, "backup-dir", "CRM_BACKUP_DIR", c.data_dir + "-backups");
  const std::string keep = Setting(argc, argv, "backup-keep", "CRM_BACKUP_KEEP", "0");
  if (!absl::SimpleAtoi(keep, &c.backup_keep) || c.backup_keep > 10'000) {
    return absl::InvalidArgumentError("backup-keep must be 0 (keep all) .. 10000");
  }
  c.brokers = Setting(argc, argv, "brokers", "CRM_KAFKA_BROKERS", "");
  if (c.brokers.empty()) {
    return absl::InvalidArgumentError(
        "no Kafka brokers: set --brokers or CRM_KAFKA_BROKERS (./crm up starts the "
        "embedded broker and sets it)");
  }
  // None by default: librdkafka sets up a fresh codec context (LZ4: about
  // 130 KiB allocated and freed) for every partition's message set, and the
  // relay's sets are a few small events each, so the CPU buys little.
  // Stack bench, CaptureLead, 4 interleaved pairs: lz4 735-919 us of machine
  // CPU per call, none 600-724 us.
  c.kafka_compression = Setting(argc, argv, "kafka-compression", "CRM_KAFKA_COMPRESSION", "none");
  constexpr absl::string_view kCodecs[] = {"none", "gzip", "snappy", "lz4", "zstd"};
  if (std::find(std::begin(kCodecs), std::end(kCodecs), c.kafka_compression) == std::end(kCodecs)) {
    return absl::InvalidArgumentError(
        "kafka-compression: must be one of none, gzip, snappy, lz4, zstd");
  }
  CRM_ASSIGN_OR_RETURN(c.kafka_connection, KafkaConnectionSetting(argc, argv));
  SetKafkaConnectionSettings(c.kafka_connection);
  c.metrics_listen = Setting(argc, argv, "metrics-listen", "CRM_METRICS_LISTEN", "");
  const std::string drain = Setting(argc, argv, "shutdown-drain-ms", "CRM_SHUTDOWN_DRAIN_MS", "0");
  if (!absl::SimpleAtoi(drain, &c.shutdown_drain_ms) || c.shutdown_drain_ms < 0 ||
      c.shutdown_drain_ms > 60'000) {
    return absl::InvalidArgumentError("shutdown-drain-ms must be 0..60000");
  }
  const std::string threads = Setting(argc, argv, "worker-threads", "CRM_WORKER_THREADS", "16");
  if (!absl::SimpleAtoi(threads, &c.worker_threads) || c.worker_threads < 1 ||
      c.worker_threads > 1024) {
    return absl::InvalidArgumentError("worker-threads must be 1..1024");
  }
  const std::string queued =
      Setting(argc, argv, "max-queued-calls", "CRM_MAX_QUEUED_CALLS", "4096");
  if (!absl::SimpleAtoi(queued, &c.max_queued_calls) || c.max_queued_calls < 1 ||
      c.max_queued_calls > 1'000'000) {
    return absl::InvalidArgumentError("max-queued-calls must be 1..1000000");
  }
  if (auto st = LoadSecurity(argc, argv, c); !st.ok()) return st;
  return c;
}

}  // namespace crm
