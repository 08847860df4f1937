#pragma once

#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "crm/v1/admin.grpc.pb.h"
#include "google/protobuf/any.pb.h"
#include "libs/common/backup.h"
#include "libs/common/blocking_executor.h"
#include "libs/common/database.h"
#include "libs/common/event_store.h"
#include "libs/common/pii/key_vault.h"

namespace crm {

// Records a service built about a customer beyond its own events, for the
// first page of an export (CustomerExport.derived).
using ExportDerived = std::function<absl::StatusOr<std::vector<google::protobuf::Any>>(
    const std::string& customer_id)>;

// The checks of EraseCustomer: a customer id as the services take them
// (1-64 bytes of printable ASCII) and a reason that is a reference to the
// request (letters, digits and a few marks; no words about the person).
absl::Status CheckEraseCustomerRequest(const crm::v1::EraseCustomerRequest& request);

// Where ExportCustomer's page starts in the log of `service`: after this
// position, 0 for the first page. INVALID_ARGUMENT for a bad customer id
// or a token that is not one of ExportPageToken(request, service, ...).
absl::StatusOr<uint64_t> ExportStartsAfter(const crm::v1::ExportCustomerRequest& request,
                                           absl::string_view service);
std::string ExportPageToken(const crm::v1::ExportCustomerRequest& request,
                            absl::string_view service, uint64_t after);

// crm.v1.AdminService over one service's database: online backups into
// `backup_dir`. Backups run on their own thread, one at a time, so they
// never hold up the service's API workers.
class AdminService final : public crm::v1::AdminService::CallbackService {
 public:
  // `events` is the service's event log (exports read it), `vault` its
  // data keys (exports open with them; erasure needs one that can erase);
  // both must outlive the service. `service` names it in exports.
  // `parts` are the service's other databases, backed up with `db`;
  // `derived` adds what the service built about a customer to exports.
  // `backup_keep`: after each backup, all but the newest this many are
  // deleted; 0 keeps every one.
  AdminService(Database& db, std::string backup_dir, std::string service, const EventStore& events,
               pii::KeyVault& vault, std::vector<BackupPart> parts = {},
               ExportDerived derived = nullptr, uint32_t backup_keep = 0)
      : db_(db),
        backup_dir_(std::move(backup_dir)),
        backup_keep_(backup_keep),
        service_(std::move(service)),
        events_(events),
        vault_(vault),
        parts_(std::move(parts)),
        derived_(std::move(derived)) {}

  // Cuts short the backup under way, and refuses later ones, CANCELLED:
  // called as the service shuts down.
  void StopBackups() { backup_stopper_.Stop(); }

  grpc::ServerUnaryReactor* CreateBackup(grpc::CallbackServerContext* ctx,
                                         const crm::v1::CreateBackupRequest* request,
                                         crm::v1::Backup* response) override;
  grpc::ServerUnaryReactor* ListBackups(grpc::CallbackServerContext* ctx,
                                        const crm::v1::ListBackupsRequest* request,
                                        crm::v1::ListBackupsResponse* response) override;
  grpc::ServerUnaryReactor* EraseCustomer(grpc::CallbackServerContext* ctx,
                                          const crm::v1::EraseCustomerRequest* request,
                                          crm::v1::EraseCustomerResponse* response) override;
  grpc::ServerUnaryReactor* ExportCustomer(grpc::CallbackServerContext* ctx,
                                           const crm::v1::ExportCustomerRequest* request,
                                           crm::v1::CustomerExport* response) override;

 private:
  // The caller's check, backups being on, and one backup operation at a
  // time, then `body` on the backup thread.
  template <typename Body>
  grpc::ServerUnaryReactor* Guarded(grpc::CallbackServerContext* ctx, Body body);

  Database& db_;
  const std::string backup_dir_;
  const uint32_t backup_keep_;
  const std::string service_;
  const EventStore& events_;
  pii::KeyVault& vault_;
  const std::vector<BackupPart> parts_;
  const ExportDerived derived_;
  std::mutex backup_mu_;  // BackupEngine allows one writer per directory
  BackupStopper backup_stopper_;
  // Off the API workers. Erasure and export have a thread of their own: a
  // backup copying a large database for minutes would outlast their
  // callers' deadlines.
  BlockingExecutor backup_executor_{1};
  BlockingExecutor privacy_executor_{1};
};

// Adds one page of a service's ExportCustomer reply to `whole` (empty for
// the first). Each page takes the customer's merges and erasure as they are
// when it is read: a page that disagrees with the first (a merge or an
// erasure between pages) is ABORTED, and the export must be read again
// from its first page, or it would miss a merged customer's earlier events
// or mix opened data with erased.
absl::Status JoinExportPage(crm::v1::CustomerExport& whole, crm::v1::CustomerExport page);

}  // namespace crm
