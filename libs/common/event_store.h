#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "crm/v1/envelope.pb.h"
#include "libs/common/database.h"
#include "libs/common/envelope.h"
#include "libs/common/metrics.h"
#include "libs/common/reply_budget.h"
#include "libs/common/striped_mutex.h"

namespace crm {

// A projection write that commits atomically with the events that cause it.
struct ProjectionWrite {
  std::string family;
  std::string key;
  std::string value;
  // Deletes the key instead (e.g. a finished task leaving a due index).
  bool erase = false;
};

struct AppendRequest {
  std::string stream;
  // The version the caller decided on; kNoStream for a stream that must not
  // exist yet. A mismatch is ABORTED and writes nothing.
  int64_t expected_version = 0;
  // Envelopes without stream_version/recorded_at: the store assigns them.
  std::vector<crm::v1::EventEnvelope> events;
  // The aggregate's folded state after these events (opaque to the store).
  std::string state;
  // Idempotency: a second append with the same key returns the first
  // result and appends nothing. Empty = not idempotent. A key with a
  // request fingerprint (CallerRequestKey with the request) is stored
  // without it; the same key with another fingerprint is INVALID_ARGUMENT.
  std::string request_key;
  // Stored under request_key and returned to a retry.
  std::string response;
  std::vector<ProjectionWrite> projection_writes;
};

struct AppendResult {
  int64_t first_version = 0;
  int64_t last_version = 0;
  std::string response;
  // True when request_key had been seen: nothing was appended.
  bool replayed = false;
};

struct StreamState {
  int64_t version = 0;
  std::string state;
};

struct OutboxEntry {
  uint64_t position = 0;
  crm::v1::EventEnvelope envelope;
  std::string bytes;  // the envelope as stored (what the relay publishes)
};

// The service's own event log on RocksDB. One append is one synced
// WriteBatch holding the events and their log positions, the folded state,
// the idempotency record and the projection writes, so either all of it is
// durable or none of it is. The outbox is the log past a cursor the relay
// moves once the broker has acknowledged what lies below it: no copy of
// an event is written for it, nor deleted again.
class EventStore {
 public:
  static constexpr int64_t kNoStream = 0;
  // The largest event an append takes: librdkafka's producer refuses
  // messages over message.max.bytes (1,000,000 by default, headers and
  // framing included), so a larger event could never be published.
  static constexpr size_t kMaxEventBytes = 900 * 1000;

  // Opens the store; `projection_families` are extra column families of
  // the owning service written through AppendRequest::projection_writes.
  // `retired_families` are projection families an earlier version kept:
  // dropped (see DatabaseOptions).
  static absl::StatusOr<std::unique_ptr<EventStore>> Open(
      const std::string& path, const std::vector<std::string>& projection_families,
      const std::vector<std::string>& retired_families = {});

  // Whether an append is refused while the outbox is over its limit
  // (SetOutboxLimit).
  enum class Admission {
    kLimited,
    // Refused once the outbox holds half its limit: records a service may
    // drop (refused calls, counted when dropped), so a flood of them while
    // the broker is away never takes the room commands need.
    kBestEffort,
    // For what a service writes at start, before its relay runs, and cannot
    // leave for later: the re-wrapped keys of a master key rotation. Also
    // for the parts of a write admitted as a whole by Admit.
    kUnlimited,
  };

  // OK when appends of `events` more events would be taken now; the
  // RESOURCE_EXHAUSTED an append would fail with otherwise. For a write of
  // several batches that must land together or not at all: checked once
  // for all, then written kUnlimited, no batch after the first is refused.
  absl::Status Admit(uint64_t events, Admission admission = Admission::kLimited) const;

  absl::StatusOr<AppendResult> Append(AppendRequest request);

  // Many appends in ONE synced WriteBatch, e.g. a bulk import: each request
  // gets its own result (a version conflict or an invalid request fails only
  // itself), and the whole batch costs one fsync. Requests are applied in
  // order, so a later request may build on an earlier one's stream or
  // repeat its request_key (then it is a replay of it). The outer status
  // fails only when the batch could not be written at all.
  absl::StatusOr<std::vector<absl::StatusOr<AppendResult>>> AppendBatch(
      std::vector<AppendRequest> requests, Admission admission = Admission::kLimited);
  // All of `requests` in one synced write, or none of them: the first
  // failing request's error (a version conflict is ABORTED; ALREADY_EXISTS
  // when a request_key was recorded before) and nothing written. For
  // records that mean something only together.
  absl::StatusOr<std::vector<AppendResult>> AppendAll(std::vector<AppendRequest> requests);

  // NOT_FOUND when the stream has no events.
  absl::StatusOr<StreamState> LoadState(const std::string& stream) const;
  // The family of the folded states, stream -> DecodeState'able row: a
  // service may scan it for its aggregates in stream order, under a
  // snapshot with its projections.
  static constexpr char kStateFamily[] = "state";
  static absl::StatusOr<StreamState> DecodeState(absl::string_view stream, absl::string_view row);
  // The stream's events from `from_version` on, at most `max_events`.
  absl::StatusOr<std::vector<crm::v1::EventEnvelope>> ReadStream(
      const std::string& stream, int64_t from_version = 1,
      size_t max_events = std::numeric_limits<size_t>::max()) const;
  // Events about any of `customer_ids`, in log order, from log position
  // `after` + 1, as many as `budget` (if given) takes. Scans the log: for
  // rare requests (a person's data export), not for serving paths.
  struct CustomerEvents {
    std::vector<crm::v1::EventEnvelope> events;
    // Where the next read goes on (its `after`) once an event did not fit
    // the budget or a write below the log's end stalled for kStableWait;
    // 0 when the log is read to where it ended as the read began.
    uint64_t resume_after = 0;
  };
  static constexpr absl::Duration kStableWait = absl::Seconds(2);
  absl::StatusOr<CustomerEvents> ReadCustomerEvents(const std::vector<std::string>& customer_ids,
                                                    uint64_t after = 0,
                                                    ReplyBudget* budget = nullptr) const;
  // The stored response of an earlier append with this key, if any;
  // INVALID_ARGUMENT when it was stored for a request of another
  // fingerprint.
  absl::StatusOr<std::optional<std::string>> FindResponse(const std::string& request_key) const;
  // The stored response of every earlier append whose request key starts
  // with `prefix`, in key order: for a read model added later, filled in
  // from what earlier requests made.
  absl::Status ForEachResponse(absl::string_view prefix,
                               const std::function<void(absl::string_view response)>& visit) const;
  // Whether the caller of `ctx` already made this call of `method` (the key
  // CallerRequestKey gives it): a retry, which gets the first result, so a
  // handler checks the caller's access to the record only for a new call.
  bool Answered(const EventContext& ctx, absl::string_view method, const std::string& request_id,
                const google::protobuf::Message& request) const;

  // Overwrites stored events (same stream and version) with `redacted`, in
  // one write. Only for key material that must not outlive its destruction
  // (libs/common/pii); domain events are never changed.
  absl::Status RedactEvents(const std::vector<crm::v1::EventEnvelope>& redacted);
  // Compacts the files holding the events of the streams from `first` to
  // `last` (in byte order), so that what RedactEvents overwrote is gone
  // from disk as well as from reads.
  absl::Status CompactStreams(absl::string_view first, absl::string_view last);

  // Outbox, in log order, from `from_position` or the relayed cursor,
  // whichever is later: at most `max` entries, and no more once they hold
  // `max_bytes` (at least one entry). Entries stay until MarkRelayed passes
  // them.
  absl::StatusOr<std::vector<OutboxEntry>> ReadOutbox(uint64_t from_position, size_t max,
                                                      size_t max_bytes = SIZE_MAX) const;
  // The broker has every event below log position `below`: the cursor moves
  // there (never back; a lower value is ignored).
  absl::Status MarkRelayed(uint64_t below);
  // Puts every event of the log back into the outbox, e.g. to refill an
  // empty broker. Returns how many were queued.
  absl::StatusOr<uint64_t> RequeueLog();
  // Whether the log holds an event of a stream `pred` is true for (read off
  // the log's keys alone, stopping at the first).
  absl::StatusOr<bool> LogHasStream(const std::function<bool(absl::string_view)>& pred) const;
  // Every log position below this one has been written (or its append
  // failed): appends commit out of position order, so a reader that keeps
  // a cursor into the outbox must not move it past this.
  uint64_t StablePosition() const;
  // Number of events in the log (positions handed out).
  uint64_t LogSize() const { return next_position_.load() - 1; }

  // Events waiting in the outbox (log positions handed out and not yet
  // relayed; an append that failed to write counts until the relay passes
  // its positions).
  uint64_t OutboxSize() const {
    const uint64_t next = next_position_.load();
    const uint64_t relayed = relayed_.load();
    return next > relayed ? next - relayed : 0;
  }
  // Events appended since the broker last acknowledged one, not counting a
  // refill of the log (RequeueLog) still being published.
  uint64_t BacklogSize() const {
    const uint64_t next = next_position_.load();
    // relayed_ first: RequeueLog raises refill_below_ before it lowers
    // relayed_, so a lowered cursor is never read with the old refill mark
    // (the whole log would look unrelayed, and a command be refused).
    const uint64_t relayed = relayed_.load();
    const uint64_t from = std::max(relayed, refill_below_.load());
    return next > from ? next - from : 0;
  }
  // Appends fail with RESOURCE_EXHAUSTED while the backlog holds more than
  // this many events (the broker has been unreachable for long), instead of
  // growing without bound. Default 1,000,000.
  void SetOutboxLimit(uint64_t limit) { outbox_limit_ = limit; }

  // Called after every successful append (wakes the relay `owner`).
  void SetAppendListener(std::function<void()> listener, const void* owner = nullptr) {
    std::lock_guard<std::mutex> lock(listener_mu_);
    listener_ = std::move(listener);
    listener_owner_ = owner;
  }
  // Removes the listener if `owner` set it. Once this returns, no call of
  // it is running.
  void ClearAppendListener(const void* owner) {
    std::lock_guard<std::mutex> lock(listener_mu_);
    if (listener_owner_ != owner) return;
    listener_ = nullptr;
    listener_owner_ = nullptr;
  }

  Database& db() { return *db_; }
  const Database& db() const { return *db_; }

 private:
  struct Token {};

 public:
  EventStore(Token, std::unique_ptr<Database> db, uint64_t next_position, uint64_t relayed)
      : db_(std::move(db)), next_position_(next_position), relayed_(relayed) {}

 private:
  absl::StatusOr<std::vector<absl::StatusOr<AppendResult>>> Write(
      std::vector<AppendRequest> requests, bool all_or_nothing,
      Admission admission = Admission::kLimited);
  // Writes the outbox cursor and then takes it; relayed_mu_ held.
  absl::Status StoreCursor(uint64_t position, bool sync);

  std::unique_ptr<Database> db_;
  StripedMutex locks_;
  // Log positions are global, so the outbox (the log past the cursor)
  // drains in append order; within a stream this is version order because
  // a stream's appends are serialized by its lock.
  std::atomic<uint64_t> next_position_;
  mutable std::mutex positions_mu_;
  std::multiset<uint64_t> unwritten_;  // first position of each append being written
  // First log position the broker has not acknowledged (see MarkRelayed).
  std::atomic<uint64_t> relayed_;
  // Positions below this were put back by RequeueLog (0: none).
  std::atomic<uint64_t> refill_below_{0};
  std::mutex relayed_mu_;  // orders the cursor's writes
  Counter& appended_counter_ =
      MetricsRegistry::Default().GetCounter("crm_events_appended_total", "Events appended");
  MetricsRegistry::GaugeHandle outbox_gauge_ = MetricsRegistry::Default().AddGauge(
      "crm_outbox_depth", "Events appended and not yet acknowledged by the broker", {},
      [this] { return static_cast<double>(OutboxSize()); });
  uint64_t outbox_limit_ = 1000000;
  // Held while the listener runs: a relay that stops may be destroyed.
  std::mutex listener_mu_;
  std::function<void()> listener_;
  const void* listener_owner_ = nullptr;
};

// `check` (the caller's access to the record) for a new call only: a retry
// of a call the caller made gets the first answer, even after the record
// left the caller's reach or the caller's token changed between attempts.
template <typename Request, typename Check>
absl::Status CheckUnlessRetry(const EventStore& store, const EventContext& ctx,
                              absl::string_view method, const Request& request, Check check) {
  if (store.Answered(ctx, method, request.request_id(), request)) return absl::OkStatus();
  return check();
}

}  // namespace crm
