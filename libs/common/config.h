#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "libs/common/kafka.h"
#include "libs/common/pii/cipher.h"

namespace crm {

// Settings shared by the four services. Each comes from a flag
// (--listen=…), else from the environment (CRM_LISTEN), else the default.
struct ServiceConfig {
  std::string service_name;
  // The command line, to find flags nothing read (FindUnreadSettings).
  std::vector<std::string> args;
  std::string listen;       // --listen / CRM_LISTEN
  std::string data_dir;     // --data-dir / CRM_DATA_DIR
  std::string brokers;      // --brokers / CRM_KAFKA_BROKERS
  int worker_threads = 16;  // --worker-threads / CRM_WORKER_THREADS
  // --max-queued-calls / CRM_MAX_QUEUED_CALLS: calls waiting for a worker
  // beyond which new ones get RESOURCE_EXHAUSTED.
  int max_queued_calls = 4096;
  std::string metrics_listen;  // --metrics-listen / CRM_METRICS_LISTEN, empty = off
  // --shutdown-drain-ms / CRM_SHUTDOWN_DRAIN_MS: on SIGTERM the health
  // check says NOT_SERVING this long while calls are still served, so load
  // balancers stop sending before the listener closes; default 0.
  int64_t shutdown_drain_ms = 0;
  // --kafka-compression / CRM_KAFKA_COMPRESSION: codec of the events the
  // outbox relay produces (none, gzip, snappy, lz4, zstd); default none.
  std::string kafka_compression;
  // How the service's Kafka clients reach the brokers: the librdkafka
  // properties in --kafka-properties-file / CRM_KAFKA_PROPERTIES_FILE
  // (security.protocol, ssl.*, sasl.*; ParseKafkaConnectionProperties).
  // Loading makes them every Kafka client's (SetKafkaConnectionSettings).
  KafkaSettings kafka_connection;
  // --backup-dir / CRM_BACKUP_DIR: where AdminService.CreateBackup writes;
  // default <data-dir>-backups.
  std::string backup_dir;
  // --backup-keep / CRM_BACKUP_KEEP: after each backup, all but the newest
  // this many are deleted (PurgeBackups); 0 (default) keeps every backup.
  uint32_t backup_keep = 0;

  // Bearer tokens (docs/security.md). At least one key is required.
  // --jwt-hs256-key / CRM_JWT_HS256_KEY, or the contents of
  // --jwt-hs256-key-file / CRM_JWT_HS256_KEY_FILE.
  std::string jwt_hs256_key;
  // Contents of --jwt-rs256-public-key-file / CRM_JWT_RS256_PUBLIC_KEY_FILE.
  std::string jwt_rs256_public_key_pem;
  std::string jwt_issuer;    // --jwt-issuer / CRM_JWT_ISSUER, default crm-dev
  std::string jwt_audience;  // --jwt-audience / CRM_JWT_AUDIENCE, default crm

  // TLS, contents of PEM files: --tls-cert / CRM_TLS_CERT, --tls-key /
  // CRM_TLS_KEY; --tls-client-ca / CRM_TLS_CLIENT_CA turns on mTLS (client
  // certificates required and verified against it). Empty = plaintext.
  std::string tls_cert_pem;
  std::string tls_key_pem;
  std::string tls_client_ca_pem;
  // Master key of personal-data encryption, 64 hex digits: --master-key
  // / CRM_MASTER_KEY, or the contents of --master-key-file /
  // CRM_MASTER_KEY_FILE; default the development key (loopback only).
  // Validated on load.
  std::string pii_master_key_hex;
  pii::Key PiiMasterKey() const { return *pii::KeyFromHex(pii_master_key_hex); }
  // Master keys being rotated out (PreviousMasterKeys): stored keys still
  // wrapped under one of them are re-wrapped under the current one.
  std::vector<pii::Key> pii_previous_master_keys;
  pii::MasterKeys PiiMasterKeys() const { return {PiiMasterKey(), pii_previous_master_keys}; }
  // --allow-insecure / CRM_ALLOW_INSECURE=1: plaintext gRPC on a
  // non-loopback address (behind a mesh that encrypts). The development
  // keys are refused there with or without it.
  bool allow_insecure = false;
};

// True when `listen` (host:port) only accepts local connections.
bool IsLoopbackAddress(const std::string& listen);

absl::StatusOr<ServiceConfig> LoadServiceConfig(int argc, char** argv,
                                                const std::string& service_name,
                                                const std::string& default_listen);

// The master key of personal-data encryption, 64 hex digits:
// --master-key / CRM_MASTER_KEY, else the contents of --master-key-file /
// CRM_MASTER_KEY_FILE, else the development key. INVALID_ARGUMENT when it
// is not a key, NOT_FOUND when the file cannot be read.
absl::StatusOr<std::string> MasterKeyHex(int argc, char** argv);

// Previous master keys of personal-data encryption, 64 hex digits each:
// --previous-master-keys / CRM_PREVIOUS_MASTER_KEYS (comma-separated), or
// the contents of --previous-master-keys-file /
// CRM_PREVIOUS_MASTER_KEYS_FILE (one per line). INVALID_ARGUMENT naming
// the setting when one is not a key.
absl::StatusOr<std::vector<pii::Key>> PreviousMasterKeys(int argc, char** argv);

// The HS256 token key: --jwt-hs256-key / CRM_JWT_HS256_KEY as given, or the
// contents of --jwt-hs256-key-file / CRM_JWT_HS256_KEY_FILE without the
// whitespace an editor leaves at the end; flags before the environment,
// both forms at one level refused. "" when none is set; INVALID_ARGUMENT
// for a key file that holds nothing.
absl::StatusOr<std::string> Hs256KeySetting(int argc, char** argv);

// The Kafka connection properties of --kafka-properties-file /
// CRM_KAFKA_PROPERTIES_FILE, none when unset; INVALID_ARGUMENT naming the
// line of one that is not a connection setting or not valid.
absl::StatusOr<KafkaSettings> KafkaConnectionSetting(int argc, char** argv);

// The whole file a path setting names, "" when the setting is empty;
// NOT_FOUND naming the setting when the file cannot be read,
// INVALID_ARGUMENT when it holds nothing but blanks.
absl::StatusOr<std::string> FileSetting(int argc, char** argv, const std::string& flag,
                                        const std::string& env);

// A setting by the same rules, for service-specific options.
std::string Setting(int argc, char** argv, const std::string& flag, const std::string& env,
                    const std::string& fallback);

// The --flags in `args` and the CRM_* environment variables that no
// Setting of this process has asked for: misspelt or meant for another
// binary. Call once every setting has been read.
struct UnreadSettings {
  std::vector<std::string> flags;      // names, without "--"
  std::vector<std::string> variables;  // CRM_* names
};
UnreadSettings FindUnreadSettings(const std::vector<std::string>& args);

// FindUnreadSettings, acted on: each unread CRM_* variable is logged as a
// warning (a shell may export CRM_* for other tools, ./crm's CRM_BUILD_DIR
// say), an unread flag is INVALID_ARGUMENT naming it. Call in main() once
// every setting is read and before anything is opened or started.
absl::Status CheckUnreadSettings(const std::vector<std::string>& args);

}  // namespace crm
