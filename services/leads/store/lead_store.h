#pragma once

#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "crm/v1/leads.pb.h"
#include "libs/common/event_store.h"
#include "services/leads/domain/lead.h"

namespace crm::leads {

// The first lead seen for a person, found by normalized email or phone.
struct ContactMatch {
  std::string lead_id;
  std::string customer_id;
};

// The leads service's RocksDB: its event log (libs/common EventStore) plus
// the contact index used to give one person one customer_id.
class LeadStore {
 public:
  static absl::StatusOr<std::unique_ptr<LeadStore>> Open(const std::string& path);

  explicit LeadStore(std::unique_ptr<EventStore> events) : events_(std::move(events)) {}

  // Matches email first, then phone.
  absl::StatusOr<std::optional<ContactMatch>> FindContact(const crm::v1::Contact& contact) const;
  // The index writes that make `lead` findable by its contact, for the
  // append that captures it. Existing entries are kept (first lead wins).
  absl::StatusOr<std::vector<ProjectionWrite>> ContactIndexWrites(const crm::v1::Lead& lead) const;

  // NOT_FOUND for an unknown lead.
  absl::StatusOr<crm::v1::Lead> GetLead(const std::string& lead_id) const;

  EventStore& events() { return *events_; }

 private:
  std::unique_ptr<EventStore> events_;
};

}  // namespace crm::leads
