#include "services/analytics/store/view_store.h"

#include <functional>
#include <memory>
#include <optional>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "google/protobuf/util/time_util.h"  // Timestamp comparison operators
#include "libs/common/audit/audit_stream.h"
#include "libs/common/ids.h"
#include "libs/common/key_codec.h"
#include "libs/common/log.h"
#include "libs/common/metrics.h"
#include "libs/common/page_token.h"
#include "libs/common/pii/key_vault.h"
#include "libs/common/reply_budget.h"
#include "libs/common/status_macros.h"
#include "services/analytics/domain/audit_trail.h"
#include "services/analytics/domain/customer_health.h"
#include "services/analytics/domain/customer_merge.h"
#include "services/analytics/domain/customer_view.h"
#include "services/analytics/domain/funnel.h"
#include "services/analytics/domain/service_kpis.h"

namespace crm::analytics {
namespace {

constexpr char kCustomers[] = "customers";  // customer_id -> Customer360 summary
constexpr char kTimeline[] = "timeline";    // customer \0 micros version event_id -> TimelineEntry
constexpr char kFunnelLeads[] = "funnel_leads";                  // lead_id -> FunnelLeadRecord
constexpr char kFunnelOpportunities[] = "funnel_opportunities";  // id -> FunnelOpportunityRecord
constexpr char kKpiTickets[] = "kpi_tickets";                    // ticket_id -> KpiTicketRecord
constexpr char kClock[] = "analytics_clock";                     // "now" -> Timestamp
constexpr char kAuditByActor[] = "audit_by_actor";               // actor \0 micros version event_id
constexpr char kAuditByRecord[] = "audit_by_record";  // record \0 micros version event_id
// One pair of rows per merge of two customers: kMergedInto merged \0
// survivor and kMergedFrom survivor \0 merged, both empty.
constexpr char kCustomerMerges[] = "customer_merges";
constexpr char kMergedInto = '>';
constexpr char kMergedFrom = '<';
constexpr char kClockKey[] = "now";
// A group this large is read from all the merges, once for a ListSegment
// page, not link by link at each of its rows.
constexpr size_t kLargeGroup = 256;
constexpr size_t kDefaultPage = 50;
constexpr size_t kMaxPage = 500;

// prefix \0 occurred_at stream_version event_id: the rows under one prefix
// in event time order, so a page is one seek. The events of one command
// share their time: the stream version keeps them in the order they were
// decided (a lead captured, then assigned), and the event id breaks the
// remaining ties.
std::string TimeOrderedKey(absl::string_view prefix, const crm::v1::EventEnvelope& e) {
  std::string k = PrefixKey(prefix);
  // Offset so that times before 1970 still sort correctly as unsigned.
  const int64_t micros = absl::ToUnixMicros(FromProtoTimestamp(e.occurred_at()));
  AppendBigEndian64(&k, static_cast<uint64_t>(micros) ^ (uint64_t{1} << 63));
  AppendBigEndian64(&k, static_cast<uint64_t>(e.stream_version()));
  k.append(e.event_id());
  return k;
}

// A page request, checked: how many rows, and the time and event id the
// page resumes after (empty for the first page).
struct Page {
  size_t size = kDefaultPage;
  std::string after;
};

// `field` prefixes the field names in errors ("timeline_page.").
absl::StatusOr<Page> ParsePage(int32_t page_size, const std::string& page_token,
                               absl::string_view field) {
  Page page;
  CRM_ASSIGN_OR_RETURN(
      page.size, PageSize(page_size, absl::StrCat(field, "page_size"), kDefaultPage, kMaxPage));
  if (!page_token.empty() &&
      (!absl::WebSafeBase64Unescape(page_token, &page.after) || page.after.size() < 8)) {
    return absl::InvalidArgumentError(absl::StrCat(field, "page_token: malformed"));
  }
  return page;
}

// One page of the rows under the `prefix_values` (keys from
// TimeOrderedKey), merged in time order, resuming after `page.after`;
// returns the next page token, empty on the last page. The page also ends
// at the reply bound, less `reserved` bytes of the rest of the reply.
template <typename Row>
absl::StatusOr<std::string> ReadPage(const DbReader& db, const char* family,
                                     const std::vector<std::string>& prefix_values,
                                     const Page& page, size_t reserved,
                                     google::protobuf::RepeatedPtrField<Row>* rows) {
  ReplyBudget budget(reserved);
  std::vector<std::string> prefixes;
  prefixes.reserve(prefix_values.size());
  for (const auto& value : prefix_values) prefixes.push_back(PrefixKey(value));
  std::string last_suffix;
  MergedScan scan(db, family, prefixes, page.after);
  for (; scan.Valid(); scan.Next()) {
    const rocksdb::Slice value = scan.value();
    if (static_cast<size_t>(rows->size()) == page.size || !budget.Take(value.size())) {
      return absl::WebSafeBase64Escape(last_suffix);
    }
    if (!rows->Add()->ParseFromArray(value.data(), static_cast<int>(value.size()))) {
      return absl::DataLossError(absl::StrCat("corrupt ", family, " row"));
    }
    last_suffix = std::string(scan.suffix());
  }
  CRM_RETURN_IF_ERROR(scan.status());
  return std::string();
}

std::string MergeKey(char direction, absl::string_view customer, absl::string_view other) {
  std::string key(1, direction);
  absl::StrAppend(&key, customer);
  key.push_back('\0');
  absl::StrAppend(&key, other);
  return key;
}

// The group of `customer_id`, read link by link from the merge rows. With
// `merged_into_only`: the customer and those merged into it, any number of
// steps (the person an export or an erasure counts), under its own id.
// `reuse`: an iterator over the merge rows to seek with (one per call when
// null), for scans that look up the group of each row.
absl::StatusOr<MergedGroup> LoadGroup(const DbReader& db, const std::string& customer_id,
                                      bool merged_into_only = false,
                                      rocksdb::Iterator* reuse = nullptr) {
  CustomerMerges merges;
  absl::btree_set<std::string> seen = {customer_id};
  std::vector<std::string> todo = {customer_id};
  std::unique_ptr<rocksdb::Iterator> own;
  if (reuse == nullptr) own = db.NewIterator(kCustomerMerges);
  rocksdb::Iterator* it = reuse != nullptr ? reuse : own.get();
  // Whole, however large: a cut group would leave members out of the 360
  // view and the export while the churn walk and ListSegment count them.
  while (!todo.empty()) {
    const std::string customer = std::move(todo.back());
    todo.pop_back();
    for (char direction : {kMergedInto, kMergedFrom}) {
      if (merged_into_only && direction == kMergedInto) continue;
      const std::string prefix = MergeKey(direction, customer, "");
      for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
        const std::string other = it->key().ToString().substr(prefix.size());
        if (direction == kMergedInto) {
          merges.Link(customer, other);
        } else {
          merges.Link(other, customer);
        }
        if (seen.insert(other).second) todo.push_back(other);
      }
      CRM_RETURN_IF_ERROR(FromRocks(it->status()));
    }
  }
  if (merged_into_only) return MergedGroup{customer_id, {seen.begin(), seen.end()}};
  return merges.GroupOf(customer_id);
}

// Whether customers have merge links, asked in ascending id order: one
// cursor per direction moves along the merge rows (seeking only past a
// customer with links), instead of two seeks for every customer.
class LinkedCustomers {
 public:
  explicit LinkedCustomers(const DbReader& db)
      : into_(db.NewIterator(kCustomerMerges)), from_(db.NewIterator(kCustomerMerges)) {}

  bool Has(const std::string& customer_id) {
    return At(*into_, into_sought_, kMergedInto, customer_id) ||
           At(*from_, from_sought_, kMergedFrom, customer_id);
  }
  absl::Status status() const {
    CRM_RETURN_IF_ERROR(FromRocks(into_->status()));
    return FromRocks(from_->status());
  }

 private:
  // Rows of a direction are "<direction><customer>\0<other>", which sort
  // as the customer ids do.
  static bool At(rocksdb::Iterator& it, bool& sought, char direction,
                 const std::string& customer_id) {
    const std::string prefix = MergeKey(direction, customer_id, "");
    if (!sought || (it.Valid() && it.key().compare(prefix) < 0)) {
      it.Seek(prefix);
      sought = true;
    }
    return it.Valid() && it.key().starts_with(prefix);
  }

  std::unique_ptr<rocksdb::Iterator> into_;
  std::unique_ptr<rocksdb::Iterator> from_;
  bool into_sought_ = false;
  bool from_sought_ = false;
};

// Every merge link, for the scans over all customers.
absl::StatusOr<CustomerMerges> LoadAllMerges(const DbReader& db) {
  CustomerMerges merges;
  auto it = db.NewIterator(kCustomerMerges);
  const std::string prefix(1, kMergedInto);
  for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
    const std::string key = it->key().ToString();
    const size_t split = key.find('\0');
    if (split == std::string::npos) return absl::DataLossError("corrupt customer merge row");
    merges.Link(key.substr(1, split - 1), key.substr(split + 1));
  }
  CRM_RETURN_IF_ERROR(FromRocks(it->status()));
  return merges;
}

absl::StatusOr<std::optional<crm::v1::Customer360>> LoadView(const DbReader& db,
                                                             const std::string& customer_id) {
  CRM_ASSIGN_OR_RETURN(auto raw, db.Get(kCustomers, customer_id));
  if (!raw.has_value()) return std::nullopt;
  crm::v1::Customer360 view;
  if (!view.ParseFromString(*raw)) return absl::DataLossError("corrupt customer view");
  return view;
}

// The view of a group: one customer's as stored, several joined under the
// primary's id. nullopt when no member has a view yet.
absl::StatusOr<std::optional<crm::v1::Customer360>> GroupView(const DbReader& db,
                                                              const MergedGroup& group,
                                                              const ValueTest& unreadable) {
  if (group.members.size() == 1) return LoadView(db, group.primary);
  crm::v1::Customer360 joined;
  joined.set_customer_id(group.primary);
  bool any = false;
  for (const auto& member : group.members) {
    // Named once the merge is read, with or without events of its own yet:
    // sales finds the person's account by these ids.
    if (member != group.primary) joined.add_merged_customer_ids(member);
    CRM_ASSIGN_OR_RETURN(auto view, LoadView(db, member));
    if (!view.has_value()) continue;
    if (unreadable) DropProfileValues(*view, unreadable);
    JoinView(joined, *view);
    any = true;
  }
  if (!any) return std::nullopt;
  return joined;
}

// In a scan of the customers in id order, the view to yield at the row of
// `customer_id` (whose group is `group`): the group's, at the primary's row
// (the survivor's, which the merge itself writes), or while the primary has
// none at the first member that has one; nullopt at the other members. So
// a member's first row arriving between two pages of a listing moves the
// group to no row before the page token.
absl::StatusOr<std::optional<crm::v1::Customer360>> ScannedView(const DbReader& db,
                                                                const MergedGroup& group,
                                                                const std::string& customer_id,
                                                                const rocksdb::Slice& value,
                                                                const ValueTest& unreadable) {
  if (group.members.size() == 1) {
    crm::v1::Customer360 view;
    if (!view.ParseFromArray(value.data(), static_cast<int>(value.size()))) {
      return absl::DataLossError("corrupt customer view");
    }
    return view;
  }
  if (customer_id != group.primary) {
    CRM_ASSIGN_OR_RETURN(auto primary, db.Get(kCustomers, group.primary));
    if (primary.has_value()) return std::nullopt;  // yielded at the primary's row
    for (const auto& member : group.members) {
      if (member >= customer_id) break;
      CRM_ASSIGN_OR_RETURN(auto earlier, db.Get(kCustomers, member));
      if (earlier.has_value()) return std::nullopt;  // yielded at that member's row
    }
  }
  return GroupView(db, group, unreadable);
}

}  // namespace

std::vector<std::string> ViewFamilies() {
  auto families = Subscriber::Families();
  families.push_back(kCustomers);
  families.push_back(kTimeline);
  families.push_back(kFunnelLeads);
  families.push_back(kFunnelOpportunities);
  families.push_back(kKpiTickets);
  families.push_back(kClock);
  families.push_back(kAuditByActor);
  families.push_back(kAuditByRecord);
  families.push_back(kCustomerMerges);
  // Data keys, rebuilt from crm.keys.v1 with the views (not in the digest).
  families.push_back(pii::KeyVault::kFamily);
  return families;
}

DatabaseOptions ViewDatabaseOptions() {
  DatabaseOptions options;
  options.memtable_bytes = 4 << 20;
  return options;
}

std::vector<const char*> ViewDigestFamilies() {
  return {kCustomers, kTimeline,     kFunnelLeads,   kFunnelOpportunities, kKpiTickets,
          kClock,     kAuditByActor, kAuditByRecord, kCustomerMerges};
}

absl::StatusOr<google::protobuf::Timestamp> ReadClock(const DbReader& db) {
  google::protobuf::Timestamp now;
  CRM_ASSIGN_OR_RETURN(auto raw, db.Get(kClock, kClockKey));
  if (raw.has_value() && !now.ParseFromString(*raw)) {
    return absl::DataLossError("corrupt analytics clock");
  }
  return now;
}

namespace {

// Loads a record into the batch cache on first touch (on the batch's arena).
template <typename Record>
absl::StatusOr<Record*> Cached(absl::flat_hash_map<std::string, Record*>& cache,
                               google::protobuf::Arena* arena, ProjectionTxn& txn,
                               const char* family, const std::string& id) {
  if (auto it = cache.find(id); it != cache.end()) return it->second;
  CRM_ASSIGN_OR_RETURN(auto raw, txn.Get(family, id));
  auto* record = google::protobuf::Arena::CreateMessage<Record>(arena);
  if (raw.has_value() && !record->ParseFromString(*raw)) {
    // Says nothing about the event. Refusing it would park it after the
    // writes it had made (the clock, other records), and every later event
    // of this record too: the record starts afresh instead, loudly, and a
    // rebuild of the views restores it.
    record->Clear();
    MetricsRegistry::Default()
        .GetCounter("crm_analytics_corrupt_records_total",
                    "Stored analytics records that did not parse and were started afresh "
                    "(rebuild the views to restore them)",
                    {{"family", family}})
        .Inc();
    log::Error("corrupt analytics record started afresh; rebuild the views to restore it",
               {{"family", family}, {"id", id}});
  }
  cache.emplace(id, record);
  return record;
}

// Hands each record of `family` to `fn`, parsed into one message reused
// throughout: a query over all of history holds one record at a time.
template <typename Record>
absl::Status ForEachRecord(const DbReader& db, const char* family,
                           const std::function<void(const Record&)>& fn) {
  Record record;
  auto it = db.NewIterator(family);
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    record.Clear();
    if (!record.ParseFromArray(it->value().data(), static_cast<int>(it->value().size()))) {
      return absl::DataLossError(absl::StrCat("corrupt ", family, " record"));
    }
    fn(record);
  }
  return FromRocks(it->status());
}

}  // namespace

absl::Status Customer360Projection::Apply(const crm::v1::EventEnvelope& event, ProjectionTxn& txn) {
  const Payload payload(event, &arena_);
  // An event this binary cannot read is parked (the subscriber puts it on
  // the dead-letter topic), not folded in as a blank. The topic keeps it: a
  // rebuild by a binary that knows its type takes it in.
  if (payload.decoded() != Payload::Decoded::kYes) {
    return absl::InvalidArgumentError(absl::StrCat(
        payload.decoded() == Payload::Decoded::kUnknownType ? "unknown event type "
                                                            : "payload does not parse as ",
        event.type(), " (", event.payload().type_url(), ")"));
  }
  if (auto entry = AuditEntryFor(event, payload); entry.has_value()) {
    const std::string value = entry->SerializeAsString();
    if (!entry->actor().empty()) {
      CRM_RETURN_IF_ERROR(
          txn.PutWriteOnly(kAuditByActor, TimeOrderedKey(entry->actor(), event), value));
    }
    if (!entry->target().empty()) {
      CRM_RETURN_IF_ERROR(
          txn.PutWriteOnly(kAuditByRecord, TimeOrderedKey(entry->target(), event), value));
    }
  }
  // Refusals are about callers, not customers: no view, no clock.
  if (audit::IsAuditStream(event.stream())) return absl::OkStatus();
  // Every event moves the clock, articles included: time passes for all.
  // An event dated more than kClockLead past the wall clock (a producer
  // whose clock runs ahead) is folded at its own time but does not move
  // the clock: it would age every customer at once.
  if (!clock_.has_value() || *clock_ < event.occurred_at()) {
    if (!latest_allowed_.has_value()) latest_allowed_ = absl::Now() + kClockLead;
    if (FromProtoTimestamp(event.occurred_at()) <= *latest_allowed_) {
      clock_ = event.occurred_at();
    } else if (!warned_ahead_) {
      warned_ahead_ = true;  // once a batch
      log::Warn("event dated ahead of the wall clock: the analytics clock does not follow it",
                {{"event_id", event.event_id()},
                 {"occurred_at", FormatRfc3339(FromProtoTimestamp(event.occurred_at()))}});
    }
  }
  CRM_RETURN_IF_ERROR(ApplyToKpis(event, payload, [&](const std::string& id) {
    return Cached(tickets_, &arena_, txn, kKpiTickets, id);
  }));
  // Events about no customer (knowledge-base articles) have no 360 view.
  if (event.customer_id().empty()) return absl::OkStatus();
  if (const auto* m = payload.As<crm::v1::LeadsMerged>();
      m != nullptr && !m->merged_customer_id().empty() && !m->survivor_customer_id().empty() &&
      m->merged_customer_id() != m->survivor_customer_id()) {
    CRM_RETURN_IF_ERROR(txn.PutWriteOnly(
        kCustomerMerges, MergeKey(kMergedInto, m->merged_customer_id(), m->survivor_customer_id()),
        ""));
    CRM_RETURN_IF_ERROR(txn.PutWriteOnly(
        kCustomerMerges, MergeKey(kMergedFrom, m->survivor_customer_id(), m->merged_customer_id()),
        ""));
  }
  CRM_ASSIGN_OR_RETURN(auto* view, Cached(views_, &arena_, txn, kCustomers, event.customer_id()));
  const crm::v1::TimelineEntry entry = ApplyToView(*view, event, payload);
  CRM_RETURN_IF_ERROR(ApplyToFunnel(
      event, payload,
      [&](const std::string& id) { return Cached(leads_, &arena_, txn, kFunnelLeads, id); },
      [&](const std::string& id) {
        return Cached(opportunities_, &arena_, txn, kFunnelOpportunities, id);
      }));
  return txn.PutWriteOnly(kTimeline, TimeOrderedKey(event.customer_id(), event),
                          entry.SerializeAsString());
}

absl::Status Customer360Projection::Flush(ProjectionTxn& txn) {
  for (const auto& [customer_id, view] : views_) {
    CRM_RETURN_IF_ERROR(txn.PutWriteOnly(kCustomers, customer_id, view->SerializeAsString()));
  }
  for (const auto& [id, record] : leads_) {
    CRM_RETURN_IF_ERROR(txn.PutWriteOnly(kFunnelLeads, id, record->SerializeAsString()));
  }
  for (const auto& [id, record] : opportunities_) {
    CRM_RETURN_IF_ERROR(txn.PutWriteOnly(kFunnelOpportunities, id, record->SerializeAsString()));
  }
  for (const auto& [id, record] : tickets_) {
    CRM_RETURN_IF_ERROR(txn.PutWriteOnly(kKpiTickets, id, record->SerializeAsString()));
  }
  if (clock_.has_value()) {
    // The maximum, whatever order batches and topics arrive in.
    CRM_ASSIGN_OR_RETURN(auto raw, txn.Get(kClock, kClockKey));
    google::protobuf::Timestamp stored;
    if (raw.has_value() && !stored.ParseFromString(*raw)) {
      return absl::DataLossError("corrupt analytics clock");
    }
    if (!raw.has_value() || stored < *clock_) {
      CRM_RETURN_IF_ERROR(txn.Put(kClock, kClockKey, clock_->SerializeAsString()));
    }
  }
  Clear();
  return absl::OkStatus();
}

void Customer360Projection::Clear() {
  views_.clear();
  leads_.clear();
  opportunities_.clear();
  tickets_.clear();
  clock_.reset();
  latest_allowed_.reset();
  warned_ahead_ = false;
  arena_.Reset();
}

absl::StatusOr<crm::v1::ServiceKpis> ViewStore::GetServiceKpis(
    const crm::v1::GetServiceKpisRequest& request) const {
  CRM_RETURN_IF_ERROR(ValidateServiceKpisRequest(request));
  ServiceKpiBuilder kpis(request, config_);
  CRM_RETURN_IF_ERROR(ForEachRecord<crm::v1::KpiTicketRecord>(db_, kKpiTickets,
                                                              [&](const auto& r) { kpis.Add(r); }));
  return kpis.Finish();
}

absl::Status ViewStore::ForEachCustomer(
    const std::function<absl::Status(const crm::v1::Customer360&)>& fn,
    const std::function<void(const std::string& customer_id, const absl::Status&)>& unreadable)
    const {
  const DbSnapshot snapshot(db_);
  const DbReader db = snapshot;
  CRM_ASSIGN_OR_RETURN(auto now, ReadClock(db));
  CRM_ASSIGN_OR_RETURN(auto merges, LoadAllMerges(db));
  auto it = db.NewIterator(kCustomers);
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    const std::string customer_id = it->key().ToString();
    const MergedGroup group =
        merges.empty() ? MergedGroup{customer_id, {customer_id}} : merges.GroupOf(customer_id);
    auto view = ScannedView(db, group, customer_id, it->value(), unreadable_);
    if (!view.ok()) {
      unreadable(customer_id, view.status());
      continue;
    }
    if (!view->has_value()) continue;
    DeriveHealth(**view, now, config_);
    CRM_RETURN_IF_ERROR(fn(**view));
  }
  return FromRocks(it->status());
}

absl::StatusOr<crm::v1::ListSegmentResponse> ViewStore::ListSegment(
    const crm::v1::ListSegmentRequest& request) const {
  if (request.segment() == crm::v1::SEGMENT_UNSPECIFIED ||
      !crm::v1::Segment_IsValid(request.segment())) {
    return absl::InvalidArgumentError(
        "segment: unknown segment; one of high-value, potential, at-risk, dormant, churned");
  }
  CRM_ASSIGN_OR_RETURN(const size_t page_size, PageSize(request.page().page_size(),
                                                        "page.page_size", kDefaultPage, kMaxPage));
  std::string after;
  if (!request.page().page_token().empty() &&
      (!absl::WebSafeBase64Unescape(request.page().page_token(), &after) || after.empty() ||
       after.size() > 64)) {
    return absl::InvalidArgumentError("page.page_token: malformed");
  }
  const DbSnapshot snapshot(db_);
  const DbReader db = snapshot;
  CRM_ASSIGN_OR_RETURN(auto now, ReadClock(db));
  // A page costs what it scans, not every merge ever made: the merge rows
  // are walked beside the customers (both in id order), and only a row
  // with links reads its group. Once a large group is met, all the merges
  // are read, for its other rows on the page.
  LinkedCustomers linked(db);
  auto merge_rows = db.NewIterator(kCustomerMerges);
  std::optional<CustomerMerges> all_merges;
  auto group_of = [&](const std::string& row) -> absl::StatusOr<MergedGroup> {
    if (!linked.Has(row)) return MergedGroup{row, {row}};
    if (all_merges.has_value()) return all_merges->GroupOf(row);
    CRM_ASSIGN_OR_RETURN(MergedGroup group,
                         LoadGroup(db, row, /*merged_into_only=*/false, merge_rows.get()));
    if (group.members.size() >= kLargeGroup) {
      CRM_ASSIGN_OR_RETURN(all_merges, LoadAllMerges(db));
    }
    return group;
  };
  crm::v1::ListSegmentResponse response;
  *response.mutable_evaluated_at() = now;
  auto it = db.NewIterator(kCustomers);
  it->Seek(after);
  if (!after.empty() && it->Valid() && it->key().ToString() == after) it->Next();
  // The row the last member was found at: a merged group answers with
  // another id than its row's.
  std::string last_row;
  for (; it->Valid(); it->Next()) {
    const std::string row = it->key().ToString();
    auto group = group_of(row);
    auto found = group.ok() ? ScannedView(db, *group, row, it->value(), unreadable_)
                            : absl::StatusOr<std::optional<crm::v1::Customer360>>(group.status());
    if (absl::IsDataLoss(found.status())) {
      // One corrupt row must not hide every customer after it from every
      // page. A failed read is an error: a listing must not quietly leave
      // customers out.
      log::Warn("segment listing skips an unreadable customer view",
                {{"customer_id", row}, {"error", found.status().ToString()}});
      continue;
    }
    CRM_RETURN_IF_ERROR(found.status());
    if (!found->has_value()) continue;
    crm::v1::Customer360& view = **found;
    DeriveHealth(view, now, config_);
    if (std::find(view.segments().begin(), view.segments().end(), request.segment()) ==
        view.segments().end()) {
      continue;
    }
    if (static_cast<size_t>(response.members_size()) == page_size) {
      response.set_next_page_token(absl::WebSafeBase64Escape(last_row));
      break;
    }
    last_row = row;
    auto* m = response.add_members();
    m->set_customer_id(view.customer_id());
    m->set_account_name(view.profile().account_name());
    m->set_owner_id(view.owner_id());
    m->set_churn_risk_score(view.churn_risk_score());
    *m->mutable_lifetime_value() = view.lifetime_value();
    *m->mutable_last_seen() = view.last_seen();
  }
  CRM_RETURN_IF_ERROR(FromRocks(it->status()));
  CRM_RETURN_IF_ERROR(linked.status());
  return response;
}

absl::StatusOr<crm::v1::Funnel> ViewStore::GetFunnel(
    const crm::v1::GetFunnelRequest& request) const {
  CRM_RETURN_IF_ERROR(ValidateFunnelRequest(request));
  const DbSnapshot snapshot(db_);
  const DbReader db = snapshot;
  CRM_ASSIGN_OR_RETURN(const CustomerMerges merges, LoadAllMerges(db));
  FunnelBuilder funnel(request, &merges);
  CRM_RETURN_IF_ERROR(ForEachRecord<crm::v1::FunnelLeadRecord>(
      db, kFunnelLeads, [&](const auto& r) { funnel.AddLead(r); }));
  CRM_RETURN_IF_ERROR(ForEachRecord<crm::v1::FunnelOpportunityRecord>(
      db, kFunnelOpportunities, [&](const auto& o) { funnel.AddOpportunity(o); }));
  return funnel.Finish();
}

absl::StatusOr<crm::v1::Customer360> ViewStore::GetCustomer360(
    const std::string& customer_id, int32_t page_size, const std::string& page_token) const {
  if (customer_id.empty()) return absl::InvalidArgumentError("customer_id: required");
  if (customer_id.size() > 64) return absl::InvalidArgumentError("customer_id: too long");
  // Checked before the customer is looked up: a caller who may not see it
  // must get the same answer whether it exists or not.
  CRM_ASSIGN_OR_RETURN(const Page page, ParsePage(page_size, page_token, "timeline_page."));

  const DbSnapshot snapshot(db_);
  const DbReader db = snapshot;
  CRM_ASSIGN_OR_RETURN(const MergedGroup group, LoadGroup(db, customer_id));
  CRM_ASSIGN_OR_RETURN(crm::v1::Customer360 view, DerivedView(db, customer_id, group));
  CRM_ASSIGN_OR_RETURN(auto next, ReadPage(db, kTimeline, group.members, page, view.ByteSizeLong(),
                                           view.mutable_timeline()));
  view.set_next_page_token(std::move(next));
  return view;
}

absl::StatusOr<crm::v1::Customer360> ViewStore::DerivedView(const DbReader& db,
                                                            const std::string& customer_id,
                                                            const MergedGroup& group) const {
  CRM_ASSIGN_OR_RETURN(auto found, GroupView(db, group, unreadable_));
  if (!found.has_value()) {
    return absl::NotFoundError(absl::StrCat("customer ", customer_id, " not found"));
  }
  CRM_ASSIGN_OR_RETURN(auto now, ReadClock(db));
  DeriveHealth(*found, now, config_);
  return std::move(*found);
}

absl::StatusOr<crm::v1::Customer360> ViewStore::GetExportedView(
    const std::string& customer_id) const {
  const DbSnapshot snapshot(db_);
  const DbReader db = snapshot;
  CRM_ASSIGN_OR_RETURN(const MergedGroup group,
                       LoadGroup(db, customer_id, /*merged_into_only=*/true));
  return DerivedView(db, customer_id, group);
}

absl::StatusOr<crm::v1::ListAuditEntriesResponse> ViewStore::ListAuditEntries(
    const crm::v1::ListAuditEntriesRequest& request) const {
  if (request.actor().empty() == request.record_id().empty()) {
    return absl::InvalidArgumentError("actor: set exactly one of actor and record_id");
  }
  for (const auto& [field, value] :
       {std::pair{"actor", &request.actor()}, std::pair{"record_id", &request.record_id()}}) {
    if (value->size() > 256) return absl::InvalidArgumentError(absl::StrCat(field, ": too long"));
  }
  CRM_ASSIGN_OR_RETURN(const Page page,
                       ParsePage(request.page().page_size(), request.page().page_token(), "page."));
  const bool by_actor = !request.actor().empty();
  crm::v1::ListAuditEntriesResponse response;
  CRM_ASSIGN_OR_RETURN(auto next, ReadPage(db_, by_actor ? kAuditByActor : kAuditByRecord,
                                           {by_actor ? request.actor() : request.record_id()}, page,
                                           /*reserved=*/0, response.mutable_entries()));
  response.set_next_page_token(std::move(next));
  return response;
}

}  // namespace crm::analytics
