// crm-sales: customer accounts, pipeline, activities, quotes, orders and
// contracts; events go to crm.sales.v1 via the outbox relay. Reacts to
// LeadConverted (crm.leads.v1) and to its own InvoiceRequested.
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
#include "libs/common/pii/key_vault.h"
#include "libs/common/runtime.h"
#include "libs/common/service_host.h"
#include "libs/common/subscriber.h"
#include "services/sales/api/reminder_loop.h"
#include "services/sales/api/sales_commands.h"
#include "services/sales/api/sales_grpc.h"
#include "services/sales/api/sales_reactions.h"
#include "services/sales/store/sales_store.h"

namespace {

// Sales settings: flag, else environment, else default.
absl::StatusOr<crm::sales::SalesSettings> LoadSalesSettings(int argc, char** argv) {
  crm::sales::SalesSettings settings;
  const std::string pipelines =
      crm::Setting(argc, argv, "pipelines-file", "CRM_SALES_PIPELINES_FILE", "");
  if (!pipelines.empty()) {
    std::ifstream in(pipelines);
    if (!in) return absl::NotFoundError("pipelines-file: cannot be read");
    std::stringstream text;
    text << in.rdbuf();
    auto parsed = crm::sales::Pipelines::FromText(text.str());
    if (!parsed.ok()) return parsed.status();
    settings.pipelines = *std::move(parsed);
  }
  auto loyalty = crm::sales::LoyaltyProgram::Parse(
      crm::Setting(argc, argv, "loyalty-currency", "CRM_SALES_LOYALTY_CURRENCY", "EUR"),
      crm::Setting(argc, argv, "loyalty-tiers", "CRM_SALES_LOYALTY_TIERS",
                   "standard:0,silver:1000000,gold:5000000,platinum:20000000"));
  if (!loyalty.ok()) return loyalty.status();
  settings.loyalty = *std::move(loyalty);
  int stale_days = 0;
  if (!absl::SimpleAtoi(
          crm::Setting(argc, argv, "stale-after-days", "CRM_SALES_STALE_AFTER_DAYS", "14"),
          &stale_days) ||
      stale_days < 1 || stale_days > 3650) {
    return absl::InvalidArgumentError("stale-after-days: must be 1..3650");
  }
  settings.stale_after = absl::Hours(24) * stale_days;
  return settings;
}

}  // namespace

int main(int argc, char** argv) {
  crm::UseReleaseRuntime();
  crm::ServiceHost::BlockShutdownSignals();
  auto config = crm::LoadServiceConfig(argc, argv, "sales", "127.0.0.1:50052");
  if (!config.ok()) {
    std::fprintf(stderr, "crm-sales: %s\n", config.status().ToString().c_str());
    return 2;
  }
  auto settings = LoadSalesSettings(argc, argv);
  int reminder_ms = 0;
  if (!settings.ok() ||
      !absl::SimpleAtoi(crm::Setting(argc, argv, "reminder-interval-ms",
                                     "CRM_SALES_REMINDER_INTERVAL_MS", "1000"),
                        &reminder_ms) ||
      reminder_ms < 10) {
    std::fprintf(stderr, "crm-sales: %s\n",
                 settings.ok() ? "reminder-interval-ms: must be at least 10"
                               : settings.status().ToString().c_str());
    return 2;
  }
  const std::string group_id =
      crm::Setting(argc, argv, "group-id", "CRM_SALES_GROUP_ID", "crm-sales");
  crm::log::SetService("sales");
  if (auto st = crm::CheckUnreadSettings(config->args); !st.ok()) {
    std::fprintf(stderr, "crm-%s: %s\n", config->service_name.c_str(), st.ToString().c_str());
    return 2;
  }
  auto store = crm::sales::SalesStore::Open(config->data_dir);
  if (!store.ok()) {
    crm::log::Error("open store", {{"error", store.status().ToString()}});
    return 1;
  }
  auto vault = crm::pii::KeyVault::Open((*store)->db(), &(*store)->events(),
                                        config->PiiMasterKeys(), "crm/sales");
  if (!vault.ok()) {
    crm::log::Error("open key vault", {{"error", vault.status().ToString()}});
    return 1;
  }
  crm::OutboxRelay relay((*store)->events(), {.brokers = config->brokers,
                                              .topic = crm::kSalesTopic,
                                              .compression = config->kafka_compression});
  if (auto st = relay.Start(); !st.ok()) {
    crm::log::Error("start relay", {{"error", st.ToString()}});
    return 1;
  }

  crm::sales::SalesCommands commands(**store, *std::move(settings));
  commands.SealPiiWith(**vault);

  // Choreography: conversions from leads, our own invoice requests for
  // loyalty, and analytics' churn alerts for retention calls. Offsets live
  // in the sales database (exactly once in effect).
  crm::sales::SalesReactions reactions(commands);
  crm::SubscriberOptions sub_options;
  sub_options.brokers = config->brokers;
  sub_options.group_id = group_id;
  sub_options.topics = {crm::kLeadsTopic, crm::kSalesTopic, crm::kAnalyticsTopic};
  // Every erasure is known before the events whose data it erases.
  auto keys = crm::pii::KeySubscriber::StartBefore((*store)->db(), **vault, sub_options);
  if (!keys.ok()) {
    crm::log::Error("start key subscriber", {{"error", keys.status().ToString()}});
    return 1;
  }
  sub_options.dead_letter_topic = crm::kDeadLetterTopic;
  crm::Subscriber subscriber((*store)->db(), reactions, sub_options);
  if (auto st = subscriber.Start(); !st.ok()) {
    crm::log::Error("start subscriber", {{"error", st.ToString()}});
    return 1;
  }

  crm::sales::ReminderLoop reminders(
      commands, [] { return absl::Now(); }, absl::Milliseconds(reminder_ms));
  reminders.Start();

  crm::BlockingExecutor executor(config->worker_threads, config->max_queued_calls);
  crm::sales::SalesGrpc grpc_service(commands, executor);

  crm::ServiceHost host(*config);
  host.AddService(&grpc_service);
  host.GateReadiness(crm::v1::SalesService::service_full_name(),
                     crm::ReadyAfterRestore(
                         config->data_dir, [k = keys->get()] { return k->reached_start(); },
                         [&store] { return (*store)->db().Flush(); }));
  host.ServeAdmin((*store)->events().db(), (*store)->events(), **vault);
  host.RecordDenials((*store)->events());
  host.OpenPii(**vault);
  // Run in reverse: stop timers and reactions first, then flush the relay.
  host.OnShutdown([&relay] { relay.Stop(absl::Seconds(5)); });
  host.OnShutdown([&subscriber, &keys] {
    subscriber.Stop();
    (*keys)->Stop();
  });
  host.OnShutdown([&reminders] { reminders.Stop(); });
  if (auto st = host.Run(); !st.ok()) {
    crm::log::Error("serve", {{"error", st.ToString()}});
    return 1;
  }
  return 0;
}
