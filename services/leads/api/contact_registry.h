#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "services/leads/store/lead_store.h"

namespace crm::leads {

// Gives one person one customer_id while leads are being decided: the
// contact index in RocksDB knows committed leads, this registry knows the
// leads decided but not yet durable (an import chunk in flight, a capture
// waiting for its fsync). Concurrent captures and imports of the same
// person agree: one waits for the other's lead to land (an fsync, or an
// import chunk's write) before it resolves.
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
    // Keys nobody had: once this lead is committed they point to the
    // person's first lead (duplicate_of_lead_id, else this lead).
    std::vector<std::string> claimed;
  };

  // Mints the new lead's id once its customer is known (an import picks
  // ids by customer, see LeadImporter).
  using LeadIdFor = std::function<std::string(const std::string& customer_id)>;

  // Who claims keys: a capture, or an import call whose chunks land in
  // order (a chunk that fails stops the later ones).
  using Owner = uint64_t;
  Owner NewOwner() { return ++owners_; }

  // What a caller holds from Resolve until its leads land or fail: the
  // keys it claimed and the known customers its leads join.
  struct Hold {
    std::vector<std::string> keys;
    std::vector<std::string> customers;
    void Add(const Resolution& r);
  };

  // Resolves candidates in order: a later one matches an earlier one of
  // the same call, or of an earlier call of the same owner. A key another
  // owner holds pending is waited for until it is released: matching it
  // would name a lead that may never be written. So is a customer being
  // retired (see Retire). The caller writes ContactWrite for every claimed
  // key in the lead's append and then calls Release with a Hold of the
  // resolutions, whether it committed or not.
  absl::StatusOr<std::vector<Resolution>> Resolve(const std::vector<Candidate>& candidates,
                                                  const LeadIdFor& lead_id_for, Owner owner);
  void Release(const Hold& hold);
  // For a command that names a known customer in its events (ConvertLead):
  // waits while a merge retires the customer, then holds off merges that
  // would retire it (Retire waits) until Release of a Hold naming it.
  void Join(const std::string& customer_id);

  // Keeps leads from joining a customer while MergeLeads retires it: a
  // lead resolved to the merged customer before the merge and written
  // after it would land under a customer that no longer stands for the
  // person. Retire waits for the leads in flight to that customer to land;
  // until the returned guard goes, Resolve calls that match it wait, then
  // read the index the merge rewrote. `survivor_id`, if given, is held the
  // same way (taken with the other at once): no merge retires the survivor
  // meanwhile, nor one the other way round links the two both ways.
  class [[nodiscard]] Retirement {
   public:
    Retirement(Retirement&& other) noexcept
        : registry_(std::exchange(other.registry_, nullptr)),
          customer_ids_(std::move(other.customer_ids_)) {}
    Retirement(const Retirement&) = delete;
    Retirement& operator=(const Retirement&) = delete;
    Retirement& operator=(Retirement&&) = delete;
    ~Retirement();

   private:
    friend class ContactRegistry;
    Retirement(ContactRegistry* registry, std::vector<std::string> customer_ids)
        : registry_(registry), customer_ids_(std::move(customer_ids)) {}

    ContactRegistry* registry_;
    std::vector<std::string> customer_ids_;
  };
  Retirement Retire(const std::string& customer_id, const std::string& survivor_id = "");
  // Whether a merge is retiring the customer now (for tests and probes).
  bool retiring(const std::string& customer_id);
  // Callers blocked here: on another's lead to land, a merge to end, the
  // leads joining a customer to land (for tests).
  int waiting();

  // The lead that now stands for the person of `lead_id`: itself, or the
  // survivor of the merges it went into, and when that is a later lead of
  // its person (a survivor keeps its duplicate_of_lead_id), the lead that
  // stands for the person's first lead, found the same way.
  absl::StatusOr<std::string> HomeLead(std::string lead_id) const;

 private:
  struct Pending {
    ContactMatch match;
    Owner owner;
  };

  // released_.wait, counted in waiting_ while it blocks.
  template <typename Done>
  void Wait(std::unique_lock<std::mutex>& lock, Done done);

  LeadStore& store_;
  std::atomic<Owner> owners_{0};
  std::mutex mu_;
  std::condition_variable released_;
  absl::flat_hash_map<std::string, Pending> pending_;
  // Leads resolved to a known customer and not yet released, by customer.
  absl::flat_hash_map<std::string, int> joining_;
  absl::flat_hash_set<std::string> retiring_;
  int waiting_ = 0;
};

}  // namespace crm::leads
