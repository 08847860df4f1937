#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/notification.h"
#include "crm/v1/leads.pb.h"
#include "libs/common/blocking_executor.h"
#include "libs/common/envelope.h"
#include "libs/common/pii/key_vault.h"
#include "services/leads/api/lead_commands.h"

namespace crm::leads {

struct ImportOptions {
  // Rows per append batch: one synced RocksDB write each.
  size_t chunk_rows = 2000;
  // Rows one call may carry; larger files go in several calls with the
  // same import_id (row numbers keep counting). The reply has a result per
  // row, up to ~250 bytes (three ids, an owner and a queue of up to 64
  // bytes each): 16,000 keep it under the 4 MiB a gRPC client receives by
  // default.
  size_t max_rows_per_call = 16'000;
  // Calls open at once, per caller and in all: each holds a chunk of rows
  // and, once it writes, two writer threads. A call holds its place until
  // its stream ends, idle or not, so one caller's open streams must not
  // shut out the others.
  size_t max_calls_per_caller = 2;
  // crm-leads sets a quarter of its handler threads: a call holds one
  // while it prepares a message's rows.
  size_t max_running_calls = 16;
};

class ImportSession;

// The first message of a call: its import_id and the default channel of
// its rows, checked before any row is read.
absl::Status CheckImportHead(const std::string& import_id, crm::v1::LeadChannel default_channel);
// A later message of the call against the first one's import_id and
// default channel, which it may repeat or leave out.
absl::Status CheckImportFollowUp(const crm::v1::ImportLeadsRequest& later,
                                 const std::string& import_id,
                                 crm::v1::LeadChannel default_channel);
// The request id a row's capture carries: import_id and row number.
std::string RowRequestId(absl::string_view import_id, int64_t row_number);

// Bulk capture of leads (ImportLeads). Rows are processed in chunks: a
// chunk is validated, deduplicated (against known people and earlier rows,
// through the ContactRegistry), scored and assigned, then appended with one
// AppendRequest per row, so a row lands whole or not at all. The chunk is
// written as two AppendBatch calls at once, split by person (a person's
// rows share one synced WriteBatch), while the next chunk is prepared.
// Each row stores its result under the caller's import key (import_id
// scoped to the caller, as commands' request keys are) + row number in the
// same append, so a replayed row is answered from it and appends nothing,
// and another caller's import of the same import_id is an import of its own.
class LeadImporter {
 public:
  explicit LeadImporter(LeadCommands& commands, ImportOptions options = {})
      : commands_(commands), options_(options) {}

  // Each chunk's rows are stamped with the time it is written, not with
  // ctx.occurred_at. INVALID_ARGUMENT for a bad import_id; ABORTED while
  // another call of the same caller's import is running (it would race on
  // the same rows); RESOURCE_EXHAUSTED while the caller has
  // max_calls_per_caller calls open, or all callers max_running_calls.
  absl::StatusOr<std::unique_ptr<ImportSession>> Begin(const std::string& import_id,
                                                       crm::v1::LeadChannel default_channel,
                                                       EventContext ctx);

 private:
  friend class ImportSession;
  void End(const std::string& import_key);

  LeadCommands& commands_;
  ImportOptions options_;
  std::mutex mu_;
  // Open calls: import key -> the caller's actor (a few dozen at most).
  absl::flat_hash_map<std::string, std::string> active_;
};

// One ImportLeads call. Not thread-safe: one caller feeds it in order.
class ImportSession {
 public:
  // `import_key`: where the rows' results are stored (the caller-scoped
  // import_id, see LeadImporter::Begin).
  // `fresh_import`: no row of this import was stored before, so rows need
  // no lookup of an earlier result.
  ImportSession(LeadImporter& importer, std::string import_id, std::string import_key,
                crm::v1::LeadChannel default_channel, EventContext ctx, bool fresh_import);
  ~ImportSession();
  ImportSession(const ImportSession&) = delete;
  ImportSession& operator=(const ImportSession&) = delete;

  // Takes rows (moved out of `rows`). A full chunk is prepared here and its
  // append starts in the background; this waits only for the chunk before.
  // Once `cancelled` says so (the caller gave up), no further chunk starts:
  // CANCELLED, and what was appended stays.
  absl::Status Add(google::protobuf::RepeatedPtrField<crm::v1::ImportLeadRow>* rows,
                   const std::function<bool()>& cancelled = {});
  // Writes what is left and returns one result per row received. An error
  // means the call failed part way: committed rows stay, and replaying the
  // import completes it.
  absl::StatusOr<crm::v1::ImportLeadsResponse> Finish();

  const std::string& import_id() const { return import_id_; }
  crm::v1::LeadChannel default_channel() const { return default_channel_; }

 private:
  struct Chunk {
    std::vector<AppendRequest> appends;
    std::vector<Assignment> assignments;  // one per append
    std::vector<int> halves;              // one per append: HalfOf(customer)
    ContactRegistry::Hold claimed;        // to release once written or failed
    // New data keys of the chunk's new customers, written before the rows
    // they seal.
    std::vector<AppendRequest> key_appends;
    std::vector<std::pair<std::string, pii::DataKey>> keys;  // customer, key
  };

  absl::Status Process(std::vector<crm::v1::ImportLeadRow> rows);
  absl::StatusOr<Chunk> Prepare(std::vector<crm::v1::ImportLeadRow> rows);
  // Runs on writers_.
  absl::Status Write(Chunk chunk);
  absl::Status WaitForWriter();

  LeadImporter& importer_;
  LeadCommands& commands_;
  const std::string import_id_;
  const std::string import_key_;
  const crm::v1::LeadChannel default_channel_;
  const EventContext ctx_;
  const bool fresh_import_;
  // The call's chunks land in order, so a chunk may match the people of
  // the one still being written.
  const ContactRegistry::Owner owner_;
  std::vector<crm::v1::ImportLeadRow> pending_;
  std::vector<crm::v1::ImportRowResult> results_;
  // The first row of each row number seen in this call.
  struct FirstRow {
    size_t index;             // into results_
    std::string fingerprint;  // RequestFingerprint of the row
  };
  absl::flat_hash_map<int64_t, FirstRow> first_index_;
  // Data keys this call issued: a later chunk may seal a person's rows
  // before the chunk that issued the key has written it.
  absl::flat_hash_map<std::string, pii::DataKey> session_keys_;
  // (result index, index of the first occurrence): rows repeated in the call.
  std::vector<std::pair<size_t, size_t>> repeats_;
  size_t rows_received_ = 0;
  // Set while a chunk is being written; writer_status_ is its outcome.
  std::unique_ptr<absl::Notification> written_;
  absl::Status writer_status_;
  absl::Status failed_;
  // The two threads that write the chunks' halves, started with the first
  // chunk (a call still waiting for rows holds none) and kept for the rest
  // of the call: a thread started per chunk got a different allocator arena
  // each time, and the chunk's multi-megabyte batches were page-faulted in
  // afresh. Declared last, so it is gone before anything its tasks touch.
  std::unique_ptr<BlockingExecutor> writers_;
};

}  // namespace crm::leads
