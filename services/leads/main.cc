// crm-leads: captures, imports, scores, assigns, qualifies, converts and
// merges leads; events go to crm.leads.v1 via the outbox relay.
#include <algorithm>
#include <cstdio>

#include "libs/common/backup.h"
#include "libs/common/blocking_executor.h"
#include "libs/common/kafka.h"
#include "libs/common/log.h"
#include "libs/common/outbox_relay.h"
#include "libs/common/pii/key_vault.h"
#include "libs/common/runtime.h"
#include "libs/common/service_host.h"
#include "services/leads/api/lead_commands.h"
#include "services/leads/api/lead_import.h"
#include "services/leads/api/leads_grpc.h"
#include "services/leads/store/lead_store.h"

int main(int argc, char** argv) {
  crm::UseReleaseRuntime();
  crm::ServiceHost::BlockShutdownSignals();
  auto config = crm::LoadServiceConfig(argc, argv, "leads", "127.0.0.1:50051");
  if (!config.ok()) {
    std::fprintf(stderr, "crm-leads: %s\n", config.status().ToString().c_str());
    return 2;
  }
  const std::string keys_group_id =
      crm::Setting(argc, argv, "keys-group-id", "CRM_LEADS_KEYS_GROUP_ID", "crm-leads-keys");
  crm::log::SetService("leads");
  if (auto st = crm::CheckUnreadSettings(config->args); !st.ok()) {
    std::fprintf(stderr, "crm-%s: %s\n", config->service_name.c_str(), st.ToString().c_str());
    return 2;
  }
  auto store = crm::leads::LeadStore::Open(config->data_dir, config->PiiMasterKeys());
  if (!store.ok()) {
    crm::log::Error("open store", {{"error", store.status().ToString()}});
    return 1;
  }
  crm::OutboxRelay relay((*store)->events(), {.brokers = config->brokers,
                                              .topic = crm::kLeadsTopic,
                                              .compression = config->kafka_compression});
  if (auto st = relay.Start(); !st.ok()) {
    crm::log::Error("start relay", {{"error", st.ToString()}});
    return 1;
  }

  // The other services' data keys, to read what they sealed, and erasures.
  crm::pii::KeySubscriber key_subscriber((*store)->events().db(), (*store)->vault(),
                                         config->brokers, keys_group_id);
  if (auto st = key_subscriber.Start(); !st.ok()) {
    crm::log::Error("start key subscriber", {{"error", st.ToString()}});
    return 1;
  }

  crm::BlockingExecutor executor(config->worker_threads, config->max_queued_calls);
  crm::leads::LeadCommands commands(**store);
  // Rules and the owners' load before the first lead is assigned.
  if (auto st = commands.Recover(); !st.ok()) {
    crm::log::Error("recover assignment state", {{"error", st.ToString()}});
    return 1;
  }
  // An import holds a handler thread while it prepares a message's rows:
  // imports may take a quarter of them, the rest stay for every other call.
  crm::leads::ImportOptions import_options;
  import_options.max_running_calls = std::max(1, config->worker_threads / 4);
  crm::leads::LeadImporter importer(commands, import_options);
  crm::leads::LeadsGrpc grpc_service(commands, importer, executor);

  crm::ServiceHost host(*config);
  host.AddService(&grpc_service);
  host.GateReadiness(
      crm::v1::LeadsService::service_full_name(),
      crm::ReadyAfterRestore(
          config->data_dir, [&key_subscriber] { return key_subscriber.reached_start(); },
          [&store] { return (*store)->events().db().Flush(); }));
  host.ServeAdmin((*store)->events().db(), (*store)->events(), (*store)->vault());
  host.RecordDenials((*store)->events());
  host.OpenPii((*store)->vault());
  host.OnShutdown([&relay] { relay.Stop(absl::Seconds(5)); });
  host.OnShutdown([&key_subscriber] { key_subscriber.Stop(); });
  if (auto st = host.Run(); !st.ok()) {
    crm::log::Error("serve", {{"error", st.ToString()}});
    return 1;
  }
  return 0;
}
