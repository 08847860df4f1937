#include "services/leads/api/lead_import.h"

#include <algorithm>
#include <functional>
#include <utility>

#include "absl/hash/hash.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "libs/common/ids.h"
#include "libs/common/pii/field_sealer.h"
#include "libs/common/status_macros.h"
#include "libs/common/striped_mutex.h"

namespace crm::leads {
namespace {

void Reject(crm::v1::ImportRowResult& result, absl::string_view error) {
  result.set_outcome(crm::v1::IMPORT_ROW_OUTCOME_REJECTED);
  // Reasons may quote the row (an attribute's key, say): cut, at a UTF-8
  // character boundary, so that 16,000 of them fit a reply.
  constexpr size_t kMaxError = 200;
  if (error.size() > kMaxError) {
    size_t cut = kMaxError;
    while (cut > 0 && (static_cast<unsigned char>(error[cut]) & 0xC0) == 0x80) --cut;
    error = error.substr(0, cut);
  }
  result.set_error(std::string(error));
}

// A chunk is written as two appends at once, split by person.
int HalfOf(absl::string_view customer_id) { return absl::HashOf(customer_id) & 1; }

// EventStore::AppendBatch locks the stripes (StripedMutex) of its streams
// for the whole batch, so two batches run at once only on disjoint stripes.
// Were the stripe function to change, the halves would only wait for each
// other.
int StripeHalf(const std::string& lead_id) {
  const size_t stripe =
      absl::HashOf(absl::string_view(LeadStream(lead_id))) % StripedMutex::kStripes;
  return stripe < StripedMutex::kStripes / 2 ? 0 : 1;
}

// Lead ids for one chunk, handed out per half in ascending order: the
// chunk's keys in the events, state and list families then reach each
// memtable in key order, which RocksDB inserts as a sequential run.
class LeadIdPool {
 public:
  explicit LeadIdPool(size_t leads) {
    std::vector<std::string> ids(leads + leads / 4 + 16);
    for (auto& id : ids) id = NewId("lead");
    std::sort(ids.begin(), ids.end(), std::greater<>());  // popped from the back
    for (auto& id : ids) {
      const int h = StripeHalf(id);
      halves_[h].push_back(std::move(id));
    }
  }

  // An id whose stream lies in the stripe half of the person's half of the
  // chunk.
  std::string For(const std::string& customer_id) {
    auto& ids = halves_[HalfOf(customer_id)];
    if (ids.empty()) {  // unlucky draw: fall back to drawing one by one
      for (;;) {
        std::string id = NewId("lead");
        if (StripeHalf(id) == HalfOf(customer_id)) return id;
      }
    }
    std::string id = std::move(ids.back());
    ids.pop_back();
    return id;
  }

 private:
  std::vector<std::string> halves_[2];
};

// Where an import's row results are stored: the import_id scoped to the
// caller like a command's request key, so the same import_id from two
// callers is two imports and a replay returns only the caller's results.
std::string ImportKeyOf(const EventContext& ctx, absl::string_view import_id) {
  return CallerRequestKey(ctx, absl::StrCat("ImportLeads/", import_id));
}

}  // namespace

absl::Status CheckImportHead(const std::string& import_id, crm::v1::LeadChannel default_channel) {
  CRM_RETURN_IF_ERROR(CheckId("import_id", import_id));
  {
    // Refused here, as a unary call's request is: as a prefix of every
    // row's request id it would reject each row for a field not sent.
    crm::v1::ImportLeadsRequest head;
    head.set_import_id(import_id);
    CRM_RETURN_IF_ERROR(pii::RefuseSealedInput(head));
  }
  if (!crm::v1::LeadChannel_IsValid(default_channel)) {
    return absl::InvalidArgumentError("default_channel: unknown channel");
  }
  return absl::OkStatus();
}

absl::Status CheckImportFollowUp(const crm::v1::ImportLeadsRequest& later,
                                 const std::string& import_id,
                                 crm::v1::LeadChannel default_channel) {
  if (!later.import_id().empty() && later.import_id() != import_id) {
    return absl::InvalidArgumentError("import_id: differs from the first message");
  }
  if (later.default_channel() != crm::v1::LEAD_CHANNEL_UNSPECIFIED &&
      later.default_channel() != default_channel) {
    // The first message's default applies to every row: a later one
    // would be ignored, and its rows stored under the wrong channel.
    return absl::InvalidArgumentError(
        "default_channel: differs from the first message, whose default applies to every row");
  }
  return absl::OkStatus();
}

std::string RowRequestId(absl::string_view import_id, int64_t row_number) {
  return absl::StrCat(import_id, "/", row_number);
}

absl::StatusOr<std::unique_ptr<ImportSession>> LeadImporter::Begin(
    const std::string& import_id, crm::v1::LeadChannel default_channel, EventContext ctx) {
  CRM_RETURN_IF_ERROR(CheckImportHead(import_id, default_channel));
  CRM_RETURN_IF_ERROR(commands_.Recover());
  std::string import_key = ImportKeyOf(ctx, import_id);
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (active_.contains(import_key)) {
      return absl::AbortedError(
          absl::StrCat("import ", import_id, " is running in another call; retry when it ends"));
    }
    const size_t mine = std::count_if(active_.begin(), active_.end(),
                                      [&](const auto& open) { return open.second == ctx.actor; });
    if (mine >= options_.max_calls_per_caller) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "the caller has ", mine, " imports open, the most one caller may; retry when one ends"));
    }
    if (active_.size() >= options_.max_running_calls) {
      return absl::ResourceExhaustedError(absl::StrCat(
          active_.size(), " imports are open, the most this service runs at once; retry when one ",
          "ends"));
    }
    active_.emplace(import_key, ctx.actor);
  }
  if (ctx.source.empty()) ctx.source = kLeadsSource;
  if (ctx.correlation_id.empty()) ctx.correlation_id = import_id;
  auto seen = commands_.store().HasImportRows(import_key);
  if (!seen.ok()) {
    End(import_key);
    return seen.status();
  }
  return std::make_unique<ImportSession>(*this, import_id, std::move(import_key), default_channel,
                                         std::move(ctx), /*fresh_import=*/!*seen);
}

void LeadImporter::End(const std::string& import_key) {
  std::lock_guard<std::mutex> lock(mu_);
  active_.erase(import_key);
}

ImportSession::ImportSession(LeadImporter& importer, std::string import_id, std::string import_key,
                             crm::v1::LeadChannel default_channel, EventContext ctx,
                             bool fresh_import)
    : importer_(importer),
      commands_(importer.commands_),
      import_id_(std::move(import_id)),
      import_key_(std::move(import_key)),
      default_channel_(default_channel),
      ctx_(std::move(ctx)),
      fresh_import_(fresh_import),
      owner_(commands_.contacts().NewOwner()) {}

ImportSession::~ImportSession() {
  WaitForWriter().IgnoreError();
  importer_.End(import_key_);
}

absl::Status ImportSession::Add(google::protobuf::RepeatedPtrField<crm::v1::ImportLeadRow>* rows,
                                const std::function<bool()>& cancelled) {
  CRM_RETURN_IF_ERROR(failed_);
  const size_t chunk_rows = importer_.options_.chunk_rows;
  if (rows_received_ + rows->size() > importer_.options_.max_rows_per_call) {
    // The rows received so far land before the call ends, a chunk not yet
    // full too: the client is told to go on from this message.
    if (cancelled && cancelled()) return failed_ = absl::CancelledError("import cancelled");
    if (!pending_.empty()) {
      if (auto st = Process(std::exchange(pending_, {})); !st.ok()) return failed_ = st;
    }
    if (auto st = WaitForWriter(); !st.ok()) return failed_ = st;
    return failed_ = absl::InvalidArgumentError(absl::StrCat(
               "rows: more than ", importer_.options_.max_rows_per_call, " rows in one call; the ",
               rows_received_,
               " rows received before this message are taken: send this message's rows and the "
               "rest in another call with the same import_id"));
  }
  rows_received_ += rows->size();
  for (auto& row : *rows) {
    pending_.push_back(std::move(row));
    if (pending_.size() == chunk_rows) {
      if (cancelled && cancelled()) return failed_ = absl::CancelledError("import cancelled");
      std::vector<crm::v1::ImportLeadRow> chunk;
      chunk.swap(pending_);
      pending_.reserve(chunk_rows);
      if (auto st = Process(std::move(chunk)); !st.ok()) return failed_ = st;
    }
  }
  rows->Clear();
  return absl::OkStatus();
}

absl::StatusOr<crm::v1::ImportLeadsResponse> ImportSession::Finish() {
  CRM_RETURN_IF_ERROR(failed_);
  if (!pending_.empty()) {
    if (auto st = Process(std::move(pending_)); !st.ok()) return failed_ = st;
    pending_.clear();
  }
  if (auto st = WaitForWriter(); !st.ok()) return failed_ = st;

  // A row number repeated within the call is the same key: same result.
  for (const auto& [index, first] : repeats_) {
    const int64_t row = results_[index].row_number();
    results_[index] = results_[first];
    results_[index].set_row_number(row);
    if (results_[index].outcome() != crm::v1::IMPORT_ROW_OUTCOME_REJECTED) {
      results_[index].set_replayed(true);
    }
  }
  crm::v1::ImportLeadsResponse response;
  response.set_import_id(import_id_);
  for (auto& r : results_) {
    switch (r.outcome()) {
      case crm::v1::IMPORT_ROW_OUTCOME_ACCEPTED:
        response.set_accepted(response.accepted() + 1);
        break;
      case crm::v1::IMPORT_ROW_OUTCOME_DUPLICATE:
        response.set_duplicates(response.duplicates() + 1);
        break;
      default:
        response.set_rejected(response.rejected() + 1);
    }
    if (r.replayed()) response.set_replayed(response.replayed() + 1);
    *response.add_results() = std::move(r);
  }
  results_.clear();
  return response;
}

absl::Status ImportSession::Process(std::vector<crm::v1::ImportLeadRow> rows) {
  CRM_ASSIGN_OR_RETURN(Chunk chunk, Prepare(std::move(rows)));
  // One chunk is written at a time: memory stays bounded, and a chunk that
  // failed stops the call before later rows land.
  if (auto st = WaitForWriter(); !st.ok()) {
    commands_.contacts().Release(chunk.claimed);
    for (const auto& a : chunk.assignments) commands_.assigner().Undo(a);
    return st;
  }
  if (chunk.appends.empty()) {
    commands_.contacts().Release(chunk.claimed);  // every fresh row was rejected
    // Its new keys are not written: a later chunk must not seal with them.
    for (const auto& [customer, key] : chunk.keys) session_keys_.erase(customer);
    return absl::OkStatus();
  }
  written_ = std::make_unique<absl::Notification>();
  if (writers_ == nullptr) writers_ = std::make_unique<BlockingExecutor>(2);
  writers_->Run([this, done = written_.get(), chunk = std::move(chunk)]() mutable {
    writer_status_ = Write(std::move(chunk));
    done->Notify();
  });
  return absl::OkStatus();
}

absl::Status ImportSession::WaitForWriter() {
  if (written_ != nullptr) {
    written_->WaitForNotification();
    written_.reset();
  }
  return std::exchange(writer_status_, absl::OkStatus());
}

absl::StatusOr<ImportSession::Chunk> ImportSession::Prepare(
    std::vector<crm::v1::ImportLeadRow> rows) {
  const size_t base = results_.size();
  results_.resize(base + rows.size());

  // Row keys: repeats within the call, then rows an earlier call imported.
  // A row number is one row: sent again with other content, it is refused.
  constexpr absl::string_view kOtherContent =
      "row_number: already used in this import with other content";
  // Whatever became of the first (a rejected row is corrected in a later
  // call, as the result of each row of this one is already decided).
  constexpr absl::string_view kOtherContentInCall =
      "row_number: sent earlier in this call with other content; correct a rejected row in a "
      "later call";
  std::vector<size_t> lookup;
  std::vector<int64_t> lookup_rows;
  std::vector<std::string> fingerprints(rows.size());
  std::vector<std::string> legacy_fingerprints(rows.size());
  for (size_t i = 0; i < rows.size(); ++i) {
    auto& result = results_[base + i];
    const int64_t row = rows[i].row_number();
    result.set_row_number(row);
    if (row <= 0) {
      Reject(result, "row_number: must be positive");
      continue;
    }
    // The row as it is stored: with the call's default channel when it
    // names none, so a replay under another default is other content.
    legacy_fingerprints[i] = RequestFingerprint(rows[i]);
    fingerprints[i] = legacy_fingerprints[i];
    if (rows[i].channel() == crm::v1::LEAD_CHANNEL_UNSPECIFIED &&
        default_channel_ != crm::v1::LEAD_CHANNEL_UNSPECIFIED) {
      crm::v1::ImportLeadRow effective = rows[i];
      effective.set_channel(default_channel_);
      fingerprints[i] = RequestFingerprint(effective);
    }
    auto [it, inserted] = first_index_.try_emplace(row, FirstRow{base + i, fingerprints[i]});
    if (!inserted) {
      if (it->second.fingerprint != fingerprints[i]) {
        Reject(result, kOtherContentInCall);
      } else {
        repeats_.emplace_back(base + i, it->second.index);
      }
      continue;
    }
    lookup.push_back(i);
    lookup_rows.push_back(row);
  }
  std::vector<std::optional<crm::v1::ImportRowResult>> earlier(lookup_rows.size());
  if (!fresh_import_) {
    CRM_ASSIGN_OR_RETURN(earlier, commands_.store().FindImportRows(import_key_, lookup_rows));
  }

  // Validation and normalization of the rows new to this import.
  struct Fresh {
    size_t index;  // into rows
    crm::v1::CaptureLeadRequest request;
  };
  std::vector<Fresh> fresh;
  fresh.reserve(lookup.size());
  for (size_t j = 0; j < lookup.size(); ++j) {
    auto& result = results_[base + lookup[j]];
    if (earlier[j].has_value()) {
      // Results stored before fingerprints were have none to compare; those
      // stored before the default channel counted took the row as sent.
      const std::string& stored = earlier[j]->row_fingerprint();
      if (!stored.empty() && stored != fingerprints[lookup[j]] &&
          stored != legacy_fingerprints[lookup[j]]) {
        Reject(result, kOtherContent);
        continue;
      }
      result = *std::move(earlier[j]);
      result.clear_row_fingerprint();
      result.set_replayed(true);
      continue;
    }
    crm::v1::CaptureLeadRequest request =
        RowAsCaptureRequest(std::move(rows[lookup[j]]), default_channel_);
    request.set_request_id(RowRequestId(import_id_, result.row_number()));
    if (auto st = pii::RefuseSealedInput(request); !st.ok()) {
      Reject(result, st.message());
      continue;
    }
    if (auto st = NormalizeCaptureRequestInPlace(request); !st.ok()) {
      Reject(result, st.message());
      continue;
    }
    fresh.push_back({lookup[j], std::move(request)});
  }

  // One person, one customer: across known leads, earlier chunks in flight
  // and earlier rows of this chunk.
  std::vector<ContactRegistry::Candidate> candidates;
  candidates.reserve(fresh.size());
  for (const auto& f : fresh) {
    candidates.push_back({commands_.store().ContactKeys(f.request.contact()), NewId("cus")});
  }
  LeadIdPool ids(fresh.size());
  CRM_ASSIGN_OR_RETURN(
      auto resolved,
      commands_.contacts().Resolve(
          candidates, [&](const std::string& customer) { return ids.For(customer); }, owner_));
  Chunk chunk;
  for (const auto& r : resolved) chunk.claimed.Add(r);

  std::vector<crm::v1::Lead> previews(fresh.size());
  std::vector<const crm::v1::Lead*> preview_ptrs;
  preview_ptrs.reserve(fresh.size());
  for (size_t j = 0; j < fresh.size(); ++j) {
    previews[j].set_region(fresh[j].request.region());
    *previews[j].mutable_product_interests() = fresh[j].request.product_interests();
    preview_ptrs.push_back(&previews[j]);
  }
  std::vector<Assignment> assignments = commands_.assigner().Choose(preview_ptrs);

  chunk.appends.reserve(fresh.size());
  chunk.assignments.reserve(fresh.size());
  EventContext ctx = ctx_;
  // Rows are captured when their chunk is written, not when the call began:
  // a stream may idle between messages while CaptureLead takes the person,
  // and the first-seen time must not go back before that.
  ctx.occurred_at = absl::Now();
  // One data key per customer of the chunk, reused by its later rows.
  absl::flat_hash_map<std::string, pii::DataKey> chunk_keys;
  for (size_t j = 0; j < fresh.size(); ++j) {
    auto& result = results_[base + fresh[j].index];
    CaptureLead command;
    command.lead_id = std::move(resolved[j].lead_id);
    command.customer_id = resolved[j].customer_id;
    command.duplicate_of_lead_id = resolved[j].duplicate_of_lead_id;
    command.assignment = assignments[j];
    command.import_id = import_id_;
    command.import_row = result.row_number();
    command.request = std::move(fresh[j].request);
    ctx.causation_id = command.request.request_id();
    auto [key, added] = chunk_keys.try_emplace(command.customer_id);
    if (added && session_keys_.contains(command.customer_id)) {
      // Issued by an earlier chunk of this call, whose write may not have
      // landed yet: the vault would issue the person a second key.
      key->second = session_keys_.at(command.customer_id);
    } else if (added) {
      // A customer minted for this row has no key to look up.
      auto found = command.customer_id == candidates[j].new_customer_id
                       ? commands_.store().vault().NewKey(command.customer_id, ctx)
                       : commands_.store().vault().KeyFor(command.customer_id, ctx);
      if (!found.ok()) {
        // Nothing of the chunk is written: give back what it took.
        commands_.contacts().Release(chunk.claimed);
        for (const auto& a : chunk.assignments) commands_.assigner().Undo(a);
        for (size_t k = j; k < assignments.size(); ++k) commands_.assigner().Undo(assignments[k]);
        return found.status();
      }
      pii::KeyVault::Sealing sealing = *std::move(found);
      key->second = sealing.key;
      if (sealing.issue.has_value()) {
        chunk.key_appends.push_back(*std::move(sealing.issue));
        chunk.keys.emplace_back(command.customer_id, sealing.key);
        session_keys_.emplace(command.customer_id, sealing.key);
      }
    }
    pii::SealFields(command.request, key->second);
    auto lead = PrepareNewLead(command, resolved[j].claimed, ctx);
    if (!lead.ok()) {
      commands_.assigner().Undo(assignments[j]);
      Reject(result, lead.status().message());
      continue;
    }
    result.set_outcome(command.duplicate_of_lead_id.empty()
                           ? crm::v1::IMPORT_ROW_OUTCOME_ACCEPTED
                           : crm::v1::IMPORT_ROW_OUTCOME_DUPLICATE);
    result.set_lead_id(command.lead_id);
    result.set_customer_id(command.customer_id);
    result.set_duplicate_of_lead_id(command.duplicate_of_lead_id);
    result.set_owner_id(lead->state.owner_id());
    result.set_queue(lead->state.queue());
    result.set_score(lead->state.score().total());
    result.set_row_fingerprint(std::move(fingerprints[fresh[j].index]));
    lead->append.projection_writes.push_back(LeadStore::ImportRowWrite(import_key_, result));
    result.clear_row_fingerprint();
    chunk.appends.push_back(std::move(lead->append));
    chunk.assignments.push_back(std::move(assignments[j]));
    chunk.halves.push_back(HalfOf(command.customer_id));
  }
  return chunk;
}

absl::Status ImportSession::Write(Chunk chunk) {
  // Two appends at once, each one synced WriteBatch; they take disjoint
  // lock stripes (see LeadIdPool) and share RocksDB's write group. A
  // person's rows are in one half, so a half that fails takes all of them.
  // The chunk is admitted as a whole, keys and rows: a half refused after
  // the keys landed (RESOURCE_EXHAUSTED while the broker is away) would
  // leave keys nothing uses, and the retry would issue new ones.
  // Nothing of the chunk written: what it took is given back.
  auto refused = [&](absl::Status st) {
    commands_.contacts().Release(chunk.claimed);
    for (auto& a : chunk.assignments) commands_.assigner().Undo(a);
    return st;
  };
  uint64_t events = 0;
  for (const auto& a : chunk.key_appends) events += a.events.size();
  for (const auto& a : chunk.appends) events += a.events.size();
  if (auto st = commands_.store().events().Admit(events); !st.ok()) return refused(st);
  constexpr auto kAdmitted = EventStore::Admission::kUnlimited;
  if (!chunk.key_appends.empty()) {
    // Keys first: a crash in between leaves unused keys, never rows that
    // no key opens.
    auto written = commands_.store().events().AppendBatch(std::move(chunk.key_appends), kAdmitted);
    absl::Status st = written.status();
    for (size_t k = 0; st.ok() && k < written->size(); ++k) st = (*written)[k].status();
    if (!st.ok()) return refused(st);
    for (const auto& [customer_id, key] : chunk.keys) {
      commands_.store().vault().Issued(customer_id, key);
    }
  }
  std::vector<AppendRequest> halves[2];
  std::vector<size_t> index[2];
  for (size_t j = 0; j < chunk.appends.size(); ++j) {
    const int h = chunk.halves[j];
    halves[h].push_back(std::move(chunk.appends[j]));
    index[h].push_back(j);
  }
  absl::StatusOr<std::vector<absl::StatusOr<AppendResult>>> results[2];
  {
    // This runs on one of the two writers; the other takes the second half.
    absl::Notification second;
    writers_->Run([&] {
      results[1] = commands_.store().events().AppendBatch(std::move(halves[1]), kAdmitted);
      second.Notify();
    });
    results[0] = commands_.store().events().AppendBatch(std::move(halves[0]), kAdmitted);
    second.WaitForNotification();
  }
  commands_.contacts().Release(chunk.claimed);
  absl::Status status;
  for (int h = 0; h < 2; ++h) {
    for (size_t k = 0; k < index[h].size(); ++k) {
      const auto& result = results[h];
      if (result.ok() && (*result)[k].ok() && !(*result)[k]->replayed) continue;
      commands_.assigner().Undo(chunk.assignments[index[h][k]]);
      // New streams without request keys cannot conflict; if one did, the
      // call fails and a replay settles the row.
      if (status.ok()) {
        status = !result.ok()        ? result.status()
                 : (*result)[k].ok() ? absl::InternalError("import row replayed unexpectedly")
                                     : (*result)[k].status();
      }
    }
  }
  return status;
}

}  // namespace crm::leads
