#include "libs/common/pii/key_vault.h"

#include <algorithm>
#include <chrono>
#include <optional>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "crm/v1/pii.pb.h"
#include "libs/common/ids.h"
#include "libs/common/key_codec.h"
#include "libs/common/log.h"
#include "libs/common/metrics.h"
#include "libs/common/status_macros.h"
#include "libs/common/thread_name.h"
#include "rocksdb/write_batch.h"

namespace crm::pii {
namespace {

std::string KeyRow(absl::string_view key_id) { return absl::StrCat("k", key_id); }
std::string CustomerPrefix(absl::string_view customer_id) {
  return absl::StrCat("c", customer_id, absl::string_view("\0", 1));
}
std::string CustomerRow(absl::string_view customer_id, absl::string_view key_id) {
  return absl::StrCat(CustomerPrefix(customer_id), key_id);
}
// One row per erasure of a customer, its time in the key: two erasures
// committed in either order both stay, and the latest holds when they are
// loaded (one row per customer, overwritten, kept whichever committed last).
// Rows of older versions have no time in the key.
std::string ErasedRow(absl::string_view customer_id, absl::Time at) {
  std::string key = absl::StrCat("e", customer_id, absl::string_view("\0", 1));
  AppendBigEndian64(&key, static_cast<uint64_t>(absl::ToUnixMicros(at)));
  return key;
}
std::string MergeRow(absl::string_view merged_lead_id) { return absl::StrCat("m", merged_lead_id); }
// A destroyed key whose copies on disk are not compacted away yet; the
// value says whether this service issued it (its stream holds it too).
constexpr char kPurgePrefix[] = "p";
constexpr char kOwnKey[] = "own";
std::string PurgeRow(absl::string_view key_id) { return absl::StrCat(kPurgePrefix, key_id); }
std::string KeyStream(absl::string_view key_id) { return absl::StrCat(kKeyStreamPrefix, key_id); }

// The version a record of an own key (a destruction, a re-wrap) appends
// after. A key of this service's whose stream its log does not hold (issued
// after the backup it was restored from, then read back from crm.keys.v1)
// gets its records all the same, on a new stream: only a later record under
// the key's stream makes the topic's compaction drop the wrapping it holds.
// A reader that applied the issue at that version may skip it as a
// duplicate: the erasure ends the key for it, and it keeps a key it holds
// under its own rotation.
int64_t OwnKeyVersion(const std::vector<crm::v1::EventEnvelope>& events) {
  return events.empty() ? EventStore::kNoStream : events.back().stream_version();
}

// A stored key row ("k" key_id -> DataKeyIssued envelope).
absl::StatusOr<crm::v1::EventEnvelope> ParseKeyRow(absl::string_view row, absl::string_view value) {
  crm::v1::EventEnvelope issued;
  if (!issued.ParseFromArray(value.data(), static_cast<int>(value.size()))) {
    return absl::DataLossError(absl::StrCat("corrupt key row ", row));
  }
  return issued;
}

// The erasure a key's issuer knew of (KeyVault::EndedBy); InfinitePast:
// none.
absl::Time AfterErasureOf(const crm::v1::DataKeyIssued& issued) {
  return issued.has_issued_after_erasure_at() ? FromProtoTimestamp(issued.issued_after_erasure_at())
                                              : absl::InfinitePast();
}

constexpr char kBlindIndexRow[] = "blind-index";
constexpr char kIndexedRow[] = "index:customers";
// Present while a scan is re-wrapping keys under the current master key.
constexpr char kRewrappingRow[] = "rewrapping";
// The purpose of the blind index key: its derivation from a master key
// (before it was stored) and the associated data of its wrapping.
constexpr char kBlindIndexPurpose[] = "crm pii blind index v1";

// One record on a key's stream with the key's rows: the record itself and
// the customer's index entry for an issue (or re-wrap), both deleted for a
// destruction. The record's customer and issuer are the key's.
AppendRequest KeyRecord(absl::string_view key_id, absl::string_view issuer,
                        int64_t expected_version, crm::v1::EventEnvelope record) {
  AppendRequest append;
  append.stream = KeyStream(key_id);
  append.expected_version = expected_version;
  const std::string customer_row = CustomerRow(record.customer_id(), key_id);
  if (record.payload().Is<crm::v1::DataKeyDestroyed>()) {
    append.projection_writes.push_back({KeyVault::kFamily, KeyRow(key_id), "", true});
    append.projection_writes.push_back({KeyVault::kFamily, customer_row, "", true});
    append.projection_writes.push_back({KeyVault::kFamily, PurgeRow(key_id), kOwnKey});
  } else {
    append.projection_writes.push_back(
        {KeyVault::kFamily, KeyRow(key_id), record.SerializeAsString()});
    append.projection_writes.push_back({KeyVault::kFamily, customer_row, std::string(issuer)});
  }
  append.events.push_back(std::move(record));
  return append;
}

// Copies of the issue records in `events` (one key's stream) that still
// hold a wrapped key, with it cleared.
std::vector<crm::v1::EventEnvelope> RedactedIssues(
    const std::vector<crm::v1::EventEnvelope>& events) {
  std::vector<crm::v1::EventEnvelope> redacted;
  for (const auto& event : events) {
    crm::v1::DataKeyIssued issued;
    if (!event.payload().Is<crm::v1::DataKeyIssued>() || !event.payload().UnpackTo(&issued) ||
        issued.wrapped_key().empty()) {
      continue;
    }
    issued.clear_wrapped_key();
    redacted.push_back(event);
    redacted.back().mutable_payload()->PackFrom(issued);
  }
  return redacted;
}

// The destruction of an own key, read from its stream (`events`), with the
// issue records to redact into `redacted` before it; nullopt when the
// stream holds its destruction already. Issue records are the one place
// wrapped keys are kept for good: redacted before the destruction deletes
// the key's rows, since a crash in between left the wrapped key in the log
// with no row left for a redelivery or a retry to find.
std::optional<AppendRequest> OwnKeyDestruction(const std::vector<crm::v1::EventEnvelope>& events,
                                               const std::string& key_id,
                                               const std::string& customer_id,
                                               const std::string& issuer, const EventContext& ctx,
                                               std::vector<crm::v1::EventEnvelope>& redacted) {
  for (auto& r : RedactedIssues(events)) redacted.push_back(std::move(r));
  const bool destroyed_before = std::any_of(events.begin(), events.end(), [](const auto& e) {
    return e.payload().template Is<crm::v1::DataKeyDestroyed>();
  });
  if (destroyed_before) return std::nullopt;
  crm::v1::DataKeyDestroyed destroyed;
  destroyed.set_key_id(key_id);
  destroyed.set_customer_id(customer_id);
  EventContext destroy_ctx = ctx;
  destroy_ctx.source = issuer;
  return KeyRecord(key_id, issuer, OwnKeyVersion(events),
                   MakeEnvelope(destroyed, customer_id, destroy_ctx));
}

std::string EncodeTime(absl::Time t) {
  return BigEndian64(static_cast<uint64_t>(absl::ToUnixMicros(t)));
}

std::vector<Key> Derived(const MasterKeys& masters, absl::string_view purpose) {
  std::vector<Key> out = {DeriveKey(masters.current, purpose)};
  for (const Key& k : masters.previous) out.push_back(DeriveKey(k, purpose));
  return out;
}

// The key sealed in `wrapped` under the first of `wrap_keys` that opens
// it, and that key's index.
std::optional<std::pair<Key, size_t>> OpenWithAny(const std::vector<Key>& wrap_keys,
                                                  absl::string_view wrapped,
                                                  absl::string_view aad) {
  for (size_t i = 0; i < wrap_keys.size(); ++i) {
    auto raw = pii::Open(wrap_keys[i], wrapped, aad);
    if (!raw.ok() || raw->size() != kKeySize) continue;
    Key key;
    std::copy(raw->begin(), raw->end(), key.begin());
    return std::make_pair(key, i);
  }
  return std::nullopt;
}

Counter& RewrappedCounter() {
  static Counter& counter = MetricsRegistry::Default().GetCounter(
      "crm_pii_keys_rewrapped_total",
      "Stored personal-data keys re-wrapped under the current master key");
  return counter;
}

}  // namespace

KeyVault::KeyVault(Token, Database& db, EventStore* store, const MasterKeys& masters,
                   std::string issuer, size_t cached_keys)
    : db_(db),
      store_(store),
      wrap_keys_(Derived(masters, "crm pii key wrapping v1")),
      derived_blind_index_keys_(Derived(masters, kBlindIndexPurpose)),
      blind_index_key_(derived_blind_index_keys_.front()),
      issuer_(std::move(issuer)),
      keys_(cached_keys),
      by_customer_(cached_keys) {}

absl::StatusOr<std::unique_ptr<KeyVault>> KeyVault::Open(Database& db, EventStore* store,
                                                         const MasterKeys& masters,
                                                         std::string issuer, size_t cached_keys) {
  if (db.Family(kFamily) == nullptr) {
    return absl::InternalError(absl::StrCat("database has no column family ", kFamily));
  }
  auto vault =
      std::make_unique<KeyVault>(Token{}, db, store, masters, std::move(issuer), cached_keys);
  CRM_RETURN_IF_ERROR(vault->Load(/*every_key=*/!masters.previous.empty()));
  if (vault->rewrapped_ > 0 || !masters.previous.empty()) {
    // Once every service logs 0 here, the previous master keys can go.
    log::Info("personal-data keys re-wrapped under the current master key",
              {{"keys", absl::StrCat(vault->rewrapped_)},
               {"previous_master_keys", absl::StrCat(masters.previous.size())}});
  }
  RewrappedCounter().Inc(static_cast<uint64_t>(vault->rewrapped_));
  KeyVault* v = vault.get();
  vault->purger_ = std::thread([v] {
    NameThisThread("crm-purge");
    v->PurgeLoop();
  });
  // Purges a previous run left pending (a crash, a failed compaction).
  vault->RequestPurge();
  return vault;
}

absl::Status KeyVault::Load(bool every_key) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = db_.NewIterator(kFamily);
    for (it->Seek("e"); it->Valid() && it->key().starts_with("e"); it->Next()) {
      if (it->value().size() != 8) return absl::DataLossError("corrupt erasure row");
      const absl::string_view key = View(it->key()).substr(1);
      const absl::Time at =
          absl::FromUnixMicros(static_cast<int64_t>(ReadBigEndian64(View(it->value()))));
      absl::Time& latest = erased_[key.substr(0, key.find('\0'))];
      latest = std::max(latest, at);
    }
    for (it->Seek("m"); it->Valid() && it->key().starts_with("m"); it->Next()) {
      crm::v1::CustomersMerged merged;
      if (!merged.ParseFromArray(it->value().data(), static_cast<int>(it->value().size()))) {
        return absl::DataLossError(absl::StrCat("corrupt merge row ", View(it->key())));
      }
      LinkLocked(merged.merged_customer_id(), merged.survivor_customer_id());
    }
    CRM_RETURN_IF_ERROR(FromRocks(it->status()));
  }
  CRM_ASSIGN_OR_RETURN(auto indexed, db_.Get(kFamily, kIndexedRow));
  size_t data_master = 0;
  if (every_key || !indexed.has_value()) {
    CRM_ASSIGN_OR_RETURN(data_master, ScanKeys(/*index=*/!indexed.has_value()));
  } else {
    // Keys are re-wrapped in key order, a batch at a time, so after a
    // rotation cut short the first row unwraps while later ones do not.
    CRM_ASSIGN_OR_RETURN(auto rewrapping, db_.Get(kFamily, kRewrappingRow));
    if (rewrapping.has_value()) {
      return absl::FailedPreconditionError(
          "a master key rotation did not finish: start with the previous master keys "
          "(CRM_PREVIOUS_MASTER_KEYS) once more, so the rest of the keys are re-wrapped");
    }
    CRM_RETURN_IF_ERROR(DeleteErasedKeys());
    // A key that does not unwrap was stored under another master key: a
    // configuration error that must stop the service, not hide its data.
    auto it = db_.NewIterator(kFamily);
    it->Seek("k");
    if (it->Valid() && it->key().starts_with("k")) {
      CRM_ASSIGN_OR_RETURN(auto issued, ParseKeyRow(View(it->key()), View(it->value())));
      CRM_RETURN_IF_ERROR(Unwrap(issued).status());
    }
    CRM_RETURN_IF_ERROR(FromRocks(it->status()));
  }
  return LoadBlindIndexKey(data_master);
}

absl::Status KeyVault::DeleteErasedKeys() {
  std::vector<std::pair<std::string, absl::Time>> customers;
  {
    std::lock_guard<std::mutex> lock(mu_);
    customers.assign(erased_.begin(), erased_.end());
  }
  rocksdb::WriteBatch rows;
  rocksdb::ColumnFamilyHandle* family = db_.Family(kFamily);
  for (const auto& [customer_id, erased_at] : customers) {
    CRM_ASSIGN_OR_RETURN(auto held, KeysErasedAt(customer_id, erased_at));
    for (const HeldKey& h : held) {
      CRM_RETURN_IF_ERROR(FromRocks(rows.Delete(family, KeyRow(h.key_id))));
      CRM_RETURN_IF_ERROR(FromRocks(rows.Delete(family, CustomerRow(customer_id, h.key_id))));
      CRM_RETURN_IF_ERROR(FromRocks(rows.Put(family, PurgeRow(h.key_id), h.own ? kOwnKey : "")));
    }
  }
  return rows.Count() > 0 ? db_.Write(&rows, /*sync=*/true) : absl::OkStatus();
}

absl::StatusOr<size_t> KeyVault::ScanKeys(bool index) {
  std::vector<StaleKey> stale;
  rocksdb::WriteBatch rows;
  // Rows are written a batch at a time, so memory stays bounded however
  // many keys there are; a crash midway leaves the rest for the next start.
  auto flush = [&]() -> absl::Status {
    CRM_RETURN_IF_ERROR(Rewrap(stale, rows));
    rewrapped_ += static_cast<int>(stale.size());
    stale.clear();
    if (rows.Count() > 0) CRM_RETURN_IF_ERROR(db_.Write(&rows, /*sync=*/true));
    rows.Clear();
    return absl::OkStatus();
  };
  size_t data_master = 0;
  uint64_t indexed = 0;
  rocksdb::ColumnFamilyHandle* family = db_.Family(kFamily);
  CRM_ASSIGN_OR_RETURN(auto rewrapping, db_.Get(kFamily, kRewrappingRow));
  auto it = db_.NewIterator(kFamily);
  for (it->Seek("k"); it->Valid() && it->key().starts_with("k"); it->Next()) {
    const absl::string_view row = View(it->key());
    const std::string key_id(row.substr(1));
    CRM_ASSIGN_OR_RETURN(auto issued, ParseKeyRow(row, View(it->value())));
    if (IssuedBeforeErasure(issued)) {
      // Written back by a key record applied while the erasure ran: it
      // stays destroyed (and need not unwrap).
      CRM_RETURN_IF_ERROR(FromRocks(rows.Delete(family, rocksdb::Slice(row.data(), row.size()))));
      crm::v1::DataKeyIssued payload;
      issued.payload().UnpackTo(&payload);
      CRM_RETURN_IF_ERROR(
          FromRocks(rows.Delete(family, CustomerRow(payload.customer_id(), key_id))));
      CRM_RETURN_IF_ERROR(FromRocks(
          rows.Put(family, PurgeRow(key_id), payload.issuer() == issuer_ ? kOwnKey : "")));
    } else {
      // A key that does not unwrap was stored under another master key: a
      // configuration error that must stop the service, not hide its data.
      CRM_ASSIGN_OR_RETURN(Unwrapped unwrapped, Unwrap(issued));
      const Entry& entry = unwrapped.entry;
      if (index) {
        CRM_RETURN_IF_ERROR(FromRocks(rows.Put(family, CustomerRow(entry.customer_id, key_id),
                                               entry.own ? issuer_ : std::string())));
        ++indexed;
      }
      if (unwrapped.master != 0) {
        // Durable before the first re-wrap is written, cleared once every
        // row was seen: until then a start without the previous master
        // keys is refused.
        if (!rewrapping.has_value()) {
          rocksdb::WriteBatch mark;
          CRM_RETURN_IF_ERROR(FromRocks(mark.Put(family, kRewrappingRow, "")));
          CRM_RETURN_IF_ERROR(db_.Write(&mark, /*sync=*/true));
          rewrapping = "";
        }
        data_master = unwrapped.master;
        stale.push_back({key_id, std::move(issued), entry});
      }
    }
    if (rows.Count() + stale.size() >= kScanBatch) CRM_RETURN_IF_ERROR(flush());
  }
  CRM_RETURN_IF_ERROR(FromRocks(it->status()));
  if (index) CRM_RETURN_IF_ERROR(FromRocks(rows.Put(family, kIndexedRow, "")));
  if (rewrapping.has_value()) CRM_RETURN_IF_ERROR(FromRocks(rows.Delete(family, kRewrappingRow)));
  CRM_RETURN_IF_ERROR(flush());
  // Once per data dir (a vault written before the index): the start it
  // slowed down says why.
  if (indexed > 0) log::Info("personal-data key index built", {{"keys", absl::StrCat(indexed)}});
  return data_master;
}

absl::Status KeyVault::LoadBlindIndexKey(size_t legacy_master) {
  // Only leads looks people up by blind index, and every service that
  // issues keys keeps one; a vault that only reads has no use for it.
  if (store_ == nullptr) return absl::OkStatus();
  CRM_ASSIGN_OR_RETURN(auto stored, db_.Get(kFamily, kBlindIndexRow));
  bool write = false;
  if (!stored.has_value()) {
    // Stored the first time, derived as before it was stored, so the
    // dedupe indexes written since keep matching.
    blind_index_key_ = derived_blind_index_keys_[legacy_master];
    write = true;
  } else {
    auto opened = OpenWithAny(wrap_keys_, *stored, kBlindIndexPurpose);
    if (!opened.has_value()) {
      return absl::DataLossError("the blind index key does not unwrap with the master keys");
    }
    blind_index_key_ = opened->first;
    if (opened->second != 0) {
      write = true;
      ++rewrapped_;
    }
  }
  if (!write) return absl::OkStatus();
  rocksdb::WriteBatch batch;
  const std::string wrapped =
      Seal(wrap_keys_.front(), KeyBytes(blind_index_key_), kBlindIndexPurpose);
  CRM_RETURN_IF_ERROR(FromRocks(batch.Put(db_.Family(kFamily), kBlindIndexRow, wrapped)));
  return db_.Write(&batch, /*sync=*/true);
}

std::string KeyVault::Wrap(const Key& key, absl::string_view key_id) const {
  return Seal(wrap_keys_.front(), KeyBytes(key), key_id);
}

absl::Status KeyVault::Rewrap(const std::vector<StaleKey>& stale, rocksdb::WriteBatch& rows) {
  std::vector<crm::v1::EventEnvelope> redacted;
  std::vector<AppendRequest> appends;
  for (const StaleKey& s : stale) {
    crm::v1::DataKeyIssued issued;
    s.stored.payload().UnpackTo(&issued);
    issued.set_wrapped_key(Wrap(s.entry.key, s.key_id));
    if (!s.entry.own || store_ == nullptr) {
      // Another service's key (its issuer republishes it): the row only.
      crm::v1::EventEnvelope row = s.stored;
      row.mutable_payload()->PackFrom(issued);
      CRM_RETURN_IF_ERROR(
          FromRocks(rows.Put(db_.Family(kFamily), KeyRow(s.key_id), row.SerializeAsString())));
      continue;
    }
    // An own key: republished, even one read back from the topic with no
    // stream here (OwnKeyVersion), which no other service republishes.
    CRM_ASSIGN_OR_RETURN(auto events, store_->ReadStream(KeyStream(s.key_id)));
    for (auto& r : RedactedIssues(events)) redacted.push_back(std::move(r));
    EventContext ctx;
    ctx.source = issuer_;
    ctx.actor = issuer_;
    // The time of issue, which erasure compares, is the key's, not the
    // rotation's.
    ctx.occurred_at = s.entry.issued_at;
    appends.push_back(KeyRecord(s.key_id, issuer_, OwnKeyVersion(events),
                                MakeEnvelope(issued, s.entry.customer_id, ctx)));
  }
  if (appends.empty()) return absl::OkStatus();
  // Redacted first: if the appends do not happen, the rows are still stale
  // and the next start does both again.
  CRM_RETURN_IF_ERROR(store_->RedactEvents(redacted));
  // At start, before the relay runs: a limit on the outbox would stop every
  // start of a service with more keys than the limit.
  CRM_ASSIGN_OR_RETURN(auto results,
                       store_->AppendBatch(std::move(appends), EventStore::Admission::kUnlimited));
  for (const auto& result : results) CRM_RETURN_IF_ERROR(result.status());
  return absl::OkStatus();
}

absl::StatusOr<KeyVault::Unwrapped> KeyVault::Unwrap(const crm::v1::EventEnvelope& event) const {
  crm::v1::DataKeyIssued issued;
  if (!event.payload().UnpackTo(&issued)) return absl::InvalidArgumentError("not a DataKeyIssued");
  auto opened = OpenWithAny(wrap_keys_, issued.wrapped_key(), issued.key_id());
  if (!opened.has_value()) {
    return absl::DataLossError(
        absl::StrCat("data key ", issued.key_id(), " does not unwrap with the master keys"));
  }
  Unwrapped out;
  out.entry.customer_id = issued.customer_id();
  out.entry.key = opened->first;
  out.entry.issued_at = FromProtoTimestamp(event.occurred_at());
  out.entry.own = issued.issuer() == issuer_;
  out.entry.after_erasure = AfterErasureOf(issued);
  out.master = opened->second;
  return out;
}

bool KeyVault::EndedBy(absl::Time issued_at, absl::Time after_erasure, absl::Time erased_at) {
  // In microseconds, as records keep times: the eraser's erasure time in
  // memory has nanoseconds its records (and keys' markers) do not.
  const int64_t erased = absl::ToUnixMicros(erased_at);
  if (after_erasure != absl::InfinitePast()) return absl::ToUnixMicros(after_erasure) < erased;
  return absl::ToUnixMicros(issued_at) <= absl::ToUnixMicros(erased_at + kErasureClockSkew);
}

bool KeyVault::ErasedLocked(const Entry& entry) const {
  if (erased_.empty()) return false;
  auto e = erased_.find(entry.customer_id);
  return e != erased_.end() && EndedBy(entry.issued_at, entry.after_erasure, e->second);
}

bool KeyVault::IssuedBeforeErasure(const crm::v1::EventEnvelope& row) const {
  crm::v1::DataKeyIssued issued;
  row.payload().UnpackTo(&issued);
  Entry entry;
  entry.customer_id = issued.customer_id();
  entry.issued_at = FromProtoTimestamp(row.occurred_at());
  entry.after_erasure = AfterErasureOf(issued);
  std::lock_guard<std::mutex> lock(mu_);
  return ErasedLocked(entry);
}

absl::StatusOr<std::optional<Key>> KeyVault::LoadKey(absl::string_view key_id) const {
  uint64_t drops;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (const Entry* e = keys_.Find(key_id)) {
      if (ErasedLocked(*e)) return std::nullopt;
      return e->key;
    }
    drops = drops_;
  }
  CRM_ASSIGN_OR_RETURN(auto row, db_.Get(kFamily, KeyRow(key_id)));
  if (!row.has_value()) return std::nullopt;
  CRM_ASSIGN_OR_RETURN(auto issued, ParseKeyRow(KeyRow(key_id), *row));
  CRM_ASSIGN_OR_RETURN(Unwrapped unwrapped, Unwrap(issued));
  std::lock_guard<std::mutex> lock(mu_);
  if (ErasedLocked(unwrapped.entry)) return std::nullopt;
  // A key dropped while it was read must not come back into memory.
  if (drops == drops_) keys_.Put(std::string(key_id), unwrapped.entry);
  return unwrapped.entry.key;
}

absl::StatusOr<std::vector<KeyVault::HeldKey>> KeyVault::CustomerKeys(
    const std::string& customer_id) const {
  std::vector<HeldKey> held;
  const std::string prefix = CustomerPrefix(customer_id);
  auto it = db_.NewIterator(kFamily);
  for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
    held.push_back(
        {std::string(View(it->key()).substr(prefix.size())), View(it->value()) == issuer_});
  }
  CRM_RETURN_IF_ERROR(FromRocks(it->status()));
  return held;
}

absl::StatusOr<std::vector<KeyVault::HeldKey>> KeyVault::KeysErasedAt(
    const std::string& customer_id, absl::Time erased_at) const {
  CRM_ASSIGN_OR_RETURN(std::vector<HeldKey> held, CustomerKeys(customer_id));
  std::vector<HeldKey> ended;
  for (HeldKey& h : held) {
    CRM_ASSIGN_OR_RETURN(auto row, db_.Get(kFamily, KeyRow(h.key_id)));
    if (row.has_value()) {
      auto stored = ParseKeyRow(KeyRow(h.key_id), *row);
      if (!stored.ok()) {
        // Its issue time is lost with it: ended, as an erasure must not be
        // held up by the one row it would have destroyed anyway.
        log::Warn("damaged data key row ended by an erasure",
                  {{"key_id", h.key_id}, {"error", stored.status().ToString()}});
        ended.push_back(std::move(h));
        continue;
      }
      crm::v1::DataKeyIssued issued;
      stored->payload().UnpackTo(&issued);
      if (!EndedBy(FromProtoTimestamp(stored->occurred_at()), AfterErasureOf(issued), erased_at)) {
        continue;
      }
    }
    ended.push_back(std::move(h));
  }
  return ended;
}

absl::StatusOr<KeyVault::Sealing> KeyVault::KeyFor(const std::string& customer_id,
                                                   const EventContext& ctx) const {
  std::string cached_id;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (const std::string* id = by_customer_.Find(customer_id)) cached_id = *id;
  }
  if (!cached_id.empty()) {
    CRM_ASSIGN_OR_RETURN(auto key, LoadKey(cached_id));
    if (key.has_value()) return Sealing{{cached_id, *std::move(key)}, std::nullopt};
  }
  CRM_ASSIGN_OR_RETURN(auto held, CustomerKeys(customer_id));
  for (const HeldKey& h : held) {
    CRM_ASSIGN_OR_RETURN(auto key, LoadKey(h.key_id));
    if (!key.has_value()) continue;
    std::lock_guard<std::mutex> lock(mu_);
    by_customer_.Put(customer_id, h.key_id);
    return Sealing{{h.key_id, *std::move(key)}, std::nullopt};
  }
  return NewKey(customer_id, ctx);
}

KeyVault::Sealing KeyVault::NewKey(const std::string& customer_id, const EventContext& ctx) const {
  Sealing out;
  out.key.key_id = absl::BytesToHexString(RandomBytes(8));
  out.key.key = RandomKey();
  crm::v1::DataKeyIssued issued;
  issued.set_key_id(out.key.key_id);
  issued.set_customer_id(customer_id);
  issued.set_wrapped_key(Wrap(out.key.key, out.key.key_id));
  issued.set_issuer(issuer_);
  {
    // An erasure of the customer applied here: this key comes after it, and
    // says so, so that reading that erasure again (here or anywhere) does
    // not end it, whatever the clocks.
    std::lock_guard<std::mutex> lock(mu_);
    if (auto e = erased_.find(customer_id); e != erased_.end()) {
      out.key.after_erasure = e->second;
      *issued.mutable_issued_after_erasure_at() = ToProtoTimestamp(e->second);
    }
  }
  EventContext issue_ctx = ctx;
  issue_ctx.source = issuer_;
  // Erasure compares times of issue: a key is as old as its creation, not
  // as the (possibly earlier) business time of the data it seals.
  issue_ctx.occurred_at = absl::Now();
  out.key.issued_at = issue_ctx.occurred_at;
  out.issue = KeyRecord(out.key.key_id, issuer_, EventStore::kNoStream,
                        MakeEnvelope(issued, customer_id, issue_ctx));
  return out;
}

void KeyVault::Issued(const std::string& customer_id, const DataKey& key) {
  std::lock_guard<std::mutex> lock(mu_);
  // Stamped with the time it was made, not now: an erasure of the customer
  // that ran between the issue's append and this call refuses it.
  if (!keys_.Contains(key.key_id)) {
    keys_.Put(key.key_id,
              Entry{customer_id, key.key, key.issued_at, /*own=*/true, key.after_erasure});
  }
  if (!by_customer_.Contains(customer_id)) by_customer_.Put(customer_id, key.key_id);
}

absl::StatusOr<DataKey> KeyVault::EnsureKey(const std::string& customer_id,
                                            const EventContext& ctx) {
  CRM_ASSIGN_OR_RETURN(Sealing sealing, KeyFor(customer_id, ctx));
  if (sealing.issue.has_value()) {
    if (store_ == nullptr) return absl::FailedPreconditionError("this service issues no keys");
    CRM_RETURN_IF_ERROR(store_->Append(std::move(*sealing.issue)).status());
    Issued(customer_id, sealing.key);
  }
  return sealing.key;
}

std::optional<AppendRequest> KeyVault::MergeRecord(const std::string& merged_lead_id,
                                                   const std::string& merged_customer_id,
                                                   const std::string& survivor_customer_id,
                                                   const EventContext& ctx) const {
  if (merged_customer_id == survivor_customer_id) return std::nullopt;
  crm::v1::CustomersMerged merged;
  merged.set_merged_customer_id(merged_customer_id);
  merged.set_survivor_customer_id(survivor_customer_id);
  merged.set_merged_lead_id(merged_lead_id);
  EventContext merge_ctx = ctx;
  merge_ctx.source = issuer_;
  AppendRequest append;
  // A lead merges once (a merged lead takes no more commands): its own
  // stream, so two merges of the same customers never conflict.
  append.stream = absl::StrCat(kMergeStreamPrefix, merged_lead_id);
  append.expected_version = EventStore::kNoStream;
  append.projection_writes.push_back(
      {kFamily, MergeRow(merged_lead_id), merged.SerializeAsString()});
  append.events.push_back(MakeEnvelope(merged, survivor_customer_id, merge_ctx));
  return append;
}

void KeyVault::LinkLocked(const std::string& merged_customer_id,
                          const std::string& survivor_customer_id) {
  if (merged_customer_id == survivor_customer_id) return;
  survivor_of_[merged_customer_id] = survivor_customer_id;
  auto& into = merged_into_[survivor_customer_id];
  if (std::find(into.begin(), into.end(), merged_customer_id) == into.end()) {
    into.push_back(merged_customer_id);
  }
}

void KeyVault::Merged(const std::string& merged_customer_id,
                      const std::string& survivor_customer_id) {
  std::lock_guard<std::mutex> lock(mu_);
  LinkLocked(merged_customer_id, survivor_customer_id);
}

bool KeyVault::Erased(const std::string& customer_id) const {
  std::lock_guard<std::mutex> lock(mu_);
  return erased_.contains(customer_id);
}

std::optional<absl::Time> KeyVault::LatestErasure(const std::string& customer_id) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = erased_.find(customer_id);
  if (it == erased_.end()) return std::nullopt;
  return it->second;
}

std::string KeyVault::SurvivorOf(const std::string& customer_id) const {
  std::lock_guard<std::mutex> lock(mu_);
  std::string at = customer_id;
  // Bounded: customers merged both ways link in a circle.
  for (size_t hops = 0; hops <= survivor_of_.size(); ++hops) {
    auto it = survivor_of_.find(at);
    if (it == survivor_of_.end() || it->second == customer_id) break;
    at = it->second;
  }
  return at;
}

std::optional<Key> KeyVault::Find(absl::string_view key_id) const {
  auto key = LoadKey(key_id);
  if (!key.ok()) {
    // The data it seals stays sealed; the row is kept for an operator.
    log::Error("personal-data key unreadable",
               {{"key_id", std::string(key_id)}, {"error", key.status().ToString()}});
    return std::nullopt;
  }
  return *std::move(key);
}

std::vector<std::string> KeyVault::Forget(const std::string& customer_id, absl::Time erased_at,
                                          const std::vector<HeldKey>& held) {
  std::lock_guard<std::mutex> lock(mu_);
  absl::Time& at = erased_[customer_id];
  at = std::max(at, erased_at);
  ++drops_;
  std::vector<std::string> own;
  for (const HeldKey& h : held) {
    keys_.Erase(h.key_id);
    if (h.own) own.push_back(h.key_id);
  }
  // Keys in memory but not in `held` (applied and not yet committed) are
  // refused by the erasure time.
  by_customer_.Erase(customer_id);
  return own;
}

std::vector<ProjectionWrite> KeyVault::ErasureWrites(const std::string& customer_id,
                                                     absl::Time erased_at,
                                                     const std::vector<HeldKey>& held) const {
  std::vector<ProjectionWrite> writes;
  writes.push_back({kFamily, ErasedRow(customer_id, erased_at), EncodeTime(erased_at)});
  for (const HeldKey& h : held) {
    writes.push_back({kFamily, KeyRow(h.key_id), "", true});
    writes.push_back({kFamily, CustomerRow(customer_id, h.key_id), "", true});
    writes.push_back({kFamily, PurgeRow(h.key_id), h.own ? kOwnKey : ""});
  }
  return writes;
}

void KeyVault::RequestPurge() {
  std::lock_guard<std::mutex> lock(wake_mu_);
  purge_wanted_ = true;
  wake_.notify_one();
}

void KeyVault::PurgeLoop() {
  std::unique_lock<std::mutex> lock(wake_mu_);
  while (true) {
    wake_.wait(lock, [this] { return purge_wanted_ || stopping_; });
    // Erasures come in runs (a list of requests): one flush for the run.
    if (wake_.wait_for(lock, std::chrono::seconds(1), [this] { return stopping_; })) return;
    purge_wanted_ = false;
    lock.unlock();
    const absl::Status st = PurgeDestroyed();
    lock.lock();
    if (!st.ok()) {
      log::Error("destroyed keys not compacted away yet", {{"error", st.ToString()}});
      if (wake_.wait_for(lock, std::chrono::seconds(30), [this] { return stopping_; })) return;
      purge_wanted_ = true;
    }
  }
}

KeyVault::~KeyVault() {
  {
    std::lock_guard<std::mutex> lock(wake_mu_);
    stopping_ = true;
    wake_.notify_one();
  }
  if (purger_.joinable()) purger_.join();
}

absl::Status KeyVault::PurgeDestroyed() {
  std::lock_guard<std::mutex> purging(purge_mu_);
  // Committed rows only: a destruction's purge row is written with it.
  std::vector<std::pair<std::string, bool>> pending;
  {
    auto it = db_.NewIterator(kFamily);
    for (it->Seek(kPurgePrefix); it->Valid() && it->key().starts_with(kPurgePrefix); it->Next()) {
      pending.emplace_back(std::string(View(it->key()).substr(1)), View(it->value()) == kOwnKey);
    }
    CRM_RETURN_IF_ERROR(FromRocks(it->status()));
  }
  if (pending.empty()) return absl::OkStatus();
  // A WAL file is deleted once every memtable it fed is flushed.
  CRM_RETURN_IF_ERROR(db_.Flush());
  // One compaction over the span of the keys' rows, and one over their
  // streams, however many keys: one per key rewrote a last-level file each.
  std::vector<std::string> own;
  rocksdb::WriteBatch done;
  auto* family = db_.Family(kFamily);
  for (const auto& [key_id, is_own] : pending) {
    if (is_own) own.push_back(key_id);
    CRM_RETURN_IF_ERROR(FromRocks(done.Delete(family, PurgeRow(key_id))));
  }
  CRM_RETURN_IF_ERROR(
      db_.CompactRange(kFamily, KeyRow(pending.front().first), KeyRow(pending.back().first)));
  if (!own.empty() && store_ != nullptr) {
    CRM_RETURN_IF_ERROR(store_->CompactStreams(KeyStream(own.front()), KeyStream(own.back())));
  }
  CRM_RETURN_IF_ERROR(db_.Write(&done, /*sync=*/true));
  log::Info("destroyed keys compacted away", {{"keys", absl::StrCat(pending.size())}});
  return absl::OkStatus();
}

absl::Status KeyVault::DestroyOwn(const std::vector<std::string>& key_ids,
                                  const std::string& customer_id, const EventContext& ctx) {
  if (store_ == nullptr) return absl::OkStatus();
  for (const auto& key_id : key_ids) {
    CRM_ASSIGN_OR_RETURN(auto events, store_->ReadStream(KeyStream(key_id)));
    std::vector<crm::v1::EventEnvelope> redacted;
    auto destruction = OwnKeyDestruction(events, key_id, customer_id, issuer_, ctx, redacted);
    CRM_RETURN_IF_ERROR(store_->RedactEvents(redacted));
    if (!destruction.has_value()) continue;
    auto appended = store_->Append(*std::move(destruction));
    // ABORTED: destroyed meanwhile by another path.
    if (!appended.ok() && !absl::IsAborted(appended.status())) return appended.status();
  }
  return absl::OkStatus();
}

absl::Status KeyVault::ApplyRecord(const crm::v1::EventEnvelope& event, ProjectionTxn& txn) {
  const auto& payload = event.payload();
  if (payload.Is<crm::v1::DataKeyIssued>()) {
    crm::v1::DataKeyIssued issued;
    if (!payload.UnpackTo(&issued)) return absl::InvalidArgumentError("bad DataKeyIssued");
    // Held means stored, not cached: a key cached by a batch whose commit
    // failed comes again and must then get its rows.
    CRM_ASSIGN_OR_RETURN(auto stored, txn.Get(kFamily, KeyRow(issued.key_id())));
    if (stored.has_value()) {
      // The issuer re-wrapped the key under the current master key: store
      // that wrapping. Any other record of a key held here (an older
      // wrapping, a redacted issue record, one under a master key this
      // service does not have yet) changes nothing: the key is known.
      auto unwrapped = Unwrap(event);
      if (!unwrapped.ok() || unwrapped->master != 0) return absl::OkStatus();
      return txn.Put(kFamily, KeyRow(issued.key_id()), event.SerializeAsString());
    }
    // A redacted issue record carries no key: a later record of the stream
    // re-wraps or destroys it.
    if (issued.wrapped_key().empty()) return absl::OkStatus();
    // Issued before its customer's erasure: never opened, and never parked
    // (a record that does not unwrap goes to the dead-letter topic, wrapped
    // key and all).
    if (IssuedBeforeErasure(event)) return absl::OkStatus();
    CRM_ASSIGN_OR_RETURN(Unwrapped unwrapped, Unwrap(event));
    Entry& entry = unwrapped.entry;
    std::lock_guard<std::mutex> lock(mu_);
    if (ErasedLocked(entry)) return absl::OkStatus();  // issued before the erasure
    crm::v1::EventEnvelope row = event;
    if (unwrapped.master != 0) {
      // An old wrapping (a topic not compacted yet): stored under the
      // current master key, so the row outlives the previous one.
      issued.set_wrapped_key(Wrap(entry.key, issued.key_id()));
      row.mutable_payload()->PackFrom(issued);
    }
    CRM_RETURN_IF_ERROR(txn.Put(kFamily, KeyRow(issued.key_id()), row.SerializeAsString()));
    CRM_RETURN_IF_ERROR(
        txn.Put(kFamily, CustomerRow(entry.customer_id, issued.key_id()), issued.issuer()));
    if (!by_customer_.Contains(entry.customer_id)) {
      by_customer_.Put(entry.customer_id, issued.key_id());
    }
    keys_.Put(issued.key_id(), std::move(entry));
    return absl::OkStatus();
  }
  if (payload.Is<crm::v1::DataKeyDestroyed>()) {
    crm::v1::DataKeyDestroyed destroyed;
    // Refused, to be parked: read as empty, it would destroy no key.
    if (!payload.UnpackTo(&destroyed) || destroyed.key_id().empty()) {
      return absl::InvalidArgumentError(absl::StrCat("bad DataKeyDestroyed on ", event.stream()));
    }
    CRM_RETURN_IF_ERROR(txn.Delete(kFamily, KeyRow(destroyed.key_id())));
    CRM_RETURN_IF_ERROR(
        txn.Delete(kFamily, CustomerRow(destroyed.customer_id(), destroyed.key_id())));
    // Whether or not the row is here now: one deleted earlier by another
    // path (a batch that failed after its own destruction was written, a
    // start that ended a written-back key) may have left its old value.
    CRM_RETURN_IF_ERROR(
        txn.Put(kFamily, PurgeRow(destroyed.key_id()), event.source() == issuer_ ? kOwnKey : ""));
    std::lock_guard<std::mutex> lock(mu_);
    ++drops_;
    keys_.Erase(destroyed.key_id());
    if (const std::string* id = by_customer_.Find(destroyed.customer_id());
        id != nullptr && *id == destroyed.key_id()) {
      by_customer_.Erase(destroyed.customer_id());
    }
    return absl::OkStatus();
  }
  if (payload.Is<crm::v1::CustomersMerged>()) {
    crm::v1::CustomersMerged merged;
    if (!payload.UnpackTo(&merged) || merged.merged_lead_id().empty()) {
      return absl::InvalidArgumentError("bad CustomersMerged");
    }
    CRM_RETURN_IF_ERROR(
        txn.Put(kFamily, MergeRow(merged.merged_lead_id()), merged.SerializeAsString()));
    // A link read after the survivor's erasure (the eraser had not seen
    // it, or this service reads the partitions in another order): erased
    // as a service that read the link first erases it with the survivor,
    // so every service agrees whatever the order. MergeLeads refuses an
    // erased survivor; a merge made after the erasure raced it.
    std::vector<std::string> late;
    absl::Time at;
    {
      std::lock_guard<std::mutex> lock(mu_);
      LinkLocked(merged.merged_customer_id(), merged.survivor_customer_id());
      if (auto e = erased_.find(merged.survivor_customer_id()); e != erased_.end()) {
        at = e->second;
        late = WithMergedLocked(merged.merged_customer_id());
      }
    }
    if (late.empty()) return absl::OkStatus();
    return ApplyErasure(late, at, event, txn);
  }
  if (payload.Is<crm::v1::CustomerErased>()) {
    crm::v1::CustomerErased erased;
    // Refused, to be parked: read as empty, it would erase nobody.
    if (!payload.UnpackTo(&erased) || erased.customer_id().empty()) {
      return absl::InvalidArgumentError(absl::StrCat("bad CustomerErased on ", event.stream()));
    }
    // With every customer merged into it that this service knows of,
    // whether or not the eraser knew of them.
    std::vector<std::string> customers;
    {
      std::lock_guard<std::mutex> lock(mu_);
      customers = WithMergedLocked(erased.customer_id());
    }
    return ApplyErasure(customers, FromProtoTimestamp(event.occurred_at()), event, txn);
  }
  return absl::InvalidArgumentError(
      absl::StrCat("not a key record: ", payload.type_url(), " on ", event.stream()));
}

std::vector<std::string> KeyVault::WithMerged(const std::string& customer_id) const {
  std::lock_guard<std::mutex> lock(mu_);
  return WithMergedLocked(customer_id);
}

std::vector<std::string> KeyVault::WithMergedLocked(const std::string& customer_id) const {
  std::vector<std::string> customers = {customer_id};
  // A hash set, not a search of the list: callers can fan many customers
  // into one, and every opening of sealed data waits on mu_.
  absl::flat_hash_set<std::string> seen = {customer_id};
  for (size_t i = 0; i < customers.size(); ++i) {
    auto it = merged_into_.find(customers[i]);
    if (it == merged_into_.end()) continue;
    for (const auto& m : it->second) {
      if (seen.insert(m).second) customers.push_back(m);
    }
  }
  return customers;
}

absl::Status KeyVault::ApplyErasure(const std::vector<std::string>& customers, absl::Time erased_at,
                                    const crm::v1::EventEnvelope& record, ProjectionTxn& txn) {
  EventContext ctx;
  ctx.actor = issuer_;
  ctx.correlation_id = record.correlation_id();
  ctx.causation_id = record.event_id();
  ctx.occurred_at = absl::Now();
  for (const std::string& customer_id : customers) {
    CRM_ASSIGN_OR_RETURN(const std::vector<HeldKey> held, KeysErasedAt(customer_id, erased_at));
    for (const auto& w : ErasureWrites(customer_id, erased_at, held)) {
      CRM_RETURN_IF_ERROR(w.erase ? txn.Delete(w.family, w.key)
                                  : txn.Put(w.family, w.key, w.value));
    }
    CRM_RETURN_IF_ERROR(DestroyOwn(Forget(customer_id, erased_at, held), customer_id, ctx));
  }
  return absl::OkStatus();
}

absl::StatusOr<KeyVault::Erasure> KeyVault::EraseCustomer(const std::string& customer_id,
                                                          const std::string& reason,
                                                          const EventContext& ctx) {
  if (store_ == nullptr) return absl::FailedPreconditionError("this service cannot erase");
  std::vector<std::string> customers;
  {
    std::lock_guard<std::mutex> lock(mu_);
    customers = WithMergedLocked(customer_id);
  }
  if (before_erasure_write_for_test_) before_erasure_write_for_test_();
  Erasure out;
  absl::flat_hash_set<std::string> done;
  // A merge into the customer can be linked while this runs (the key
  // reader applies merge records on its own thread) and find it not erased
  // yet: its customers are erased in a further round, with this one.
  while (!customers.empty()) {
    CRM_RETURN_IF_ERROR(EraseRound(customer_id, customers, reason, ctx, out));
    done.insert(customers.begin(), customers.end());
    std::lock_guard<std::mutex> lock(mu_);
    customers = WithMergedLocked(customer_id);
    std::erase_if(customers, [&](const std::string& c) { return done.contains(c); });
  }
  RequestPurge();
  log::Info("customer erased", {{"customer_id", customer_id},
                                {"merged_customers", absl::StrCat(done.size() - 1)},
                                {"keys", absl::StrCat(out.keys_destroyed)}});
  return out;
}

absl::Status KeyVault::EraseRound(const std::string& customer_id,
                                  const std::vector<std::string>& customers,
                                  const std::string& reason, const EventContext& ctx,
                                  Erasure& out) {
  EventContext erase_ctx = ctx;
  erase_ctx.source = issuer_;
  std::vector<std::vector<HeldKey>> held;
  for (const auto& c : customers) {
    CRM_ASSIGN_OR_RETURN(auto keys, KeysErasedAt(c, ctx.occurred_at));
    held.push_back(std::move(keys));
  }
  std::vector<AppendRequest> appends;
  for (size_t i = 0; i < customers.size(); ++i) {
    const std::string stream = EraseStream(issuer_, customers[i]);
    int64_t version = EventStore::kNoStream;
    if (auto state = store_->LoadState(stream); state.ok()) {
      version = state->version;
    } else if (!absl::IsNotFound(state.status())) {
      return state.status();
    }
    crm::v1::CustomerErased erased;
    erased.set_customer_id(customers[i]);
    erased.set_reason(reason);
    if (customers[i] != customer_id) erased.set_erased_with_customer_id(customer_id);
    AppendRequest& append = appends.emplace_back();
    append.stream = stream;
    append.expected_version = version;
    append.events.push_back(MakeEnvelope(erased, customers[i], erase_ctx));
    append.projection_writes = ErasureWrites(customers[i], ctx.occurred_at, held[i]);
  }
  // The keys this service issued are destroyed in the same write, and
  // their issue records, the one place wrapped keys are kept for good, lose
  // the wrapped key before it. A crash or a refusal in between leaves the
  // key rows, so a retry of the erasure finds the keys and ends it; a
  // destruction written apart, after the rows were gone, could be lost
  // with the wrapped key still in the log.
  std::vector<crm::v1::EventEnvelope> redacted;
  for (size_t i = 0; i < customers.size(); ++i) {
    for (const HeldKey& h : held[i]) {
      if (!h.own) continue;
      CRM_ASSIGN_OR_RETURN(auto events, store_->ReadStream(KeyStream(h.key_id)));
      auto destruction = OwnKeyDestruction(events, h.key_id, customers[i], issuer_, ctx, redacted);
      if (destruction.has_value()) appends.push_back(*std::move(destruction));
    }
  }
  CRM_RETURN_IF_ERROR(store_->RedactEvents(redacted));
  // One synced write for all of them, or none: a conflict (an erasure of
  // one of them meanwhile) fails the call with ABORTED and a retry erases
  // them all.
  CRM_RETURN_IF_ERROR(store_->AppendAll(std::move(appends)).status());
  for (size_t i = 0; i < customers.size(); ++i) {
    Forget(customers[i], ctx.occurred_at, held[i]);
    out.keys_destroyed += static_cast<int>(held[i].size());
    if (customers[i] != customer_id) out.merged_customer_ids.push_back(customers[i]);
  }
  return absl::OkStatus();
}

namespace {

SubscriberOptions KeyTopicOptions(const std::string& brokers, const std::string& group_id) {
  SubscriberOptions options;
  options.brokers = brokers;
  options.group_id = group_id;
  options.topics = {kKeysTopic};
  options.every_partition = true;
  // A record no vault can open is kept there to be re-driven (e.g. once the
  // master key it needs is configured), not only logged.
  options.dead_letter_topic = kDeadLetterTopic;
  return options;
}

}  // namespace

KeySubscriber::KeySubscriber(Database& db, KeyVault& vault, const std::string& brokers,
                             const std::string& group_id)
    : records_(vault, nullptr), subscriber_(db, records_, KeyTopicOptions(brokers, group_id)) {}

absl::StatusOr<std::unique_ptr<KeySubscriber>> KeySubscriber::StartBefore(
    Database& db, KeyVault& vault, SubscriberOptions& domain) {
  // Every replica reads every key record: the group only names the reader.
  auto keys = std::make_unique<KeySubscriber>(db, vault, domain.brokers,
                                              absl::StrCat(domain.group_id, "-keys"));
  CRM_RETURN_IF_ERROR(keys->Start());
  domain.start_when = [k = keys.get()] { return k->reached_start(); };
  return keys;
}

}  // namespace crm::pii
