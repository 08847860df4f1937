// Backups across real processes: crmctl backs up a running leads service
// through crm.v1.AdminService, restores the backup offline into a new data
// dir, and the service started on it holds exactly what was acknowledged
// before the backup. Only admins may take backups.
#include <sys/wait.h>

#include <csignal>
#include <cstdlib>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "crm/v1/admin.grpc.pb.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "gtest/gtest.h"
#include "tests/integration/stack.h"

namespace crm::testing {
namespace {

std::string CaptureLead(Stack& stack, const std::string& email) {
  crm::v1::CaptureLeadRequest req;
  req.set_request_id("backup-" + email);
  req.set_channel(crm::v1::LEAD_CHANNEL_WEB_FORM);
  req.mutable_contact()->set_email(email);
  crm::v1::CaptureLeadResponse resp;
  grpc::ClientContext ctx;
  auto st = stack.LeadsStub()->CaptureLead(&ctx, req, &resp);
  EXPECT_TRUE(st.ok()) << st.error_message();
  return resp.lead_id();
}

grpc::StatusCode GetLead(Stack& stack, const std::string& lead_id) {
  crm::v1::GetLeadRequest req;
  req.set_lead_id(lead_id);
  crm::v1::Lead lead;
  grpc::ClientContext ctx;
  return stack.LeadsStub()->GetLead(&ctx, req, &lead).error_code();
}

// crmctl's exit code.
int Ctl(const std::string& args) {
  const int status = std::system(absl::StrCat(CtlCommand(), " ", args, " >/dev/null 2>&1").c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

TEST(BackupIntegrationTest, CrmctlBacksUpARunningServiceAndRestoresItIntoANewDataDir) {
  Stack stack;
  ASSERT_TRUE(stack.StartBroker());
  ASSERT_TRUE(stack.Start("leads")) << stack.leads().Log();
  const std::string backup_dir = stack.dir() + "/leads-backups";
  const std::string before = CaptureLead(stack, "before@backup.example");

  // A rep may not take backups, and nothing is written for the attempt.
  auto rep = crm::v1::AdminService::NewStub(
      stack.Channel("leads", auth::Principal{"rep_ann", {auth::kRoleSalesRep}, "emea"}));
  grpc::ClientContext denied_ctx;
  crm::v1::Backup ignored;
  EXPECT_EQ(rep->CreateBackup(&denied_ctx, crm::v1::CreateBackupRequest(), &ignored).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_FALSE(std::filesystem::exists(backup_dir));

  ASSERT_EQ(Ctl("backup " + stack.Target("leads")), 0) << stack.leads().Log();
  auto admin = crm::v1::AdminService::NewStub(stack.Channel("leads"));
  grpc::ClientContext list_ctx;
  crm::v1::ListBackupsResponse list;
  ASSERT_TRUE(admin->ListBackups(&list_ctx, crm::v1::ListBackupsRequest(), &list).ok());
  ASSERT_EQ(list.backups_size(), 1);
  EXPECT_EQ(list.backups(0).backup_id(), 1u);
  EXPECT_GT(list.backups(0).size_bytes(), 0u);

  const std::string after = CaptureLead(stack, "after@backup.example");
  stack.leads().Kill(SIGTERM);

  const std::string restored = stack.dir() + "/leads-restored";
  // Ids start at 1: a 0 must not restore the newest in place of an older one.
  for (const char* id : {"newest", "0"}) {
    EXPECT_EQ(Ctl(absl::StrCat("restore --backup-dir=", backup_dir, " --data-dir=", restored,
                               " --backup-id=", id)),
              2)
        << "a backup id is a number from 1 or latest, not " << id;
  }
  EXPECT_FALSE(std::filesystem::exists(restored));
  ASSERT_EQ(Ctl(absl::StrCat("restore --backup-dir=", backup_dir, " --data-dir=", restored,
                             " --backup-id=latest")),
            0);
  EXPECT_NE(Ctl(absl::StrCat("restore --backup-dir=", backup_dir, " --data-dir=", restored)), 0)
      << "a restore never overwrites a data dir";
  // Not ready for traffic until its key reader has read the erasures made
  // since the backup: held while the broker answers nothing.
  const std::string mark = restored + "/RESTORED";
  EXPECT_TRUE(std::filesystem::exists(mark));
  auto status = [&] { return stack.ServiceHealth("leads", "crm.v1.LeadsService"); };
  stack.broker().Signal(SIGSTOP);
  ASSERT_TRUE(stack.Start("leads", {"--data-dir=" + restored})) << stack.leads().Log();
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(status(), grpc::health::v1::HealthCheckResponse::NOT_SERVING);
    absl::SleepFor(absl::Milliseconds(200));
  }
  EXPECT_TRUE(std::filesystem::exists(mark));
  stack.broker().Signal(SIGCONT);
  EXPECT_TRUE(Eventually([&] {
    return status() == grpc::health::v1::HealthCheckResponse::SERVING;
  })) << stack.leads().Log();
  EXPECT_FALSE(std::filesystem::exists(mark)) << "the next start is ready at once";
  EXPECT_EQ(GetLead(stack, before), grpc::StatusCode::OK);
  EXPECT_EQ(GetLead(stack, after), grpc::StatusCode::NOT_FOUND)
      << "captured after the backup, so not in it";
}

// Analytics keeps its emitted events (and churn alert state) in a database of
// their own next to the views: a backup holds both, a restore brings both,
// and retention (--backup-keep) keeps the newest backups with their parts.
TEST(BackupIntegrationTest, AnalyticsBackupHoldsItsViewsAndItsEmittedEvents) {
  Stack stack;
  ASSERT_TRUE(stack.StartBroker());
  ASSERT_TRUE(stack.Start("leads")) << stack.leads().Log();
  ASSERT_TRUE(stack.Start("analytics", {"--backup-keep=1"})) << stack.analytics().Log();
  const std::string backup_dir = stack.dir() + "/analytics-backups";
  // Views to back up: a captured lead in its customer's 360 view.
  crm::v1::CaptureLeadRequest capture;
  capture.set_request_id("backup-analytics");
  capture.set_channel(crm::v1::LEAD_CHANNEL_WEB_FORM);
  capture.mutable_contact()->set_email("views@backup.example");
  crm::v1::CaptureLeadResponse captured;
  grpc::ClientContext capture_ctx;
  ASSERT_TRUE(stack.LeadsStub()->CaptureLead(&capture_ctx, capture, &captured).ok());
  ASSERT_TRUE(Eventually([&] { return stack.EventCount(captured.customer_id()) == 1; }));
  ASSERT_EQ(Ctl("backup " + stack.Target("analytics")), 0) << stack.analytics().Log();
  EXPECT_TRUE(std::filesystem::exists(backup_dir + "/part-emitted"));
  // Kept to the newest one, with its part.
  ASSERT_EQ(Ctl("backup " + stack.Target("analytics")), 0) << stack.analytics().Log();
  auto admin = crm::v1::AdminService::NewStub(stack.Channel("analytics"));
  grpc::ClientContext list_ctx;
  crm::v1::ListBackupsResponse list;
  ASSERT_TRUE(admin->ListBackups(&list_ctx, crm::v1::ListBackupsRequest(), &list).ok());
  ASSERT_EQ(list.backups_size(), 1) << stack.analytics().Log();
  EXPECT_EQ(list.backups(0).backup_id(), 2u);
  EXPECT_EQ(list.backups(0).damaged(), "");
  stack.analytics().Kill(SIGTERM);
  stack.leads().Kill(SIGTERM);  // nothing new reaches the views after the backup

  const std::string restored = stack.dir() + "/analytics-restored";
  ASSERT_EQ(Ctl(absl::StrCat("restore --backup-dir=", backup_dir, " --data-dir=", restored)), 0);
  EXPECT_TRUE(std::filesystem::exists(restored + "/CURRENT"));
  EXPECT_TRUE(std::filesystem::exists(restored + "/emitted/CURRENT"));
  // The restored views are the ones backed up, byte for byte.
  const std::string live = AnalyticsDigest(stack.dir() + "/analytics");
  // "<digest> <N> entries", and N is not 0: there are views to compare.
  ASSERT_NE(live.find(" entries"), std::string::npos) << live;
  EXPECT_EQ(live.find(" 0 entries"), std::string::npos) << live;
  EXPECT_EQ(AnalyticsDigest(restored), live);
  ASSERT_TRUE(stack.Start("analytics", {"--data-dir=" + restored})) << stack.analytics().Log();
  EXPECT_EQ(stack.EventCount(captured.customer_id()), 1);
}

}  // namespace
}  // namespace crm::testing
