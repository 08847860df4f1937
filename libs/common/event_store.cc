#include "libs/common/event_store.h"

#include <algorithm>
#include <limits>
#include <utility>

#include "absl/cleanup/cleanup.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "libs/common/envelope.h"
#include "libs/common/ids.h"
#include "libs/common/key_codec.h"
#include "libs/common/sorted_rows.h"
#include "libs/common/status_macros.h"

namespace crm {
namespace {

constexpr char kEvents[] = "events";                      // stream \0 version -> envelope
constexpr const char* kState = EventStore::kStateFamily;  // stream -> version + state
constexpr char kLog[] = "log";                            // position -> events key
// One row, kRelayedKey -> the first log position the broker has not
// acknowledged yet: the log from there on is the outbox. (Stores written
// before held a copy of each unrelayed event here, keyed by position.)
constexpr char kOutbox[] = "outbox";
constexpr char kRequests[] = "requests";  // request key -> result
constexpr char kRelayedKey[] = "relayed";
// Below this log position the outbox holds a refill (RequeueLog): events
// published before, not a backlog the admission bound is for.
constexpr char kRefillKey[] = "refill_below";

std::string EventKey(absl::string_view stream, int64_t version) {
  std::string k = PrefixKey(stream);
  AppendBigEndian64(&k, static_cast<uint64_t>(version));
  return k;
}

// first_version (its top bit set when a fingerprint follows), last_version,
// the request's fingerprint, the response.
constexpr uint64_t kFingerprinted = uint64_t{1} << 63;
constexpr size_t kFingerprintBytes = 32;

std::string EncodeResult(const AppendResult& r, absl::string_view fingerprint) {
  const bool with = fingerprint.size() == kFingerprintBytes;
  std::string s = BigEndian64(static_cast<uint64_t>(r.first_version) | (with ? kFingerprinted : 0));
  AppendBigEndian64(&s, r.last_version);
  if (with) s.append(fingerprint.data(), fingerprint.size());
  s.append(r.response);
  return s;
}

struct StoredResult {
  absl::StatusOr<AppendResult> result;
  std::string fingerprint;  // empty: stored without one
};

absl::StatusOr<StoredResult> DecodeResult(absl::string_view s) {
  if (s.size() < 16) return absl::DataLossError("corrupt idempotency record");
  StoredResult stored;
  AppendResult r;
  const uint64_t first = ReadBigEndian64(s.substr(0, 8));
  r.first_version = static_cast<int64_t>(first & ~kFingerprinted);
  r.last_version = static_cast<int64_t>(ReadBigEndian64(s.substr(8, 8)));
  s.remove_prefix(16);
  if ((first & kFingerprinted) != 0) {
    if (s.size() < kFingerprintBytes) return absl::DataLossError("corrupt idempotency record");
    stored.fingerprint = std::string(s.substr(0, kFingerprintBytes));
    s.remove_prefix(kFingerprintBytes);
  }
  r.response = std::string(s);
  r.replayed = true;
  stored.result = std::move(r);
  return stored;
}

// A request key's stored result, or INVALID_ARGUMENT when the request_id
// was used for a different request.
absl::StatusOr<AppendResult> Replay(const StoredResult& stored, absl::string_view fingerprint) {
  if (!stored.fingerprint.empty() && !fingerprint.empty() && stored.fingerprint != fingerprint) {
    return absl::InvalidArgumentError(
        "request_id: already used for a different request; a new request needs a new "
        "request_id");
  }
  return stored.result;
}

absl::Status Put(Database& db, rocksdb::WriteBatch& batch, absl::string_view family,
                 absl::string_view key, absl::string_view value) {
  CRM_ASSIGN_OR_RETURN(auto* cf, db.RequireFamily(family));
  return FromRocks(batch.Put(cf, rocksdb::Slice(key.data(), key.size()),
                             rocksdb::Slice(value.data(), value.size())));
}

// Bytes of the WriteBatch for `requests`, a little over rather than
// under: an import chunk's batch is megabytes, and growing it by doubling
// copied and page-faulted it once more (~4% of an import's CPU).
size_t BatchBytes(const std::vector<AppendRequest>& requests) {
  constexpr size_t kRow = 24;  // a row's tag, family, lengths and slack
  size_t bytes = 12;           // the batch header
  for (const auto& r : requests) {
    bytes += r.stream.size() + r.state.size() + kRow;
    bytes += r.request_key.size() + r.response.size() + kRow;
    for (const auto& w : r.projection_writes) bytes += w.key.size() + w.value.size() + kRow;
    for (const auto& e : r.events) {
      // The stamped event (stream, version, time added) and its log row.
      bytes += e.ByteSizeLong() + 3 * r.stream.size() + 48 + 2 * kRow;
    }
  }
  return bytes;
}

}  // namespace

absl::StatusOr<std::unique_ptr<EventStore>> EventStore::Open(
    const std::string& path, const std::vector<std::string>& projection_families,
    const std::vector<std::string>& retired_families) {
  std::vector<std::string> families = {kEvents, kState, kLog, kOutbox, kRequests};
  families.insert(families.end(), projection_families.begin(), projection_families.end());
  DatabaseOptions tuning;
  tuning.retired_families = retired_families;
  CRM_ASSIGN_OR_RETURN(auto db, Database::Open(path, families, tuning));
  uint64_t next = 1;
  auto it = db->NewIterator(kLog);
  it->SeekToLast();
  if (it->Valid()) next = ReadBigEndian64(it->key().ToString()) + 1;
  CRM_RETURN_IF_ERROR(FromRocks(it->status()));
  CRM_ASSIGN_OR_RETURN(auto cursor, db->Get(kOutbox, kRelayedKey));
  uint64_t relayed = next;
  if (cursor.has_value()) {
    if (cursor->size() != 8) return absl::DataLossError("corrupt outbox cursor");
    relayed = ReadBigEndian64(*cursor);
  } else {
    // A new store, or one whose outbox held copies of the unrelayed events:
    // the first of them is where relaying goes on. The cursor is written
    // now, so that a store that has relayed nothing yet is never taken for
    // one that relayed everything.
    auto* cf = db->Family(kOutbox);
    rocksdb::WriteBatch batch;
    // Row by row: a range deletion would share the memtable insert hint
    // (database.cc) between the range and point tables, which RocksDB
    // does not support.
    auto out = db->NewIterator(kOutbox);
    for (out->SeekToFirst(); out->Valid(); out->Next()) {
      if (out->key().size() != 8) continue;
      relayed = std::min(relayed, ReadBigEndian64(out->key().ToString()));
      CRM_RETURN_IF_ERROR(FromRocks(batch.Delete(cf, out->key())));
    }
    CRM_RETURN_IF_ERROR(FromRocks(out->status()));
    CRM_RETURN_IF_ERROR(FromRocks(batch.Put(cf, kRelayedKey, BigEndian64(relayed))));
    CRM_RETURN_IF_ERROR(db->Write(&batch, /*sync=*/true));
  }
  CRM_ASSIGN_OR_RETURN(auto refill, db->Get(kOutbox, kRefillKey));
  if (refill.has_value() && refill->size() != 8) return absl::DataLossError("corrupt refill mark");
  // The relay may have passed positions that failed appends took and never
  // wrote; new events must land at or after its cursor, or it skips them.
  next = std::max(next, relayed);
  auto store = std::make_unique<EventStore>(Token{}, std::move(db), next, relayed);
  if (refill.has_value()) store->refill_below_.store(ReadBigEndian64(*refill));
  return store;
}

// Concurrent appends meet in RocksDB's write group, which shares one WAL
// fsync among them. Queuing them here as well, so that one caller writes
// everyone's rows in one sorted batch, measured no faster (CaptureLead
// 5.1-5.3k req/s either way; two batches in flight synced 2.7x as often):
// the cost of an append is in its own rows, not in the grouping.
absl::StatusOr<AppendResult> EventStore::Append(AppendRequest req) {
  std::vector<AppendRequest> one;
  one.push_back(std::move(req));
  CRM_ASSIGN_OR_RETURN(auto results, AppendBatch(std::move(one)));
  return std::move(results.front());
}

absl::StatusOr<std::vector<absl::StatusOr<AppendResult>>> EventStore::AppendBatch(
    std::vector<AppendRequest> requests, Admission admission) {
  return Write(std::move(requests), /*all_or_nothing=*/false, admission);
}

absl::StatusOr<std::vector<AppendResult>> EventStore::AppendAll(
    std::vector<AppendRequest> requests) {
  CRM_ASSIGN_OR_RETURN(auto results, Write(std::move(requests), /*all_or_nothing=*/true));
  std::vector<AppendResult> out;
  out.reserve(results.size());
  for (auto& r : results) out.push_back(*std::move(r));
  return out;
}

absl::Status EventStore::Admit(uint64_t events, Admission admission) const {
  if (admission == Admission::kUnlimited) return absl::OkStatus();
  const uint64_t limit = admission == Admission::kBestEffort ? outbox_limit_ / 2 : outbox_limit_;
  // The events to come count too, so one large batch does not pass the
  // bound by its size (an empty backlog takes any batch, or one larger
  // than the bound could never go). Concurrent calls can still each pass
  // before either takes its positions: the bound is exceeded by at most
  // what those calls carry.
  if (const uint64_t waiting = BacklogSize();
      waiting >= limit || (waiting > 0 && events > limit - waiting)) {
    return absl::ResourceExhaustedError(absl::StrCat("outbox holds ", waiting,
                                                     " unpublished events (limit ", limit,
                                                     "): the broker is unreachable; retry later"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<absl::StatusOr<AppendResult>>> EventStore::Write(
    std::vector<AppendRequest> requests, bool all_or_nothing, Admission admission) {
  // Each request key split once: results are stored under the key without
  // the request's fingerprint.
  std::vector<RequestKeyParts> request_keys;
  request_keys.reserve(requests.size());
  std::vector<absl::string_view> keys;
  keys.reserve(requests.size() * 2);
  for (const auto& r : requests) {
    request_keys.push_back(SplitRequestKey(r.request_key));
    keys.push_back(r.stream);
    keys.push_back(request_keys.back().key);
  }
  auto guard = locks_.Lock(keys);
  // The batch's first log position stays in unwritten_ until the write is
  // over, so StablePosition never passes positions still to be written.
  std::optional<uint64_t> first_position;
  auto next_position = [&]() -> uint64_t {
    if (first_position.has_value()) return next_position_.fetch_add(1);
    std::lock_guard<std::mutex> lock(positions_mu_);
    first_position = next_position_.fetch_add(1);
    unwritten_.insert(*first_position);
    return *first_position;
  };
  absl::Cleanup written = [&] {
    if (!first_position.has_value()) return;
    std::lock_guard<std::mutex> lock(positions_mu_);
    unwritten_.erase(unwritten_.find(*first_position));
  };

  // Each stream's version and each request key's result: as stored, then
  // as this batch decides them, ahead of the database.
  absl::flat_hash_map<std::string, int64_t> versions;
  absl::flat_hash_map<std::string, absl::StatusOr<StoredResult>> seen_keys;
  absl::flat_hash_map<std::string, absl::Status> damaged;
  // Rows go to the batch sorted: an import chunk's index rows are scattered
  // over their families, and unsorted they cost a quarter of the import in
  // memtable inserts.
  SortedRows rows;
  const size_t batch_bytes = BatchBytes(requests);
  rows.Reserve(requests.size() * 8, batch_bytes);
  auto put = [&](absl::string_view family, absl::string_view key,
                 absl::string_view value) -> absl::Status {
    CRM_ASSIGN_OR_RETURN(auto* cf, db_->RequireFamily(family));
    return rows.Put(cf, key, value);
  };
  const auto now = ToProtoTimestamp(absl::Now());
  std::vector<absl::StatusOr<AppendResult>> results;
  results.reserve(requests.size());
  bool any_write = false;
  uint64_t appended = 0;
  // Event keys, given log positions only once the batch is known to be
  // written: a batch written in none leaves no gap in the log.
  std::vector<std::string> event_keys;

  // What the database holds for the batch's streams and request keys, into
  // `versions` and `seen_keys` in two batched reads (an import chunk has
  // thousands of each).
  {
    absl::flat_hash_set<absl::string_view> streams, stored_keys;
    for (size_t i = 0; i < requests.size(); ++i) {
      if (!requests[i].stream.empty()) streams.insert(requests[i].stream);
      if (!requests[i].request_key.empty()) stored_keys.insert(request_keys[i].key);
    }
    const std::vector<std::string> stream_list(streams.begin(), streams.end());
    CRM_ASSIGN_OR_RETURN(auto states, db_->MultiGet(kState, stream_list));
    for (size_t i = 0; i < stream_list.size(); ++i) {
      if (!states[i].has_value()) continue;
      // A damaged stream fails its own requests, not the batch.
      absl::StatusOr<StreamState> state = DecodeState(stream_list[i], *states[i]);
      if (state.ok()) {
        versions[stream_list[i]] = state->version;
      } else {
        damaged.emplace(stream_list[i], state.status());
      }
    }
    const std::vector<std::string> key_list(stored_keys.begin(), stored_keys.end());
    CRM_ASSIGN_OR_RETURN(auto earlier, db_->MultiGet(kRequests, key_list));
    for (size_t i = 0; i < key_list.size(); ++i) {
      if (earlier[i].has_value()) seen_keys.emplace(key_list[i], DecodeResult(*earlier[i]));
    }
  }
  for (size_t n = 0; n < requests.size(); ++n) {
    AppendRequest& req = requests[n];
    if (req.stream.empty()) {
      results.push_back(absl::InvalidArgumentError("stream is empty"));
      continue;
    }
    if (req.events.empty() && req.request_key.empty()) {
      results.push_back(absl::InvalidArgumentError("append without events"));
      continue;
    }
    const RequestKeyParts& request_key = request_keys[n];
    if (!req.request_key.empty()) {
      if (auto it = seen_keys.find(request_key.key); it != seen_keys.end()) {
        absl::StatusOr<AppendResult> replay =
            it->second.ok() ? Replay(*it->second, request_key.fingerprint) : it->second.status();
        if (replay.ok()) replay->replayed = true;
        results.push_back(std::move(replay));
        continue;
      }
    }
    if (auto it = damaged.find(req.stream); it != damaged.end()) {
      results.push_back(it->second);
      continue;
    }
    int64_t version = kNoStream;
    if (auto it = versions.find(req.stream); it != versions.end()) version = it->second;
    if (version != req.expected_version) {
      results.push_back(
          absl::AbortedError(absl::StrCat("version conflict on ", req.stream, ": expected ",
                                          req.expected_version, ", current ", version)));
      continue;
    }

    int64_t v = version;
    std::vector<std::string> encoded;
    encoded.reserve(req.events.size());
    for (auto& e : req.events) {
      e.set_stream(req.stream);
      e.set_stream_version(++v);
      *e.mutable_recorded_at() = now;
      encoded.push_back(e.SerializeAsString());
    }
    // An event the broker would refuse would stop the relay at it for good,
    // and every event after it with it: refused here, before it is stored.
    if (auto big = std::find_if(encoded.begin(), encoded.end(),
                                [](const std::string& b) { return b.size() > kMaxEventBytes; });
        big != encoded.end()) {
      results.push_back(absl::InvalidArgumentError(
          absl::StrCat("event ", req.events[big - encoded.begin()].type(), " on ", req.stream,
                       " is ", big->size(), " bytes, more than the ", kMaxEventBytes,
                       " a Kafka message may carry: shorten the request's text fields")));
      continue;
    }

    AppendResult result;
    result.first_version = version + 1;
    result.last_version = v;
    result.response = req.response;
    appended += req.events.size();
    for (size_t i = 0; i < encoded.size(); ++i) {
      event_keys.push_back(EventKey(req.stream, version + 1 + static_cast<int64_t>(i)));
      CRM_RETURN_IF_ERROR(put(kEvents, event_keys.back(), encoded[i]));
    }
    if (!req.events.empty()) {
      std::string state = BigEndian64(static_cast<uint64_t>(v));
      state.append(req.state);
      CRM_RETURN_IF_ERROR(put(kState, req.stream, state));
      versions[req.stream] = v;
    }
    for (const auto& w : req.projection_writes) {
      if (w.erase) {
        CRM_ASSIGN_OR_RETURN(auto* cf, db_->RequireFamily(w.family));
        CRM_RETURN_IF_ERROR(rows.Delete(cf, w.key));
      } else {
        CRM_RETURN_IF_ERROR(put(w.family, w.key, w.value));
      }
    }
    if (!req.request_key.empty()) {
      CRM_RETURN_IF_ERROR(
          put(kRequests, request_key.key, EncodeResult(result, request_key.fingerprint)));
      seen_keys[request_key.key] = StoredResult{result, std::string(request_key.fingerprint)};
    }
    any_write = true;
    results.push_back(std::move(result));
  }
  if (all_or_nothing) {
    for (const auto& r : results) {
      CRM_RETURN_IF_ERROR(r.status());
      // Writing the others would leave the replayed one's partners twice.
      if (r->replayed) return absl::AlreadyExistsError("request applied before: nothing written");
    }
  }
  // Admitted by what it appends, decided above without writing: a retry
  // answered from its stored result, or a request refused for its version,
  // adds nothing to the backlog and gets its own answer.
  if (appended > 0) CRM_RETURN_IF_ERROR(Admit(appended, admission));
  for (const auto& key : event_keys) {
    CRM_RETURN_IF_ERROR(put(kLog, BigEndian64(next_position()), key));
  }
  if (any_write) {
    rocksdb::WriteBatch batch(batch_bytes);
    CRM_RETURN_IF_ERROR(rows.AddTo(batch));
    rows = SortedRows();  // the batch has its own copy: not two through the sync
    CRM_RETURN_IF_ERROR(db_->Write(&batch, /*sync=*/true));
    appended_counter_.Inc(appended);
    // Written before the relay is woken: a relay that looked while the
    // positions still counted as unwritten would skip them and sleep.
    std::move(written).Invoke();
    std::lock_guard<std::mutex> lock(listener_mu_);
    if (listener_) listener_();
  }
  return results;
}

uint64_t EventStore::StablePosition() const {
  std::lock_guard<std::mutex> lock(positions_mu_);
  return unwritten_.empty() ? next_position_.load() : *unwritten_.begin();
}

absl::StatusOr<StreamState> EventStore::LoadState(const std::string& stream) const {
  CRM_ASSIGN_OR_RETURN(auto raw, db_->Get(kState, stream));
  if (!raw.has_value()) return absl::NotFoundError(absl::StrCat(stream, " not found"));
  return DecodeState(stream, *raw);
}

absl::StatusOr<StreamState> EventStore::DecodeState(absl::string_view stream,
                                                    absl::string_view row) {
  if (row.size() < 8) return absl::DataLossError(absl::StrCat("corrupt state of ", stream));
  StreamState s;
  s.version = static_cast<int64_t>(ReadBigEndian64(row));
  s.state = std::string(row.substr(8));
  return s;
}

absl::StatusOr<std::vector<crm::v1::EventEnvelope>> EventStore::ReadStream(
    const std::string& stream, int64_t from_version, size_t max_events) const {
  std::vector<crm::v1::EventEnvelope> out;
  const std::string prefix = PrefixKey(stream);
  auto it = db_->NewIterator(kEvents);
  for (it->Seek(EventKey(stream, from_version)); it->Valid() && out.size() < max_events;
       it->Next()) {
    if (!it->key().starts_with(prefix)) break;
    crm::v1::EventEnvelope e;
    if (!e.ParseFromArray(it->value().data(), static_cast<int>(it->value().size()))) {
      return absl::DataLossError(absl::StrCat("corrupt event in ", stream));
    }
    out.push_back(std::move(e));
  }
  CRM_RETURN_IF_ERROR(FromRocks(it->status()));
  return out;
}

absl::StatusOr<EventStore::CustomerEvents> EventStore::ReadCustomerEvents(
    const std::vector<std::string>& customer_ids, uint64_t after, ReplyBudget* budget) const {
  CustomerEvents out;
  std::vector<std::string> wanted;
  for (const auto& id : customer_ids) {
    if (!id.empty()) wanted.push_back(id);
  }
  if (wanted.empty()) return out;
  // Positions are handed out before their appends are written: a page that
  // passed one still being written, and ended after it, would lose it. So
  // the read stops at the first position not yet written, taken before the
  // iterator so that everything below it is in the iterator's view. An
  // append acknowledged before the read began holds a position below `end`,
  // maybe above one still being written: the read waits for those, as an
  // export that ended early would say it was complete.
  const uint64_t end = next_position_.load();
  uint64_t stable = StablePosition();
  for (const absl::Time give_up = absl::Now() + kStableWait; stable < end;
       stable = StablePosition()) {
    if (absl::Now() > give_up) {
      // A write stalled: the page ends below it and the reader goes on later.
      if (stable - 1 <= after) {
        return absl::UnavailableError(
            absl::StrCat("log position ", stable, " is still being written; retry"));
      }
      out.resume_after = stable - 1;
      break;
    }
    absl::SleepFor(absl::Milliseconds(1));
  }
  auto it = db_->NewIterator(kLog);
  auto* events = db_->Family(kEvents);
  std::string value;
  uint64_t last_taken = after;
  for (it->Seek(BigEndian64(after + 1)); it->Valid(); it->Next()) {
    const uint64_t position =
        ReadBigEndian64(absl::string_view(it->key().data(), it->key().size()));
    if (position >= stable) break;  // written after the read began, or stalled
    auto s = db_->raw()->Get(rocksdb::ReadOptions(), events, it->value(), &value);
    if (!s.ok()) return FromRocks(s);
    // Most events are about someone else: skip them without parsing.
    if (std::none_of(wanted.begin(), wanted.end(),
                     [&](const std::string& id) { return value.find(id) != std::string::npos; })) {
      continue;
    }
    crm::v1::EventEnvelope e;
    if (!e.ParseFromString(value)) {
      return absl::DataLossError(absl::StrCat("corrupt event at log key ", it->value().ToString()));
    }
    if (std::find(wanted.begin(), wanted.end(), e.customer_id()) == wanted.end()) continue;
    if (budget != nullptr && !budget->Take(value.size())) {
      out.resume_after = last_taken;
      return out;
    }
    last_taken = position;
    out.events.push_back(std::move(e));
  }
  CRM_RETURN_IF_ERROR(FromRocks(it->status()));
  return out;
}

absl::StatusOr<std::optional<std::string>> EventStore::FindResponse(
    const std::string& request_key) const {
  const RequestKeyParts parts = SplitRequestKey(request_key);
  CRM_ASSIGN_OR_RETURN(auto raw, db_->Get(kRequests, std::string(parts.key)));
  if (!raw.has_value()) return std::nullopt;
  CRM_ASSIGN_OR_RETURN(auto stored, DecodeResult(*raw));
  CRM_ASSIGN_OR_RETURN(auto result, Replay(stored, parts.fingerprint));
  return result.response;
}

absl::Status EventStore::ForEachResponse(
    absl::string_view prefix, const std::function<void(absl::string_view response)>& visit) const {
  auto it = db_->NewIterator(kRequests);
  for (it->Seek(rocksdb::Slice(prefix.data(), prefix.size()));
       it->Valid() && absl::StartsWith(View(it->key()), prefix); it->Next()) {
    CRM_ASSIGN_OR_RETURN(auto stored, DecodeResult(View(it->value())));
    if (stored.result.ok()) visit(stored.result->response);
  }
  return FromRocks(it->status());
}

absl::StatusOr<std::vector<OutboxEntry>> EventStore::ReadOutbox(uint64_t from_position, size_t max,
                                                                size_t max_bytes) const {
  // Read in chunks, so the byte bound holds before all `max` events are:
  // each chunk holds as many events as the bytes left fit at the average
  // size read so far (a few to begin with), so a backlog of large events
  // is not fetched 256 at a time past the bound.
  constexpr size_t kMaxChunk = 256;
  size_t chunk = 4;
  std::vector<OutboxEntry> out;
  size_t bytes = 0;
  auto it = db_->NewIterator(kLog);
  it->Seek(BigEndian64(std::max(from_position, relayed_.load())));
  while (it->Valid() && out.size() < max && bytes < max_bytes) {
    const size_t first = out.size();
    std::vector<std::string> keys;
    for (; it->Valid() && out.size() < max && keys.size() < chunk; it->Next()) {
      out.emplace_back().position = ReadBigEndian64(it->key().ToString());
      keys.push_back(it->value().ToString());
    }
    CRM_ASSIGN_OR_RETURN(auto values, db_->MultiGet(kEvents, keys));
    for (size_t i = 0; i < values.size(); ++i) {
      OutboxEntry& entry = out[first + i];
      if (bytes >= max_bytes) {  // the rest of the chunk waits for the next read
        out.resize(first + i);
        break;
      }
      if (!values[i].has_value() || !entry.envelope.ParseFromString(*values[i])) {
        return absl::DataLossError(
            absl::StrCat("corrupt or missing event at log position ", entry.position));
      }
      bytes += values[i]->size();
      entry.bytes = *std::move(values[i]);
    }
    if (bytes < max_bytes && !out.empty()) {
      const size_t average = std::max<size_t>(1, bytes / out.size());
      chunk = std::clamp<size_t>((max_bytes - bytes) / average, 1, kMaxChunk);
    }
  }
  CRM_RETURN_IF_ERROR(FromRocks(it->status()));
  return out;
}

absl::Status EventStore::StoreCursor(uint64_t position, bool sync) {
  rocksdb::WriteBatch batch;
  CRM_RETURN_IF_ERROR(Put(*db_, batch, kOutbox, kRelayedKey, BigEndian64(position)));
  CRM_RETURN_IF_ERROR(db_->Write(&batch, sync));
  relayed_.store(position);
  return absl::OkStatus();
}

absl::Status EventStore::MarkRelayed(uint64_t below) {
  std::lock_guard<std::mutex> lock(relayed_mu_);
  if (below <= relayed_.load()) return absl::OkStatus();
  // Not synced: losing it only re-publishes events, which subscribers
  // skip by stream version.
  return StoreCursor(below, /*sync=*/false);
}

absl::Status EventStore::RedactEvents(const std::vector<crm::v1::EventEnvelope>& redacted) {
  if (redacted.empty()) return absl::OkStatus();
  rocksdb::WriteBatch batch;
  for (const auto& event : redacted) {
    const std::string key = EventKey(event.stream(), event.stream_version());
    CRM_ASSIGN_OR_RETURN(auto stored, db_->Get(kEvents, key));
    if (!stored.has_value()) {
      return absl::NotFoundError(
          absl::StrCat("no event ", event.stream(), "@", event.stream_version()));
    }
    CRM_RETURN_IF_ERROR(Put(*db_, batch, kEvents, key, event.SerializeAsString()));
  }
  return db_->Write(&batch, /*sync=*/true);
}

absl::Status EventStore::CompactStreams(absl::string_view first, absl::string_view last) {
  return db_->CompactRange(kEvents, EventKey(first, 0),
                           EventKey(last, std::numeric_limits<int64_t>::max()));
}

bool EventStore::Answered(const EventContext& ctx, absl::string_view method,
                          const std::string& request_id,
                          const google::protobuf::Message& request) const {
  if (request_id.empty()) return false;
  auto earlier =
      FindResponse(CallerRequestKey(ctx, absl::StrCat(method, "/", request_id), request));
  return earlier.ok() && earlier->has_value();
}

absl::StatusOr<bool> EventStore::LogHasStream(
    const std::function<bool(absl::string_view)>& pred) const {
  auto it = db_->NewIterator(kLog);
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    // The log's value is the event's key: the stream, \0, the version.
    const absl::string_view key(it->value().data(), it->value().size());
    if (pred(key.substr(0, key.find('\0')))) return true;
  }
  CRM_RETURN_IF_ERROR(FromRocks(it->status()));
  return false;
}

absl::StatusOr<uint64_t> EventStore::RequeueLog() {
  std::lock_guard<std::mutex> lock(relayed_mu_);
  // Marked in the cursor's batch: a restart mid-refill still tells the
  // refill from a backlog.
  const uint64_t below = next_position_.load();
  rocksdb::WriteBatch batch;
  CRM_RETURN_IF_ERROR(Put(*db_, batch, kOutbox, kRefillKey, BigEndian64(below)));
  CRM_RETURN_IF_ERROR(Put(*db_, batch, kOutbox, kRelayedKey, BigEndian64(1)));
  CRM_RETURN_IF_ERROR(db_->Write(&batch, /*sync=*/true));
  // In this order: BacklogSize reads them the other way round.
  refill_below_.store(std::max(refill_below_.load(), below));
  relayed_.store(1);
  return LogSize();
}

}  // namespace crm
