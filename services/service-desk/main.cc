// crm-service-desk: tickets with SLA timers and escalation, CSAT and the
// knowledge base; events go to crm.service-desk.v1 via the outbox relay,
// and customers are learned from crm.leads.v1 and crm.sales.v1.
#include <cstdio>
#include <fstream>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/time/clock.h"
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
#include "services/service-desk/api/article_commands.h"
#include "services/service-desk/api/service_desk_grpc.h"
#include "services/service-desk/api/ticket_commands.h"
#include "services/service-desk/api/timer_loop.h"
#include "services/service-desk/api/warranty_follow_ups.h"
#include "services/service-desk/domain/settings.h"
#include "services/service-desk/store/customer_projection.h"
#include "services/service-desk/store/desk_store.h"

namespace {

// --config (CRM_SERVICE_DESK_CONFIG): a crm.v1.ServiceDeskSettings text
// file; without one the defaults apply.
absl::StatusOr<crm::service_desk::DeskSettings> LoadSettings(const std::string& path) {
  crm::v1::ServiceDeskSettings config = crm::service_desk::DeskSettings::Defaults();
  if (!path.empty()) {
    std::ifstream in(path);
    if (!in) return absl::NotFoundError("config: cannot read " + path);
    std::stringstream text;
    text << in.rdbuf();
    auto parsed = crm::service_desk::DeskSettings::ParseText(text.str());
    if (!parsed.ok()) return parsed.status();
    config = *std::move(parsed);
  }
  return crm::service_desk::DeskSettings::Create(std::move(config));
}

}  // namespace

int main(int argc, char** argv) {
  crm::UseReleaseRuntime();
  crm::ServiceHost::BlockShutdownSignals();
  auto config = crm::LoadServiceConfig(argc, argv, "service-desk", "127.0.0.1:50053");
  if (!config.ok()) {
    std::fprintf(stderr, "crm-service-desk: %s\n", config.status().ToString().c_str());
    return 2;
  }
  auto settings = LoadSettings(crm::Setting(argc, argv, "config", "CRM_SERVICE_DESK_CONFIG", ""));
  int timer_ms = 0;
  if (!absl::SimpleAtoi(
          crm::Setting(argc, argv, "timer-interval-ms", "CRM_TIMER_INTERVAL_MS", "1000"),
          &timer_ms) ||
      timer_ms < 10) {
    std::fprintf(stderr, "crm-service-desk: timer-interval-ms must be a number >= 10\n");
    return 2;
  }
  if (!settings.ok()) {
    std::fprintf(stderr, "crm-service-desk: %s\n", settings.status().ToString().c_str());
    return 2;
  }
  // Not CRM_GROUP_ID: a value meant for analytics must not put the service
  // desk into analytics' consumer group.
  const std::string group_id =
      crm::Setting(argc, argv, "group-id", "CRM_SERVICE_DESK_GROUP_ID", "crm-service-desk");
  crm::log::SetService("service-desk");
  if (auto st = crm::CheckUnreadSettings(config->args); !st.ok()) {
    std::fprintf(stderr, "crm-%s: %s\n", config->service_name.c_str(), st.ToString().c_str());
    return 2;
  }
  auto store = crm::service_desk::DeskStore::Open(config->data_dir);
  if (!store.ok()) {
    crm::log::Error("open store", {{"error", store.status().ToString()}});
    return 1;
  }

  auto vault = crm::pii::KeyVault::Open((*store)->db(), &(*store)->events(),
                                        config->PiiMasterKeys(), "crm/service-desk");
  if (!vault.ok()) {
    crm::log::Error("open key vault", {{"error", vault.status().ToString()}});
    return 1;
  }
  crm::OutboxRelay relay((*store)->events(), {.brokers = config->brokers,
                                              .topic = crm::kServiceDeskTopic,
                                              .compression = config->kafka_compression});
  if (auto st = relay.Start(); !st.ok()) {
    crm::log::Error("start relay", {{"error", st.ToString()}});
    return 1;
  }

  crm::service_desk::CustomerProjection customers(*settings);
  crm::SubscriberOptions sub_options;
  sub_options.brokers = config->brokers;
  sub_options.group_id = group_id;
  sub_options.topics = {crm::kLeadsTopic, crm::kSalesTopic};
  // Every erasure is known before the events whose data it erases.
  auto keys = crm::pii::KeySubscriber::StartBefore((*store)->db(), **vault, sub_options);
  if (!keys.ok()) {
    crm::log::Error("start key subscriber", {{"error", keys.status().ToString()}});
    return 1;
  }
  sub_options.dead_letter_topic = crm::kDeadLetterTopic;
  crm::Subscriber subscriber((*store)->db(), customers, sub_options);
  if (auto st = subscriber.Start(); !st.ok()) {
    crm::log::Error("start subscriber", {{"error", st.ToString()}});
    return 1;
  }

  crm::BlockingExecutor executor(config->worker_threads, config->max_queued_calls);
  crm::service_desk::Clock clock = [] { return absl::Now(); };
  crm::service_desk::TicketCommands tickets(**store, *settings, clock);
  tickets.SealPiiWith(**vault);
  crm::service_desk::ArticleCommands articles(**store, clock);
  crm::service_desk::ServiceDeskGrpc grpc_service(tickets, articles, executor);
  crm::service_desk::WarrantyFollowUps warranty(**store, clock, vault->get(),
                                                [k = keys->get()] { return k->reached_start(); });
  crm::service_desk::TimerLoop timers(
      [&tickets, &warranty]() -> absl::StatusOr<int> {
        auto visited = tickets.RunDueTimers();
        auto raised = warranty.RunDue();
        if (!visited.ok()) return visited.status();
        if (!raised.ok()) return raised.status();
        return *visited + *raised;
      },
      absl::Milliseconds(timer_ms));
  timers.Start();

  crm::ServiceHost host(*config);
  host.AddService(&grpc_service);
  host.GateReadiness(crm::v1::ServiceDeskService::service_full_name(),
                     crm::ReadyAfterRestore(
                         config->data_dir, [k = keys->get()] { return k->reached_start(); },
                         [&store] { return (*store)->db().Flush(); }));
  host.ServeAdmin((*store)->events().db(), (*store)->events(), **vault);
  host.RecordDenials((*store)->events());
  host.OpenPii(**vault);
  // Hooks run in reverse: timers stop first, the relay flushes last.
  host.OnShutdown([&relay] { relay.Stop(absl::Seconds(5)); });
  host.OnShutdown([&subscriber, &keys] {
    subscriber.Stop();
    (*keys)->Stop();
  });
  host.OnShutdown([&timers] { timers.Stop(); });
  if (auto st = host.Run(); !st.ok()) {
    crm::log::Error("serve", {{"error", st.ToString()}});
    return 1;
  }
  return 0;
}
