#include "libs/common/pii/key_vault.h"

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "crm/v1/pii.pb.h"
#include "libs/common/ids.h"
#include "libs/common/key_codec.h"
#include "libs/common/log.h"
#include "libs/common/status_macros.h"

namespace crm::pii {
namespace {

std::string KeyRow(absl::string_view key_id) { return absl::StrCat("k", key_id); }
std::string ErasedRow(absl::string_view customer_id) { return absl::StrCat("e", customer_id); }
std::string KeyStream(absl::string_view key_id) { return absl::StrCat(kKeyStreamPrefix, key_id); }

std::string EncodeTime(absl::Time t) {
  return BigEndian64(static_cast<uint64_t>(absl::ToUnixMicros(t)));
}

}  // namespace

KeyVault::KeyVault(Token, Database& db, EventStore* store, const Key& master, std::string issuer)
    : db_(db),
      store_(store),
      wrap_key_(DeriveKey(master, "crm pii key wrapping v1")),
      blind_index_key_(DeriveKey(master, "crm pii blind index v1")),
      issuer_(std::move(issuer)) {}

absl::StatusOr<std::unique_ptr<KeyVault>> KeyVault::Open(Database& db, EventStore* store,
                                                         const Key& master, std::string issuer) {
  if (db.Family(kFamily) == nullptr) {
    return absl::InternalError(absl::StrCat("database has no column family ", kFamily));
  }
  auto vault = std::make_unique<KeyVault>(Token{}, db, store, master, std::move(issuer));
  CRM_RETURN_IF_ERROR(vault->Load());
  return vault;
}

absl::Status KeyVault::Load() {
  auto it = db_.NewIterator(kFamily);
  std::lock_guard<std::mutex> lock(mu_);
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    const absl::string_view row(it->key().data(), it->key().size());
    const absl::string_view value(it->value().data(), it->value().size());
    if (absl::StartsWith(row, "e") && value.size() == 8) {
      erased_[row.substr(1)] = absl::FromUnixMicros(static_cast<int64_t>(ReadBigEndian64(value)));
    } else if (absl::StartsWith(row, "k")) {
      crm::v1::EventEnvelope issued;
      if (!issued.ParseFromArray(value.data(), static_cast<int>(value.size()))) {
        return absl::DataLossError(absl::StrCat("corrupt key row ", row));
      }
      // A key that does not unwrap was stored under another master key: a
      // configuration error that must stop the service, not hide its data.
      CRM_ASSIGN_OR_RETURN(Entry entry, Unwrap(issued));
      const std::string key_id(row.substr(1));
      by_customer_[entry.customer_id].push_back(key_id);
      keys_.emplace(key_id, std::move(entry));
    }
  }
  return FromRocks(it->status());
}

absl::StatusOr<KeyVault::Entry> KeyVault::Unwrap(const crm::v1::EventEnvelope& event) const {
  crm::v1::DataKeyIssued issued;
  if (!event.payload().UnpackTo(&issued)) return absl::InvalidArgumentError("not a DataKeyIssued");
  auto raw = pii::Open(wrap_key_, issued.wrapped_key(), issued.key_id());
  if (!raw.ok() || raw->size() != kKeySize) {
    return absl::DataLossError(
        absl::StrCat("data key ", issued.key_id(), " does not unwrap with this master key"));
  }
  Entry entry;
  entry.customer_id = issued.customer_id();
  std::copy(raw->begin(), raw->end(), entry.key.begin());
  entry.issued_at = FromProtoTimestamp(event.occurred_at());
  entry.own = issued.issuer() == issuer_;
  return entry;
}

KeyVault::Sealing KeyVault::KeyFor(const std::string& customer_id, const EventContext& ctx) const {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (auto it = by_customer_.find(customer_id); it != by_customer_.end() && !it->second.empty()) {
      const std::string& key_id = it->second.front();
      return {{key_id, keys_.at(key_id).key}, std::nullopt};
    }
  }
  Sealing out;
  out.key.key_id = absl::BytesToHexString(RandomBytes(8));
  out.key.key = RandomKey();
  crm::v1::DataKeyIssued issued;
  issued.set_key_id(out.key.key_id);
  issued.set_customer_id(customer_id);
  issued.set_wrapped_key(
      Seal(wrap_key_,
           absl::string_view(reinterpret_cast<const char*>(out.key.key.data()), out.key.key.size()),
           out.key.key_id));
  issued.set_issuer(issuer_);
  EventContext issue_ctx = ctx;
  issue_ctx.source = issuer_;
  // Erasure compares times of issue: a key is as old as its creation, not
  // as the (possibly earlier) business time of the data it seals.
  issue_ctx.occurred_at = absl::Now();
  AppendRequest& append = out.issue.emplace();
  append.stream = KeyStream(out.key.key_id);
  append.expected_version = EventStore::kNoStream;
  append.events.push_back(MakeEnvelope(issued, customer_id, issue_ctx));
  append.projection_writes.push_back(
      {kFamily, KeyRow(out.key.key_id), append.events.back().SerializeAsString()});
  return out;
}

void KeyVault::Issued(const std::string& customer_id, const DataKey& key) {
  std::lock_guard<std::mutex> lock(mu_);
  if (keys_.contains(key.key_id)) return;
  keys_.emplace(key.key_id, Entry{customer_id, key.key, absl::Now(), /*own=*/true});
  by_customer_[customer_id].push_back(key.key_id);
}

absl::StatusOr<DataKey> KeyVault::EnsureKey(const std::string& customer_id,
                                            const EventContext& ctx) {
  Sealing sealing = KeyFor(customer_id, ctx);
  if (sealing.issue.has_value()) {
    if (store_ == nullptr) return absl::FailedPreconditionError("this service issues no keys");
    CRM_RETURN_IF_ERROR(store_->Append(std::move(*sealing.issue)).status());
    Issued(customer_id, sealing.key);
  }
  return sealing.key;
}

bool KeyVault::Erased(const std::string& customer_id) const {
  std::lock_guard<std::mutex> lock(mu_);
  return erased_.contains(customer_id);
}

std::optional<Key> KeyVault::Find(absl::string_view key_id) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = keys_.find(key_id);
  if (it == keys_.end()) return std::nullopt;
  return it->second.key;
}

std::vector<std::string> KeyVault::Forget(const std::string& customer_id, absl::Time erased_at) {
  std::lock_guard<std::mutex> lock(mu_);
  absl::Time& at = erased_[customer_id];
  at = std::max(at, erased_at);
  std::vector<std::string> own;
  auto it = by_customer_.find(customer_id);
  if (it == by_customer_.end()) return own;
  for (const auto& key_id : it->second) {
    auto k = keys_.find(key_id);
    if (k == keys_.end()) continue;
    if (k->second.own) own.push_back(key_id);
    keys_.erase(k);
  }
  by_customer_.erase(it);
  return own;
}

std::vector<ProjectionWrite> KeyVault::ErasureWrites(
    const std::string& customer_id, absl::Time erased_at,
    const std::vector<std::string>& key_ids) const {
  std::vector<ProjectionWrite> writes;
  writes.push_back({kFamily, ErasedRow(customer_id), EncodeTime(erased_at)});
  for (const auto& key_id : key_ids) writes.push_back({kFamily, KeyRow(key_id), "", true});
  return writes;
}

absl::Status KeyVault::DestroyOwn(const std::vector<std::string>& key_ids,
                                  const std::string& customer_id, const EventContext& ctx) {
  if (store_ == nullptr) return absl::OkStatus();
  EventContext destroy_ctx = ctx;
  destroy_ctx.source = issuer_;
  for (const auto& key_id : key_ids) {
    crm::v1::DataKeyDestroyed destroyed;
    destroyed.set_key_id(key_id);
    destroyed.set_customer_id(customer_id);
    AppendRequest append;
    append.stream = KeyStream(key_id);
    append.expected_version = 1;
    append.events.push_back(MakeEnvelope(destroyed, customer_id, destroy_ctx));
    append.projection_writes.push_back({kFamily, KeyRow(key_id), "", true});
    auto appended = store_->Append(std::move(append));
    // ABORTED: destroyed before (the stream is past version 1).
    if (!appended.ok() && !absl::IsAborted(appended.status())) return appended.status();
    // The issue record is the one place the wrapped key is kept for good.
    CRM_ASSIGN_OR_RETURN(auto events, store_->ReadStream(KeyStream(key_id), 1));
    if (events.empty()) continue;
    crm::v1::EventEnvelope redacted = events.front();
    crm::v1::DataKeyIssued issued;
    if (redacted.payload().UnpackTo(&issued) && !issued.wrapped_key().empty()) {
      issued.clear_wrapped_key();
      redacted.mutable_payload()->PackFrom(issued);
      CRM_RETURN_IF_ERROR(store_->RedactEvent(redacted));
    }
  }
  return absl::OkStatus();
}

absl::Status KeyVault::ApplyRecord(const crm::v1::EventEnvelope& event, ProjectionTxn& txn) {
  const auto& payload = event.payload();
  if (payload.Is<crm::v1::DataKeyIssued>()) {
    CRM_ASSIGN_OR_RETURN(Entry entry, Unwrap(event));
    crm::v1::DataKeyIssued issued;
    payload.UnpackTo(&issued);
    std::lock_guard<std::mutex> lock(mu_);
    if (keys_.contains(issued.key_id())) return absl::OkStatus();
    if (auto e = erased_.find(entry.customer_id);
        e != erased_.end() && entry.issued_at <= e->second) {
      return absl::OkStatus();  // issued before the customer was erased
    }
    CRM_RETURN_IF_ERROR(txn.Put(kFamily, KeyRow(issued.key_id()), event.SerializeAsString()));
    by_customer_[entry.customer_id].push_back(issued.key_id());
    keys_.emplace(issued.key_id(), std::move(entry));
    return absl::OkStatus();
  }
  if (payload.Is<crm::v1::DataKeyDestroyed>()) {
    crm::v1::DataKeyDestroyed destroyed;
    payload.UnpackTo(&destroyed);
    CRM_RETURN_IF_ERROR(txn.Delete(kFamily, KeyRow(destroyed.key_id())));
    std::lock_guard<std::mutex> lock(mu_);
    keys_.erase(destroyed.key_id());
    if (auto it = by_customer_.find(destroyed.customer_id()); it != by_customer_.end()) {
      std::erase(it->second, destroyed.key_id());
    }
    return absl::OkStatus();
  }
  if (payload.Is<crm::v1::CustomerErased>()) {
    crm::v1::CustomerErased erased;
    payload.UnpackTo(&erased);
    const absl::Time at = FromProtoTimestamp(event.occurred_at());
    std::vector<std::string> held;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (auto it = by_customer_.find(erased.customer_id()); it != by_customer_.end()) {
        held = it->second;
      }
    }
    for (const auto& w : ErasureWrites(erased.customer_id(), at, held)) {
      CRM_RETURN_IF_ERROR(w.erase ? txn.Delete(w.family, w.key)
                                  : txn.Put(w.family, w.key, w.value));
    }
    const std::vector<std::string> own = Forget(erased.customer_id(), at);
    EventContext ctx;
    ctx.actor = issuer_;
    ctx.correlation_id = event.correlation_id();
    ctx.causation_id = event.event_id();
    ctx.occurred_at = absl::Now();
    return DestroyOwn(own, erased.customer_id(), ctx);
  }
  return absl::InvalidArgumentError(
      absl::StrCat("not a key record: ", payload.type_url(), " on ", event.stream()));
}

absl::StatusOr<int> KeyVault::EraseCustomer(const std::string& customer_id,
                                            const std::string& reason, const EventContext& ctx) {
  if (store_ == nullptr) return absl::FailedPreconditionError("this service cannot erase");
  const std::string stream = absl::StrCat(kEraseStreamPrefix, customer_id);
  EventContext erase_ctx = ctx;
  erase_ctx.source = issuer_;
  int64_t version = EventStore::kNoStream;
  if (auto state = store_->LoadState(stream); state.ok()) {
    version = state->version;
  } else if (!absl::IsNotFound(state.status())) {
    return state.status();
  }
  std::vector<std::string> held;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (auto it = by_customer_.find(customer_id); it != by_customer_.end()) held = it->second;
  }
  crm::v1::CustomerErased erased;
  erased.set_customer_id(customer_id);
  erased.set_reason(reason);
  AppendRequest append;
  append.stream = stream;
  append.expected_version = version;
  append.events.push_back(MakeEnvelope(erased, customer_id, erase_ctx));
  append.projection_writes = ErasureWrites(customer_id, ctx.occurred_at, held);
  CRM_RETURN_IF_ERROR(store_->Append(std::move(append)).status());
  const std::vector<std::string> own = Forget(customer_id, ctx.occurred_at);
  CRM_RETURN_IF_ERROR(DestroyOwn(own, customer_id, ctx));
  log::Info("customer erased", {{"customer_id", customer_id}, {"keys", absl::StrCat(held.size())}});
  return static_cast<int>(held.size());
}

}  // namespace crm::pii
