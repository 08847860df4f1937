#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "libs/common/audit/failed_auth_tracker.h"
#include "libs/common/event_store.h"
#include "libs/common/metrics.h"

namespace crm::audit {

// A call the service refused.
struct Denial {
  std::string method;
  // The record the request named, empty if none.
  std::string target;
  // The verified subject; empty when the caller could not be authenticated.
  std::string subject;
  // The caller's address without the port.
  std::string peer;
  std::string correlation_id;
  absl::Status status;
  absl::Time at;
};

struct AuditLogOptions {
  // Failed authentications from one peer within `flag_window` that raise
  // AuthenticationFailuresFlagged.
  int flag_threshold = 5;
  absl::Duration flag_window = absl::Minutes(1);
  // Refusals waiting to be written; past this they are counted in
  // crm_audit_dropped_total instead of growing memory under a flood.
  size_t max_queued = 10000;
};

// Appends refusals (AccessDenied) and authentication-failure flags to the
// service's event log, on audit streams the relay publishes to
// crm.audit.v1. Record() never blocks the call being refused: a writer
// thread appends what has queued up as one batch (one fsync), so a flood
// of refused calls cannot turn into a flood of synced writes.
class AuditLog {
 public:
  // `source` is the emitting service, e.g. "crm/leads".
  AuditLog(EventStore& store, std::string source, AuditLogOptions options = {});
  ~AuditLog();

  AuditLog(const AuditLog&) = delete;
  AuditLog& operator=(const AuditLog&) = delete;

  void Record(Denial denial);
  // Waits until everything recorded so far is appended (or dropped).
  void Flush();
  // Writes what is queued and stops the writer; later records are dropped.
  void Stop();

  uint64_t written() const { return written_.load(); }
  uint64_t dropped() const { return dropped_.load(); }

 private:
  void Run();
  void Write(std::deque<Denial> denials);
  // Whether each request was written.
  std::vector<bool> Append(std::vector<AppendRequest> requests, EventStore::Admission admission);
  void Dropped(uint64_t n);

  EventStore& store_;
  const std::string source_;
  const AuditLogOptions options_;
  FailedAuthTracker tracker_;  // writer thread only
  bool shedding_ = false;      // writer thread only: refusals being dropped

  std::mutex mu_;
  std::condition_variable cv_;
  std::condition_variable idle_cv_;
  std::deque<Denial> queue_;
  bool writing_ = false;
  bool stopping_ = false;
  std::atomic<uint64_t> written_{0};
  std::atomic<uint64_t> dropped_{0};
  Counter& denied_total_ =
      MetricsRegistry::Default().GetCounter("crm_audit_denials_total", "Refused calls recorded");
  Counter& dropped_total_ = MetricsRegistry::Default().GetCounter(
      "crm_audit_dropped_total",
      "Audit records not written: the queue was full, or the outbox too full to take them");
  Counter& flagged_total_ =
      MetricsRegistry::Default().GetCounter("crm_audit_auth_failures_flagged_total",
                                            "Callers flagged for repeated failed authentication");
  std::thread thread_;
};

}  // namespace crm::audit
