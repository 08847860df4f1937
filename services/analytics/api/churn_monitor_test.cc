#include "services/analytics/api/churn_monitor.h"

#include "gtest/gtest.h"
#include "libs/common/metrics.h"
#include "libs/common/testing/temp_dir.h"
#include "services/analytics/testing/events.h"

namespace crm::analytics {
namespace {

using namespace crm::analytics::testing;

// Views fed through a real Subscriber, and analytics' own event store.
class ChurnMonitorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    events_ = std::move(*EventStore::Open(dir_.Sub("emitted"), ChurnMonitor::Families()));
    OpenViews("views");
  }

  // (Re)opens the views at a new dir: a rebuild.
  void OpenViews(const std::string& name) {
    monitor_.reset();
    subscriber_.reset();
    views_.reset();
    db_ = std::move(*Database::Open(dir_.Sub(name), ViewFamilies()));
    subscriber_ = std::make_unique<Subscriber>(*db_, projection_, SubscriberOptions{});
    views_ = std::make_unique<ViewStore>(*db_);
    monitor_ = std::make_unique<ChurnMonitor>(*views_, *events_);
  }

  void Feed(const std::vector<crm::v1::EventEnvelope>& events) {
    std::vector<ConsumedMessage> batch;
    for (const auto& e : events) batch.push_back(OnTopic("crm.sales.v1", offset_++, e));
    ASSERT_TRUE(subscriber_->ApplyBatch(batch).ok());
  }

  // The ChurnRiskRaised payloads waiting in the outbox, oldest first.
  std::vector<crm::v1::ChurnRiskRaised> Outbox() {
    std::vector<crm::v1::ChurnRiskRaised> out;
    auto entries = events_->ReadOutbox(0, 100);
    EXPECT_TRUE(entries.ok());
    for (const auto& entry : *entries) {
      EXPECT_EQ(entry.envelope.type(), "ChurnRiskRaised");
      EXPECT_EQ(entry.envelope.source(), "crm/analytics");
      crm::v1::ChurnRiskRaised m;
      EXPECT_TRUE(entry.envelope.payload().UnpackTo(&m));
      out.push_back(m);
    }
    return out;
  }

  int Pass() {
    auto n = monitor_->RunOnce();
    EXPECT_TRUE(n.ok()) << n.status();
    return n.ok() ? *n : -1;
  }

  crm::testing::TempDir dir_;
  std::unique_ptr<EventStore> events_;
  std::unique_ptr<Database> db_;
  Customer360Projection projection_;
  std::unique_ptr<Subscriber> subscriber_;
  std::unique_ptr<ViewStore> views_;
  std::unique_ptr<ChurnMonitor> monitor_;
  int64_t offset_ = 0;
};

// What ops watch: a counter of the default registry (the monitor's).
uint64_t Counted(const std::string& name) {
  return MetricsRegistry::Default().GetCounter(name, "").value();
}

TEST_F(ChurnMonitorTest, RaisesOncePerCrossingAtTheEventTimeClock) {
  const uint64_t passes = Counted("crm_churn_passes_total");
  const uint64_t alerts = Counted("crm_churn_alerts_raised_total");
  Feed({OrderPlacedAt("cus_1", "o1", 500, 0), OrderPlacedAt("cus_2", "o2", 500, 100 * kDay)});
  EXPECT_EQ(Pass(), 0);  // day 100: cus_1 scores 25 + 25
  // Another customer's event moves the clock: cus_1 crosses on day 150.
  Feed({LeadCapturedAt("cus_3", "lead_3", 0, 150 * kDay)});
  EXPECT_EQ(Pass(), 1);
  EXPECT_EQ(Pass(), 0);
  EXPECT_EQ(Counted("crm_churn_passes_total") - passes, 3u);
  EXPECT_EQ(Counted("crm_churn_alerts_raised_total") - alerts, 1u);
  auto raised = Outbox();
  ASSERT_EQ(raised.size(), 1u);
  EXPECT_EQ(raised[0].customer_id(), "cus_1");
  EXPECT_EQ(raised[0].score(), 62);
  EXPECT_EQ(raised[0].cause_event_id(), "evt-order-o1");
  EXPECT_EQ(raised[0].evaluated_at().seconds(), 150 * kDay);
  auto entries = events_->ReadOutbox(0, 10);
  ASSERT_TRUE(entries.ok());
  EXPECT_EQ(entries->front().envelope.occurred_at().seconds(), 150 * kDay);
  EXPECT_EQ(entries->front().envelope.stream(), "churnrisk-cus_1");
}

TEST_F(ChurnMonitorTest, RebuiltViewsRaiseNothingAgain) {
  const std::vector<crm::v1::EventEnvelope> history = {OrderPlacedAt("cus_1", "o1", 500, 0),
                                                       LeadCapturedAt("cus_3", "l", 0, 150 * kDay)};
  Feed(history);
  EXPECT_EQ(Pass(), 1);
  // The views are thrown away and rebuilt from the topics, in one batch.
  OpenViews("rebuilt");
  Feed({history[1], history[0]});
  EXPECT_EQ(Pass(), 0);
  EXPECT_EQ(Outbox().size(), 1u);
}

TEST_F(ChurnMonitorTest, LostAlertStateIsCoveredByTheRequestKey) {
  const std::vector<crm::v1::EventEnvelope> history = {OrderPlacedAt("cus_1", "o1", 500, 0),
                                                       LeadCapturedAt("cus_3", "l", 0, 150 * kDay)};
  Feed(history);
  EXPECT_EQ(Pass(), 1);
  // The alert state is gone (e.g. restored from an older backup).
  rocksdb::WriteBatch wipe;
  wipe.Delete(events_->db().Family(ChurnMonitor::Families()[0]), "cus_1");
  ASSERT_TRUE(events_->db().Write(&wipe, true).ok());
  EXPECT_EQ(Pass(), 0);
  EXPECT_EQ(Outbox().size(), 1u);
}

// With cus_1's row in `db`'s `family` unreadable, cus_1 is skipped; every
// other customer is still decided (cus_2 after it in id order), and the
// pass reports the one it skipped.
void ExpectThePassGoesOnPast(ChurnMonitor& monitor, Database& db, const std::string& family,
                             const std::function<std::vector<crm::v1::ChurnRiskRaised>()>& outbox) {
  rocksdb::WriteBatch corrupt;
  corrupt.Put(db.Family(family), "cus_1", "\xff not a state or view");
  ASSERT_TRUE(db.Write(&corrupt, true).ok());
  const uint64_t skipped = Counted("crm_churn_customers_not_evaluated_total");
  auto n = monitor.RunOnce();
  EXPECT_EQ(Counted("crm_churn_customers_not_evaluated_total") - skipped, 1u);
  EXPECT_EQ(n.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(n.status().message().find("1 customer(s) not evaluated (1 alert(s) raised); first "
                                      "cus_1"),
            std::string::npos)
      << n.status();
  auto raised = outbox();
  ASSERT_EQ(raised.size(), 1u);
  EXPECT_EQ(raised[0].customer_id(), "cus_2") << "decided though cus_1 came first";
}

TEST_F(ChurnMonitorTest, ACustomerWhoseAlertCannotBeReadDoesNotStopThePass) {
  Feed({OrderPlacedAt("cus_1", "o1", 500, 0), OrderPlacedAt("cus_2", "o2", 500, 0),
        LeadCapturedAt("cus_3", "l", 0, 150 * kDay)});
  ExpectThePassGoesOnPast(*monitor_, events_->db(), ChurnMonitor::Families()[0],
                          [&] { return Outbox(); });
}

TEST_F(ChurnMonitorTest, ACustomerWhoseViewCannotBeReadDoesNotStopThePass) {
  Feed({OrderPlacedAt("cus_1", "o1", 500, 0), OrderPlacedAt("cus_2", "o2", 500, 0),
        LeadCapturedAt("cus_3", "l", 0, 150 * kDay)});
  ExpectThePassGoesOnPast(*monitor_, *db_, "customers", [&] { return Outbox(); });
}

TEST_F(ChurnMonitorTest, AStopEndsThePassUnderWayAtTheNextCustomer) {
  Feed({OrderPlacedAt("cus_1", "o1", 500, 0), OrderPlacedAt("cus_2", "o2", 500, 0),
        LeadCapturedAt("cus_3", "l", 0, 150 * kDay)});
  const uint64_t passes = Counted("crm_churn_passes_total");
  // A shutdown arrives while the first alert is raised.
  events_->SetAppendListener([&] { monitor_->Stop(); });
  auto n = monitor_->RunOnce();
  events_->ClearAppendListener(nullptr);
  EXPECT_EQ(n.status().code(), absl::StatusCode::kCancelled) << n.status();
  EXPECT_EQ(Outbox().size(), 1u);
  EXPECT_EQ(Counted("crm_churn_passes_total"), passes) << "a pass cut short is not a pass";
}

TEST_F(ChurnMonitorTest, RecoveryThenRelapseRaisesASecondTime) {
  Feed({OrderPlacedAt("cus_1", "o1", 500, 0), LeadCapturedAt("cus_3", "l", 0, 150 * kDay)});
  EXPECT_EQ(Pass(), 1);
  Feed({OrderPlacedAt("cus_1", "o2", 500, 151 * kDay)});  // buys again
  EXPECT_EQ(Pass(), 0);
  Feed({LeadCapturedAt("cus_4", "l4", 0, 320 * kDay)});  // time passes
  EXPECT_EQ(Pass(), 1);
  auto raised = Outbox();
  ASSERT_EQ(raised.size(), 2u);
  EXPECT_EQ(raised[1].cause_event_id(), "evt-order-o2");
}

TEST_F(ChurnMonitorTest, ASecondCrossingWithTheSameCauseRaisesAgain) {
  Feed({OrderPlacedAt("cus_1", "o1", 500, 0), LeadCapturedAt("cus_3", "l", 0, 150 * kDay)});
  EXPECT_EQ(Pass(), 1);
  {  // A stricter threshold for a while: the customer clears.
    crm::v1::AnalyticsSettings strict;
    strict.set_churn_risk_threshold(90);
    auto config = AnalyticsConfig::Create(strict);
    ASSERT_TRUE(config.ok()) << config.status();
    ViewStore strict_views(*db_, *config);
    ChurnMonitor strict_monitor(strict_views, *events_);
    auto n = strict_monitor.RunOnce();
    ASSERT_TRUE(n.ok()) << n.status();
    EXPECT_EQ(*n, 0);
  }
  EXPECT_EQ(Pass(), 1);  // back to the usual threshold, no new event
  auto raised = Outbox();
  ASSERT_EQ(raised.size(), 2u);
  EXPECT_EQ(raised[1].cause_event_id(), raised[0].cause_event_id());
  EXPECT_EQ(Pass(), 0);
}

// A customer already alerted is merged into another person's record: the
// group is the same risk, not a new crossing.
TEST_F(ChurnMonitorTest, AMergeRaisesNothingForARiskAlreadyRaised) {
  Feed({OrderPlacedAt("cus_1", "o1", 500, 0), LeadCapturedAt("cus_0", "lead_0", 0, 0),
        LeadCapturedAt("cus_3", "lead_3", 0, 150 * kDay)});
  EXPECT_EQ(Pass(), 1);
  crm::v1::LeadsMerged merged;
  merged.set_survivor_lead_id("lead_0");
  merged.set_survivor_customer_id("cus_0");
  merged.set_merged_lead_id("lead_1");
  merged.set_merged_customer_id("cus_1");
  // cus_0 sorts first, so the group's view is cus_0's from now on.
  Feed({Envelope(merged, "cus_0", "evt-merge", "lead-lead_0", 2, kDay)});
  EXPECT_EQ(Pass(), 0);
  const auto raised = Outbox();
  ASSERT_EQ(raised.size(), 1u);
  EXPECT_EQ(raised[0].customer_id(), "cus_1");
}

// A group's decision holds for each of its customers: cleared after the
// person bought again, a later merge into a third record must not find the
// merged customer's old alert still open and stay silent at the relapse.
TEST_F(ChurnMonitorTest, AGroupsClearedAlertIsNotReopenedByALaterMerge) {
  Feed({OrderPlacedAt("cus_1", "o1", 500, 0), LeadCapturedAt("cus_0", "lead_0", 0, 0),
        LeadCapturedAt("cu_q", "lead_q", 0, 0), LeadCapturedAt("cus_3", "lead_3", 0, 150 * kDay)});
  EXPECT_EQ(Pass(), 1);  // cus_1
  crm::v1::LeadsMerged merged;
  merged.set_survivor_lead_id("lead_0");
  merged.set_survivor_customer_id("cus_0");
  merged.set_merged_lead_id("lead_1");
  merged.set_merged_customer_id("cus_1");
  Feed({Envelope(merged, "cus_0", "evt-merge-1", "lead-lead_0", 2, 150 * kDay)});
  EXPECT_EQ(Pass(), 0);  // the same risk
  Feed({OrderPlacedAt("cus_0", "o0", 500, 151 * kDay)});
  EXPECT_EQ(Pass(), 0);  // the person bought again: the alert clears
  // The group goes into a third record ("cu_q" sorts first), and time
  // passes before the monitor looks again: the relapse is a new crossing.
  merged.set_survivor_lead_id("lead_q");
  merged.set_survivor_customer_id("cu_q");
  merged.set_merged_lead_id("lead_0");
  merged.set_merged_customer_id("cus_0");
  Feed({Envelope(merged, "cu_q", "evt-merge-2", "lead-lead_q", 2, 152 * kDay),
        LeadCapturedAt("cus_4", "lead_4", 0, 320 * kDay)});
  EXPECT_EQ(Pass(), 1);
  const auto raised = Outbox();
  ASSERT_EQ(raised.size(), 2u);
  EXPECT_EQ(raised[1].customer_id(), "cu_q");
  EXPECT_EQ(Pass(), 0);
}

TEST_F(ChurnMonitorTest, WaitsWhileNotReady) {
  monitor_ = std::make_unique<ChurnMonitor>(*views_, *events_, [] { return false; });
  Feed({OrderPlacedAt("cus_1", "o1", 500, 0), LeadCapturedAt("cus_3", "l", 0, 150 * kDay)});
  EXPECT_EQ(Pass(), 0);
  EXPECT_TRUE(Outbox().empty());
}

}  // namespace
}  // namespace crm::analytics
