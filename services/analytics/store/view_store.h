#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "crm/v1/analytics.pb.h"
#include "google/protobuf/arena.h"
#include "libs/common/database.h"
#include "libs/common/subscriber.h"
#include "services/analytics/domain/analytics_settings.h"
#include "services/analytics/domain/customer_merge.h"

namespace crm::analytics {

// Column families of the analytics RocksDB, the subscriber's included.
std::vector<std::string> ViewFamilies();
// How the analytics database is opened: 4 MiB memtables. A rebuild writes
// every event's timeline and audit rows at keys scattered over all
// customers; before the memtable insert hint (libs/common/database.cc)
// small memtables took them much faster (47k -> 73k events/s in the Kafka
// rebuild benchmark). With the hint 1 to 64 MiB measure alike, and the
// small ones hold less memory.
DatabaseOptions ViewDatabaseOptions();
// The families that hold the views themselves: equal contents here mean
// equal views (crmctl digest, the rebuild-equality test).
std::vector<const char*> ViewDigestFamilies();

// Writes the 360° views: one summary per customer plus a timeline keyed by
// customer, occurred_at and event id (so a timeline page is one seek); the
// funnel records of each lead and opportunity; the KPI record of each
// ticket; the analytics clock, the latest occurred_at consumed; and the
// audit index, every event by actor and by record. Values
// that depend on "now" (churn risk, CLV, segments) are derived when read,
// so the stored bytes depend only on the set of events consumed.
class Customer360Projection final : public Projection {
 public:
  void BeginBatch() override { Clear(); }
  absl::Status Apply(const crm::v1::EventEnvelope& event, ProjectionTxn& txn) override;
  absl::Status Flush(ProjectionTxn& txn) override;

 private:
  void Clear();

  // What a batch decodes (payloads, cached records) lives on one arena and
  // is freed at once when the batch ends: freeing thousands of messages
  // field by field was a tenth of a batch's CPU.
  google::protobuf::Arena arena_;
  // Views touched in the current batch: each is read and written once per
  // batch however many of its events the batch holds.
  absl::flat_hash_map<std::string, crm::v1::Customer360*> views_;
  // Funnel records touched in the current batch, cached the same way.
  absl::flat_hash_map<std::string, crm::v1::FunnelLeadRecord*> leads_;
  absl::flat_hash_map<std::string, crm::v1::FunnelOpportunityRecord*> opportunities_;
  absl::flat_hash_map<std::string, crm::v1::KpiTicketRecord*> tickets_;
  // The latest occurred_at of this batch; the latest that may move the
  // clock (the wall clock plus kClockLead, read once a batch); whether the
  // batch logged one later than that.
  std::optional<google::protobuf::Timestamp> clock_;
  std::optional<absl::Time> latest_allowed_;
  bool warned_ahead_ = false;
};

// How far past the wall clock an event may be dated and still move the
// analytics clock. One stamped by a host whose clock runs further ahead is
// folded at its own time, but does not age every customer at once.
inline constexpr absl::Duration kClockLead = absl::Hours(1);

// The analytics clock stored in `db`: the latest occurred_at consumed
// (kClockLead says which count); unset (zero) before the first event.
absl::StatusOr<google::protobuf::Timestamp> ReadClock(const DbReader& db);

// Whether a stored value can no longer be read (pii::Unreadable).
using ValueTest = std::function<bool(const std::string&)>;

// Reads the views.
class ViewStore {
 public:
  // `unreadable`, if given, tells values sealed with a destroyed key: the
  // view of a merged group takes each profile field from members whose
  // value can still be read.
  explicit ViewStore(const Database& db, AnalyticsConfig config = AnalyticsConfig::Defaults(),
                     ValueTest unreadable = nullptr)
      : db_(db), config_(std::move(config)), unreadable_(std::move(unreadable)) {}

  // NOT_FOUND for a customer never seen. Pages through the timeline oldest
  // first; page_size defaults to 50 and is capped at 500. Churn risk, CLV,
  // segments and the at-risk/churned stage are derived at the clock.
  absl::StatusOr<crm::v1::Customer360> GetCustomer360(const std::string& customer_id,
                                                      int32_t page_size,
                                                      const std::string& page_token) const;

  // The view of the customer and those merged into it (the person an
  // export or an erasure counts), derived at the clock, without its
  // timeline: not the whole merged group GetCustomer360 shows, so an export
  // of a customer merged into another holds nothing of the other's.
  // NOT_FOUND when none of them has a view. `customer_id` is checked by
  // the caller (the admin service's ExportCustomer).
  absl::StatusOr<crm::v1::Customer360> GetExportedView(const std::string& customer_id) const;

  // Aggregates the funnel records at read time: a scan of the lead and
  // opportunity records, so projection writes stay per-entity.
  absl::StatusOr<crm::v1::Funnel> GetFunnel(const crm::v1::GetFunnelRequest& request) const;

  // Aggregates the ticket KPI records at read time, like the funnel.
  absl::StatusOr<crm::v1::ServiceKpis> GetServiceKpis(
      const crm::v1::GetServiceKpisRequest& request) const;

  // Walks the customers in id order from the page token, deriving each one's
  // segments at the clock, until a page of members is found: no segment
  // index to keep in step with a clock that moves every event.
  absl::StatusOr<crm::v1::ListSegmentResponse> ListSegment(
      const crm::v1::ListSegmentRequest& request) const;

  // The audit trail of one actor or one record, oldest first (see
  // AnalyticsService.ListAuditEntries).
  absl::StatusOr<crm::v1::ListAuditEntriesResponse> ListAuditEntries(
      const crm::v1::ListAuditEntriesRequest& request) const;

  // Calls `fn` with every customer's view, derived at the clock, in id
  // order; stops at the first error `fn` returns. A view that cannot be
  // read (a corrupt row, a merged member's) goes to `unreadable` with the
  // reason and the scan goes on: one bad row must not hide every customer
  // after it.
  absl::Status ForEachCustomer(const std::function<absl::Status(const crm::v1::Customer360&)>& fn,
                               const std::function<void(const std::string& customer_id,
                                                        const absl::Status&)>& unreadable) const;

  const AnalyticsConfig& config() const { return config_; }

 private:
  // The view of `group`, answered as `customer_id`, derived at the clock.
  absl::StatusOr<crm::v1::Customer360> DerivedView(const DbReader& db,
                                                   const std::string& customer_id,
                                                   const MergedGroup& group) const;

  const Database& db_;
  AnalyticsConfig config_;
  ValueTest unreadable_;
};

}  // namespace crm::analytics
