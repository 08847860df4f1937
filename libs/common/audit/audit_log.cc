#include "libs/common/audit/audit_log.h"

#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "crm/v1/audit.pb.h"
#include "libs/common/audit/audit_stream.h"
#include "libs/common/auth/policy.h"
#include "libs/common/envelope.h"
#include "libs/common/ids.h"
#include "libs/common/log.h"

namespace crm::audit {
namespace {

AppendRequest AuditAppend(const google::protobuf::Message& payload, const EventContext& ctx) {
  AppendRequest request;
  request.stream = absl::StrCat(kAuditStreamPrefix, NewId("aud"));
  request.expected_version = EventStore::kNoStream;
  // No customer: audit events are keyed by nothing and belong to no 360 view.
  request.events.push_back(MakeEnvelope(payload, "", ctx));
  return request;
}

}  // namespace

AuditLog::AuditLog(EventStore& store, std::string source, AuditLogOptions options)
    : store_(store),
      source_(std::move(source)),
      options_(options),
      tracker_(options.flag_threshold, options.flag_window),
      thread_([this] { Run(); }) {}

AuditLog::~AuditLog() { Stop(); }

void AuditLog::Record(Denial denial) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_ || queue_.size() >= options_.max_queued) {
      Dropped(1);
      return;
    }
    queue_.push_back(std::move(denial));
  }
  cv_.notify_one();
}

void AuditLog::Dropped(uint64_t n) {
  dropped_.fetch_add(n);
  dropped_total_.Inc(n);
}

void AuditLog::Flush() {
  std::unique_lock<std::mutex> lock(mu_);
  idle_cv_.wait(lock, [this] { return queue_.empty() && !writing_; });
}

void AuditLog::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  cv_.notify_one();
  if (thread_.joinable()) thread_.join();
}

void AuditLog::Run() {
  for (;;) {
    std::deque<Denial> batch;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) break;  // stopping, all written
      batch.swap(queue_);
      writing_ = true;
    }
    Write(std::move(batch));
    {
      std::lock_guard<std::mutex> lock(mu_);
      writing_ = false;
    }
    idle_cv_.notify_all();
  }
  idle_cv_.notify_all();
}

void AuditLog::Write(std::deque<Denial> denials) {
  std::vector<AppendRequest> refusals, flags;
  std::vector<std::string> flagged_callers;  // flags' callers, in order
  refusals.reserve(denials.size());
  for (Denial& d : denials) {
    const bool unauthenticated = d.status.code() == absl::StatusCode::kUnauthenticated;
    EventContext ctx;
    ctx.source = source_;
    // Without a verified subject the address is all we know of the caller.
    ctx.actor = d.subject.empty() ? absl::StrCat("peer:", d.peer) : d.subject;
    ctx.correlation_id = d.correlation_id;
    ctx.occurred_at = d.at;
    crm::v1::AccessDenied denied;
    // The audit log keeps it for good: not a path of the client's choosing.
    denied.set_method(auth::RecordedMethod(d.method));
    denied.set_target(d.target);
    denied.set_code(absl::StatusCodeToString(d.status.code()));
    denied.set_reason(std::string(d.status.message()));
    denied.set_peer(d.peer);
    refusals.push_back(AuditAppend(denied, ctx));
    if (!unauthenticated) continue;
    if (auto flag = tracker_.RecordFailure(d.peer, d.at); flag.has_value()) {
      crm::v1::AuthenticationFailuresFlagged flagged;
      flagged.set_peer(flag->caller);
      flagged.set_failures(flag->failures);
      flagged.set_window_seconds(static_cast<int32_t>(absl::ToInt64Seconds(tracker_.window())));
      *flagged.mutable_first_failure_at() = ToProtoTimestamp(flag->first_failure_at);
      *flagged.mutable_last_failure_at() = ToProtoTimestamp(flag->last_failure_at);
      flags.push_back(AuditAppend(flagged, ctx));
      flagged_callers.push_back(flag->caller);
      log::Warn("repeated failed authentication",
                {{"peer", flag->caller}, {"failures", absl::StrCat(flag->failures)}});
    }
  }
  // A flag is one record per caller and window, raised once: it is written
  // like a command. Refusals may be shed while the broker is away.
  if (!flags.empty()) {
    const std::vector<bool> written = Append(std::move(flags), EventStore::Admission::kLimited);
    // No one retries a flag as a caller retries a command: one refused
    // (the outbox full) is raised again by the caller's next failure.
    for (size_t i = 0; i < written.size(); ++i) {
      if (written[i]) {
        flagged_total_.Inc();  // counted once written: a re-raised flag is one flag
        continue;
      }
      tracker_.Unflag(flagged_callers[i]);
      log::Warn("failed-authentication flag not written; raised again at the next failure",
                {{"peer", flagged_callers[i]}});
    }
  }
  Append(std::move(refusals), EventStore::Admission::kBestEffort);
  denied_total_.Inc(denials.size());
}

std::vector<bool> AuditLog::Append(std::vector<AppendRequest> requests,
                                   EventStore::Admission admission) {
  const size_t n = requests.size();
  std::vector<bool> written(n, false);
  auto results = store_.AppendBatch(std::move(requests), admission);
  if (!results.ok()) {
    Dropped(n);
    if (absl::IsResourceExhausted(results.status())) {
      // The outbox is full enough to shed refusals: said once, not per batch.
      if (!shedding_) {
        log::Warn("audit records dropped while the outbox drains",
                  {{"error", results.status().ToString()}});
      }
      shedding_ = true;
      return written;
    }
    log::Error("audit append failed",
               {{"error", results.status().ToString()}, {"entries", absl::StrCat(n)}});
    return written;
  }
  if (shedding_) log::Info("audit records are written again");
  shedding_ = false;
  for (size_t i = 0; i < results->size(); ++i) {
    if (const auto& r = (*results)[i]; r.ok()) {
      written[i] = true;
      written_.fetch_add(1);
    } else {
      log::Error("audit append failed", {{"error", r.status().ToString()}});
      Dropped(1);
    }
  }
  return written;
}

}  // namespace crm::audit
