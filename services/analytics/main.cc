// crm-analytics: consumes every topic into the 360° views and serves them;
// watches churn risk and publishes ChurnRiskRaised to crm.analytics.v1.
#include <cstdio>
#include <fstream>
#include <sstream>

#include "absl/strings/numbers.h"
#include "libs/common/backup.h"
#include "libs/common/blocking_executor.h"
#include "libs/common/config.h"
#include "libs/common/kafka.h"
#include "libs/common/log.h"
#include "libs/common/outbox_relay.h"
#include "libs/common/pii/field_sealer.h"
#include "libs/common/pii/key_vault.h"
#include "libs/common/runtime.h"
#include "libs/common/service_host.h"
#include "libs/common/subscriber.h"
#include "services/analytics/api/analytics_grpc.h"
#include "services/analytics/api/churn_monitor.h"
#include "services/analytics/domain/analytics_settings.h"
#include "services/analytics/store/view_store.h"

namespace {

// --config (CRM_ANALYTICS_CONFIG): a crm.v1.AnalyticsSettings text file;
// none means the documented defaults.
absl::StatusOr<crm::analytics::AnalyticsConfig> LoadSettings(const std::string& path) {
  crm::v1::AnalyticsSettings settings;
  if (!path.empty()) {
    std::ifstream in(path);
    if (!in) return absl::NotFoundError("config: cannot read " + path);
    std::stringstream text;
    text << in.rdbuf();
    auto parsed = crm::analytics::AnalyticsConfig::ParseText(text.str());
    if (!parsed.ok()) return parsed.status();
    settings = *std::move(parsed);
  }
  return crm::analytics::AnalyticsConfig::Create(std::move(settings));
}

}  // namespace

int main(int argc, char** argv) {
  crm::UseReleaseRuntime();
  crm::ServiceHost::BlockShutdownSignals();
  auto config = crm::LoadServiceConfig(argc, argv, "analytics", "127.0.0.1:50054");
  if (!config.ok()) {
    std::fprintf(stderr, "crm-analytics: %s\n", config.status().ToString().c_str());
    return 2;
  }
  auto settings = LoadSettings(crm::Setting(argc, argv, "config", "CRM_ANALYTICS_CONFIG", ""));
  if (!settings.ok()) {
    std::fprintf(stderr, "crm-analytics: %s\n", settings.status().ToString().c_str());
    return 2;
  }
  int64_t churn_interval_ms = 0;
  if (!absl::SimpleAtoi(
          crm::Setting(argc, argv, "churn-interval-ms", "CRM_CHURN_INTERVAL_MS", "30000"),
          &churn_interval_ms) ||
      churn_interval_ms < 10 || churn_interval_ms > 86'400'000) {
    // Bounded: a pass every millisecond would scan every customer back to
    // back, and a huge interval overflows the monitor's wait.
    std::fprintf(stderr, "crm-analytics: --churn-interval-ms must be 10 .. 86400000 (a day)\n");
    return 2;
  }
  int64_t ready_max_lag = 0;
  if (!absl::SimpleAtoi(crm::Setting(argc, argv, "ready-max-lag", "CRM_READY_MAX_LAG", "1000"),
                        &ready_max_lag) ||
      ready_max_lag < 0) {
    std::fprintf(stderr, "crm-analytics: --ready-max-lag must be a number of events, 0 or more\n");
    return 2;
  }
  const std::string events_dir = crm::Setting(argc, argv, "events-dir", "CRM_ANALYTICS_EVENTS_DIR",
                                              config->data_dir + "/emitted");
  const std::string group_id =
      crm::Setting(argc, argv, "group-id", "CRM_GROUP_ID", "crm-analytics");
  crm::log::SetService("analytics");
  if (auto st = crm::CheckUnreadSettings(config->args); !st.ok()) {
    std::fprintf(stderr, "crm-%s: %s\n", config->service_name.c_str(), st.ToString().c_str());
    return 2;
  }
  auto db = crm::Database::Open(config->data_dir, crm::analytics::ViewFamilies(),
                                crm::analytics::ViewDatabaseOptions());
  if (!db.ok()) {
    crm::log::Error("open store", {{"error", db.status().ToString()}});
    return 1;
  }
  // Analytics' own event log (ChurnRiskRaised) and the churn alert state
  // live apart from the views, so the views can be wiped and rebuilt
  // without raising any crossing a second time.
  auto events = crm::EventStore::Open(events_dir, crm::analytics::ChurnMonitor::Families());
  if (!events.ok()) {
    crm::log::Error("open event store", {{"error", events.status().ToString()}});
    return 1;
  }
  // Reads only: analytics seals nothing, so it issues no keys.
  auto vault = crm::pii::KeyVault::Open(**db, nullptr, config->PiiMasterKeys(), "crm/analytics");
  if (!vault.ok()) {
    crm::log::Error("open key vault", {{"error", vault.status().ToString()}});
    return 1;
  }
  crm::OutboxRelay relay(**events, {.brokers = config->brokers,
                                    .topic = crm::kAnalyticsTopic,
                                    .compression = config->kafka_compression});
  if (auto st = relay.Start(); !st.ok()) {
    crm::log::Error("start relay", {{"error", st.ToString()}});
    return 1;
  }

  crm::analytics::Customer360Projection projection;
  crm::SubscriberOptions sub_options;
  sub_options.brokers = config->brokers;
  sub_options.group_id = group_id;
  sub_options.topics = crm::DomainTopics();
  sub_options.dead_letter_topic = crm::kDeadLetterTopic;
  // The views are read and written through the batch's transaction only.
  sub_options.pipelined_commit = true;
  // Replicas share out the domain topics; each reads every key, and a view
  // being rebuilt never opens the data of a person erased before.
  auto keys = crm::pii::KeySubscriber::StartBefore(**db, **vault, sub_options);
  if (!keys.ok()) {
    crm::log::Error("start key subscriber", {{"error", keys.status().ToString()}});
    return 1;
  }
  crm::Subscriber subscriber(**db, projection, sub_options);
  if (auto st = subscriber.Start(); !st.ok()) {
    crm::log::Error("start subscriber", {{"error", st.ToString()}});
    return 1;
  }

  crm::BlockingExecutor executor(config->worker_threads, config->max_queued_calls);
  crm::analytics::ViewStore views(**db, *settings, [&vault](const std::string& value) {
    return crm::pii::Unreadable(value, **vault);
  });
  crm::analytics::AnalyticsGrpc grpc_service(views, executor);
  // Views being rebuilt from the topics are partial: queries and churn
  // judgements (false alarms) wait until the subscriber is this close to the
  // end of every partition. Not a lag of exactly 0: under steady traffic a
  // batch is nearly always in flight.
  auto views_ready = [&subscriber, ready_max_lag] { return subscriber.lag_within(ready_max_lag); };
  crm::analytics::ChurnMonitor monitor(views, **events, views_ready);
  monitor.Start(absl::Milliseconds(churn_interval_ms));

  crm::ServiceHost host(*config);
  host.AddService(&grpc_service);
  host.GateReadiness(
      crm::v1::AnalyticsService::service_full_name(),
      [views_ready, restored = crm::ReadyAfterRestore(
                        config->data_dir, [k = keys->get()] { return k->reached_start(); },
                        [&db] { return (*db)->Flush(); })] { return restored() && views_ready(); });
  // A backup holds the views and the emitted events with their churn alert
  // state, restored into <data-dir>/emitted (the default --events-dir).
  host.ServeAdmin(**db, **events, **vault, {{"emitted", &(*events)->db()}},
                  [&views, &vault, views_ready](const std::string& customer_id) {
                    return crm::analytics::ExportedView(views, **vault, views_ready, customer_id);
                  });
  host.RecordDenials(**events);
  host.OpenPii(**vault);
  host.OnShutdown([&] {
    subscriber.Stop();
    (*keys)->Stop();
    monitor.Stop();
    relay.Stop(absl::Seconds(5));
  });
  if (auto st = host.Run(); !st.ok()) {
    crm::log::Error("serve", {{"error", st.ToString()}});
    return 1;
  }
  return 0;
}
