#include "services/sales/store/sales_store.h"

#include <tuple>

#include "absl/container/btree_set.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/match.h"
#include "libs/common/database.h"
#include "libs/common/ids.h"
#include "libs/common/key_codec.h"
#include "libs/common/page_token.h"
#include "libs/common/pii/key_vault.h"
#include "libs/common/status_macros.h"
#include "libs/common/subscriber.h"
#include "rocksdb/write_batch.h"
#include "services/sales/domain/opportunity.h"
#include "services/sales/domain/quote.h"
#include "services/sales/domain/task.h"

namespace crm::sales {
namespace {

constexpr size_t kDefaultPageSize = 50;
constexpr size_t kMaxPageSize = 500;

std::string DueKey(const crm::v1::Task& task) {
  std::string key =
      BigEndian64(static_cast<uint64_t>(absl::ToUnixMicros(FromProtoTimestamp(task.due_at()))));
  key.append(task.task_id());
  return key;
}

}  // namespace

absl::StatusOr<std::unique_ptr<SalesStore>> SalesStore::Open(const std::string& path) {
  std::vector<std::string> families = {
      kCustomersFamily,      kOpportunitiesFamily,  kTasksFamily,
      kTaskDueFamily,        kActivitiesFamily,     kLastActivityFamily,
      kAcceptedQuotesFamily, kRetentionTasksFamily, kEarlyAlertsFamily};
  // The reactions' subscriber keeps its offsets in this database too.
  for (auto& f : Subscriber::Families()) families.push_back(f);
  families.push_back(pii::KeyVault::kFamily);
  CRM_ASSIGN_OR_RETURN(auto events, EventStore::Open(path, families));
  auto store = std::make_unique<SalesStore>(std::move(events));
  CRM_RETURN_IF_ERROR(store->IndexAcceptedQuotes());
  CRM_RETURN_IF_ERROR(store->IndexRetentionTasks());
  return store;
}

namespace {

// Sort before every opportunity id: "indexed" marks the accepted quotes
// filled in from the quotes, "indexed-2" the ordered ones filled in from
// the orders and the rows of deals lost before ended, "indexed-3" the last
// accepted ones filled in from the quotes.
constexpr absl::string_view kIndexed("\0indexed", 8);
constexpr absl::string_view kIndexedOrders("\0indexed-2", 10);
constexpr absl::string_view kIndexedLast("\0indexed-3", 10);

constexpr absl::string_view kOrderedSuffix("\0ordered", 8);
constexpr absl::string_view kLastSuffix("\0last", 5);

std::string OrderedKey(absl::string_view opportunity_id) {
  return absl::StrCat(opportunity_id, kOrderedSuffix);
}

std::string LastKey(absl::string_view opportunity_id) {
  return absl::StrCat(opportunity_id, kLastSuffix);
}

// The deal's accepted quote row, not one of the others under its id.
bool IsAcceptedKey(absl::string_view key) {
  return !absl::StartsWith(key, absl::string_view("\0", 1)) &&
         !absl::EndsWith(key, kOrderedSuffix) && !absl::EndsWith(key, kLastSuffix);
}

// Each state row under `prefix`, parsed as `Message`.
template <typename Message, typename Visit>
absl::Status ForEachState(Database& db, const std::string& prefix, Visit visit) {
  auto it = db.NewIterator(EventStore::kStateFamily);
  for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
    const absl::string_view stream = View(it->key());
    CRM_ASSIGN_OR_RETURN(const StreamState state,
                         EventStore::DecodeState(stream, View(it->value())));
    Message m;
    if (!m.ParseFromString(state.state)) {
      return absl::DataLossError(absl::StrCat("corrupt state of ", stream));
    }
    visit(m);
  }
  return FromRocks(it->status());
}

}  // namespace

absl::Status SalesStore::IndexAcceptedQuotes() {
  auto* family = db().Family(kAcceptedQuotesFamily);
  CRM_ASSIGN_OR_RETURN(auto done, db().Get(kAcceptedQuotesFamily, kIndexed));
  if (!done.has_value()) {
    rocksdb::WriteBatch batch;
    absl::flat_hash_set<std::string> indexed;
    CRM_RETURN_IF_ERROR(ForEachState<crm::v1::Quote>(db(), QuoteStream(""), [&](const auto& q) {
      // Of a deal with several accepted quotes (possible before), the first.
      if (q.status() == crm::v1::QUOTE_STATUS_ACCEPTED && !q.opportunity_id().empty() &&
          indexed.insert(q.opportunity_id()).second) {
        batch.Put(family, q.opportunity_id(), q.quote_id());
      }
    }));
    batch.Put(family, rocksdb::Slice(kIndexed.data(), kIndexed.size()), "");
    CRM_RETURN_IF_ERROR(db().Write(&batch, /*sync=*/true));
  }
  CRM_ASSIGN_OR_RETURN(done, db().Get(kAcceptedQuotesFamily, kIndexedOrders));
  if (!done.has_value()) CRM_RETURN_IF_ERROR(IndexOrderedQuotes());
  CRM_ASSIGN_OR_RETURN(done, db().Get(kAcceptedQuotesFamily, kIndexedLast));
  if (!done.has_value()) CRM_RETURN_IF_ERROR(IndexLastAcceptedQuotes());
  return absl::OkStatus();
}

absl::Status SalesStore::IndexLastAcceptedQuotes() {
  auto* family = db().Family(kAcceptedQuotesFamily);
  // Each deal's quote accepted last: the ordered one, else the deal's
  // accepted row (of a deal that once held several, the one it orders),
  // else, for a deal lost since, the latest decided (ties: the larger id).
  // Per deal: (decided seconds, nanos, quote id) of its latest decided.
  absl::flat_hash_map<std::string, std::tuple<int64_t, int32_t, std::string>> latest;
  CRM_RETURN_IF_ERROR(ForEachState<crm::v1::Quote>(db(), QuoteStream(""), [&](const auto& q) {
    if (q.status() != crm::v1::QUOTE_STATUS_ACCEPTED || q.opportunity_id().empty()) return;
    auto key = std::make_tuple(q.decided_at().seconds(), q.decided_at().nanos(), q.quote_id());
    auto [it, inserted] = latest.try_emplace(q.opportunity_id(), key);
    if (!inserted && key > it->second) it->second = std::move(key);
  }));
  rocksdb::WriteBatch batch;
  for (const auto& [opportunity_id, decided] : latest) {
    CRM_ASSIGN_OR_RETURN(auto ordered, OrderedQuoteOf(opportunity_id));
    CRM_ASSIGN_OR_RETURN(auto accepted, AcceptedQuoteOf(opportunity_id));
    const std::string& last = ordered.has_value()    ? *ordered
                              : accepted.has_value() ? *accepted
                                                     : std::get<2>(decided);
    batch.Put(family, LastKey(opportunity_id), last);
  }
  batch.Put(family, rocksdb::Slice(kIndexedLast.data(), kIndexedLast.size()), "");
  return db().Write(&batch, /*sync=*/true);
}

absl::Status SalesStore::IndexOrderedQuotes() {
  auto* family = db().Family(kAcceptedQuotesFamily);
  rocksdb::WriteBatch batch;
  CRM_RETURN_IF_ERROR(ForEachState<crm::v1::Order>(db(), OrderStream(""), [&](const auto& o) {
    if (!o.opportunity_id().empty())
      batch.Put(family, OrderedKey(o.opportunity_id()), o.quote_id());
  }));
  // The first index took the accepted quotes of deals lost already.
  std::vector<std::string> accepted;
  auto it = db().NewIterator(kAcceptedQuotesFamily);
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    if (IsAcceptedKey(View(it->key()))) accepted.emplace_back(View(it->key()));
  }
  CRM_RETURN_IF_ERROR(FromRocks(it->status()));
  for (const auto& id : accepted) {
    CRM_ASSIGN_OR_RETURN(auto deal, Load<crm::v1::Opportunity>(OpportunityStream(id)));
    if (deal.state.has_value() && deal.state->outcome() == crm::v1::STAGE_OUTCOME_LOST) {
      batch.Delete(family, id);
    }
  }
  batch.Put(family, rocksdb::Slice(kIndexedOrders.data(), kIndexedOrders.size()), "");
  return db().Write(&batch, /*sync=*/true);
}

std::vector<ProjectionWrite> SalesStore::OpportunityRows(const crm::v1::Opportunity& o) {
  std::vector<ProjectionWrite> rows = {OpportunityRow(o)};
  if (o.outcome() == crm::v1::STAGE_OUTCOME_LOST) {
    rows.push_back({kAcceptedQuotesFamily, o.opportunity_id(), "", /*erase=*/true});
  }
  return rows;
}

ProjectionWrite SalesStore::AcceptedQuoteRow(const std::string& opportunity_id,
                                             const std::string& quote_id) {
  return {kAcceptedQuotesFamily, opportunity_id, quote_id};
}

ProjectionWrite SalesStore::LastAcceptedQuoteRow(const std::string& opportunity_id,
                                                 const std::string& quote_id) {
  return {kAcceptedQuotesFamily, LastKey(opportunity_id), quote_id};
}

ProjectionWrite SalesStore::OrderedQuoteRow(const std::string& opportunity_id,
                                            const std::string& quote_id) {
  return {kAcceptedQuotesFamily, OrderedKey(opportunity_id), quote_id};
}

absl::Status SalesStore::IndexRetentionTasks() {
  // Sorts before every customer id. "-2": the first fill took each
  // account's latest call, open or not, and is done again.
  constexpr absl::string_view kIndexedRetention("\0indexed-2", 10);
  CRM_ASSIGN_OR_RETURN(auto done, db().Get(kRetentionTasksFamily, kIndexedRetention));
  if (done.has_value()) return absl::OkStatus();
  // Per customer, its retention calls (before the index an account could
  // hold several open ones).
  absl::flat_hash_map<std::string, absl::btree_set<std::string>> calls;
  absl::Status parsed;
  CRM_RETURN_IF_ERROR(events_->ForEachResponse(kRetentionRequests, [&](absl::string_view raw) {
    crm::v1::Task task;
    if (!task.ParseFromArray(raw.data(), static_cast<int>(raw.size()))) {
      parsed = absl::DataLossError("corrupt stored retention task");
      return;
    }
    if (!task.customer_id().empty()) calls[task.customer_id()].insert(task.task_id());
  }));
  CRM_RETURN_IF_ERROR(parsed);
  auto* family = db().Family(kRetentionTasksFamily);
  rocksdb::WriteBatch batch;
  for (const auto& [customer_id, ids] : calls) {
    // One still open (the latest of them), else the latest: the one a new
    // alert looks at to decide whether the owner is still on a call.
    std::string indexed = *ids.rbegin();
    for (auto id = ids.rbegin(); id != ids.rend(); ++id) {
      CRM_ASSIGN_OR_RETURN(auto task, Load<crm::v1::Task>(TaskStream(*id)));
      if (task.state.has_value() && task.state->status() == crm::v1::TASK_STATUS_OPEN) {
        indexed = *id;
        break;
      }
    }
    batch.Put(family, customer_id, indexed);
  }
  batch.Put(family, rocksdb::Slice(kIndexedRetention.data(), kIndexedRetention.size()), "");
  return db().Write(&batch, /*sync=*/true);
}

ProjectionWrite SalesStore::RetentionTaskRow(const crm::v1::Task& task) {
  return {kRetentionTasksFamily, task.customer_id(), task.task_id()};
}

absl::StatusOr<std::optional<std::string>> SalesStore::RetentionTaskOf(
    const std::string& customer_id) const {
  return events_->db().Get(kRetentionTasksFamily, customer_id);
}

absl::Status SalesStore::KeepEarlyAlert(const std::vector<std::string>& customer_ids,
                                        const std::string& envelope) {
  rocksdb::WriteBatch batch;
  auto* family = events_->db().Family(kEarlyAlertsFamily);
  for (const auto& id : customer_ids) {
    if (!id.empty()) batch.Put(family, id, envelope);
  }
  // Synced: the subscriber stores the alert's offset as applied next.
  return events_->db().Write(&batch, /*sync=*/true);
}

absl::StatusOr<std::optional<std::string>> SalesStore::EarlyAlertOf(
    const std::string& customer_id) const {
  return events_->db().Get(kEarlyAlertsFamily, customer_id);
}

absl::Status SalesStore::ForgetEarlyAlert(const std::vector<std::string>& customer_ids,
                                          const std::string& envelope) {
  rocksdb::WriteBatch batch;
  auto* family = events_->db().Family(kEarlyAlertsFamily);
  for (const auto& id : customer_ids) {
    CRM_ASSIGN_OR_RETURN(auto kept, EarlyAlertOf(id));
    if (kept.has_value() && *kept == envelope) batch.Delete(family, id);
  }
  if (batch.Count() == 0) return absl::OkStatus();
  return events_->db().Write(&batch, /*sync=*/true);
}

absl::StatusOr<std::optional<std::string>> SalesStore::AcceptedQuoteOf(
    const std::string& opportunity_id) const {
  return events_->db().Get(kAcceptedQuotesFamily, opportunity_id);
}

absl::StatusOr<std::optional<std::string>> SalesStore::LastAcceptedQuoteOf(
    const std::string& opportunity_id) const {
  return events_->db().Get(kAcceptedQuotesFamily, LastKey(opportunity_id));
}

absl::StatusOr<std::optional<std::string>> SalesStore::OrderedQuoteOf(
    const std::string& opportunity_id) const {
  return events_->db().Get(kAcceptedQuotesFamily, OrderedKey(opportunity_id));
}

ProjectionWrite SalesStore::CustomerRow(const crm::v1::Customer& c) {
  return {kCustomersFamily, c.customer_id(), c.SerializeAsString()};
}

ProjectionWrite SalesStore::OpportunityRow(const crm::v1::Opportunity& o) {
  return {kOpportunitiesFamily, o.opportunity_id(), o.SerializeAsString()};
}

ProjectionWrite SalesStore::TaskRow(const crm::v1::Task& t) {
  return {kTasksFamily, t.task_id(), t.SerializeAsString()};
}

ProjectionWrite SalesStore::TaskDueEntry(const crm::v1::Task& t) {
  return {kTaskDueFamily, DueKey(t), ""};
}

std::string SalesStore::CustomerActivities(absl::string_view customer_id) {
  return PrefixKey(absl::StrCat("cus:", customer_id));
}

std::string SalesStore::OpportunityActivities(absl::string_view opportunity_id) {
  return PrefixKey(absl::StrCat("opp:", opportunity_id));
}

std::vector<ProjectionWrite> SalesStore::ActivityRows(const crm::v1::Activity& a) {
  const std::string value = a.SerializeAsString();
  std::vector<ProjectionWrite> writes;
  writes.push_back({kActivitiesFamily,
                    absl::StrCat(CustomerActivities(a.customer_id()), a.activity_id()), value});
  if (!a.opportunity_id().empty()) {
    writes.push_back({kActivitiesFamily,
                      absl::StrCat(OpportunityActivities(a.opportunity_id()), a.activity_id()),
                      value});
  }
  return writes;
}

ProjectionWrite SalesStore::LastActivityRow(absl::string_view opportunity_id, absl::Time at) {
  return {kLastActivityFamily, std::string(opportunity_id),
          BigEndian64(static_cast<uint64_t>(absl::ToUnixMicros(at)))};
}

absl::StatusOr<absl::Time> SalesStore::LastActivityAt(absl::string_view opportunity_id) const {
  CRM_ASSIGN_OR_RETURN(auto raw, events_->db().Get(kLastActivityFamily, opportunity_id));
  if (!raw.has_value() || raw->size() != 8) return absl::InfinitePast();
  return absl::FromUnixMicros(static_cast<int64_t>(ReadBigEndian64(*raw)));
}

absl::StatusOr<std::vector<std::string>> SalesStore::DueTaskIds(absl::Time now, size_t max) const {
  std::vector<std::string> ids;
  const uint64_t limit = static_cast<uint64_t>(absl::ToUnixMicros(now));
  auto it = events_->db().NewIterator(kTaskDueFamily);
  for (it->SeekToFirst(); it->Valid() && ids.size() < max; it->Next()) {
    const absl::string_view key = View(it->key());
    if (key.size() < 8 || ReadBigEndian64(key.substr(0, 8)) > limit) break;
    ids.emplace_back(key.substr(8));
  }
  CRM_RETURN_IF_ERROR(FromRocks(it->status()));
  return ids;
}

absl::Status SalesStore::ForgetDueTask(const crm::v1::Task& task) {
  rocksdb::WriteBatch batch;
  batch.Delete(events_->db().Family(kTaskDueFamily), DueKey(task));
  return events_->db().Write(&batch, /*sync=*/false);
}

absl::StatusOr<size_t> SalesStore::PageSize(const crm::v1::PageRequest& page) {
  CRM_ASSIGN_OR_RETURN(const size_t size, ::crm::PageSize(page.page_size(), "page.page_size",
                                                          kDefaultPageSize, kMaxPageSize));
  if (page.page_token().size() > 128) {
    return absl::InvalidArgumentError("page.page_token: not a token of this list");
  }
  return size;
}

absl::Status SalesStore::Scan(
    absl::string_view family, absl::string_view prefix, absl::string_view after,
    const std::function<absl::StatusOr<bool>(absl::string_view, absl::string_view)>& visit) const {
  auto it = events_->db().NewIterator(family);
  const std::string start = absl::StrCat(prefix, after);
  for (it->Seek(rocksdb::Slice(start.data(), start.size())); it->Valid(); it->Next()) {
    const absl::string_view key = View(it->key());
    if (key.substr(0, prefix.size()) != prefix) break;
    if (!after.empty() && key == start) continue;  // the token is the last row already returned
    const absl::string_view value = View(it->value());
    CRM_ASSIGN_OR_RETURN(bool more, visit(key, value));
    if (!more) break;
  }
  return FromRocks(it->status());
}

}  // namespace crm::sales
