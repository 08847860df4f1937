#pragma once

#include <functional>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "grpcpp/grpcpp.h"
#include "libs/common/config.h"

namespace crm {

// What every service's main() shares: one ServerBuilder block with health,
// reflection and the access-log interceptor, then serve until SIGTERM or
// SIGINT and shut down in order (stop accepting, finish calls, run the
// shutdown hooks: flush relay, close RocksDB).
class ServiceHost {
 public:
  // Call first in main(), before any thread exists, so that the shutdown
  // signals are left to Run() and not delivered to a random thread.
  static void BlockShutdownSignals();

  explicit ServiceHost(ServiceConfig config);

  void AddService(grpc::Service* service) { services_.push_back(service); }
  // Hooks run after the server has stopped, in reverse order of adding.
  void OnShutdown(std::function<void()> hook) { hooks_.push_back(std::move(hook)); }

  absl::Status Run();

 private:
  ServiceConfig config_;
  std::vector<grpc::Service*> services_;
  std::vector<std::function<void()>> hooks_;
};

}  // namespace crm
