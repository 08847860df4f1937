#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "grpcpp/grpcpp.h"
#include "libs/common/admin_service.h"
#include "libs/common/audit/audit_log.h"
#include "libs/common/config.h"
#include "libs/common/database.h"
#include "libs/common/pii/key_vault.h"

namespace crm {

// What every service's main() shares: one ServerBuilder block with health,
// reflection, the auth and access-log interceptors (TLS when configured),
// then serve until SIGTERM or SIGINT and shut down in order (stop accepting,
// finish calls, run the shutdown hooks: flush relay, close RocksDB).
class ServiceHost {
 public:
  // Call first in main(), before any thread exists, so that the shutdown
  // signals are left to Run() and not delivered to a random thread.
  static void BlockShutdownSignals();

  explicit ServiceHost(ServiceConfig config);

  void AddService(grpc::Service* service) { services_.push_back(service); }
  // Serves crm.v1.AdminService for the service's database (online backups
  // into --backup-dir, with `parts`, its other databases), its event log
  // and data keys (export, erasure), and `derived` records (export).
  // Its databases are watched too: one whose writes RocksDB stopped (a
  // failed flush or WAL sync, Database::StoppedBy) makes health answer
  // NOT_SERVING, overall as well, so the orchestrator restarts the
  // service, which opens it again.
  void ServeAdmin(Database& db, const EventStore& events, pii::KeyVault& vault,
                  std::vector<BackupPart> parts = {}, ExportDerived derived = nullptr) {
    watched_.push_back(&db);
    for (const auto& part : parts) {
      if (part.db != nullptr) watched_.push_back(part.db);
    }
    admin_ =
        std::make_unique<AdminService>(db, config_.backup_dir, config_.service_name, events, vault,
                                       std::move(parts), std::move(derived), config_.backup_keep);
    AddService(admin_.get());
  }
  // Records every refused call (and repeated failed authentication) in
  // `store`, the service's event log, as audit events for crm.audit.v1.
  void RecordDenials(EventStore& store) {
    audit_ = std::make_unique<audit::AuditLog>(store, "crm/" + config_.service_name);
  }
  // Opens the sealed personal data in every response with `vault`'s keys
  // (libs/common/pii); `vault` must outlive Run().
  void OpenPii(const pii::KeyVault& vault) { pii_vault_ = &vault; }
  // Health reports `service` NOT_SERVING until `ready` first returns true
  // (polled every 200 ms), then SERVING for good; the overall status ("")
  // is SERVING throughout, unless storage stops (ServeAdmin). A pod rebuilding its views from the
  // log is then alive (liveness asks "") but takes no queries (readiness asks `service`); once
  // ready it stays so, as a replica that falls behind later still answers better than none.
  void GateReadiness(std::string service, std::function<bool()> ready) {
    gated_service_ = std::move(service);
    ready_ = std::move(ready);
  }
  // Hooks run after the server has stopped, in reverse order of adding.
  void OnShutdown(std::function<void()> hook) { hooks_.push_back(std::move(hook)); }

  absl::Status Run();

 private:
  ServiceConfig config_;
  std::vector<grpc::Service*> services_;
  std::unique_ptr<AdminService> admin_;
  std::unique_ptr<audit::AuditLog> audit_;
  const pii::KeyVault* pii_vault_ = nullptr;
  std::vector<std::function<void()>> hooks_;
  std::string gated_service_;
  std::function<bool()> ready_;
  std::vector<const Database*> watched_;
};

}  // namespace crm
