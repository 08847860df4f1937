#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "crm/v1/common.pb.h"
#include "crm/v1/sales.pb.h"
#include "libs/common/event_store.h"
#include "libs/common/reply_budget.h"

namespace crm::sales {

// An aggregate's folded state and stream version; no state and version 0
// for a stream without events.
template <typename State>
struct Loaded {
  std::optional<State> state;
  int64_t version = 0;
};

template <typename Row>
struct Page {
  std::vector<Row> rows;
  std::string next_page_token;
};

// The sales service's RocksDB: its event log (libs/common EventStore), the
// read models written in the same batch as the events that change them,
// and the subscriber's offsets. Read models, each keyed so that RocksDB
// order is id order (ids sort by creation):
//   customers      customer_id -> Customer
//   opportunities  opportunity_id -> Opportunity
//   tasks          task_id -> Task
//   task_due       due time (big-endian micros) + task_id -> "" — open tasks
//                  whose reminder is pending; a hint, the task decides
//   activities     "cus:<id>\0<activity_id>" and "opp:<id>\0<activity_id>" -> Activity
//   last_activity  opportunity_id -> latest activity time (big-endian micros)
//   accepted_quotes  opportunity_id -> quote_id of the deal's accepted quote
//   retention_tasks  customer_id -> task_id of the account's latest
//                  retention-call task (one open at a time)
//   early_retention_alerts  customer_id -> ChurnRiskRaised envelope read
//                  while the person had no account, until a conversion
//                  opens one
class SalesStore {
 public:
  static absl::StatusOr<std::unique_ptr<SalesStore>> Open(const std::string& path);

  explicit SalesStore(std::unique_ptr<EventStore> events) : events_(std::move(events)) {}

  EventStore& events() { return *events_; }
  Database& db() { return events_->db(); }

  template <typename State>
  absl::StatusOr<Loaded<State>> Load(const std::string& stream) const {
    auto raw = events_->LoadState(stream);
    if (absl::IsNotFound(raw.status())) return Loaded<State>{};
    if (!raw.ok()) return raw.status();
    Loaded<State> loaded;
    loaded.state.emplace();
    if (!loaded.state->ParseFromString(raw->state)) {
      return absl::DataLossError(absl::StrCat("corrupt state of ", stream));
    }
    loaded.version = raw->version;
    return loaded;
  }

  // Read-model writes for the append that produced the state.
  static ProjectionWrite CustomerRow(const crm::v1::Customer& customer);
  // The opportunity's row, and for a lost deal the end of its accepted
  // quote: once reopened, it may accept another.
  static std::vector<ProjectionWrite> OpportunityRows(const crm::v1::Opportunity& opportunity);
  // The opportunity's accepted (or ordered) quote.
  static ProjectionWrite AcceptedQuoteRow(const std::string& opportunity_id,
                                          const std::string& quote_id);
  // The quote the opportunity accepted last: kept when the deal is lost,
  // so a quote accepted before a later one is never ordered.
  static ProjectionWrite LastAcceptedQuoteRow(const std::string& opportunity_id,
                                              const std::string& quote_id);
  // The opportunity's ordered quote: kept when the deal is lost, so a
  // reopened deal orders nothing else.
  static ProjectionWrite OrderedQuoteRow(const std::string& opportunity_id,
                                         const std::string& quote_id);
  // The quote of the opportunity that was accepted, if one was (and the
  // deal was not lost since).
  absl::StatusOr<std::optional<std::string>> AcceptedQuoteOf(
      const std::string& opportunity_id) const;
  // The quote of the opportunity accepted last, lost since or not.
  absl::StatusOr<std::optional<std::string>> LastAcceptedQuoteOf(
      const std::string& opportunity_id) const;
  // The quote of the opportunity that was ordered, if one was.
  absl::StatusOr<std::optional<std::string>> OrderedQuoteOf(
      const std::string& opportunity_id) const;
  static ProjectionWrite OpportunityRow(const crm::v1::Opportunity& opportunity);
  static ProjectionWrite TaskRow(const crm::v1::Task& task);
  static ProjectionWrite TaskDueEntry(const crm::v1::Task& task);
  static std::vector<ProjectionWrite> ActivityRows(const crm::v1::Activity& activity);
  static ProjectionWrite LastActivityRow(absl::string_view opportunity_id, absl::Time at);
  // The request key prefix of the retention calls opened for churn alerts.
  static constexpr absl::string_view kRetentionRequests = "OpenRetentionTask/";
  static ProjectionWrite RetentionTaskRow(const crm::v1::Task& task);
  // The task id of the account's latest retention call, if it had one.
  absl::StatusOr<std::optional<std::string>> RetentionTaskOf(const std::string& customer_id) const;
  // A churn alert (its envelope) for a person without an account yet: it
  // may come before the conversion that opens one, from another topic.
  // Kept under each of the person's customer ids, the latest alert each.
  absl::Status KeepEarlyAlert(const std::vector<std::string>& customer_ids,
                              const std::string& envelope);
  absl::StatusOr<std::optional<std::string>> EarlyAlertOf(const std::string& customer_id) const;
  // Drops the rows that still hold this alert (not a later one).
  absl::Status ForgetEarlyAlert(const std::vector<std::string>& customer_ids,
                                const std::string& envelope);

  // InfinitePast when nothing was logged against the opportunity.
  absl::StatusOr<absl::Time> LastActivityAt(absl::string_view opportunity_id) const;

  // Up to `max` ids of tasks due at or before `now` whose reminder is pending.
  absl::StatusOr<std::vector<std::string>> DueTaskIds(absl::Time now, size_t max) const;
  // Drops a task from the due index once its reminder was raised or it was
  // completed. Not synced and not atomic with the event: a left-over entry
  // only costs one more look at the task.
  absl::Status ForgetDueTask(const crm::v1::Task& task);

  // Rows of `family` under `prefix` in key order, starting after the page
  // token, keeping those `keep` accepts, until the page is full or
  // `scan_budget` rows were examined: a selective filter over a large book
  // (a rep's own records) cannot hold a worker for long. A page cut by the
  // budget may hold fewer rows, even none, and its token goes on.
  template <typename Row>
  absl::StatusOr<Page<Row>> List(absl::string_view family, absl::string_view prefix,
                                 const crm::v1::PageRequest& page,
                                 const std::function<bool(const Row&)>& keep,
                                 size_t scan_budget = kListScanBudget) const;
  // Every row of `family`, for whole-book computations (forecast, stale scan).
  template <typename Row>
  absl::Status ForEach(absl::string_view family,
                       const std::function<void(const Row&)>& visit) const;

  static std::string CustomerActivities(absl::string_view customer_id);
  static std::string OpportunityActivities(absl::string_view opportunity_id);
  // Parsed page size (default 50, at most 500) or INVALID_ARGUMENT.
  static absl::StatusOr<size_t> PageSize(const crm::v1::PageRequest& page);

 private:
  absl::Status Scan(
      absl::string_view family, absl::string_view prefix, absl::string_view after,
      const std::function<absl::StatusOr<bool>(absl::string_view key, absl::string_view value)>&
          visit) const;

  // Fills accepted_quotes from the quotes' states once (a database written
  // before it existed), and each later kind of row once.
  absl::Status IndexAcceptedQuotes();
  // Fills retention_tasks once from the retention calls opened before it
  // existed (the stored answers of their requests).
  absl::Status IndexRetentionTasks();
  // The ordered quotes, from the orders.
  absl::Status IndexOrderedQuotes();
  // Each deal's last accepted quote, from the rows above and the quotes.
  absl::Status IndexLastAcceptedQuotes();

  std::unique_ptr<EventStore> events_;
};

inline constexpr char kCustomersFamily[] = "customers";
inline constexpr char kOpportunitiesFamily[] = "opportunities";
inline constexpr char kTasksFamily[] = "tasks";
inline constexpr char kTaskDueFamily[] = "task_due";
inline constexpr char kActivitiesFamily[] = "activities";
inline constexpr char kLastActivityFamily[] = "last_activity";
inline constexpr char kAcceptedQuotesFamily[] = "accepted_quotes";
inline constexpr char kRetentionTasksFamily[] = "retention_tasks";
inline constexpr char kEarlyAlertsFamily[] = "early_retention_alerts";

template <typename Row>
absl::StatusOr<Page<Row>> SalesStore::List(absl::string_view family, absl::string_view prefix,
                                           const crm::v1::PageRequest& page,
                                           const std::function<bool(const Row&)>& keep,
                                           size_t scan_budget) const {
  auto size = PageSize(page);
  if (!size.ok()) return size.status();
  Page<Row> out;
  ReplyBudget budget;
  // The last row examined: the next page starts after it.
  std::string last;
  size_t examined = 0;
  auto st = Scan(family, prefix, page.page_token(),
                 [&](absl::string_view key, absl::string_view value) -> absl::StatusOr<bool> {
                   if (examined == scan_budget) {
                     out.next_page_token = last;
                     return false;
                   }
                   ++examined;
                   Row row;
                   if (!row.ParseFromArray(value.data(), static_cast<int>(value.size()))) {
                     return absl::DataLossError(absl::StrCat("corrupt row in ", family));
                   }
                   if (keep(row)) {
                     // One more match exists: if the page is full or the row
                     // would take it past the reply bound, the page ends
                     // before it.
                     if (out.rows.size() == *size || !budget.Take(value.size())) {
                       out.next_page_token = last;
                       return false;
                     }
                     out.rows.push_back(std::move(row));
                   }
                   last = std::string(key.substr(prefix.size()));
                   return true;
                 });
  if (!st.ok()) return st;
  return out;
}

template <typename Row>
absl::Status SalesStore::ForEach(absl::string_view family,
                                 const std::function<void(const Row&)>& visit) const {
  return Scan(family, "", "",
              [&](absl::string_view, absl::string_view value) -> absl::StatusOr<bool> {
                Row row;
                if (!row.ParseFromArray(value.data(), static_cast<int>(value.size()))) {
                  return absl::DataLossError(absl::StrCat("corrupt row in ", family));
                }
                visit(row);
                return true;
              });
}

}  // namespace crm::sales
