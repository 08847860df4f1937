#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "crm/v1/leads.pb.h"
#include "libs/common/event_store.h"
#include "libs/common/pii/key_vault.h"
#include "services/leads/domain/lead.h"

namespace crm::leads {

// The first lead seen for a person, found by normalized email or phone.
struct ContactMatch {
  std::string lead_id;
  std::string customer_id;
};

// A ListLeads query, validated.
struct LeadQuery {
  // At most one of the two.
  std::string owner_id;
  std::string queue;
  absl::flat_hash_set<int> statuses;  // empty = all
  crm::v1::LeadChannel channel = crm::v1::LEAD_CHANNEL_UNSPECIFIED;
  std::string region;
  int32_t min_score = 0;
  int32_t max_score = 100;
  crm::v1::LeadSort sort = crm::v1::LEAD_SORT_UNSPECIFIED;
  int32_t page_size = 50;
  std::string page_token;
};

// The leads service's RocksDB: its event log (libs/common EventStore) and
// the projections written in the same batch as the events:
//   contacts    "email#…" | "phone#…" -> first lead \n customer_id
//               (blind index of the normalized value: no plaintext)
//   leads_by_score  score lead_id                    -> "+"
//   leads_by_owner  assignee \0 score lead_id        -> "+"
//               (assignee "u:<owner>" or "q:<queue>", score one byte); the
//               entry of a lead that moved on is deleted in the same batch.
// A list reads each lead from its state (the event store's state family,
// "lead-" lead_id), which is also the capture-order listing.
//   imports     import key \0 row (big-endian)       -> ImportRowResult
//               (the import key is the import_id scoped to its caller)
//   settings    "assignment_rules"                   -> AssignmentRuleTable
class LeadStore {
 public:
  // `master_keys` wrap the data keys of the personal data it seals.
  static absl::StatusOr<std::unique_ptr<LeadStore>> Open(const std::string& path,
                                                         const pii::MasterKeys& master_keys);

  LeadStore(std::unique_ptr<EventStore> events, std::unique_ptr<pii::KeyVault> vault)
      : events_(std::move(events)), vault_(std::move(vault)) {}

  // ---- contacts ----
  // Matches email first, then phone.
  absl::StatusOr<std::optional<ContactMatch>> FindContact(const crm::v1::Contact& contact) const;
  // The index keys of a plaintext contact: email first, then phone.
  std::vector<std::string> ContactKeys(const crm::v1::Contact& contact) const;
  // One batched read for many keys (an import chunk); one result per key.
  absl::StatusOr<std::vector<std::optional<ContactMatch>>> FindContactKeys(
      const std::vector<std::string>& keys) const;
  static ProjectionWrite ContactWrite(const std::string& key, const ContactMatch& match);

  // ---- list projection ----
  static crm::v1::LeadSummary Summarize(const crm::v1::Lead& lead);
  // The index writes (and deletes) that take the lead from `before`
  // (nullptr for a new lead) to `after`.
  static std::vector<ProjectionWrite> ListWrites(const crm::v1::Lead* before,
                                                 const crm::v1::Lead& after);
  absl::StatusOr<crm::v1::ListLeadsResponse> ListLeads(const LeadQuery& query) const;
  // Every lead that has an owner, once (for the load counters at start).
  absl::Status ForEachOwnedLead(const std::function<void(const crm::v1::Lead&)>& fn) const;

  // ---- imports ----
  // Earlier results of rows of an import, one per row number (nullopt =
  // never imported).
  absl::StatusOr<std::vector<std::optional<crm::v1::ImportRowResult>>> FindImportRows(
      const std::string& import_key, const std::vector<int64_t>& rows) const;
  // Whether any row of the import was stored (a fresh import skips the
  // per-row lookups).
  absl::StatusOr<bool> HasImportRows(const std::string& import_key) const;
  static ProjectionWrite ImportRowWrite(const std::string& import_key,
                                        const crm::v1::ImportRowResult& result);

  // ---- assignment rules ----
  absl::StatusOr<crm::v1::AssignmentRuleTable> LoadRules() const;
  static ProjectionWrite RulesWrite(const crm::v1::AssignmentRuleTable& table);

  // NOT_FOUND for an unknown lead.
  absl::StatusOr<crm::v1::Lead> GetLead(const std::string& lead_id) const;
  // The lead and its stream version (the version the next append expects).
  absl::StatusOr<std::optional<crm::v1::Lead>> FindLead(const std::string& lead_id) const;

  EventStore& events() { return *events_; }
  const EventStore& events() const { return *events_; }
  // Data keys: contacts are sealed before they enter an event.
  pii::KeyVault& vault() { return *vault_; }
  const pii::KeyVault& vault() const { return *vault_; }

 private:
  std::unique_ptr<EventStore> events_;
  std::unique_ptr<pii::KeyVault> vault_;
};

}  // namespace crm::leads
