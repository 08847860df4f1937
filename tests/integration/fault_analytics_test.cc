// Analytics killed with SIGKILL in the middle of a rebuild: its data dir is
// deleted, it catches up from the topics and is killed while doing so. The
// restarted process must resume from what it committed and end with views
// identical, byte for byte, to the ones built without a crash (crmctl
// digest), every customer's events counted once.
#include <array>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "libs/common/kafka.h"
#include "services/analytics/testing/events.h"
#include "tests/integration/stack.h"
#include "tests/integration/topic_io.h"

namespace crm::testing {
namespace {

constexpr int kCustomers = 1'000;
constexpr int kLeadsPerCustomer = 16;
constexpr int kEvents = kCustomers * (kLeadsPerCustomer + 2);  // + an order and a ticket each

std::string Customer(int i) { return absl::StrCat("cus_fault_", i); }

// Recent events (churn risk stays low, so no ChurnRiskRaised joins the
// views while the test runs) of three topics.
bool PublishHistory(const std::string& brokers) {
  namespace t = crm::analytics::testing;
  const int64_t start = absl::ToUnixSeconds(absl::Now()) - 3 * t::kDay;
  std::vector<crm::v1::EventEnvelope> leads, sales, desk;
  for (int c = 0; c < kCustomers; ++c) {
    for (int l = 0; l < kLeadsPerCustomer; ++l) {
      leads.push_back(
          t::LeadCapturedAt(Customer(c), absl::StrCat("l", c, "_", l), l * 5, start + c * 60 + l));
    }
    sales.push_back(t::OrderPlacedAt(Customer(c), absl::StrCat("o", c), 1'000 + c, start + c * 60));
    desk.push_back(t::TicketOpenedAt(Customer(c), absl::StrCat("t", c), start + c * 60 + 30));
  }
  return ProduceToTopic(brokers, kLeadsTopic, leads) &&
         ProduceToTopic(brokers, kSalesTopic, sales) &&
         ProduceToTopic(brokers, kServiceDeskTopic, desk);
}

class AnalyticsFaultTest : public ::testing::Test {
 protected:
  bool Start() {
    return stack_.Start("analytics", {absl::StrCat("--metrics-listen=127.0.0.1:", metrics_)});
  }
  double Applied() {
    return MetricSum(HttpGet(metrics_, "/metrics"), "crm_events_consumed_applied");
  }
  int64_t Events(crm::v1::AnalyticsService::Stub& stub, int customer) {
    return Stack::EventCount(stub, Customer(customer));
  }

  Stack stack_;
  int metrics_ = FreePort();
};

TEST_F(AnalyticsFaultTest, KillNineDuringRebuildResumesToTheSameViews) {
  const absl::Time t0 = absl::Now();
  auto seconds = [&] { return static_cast<int>(absl::ToInt64Seconds(absl::Now() - t0)); };
  ASSERT_TRUE(stack_.StartBroker());
  ASSERT_TRUE(PublishHistory(stack_.brokers()));
  RecordProperty("published_at_s", seconds());
  const std::string data_dir = stack_.dir() + "/analytics";

  // The views built without a fault.
  ASSERT_TRUE(Start()) << stack_.analytics().Log();
  ASSERT_TRUE(Eventually([&] { return Applied() == kEvents; }, absl::Seconds(60)))
      << "applied " << Applied() << " of " << kEvents;
  ASSERT_EQ(stack_.analytics().Kill(SIGTERM), 0);
  const std::string live = AnalyticsDigest(data_dir);
  RecordProperty("built_at_s", seconds());
  ASSERT_NE(live.find("entries"), std::string::npos) << live;

  // Rebuild from an empty dir, killed once the first batches are in. The
  // rebuild takes a fraction of a second: on a busy machine the kill can
  // come after its end (the views then equal the live ones), and then the
  // rebuild starts over.
  double applied_at_kill = 0;
  std::string partial = live;
  for (int attempt = 0; attempt < 5 && partial == live; ++attempt) {
    std::filesystem::remove_all(data_dir);
    ASSERT_TRUE(Start()) << stack_.analytics().Log();
    ASSERT_TRUE(Eventually(
        [&] {
          applied_at_kill = Applied();
          return applied_at_kill > 0;
        },
        absl::Seconds(60)));
    stack_.analytics().Kill(SIGKILL);
    partial = AnalyticsDigest(data_dir);
    ASSERT_NE(partial.find("entries"), std::string::npos) << partial;
  }
  RecordProperty("applied_at_kill", static_cast<int>(applied_at_kill));
  RecordProperty("killed_at_s", seconds());
  ASSERT_NE(partial, live) << "every kill came after the rebuild had finished";

  // The restart resumes and finishes: every customer's events, each
  // counted once. (crm_consumer_lag cannot tell: it is not refreshed while
  // the consumer idles.)
  ASSERT_TRUE(Start()) << stack_.analytics().Log();
  // One channel for all the polls (a thousand customers a sweep).
  auto stub = stack_.AnalyticsStub();
  std::vector<int> pending;
  for (int c = 0; c < kCustomers; ++c) pending.push_back(c);
  Eventually(
      [&] {
        std::erase_if(pending, [&](int c) { return Events(*stub, c) == kLeadsPerCustomer + 2; });
        return pending.empty();
      },
      absl::Seconds(120));
  RecordProperty("resumed_at_s", seconds());
  // Whatever else arrives now would be a duplicate.
  absl::SleepFor(absl::Milliseconds(500));
  ASSERT_TRUE(pending.empty()) << pending.size() << " customers incomplete, e.g. "
                               << Customer(pending.front()) << " with "
                               << Events(*stub, pending.front());
  // Resumed, not started over: what the killed run committed is not read
  // again (read again, it would count as applied or as duplicates).
  const std::string metrics = HttpGet(metrics_, "/metrics");
  const double applied = MetricSum(metrics, "crm_events_consumed_applied");
  const double duplicates = MetricSum(metrics, "crm_events_consumed_duplicates");
  ASSERT_GT(applied, 0) << metrics;
  ASSERT_GE(duplicates, 0) << metrics;
  EXPECT_LT(applied + duplicates, kEvents) << metrics;
  ASSERT_EQ(stack_.analytics().Kill(SIGTERM), 0);
  EXPECT_EQ(AnalyticsDigest(data_dir), live);
}

}  // namespace
}  // namespace crm::testing
