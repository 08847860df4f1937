#pragma once

#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "services/leads/store/lead_store.h"

namespace crm::leads {

// Gives one person one customer_id while leads are being decided: the
// contact index in RocksDB knows committed leads, this registry knows the
// leads decided but not yet durable (an import chunk in flight, a capture
// waiting for its fsync). Resolving holds one short lock, so concurrent
// captures and imports of the same person agree.
class ContactRegistry {
 public:
  explicit ContactRegistry(LeadStore& store) : store_(store) {}

  // A new lead to resolve: its contact keys (LeadStore::ContactKeys) and
  // the customer id it gets if the person is new.
  struct Candidate {
    std::vector<std::string> keys;
    std::string new_customer_id;
  };
  struct Resolution {
    std::string lead_id;
    std::string customer_id;
    // The first lead of a known person; empty for a new person.
    std::string duplicate_of_lead_id;
    // Keys nobody had: they point to this lead once it is committed.
    std::vector<std::string> claimed;
  };

  // Mints the new lead's id once its customer is known (an import picks
  // ids by customer, see LeadImporter).
  using LeadIdFor = std::function<std::string(const std::string& customer_id)>;

  // Resolves candidates in order: a later one matches an earlier one of
  // the same call. The caller writes ContactWrite for every claimed key in
  // the lead's append and then calls Release, whether it committed or not.
  absl::StatusOr<std::vector<Resolution>> Resolve(const std::vector<Candidate>& candidates,
                                                  const LeadIdFor& lead_id_for);
  void Release(const std::vector<std::string>& keys);

 private:
  LeadStore& store_;
  std::mutex mu_;
  absl::flat_hash_map<std::string, ContactMatch> pending_;
};

}  // namespace crm::leads
