#include "services/leads/store/lead_store.h"

#include <algorithm>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "libs/common/auth/record_access.h"
#include "libs/common/database.h"
#include "libs/common/key_codec.h"
#include "libs/common/pii/field_sealer.h"
#include "libs/common/reply_budget.h"
#include "libs/common/status_macros.h"
#include "rocksdb/db.h"

namespace crm::leads {
namespace {

constexpr char kContacts[] = "contacts";
// Two families, not key prefixes in one: the appends of an import chunk
// then reach each memtable in key order (lead ids ascend within a chunk).
constexpr char kByScore[] = "leads_by_score";
constexpr char kByOwner[] = "leads_by_owner";
// Held a summary of each lead: a second copy of most of its state, written
// with every command. Lists now read the state itself.
constexpr char kRetiredById[] = "leads_by_id";
// Value of an entry in the by-score and by-owner indexes: the lead is read
// from its state.
constexpr char kLive[] = "+";
// The range of lead streams in the event store's state family.
std::string LeadStatesBegin() { return LeadStream(""); }
std::string LeadStatesEnd() {
  std::string end = LeadStatesBegin();
  ++end.back();
  return end;
}
constexpr char kImports[] = "imports";
constexpr char kSettings[] = "settings";
constexpr char kRulesKey[] = "assignment_rules";

std::optional<ContactMatch> DecodeContact(absl::string_view raw) {
  std::pair<std::string, std::string> parts = absl::StrSplit(raw, absl::MaxSplits('\n', 1));
  return ContactMatch{parts.first, parts.second};
}

char ScoreByte(int32_t score) { return static_cast<char>(std::clamp(score, 0, 100)); }

std::string Assignee(absl::string_view owner_id, absl::string_view queue) {
  return owner_id.empty() ? absl::StrCat("q:", queue) : absl::StrCat("u:", owner_id);
}

std::string ScoreKey(const crm::v1::Lead& lead) {
  std::string k(1, ScoreByte(lead.score().total()));
  k.append(lead.lead_id());
  return k;
}

std::string OwnerPrefix(absl::string_view assignee) {
  std::string k(assignee);
  k.push_back('\0');
  return k;
}

std::string OwnerKey(const crm::v1::Lead& lead) {
  std::string k = OwnerPrefix(Assignee(lead.owner_id(), lead.queue()));
  k.push_back(ScoreByte(lead.score().total()));
  k.append(lead.lead_id());
  return k;
}

std::string ImportKey(absl::string_view import_key, int64_t row) {
  std::string k = PrefixKey(import_key);
  AppendBigEndian64(&k, static_cast<uint64_t>(row));
  return k;
}

// A lead's summary from its row in the state family.
absl::StatusOr<crm::v1::Lead> LeadOf(absl::string_view stream, absl::string_view row) {
  CRM_ASSIGN_OR_RETURN(StreamState state, EventStore::DecodeState(stream, row));
  crm::v1::Lead lead;
  if (!lead.ParseFromString(state.state)) {
    return absl::DataLossError(absl::StrCat("corrupt state of ", stream));
  }
  lead.set_version(state.version);
  return lead;
}

absl::StatusOr<crm::v1::LeadSummary> SummaryOf(absl::string_view stream, absl::string_view row) {
  CRM_ASSIGN_OR_RETURN(const crm::v1::Lead lead, LeadOf(stream, row));
  return LeadStore::Summarize(lead);
}

bool Matches(const LeadQuery& q, const crm::v1::LeadSummary& s) {
  if (!q.statuses.empty() && !q.statuses.contains(s.status())) return false;
  if (q.channel != crm::v1::LEAD_CHANNEL_UNSPECIFIED && s.channel() != q.channel) return false;
  // As managers' access compares them: a lead stored before regions were
  // trimmed ("EMEA ") is listed with the EMEA leads.
  if (!q.region.empty() && !auth::SameTerritory(s.region(), q.region)) return false;
  if (s.score() < q.min_score || s.score() > q.max_score) return false;
  if (!q.owner_id.empty() && s.owner_id() != q.owner_id) return false;
  if (!q.queue.empty() && (!s.owner_id().empty() || s.queue() != q.queue)) return false;
  return true;
}

}  // namespace

absl::StatusOr<std::unique_ptr<LeadStore>> LeadStore::Open(const std::string& path,
                                                           const pii::MasterKeys& master_keys) {
  std::vector<std::string> families = {kContacts, kByScore,  kByOwner,
                                       kImports,  kSettings, pii::KeyVault::kFamily};
  for (auto& f : Subscriber::Families()) families.push_back(std::move(f));
  CRM_ASSIGN_OR_RETURN(auto events, EventStore::Open(path, families, {kRetiredById}));
  CRM_ASSIGN_OR_RETURN(auto vault,
                       pii::KeyVault::Open(events->db(), events.get(), master_keys, "crm/leads"));
  return std::make_unique<LeadStore>(std::move(events), std::move(vault));
}

// ---- contacts ----

std::vector<std::string> LeadStore::ContactKeys(const crm::v1::Contact& contact) const {
  std::vector<std::string> keys;
  if (!contact.email().empty()) keys.push_back(pii::BlindIndex(*vault_, "email", contact.email()));
  if (!contact.phone().empty()) keys.push_back(pii::BlindIndex(*vault_, "phone", contact.phone()));
  return keys;
}

absl::StatusOr<std::optional<ContactMatch>> LeadStore::FindContact(
    const crm::v1::Contact& contact) const {
  for (const auto& key : ContactKeys(contact)) {
    CRM_ASSIGN_OR_RETURN(auto raw, events_->db().Get(kContacts, key));
    if (raw.has_value()) return DecodeContact(*raw);
  }
  return std::nullopt;
}

absl::StatusOr<std::vector<std::optional<ContactMatch>>> LeadStore::FindContactKeys(
    const std::vector<std::string>& keys) const {
  std::vector<std::optional<ContactMatch>> out(keys.size());
  CRM_ASSIGN_OR_RETURN(auto values, events_->db().MultiGet(kContacts, keys));
  for (size_t i = 0; i < keys.size(); ++i) {
    if (values[i].has_value()) out[i] = DecodeContact(*values[i]);
  }
  return out;
}

ProjectionWrite LeadStore::ContactWrite(const std::string& key, const ContactMatch& match) {
  return {kContacts, key, absl::StrCat(match.lead_id, "\n", match.customer_id)};
}

// ---- list projection ----

crm::v1::LeadSummary LeadStore::Summarize(const crm::v1::Lead& lead) {
  crm::v1::LeadSummary s;
  s.set_lead_id(lead.lead_id());
  s.set_customer_id(lead.customer_id());
  s.set_status(lead.status());
  s.set_channel(lead.channel());
  s.set_region(lead.region());
  s.set_owner_id(lead.owner_id());
  s.set_queue(lead.queue());
  s.set_score(lead.score().total());
  s.set_company(lead.company());
  s.set_first_name(lead.contact().first_name());
  s.set_last_name(lead.contact().last_name());
  s.set_email(lead.contact().email());
  *s.mutable_captured_at() = lead.captured_at();
  s.set_version(lead.version());
  s.set_converted_customer_id(lead.converted_customer_id());
  return s;
}

std::vector<ProjectionWrite> LeadStore::ListWrites(const crm::v1::Lead* before,
                                                   const crm::v1::Lead& after) {
  std::vector<ProjectionWrite> writes;
  writes.reserve(4);
  std::string score_key = ScoreKey(after);
  std::string owner_key = OwnerKey(after);
  if (before != nullptr) {
    if (std::string old = ScoreKey(*before); old != score_key) {
      writes.push_back({kByScore, std::move(old), "", /*erase=*/true});
    }
    if (std::string old = OwnerKey(*before); old != owner_key) {
      writes.push_back({kByOwner, std::move(old), "", /*erase=*/true});
    }
  }
  writes.push_back({kByScore, std::move(score_key), kLive});
  writes.push_back({kByOwner, std::move(owner_key), kLive});
  return writes;
}

absl::StatusOr<crm::v1::ListLeadsResponse> LeadStore::ListLeads(const LeadQuery& q) const {
  // Pick the index: by score when sorting by score (per owner when one is
  // asked for), else capture order over all leads with the filters.
  const bool by_score = q.sort != crm::v1::LEAD_SORT_UNSPECIFIED;
  const bool descending = q.sort == crm::v1::LEAD_SORT_SCORE_DESC;
  const char* family = EventStore::kStateFamily;
  size_t id_offset = 0;  // where the lead id starts in an index key
  std::string lower = LeadStatesBegin();
  std::string upper = LeadStatesEnd();  // exclusive
  if (by_score && (!q.owner_id.empty() || !q.queue.empty())) {
    family = kByOwner;
    const std::string prefix = OwnerPrefix(Assignee(q.owner_id, q.queue));
    id_offset = prefix.size() + 1;
    lower = prefix + ScoreByte(q.min_score);
    upper = prefix + static_cast<char>(q.max_score + 1);
  } else if (by_score) {
    family = kByScore;
    id_offset = 1;
    lower = std::string(1, ScoreByte(q.min_score));
    upper = std::string(1, static_cast<char>(q.max_score + 1));
  }

  std::string resume;
  if (!q.page_token.empty()) {
    if (!absl::WebSafeBase64Unescape(q.page_token, &resume) || resume < lower || resume >= upper) {
      return absl::InvalidArgumentError("page.page_token: not from this query");
    }
  }

  // One snapshot for the index scan and the summaries it points to.
  rocksdb::DB* db = events_->db().raw();
  const rocksdb::Snapshot* snapshot = db->GetSnapshot();
  absl::Cleanup release = [&] { db->ReleaseSnapshot(snapshot); };
  rocksdb::ReadOptions read;
  read.snapshot = snapshot;
  std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(read, events_->db().Family(family)));
  auto in_range = [&] {
    if (!it->Valid()) return false;
    const absl::string_view k = View(it->key());
    return k >= lower && k < upper;
  };
  auto advance = [&] { descending ? it->Prev() : it->Next(); };
  if (descending) {
    it->SeekForPrev(resume.empty() ? upper : resume);
  } else {
    it->Seek(resume.empty() ? lower : resume);
  }
  if (!resume.empty() && it->Valid() && it->key().ToStringView() == resume) advance();

  crm::v1::ListLeadsResponse response;
  size_t examined = 0;
  std::string last_examined;
  std::string stream;
  std::string state_row;
  rocksdb::ColumnFamilyHandle* states = events_->db().Family(EventStore::kStateFamily);
  for (; in_range(); advance()) {
    if (response.leads_size() == q.page_size || examined == kListScanBudget) {
      // More may follow: the next call resumes after the last entry seen.
      response.set_next_page_token(absl::WebSafeBase64Escape(last_examined));
      break;
    }
    ++examined;
    last_examined.assign(it->key().data(), it->key().size());
    rocksdb::Slice row = it->value();
    if (family == EventStore::kStateFamily) {
      stream = last_examined;
    } else {
      stream = LeadStream(View(it->key()).substr(id_offset));
      auto st = db->Get(read, states, stream, &state_row);
      if (st.IsNotFound()) continue;
      CRM_RETURN_IF_ERROR(FromRocks(st));
      row = state_row;
    }
    CRM_ASSIGN_OR_RETURN(crm::v1::LeadSummary summary, SummaryOf(stream, View(row)));
    if (Matches(q, summary)) *response.add_leads() = std::move(summary);
  }
  CRM_RETURN_IF_ERROR(FromRocks(it->status()));
  return response;
}

absl::Status LeadStore::ForEachOwnedLead(
    const std::function<void(const crm::v1::Lead&)>& fn) const {
  // States in id order: every lead once, its current owner inside.
  const std::string prefix = LeadStatesBegin();
  auto it = events_->db().NewIterator(EventStore::kStateFamily);
  for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
    CRM_ASSIGN_OR_RETURN(const crm::v1::Lead lead, LeadOf(View(it->key()), View(it->value())));
    if (!lead.owner_id().empty()) fn(lead);
  }
  return FromRocks(it->status());
}

// ---- imports ----

absl::StatusOr<std::vector<std::optional<crm::v1::ImportRowResult>>> LeadStore::FindImportRows(
    const std::string& import_key, const std::vector<int64_t>& rows) const {
  std::vector<std::optional<crm::v1::ImportRowResult>> out(rows.size());
  if (rows.empty()) return out;
  std::vector<std::string> keys;
  keys.reserve(rows.size());
  for (int64_t row : rows) keys.push_back(ImportKey(import_key, row));
  CRM_ASSIGN_OR_RETURN(auto values, events_->db().MultiGet(kImports, keys));
  for (size_t i = 0; i < keys.size(); ++i) {
    if (!values[i].has_value()) continue;
    crm::v1::ImportRowResult result;
    if (!result.ParseFromString(*values[i])) {
      return absl::DataLossError(absl::StrCat("corrupt import record ", import_key, "/", rows[i]));
    }
    out[i] = std::move(result);
  }
  return out;
}

absl::StatusOr<bool> LeadStore::HasImportRows(const std::string& import_key) const {
  const std::string prefix = PrefixKey(import_key);
  auto it = events_->db().NewIterator(kImports);
  it->Seek(prefix);
  if (it->Valid() && it->key().starts_with(prefix)) return true;
  CRM_RETURN_IF_ERROR(FromRocks(it->status()));
  return false;
}

ProjectionWrite LeadStore::ImportRowWrite(const std::string& import_key,
                                          const crm::v1::ImportRowResult& result) {
  return {kImports, ImportKey(import_key, result.row_number()), result.SerializeAsString()};
}

// ---- assignment rules ----

absl::StatusOr<crm::v1::AssignmentRuleTable> LeadStore::LoadRules() const {
  CRM_ASSIGN_OR_RETURN(auto raw, events_->db().Get(kSettings, kRulesKey));
  crm::v1::AssignmentRuleTable table;
  if (raw.has_value() && !table.ParseFromString(*raw)) {
    return absl::DataLossError("corrupt assignment rule table");
  }
  return table;
}

ProjectionWrite LeadStore::RulesWrite(const crm::v1::AssignmentRuleTable& table) {
  return {kSettings, kRulesKey, table.SerializeAsString()};
}

// ---- leads ----

absl::StatusOr<std::optional<crm::v1::Lead>> LeadStore::FindLead(const std::string& lead_id) const {
  auto state = events_->LoadState(LeadStream(lead_id));
  if (absl::IsNotFound(state.status())) return std::nullopt;
  if (!state.ok()) return state.status();
  crm::v1::Lead lead;
  if (!lead.ParseFromString(state->state)) {
    return absl::DataLossError(absl::StrCat("corrupt state of lead ", lead_id));
  }
  // The store's stream version is the truth the next append checks against.
  lead.set_version(state->version);
  return lead;
}

absl::StatusOr<crm::v1::Lead> LeadStore::GetLead(const std::string& lead_id) const {
  CRM_ASSIGN_OR_RETURN(auto lead, FindLead(lead_id));
  if (!lead.has_value()) {
    return absl::NotFoundError(absl::StrCat("lead_id: lead ", lead_id, " not found"));
  }
  return *std::move(lead);
}

}  // namespace crm::leads
