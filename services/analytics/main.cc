// crm-analytics: consumes every topic into the 360° views and serves them.
#include <cstdio>

#include "libs/common/blocking_executor.h"
#include "libs/common/config.h"
#include "libs/common/kafka.h"
#include "libs/common/log.h"
#include "libs/common/service_host.h"
#include "libs/common/subscriber.h"
#include "services/analytics/api/analytics_grpc.h"
#include "services/analytics/store/view_store.h"

int main(int argc, char** argv) {
  crm::ServiceHost::BlockShutdownSignals();
  auto config = crm::LoadServiceConfig(argc, argv, "analytics", "127.0.0.1:50054");
  if (!config.ok()) {
    std::fprintf(stderr, "crm-analytics: %s\n", config.status().ToString().c_str());
    return 2;
  }
  crm::log::SetService("analytics");
  auto db = crm::Database::Open(config->data_dir, crm::analytics::ViewFamilies());
  if (!db.ok()) {
    crm::log::Error("open store", {{"error", db.status().ToString()}});
    return 1;
  }
  crm::analytics::Customer360Projection projection;
  crm::SubscriberOptions sub_options;
  sub_options.brokers = config->brokers;
  sub_options.group_id = crm::Setting(argc, argv, "group-id", "CRM_GROUP_ID", "crm-analytics");
  sub_options.topics = crm::AllTopics();
  sub_options.dead_letter_topic = crm::kDeadLetterTopic;
  crm::Subscriber subscriber(**db, projection, sub_options);
  if (auto st = subscriber.Start(); !st.ok()) {
    crm::log::Error("start subscriber", {{"error", st.ToString()}});
    return 1;
  }

  crm::BlockingExecutor executor(config->worker_threads);
  crm::analytics::ViewStore views(**db);
  crm::analytics::AnalyticsGrpc grpc_service(views, executor);

  crm::ServiceHost host(*config);
  host.AddService(&grpc_service);
  host.OnShutdown([&subscriber] { subscriber.Stop(); });
  if (auto st = host.Run(); !st.ok()) {
    crm::log::Error("serve", {{"error", st.ToString()}});
    return 1;
  }
  return 0;
}
