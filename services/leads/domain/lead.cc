#include "services/leads/domain/lead.h"

#include <algorithm>
#include <cctype>
#include <tuple>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "google/protobuf/util/message_differencer.h"
#include "libs/common/contact_fields.h"
#include "libs/common/ids.h"
#include "libs/common/pii/sealed_value.h"
#include "libs/common/text.h"
#include "services/leads/domain/scoring.h"

namespace crm::leads {
namespace {

constexpr size_t kMaxName = 100;
constexpr size_t kMaxCompany = 200;
constexpr int64_t kMaxMinorUnits = 1'000'000'000'000'000;  // 10^15
constexpr size_t kMaxRegion = 64;
constexpr size_t kMaxRequestId = 128;
constexpr size_t kMaxInterests = 50;
constexpr size_t kMaxInterestLength = 64;
constexpr absl::Duration kClockSkew = absl::Minutes(5);
constexpr size_t kMaxAttributes = 50;
constexpr size_t kMaxAttributeKey = 64;
constexpr size_t kMaxAttributeValue = 1024;
constexpr size_t kMaxId = 64;
constexpr size_t kMaxReason = 500;
constexpr size_t kMaxNote = 2000;
constexpr size_t kMaxQueue = 64;

absl::Status Invalid(absl::string_view field, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", why));
}

absl::Status CheckRequestId(absl::string_view request_id) {
  return CheckText("request_id", request_id, kMaxRequestId, /*required=*/true);
}

absl::Status CheckMoney(absl::string_view field, const crm::v1::Money& money) {
  if (money.minor_units() < 0) return Invalid(absl::StrCat(field, ".minor_units"), "negative");
  // The sales service's bound: an amount it could not open an opportunity
  // with is refused here, not lost at conversion.
  if (money.minor_units() >= kMaxMinorUnits) {
    return Invalid(absl::StrCat(field, ".minor_units"),
                   absl::StrCat("at most ", kMaxMinorUnits - 1));
  }
  const std::string& c = money.currency();
  if (c.size() != 3 ||
      !std::all_of(c.begin(), c.end(), [](char ch) { return ch >= 'A' && ch <= 'Z'; })) {
    return Invalid(absl::StrCat(field, ".currency"), "an ISO 4217 code such as EUR");
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status NormalizeList(absl::string_view field,
                           google::protobuf::RepeatedPtrField<std::string>* list,
                           size_t max_entries, size_t max_length) {
  if (static_cast<size_t>(list->size()) > max_entries) {
    return Invalid(field, absl::StrCat("more than ", max_entries, " entries"));
  }
  google::protobuf::RepeatedPtrField<std::string> out;
  absl::flat_hash_set<std::string> seen;
  for (int i = 0; i < list->size(); ++i) {
    std::string v(absl::StripAsciiWhitespace(list->Get(i)));
    const std::string entry = absl::StrCat(field, "[", i, "]");
    if (v.empty()) return Invalid(entry, "empty entry");
    if (auto st = CheckText(entry, v, max_length); !st.ok()) return st;
    if (seen.insert(absl::AsciiStrToLower(v)).second) *out.Add() = std::move(v);
  }
  *list = std::move(out);
  return absl::OkStatus();
}

namespace {

absl::Status CheckBant(const crm::v1::Bant& bant) {
  if (bant.has_budget()) {
    if (auto st = CheckMoney("bant.budget", bant.budget()); !st.ok()) return st;
  }
  if (auto st = CheckText("bant.need", bant.need(), kMaxReason, false, kMultiline); !st.ok()) {
    return st;
  }
  if (!crm::v1::PurchaseTimeline_IsValid(bant.timeline())) {
    return Invalid("bant.timeline", "unknown value");
  }
  return absl::OkStatus();
}

// The need is sealed before the score sees it: a blank one is made empty
// here, or its ciphertext would count as a stated need.
void TrimNeed(crm::v1::Bant& bant) {
  bant.set_need(std::string(absl::StripAsciiWhitespace(bant.need())));
}

absl::Status Precondition(absl::string_view why) { return absl::FailedPreconditionError(why); }

// The checks every command on an existing lead shares.
absl::StatusOr<const crm::v1::Lead*> Existing(const std::optional<crm::v1::Lead>& state,
                                              int64_t expected_version) {
  if (!state.has_value()) return absl::NotFoundError("lead not found");
  if (auto st = CheckVersion(*state, expected_version); !st.ok()) return st;
  if (state->status() == crm::v1::LEAD_STATUS_MERGED) {
    return Precondition(
        absl::StrCat("lead ", state->lead_id(), " was merged into ", state->merged_into_lead_id()));
  }
  return &*state;
}

absl::Status NotConverted(const crm::v1::Lead& lead) {
  if (lead.status() == crm::v1::LEAD_STATUS_CONVERTED) {
    return Precondition(absl::StrCat("lead ", lead.lead_id(), " is already converted"));
  }
  return absl::OkStatus();
}

std::string StatusName(crm::v1::LeadStatus status) {
  absl::string_view name = crm::v1::LeadStatus_Name(status);
  absl::ConsumePrefix(&name, "LEAD_STATUS_");
  return absl::AsciiStrToLower(name);
}

// Adds LeadScoreChanged when `events` move the score.
void ScoreAfter(const crm::v1::Lead& state, std::vector<LeadEvent>& events,
                absl::string_view reason) {
  crm::v1::Lead next = state;
  for (const auto& e : events) Apply(next, e, absl::UnixEpoch());
  const crm::v1::LeadScore score = ComputeScore(next);
  if (SameScore(score, state.score())) return;
  crm::v1::LeadScoreChanged changed;
  changed.set_lead_id(state.lead_id());
  changed.set_customer_id(state.customer_id());
  *changed.mutable_previous() = state.score();
  *changed.mutable_score() = score;
  changed.set_reason(std::string(reason));
  events.push_back(std::move(changed));
}

// The person's name for derived text (notifications, opportunity names).
// Sealed contact data stays out of it: free text is never decrypted, and
// an erasure could not reach it.
std::string PersonName(const crm::v1::Contact& c) {
  std::string name;
  for (const std::string* part : {&c.first_name(), &c.last_name()}) {
    if (!part->empty() && !pii::IsSealed(*part)) absl::StrAppend(&name, " ", *part);
  }
  if (name.empty()) {
    for (const std::string* v : {&c.email(), &c.phone()}) {
      if (!v->empty() && !pii::IsSealed(*v)) return *v;
    }
  }
  return std::string(absl::StripAsciiWhitespace(name));
}

std::string Who(const crm::v1::Lead& lead) {
  std::string name = PersonName(lead.contact());
  if (name.empty()) name = lead.lead_id();
  return lead.company().empty() ? name : absl::StrCat(name, " (", lead.company(), ")");
}

// The reasons the service's own assignments give (LeadAssigned.reason):
// a caller's AssignLead may not give one of them, so consumers can tell a
// conversion or a merge from a person's hand-over.
constexpr absl::string_view kConverted = "converted";
constexpr absl::string_view kReservedReasons[] = {kConverted, "merged", "rule", "capture"};

// What the new owner is told.
enum class Notice { kAssigned, kConverted };

// LeadAssigned, plus OwnerNotified when a person gets the lead.
void AssignmentEvents(const crm::v1::Lead& lead, const Assignment& a, absl::string_view reason,
                      std::vector<LeadEvent>& events, Notice notice = Notice::kAssigned) {
  crm::v1::LeadAssigned assigned;
  assigned.set_lead_id(lead.lead_id());
  assigned.set_customer_id(lead.customer_id());
  assigned.set_owner_id(a.owner_id);
  assigned.set_team_id(a.team_id);
  if (a.owner_id.empty()) assigned.set_queue(a.queue);
  assigned.set_rule_id(a.rule_id);
  assigned.set_previous_owner_id(lead.owner_id());
  assigned.set_previous_queue(lead.queue());
  assigned.set_reason(std::string(reason));
  events.push_back(std::move(assigned));
  if (a.owner_id.empty()) return;
  crm::v1::OwnerNotified notified;
  notified.set_owner_id(a.owner_id);
  notified.set_lead_id(lead.lead_id());
  notified.set_customer_id(lead.customer_id());
  if (notice == Notice::kConverted) {
    // Not work on the lead (it is converted): the opportunity it opens.
    notified.set_topic("lead_converted");
    notified.set_message(absl::StrCat("Lead converted for you: ", Who(lead),
                                      "; its account and opportunity are yours"));
  } else {
    notified.set_topic("lead_assigned");
    notified.set_message(
        absl::StrCat("New lead for you: ", Who(lead), ", score ", lead.score().total()));
  }
  events.push_back(std::move(notified));
}

absl::StatusOr<std::vector<LeadEvent>> DecideActivity(const crm::v1::Lead& lead,
                                                      const RecordActivity& c) {
  if (auto st = NotConverted(lead); !st.ok()) return st;
  crm::v1::LeadActivityRecorded e;
  e.set_lead_id(lead.lead_id());
  e.set_customer_id(lead.customer_id());
  e.set_type(c.type);
  *e.mutable_activity_at() = ToProtoTimestamp(c.activity_at);
  e.set_detail(c.detail);
  e.set_points(ActivityPoints(c.type));
  std::vector<LeadEvent> events{std::move(e)};
  ScoreAfter(lead, events, "activity");
  return events;
}

absl::StatusOr<std::vector<LeadEvent>> DecideQualify(const crm::v1::Lead& lead,
                                                     const QualifyLead& c) {
  if (auto st = NotConverted(lead); !st.ok()) return st;
  if (lead.status() != crm::v1::LEAD_STATUS_NEW &&
      lead.status() != crm::v1::LEAD_STATUS_NURTURING) {
    return Precondition(absl::StrCat("lead ", lead.lead_id(), " is ", StatusName(lead.status()),
                                     "; only new or nurtured leads can be qualified"));
  }
  crm::v1::LeadQualified e;
  e.set_lead_id(lead.lead_id());
  e.set_customer_id(lead.customer_id());
  if (c.bant.has_value()) {
    // The event carries the BANT that results: what the rep confirmed over
    // what was known.
    crm::v1::Bant bant = lead.bant();
    if (c.bant->has_budget()) *bant.mutable_budget() = c.bant->budget();
    // decision_maker has no presence: false is also "not said", so only a
    // confirmation changes it, like the other parts left unset.
    if (c.bant->decision_maker()) bant.set_decision_maker(true);
    if (!c.bant->need().empty()) bant.set_need(c.bant->need());
    if (c.bant->timeline() != crm::v1::PURCHASE_TIMELINE_UNSPECIFIED) {
      bant.set_timeline(c.bant->timeline());
    }
    // Unset when the rep confirmed only what was known: consumers read a
    // present BANT as a change.
    if (!google::protobuf::util::MessageDifferencer::Equals(bant, lead.bant())) {
      *e.mutable_bant() = std::move(bant);
    }
  }
  e.set_note(c.note);
  std::vector<LeadEvent> events{std::move(e)};
  ScoreAfter(lead, events, "qualified");
  return events;
}

absl::StatusOr<std::vector<LeadEvent>> DecideDisqualify(const crm::v1::Lead& lead,
                                                        const DisqualifyLead& c) {
  if (auto st = NotConverted(lead); !st.ok()) return st;
  if (lead.status() == crm::v1::LEAD_STATUS_DISQUALIFIED) {
    return Precondition(absl::StrCat("lead ", lead.lead_id(), " is already disqualified"));
  }
  crm::v1::LeadDisqualified e;
  e.set_lead_id(lead.lead_id());
  e.set_customer_id(lead.customer_id());
  e.set_reason(c.reason);
  return std::vector<LeadEvent>{std::move(e)};
}

absl::StatusOr<std::vector<LeadEvent>> DecideNurture(const crm::v1::Lead& lead,
                                                     const NurtureLead& c) {
  if (auto st = NotConverted(lead); !st.ok()) return st;
  if (lead.status() == crm::v1::LEAD_STATUS_NURTURING) {
    return Precondition(absl::StrCat("lead ", lead.lead_id(), " is already in nurture"));
  }
  crm::v1::LeadNurtureStarted e;
  e.set_lead_id(lead.lead_id());
  e.set_customer_id(lead.customer_id());
  e.set_reason(c.reason);
  return std::vector<LeadEvent>{std::move(e)};
}

std::string DefaultOpportunityName(const crm::v1::Lead& lead) {
  std::string base = lead.company();
  if (base.empty()) base = PersonName(lead.contact());
  if (base.empty()) base = absl::StrCat("Lead ", lead.lead_id());
  if (lead.product_interests().empty()) return TruncateUtf8(base, kMaxCompany);
  // Within the bound of a name the caller gives (and sales accepts).
  return TruncateUtf8(absl::StrCat(base, " - ", absl::StrJoin(lead.product_interests(), ", ")),
                      kMaxCompany);
}

absl::StatusOr<std::vector<LeadEvent>> DecideConvert(const crm::v1::Lead& lead,
                                                     const ConvertLead& c) {
  if (auto st = NotConverted(lead); !st.ok()) return st;
  if (lead.status() != crm::v1::LEAD_STATUS_QUALIFIED) {
    return Precondition(absl::StrCat("lead ", lead.lead_id(), " is ", StatusName(lead.status()),
                                     "; only qualified leads can be converted"));
  }
  const std::string owner = !c.owner_id.empty() ? c.owner_id : lead.owner_id();
  if (owner.empty()) {
    return Precondition(absl::StrCat("owner_id: lead ", lead.lead_id(),
                                     " has no owner; name the owner of the opportunity"));
  }
  crm::v1::LeadConverted e;
  e.set_lead_id(lead.lead_id());
  e.set_customer_id(c.customer_id.empty() ? lead.customer_id() : c.customer_id);
  e.set_owner_id(owner);
  *e.mutable_contact() = lead.contact();
  e.set_company(lead.company());
  e.set_region(!lead.region().empty() ? lead.region() : c.default_region);
  *e.mutable_product_interests() = lead.product_interests();
  e.set_opportunity_name(!c.opportunity_name.empty() ? c.opportunity_name
                                                     : DefaultOpportunityName(lead));
  if (c.estimated_amount.has_value()) {
    *e.mutable_estimated_amount() = *c.estimated_amount;
  } else if (lead.bant().has_budget()) {
    *e.mutable_estimated_amount() = lead.bant().budget();
  }
  e.set_channel(lead.channel());
  e.set_score(lead.score().total());
  e.set_team_id(owner == lead.owner_id() ? lead.team_id() : "");
  std::vector<LeadEvent> events;
  // Converted for someone else: the lead changes hands first, as any
  // assignment does, and its new owner is told.
  if (owner != lead.owner_id()) {
    Assignment assignment;
    assignment.owner_id = owner;
    AssignmentEvents(lead, assignment, kConverted, events, Notice::kConverted);
  }
  events.push_back(std::move(e));
  return events;
}

absl::StatusOr<std::vector<LeadEvent>> DecideAssign(const crm::v1::Lead& lead,
                                                    const AssignLead& c) {
  if (auto st = NotConverted(lead); !st.ok()) return st;
  if (!IsOpen(lead.status())) {
    return Precondition(absl::StrCat("lead ", lead.lead_id(), " is ", StatusName(lead.status()),
                                     "; only open leads can be assigned"));
  }
  if (c.assignment.empty()) return Invalid("owner_id", "an owner or a queue is required");
  const bool same = c.assignment.owner_id.empty()
                        ? lead.owner_id().empty() && c.assignment.queue == lead.queue()
                        : c.assignment.owner_id == lead.owner_id();
  if (same) {
    return Precondition(absl::StrCat("lead ", lead.lead_id(), " is already with ",
                                     lead.owner_id().empty() ? lead.queue() : lead.owner_id()));
  }
  std::vector<LeadEvent> events;
  AssignmentEvents(lead, c.assignment, c.reason.empty() ? "manual" : c.reason, events);
  return events;
}

absl::Status Mergeable(const crm::v1::Lead& lead) {
  if (lead.status() == crm::v1::LEAD_STATUS_MERGED) {
    return Precondition(
        absl::StrCat("lead ", lead.lead_id(), " was merged into ", lead.merged_into_lead_id()));
  }
  if (lead.status() == crm::v1::LEAD_STATUS_CONVERTED) {
    return Precondition(absl::StrCat("lead ", lead.lead_id(),
                                     " is converted; merge the other lead into it instead"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<LeadEvent>> DecideAbsorb(const crm::v1::Lead& lead,
                                                    const AbsorbLead& c) {
  if (c.merged.lead_id() == lead.lead_id()) {
    return Invalid("merged_lead_id", "same as survivor_lead_id");
  }
  if (auto st = Mergeable(c.merged); !st.ok()) return st;
  crm::v1::LeadsMerged e;
  e.set_survivor_lead_id(lead.lead_id());
  e.set_merged_lead_id(c.merged.lead_id());
  e.set_survivor_customer_id(c.survivor_customer_id.empty() ? lead.customer_id()
                                                            : c.survivor_customer_id);
  e.set_merged_customer_id(c.merged_customer_id.empty() ? c.merged.customer_id()
                                                        : c.merged_customer_id);
  *e.mutable_merged_lead() = c.merged;
  std::vector<LeadEvent> events{std::move(e)};
  ScoreAfter(lead, events, "merged");
  // Nobody works the survivor (it waits in a queue) but someone worked the
  // merged lead: the person stays with them, as a missing field is taken
  // from the merged lead.
  if (lead.owner_id().empty() && !c.merged.owner_id().empty() && IsOpen(lead.status())) {
    // Told of the survivor as the merge leaves it: its score counts what
    // the merged lead brought.
    crm::v1::Lead merged = lead;
    for (const auto& e : events) Apply(merged, e, absl::UnixEpoch());
    Assignment assignment;
    assignment.owner_id = c.merged.owner_id();
    assignment.team_id = c.merged.team_id();
    AssignmentEvents(merged, assignment, "merged", events);
  }
  return events;
}

absl::StatusOr<std::vector<LeadEvent>> DecideMergeInto(const crm::v1::Lead& lead,
                                                       const MergeLeadInto& c) {
  if (c.survivor.lead_id() == lead.lead_id()) {
    return Invalid("merged_lead_id", "same as survivor_lead_id");
  }
  if (auto st = Mergeable(lead); !st.ok()) return st;
  if (c.survivor.status() == crm::v1::LEAD_STATUS_MERGED) {
    return Precondition(absl::StrCat("lead ", c.survivor.lead_id(), " was merged into ",
                                     c.survivor.merged_into_lead_id()));
  }
  crm::v1::LeadMergedInto e;
  e.set_lead_id(lead.lead_id());
  e.set_customer_id(lead.customer_id());
  e.set_survivor_lead_id(c.survivor.lead_id());
  e.set_survivor_customer_id(c.survivor_customer_id.empty() ? c.survivor.customer_id()
                                                            : c.survivor_customer_id);
  return std::vector<LeadEvent>{std::move(e)};
}

void AddMissing(std::string* into, const std::string& from) {
  if (into->empty()) *into = from;
}

void ApplyMerged(crm::v1::Lead& state, const crm::v1::LeadsMerged& e) {
  const crm::v1::Lead& m = e.merged_lead();
  if (std::find(state.merged_lead_ids().begin(), state.merged_lead_ids().end(),
                e.merged_lead_id()) == state.merged_lead_ids().end()) {
    state.add_merged_lead_ids(e.merged_lead_id());
  }
  // What was merged into the merged lead comes along: one history.
  for (const auto& id : m.merged_lead_ids()) state.add_merged_lead_ids(id);
  auto* c = state.mutable_contact();
  AddMissing(c->mutable_first_name(), m.contact().first_name());
  AddMissing(c->mutable_last_name(), m.contact().last_name());
  AddMissing(c->mutable_email(), m.contact().email());
  AddMissing(c->mutable_phone(), m.contact().phone());
  AddMissing(c->mutable_title(), m.contact().title());
  AddMissing(state.mutable_company(), m.company());
  AddMissing(state.mutable_region(), m.region());
  // Ignoring case, as capture does: "CRM" and "crm" are one interest and
  // must not count twice towards need. Within capture's bounds, the
  // survivor's first: a lead that absorbed many must still fit in an event
  // (LeadsMerged carries the merged lead whole).
  for (const auto& p : m.product_interests()) {
    if (static_cast<size_t>(state.product_interests_size()) >= kMaxInterests) break;
    if (std::none_of(state.product_interests().begin(), state.product_interests().end(),
                     [&](const std::string& have) { return absl::EqualsIgnoreCase(have, p); })) {
      state.add_product_interests(p);
    }
  }
  // In key order, so the attributes kept do not depend on the map's order.
  std::vector<std::pair<std::string, std::string>> attributes(m.attributes().begin(),
                                                              m.attributes().end());
  std::sort(attributes.begin(), attributes.end());
  for (auto& [k, v] : attributes) {
    if (static_cast<size_t>(state.attributes_size()) >= kMaxAttributes) break;
    state.mutable_attributes()->insert({k, std::move(v)});
  }
  // Consent stays the survivor's: merging must never grant a permission.
  auto* bant = state.mutable_bant();
  if (!bant->has_budget() && m.bant().has_budget()) *bant->mutable_budget() = m.bant().budget();
  bant->set_decision_maker(bant->decision_maker() || m.bant().decision_maker());
  AddMissing(bant->mutable_need(), m.bant().need());
  if (bant->timeline() == crm::v1::PURCHASE_TIMELINE_UNSPECIFIED) {
    bant->set_timeline(m.bant().timeline());
  }
  state.set_engagement_points(state.engagement_points() + m.engagement_points());
  state.set_activity_count(state.activity_count() + m.activity_count());
  if (m.has_last_activity_at() &&
      (!state.has_last_activity_at() ||
       FromProtoTimestamp(state.last_activity_at()) < FromProtoTimestamp(m.last_activity_at()))) {
    *state.mutable_last_activity_at() = m.last_activity_at();
  }
}

}  // namespace

absl::Status CheckText(absl::string_view field, absl::string_view value, size_t max, bool required,
                       bool multiline) {
  if (required && absl::StripAsciiWhitespace(value).empty()) return Invalid(field, "required");
  if (value.size() > max) return Invalid(field, absl::StrCat("longer than ", max, " bytes"));
  if (HasControlCharacters(value, multiline)) return Invalid(field, "contains control characters");
  return absl::OkStatus();
}

absl::Status CheckVersion(const crm::v1::Lead& lead, int64_t expected_version) {
  if (expected_version == kAnyVersion || expected_version == lead.version()) {
    return absl::OkStatus();
  }
  return absl::AbortedError(absl::StrCat("lead ", lead.lead_id(), " is at version ", lead.version(),
                                         ", expected ", expected_version));
}

absl::Status CheckId(absl::string_view field, absl::string_view id) {
  if (id.empty()) return Invalid(field, "required");
  if (id.size() > kMaxId) return Invalid(field, absl::StrCat("longer than ", kMaxId, " bytes"));
  for (char c : id) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '-' && c != '.' &&
        c != ':' && c != '@' && c != '|') {
      // '|' for identity providers' subjects ("google-oauth2|1234"), which
      // become owner ids.
      return Invalid(field, "may contain only letters, digits and _ - . : @ |");
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<crm::v1::CaptureLeadRequest> NormalizeCaptureRequest(
    const crm::v1::CaptureLeadRequest& request) {
  crm::v1::CaptureLeadRequest r = request;
  if (auto st = NormalizeCaptureRequestInPlace(r); !st.ok()) return st;
  return r;
}

absl::Status NormalizeCaptureRequestInPlace(crm::v1::CaptureLeadRequest& r) {
  if (auto st = CheckRequestId(r.request_id()); !st.ok()) return st;
  if (r.channel() == crm::v1::LEAD_CHANNEL_UNSPECIFIED) return Invalid("channel", "required");
  if (!crm::v1::LeadChannel_IsValid(r.channel())) return Invalid("channel", "unknown channel");
  auto* c = r.mutable_contact();
  // A blank cell is no contact: the other one may still name the person.
  if (TrimContact(c->email()).empty()) c->clear_email();
  if (TrimContact(c->phone()).empty()) c->clear_phone();
  if (c->email().empty() && c->phone().empty()) {
    return Invalid("contact", "an email or a phone is required");
  }
  if (!c->email().empty()) {
    auto email = NormalizeEmail(c->email(), "contact.email");
    if (!email.ok()) return email.status();
    c->set_email(*email);
  }
  if (!c->phone().empty()) {
    auto phone = NormalizePhone(c->phone(), "contact.phone");
    if (!phone.ok()) return phone.status();
    c->set_phone(*phone);
  }
  c->set_first_name(std::string(absl::StripAsciiWhitespace(c->first_name())));
  c->set_last_name(std::string(absl::StripAsciiWhitespace(c->last_name())));
  c->set_title(std::string(absl::StripAsciiWhitespace(c->title())));
  r.set_company(std::string(absl::StripAsciiWhitespace(r.company())));
  r.set_region(std::string(absl::StripAsciiWhitespace(r.region())));
  for (auto [field, value, max] : {std::tuple{"contact.first_name", c->first_name(), kMaxName},
                                   std::tuple{"contact.last_name", c->last_name(), kMaxName},
                                   std::tuple{"contact.title", c->title(), kMaxName},
                                   std::tuple{"company", r.company(), kMaxCompany},
                                   std::tuple{"region", r.region(), kMaxRegion}}) {
    if (auto st = CheckText(field, value, max); !st.ok()) return st;
  }
  if (auto st = NormalizeList("product_interests", r.mutable_product_interests(), kMaxInterests,
                              kMaxInterestLength);
      !st.ok()) {
    return st;
  }
  if (r.attributes_size() > static_cast<int>(kMaxAttributes)) {
    return Invalid("attributes", absl::StrCat("more than ", kMaxAttributes, " entries"));
  }
  // Keys trimmed, as a spreadsheet's header cells come: "email " and
  // "email" would be two attributes of one meaning.
  google::protobuf::Map<std::string, std::string> attributes;
  for (const auto& [raw_key, v] : r.attributes()) {
    const std::string k(absl::StripAsciiWhitespace(raw_key));
    if (k.empty()) return Invalid("attributes", "empty key");
    if (auto st = CheckText("attributes", k, kMaxAttributeKey); !st.ok()) return st;
    if (auto st = CheckText(absl::StrCat("attributes[", k, "]"), v, kMaxAttributeValue, false,
                            kMultiline);
        !st.ok()) {
      return st;
    }
    if (!attributes.try_emplace(k, v).second) {
      return Invalid(absl::StrCat("attributes[", k, "]"), "given twice (once with spaces)");
    }
  }
  *r.mutable_attributes() = std::move(attributes);
  if (r.has_bant()) {
    if (auto st = CheckBant(r.bant()); !st.ok()) return st;
    TrimNeed(*r.mutable_bant());
  }
  return absl::OkStatus();
}

crm::v1::CaptureLeadRequest RowAsCaptureRequest(crm::v1::ImportLeadRow row,
                                                crm::v1::LeadChannel default_channel) {
  crm::v1::CaptureLeadRequest r;
  r.set_channel(row.channel() != crm::v1::LEAD_CHANNEL_UNSPECIFIED ? row.channel()
                                                                   : default_channel);
  if (row.has_contact()) r.set_allocated_contact(row.release_contact());
  r.set_company(std::move(*row.mutable_company()));
  r.set_region(std::move(*row.mutable_region()));
  r.mutable_product_interests()->Swap(row.mutable_product_interests());
  if (row.has_consent()) r.set_allocated_consent(row.release_consent());
  r.mutable_attributes()->swap(*row.mutable_attributes());
  if (row.has_bant()) r.set_allocated_bant(row.release_bant());
  return r;
}

absl::StatusOr<RecordActivity> ParseRecordActivity(const crm::v1::RecordLeadActivityRequest& r,
                                                   absl::Time now) {
  if (auto st = CheckRequestId(r.request_id()); !st.ok()) return st;
  if (auto st = CheckId("lead_id", r.lead_id()); !st.ok()) return st;
  if (r.expected_version() < 0) return Invalid("expected_version", "negative");
  if (r.type() == crm::v1::LEAD_ACTIVITY_TYPE_UNSPECIFIED) return Invalid("type", "required");
  if (!crm::v1::LeadActivityType_IsValid(r.type())) return Invalid("type", "unknown type");
  if (auto st = CheckText("detail", r.detail(), kMaxReason, false, kMultiline); !st.ok()) return st;
  RecordActivity c;
  c.expected_version = r.expected_version();
  c.type = r.type();
  if (r.has_occurred_at() && !IsValidProtoTimestamp(r.occurred_at())) {
    return Invalid("occurred_at", "out of range");
  }
  c.activity_at = r.has_occurred_at() ? FromProtoTimestamp(r.occurred_at()) : now;
  // A client clock a little ahead is no error; a date to come would stay
  // the lead's latest activity until then, whatever happened meanwhile.
  if (c.activity_at > now + kClockSkew) return Invalid("occurred_at", "in the future");
  c.detail = r.detail();
  return c;
}

absl::StatusOr<QualifyLead> ParseQualify(const crm::v1::QualifyLeadRequest& r) {
  if (auto st = CheckRequestId(r.request_id()); !st.ok()) return st;
  if (auto st = CheckId("lead_id", r.lead_id()); !st.ok()) return st;
  if (r.expected_version() < 0) return Invalid("expected_version", "negative");
  if (auto st = CheckText("note", r.note(), kMaxNote, false, kMultiline); !st.ok()) return st;
  QualifyLead c;
  c.expected_version = r.expected_version();
  if (r.has_bant()) {
    if (auto st = CheckBant(r.bant()); !st.ok()) return st;
    c.bant = r.bant();
    TrimNeed(*c.bant);
  }
  c.note = r.note();
  return c;
}

absl::StatusOr<DisqualifyLead> ParseDisqualify(const crm::v1::DisqualifyLeadRequest& r) {
  if (auto st = CheckRequestId(r.request_id()); !st.ok()) return st;
  if (auto st = CheckId("lead_id", r.lead_id()); !st.ok()) return st;
  if (r.expected_version() < 0) return Invalid("expected_version", "negative");
  const std::string reason(absl::StripAsciiWhitespace(r.reason()));
  if (auto st = CheckText("reason", reason, kMaxReason, /*required=*/true, kMultiline); !st.ok())
    return st;
  return DisqualifyLead{r.expected_version(), reason};
}

absl::StatusOr<NurtureLead> ParseNurture(const crm::v1::NurtureLeadRequest& r) {
  if (auto st = CheckRequestId(r.request_id()); !st.ok()) return st;
  if (auto st = CheckId("lead_id", r.lead_id()); !st.ok()) return st;
  if (r.expected_version() < 0) return Invalid("expected_version", "negative");
  const std::string reason(absl::StripAsciiWhitespace(r.reason()));
  if (auto st = CheckText("reason", reason, kMaxReason, false, kMultiline); !st.ok()) return st;
  return NurtureLead{r.expected_version(), reason};
}

absl::StatusOr<ConvertLead> ParseConvert(const crm::v1::ConvertLeadRequest& r) {
  if (auto st = CheckRequestId(r.request_id()); !st.ok()) return st;
  if (auto st = CheckId("lead_id", r.lead_id()); !st.ok()) return st;
  if (r.expected_version() < 0) return Invalid("expected_version", "negative");
  if (!r.owner_id().empty()) {
    if (auto st = CheckId("owner_id", r.owner_id()); !st.ok()) return st;
  }
  if (auto st = CheckText("opportunity_name", r.opportunity_name(), kMaxCompany); !st.ok()) {
    return st;
  }
  ConvertLead c;
  c.expected_version = r.expected_version();
  c.owner_id = r.owner_id();
  c.opportunity_name = std::string(absl::StripAsciiWhitespace(r.opportunity_name()));
  if (r.has_estimated_amount()) {
    if (auto st = CheckMoney("estimated_amount", r.estimated_amount()); !st.ok()) return st;
    c.estimated_amount = r.estimated_amount();
  }
  return c;
}

absl::StatusOr<AssignLead> ParseAssign(const crm::v1::AssignLeadRequest& r) {
  if (auto st = CheckRequestId(r.request_id()); !st.ok()) return st;
  if (auto st = CheckId("lead_id", r.lead_id()); !st.ok()) return st;
  if (r.expected_version() < 0) return Invalid("expected_version", "negative");
  if (r.owner_id().empty() == r.queue().empty()) {
    return Invalid("owner_id", "exactly one of owner_id and queue");
  }
  AssignLead c;
  c.expected_version = r.expected_version();
  if (!r.owner_id().empty()) {
    if (auto st = CheckId("owner_id", r.owner_id()); !st.ok()) return st;
    c.assignment.owner_id = r.owner_id();
  } else {
    // Trimmed: "emea " is the queue "emea" (ListLeads takes its filter as
    // given, so leads queued before queues were trimmed stay listable).
    const std::string queue(absl::StripAsciiWhitespace(r.queue()));
    if (auto st = CheckText("queue", queue, kMaxQueue, /*required=*/true); !st.ok()) return st;
    c.assignment.queue = queue;
  }
  const std::string reason(absl::StripAsciiWhitespace(r.reason()));
  if (auto st = CheckText("reason", reason, kMaxReason, false, kMultiline); !st.ok()) return st;
  for (const absl::string_view reserved : kReservedReasons) {
    if (absl::EqualsIgnoreCase(reason, reserved)) {
      return Invalid(
          "reason",
          absl::StrCat("\"", reserved, "\" is the service's own reason; say it in other words"));
    }
  }
  c.reason = reason;
  return c;
}

absl::Status ValidateMergeFields(const crm::v1::MergeLeadsRequest& r) {
  if (auto st = CheckRequestId(r.request_id()); !st.ok()) return st;
  if (auto st = CheckId("survivor_lead_id", r.survivor_lead_id()); !st.ok()) return st;
  if (auto st = CheckId("merged_lead_id", r.merged_lead_id()); !st.ok()) return st;
  if (r.survivor_expected_version() < 0) return Invalid("survivor_expected_version", "negative");
  if (r.merged_expected_version() < 0) return Invalid("merged_expected_version", "negative");
  return absl::OkStatus();
}

absl::Status ValidateMerge(const crm::v1::MergeLeadsRequest& r) {
  if (auto st = ValidateMergeFields(r); !st.ok()) return st;
  if (r.survivor_lead_id() == r.merged_lead_id()) {
    return Invalid("merged_lead_id", "same as survivor_lead_id");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<LeadEvent>> Decide(const std::optional<crm::v1::Lead>& state,
                                              const CaptureLead& command) {
  if (state.has_value()) {
    return absl::AlreadyExistsError(absl::StrCat("lead ", command.lead_id, " already exists"));
  }
  if (command.lead_id.empty() || command.customer_id.empty()) {
    return absl::InvalidArgumentError("lead_id and customer_id must be assigned");
  }
  const auto& r = command.request;
  crm::v1::LeadCaptured e;
  e.set_lead_id(command.lead_id);
  e.set_customer_id(command.customer_id);
  e.set_channel(r.channel());
  *e.mutable_contact() = r.contact();
  e.set_company(r.company());
  e.set_region(r.region());
  *e.mutable_product_interests() = r.product_interests();
  if (r.has_consent()) *e.mutable_consent() = r.consent();
  *e.mutable_attributes() = r.attributes();
  e.set_duplicate_of_lead_id(command.duplicate_of_lead_id);
  if (r.has_bant()) *e.mutable_bant() = r.bant();
  e.set_import_id(command.import_id);
  e.set_import_row(command.import_row);
  // What scoring and the notification read of the new lead (attributes
  // are left out: bulk import decides thousands of these).
  crm::v1::Lead captured;
  captured.set_lead_id(e.lead_id());
  captured.set_customer_id(e.customer_id());
  captured.set_channel(e.channel());
  *captured.mutable_contact() = e.contact();
  captured.set_company(e.company());
  *captured.mutable_product_interests() = e.product_interests();
  if (e.has_bant()) *captured.mutable_bant() = e.bant();
  captured.set_queue(kDefaultQueue);
  *e.mutable_score() = ComputeScore(captured);
  *captured.mutable_score() = e.score();

  std::vector<LeadEvent> events{std::move(e)};
  if (!command.assignment.empty()) {
    AssignmentEvents(captured, command.assignment,
                     command.assignment.rule_id.empty() ? "capture" : "rule", events);
  }
  return events;
}

absl::StatusOr<std::vector<LeadEvent>> Decide(const std::optional<crm::v1::Lead>& state,
                                              const LeadCommand& command) {
  return std::visit(
      [&](const auto& c) -> absl::StatusOr<std::vector<LeadEvent>> {
        using C = std::decay_t<decltype(c)>;
        if constexpr (std::is_same_v<C, CaptureLead>) {
          return Decide(state, c);
        } else {
          auto lead = Existing(state, c.expected_version);
          if (!lead.ok()) return lead.status();
          if constexpr (std::is_same_v<C, RecordActivity>) return DecideActivity(**lead, c);
          if constexpr (std::is_same_v<C, QualifyLead>) return DecideQualify(**lead, c);
          if constexpr (std::is_same_v<C, DisqualifyLead>) return DecideDisqualify(**lead, c);
          if constexpr (std::is_same_v<C, NurtureLead>) return DecideNurture(**lead, c);
          if constexpr (std::is_same_v<C, ConvertLead>) return DecideConvert(**lead, c);
          if constexpr (std::is_same_v<C, AssignLead>) return DecideAssign(**lead, c);
          if constexpr (std::is_same_v<C, AbsorbLead>) return DecideAbsorb(**lead, c);
          if constexpr (std::is_same_v<C, MergeLeadInto>) return DecideMergeInto(**lead, c);
        }
      },
      command);
}

void Apply(crm::v1::Lead& state, const LeadEvent& event, absl::Time occurred_at) {
  std::visit(
      [&](const auto& e) {
        using T = std::decay_t<decltype(e)>;
        if constexpr (std::is_same_v<T, crm::v1::LeadCaptured>) {
          state.set_lead_id(e.lead_id());
          state.set_customer_id(e.customer_id());
          state.set_status(crm::v1::LEAD_STATUS_NEW);
          state.set_channel(e.channel());
          *state.mutable_contact() = e.contact();
          state.set_company(e.company());
          state.set_region(e.region());
          *state.mutable_product_interests() = e.product_interests();
          if (e.has_consent()) *state.mutable_consent() = e.consent();
          *state.mutable_attributes() = e.attributes();
          state.set_duplicate_of_lead_id(e.duplicate_of_lead_id());
          *state.mutable_captured_at() = ToProtoTimestamp(occurred_at);
          if (e.has_bant()) *state.mutable_bant() = e.bant();
          if (e.has_score()) *state.mutable_score() = e.score();
          state.set_queue(kDefaultQueue);
          state.set_import_id(e.import_id());
          state.set_import_row(e.import_row());
        } else if constexpr (std::is_same_v<T, crm::v1::LeadAssigned>) {
          state.set_owner_id(e.owner_id());
          state.set_team_id(e.team_id());
          state.set_queue(e.owner_id().empty() ? e.queue() : "");
          state.set_assignment_rule_id(e.rule_id());
        } else if constexpr (std::is_same_v<T, crm::v1::LeadActivityRecorded>) {
          state.set_engagement_points(state.engagement_points() + e.points());
          state.set_activity_count(state.activity_count() + 1);
          if (!state.has_last_activity_at() ||
              FromProtoTimestamp(state.last_activity_at()) < FromProtoTimestamp(e.activity_at())) {
            *state.mutable_last_activity_at() = e.activity_at();
          }
        } else if constexpr (std::is_same_v<T, crm::v1::LeadScoreChanged>) {
          *state.mutable_score() = e.score();
        } else if constexpr (std::is_same_v<T, crm::v1::LeadQualified>) {
          state.set_status(crm::v1::LEAD_STATUS_QUALIFIED);
          if (e.has_bant()) *state.mutable_bant() = e.bant();
          state.clear_status_reason();
        } else if constexpr (std::is_same_v<T, crm::v1::LeadDisqualified>) {
          state.set_status(crm::v1::LEAD_STATUS_DISQUALIFIED);
          state.set_status_reason(e.reason());
        } else if constexpr (std::is_same_v<T, crm::v1::LeadNurtureStarted>) {
          state.set_status(crm::v1::LEAD_STATUS_NURTURING);
          state.set_status_reason(e.reason());
        } else if constexpr (std::is_same_v<T, crm::v1::LeadConverted>) {
          state.set_status(crm::v1::LEAD_STATUS_CONVERTED);
          // The customer the account opened for: the survivor's when a
          // merge retired the lead's own (which stays the partition key).
          state.set_converted_customer_id(e.customer_id().empty() ? state.customer_id()
                                                                  : e.customer_id());
          if (e.owner_id() != state.owner_id()) state.clear_team_id();
          state.set_owner_id(e.owner_id());
          state.clear_queue();
        } else if constexpr (std::is_same_v<T, crm::v1::LeadsMerged>) {
          ApplyMerged(state, e);
        } else if constexpr (std::is_same_v<T, crm::v1::LeadMergedInto>) {
          state.set_status(crm::v1::LEAD_STATUS_MERGED);
          state.set_merged_into_lead_id(e.survivor_lead_id());
          // Nobody's work any more, as a converted lead.
          state.clear_queue();
        }
        // OwnerNotified informs; it changes nothing but the version.
      },
      event);
  state.set_version(state.version() + 1);
  *state.mutable_updated_at() = ToProtoTimestamp(occurred_at);
}

bool IsOpen(crm::v1::LeadStatus status) {
  return status == crm::v1::LEAD_STATUS_NEW || status == crm::v1::LEAD_STATUS_QUALIFIED ||
         status == crm::v1::LEAD_STATUS_NURTURING;
}

int32_t ActivityPoints(crm::v1::LeadActivityType type) {
  switch (type) {
    case crm::v1::LEAD_ACTIVITY_TYPE_EMAIL_OPENED:
    case crm::v1::LEAD_ACTIVITY_TYPE_WEB_VISIT:
      return 1;
    case crm::v1::LEAD_ACTIVITY_TYPE_EMAIL_CLICKED:
      return 2;
    case crm::v1::LEAD_ACTIVITY_TYPE_CONTENT_DOWNLOADED:
    case crm::v1::LEAD_ACTIVITY_TYPE_FORM_SUBMITTED:
      return 3;
    case crm::v1::LEAD_ACTIVITY_TYPE_EVENT_ATTENDED:
    case crm::v1::LEAD_ACTIVITY_TYPE_CALL_COMPLETED:
      return 5;
    case crm::v1::LEAD_ACTIVITY_TYPE_MEETING_HELD:
      return 8;
    default:
      return 0;
  }
}

std::string LeadStream(absl::string_view lead_id) { return absl::StrCat("lead-", lead_id); }

std::optional<LeadEvent> UnpackLeadEvent(const crm::v1::EventEnvelope& envelope) {
  std::optional<LeadEvent> out;
  auto try_type = [&](auto tag) {
    using T = decltype(tag);
    if (out.has_value() || !envelope.payload().Is<T>()) return;
    T message;
    if (envelope.payload().UnpackTo(&message)) out = std::move(message);
  };
  std::apply(
      [&](auto... tags) { (try_type(tags), ...); },
      std::tuple<crm::v1::LeadCaptured, crm::v1::LeadAssigned, crm::v1::OwnerNotified,
                 crm::v1::LeadActivityRecorded, crm::v1::LeadScoreChanged, crm::v1::LeadQualified,
                 crm::v1::LeadDisqualified, crm::v1::LeadNurtureStarted, crm::v1::LeadConverted,
                 crm::v1::LeadsMerged, crm::v1::LeadMergedInto>{});
  return out;
}

}  // namespace crm::leads
