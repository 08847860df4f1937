#pragma once

#include <string>

#include "absl/status/statusor.h"

namespace crm {

// Settings shared by the four services. Each comes from a flag
// (--listen=…), else from the environment (CRM_LISTEN), else the default.
struct ServiceConfig {
  std::string service_name;
  std::string listen;          // --listen / CRM_LISTEN
  std::string data_dir;        // --data-dir / CRM_DATA_DIR
  std::string brokers;         // --brokers / CRM_KAFKA_BROKERS
  int worker_threads = 16;     // --worker-threads / CRM_WORKER_THREADS
  std::string metrics_listen;  // --metrics-listen / CRM_METRICS_LISTEN, empty = off
};

absl::StatusOr<ServiceConfig> LoadServiceConfig(int argc, char** argv,
                                                const std::string& service_name,
                                                const std::string& default_listen);

// A setting by the same rules, for service-specific options.
std::string Setting(int argc, char** argv, const std::string& flag, const std::string& env,
                    const std::string& fallback);

}  // namespace crm
