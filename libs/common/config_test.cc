#include "libs/common/config.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "libs/common/auth/dev_key.h"
#include "libs/common/testing/temp_dir.h"

namespace crm {
namespace {

// The leads service's settings from `flags` alone.
absl::StatusOr<ServiceConfig> LoadWithout(std::vector<std::string> flags) {
  std::vector<std::string> args = {"crm-leads", "--brokers=127.0.0.1:9092"};
  args.insert(args.end(), flags.begin(), flags.end());
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  return LoadServiceConfig(static_cast<int>(argv.size()), argv.data(), "leads", "127.0.0.1:7001");
}

// With a token key of the test's.
absl::StatusOr<ServiceConfig> Load(std::vector<std::string> flags) {
  flags.insert(flags.begin(), "--jwt-hs256-key=test-key-of-enough-length-0123456789");
  return LoadWithout(std::move(flags));
}

const std::string kA(64, 'a');
const std::string kB(64, 'b');

TEST(ConfigTest, PreviousMasterKeysComeFromAFlagTheEnvironmentOrAFile) {
  auto none = Load({});
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_TRUE(none->pii_previous_master_keys.empty());
  EXPECT_TRUE(none->PiiMasterKeys().previous.empty());

  auto flag = Load({"--master-key=" + std::string(64, 'c'),
                    absl::StrCat("--previous-master-keys=", kA, ", ", kB)});
  ASSERT_TRUE(flag.ok()) << flag.status();
  ASSERT_EQ(flag->pii_previous_master_keys.size(), 2u);
  EXPECT_EQ(flag->pii_previous_master_keys[0], *pii::KeyFromHex(kA));
  EXPECT_EQ(flag->pii_previous_master_keys[1], *pii::KeyFromHex(kB));
  EXPECT_EQ(flag->PiiMasterKeys().current, *pii::KeyFromHex(std::string(64, 'c')));
  EXPECT_EQ(flag->PiiMasterKeys().previous, flag->pii_previous_master_keys);

  setenv("CRM_PREVIOUS_MASTER_KEYS", kB.c_str(), 1);
  auto env = Load({});
  unsetenv("CRM_PREVIOUS_MASTER_KEYS");
  ASSERT_TRUE(env.ok()) << env.status();
  ASSERT_EQ(env->pii_previous_master_keys.size(), 1u);
  EXPECT_EQ(env->pii_previous_master_keys[0], *pii::KeyFromHex(kB));

  testing::TempDir dir;
  const std::string file = dir.Sub("previous");
  std::ofstream(file) << kA << "\n" << kB << "\n\n";
  auto from_file = Load({"--previous-master-keys-file=" + file});
  ASSERT_TRUE(from_file.ok()) << from_file.status();
  EXPECT_EQ(from_file->pii_previous_master_keys.size(), 2u);
}

TEST(ConfigTest, AnInvalidPreviousMasterKeyIsRefusedNamingTheSetting) {
  auto bad = Load({absl::StrCat("--previous-master-keys=", kA, ",not-a-key")});
  ASSERT_FALSE(bad.ok());
  EXPECT_TRUE(absl::IsInvalidArgument(bad.status()));
  EXPECT_TRUE(absl::StrContains(bad.status().message(), "previous-master-keys: key 2"))
      << bad.status();
  EXPECT_FALSE(absl::StrContains(bad.status().message(), "not-a-key")) << "keys are not echoed";

  testing::TempDir dir;
  const std::string file = dir.Sub("previous");
  std::ofstream(file) << std::string(63, 'a') << "\n";
  auto bad_file = Load({"--previous-master-keys-file=" + file});
  ASSERT_FALSE(bad_file.ok());
  EXPECT_TRUE(absl::StrContains(bad_file.status().message(), "previous-master-keys-file"))
      << bad_file.status();

  auto missing = Load({"--previous-master-keys-file=" + dir.Sub("absent")});
  EXPECT_FALSE(missing.ok());
}

TEST(ConfigTest, AnInvalidMasterKeyIsRefusedNamingTheSettingItCameFrom) {
  auto inline_key = Load({"--master-key=" + std::string(63, 'a')});
  EXPECT_TRUE(absl::IsInvalidArgument(inline_key.status()));
  EXPECT_TRUE(absl::StartsWith(inline_key.status().message(), "master-key: "))
      << inline_key.status();

  testing::TempDir dir;
  const std::string file = dir.Sub("key");
  std::ofstream(file) << std::string(63, 'a') << "\n";
  auto from_file = Load({"--master-key-file=" + file});
  EXPECT_TRUE(absl::IsInvalidArgument(from_file.status()));
  EXPECT_TRUE(absl::StartsWith(from_file.status().message(), "master-key-file: "))
      << from_file.status();
  EXPECT_FALSE(absl::StrContains(from_file.status().message(), std::string(63, 'a')))
      << "keys are not echoed";
}

TEST(ConfigTest, ASecretGivenInlineAndAsAFileIsRefused) {
  testing::TempDir dir;
  const std::string file = dir.Sub("key");
  std::ofstream(file) << kA << "\n";
  auto both = Load({"--master-key=" + kB, "--master-key-file=" + file});
  EXPECT_EQ(both.status(), absl::InvalidArgumentError(
                               "master-key and master-key-file: set one or the other, not both"));
  auto from_file = Load({"--master-key-file=" + file});
  ASSERT_TRUE(from_file.ok()) << from_file.status();
  EXPECT_EQ(from_file->PiiMasterKeys().current, *pii::KeyFromHex(kA));
  // The token key too: Load passes --jwt-hs256-key.
  EXPECT_TRUE(absl::IsInvalidArgument(Load({"--jwt-hs256-key-file=" + file}).status()));

  // Flags come before the environment: a flag given inline wins over a
  // file named in the environment, as for every setting.
  setenv("CRM_MASTER_KEY_FILE", file.c_str(), 1);
  auto flag_wins = Load({"--master-key=" + kB});
  auto env_file = Load({});
  unsetenv("CRM_MASTER_KEY_FILE");
  ASSERT_TRUE(flag_wins.ok()) << flag_wins.status();
  EXPECT_EQ(flag_wins->PiiMasterKeys().current, *pii::KeyFromHex(kB));
  ASSERT_TRUE(env_file.ok()) << env_file.status();
  EXPECT_EQ(env_file->PiiMasterKeys().current, *pii::KeyFromHex(kA));
}

TEST(ConfigTest, KafkaConnectionPropertiesComeFromAFile) {
  testing::TempDir dir;
  const std::string file = dir.Sub("kafka.properties");
  std::ofstream(file) << "security.protocol=ssl\nssl.ca.location=/etc/crm/kafka/ca.crt\n";
  auto loaded = Load({"--kafka-properties-file=" + file});
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(
      loaded->kafka_connection,
      (KafkaSettings{{"security.protocol", "ssl"}, {"ssl.ca.location", "/etc/crm/kafka/ca.crt"}}));
  std::ofstream(file) << "enable.idempotence=false\n";
  auto refused = Load({"--kafka-properties-file=" + file});
  EXPECT_TRUE(absl::IsInvalidArgument(refused.status())) << refused.status();
  EXPECT_EQ(refused.status().message().rfind("kafka-properties-file line 1:", 0), 0u)
      << refused.status();
  EXPECT_TRUE(absl::IsNotFound(Load({"--kafka-properties-file=" + dir.Sub("none")}).status()));
  ASSERT_TRUE(Load({}).ok());  // and no connection settings again for the tests after
}

// crmctl signs tokens with the key the services check them with: read by
// the same rules (a flag before the environment, whichever its form), and
// an empty key file is an error, not a fall back to another key.
TEST(ConfigTest, TheTokenKeyIsReadByTheServicesRules) {
  testing::TempDir dir;
  const std::string file = dir.Sub("key");
  std::ofstream(file) << "key-from-the-file\n";
  const std::string empty = dir.Sub("empty");
  std::ofstream(empty) << "\n";
  auto read = [](std::vector<std::string> args) {
    args.insert(args.begin(), "crmctl");
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    return Hs256KeySetting(static_cast<int>(argv.size()), argv.data());
  };
  setenv("CRM_JWT_HS256_KEY", "key-from-the-environment", 1);
  auto flag_file = read({"--jwt-hs256-key-file=" + file});
  auto env_inline = read({});
  auto blank = read({"--jwt-hs256-key-file=" + empty});
  unsetenv("CRM_JWT_HS256_KEY");
  ASSERT_TRUE(flag_file.ok()) << flag_file.status();
  EXPECT_EQ(*flag_file, "key-from-the-file");
  ASSERT_TRUE(env_inline.ok()) << env_inline.status();
  EXPECT_EQ(*env_inline, "key-from-the-environment");
  EXPECT_EQ(blank.status(), absl::InvalidArgumentError("jwt-hs256-key-file: the file is empty"));
  auto none = read({});
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_EQ(*none, "");
}

// A file setting that names an empty file (a Secret mounted empty) stops
// the start: read as unset, it would turn mTLS or TLS off, drop the RS256
// key, or connect to Kafka without its settings.
TEST(ConfigTest, ANamedFileThatIsEmptyStopsTheStart) {
  testing::TempDir dir;
  const std::string empty = dir.Sub("empty");
  std::ofstream(empty) << " \n";
  const std::string pem = dir.Sub("pem");
  std::ofstream(pem) << "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
  for (const auto& [flags, named] : std::vector<std::pair<std::vector<std::string>, std::string>>{
           {{"--tls-cert=" + pem, "--tls-key=" + pem, "--tls-client-ca=" + empty}, "tls-client-ca"},
           {{"--tls-cert=" + empty, "--tls-key=" + empty, "--allow-insecure"}, "tls-cert"},
           {{"--jwt-rs256-public-key-file=" + empty}, "jwt-rs256-public-key-file"},
           {{"--kafka-properties-file=" + empty}, "kafka-properties-file"},
           // Not read as no key given (the public development key on loopback).
           {{"--master-key-file=" + empty}, "master-key-file"}}) {
    auto loaded = Load(flags);
    EXPECT_EQ(loaded.status(), absl::InvalidArgumentError(named + ": the file is empty")) << named;
  }
  // A previous-keys file emptied at the end of a rotation: none left.
  auto ended = Load({"--previous-master-keys-file=" + empty});
  ASSERT_TRUE(ended.ok()) << ended.status();
  EXPECT_TRUE(ended->pii_previous_master_keys.empty());
}

// A key file written with echo ends in a newline that is not part of the
// key; a key given inline is taken byte for byte, as token issuers take it.
TEST(ConfigTest, OnlyAKeyFileLosesItsTrailingNewline) {
  const std::string key = "test-key-of-enough-length-0123456789";
  testing::TempDir dir;
  const std::string file = dir.Sub("key");
  std::ofstream(file) << key << "\n";
  std::vector<std::string> args = {"crm-leads", "--brokers=127.0.0.1:9092",
                                   "--jwt-hs256-key-file=" + file};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  auto from_file =
      LoadServiceConfig(static_cast<int>(argv.size()), argv.data(), "leads", "127.0.0.1:7001");
  ASSERT_TRUE(from_file.ok()) << from_file.status();
  EXPECT_EQ(from_file->jwt_hs256_key, key);

  setenv("CRM_JWT_HS256_KEY", (key + " \n").c_str(), 1);
  args.pop_back();
  argv.pop_back();
  auto from_env =
      LoadServiceConfig(static_cast<int>(argv.size()), argv.data(), "leads", "127.0.0.1:7001");
  unsetenv("CRM_JWT_HS256_KEY");
  ASSERT_TRUE(from_env.ok()) << from_env.status();
  EXPECT_EQ(from_env->jwt_hs256_key, key + " \n");
}

// A misspelt flag or variable is found, not left at its default unseen.
TEST(ConfigTest, FlagsAndVariablesNothingReadAreFound) {
  setenv("CRM_KAFKA_COMPRESION", "lz4", 1);
  setenv("CRM_KAFKA_COMPRESSION", "zstd", 1);
  auto loaded = Load({"--worker-thread=4", "--metrics-listen=127.0.0.1:0"});
  unsetenv("CRM_KAFKA_COMPRESION");
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  setenv("CRM_KAFKA_COMPRESION", "lz4", 1);
  const UnreadSettings unread = FindUnreadSettings(loaded->args);
  unsetenv("CRM_KAFKA_COMPRESION");
  unsetenv("CRM_KAFKA_COMPRESSION");
  EXPECT_EQ(unread.flags, std::vector<std::string>{"worker-thread"});
  // Whatever else the environment of the test holds, only the misspelt one
  // of these two is unread.
  auto has = [&](const std::string& name) {
    return std::count(unread.variables.begin(), unread.variables.end(), name) == 1;
  };
  EXPECT_TRUE(has("CRM_KAFKA_COMPRESION"));
  EXPECT_FALSE(has("CRM_KAFKA_COMPRESSION"));
}

TEST(ConfigTest, TheDefaultBackupDirIsBesideADataDirGivenWithATrailingSlash) {
  auto slashed = Load({"--data-dir=/srv/crm/leads/"});
  ASSERT_TRUE(slashed.ok()) << slashed.status();
  EXPECT_EQ(slashed->data_dir, "/srv/crm/leads");
  EXPECT_EQ(slashed->backup_dir, "/srv/crm/leads-backups");
  auto root = Load({"--data-dir=/"});
  ASSERT_TRUE(root.ok()) << root.status();
  EXPECT_EQ(root->data_dir, "/");
}

TEST(ConfigTest, KafkaCompressionDefaultsToNoneAndRefusesUnknownCodecs) {
  auto plain = Load({});
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_EQ(plain->kafka_compression, "none");

  auto flag = Load({"--kafka-compression=zstd"});
  ASSERT_TRUE(flag.ok()) << flag.status();
  EXPECT_EQ(flag->kafka_compression, "zstd");

  setenv("CRM_KAFKA_COMPRESSION", "lz4", 1);
  auto env = Load({});
  unsetenv("CRM_KAFKA_COMPRESSION");
  ASSERT_TRUE(env.ok()) << env.status();
  EXPECT_EQ(env->kafka_compression, "lz4");

  auto bad = Load({"--kafka-compression=brotli"});
  ASSERT_FALSE(bad.ok());
  EXPECT_TRUE(absl::IsInvalidArgument(bad.status()));
  EXPECT_TRUE(absl::StrContains(bad.status().message(), "kafka-compression")) << bad.status();
}

TEST(ConfigTest, LoopbackIsALiteralLoopbackAddress) {
  EXPECT_TRUE(IsLoopbackAddress("127.0.0.1:50051"));
  EXPECT_TRUE(IsLoopbackAddress("127.1.2.3:1"));
  EXPECT_TRUE(IsLoopbackAddress("localhost:1"));
  EXPECT_TRUE(IsLoopbackAddress("[::1]:1"));
  EXPECT_TRUE(IsLoopbackAddress("unix:/run/crm.sock"));
  EXPECT_FALSE(IsLoopbackAddress("127.example.com:50051")) << "a name, resolving anywhere";
  EXPECT_FALSE(IsLoopbackAddress("127.0.0.1.example.com:1"));
  EXPECT_FALSE(IsLoopbackAddress("127.0.0.256:1"));
  EXPECT_FALSE(IsLoopbackAddress("0.0.0.0:1"));
  EXPECT_FALSE(IsLoopbackAddress("10.0.0.7:1"));
}

// --allow-insecure permits plaintext behind a mesh; the public development
// keys stay refused off loopback whatever the flag says.
TEST(ConfigTest, AllowInsecurePermitsPlaintextButNeverTheDevelopmentKeys) {
  const std::string master = "--master-key=" + kA;
  auto plaintext = Load({"--listen=0.0.0.0:7001", master});
  EXPECT_TRUE(absl::IsFailedPrecondition(plaintext.status())) << plaintext.status();
  auto meshed = Load({"--listen=0.0.0.0:7001", master, "--allow-insecure"});
  EXPECT_TRUE(meshed.ok()) << meshed.status();
  auto dev_master = Load({"--listen=0.0.0.0:7001", "--allow-insecure"});
  EXPECT_TRUE(absl::IsFailedPrecondition(dev_master.status())) << dev_master.status();
  EXPECT_TRUE(absl::StrContains(dev_master.status().message(), "PII master key"));
  // Hex in capitals is the same key.
  auto dev_master_upper =
      Load({"--listen=0.0.0.0:7001", "--allow-insecure",
            "--master-key=" + absl::AsciiStrToUpper(auth::kDevPiiMasterKeyHex)});
  EXPECT_TRUE(absl::IsFailedPrecondition(dev_master_upper.status())) << dev_master_upper.status();
  auto empty_master = Load({"--listen=0.0.0.0:7001", "--allow-insecure", "--master-key="});
  EXPECT_TRUE(absl::IsFailedPrecondition(empty_master.status())) << empty_master.status();
  auto dev_token = Load({"--listen=0.0.0.0:7001", master, "--allow-insecure",
                         std::string("--jwt-hs256-key=") + auth::kDevHs256Key});
  EXPECT_TRUE(absl::IsFailedPrecondition(dev_token.status())) << dev_token.status();
  // HMAC pads short keys with zeros: a key file holding the development
  // key and a NUL signs as the development key does.
  testing::TempDir dir;
  const std::string padded = dir.Sub("padded-key");
  std::ofstream(padded, std::ios::binary) << auth::kDevHs256Key << '\0';
  auto dev_token_padded = LoadWithout(
      {"--listen=0.0.0.0:7001", master, "--allow-insecure", "--jwt-hs256-key-file=" + padded});
  EXPECT_TRUE(absl::IsFailedPrecondition(dev_token_padded.status())) << dev_token_padded.status();
  EXPECT_TRUE(Load({"--listen=127.0.0.1:7001"}).ok()) << "loopback: development keys are fine";
}

}  // namespace
}  // namespace crm
