// Analytics is a pure function of the topics: rebuilding it, by restarting
// on an empty data dir or with crmctl, gives byte-identical views.
#include <algorithm>
#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <regex>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "libs/common/database.h"
#include "libs/common/kafka.h"
#include "tests/integration/stack.h"

namespace crm::testing {
namespace {

// Topics that dropped their oldest events (retention, or the embedded
// broker's 5 MiB a partition) would rebuild views missing that history:
// refused unless asked for, and the dir left as it was.
TEST(CrmctlRebuildTest, TopicsWithoutTheirFirstEventsAreRefusedUnlessAllowed) {
  Stack stack;
  ASSERT_TRUE(stack.StartBroker());
  std::string err;
  auto conf = std::move(*MakeKafkaConf({{"bootstrap.servers", stack.brokers()}}));
  std::unique_ptr<RdKafka::Producer> producer(RdKafka::Producer::create(conf.get(), err));
  ASSERT_TRUE(producer) << err;
  std::string filler(100 * 1024, 'x');
  for (int i = 0; i < 80; ++i) {  // 8 MiB on one partition
    ASSERT_EQ(producer->produce(kLeadsTopic, 0, RdKafka::Producer::RK_MSG_COPY, filler.data(),
                                filler.size(), nullptr, 0, 0, nullptr),
              RdKafka::ERR_NO_ERROR);
    producer->poll(0);
  }
  ASSERT_EQ(producer->flush(30000), RdKafka::ERR_NO_ERROR);

  const std::string dir = stack.dir() + "/rebuilt";
  const std::string refused =
      RunCommand(absl::StrCat(CtlCommand(), " rebuild analytics --data-dir=", dir,
                              " --brokers=", stack.brokers(), " 2>&1; echo exit=$?"));
  EXPECT_TRUE(absl::StrContains(refused, "no longer hold their first events (crm.leads.v1/0"))
      << refused;
  EXPECT_TRUE(absl::EndsWith(refused, "exit=1\n")) << refused;
  EXPECT_FALSE(std::filesystem::exists(dir));

  const std::string allowed = RunCommand(
      absl::StrCat(CtlCommand(), " rebuild analytics --data-dir=", dir,
                   " --brokers=", stack.brokers(), " --allow-missing-history 2>&1; echo exit=$?"));
  EXPECT_TRUE(absl::StrContains(allowed, "rebuilt analytics from")) << allowed;
  // Not a terminal: progress comes as plain lines, the last one complete.
  EXPECT_TRUE(std::regex_search(allowed, std::regex("rebuild: 100.0%  ([0-9]+)/\\1 events")))
      << allowed;
  EXPECT_TRUE(absl::EndsWith(allowed, "exit=0\n")) << allowed;
}

// A damaged views file is a failed digest, not the digest of the rows read
// before the damage (which a rebuild check would report as "views differ").
TEST(CrmctlDigestTest, ViewsThatCannotBeReadFailTheDigest) {
  TempDir dir;
  const std::string views = dir.Sub("analytics");
  {
    auto db = std::move(*Database::Open(views, {"customers"}));
    rocksdb::WriteBatch batch;
    for (int i = 0; i < 200; ++i) {
      batch.Put(db->Family("customers"), absl::StrCat("cus_", i), std::string(100, 'v'));
    }
    ASSERT_TRUE(db->Write(&batch, /*sync=*/true).ok());
    ASSERT_TRUE(db->raw()->Flush(rocksdb::FlushOptions(), db->Family("customers")).ok());
    // Still open (a service running on it): refused with RocksDB's reason.
    const std::string locked = RunCommand(
        absl::StrCat(CtlCommand(), " digest analytics --data-dir=", views, " 2>&1; echo exit=$?"));
    EXPECT_TRUE(absl::StrContains(locked, "cannot open --data-dir")) << locked;
    EXPECT_TRUE(absl::StrContains(locked, "lock")) << locked;
    EXPECT_TRUE(absl::StrContains(locked, "stop it first")) << locked;
    EXPECT_TRUE(absl::EndsWith(locked, "exit=1\n")) << locked;
  }
  EXPECT_TRUE(absl::StrContains(AnalyticsDigest(views), " entries")) << "readable before";
  // One byte of the first data block (at the file's start) changed: its
  // checksum no longer matches, the file still opens.
  int damaged = 0;
  for (const auto& f : std::filesystem::directory_iterator(views)) {
    if (f.path().extension() != ".sst") continue;
    std::fstream sst(f.path(), std::ios::in | std::ios::out | std::ios::binary);
    sst.seekp(64);
    sst.put('\xff');
    ++damaged;
  }
  ASSERT_GT(damaged, 0);
  const std::string out = RunCommand(
      absl::StrCat(CtlCommand(), " digest analytics --data-dir=", views, " 2>&1; echo exit=$?"));
  EXPECT_TRUE(absl::StrContains(out, "cannot read customers")) << out;
  EXPECT_TRUE(absl::EndsWith(out, "exit=1\n")) << out;
}

// The churn monitor's interval is bounded: one pass every millisecond would
// scan every customer back to back, a huge one overflowed its wait.
TEST(AnalyticsFlagsTest, AChurnIntervalOutOfRangeIsRefused) {
  TempDir dir;
  for (const char* interval : {"1", "9223372036854775807"}) {
    const std::string log = dir.Sub(absl::StrCat("analytics-", interval, ".log"));
    Process analytics({CRM_ANALYTICS_BIN, absl::StrCat("--churn-interval-ms=", interval),
                       "--data-dir=" + dir.Sub("analytics"), "--brokers=127.0.0.1:1",
                       std::string("--jwt-hs256-key=") + auth::kDevHs256Key},
                      {}, log);
    ASSERT_TRUE(analytics.Start());
    EXPECT_EQ(analytics.Wait(absl::Seconds(30)), 2) << interval;
    EXPECT_NE(analytics.Log().find("churn-interval-ms"), std::string::npos) << analytics.Log();
  }
}

TEST(AnalyticsRebuildTest, RebuiltViewsEqualTheLiveOnesByteForByte) {
  Stack stack;
  ASSERT_TRUE(stack.StartBroker());
  ASSERT_TRUE(stack.Start("leads"));
  ASSERT_TRUE(stack.Start("analytics"));
  auto leads = stack.LeadsStub();
  std::vector<std::string> customers;
  for (int i = 0; i < 60; ++i) {
    crm::v1::CaptureLeadRequest req;
    req.set_request_id(absl::StrCat("rebuild-", i));
    req.set_channel(crm::v1::LEAD_CHANNEL_TRADE_SHOW);
    // Every third lead is a returning person: same customer, more events.
    req.mutable_contact()->set_email(absl::StrCat("p", i % 40, "@example.com"));
    req.set_company(absl::StrCat("Company ", i));
    crm::v1::CaptureLeadResponse resp;
    grpc::ClientContext ctx;
    ASSERT_TRUE(leads->CaptureLead(&ctx, req, &resp).ok());
    customers.push_back(resp.customer_id());
  }
  ASSERT_TRUE(Eventually([&] {
    int64_t sum = 0;
    for (int i = 0; i < 40; ++i) sum += std::max<int64_t>(stack.EventCount(customers[i]), 0);
    return sum == 60;
  })) << stack.analytics().Log();
  // crmctl prints a customer's 360 view: a returning person's two leads.
  const std::string shown = RunCommand(absl::StrCat(CtlCommand(), " customer ", customers[0],
                                                    " --analytics=", stack.Target("analytics")));
  EXPECT_TRUE(absl::StrContains(shown, customers[0])) << shown;
  EXPECT_TRUE(absl::StrContains(shown, "p0@example.com")) << shown;
  size_t captured = 0;
  for (size_t at = shown.find("\"LeadCaptured\""); at != std::string::npos;
       at = shown.find("\"LeadCaptured\"", at + 1)) {
    ++captured;
  }
  EXPECT_EQ(captured, 2u) << shown;
  ASSERT_EQ(stack.analytics().Kill(SIGTERM), 0);
  const std::string live = AnalyticsDigest(stack.dir() + "/analytics");
  ASSERT_NE(live.find("entries"), std::string::npos) << live;

  // Offline rebuild into a new dir with crmctl.
  const std::string rebuilt_dir = stack.dir() + "/rebuilt";
  const std::string report = RunCommand(absl::StrCat(
      CtlCommand(), " rebuild analytics --data-dir=", rebuilt_dir, " --brokers=", stack.brokers()));
  // 60 leads and the data keys of the 40 people on crm.keys.v1, and the rate.
  EXPECT_TRUE(std::regex_search(report, std::regex("from 100 events in [0-9.]+ s: [0-9]+ events/s "
                                                   "\\(100 applied, 0 duplicates skipped, 0 "
                                                   "undecodable or rejected\\)")))
      << report;
  EXPECT_EQ(AnalyticsDigest(rebuilt_dir), live);

  // Help asked for is a success (a kubectl exec reports any other code).
  EXPECT_EQ(std::system(absl::StrCat(CtlCommand(), " --help >/dev/null").c_str()), 0);
  EXPECT_NE(RunCommand(absl::StrCat(CtlCommand(), " help")).find("usage: crmctl"),
            std::string::npos);
  // Mistakes are refused, not answered with an empty digest or a hang.
  const std::string typo = stack.dir() + "/analytics-typo";
  EXPECT_NE(AnalyticsDigest(typo + " 2>&1").find("holds no analytics database"), std::string::npos);
  EXPECT_FALSE(std::filesystem::exists(typo)) << "a digest must not create the dir";
  EXPECT_NE(RunCommand(absl::StrCat(CtlCommand(), " tail crm.leads.v1 --count=-5 --brokers=",
                                    stack.brokers(), " 2>&1"))
                .find("--count must be a positive number"),
            std::string::npos);
  EXPECT_NE(RunCommand(absl::StrCat(CtlCommand(), " tail crm.leads.v1 --count 2 --brokers=",
                                    stack.brokers(), " 2>&1"))
                .find("--count needs a value"),
            std::string::npos);
  // One dash, or an argument a command does not take, is refused rather than
  // ignored: the restore would otherwise take the newest backup, not 3.
  EXPECT_NE(
      RunCommand(absl::StrCat("timeout 20 ", CtlCommand(),
                              " tail crm.leads.v1 -count=5 --brokers=", stack.brokers(), " 2>&1"))
          .find("unknown flag -count=5"),
      std::string::npos);
  EXPECT_NE(RunCommand(absl::StrCat(CtlCommand(), " restore --backup-dir=", stack.dir(),
                                    "/no-backups --data-dir=", typo, " 3 2>&1; echo rc=$?"))
                .find("unexpected argument 3\nrc=2"),
            std::string::npos);
  EXPECT_FALSE(std::filesystem::exists(typo));
  // A service that does not answer: its error on stderr, no status on stdout.
  EXPECT_EQ(RunCommand(absl::StrCat(CtlCommand(), " health 127.0.0.1:1 2>/dev/null; echo rc=$?")),
            "rc=1\n");
  // Flags may come before the command's arguments.
  EXPECT_EQ(RunCommand(absl::StrCat(CtlCommand(),
                                    " health --token=t 127.0.0.1:1 2>/dev/null; echo rc=$?")),
            "rc=1\n");
  // An unreadable CA is an error, not plaintext with the token in clear.
  EXPECT_NE(RunCommand(absl::StrCat(CtlCommand(),
                                    " customer cus_1 --analytics=", stack.Target("analytics"),
                                    " --tls-ca=", stack.dir(), "/no-such-ca.pem 2>&1"))
                .find("tls-ca: cannot read"),
            std::string::npos);
  // The master key is found as the services find it, and a rebuild that
  // fails leaves no database in the way of the next try.
  const std::string failed_dir = stack.dir() + "/rebuild-failed";
  EXPECT_NE(RunCommand(absl::StrCat(CtlCommand(), " rebuild analytics --data-dir=", failed_dir,
                                    " --master-key-file=", stack.dir(),
                                    "/no-such-key --brokers=", stack.brokers(), " 2>&1"))
                .find("cannot read"),
            std::string::npos);
  EXPECT_FALSE(std::filesystem::exists(failed_dir));
  EXPECT_NE(RunCommand(absl::StrCat(CtlCommand(), " rebuild analytics --data-dir=", failed_dir,
                                    " --brokers=127.0.0.1:1 2>&1"))
                .find("crmctl rebuild:"),
            std::string::npos);
  EXPECT_FALSE(std::filesystem::exists(failed_dir));
  // Without the services' master key the data keys do not unwrap: refused,
  // not views that show every person as erased.
  const std::string wrong_key(64, 'a');
  EXPECT_NE(
      RunCommand(absl::StrCat(CtlCommand(), " rebuild analytics --data-dir=", failed_dir,
                              " --master-key=", wrong_key, " --brokers=", stack.brokers(), " 2>&1"))
          .find("data keys did not unwrap"),
      std::string::npos);
  EXPECT_FALSE(std::filesystem::exists(failed_dir));
  // A broker whose topics exist but hold nothing (one started afresh).
  Stack empty;
  ASSERT_TRUE(empty.StartBroker());
  EXPECT_NE(RunCommand(absl::StrCat(CtlCommand(), " rebuild analytics --data-dir=", failed_dir,
                                    " --brokers=", empty.brokers(), " 2>&1"))
                .find("nothing to rebuild from"),
            std::string::npos);
  EXPECT_FALSE(std::filesystem::exists(failed_dir));
  // Under a group of the caller's choosing (one its Kafka identity may read).
  const std::string tailed = RunCommand(
      absl::StrCat("timeout 60 ", CtlCommand(), " tail crm.leads.v1 --from-beginning --count=2",
                   " --group-id=crm-leads-keys --brokers=", stack.brokers()));
  EXPECT_EQ(std::count(tailed.begin(), tailed.end(), '\n'), 2) << tailed;

  // The service itself on an empty data dir.
  std::filesystem::remove_all(stack.dir() + "/analytics");
  ASSERT_TRUE(stack.Start("analytics"));
  ASSERT_TRUE(Eventually([&] { return stack.EventCount(customers[0]) == 2; }));
  ASSERT_TRUE(Eventually([&] {
    int64_t sum = 0;
    for (int i = 0; i < 40; ++i) sum += std::max<int64_t>(stack.EventCount(customers[i]), 0);
    return sum == 60;
  }));
  ASSERT_EQ(stack.analytics().Kill(SIGTERM), 0);
  EXPECT_EQ(AnalyticsDigest(stack.dir() + "/analytics"), live);
}

// A replica rebuilding its views from the topics is alive but takes no
// queries until it has read what the topics held: readiness asks for the
// query service, liveness for the whole server.
TEST(AnalyticsReadinessTest, QueriesWaitForTheRebuildToReachTheEndOfTheTopics) {
  Stack stack;
  ASSERT_TRUE(stack.StartBroker());
  ASSERT_TRUE(stack.Start("leads"));
  ASSERT_TRUE(stack.Start("analytics"));
  crm::v1::CaptureLeadRequest req;
  req.set_request_id("ready-1");
  req.set_channel(crm::v1::LEAD_CHANNEL_WEB_FORM);
  req.mutable_contact()->set_email("ready@example.com");
  req.set_company("Ready Ltd");
  crm::v1::CaptureLeadResponse lead;
  grpc::ClientContext ctx;
  ASSERT_TRUE(stack.LeadsStub()->CaptureLead(&ctx, req, &lead).ok());
  ASSERT_TRUE(Eventually([&] { return stack.EventCount(lead.customer_id()) == 1; }))
      << stack.analytics().Log();

  auto status = [&](const std::string& service) {
    return stack.ServiceHealth("analytics-2", service);
  };
  // A new replica with empty views, while the broker answers nothing.
  stack.broker().Signal(SIGSTOP);
  ASSERT_TRUE(stack.Start("analytics-2", {"--group-id=crm-analytics-2", "--ready-max-lag=0"}));
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(status(""), grpc::health::v1::HealthCheckResponse::SERVING);
    EXPECT_EQ(status("crm.v1.AnalyticsService"),
              grpc::health::v1::HealthCheckResponse::NOT_SERVING);
    absl::SleepFor(absl::Milliseconds(200));
  }
  EXPECT_EQ(RunCommand(absl::StrCat(CtlCommand(), " health ", stack.Target("analytics-2"),
                                    " --service=crm.v1.AnalyticsService")),
            "NOT_SERVING\n");
  stack.broker().Signal(SIGCONT);
  ASSERT_TRUE(Eventually(
      [&] {
        return status("crm.v1.AnalyticsService") == grpc::health::v1::HealthCheckResponse::SERVING;
      },
      absl::Seconds(60)))
      << stack.service("analytics-2").Log();
  // Ready means the views hold what the topics held.
  auto replica = crm::v1::AnalyticsService::NewStub(stack.Channel("analytics-2"));
  EXPECT_EQ(Stack::EventCount(*replica, lead.customer_id()), 1);

  // A misspelt flag stops the start, before anything is opened, instead of
  // leaving its setting at the default unseen.
  const std::string misspelt = RunCommand(
      absl::StrCat(ShellQuote(CRM_ANALYTICS_BIN), " --listen=127.0.0.1:0 --data-dir=", stack.dir(),
                   "/misspelt --brokers=", stack.brokers(), " --jwt-hs256-key=", auth::kDevHs256Key,
                   " --ready-max-lagg=5 2>&1; echo rc=$?"));
  EXPECT_FALSE(std::filesystem::exists(stack.dir() + "/misspelt"));
  EXPECT_NE(misspelt.find("unknown flag --ready-max-lagg"), std::string::npos) << misspelt;
  EXPECT_NE(misspelt.find("rc=2"), std::string::npos) << misspelt;
}

}  // namespace
}  // namespace crm::testing
