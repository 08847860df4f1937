#include "libs/common/admin_service.h"

#include <filesystem>
#include <limits>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "libs/common/auth/auth_interceptor.h"
#include "libs/common/backup.h"
#include "libs/common/ids.h"
#include "libs/common/log.h"
#include "libs/common/page_token.h"
#include "libs/common/pii/field_sealer.h"
#include "libs/common/reply_budget.h"
#include "libs/common/request_context.h"
#include "libs/common/serve_unary.h"
#include "libs/common/status_macros.h"

namespace crm {

namespace {

void Fill(const BackupSummary& b, const std::string& dir, crm::v1::Backup* out) {
  out->set_backup_id(b.backup_id);
  if (b.created_at != absl::InfinitePast()) {
    *out->mutable_created_at() = ToProtoTimestamp(b.created_at);
  }
  out->set_size_bytes(b.size_bytes);
  out->set_file_count(b.file_count);
  out->set_backup_dir(dir);
  out->set_damaged(b.damaged);
}

// Customer ids are at most 64 bytes of printable ASCII, as the services
// take them (leads and sales mint and accept id characters; the service
// desk takes any printable id of an unknown customer): anything else names
// no customer. A NUL in particular would cut the erasure row's id short on
// the next start and erase another customer.
absl::Status CheckCustomerId(absl::string_view id) {
  if (id.empty()) return absl::InvalidArgumentError("customer_id: required");
  if (id.size() > 64) return absl::InvalidArgumentError("customer_id: longer than 64 bytes");
  for (const unsigned char c : id) {
    if (c < 0x21 || c > 0x7e) {
      return absl::InvalidArgumentError("customer_id: may contain only printable ASCII");
    }
  }
  return absl::OkStatus();
}

// The reason goes into the erasure record every service keeps, in clear and
// for good (the person's key is what the erasure destroys): a reference to
// the request, never words about the person, so no more than a reference
// needs.
absl::Status CheckReason(absl::string_view reason) {
  if (absl::StripAsciiWhitespace(reason).empty()) {
    return absl::InvalidArgumentError("reason: required");
  }
  if (reason.size() > 64) {
    return absl::InvalidArgumentError(
        "reason: longer than 64 bytes; give a reference to the request, not details");
  }
  for (const char c : reason) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && !absl::StrContains(" ._:/-#,", c)) {
      return absl::InvalidArgumentError(
          "reason: only letters, digits, spaces and . _ : / - # , (a reference to the request, "
          "e.g. \"GDPR request 2026-118\"; no names or addresses)");
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CheckEraseCustomerRequest(const crm::v1::EraseCustomerRequest& request) {
  CRM_RETURN_IF_ERROR(CheckCustomerId(request.customer_id()));
  return CheckReason(request.reason());
}

absl::StatusOr<uint64_t> ExportStartsAfter(const crm::v1::ExportCustomerRequest& request,
                                           absl::string_view service) {
  CRM_RETURN_IF_ERROR(CheckCustomerId(request.customer_id()));
  // The token is the position in this service's log the previous page
  // ended at: one of another service's export (the same request) is
  // refused, not read as a position in this log.
  CRM_ASSIGN_OR_RETURN(std::string position,
                       OpenPageToken(request, request.page_token(), "page_token"));
  absl::string_view at = position;
  if (at.empty()) return 0;
  if (!absl::ConsumePrefix(&at, absl::StrCat(service, "@"))) {
    return absl::InvalidArgumentError(
        absl::StrCat("page_token: not a token of this query; it continues another "
                     "service's export, not ",
                     service, "'s"));
  }
  if (at.empty()) return 0;  // "<service>@": the first page, as before
  uint64_t after = 0;
  if (!absl::SimpleAtoi(at, &after) || after == 0 ||
      after == std::numeric_limits<uint64_t>::max()) {
    return absl::InvalidArgumentError("page_token: malformed");
  }
  return after;
}

std::string ExportPageToken(const crm::v1::ExportCustomerRequest& request,
                            absl::string_view service, uint64_t after) {
  return SealPageToken(request, absl::StrCat(service, "@", after));
}

template <typename Body>
grpc::ServerUnaryReactor* AdminService::Guarded(grpc::CallbackServerContext* ctx, Body body) {
  return RunAsCaller(ctx, backup_executor_,
                     [this, body = std::move(body)](const auth::Principal&) -> absl::Status {
                       if (backup_dir_.empty()) {
                         return absl::FailedPreconditionError(
                             "backups are off: start the service with --backup-dir");
                       }
                       std::lock_guard<std::mutex> lock(backup_mu_);
                       return body();
                     });
}

grpc::ServerUnaryReactor* AdminService::CreateBackup(grpc::CallbackServerContext* ctx,
                                                     const crm::v1::CreateBackupRequest*,
                                                     crm::v1::Backup* response) {
  return Guarded(ctx, [this, response]() -> absl::Status {
    auto backup = crm::CreateBackup(db_, backup_dir_, parts_, &backup_stopper_);
    if (!backup.ok()) return backup.status();
    Fill(*backup, backup_dir_, response);
    if (backup_keep_ > 0) {
      // The backup is taken whatever the purge does: a failed purge is
      // logged and tried again after the next backup.
      auto purged = crm::PurgeBackups(backup_dir_, backup_keep_);
      if (!purged.ok()) {
        log::Error("old backups not purged",
                   {{"backup_dir", backup_dir_}, {"error", purged.status().ToString()}});
      } else if (*purged > 0) {
        log::Info("old backups purged", {{"backup_dir", backup_dir_},
                                         {"deleted", absl::StrCat(*purged)},
                                         {"kept", absl::StrCat(backup_keep_)}});
      }
    }
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* AdminService::ListBackups(grpc::CallbackServerContext* ctx,
                                                    const crm::v1::ListBackupsRequest*,
                                                    crm::v1::ListBackupsResponse* response) {
  return Guarded(ctx, [this, response]() -> absl::Status {
    // No backup dir is none taken yet; any other failure is reported.
    auto backups = crm::ListBackups(backup_dir_);
    if (absl::IsNotFound(backups.status())) return absl::OkStatus();
    if (!backups.ok()) return backups.status();
    for (const auto& b : *backups) Fill(b, backup_dir_, response->add_backups());
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* AdminService::EraseCustomer(grpc::CallbackServerContext* ctx,
                                                      const crm::v1::EraseCustomerRequest* request,
                                                      crm::v1::EraseCustomerResponse* response) {
  return RunAsCaller(ctx, privacy_executor_,
                     [this, request, response, event_ctx = EventContextFrom(*ctx, "")](
                         const auth::Principal& caller) mutable -> absl::Status {
                       CRM_RETURN_IF_ERROR(CheckEraseCustomerRequest(*request));
                       if (!vault_.can_erase()) {
                         return absl::FailedPreconditionError(
                             "this service erases nothing: call EraseCustomer on leads, sales or "
                             "service-desk");
                       }
                       event_ctx.occurred_at = absl::Now();
                       auto erasure = vault_.EraseCustomer(
                           request->customer_id(),
                           absl::StrCat(request->reason(), " (by ", caller.subject, ")"),
                           event_ctx);
                       if (!erasure.ok()) return erasure.status();
                       response->set_keys_destroyed(erasure->keys_destroyed);
                       for (auto& id : erasure->merged_customer_ids) {
                         response->add_merged_customer_ids(std::move(id));
                       }
                       return absl::OkStatus();
                     });
}

grpc::ServerUnaryReactor* AdminService::ExportCustomer(
    grpc::CallbackServerContext* ctx, const crm::v1::ExportCustomerRequest* request,
    crm::v1::CustomerExport* response) {
  // Off the API workers: a scan of the whole log must not hold one.
  return RunAsCaller(
      ctx, privacy_executor_, [this, request, response](const auth::Principal&) -> absl::Status {
        CRM_ASSIGN_OR_RETURN(const uint64_t after, ExportStartsAfter(*request, service_));
        // The person's records merged into this customer are theirs
        // too: an erasure takes them, so the export shows them.
        const std::vector<std::string> customers = vault_.WithMerged(request->customer_id());
        response->set_customer_id(request->customer_id());
        for (size_t i = 1; i < customers.size(); ++i) {
          response->add_merged_customer_ids(customers[i]);
        }
        response->set_service(service_);
        response->set_erased(vault_.Erased(request->customer_id()));
        if (derived_ && after == 0) {
          auto derived = derived_(request->customer_id());
          if (!derived.ok()) return derived.status();
          for (auto& record : *derived) *response->add_derived() = std::move(record);
        }
        ReplyBudget budget(response->ByteSizeLong());
        auto events = events_.ReadCustomerEvents(customers, after, &budget);
        if (!events.ok()) return events.status();
        for (auto& event : events->events) {
          // Key material is not data on the person.
          if (pii::IsKeyRecordStream(event.stream())) continue;
          pii::OpenEvent(event, vault_);
          *response->add_events() = std::move(event);
        }
        if (events->resume_after != 0) {
          response->set_next_page_token(ExportPageToken(*request, service_, events->resume_after));
        }
        return absl::OkStatus();
      });
}

absl::Status JoinExportPage(crm::v1::CustomerExport& whole, crm::v1::CustomerExport page) {
  page.clear_next_page_token();
  if (whole.customer_id().empty()) {
    whole = std::move(page);
    return absl::OkStatus();
  }
  const absl::flat_hash_set<std::string> merged(whole.merged_customer_ids().begin(),
                                                whole.merged_customer_ids().end());
  const absl::flat_hash_set<std::string> now(page.merged_customer_ids().begin(),
                                             page.merged_customer_ids().end());
  if (page.customer_id() != whole.customer_id() || merged != now ||
      page.erased() != whole.erased()) {
    return absl::AbortedError(
        absl::StrCat("customer ", whole.customer_id(),
                     " was merged with another or erased while its export was read"));
  }
  for (auto& e : *page.mutable_events()) *whole.add_events() = std::move(e);
  return absl::OkStatus();
}

}  // namespace crm
