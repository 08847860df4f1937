#pragma once

// The consumers of the shared topics other than analytics, each on a
// RocksDB of its own in a temp dir that lives as long as the fuzz process:
// the service desk's customer projection, the sales reactions (account
// from a conversion, loyalty spend, retention task) and a service's key
// reader (crm.keys.v1 into its key vault).
#include <cstdint>
#include <memory>
#include <string>

#include "absl/time/time.h"
#include "fuzz/fuzz_input.h"
#include "libs/common/pii/cipher.h"
#include "libs/common/pii/key_vault.h"
#include "libs/common/subscriber.h"
#include "services/leads/store/lead_store.h"
#include "services/sales/api/sales_commands.h"
#include "services/sales/api/sales_reactions.h"
#include "services/sales/store/sales_store.h"
#include "services/service-desk/domain/settings.h"
#include "services/service-desk/store/customer_projection.h"
#include "services/service-desk/store/desk_store.h"

namespace crm::fuzz {

class DeskConsumer final : public CountingConsumer {
 public:
  DeskConsumer()
      : store_(OpenOrFail(service_desk::DeskStore::Open(dir_.Sub("desk")),
                          "cannot open the service desk database")),
        settings_(*service_desk::DeskSettings::Create(service_desk::DeskSettings::Defaults())),
        projection_(settings_),
        subscriber_(store_->db(), projection_, Options()) {}

  Subscriber& subscriber() override { return subscriber_; }

 private:
  std::unique_ptr<service_desk::DeskStore> store_;
  service_desk::DeskSettings settings_;
  service_desk::CustomerProjection projection_;
  Subscriber subscriber_;
};

class SalesConsumer final : public CountingConsumer {
 public:
  SalesConsumer()
      : store_(OpenOrFail(sales::SalesStore::Open(dir_.Sub("sales")),
                          "cannot open the sales database")),
        commands_(*store_, Settings()),
        reactions_(commands_),
        subscriber_(store_->db(), reactions_, Options()) {
    // Nothing relays this outbox: a long run must not fill it up and have
    // the reactions refused for it (RESOURCE_EXHAUSTED).
    store_->events().SetOutboxLimit(UINT64_MAX);
  }

  Subscriber& subscriber() override { return subscriber_; }

 private:
  // The seeds' time (November 2023): a churn alert older than a month
  // opens no retention task.
  static sales::SalesSettings Settings() {
    sales::SalesSettings settings;
    settings.clock = [] { return absl::FromUnixSeconds(1'700'007'000); };
    return settings;
  }

  std::unique_ptr<sales::SalesStore> store_;
  sales::SalesCommands commands_;
  sales::SalesReactions reactions_;
  Subscriber subscriber_;
};

// The key records of every service as the leads service reads them: keys
// it holds destroyed by an erasure, customers linked by merges, issue
// records of keys it cannot unwrap parked. It holds keys of its own for
// the seeds' customers, so an erasure record has keys to destroy.
class KeyConsumer final : public CountingConsumer {
 public:
  KeyConsumer()
      : store_(OpenOrFail(leads::LeadStore::Open(dir_.Sub("keys"), pii::RandomKey()),
                          "cannot open the key vault's database")),
        records_(store_->vault(), nullptr),
        subscriber_(store_->events().db(), records_, Options()) {
    // Nothing relays this outbox: erasures append a destruction per key.
    store_->events().SetOutboxLimit(UINT64_MAX);
    EventContext ctx;
    ctx.source = "crm/leads";
    ctx.actor = "fuzz";
    ctx.occurred_at = absl::FromUnixSeconds(1'700'000'000);
    for (const char* customer : {"cus_k1", "cus_k2", "cus_k3"}) {
      Check(store_->vault().EnsureKey(customer, ctx).ok(), "cannot issue a key");
    }
  }

  Subscriber& subscriber() override { return subscriber_; }

 private:
  std::unique_ptr<leads::LeadStore> store_;
  pii::WithKeyRecords records_;
  Subscriber subscriber_;
};

}  // namespace crm::fuzz
