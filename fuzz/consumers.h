#pragma once

// The consumers of the shared topics other than analytics, each on a
// RocksDB of its own in a temp dir that lives as long as the fuzz process:
// the service desk's customer projection and the sales reactions (account
// from a conversion, loyalty spend, retention task). Undecodable messages
// and events a consumer rejects are counted instead of sent to a
// dead-letter topic.
#include <cstdint>
#include <memory>
#include <string>

#include "absl/time/time.h"
#include "fuzz/fuzz_input.h"
#include "libs/common/subscriber.h"
#include "libs/common/testing/temp_dir.h"
#include "services/sales/api/sales_commands.h"
#include "services/sales/api/sales_reactions.h"
#include "services/sales/store/sales_store.h"
#include "services/service-desk/domain/settings.h"
#include "services/service-desk/store/customer_projection.h"
#include "services/service-desk/store/desk_store.h"

namespace crm::fuzz {

template <typename T>
std::unique_ptr<T> OpenOrFail(absl::StatusOr<std::unique_ptr<T>> opened, absl::string_view what) {
  Check(opened.ok(), what, opened.status().ToString());
  return *std::move(opened);
}

class DeskConsumer {
 public:
  DeskConsumer()
      : store_(OpenOrFail(service_desk::DeskStore::Open(dir_.Sub("desk")),
                          "cannot open the service desk database")),
        settings_(*service_desk::DeskSettings::Create(service_desk::DeskSettings::Defaults())),
        projection_(settings_),
        subscriber_(store_->db(), projection_, CountingDeadLetters(dead_letters_)) {}

  Subscriber& subscriber() { return subscriber_; }
  size_t dead_letters() const { return *dead_letters_; }

 private:
  testing::TempDir dir_;  // first: outlives the database in it
  std::shared_ptr<size_t> dead_letters_ = std::make_shared<size_t>(0);
  std::unique_ptr<service_desk::DeskStore> store_;
  service_desk::DeskSettings settings_;
  service_desk::CustomerProjection projection_;
  Subscriber subscriber_;
};

class SalesConsumer {
 public:
  SalesConsumer()
      : store_(OpenOrFail(sales::SalesStore::Open(dir_.Sub("sales")),
                          "cannot open the sales database")),
        commands_(*store_, Settings()),
        reactions_(commands_),
        subscriber_(store_->db(), reactions_, CountingDeadLetters(dead_letters_)) {
    // Nothing relays this outbox: a long run must not fill it up and have
    // the reactions refused for it (RESOURCE_EXHAUSTED).
    store_->events().SetOutboxLimit(UINT64_MAX);
  }

  Subscriber& subscriber() { return subscriber_; }
  size_t dead_letters() const { return *dead_letters_; }

 private:
  // The seeds' time (November 2023): a churn alert older than a month
  // opens no retention task.
  static sales::SalesSettings Settings() {
    sales::SalesSettings settings;
    settings.clock = [] { return absl::FromUnixSeconds(1'700'007'000); };
    return settings;
  }

  testing::TempDir dir_;
  std::shared_ptr<size_t> dead_letters_ = std::make_shared<size_t>(0);
  std::unique_ptr<sales::SalesStore> store_;
  sales::SalesCommands commands_;
  sales::SalesReactions reactions_;
  Subscriber subscriber_;
};

}  // namespace crm::fuzz
