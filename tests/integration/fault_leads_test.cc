// Faults under load on the command side: leads is killed with SIGKILL, or
// every broker goes away, while client threads keep capturing leads. Every
// capture the service acknowledged must survive: readable from leads, on
// crm.leads.v1, and in the analytics 360 view exactly once. (The single
// kill right after one reply and the outage with the client waiting are in
// event_flow_test.cc; these add concurrent clients and faults mid-stream.)
#include <algorithm>
#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "libs/common/kafka.h"
#include "tests/integration/stack.h"
#include "tests/integration/topic_io.h"

namespace crm::testing {
namespace {

// One capture the service answered OK.
struct Acked {
  std::string request_id;
  std::string email;
  std::string lead_id;
  std::string customer_id;
  // The fault phase it was answered in (see CaptureLoad::SetPhase).
  int phase = 0;
};

// Client threads capturing leads until stopped, each a new person (so each
// customer's 360 view must end with exactly one event). Failed calls
// (UNAVAILABLE while the service is down, deadlines) are counted and not
// retried: their outcome is unknown, only acknowledged ones are checked.
class CaptureLoad {
 public:
  CaptureLoad(const Stack& stack, int threads) {
    for (int t = 0; t < threads; ++t) {
      threads_.emplace_back([this, &stack, t] { Run(stack, t); });
    }
  }
  ~CaptureLoad() { Stop(); }

  void SetPhase(int phase) { phase_.store(phase); }
  void Stop() {
    stop_.store(true);
    for (auto& t : threads_) {
      if (t.joinable()) t.join();
    }
  }
  std::vector<Acked> acked() const {
    std::lock_guard<std::mutex> lock(mu_);
    return acked_;
  }
  int failed() const { return failed_.load(); }
  // Whether 20 captures of `phase` are acknowledged within `timeout`: the
  // clients are under load in it.
  bool Loaded(int phase, absl::Duration timeout) const {
    return Eventually([&] { return AckedIn(phase) >= 20; }, timeout);
  }
  int AckedIn(int phase) const {
    std::lock_guard<std::mutex> lock(mu_);
    int n = 0;
    for (const auto& a : acked_) n += a.phase == phase ? 1 : 0;
    return n;
  }

 private:
  void Run(const Stack& stack, int thread) {
    auto stub = crm::v1::LeadsService::NewStub(stack.Channel("leads"));
    for (int i = 0; !stop_.load(); ++i) {
      crm::v1::CaptureLeadRequest req;
      req.set_request_id(absl::StrCat("load-", thread, "-", i));
      req.set_channel(crm::v1::LEAD_CHANNEL_WEB_FORM);
      req.mutable_contact()->set_email(absl::StrCat("load", thread, "x", i, "@example.com"));
      req.mutable_contact()->set_first_name("Load");
      const int phase = phase_.load();
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(3));
      crm::v1::CaptureLeadResponse resp;
      if (stub->CaptureLead(&ctx, req, &resp).ok()) {
        std::lock_guard<std::mutex> lock(mu_);
        acked_.push_back(
            {req.request_id(), req.contact().email(), resp.lead_id(), resp.customer_id(), phase});
      } else {
        failed_.fetch_add(1);
        // Not a busy loop against a dead port.
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
      // Sustained, not flooding: the checks read every acknowledged lead back.
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }

  std::vector<std::thread> threads_;
  std::atomic<bool> stop_{false};
  std::atomic<int> phase_{0};
  std::atomic<int> failed_{0};
  mutable std::mutex mu_;
  std::vector<Acked> acked_;
};

class LeadsFaultTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(stack_.StartBroker());
    ASSERT_TRUE(StartLeads()) << stack_.leads().Log();
    ASSERT_TRUE(stack_.Start("analytics",
                             {absl::StrCat("--metrics-listen=127.0.0.1:", analytics_metrics_)}))
        << stack_.analytics().Log();
  }

  bool StartLeads() {
    return stack_.Start("leads", {absl::StrCat("--metrics-listen=127.0.0.1:", leads_metrics_)});
  }

  // Every acknowledged capture is readable from leads as it was sent.
  void ExpectAllReadable(const std::vector<Acked>& acked) {
    auto leads = stack_.LeadsStub();
    int missing = 0;
    for (const auto& a : acked) {
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
      crm::v1::GetLeadRequest get;
      get.set_lead_id(a.lead_id);
      crm::v1::Lead lead;
      const auto st = leads->GetLead(&ctx, get, &lead);
      if (!st.ok() || lead.contact().email() != a.email || lead.customer_id() != a.customer_id) {
        if (++missing <= 5) {
          ADD_FAILURE() << "acknowledged " << a.request_id << " (" << a.lead_id
                        << ") lost: " << st.error_message();
        }
      }
    }
    EXPECT_EQ(missing, 0) << "of " << acked.size() << " acknowledged captures";
    // And once in each list projection, written in the capture's batch: by
    // score, and by the queue the leads wait in (no rule assigns them).
    crm::v1::ListLeadsRequest by_score;
    by_score.set_sort(crm::v1::LEAD_SORT_SCORE_DESC);
    crm::v1::ListLeadsRequest queued = by_score;  // by score within the queue
    queued.set_queue("default");
    for (const auto& req : {by_score, queued}) {
      std::map<std::string, int> listed;
      for (const auto& l : Stack::ListAllLeads(*leads, req)) ++listed[l.lead_id()];
      int wrong = 0;
      for (const auto& a : acked) {
        if (listed[a.lead_id] != 1 && ++wrong <= 5) {
          ADD_FAILURE() << a.lead_id << " listed " << listed[a.lead_id] << " times by "
                        << req.ShortDebugString();
        }
      }
      EXPECT_EQ(wrong, 0) << "of " << acked.size() << " acknowledged captures";
    }
  }

  // Every acknowledged capture's LeadCaptured is on crm.leads.v1; copies
  // (a relay re-sending after a crash) are the same event, never a new one.
  // Returns what was read.
  std::vector<crm::v1::EventEnvelope> ExpectAllOnTheTopic(const std::vector<Acked>& acked) {
    std::set<std::string> wanted;
    for (const auto& a : acked) wanted.insert("lead-" + a.lead_id);
    std::map<std::string, std::set<std::string>> event_ids;  // stream -> event ids
    size_t copies = 0;
    auto read = ConsumeTopic(
        stack_.brokers(), kLeadsTopic,
        [&](const crm::v1::EventEnvelope& e) {
          if (e.type() != "LeadCaptured" || !wanted.contains(e.stream())) return false;
          event_ids[e.stream()].insert(e.event_id());
          ++copies;
          return true;
        },
        [&](const auto&) { return event_ids.size() == wanted.size(); }, absl::Seconds(30),
        /*linger=*/absl::Seconds(2));  // a second capture may come after the last first one
    EXPECT_EQ(event_ids.size(), wanted.size()) << "acknowledged captures missing on the topic";
    for (const auto& [stream, ids] : event_ids) {
      EXPECT_EQ(ids.size(), 1u) << stream << " was captured more than once";
    }
    RecordProperty("topic_copies", static_cast<int>(copies));
    RecordProperty("topic_events", static_cast<int>(event_ids.size()));
    return read;
  }

  // Every acknowledged capture's customer has exactly one event in the 360
  // view and reads in clear: nothing lost, no duplicate applied.
  void ExpectExactlyOnceInAnalytics(const std::vector<Acked>& acked) {
    std::set<std::string> pending;
    for (const auto& a : acked) pending.insert(a.customer_id);
    // One channel for all the polls, each a sweep over every customer.
    auto analytics = stack_.AnalyticsStub();
    Eventually(
        [&] {
          for (auto it = pending.begin(); it != pending.end();) {
            it = Stack::EventCount(*analytics, *it) >= 1 ? pending.erase(it) : std::next(it);
          }
          return pending.empty();
        },
        absl::Seconds(90));
    EXPECT_TRUE(pending.empty()) << pending.size() << " customers never reached analytics, e.g. "
                                 << (pending.empty() ? "" : *pending.begin());
    // Count once every copy is in: the outbox has published all it holds
    // (the topics hold all they will), and analytics has taken every
    // message on the topics it reads and measures no lag.
    EXPECT_TRUE(Eventually(
        [&] { return MetricSum(HttpGet(leads_metrics_, "/metrics"), "crm_outbox_depth") == 0; },
        absl::Seconds(60)))
        << HttpGet(leads_metrics_, "/metrics");
    const int64_t on_topics = MessagesOn(stack_.brokers(), DomainTopics());
    ASSERT_GE(on_topics, 0) << "the broker could not be asked";
    const std::string group = R"(group="crm-analytics")";
    double taken = -1;
    EXPECT_TRUE(Eventually(
        [&] {
          const std::string metrics = HttpGet(analytics_metrics_, "/metrics");
          taken = 0;
          for (const char* name : {"crm_events_consumed_applied", "crm_events_consumed_duplicates",
                                   "crm_events_dead_lettered"}) {
            taken += std::max(0.0, MetricSum(metrics, name, group));
          }
          return taken >= static_cast<double>(on_topics) &&
                 MetricSum(metrics, "crm_consumer_lag", group) == 0;
        },
        absl::Seconds(60)))
        << "analytics took " << taken << " of " << on_topics << " messages";
    auto view_of = [&](const Acked& a, crm::v1::Customer360* view) {
      return Stack::Get360(*analytics, a.customer_id, *view, absl::Seconds(5));
    };
    int wrong = 0;
    std::vector<const Acked*> sealed;  // the email does not read back yet
    for (const auto& a : acked) {
      crm::v1::Customer360 view;
      const auto st = view_of(a, &view);
      if (!st.ok() || view.event_count() != 1 || view.timeline_size() != 1) {
        if (++wrong <= 5) {
          ADD_FAILURE() << a.customer_id << ": " << st.error_message() << " events "
                        << view.event_count() << ", timeline " << view.timeline_size();
        }
      } else if (view.profile().email() != a.email) {
        sealed.push_back(&a);
      }
    }
    EXPECT_EQ(wrong, 0) << "of " << acked.size() << " customers";
    // The email reads back once the customer's data key (DataKeyIssued on
    // crm.keys.v1, from the same outbox) reached analytics' key reader,
    // whose consumer reconnects after an outage on its own schedule.
    RecordProperty("sealed_after_catch_up", static_cast<int>(sealed.size()));
    std::string email;
    EXPECT_TRUE(Eventually(
        [&] {
          std::erase_if(sealed, [&](const Acked* a) {
            crm::v1::Customer360 view;
            const bool read = view_of(*a, &view).ok() && view.profile().email() == a->email;
            if (!read) email = view.profile().email();
            return read;
          });
          return sealed.empty();
        },
        absl::Seconds(60)))
        << sealed.size() << " customers' emails never read back, e.g. "
        << sealed.front()->customer_id << " reads \"" << email << "\"";
  }

  Stack stack_;
  int leads_metrics_ = FreePort();
  int analytics_metrics_ = FreePort();
};

TEST_F(LeadsFaultTest, KillNineUnderLoadLosesNoAcknowledgedCaptureAndAppliesEachOnce) {
  CaptureLoad load(stack_, 4);
  // Each round waits for the clients to be acknowledged again (they
  // reconnect with gRPC's backoff), so every kill lands under load.
  auto loaded = [&](int phase) { return load.Loaded(phase, absl::Seconds(15)); };
  ASSERT_TRUE(loaded(0));
  for (int round = 1; round <= 3; ++round) {
    stack_.leads().Kill(SIGKILL);  // mid-append for some of the clients
    load.SetPhase(round);
    absl::SleepFor(absl::Milliseconds(200));
    ASSERT_TRUE(StartLeads()) << stack_.leads().Log();
    ASSERT_TRUE(loaded(round)) << "no capture acknowledged after restart " << round;
  }
  load.Stop();

  const auto acked = load.acked();
  RecordProperty("acked", static_cast<int>(acked.size()));
  RecordProperty("failed", load.failed());

  ExpectAllReadable(acked);
  const auto captured = ExpectAllOnTheTopic(acked);
  // Whether a kill left a relay copy behind is luck: copies of a sample are
  // published again, as a relay re-sending them would, so that analytics'
  // skipping of what it applied (with pipelined commits) is always tested.
  const std::vector<crm::v1::EventEnvelope> copies(
      captured.begin(), captured.begin() + std::min<size_t>(captured.size(), 20));
  ASSERT_FALSE(copies.empty());
  ASSERT_TRUE(ProduceToTopic(stack_.brokers(), kLeadsTopic, copies));
  ExpectExactlyOnceInAnalytics(acked);
  EXPECT_GE(MetricSum(HttpGet(analytics_metrics_, "/metrics"), "crm_events_consumed_duplicates",
                      R"(group="crm-analytics")"),
            static_cast<double>(copies.size()));
}

TEST_F(LeadsFaultTest, BrokerOutageUnderLoadLosesNothingDuplicatesNothingAndDrainsTheOutbox) {
  CaptureLoad load(stack_, 4);
  // Each phase lasts until its captures are acknowledged, so the broker
  // goes down and comes back under load however slow the machine is.
  auto loaded = [&](int phase) { return load.Loaded(phase, absl::Seconds(30)); };
  ASSERT_TRUE(loaded(0));
  stack_.broker().Signal(SIGUSR1);  // every broker down, clients carry on
  // Phase 1 starts once the broker says every broker is down.
  ASSERT_TRUE(Eventually([&] {
    return absl::StrContains(stack_.broker().Log(), R"("msg":"brokers down")");
  })) << stack_.broker().Log();
  load.SetPhase(1);
  absl::SleepFor(absl::Seconds(2));  // an outage of a few seconds at least
  ASSERT_TRUE(loaded(1)) << "commands must be accepted while Kafka is down";
  // Captures kept being accepted and are waiting in the outbox: each one
  // acknowledged in the outage has at least its LeadCaptured there.
  const int acked_down = load.AckedIn(1);
  const double queued = MetricSum(HttpGet(leads_metrics_, "/metrics"), "crm_outbox_depth");
  load.SetPhase(2);
  stack_.broker().Signal(SIGUSR2);
  EXPECT_TRUE(loaded(2));
  load.Stop();

  const auto acked = load.acked();
  EXPECT_GE(queued, acked_down) << "captures of the outage missing from the outbox";
  RecordProperty("acked", static_cast<int>(acked.size()));

  // The outbox drains once the broker is back.
  EXPECT_TRUE(Eventually([&] {
    return MetricSum(HttpGet(leads_metrics_, "/metrics"), "crm_outbox_depth") == 0;
  })) << HttpGet(leads_metrics_, "/metrics");
  ExpectAllOnTheTopic(acked);
  ExpectExactlyOnceInAnalytics(acked);
  ExpectAllReadable(acked);
}

}  // namespace
}  // namespace crm::testing
