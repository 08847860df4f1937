#include "libs/common/config.h"

#include <cstdlib>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace crm {

std::string Setting(int argc, char** argv, const std::string& flag, const std::string& env,
                    const std::string& fallback) {
  const std::string prefix = absl::StrCat("--", flag, "=");
  // The last occurrence wins, so a flag appended to a command line
  // overrides an earlier default.
  for (int i = argc - 1; i >= 1; --i) {
    if (absl::StartsWith(argv[i], prefix)) return std::string(argv[i] + prefix.size());
  }
  if (const char* v = std::getenv(env.c_str()); v != nullptr && *v != '\0') return v;
  return fallback;
}

absl::StatusOr<ServiceConfig> LoadServiceConfig(int argc, char** argv,
                                                const std::string& service_name,
                                                const std::string& default_listen) {
  for (int i = 1; i < argc; ++i) {
    const absl::string_view arg = argv[i];
    if (!absl::StartsWith(arg, "--") || arg.find('=') == absl::string_view::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("unexpected argument '", arg, "': flags are --name=value"));
    }
  }
  ServiceConfig c;
  c.service_name = service_name;
  c.listen = Setting(argc, argv, "listen", "CRM_LISTEN", default_listen);
  c.data_dir =
      Setting(argc, argv, "data-dir", "CRM_DATA_DIR", absl::StrCat("./data/", service_name));
  c.brokers = Setting(argc, argv, "brokers", "CRM_KAFKA_BROKERS", "");
  if (c.brokers.empty()) {
    return absl::InvalidArgumentError(
        "no Kafka brokers: set --brokers or CRM_KAFKA_BROKERS (./crm up starts the "
        "embedded broker and sets it)");
  }
  c.metrics_listen = Setting(argc, argv, "metrics-listen", "CRM_METRICS_LISTEN", "");
  const std::string threads = Setting(argc, argv, "worker-threads", "CRM_WORKER_THREADS", "16");
  if (!absl::SimpleAtoi(threads, &c.worker_threads) || c.worker_threads < 1 ||
      c.worker_threads > 1024) {
    return absl::InvalidArgumentError("worker-threads must be 1..1024");
  }
  return c;
}

}  // namespace crm
