#pragma once

#include <mutex>
#include <string>

#include "crm/v1/admin.grpc.pb.h"
#include "libs/common/blocking_executor.h"
#include "libs/common/database.h"
#include "libs/common/pii/key_vault.h"

namespace crm {

// crm.v1.AdminService over one service's database: online backups into
// `backup_dir`. Backups run on their own thread, one at a time, so they
// never hold up the service's API workers.
class AdminService final : public crm::v1::AdminService::CallbackService {
 public:
  // `vault` (may be null: erasure unavailable) must outlive the service.
  AdminService(Database& db, std::string backup_dir, pii::KeyVault* vault = nullptr)
      : db_(db), backup_dir_(std::move(backup_dir)), vault_(vault) {}

  grpc::ServerUnaryReactor* CreateBackup(grpc::CallbackServerContext* ctx,
                                         const crm::v1::CreateBackupRequest* request,
                                         crm::v1::Backup* response) override;
  grpc::ServerUnaryReactor* ListBackups(grpc::CallbackServerContext* ctx,
                                        const crm::v1::ListBackupsRequest* request,
                                        crm::v1::ListBackupsResponse* response) override;
  grpc::ServerUnaryReactor* EraseCustomer(grpc::CallbackServerContext* ctx,
                                          const crm::v1::EraseCustomerRequest* request,
                                          crm::v1::EraseCustomerResponse* response) override;

 private:
  // The caller's check, backups being on, and one backup operation at a
  // time, then `body` on the backup thread.
  template <typename Body>
  grpc::ServerUnaryReactor* Guarded(grpc::CallbackServerContext* ctx, Body body);

  Database& db_;
  const std::string backup_dir_;
  pii::KeyVault* const vault_;
  std::mutex backup_mu_;  // BackupEngine allows one writer per directory
  BlockingExecutor executor_{1};
};

}  // namespace crm
