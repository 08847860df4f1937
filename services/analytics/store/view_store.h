#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "crm/v1/analytics.pb.h"
#include "libs/common/database.h"
#include "libs/common/subscriber.h"

namespace crm::analytics {

// Column families of the analytics RocksDB, the subscriber's included.
std::vector<std::string> ViewFamilies();
// The families that hold the views themselves: equal contents here mean
// equal views (crmctl digest, the rebuild-equality test).
std::vector<const char*> ViewDigestFamilies();

// Writes the 360° views: one summary per customer plus a timeline keyed by
// customer, occurred_at and event id (so a timeline page is one seek); and
// the funnel records of each lead and opportunity.
class Customer360Projection final : public Projection {
 public:
  void BeginBatch() override {
    views_.clear();
    leads_.clear();
    opportunities_.clear();
  }
  absl::Status Apply(const crm::v1::EventEnvelope& event, ProjectionTxn& txn) override;
  absl::Status Flush(ProjectionTxn& txn) override;

 private:
  // Views touched in the current batch: each is read and written once per
  // batch however many of its events the batch holds.
  absl::flat_hash_map<std::string, crm::v1::Customer360> views_;
  // Funnel records touched in the current batch, cached the same way.
  absl::flat_hash_map<std::string, crm::v1::FunnelLeadRecord> leads_;
  absl::flat_hash_map<std::string, crm::v1::FunnelOpportunityRecord> opportunities_;
};

// Reads the views.
class ViewStore {
 public:
  explicit ViewStore(const Database& db) : db_(db) {}

  // NOT_FOUND for a customer never seen. Pages through the timeline oldest
  // first; page_size defaults to 50 and is capped at 500.
  absl::StatusOr<crm::v1::Customer360> GetCustomer360(const std::string& customer_id,
                                                      int32_t page_size,
                                                      const std::string& page_token) const;

  // Aggregates the funnel records at read time: a scan of the lead and
  // opportunity records, so projection writes stay per-entity.
  absl::StatusOr<crm::v1::Funnel> GetFunnel(const crm::v1::GetFunnelRequest& request) const;

 private:
  const Database& db_;
};

}  // namespace crm::analytics
