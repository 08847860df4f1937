#include "services/leads/api/contact_registry.h"

#include <algorithm>

#include "libs/common/status_macros.h"

namespace crm::leads {

template <typename Done>
void ContactRegistry::Wait(std::unique_lock<std::mutex>& lock, Done done) {
  if (done()) return;
  ++waiting_;
  released_.wait(lock, done);
  --waiting_;
}

absl::StatusOr<std::vector<ContactRegistry::Resolution>> ContactRegistry::Resolve(
    const std::vector<Candidate>& candidates, const LeadIdFor& lead_id_for, Owner owner) {
  std::unique_lock<std::mutex> lock(mu_);
  absl::flat_hash_map<std::string, ContactMatch> known;
  // Lead id as a row names it -> the lead standing for it now: one read per
  // lead, however many of its keys the candidates bring.
  absl::flat_hash_map<std::string, std::string> live;
  for (;;) {
    // Another owner's pending lead may fail or be a replay: wait for it to
    // land in the index (or not) before deciding who this person is.
    auto landed = [&] {
      for (const auto& c : candidates) {
        for (const auto& k : c.keys) {
          if (auto it = pending_.find(k); it != pending_.end() && it->second.owner != owner) {
            return false;
          }
        }
      }
      return true;
    };
    Wait(lock, landed);
    // One batched read for every key not already pending.
    std::vector<std::string> lookup;
    for (const auto& c : candidates) {
      for (const auto& k : c.keys) {
        if (!pending_.contains(k)) lookup.push_back(k);
      }
    }
    CRM_ASSIGN_OR_RETURN(auto found, store_.FindContactKeys(lookup));
    // A pass after waiting for a merge reads the leads again.
    live.clear();
    known.clear();
    known.reserve(found.size());
    // Customers a merge is retiring, met in the index or pending.
    std::vector<std::string> retiring;
    for (size_t i = 0; i < lookup.size(); ++i) {
      if (!found[i].has_value()) continue;
      // A row MergeLeads did not re-point (a contact first seen on a
      // duplicate of the merged lead) still names the merged customer: the
      // person is the survivor's now.
      found[i]->customer_id = store_.vault().SurvivorOf(found[i]->customer_id);
      // An erased person's rows stay in the index but name nobody: the key
      // is claimed again by the lead that brings it back.
      if (store_.vault().Erased(found[i]->customer_id)) continue;
      // Such a row also names the merged lead, which takes no commands, and
      // its survivor may be a later lead of the person.
      if (auto it = live.find(found[i]->lead_id); it != live.end()) {
        found[i]->lead_id = it->second;
      } else {
        CRM_ASSIGN_OR_RETURN(std::string now, HomeLead(found[i]->lead_id));
        live.emplace(found[i]->lead_id, now);
        found[i]->lead_id = std::move(now);
      }
      if (retiring_.contains(found[i]->customer_id)) retiring.push_back(found[i]->customer_id);
      known.emplace(lookup[i], *std::move(found[i]));
    }
    if (!retiring_.empty()) {
      for (const auto& c : candidates) {
        for (const auto& k : c.keys) {
          if (auto it = pending_.find(k);
              it != pending_.end() && retiring_.contains(it->second.match.customer_id)) {
            retiring.push_back(it->second.match.customer_id);
          }
        }
      }
    }
    if (retiring.empty()) break;
    // A merge is moving this person's keys: read them again once it ends.
    Wait(lock, [&] {
      return std::none_of(retiring.begin(), retiring.end(),
                          [&](const std::string& c) { return retiring_.contains(c); });
    });
  }

  std::vector<Resolution> out;
  out.reserve(candidates.size());
  for (const auto& c : candidates) {
    const ContactMatch* match = nullptr;
    for (const auto& k : c.keys) {  // email before phone
      if (auto it = pending_.find(k); it != pending_.end()) {
        match = &it->second.match;
      } else if (auto it = known.find(k); it != known.end()) {
        match = &it->second;
      }
      if (match != nullptr) break;
    }
    Resolution r;
    r.customer_id = match != nullptr ? match->customer_id : c.new_customer_id;
    if (match != nullptr) {
      r.duplicate_of_lead_id = match->lead_id;
      ++joining_[r.customer_id];
    }
    r.lead_id = lead_id_for(r.customer_id);
    // A key first seen on a duplicate names the person's first lead, as
    // its matched key does (copied: emplace may move what `match` names).
    const ContactMatch first = match != nullptr ? *match : ContactMatch{r.lead_id, r.customer_id};
    for (const auto& k : c.keys) {
      if (pending_.contains(k) || known.contains(k)) continue;
      pending_.emplace(k, Pending{first, owner});
      r.claimed.push_back(k);
    }
    out.push_back(std::move(r));
  }
  return out;
}

absl::StatusOr<std::string> ContactRegistry::HomeLead(std::string lead_id) const {
  // One read per hop. A first lead merged into one of its later leads leads
  // back there: a live lead met twice is the home. The bound only guards
  // against a corrupt store.
  absl::flat_hash_set<std::string> live;
  for (int hop = 0; hop < 1024; ++hop) {
    CRM_ASSIGN_OR_RETURN(auto lead, store_.FindLead(lead_id));
    if (!lead.has_value()) break;
    if (lead->status() == crm::v1::LEAD_STATUS_MERGED && !lead->merged_into_lead_id().empty()) {
      lead_id = lead->merged_into_lead_id();
      continue;
    }
    if (lead->duplicate_of_lead_id().empty() || !live.insert(lead_id).second) break;
    lead_id = lead->duplicate_of_lead_id();
  }
  return lead_id;
}

void ContactRegistry::Hold::Add(const Resolution& r) {
  keys.insert(keys.end(), r.claimed.begin(), r.claimed.end());
  if (!r.duplicate_of_lead_id.empty()) customers.push_back(r.customer_id);
}

void ContactRegistry::Release(const Hold& hold) {
  if (hold.keys.empty() && hold.customers.empty()) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& k : hold.keys) pending_.erase(k);
    for (const auto& c : hold.customers) {
      if (auto it = joining_.find(c); it != joining_.end() && --it->second == 0) joining_.erase(it);
    }
  }
  released_.notify_all();
}

void ContactRegistry::Join(const std::string& customer_id) {
  std::unique_lock<std::mutex> lock(mu_);
  Wait(lock, [&] { return !retiring_.contains(customer_id); });
  ++joining_[customer_id];
}

ContactRegistry::Retirement ContactRegistry::Retire(const std::string& customer_id,
                                                    const std::string& survivor_id) {
  std::vector<std::string> held = {customer_id};
  if (!survivor_id.empty() && survivor_id != customer_id) held.push_back(survivor_id);
  std::unique_lock<std::mutex> lock(mu_);
  // Both at once, never one while waiting for the other: two merges the
  // opposite way round would each hold one and wait for ever.
  Wait(lock, [&] {
    return std::none_of(held.begin(), held.end(),
                        [&](const std::string& c) { return retiring_.contains(c); });
  });
  retiring_.insert(held.begin(), held.end());
  Wait(lock, [&] { return !joining_.contains(customer_id); });
  return Retirement(this, std::move(held));
}

int ContactRegistry::waiting() {
  std::lock_guard<std::mutex> lock(mu_);
  return waiting_;
}

bool ContactRegistry::retiring(const std::string& customer_id) {
  std::lock_guard<std::mutex> lock(mu_);
  return retiring_.contains(customer_id);
}

ContactRegistry::Retirement::~Retirement() {
  if (registry_ == nullptr) return;
  {
    std::lock_guard<std::mutex> lock(registry_->mu_);
    for (const auto& c : customer_ids_) registry_->retiring_.erase(c);
  }
  registry_->released_.notify_all();
}

}  // namespace crm::leads
