// The leads service's request validators on arbitrary requests: the first
// byte picks the request, the rest is its protobuf encoding (or raw text
// for the email and phone normalizers). Beyond not crashing: errors are
// INVALID_ARGUMENT naming the field, normalizing is idempotent, a bulk
// import row is normalized exactly like the capture it stands for, rule
// table changes keep what they were not asked to change, and page tokens
// open to what they were sealed with.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/match.h"
#include "absl/time/time.h"
#include "crm/v1/leads.pb.h"
#include "fuzz/fuzz_input.h"
#include "libs/common/contact_fields.h"
#include "libs/common/page_token.h"
#include "services/leads/api/lead_commands.h"
#include "services/leads/api/lead_import.h"
#include "services/leads/domain/assignment.h"
#include "services/leads/domain/lead.h"

namespace crm::fuzz {
namespace {

void Capture(absl::string_view payload) {
  crm::v1::CaptureLeadRequest request;
  if (!Decode(payload, request)) return;
  auto normalized = leads::NormalizeCaptureRequest(request);
  CheckValidation(normalized.status(), "NormalizeCaptureRequest");
  if (!normalized.ok()) return;
  auto again = leads::NormalizeCaptureRequest(*normalized);
  Check(again.ok(), "a normalized capture request is refused", again.status().ToString());
  Check(Same(*again, *normalized), "normalizing a capture request twice changes it");
}

// The capture request a row stands for, field by field (the importer's
// conversion moves fields instead, so an independent copy checks it).
crm::v1::CaptureLeadRequest CaptureOf(const crm::v1::ImportLeadRow& row) {
  crm::v1::CaptureLeadRequest r;
  r.set_channel(row.channel() != crm::v1::LEAD_CHANNEL_UNSPECIFIED
                    ? row.channel()
                    : crm::v1::LEAD_CHANNEL_WEB_FORM);
  if (row.has_contact()) *r.mutable_contact() = row.contact();
  r.set_company(row.company());
  r.set_region(row.region());
  *r.mutable_product_interests() = row.product_interests();
  if (row.has_consent()) *r.mutable_consent() = row.consent();
  *r.mutable_attributes() = row.attributes();
  if (row.has_bant()) *r.mutable_bant() = row.bant();
  return r;
}

void ImportRow(absl::string_view payload) {
  // Every field of a row but its number is a capture field: one added to the
  // row and not to CaptureOf (and the conversion) would be dropped.
  static const bool fields_match = [] {
    const auto* row = crm::v1::ImportLeadRow::descriptor();
    const auto* capture = crm::v1::CaptureLeadRequest::descriptor();
    for (int i = 0; i < row->field_count(); ++i) {
      const auto* f = row->field(i);
      if (f->name() == "row_number") continue;
      const auto* c = capture->FindFieldByName(f->name());
      if (c == nullptr || c->type() != f->type() || c->is_repeated() != f->is_repeated()) {
        return false;
      }
    }
    return row->field_count() == 9;
  }();
  Check(fields_match, "ImportLeadRow has a field CaptureOf does not carry");
  crm::v1::ImportLeadRow row;
  if (!Decode(payload, row)) return;
  auto expected = leads::NormalizeCaptureRequest(CaptureOf(row));
  auto request = leads::RowAsCaptureRequest(row, crm::v1::LEAD_CHANNEL_WEB_FORM);
  const absl::Status in_place = leads::NormalizeCaptureRequestInPlace(request);
  CheckValidation(in_place, "NormalizeCaptureRequestInPlace");
  Check(in_place.ok() == expected.ok(), "import and capture disagree on a row",
        in_place.ToString());
  if (in_place.ok()) Check(Same(request, *expected), "import normalizes a row unlike capture");
}

template <typename Request, typename Parse>
void Command(absl::string_view payload, Parse parse, absl::string_view what) {
  Request request;
  if (!Decode(payload, request)) return;
  CheckValidation(parse(request).status(), what);
}

void Rule(absl::string_view payload) {
  crm::v1::AssignmentRule rule;
  if (!Decode(payload, rule)) return;
  auto normalized = leads::NormalizeRule(rule);
  CheckValidation(normalized.status(), "NormalizeRule");
  if (!normalized.ok()) return;
  auto again = leads::NormalizeRule(*normalized);
  Check(again.ok(), "a normalized rule is refused", again.status().ToString());
  Check(Same(*again, *normalized), "normalizing a rule twice changes it");
}

// A list query: refused naming the field, or one the store can run (a
// bounded page, a score range in order).
void ListQuery(absl::string_view payload) {
  crm::v1::ListLeadsRequest request;
  if (!Decode(payload, request)) return;
  auto query = leads::LeadCommands::ListLeadsQuery(request);
  CheckValidation(query.status(), "ListLeadsQuery");
  if (!query.ok()) return;
  Check(query->page_size >= 1 && query->page_size <= 1000, "ListLeadsQuery page size out of range",
        std::to_string(query->page_size));
  Check(0 <= query->min_score && query->min_score <= query->max_score && query->max_score <= 100,
        "ListLeadsQuery score range out of order", request.ShortDebugString());
  Check(query->owner_id.empty() || query->queue.empty(), "ListLeadsQuery has owner and queue",
        request.ShortDebugString());
}

// A table as AddRule builds them: distinct, non-empty rule ids and a
// version a table can reach.
crm::v1::AssignmentRuleTable Table(absl::string_view bytes) {
  crm::v1::AssignmentRuleTable fuzzed;
  crm::v1::AssignmentRuleTable table;
  if (!fuzzed.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) return table;
  table.set_version(fuzzed.version() & ((int64_t{1} << 40) - 1));
  absl::flat_hash_set<std::string> ids;
  for (const auto& rule : fuzzed.rules()) {
    if (!rule.rule_id().empty() && ids.insert(rule.rule_id()).second) *table.add_rules() = rule;
  }
  return table;
}

// Reordering and enabling rules: refused naming the field (or ABORTED,
// NOT_FOUND, FAILED_PRECONDITION for what the table decides), and a
// change keeps every rule but what it was asked to change.
void RuleTable(absl::string_view payload) {
  const std::vector<std::string> parts = SplitParts(payload, 3);
  if (parts.size() != 3) return;
  const crm::v1::AssignmentRuleTable table = Table(parts[0]);
  crm::v1::ReorderAssignmentRulesRequest reorder;
  if (Decode(parts[1], reorder)) {
    const auto ids = leads::ParseReorderRules(reorder);
    CheckValidation(ids.status(), "ParseReorderRules");
    if (ids.ok()) {
      const auto next = leads::ReorderRules(table, *ids, reorder.expected_table_version());
      if (next.ok()) {
        Check(next->version() == table.version() + 1, "a reorder does not bump the version");
        Check(next->rules_size() == table.rules_size(), "a reorder loses or adds rules");
        for (int i = 0; i < next->rules_size(); ++i) {
          Check(next->rules(i).rule_id() == (*ids)[i], "a reorder ignores the order asked");
          Check(next->rules(i).position() == i + 1, "a reordered rule has a wrong position");
          const auto same =
              std::find_if(table.rules().begin(), table.rules().end(),
                           [&](const auto& r) { return r.rule_id() == next->rules(i).rule_id(); });
          Check(same != table.rules().end(), "a reorder adds a rule", next->rules(i).rule_id());
          crm::v1::AssignmentRule moved = next->rules(i);
          moved.set_position(same->position());
          Check(Same(moved, *same), "a reorder changes a rule", moved.ShortDebugString());
        }
      } else if (!absl::IsAborted(next.status())) {
        CheckValidation(next.status(), "ReorderRules");
        Check(absl::StartsWith(next.status().message(), "rule_ids:"),
              "a reorder refused for another field", next.status().ToString());
      } else {
        Check(reorder.expected_table_version() != table.version(),
              "a reorder at the table's version is ABORTED");
      }
    }
  }
  crm::v1::SetAssignmentRuleEnabledRequest enable;
  if (!Decode(parts[2], enable)) return;
  const absl::Status checked = leads::CheckSetRuleEnabled(enable);
  CheckValidation(checked, "CheckSetRuleEnabled");
  if (!checked.ok()) return;
  const bool enabled = enable.request_id().size() % 2 == 0;
  const auto next =
      leads::SetRuleEnabled(table, enable.rule_id(), enabled, enable.expected_table_version());
  if (!next.ok()) {
    const absl::StatusCode code = next.status().code();
    Check(code == absl::StatusCode::kAborted ||
              ((code == absl::StatusCode::kNotFound ||
                code == absl::StatusCode::kFailedPrecondition) &&
               absl::StartsWith(next.status().message(), "rule_id: ")),
          "SetRuleEnabled fails unlike its contract", next.status().ToString());
    return;
  }
  Check(next->version() == table.version() + 1, "enabling a rule does not bump the version");
  Check(next->rules_size() == table.rules_size(), "enabling a rule loses or adds rules");
  int changed = 0;
  for (int i = 0; i < next->rules_size(); ++i) {
    crm::v1::AssignmentRule before = table.rules(i);
    before.set_position(i + 1);
    if (before.rule_id() == enable.rule_id()) {
      Check(next->rules(i).enabled() == enabled, "the rule asked for is not changed");
      before.set_enabled(enabled);
      ++changed;
    }
    Check(Same(before, next->rules(i)), "enabling a rule changes another field or rule");
  }
  Check(changed == 1, "SetRuleEnabled succeeds without its rule");
}

// An import call's messages: the first one's checks, a later message that
// repeats or leaves out its head passes, and no row of an admitted import
// is refused for the request id made from import_id and row number.
void ImportHead(absl::string_view payload) {
  crm::v1::ImportLeadsRequest first;
  if (!Decode(payload, first)) return;
  const absl::Status head = leads::CheckImportHead(first.import_id(), first.default_channel());
  CheckValidation(head, "CheckImportHead");
  if (!head.ok()) return;
  const auto follow_up = [&](const crm::v1::ImportLeadsRequest& later) {
    return leads::CheckImportFollowUp(later, first.import_id(), first.default_channel());
  };
  crm::v1::ImportLeadsRequest later;
  Check(follow_up(later).ok(), "a later message without a head is refused");
  later.set_import_id(first.import_id());
  later.set_default_channel(first.default_channel());
  Check(follow_up(later).ok(), "a later message repeating the head is refused");
  later.set_import_id(first.import_id() + "x");
  CheckValidation(follow_up(later), "CheckImportFollowUp");
  Check(!follow_up(later).ok(), "a later message of another import_id is taken");
  for (const auto& row : first.rows()) {
    if (row.row_number() <= 0) continue;  // refused for its number first
    auto request = leads::RowAsCaptureRequest(row, first.default_channel());
    request.set_request_id(leads::RowRequestId(first.import_id(), row.row_number()));
    const absl::Status st = leads::NormalizeCaptureRequestInPlace(request);
    Check(!absl::StartsWith(st.message(), "request_id"),
          "an imported row refused for the request id it was given", st.ToString());
  }
}

// Offset page tokens (rule table, a lead's history): any token opens to a
// bounded offset or is refused naming the field, and a token the service
// seals opens to what it holds, for its own query only.
void OffsetTokens(absl::string_view payload) {
  const std::vector<std::string> parts = SplitParts(payload, 2);
  if (parts.size() != 2) return;
  crm::v1::GetLeadHistoryRequest request;
  request.set_lead_id(parts[0]);
  // The token as sent, and what a client could seal itself (the
  // fingerprint is no secret).
  for (const std::string& token : {parts[1], SealPageToken(request, parts[1])}) {
    request.mutable_page()->set_page_token(token);
    const auto opened = leads::OpenOffsetToken(request, request.page());
    CheckValidation(opened.status(), "OpenOffsetToken");
    if (opened.ok()) Check(opened->offset <= leads::kMaxTokenOffset, "an unbounded offset opens");
  }
  const size_t offset = parts[1].size() * 977;
  const int64_t version = static_cast<int64_t>(parts[0].size()) - 3;
  request.mutable_page()->set_page_token(leads::OffsetToken(request, offset, version));
  const auto mine = leads::OpenOffsetToken(request, request.page());
  Check(mine.ok() && mine->offset == offset && mine->version == version,
        "an offset token does not open to what it was sealed with", mine.status().ToString());
  request.set_lead_id(parts[0] + "x");
  const auto elsewhere = leads::OpenOffsetToken(request, request.page());
  CheckValidation(elsewhere.status(), "OpenOffsetToken");
  Check(!elsewhere.ok(), "an offset token opens for another lead");
}

void EmailAndPhone(absl::string_view text) {
  if (auto email = NormalizeEmail(text, "contact.email"); email.ok()) {
    auto again = NormalizeEmail(*email, "contact.email");
    Check(again.ok() && *again == *email, "normalizing an email twice changes it", *email);
  } else {
    CheckValidation(email.status(), "NormalizeEmail");
  }
  if (auto phone = NormalizePhone(text, "contact.phone"); phone.ok()) {
    auto again = NormalizePhone(*phone, "contact.phone");
    Check(again.ok() && *again == *phone, "normalizing a phone number twice changes it", *phone);
  } else {
    CheckValidation(phone.status(), "NormalizePhone");
  }
  CheckValidation(leads::CheckText("note", text, 64), "CheckText");
  CheckValidation(leads::CheckId("lead_id", text), "CheckId");
}

}  // namespace
}  // namespace crm::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace crm;  // NOLINT: the request types and validators read better short
  const auto [selector, payload] = fuzz::Choose(data, size);
  const absl::Time now = absl::FromUnixSeconds(1'700'000'000);
  switch (selector % 15) {
    case 0:
      fuzz::Capture(payload);
      break;
    case 1:
      fuzz::ImportRow(payload);
      break;
    case 2:
      fuzz::Command<v1::RecordLeadActivityRequest>(
          payload, [&](const auto& r) { return leads::ParseRecordActivity(r, now); },
          "ParseRecordActivity");
      break;
    case 3:
      fuzz::Command<v1::QualifyLeadRequest>(
          payload, [](const auto& r) { return leads::ParseQualify(r); }, "ParseQualify");
      break;
    case 4:
      fuzz::Command<v1::DisqualifyLeadRequest>(
          payload, [](const auto& r) { return leads::ParseDisqualify(r); }, "ParseDisqualify");
      break;
    case 5:
      fuzz::Command<v1::NurtureLeadRequest>(
          payload, [](const auto& r) { return leads::ParseNurture(r); }, "ParseNurture");
      break;
    case 6:
      fuzz::Command<v1::ConvertLeadRequest>(
          payload, [](const auto& r) { return leads::ParseConvert(r); }, "ParseConvert");
      break;
    case 7:
      fuzz::Command<v1::AssignLeadRequest>(
          payload, [](const auto& r) { return leads::ParseAssign(r); }, "ParseAssign");
      break;
    case 8: {
      v1::MergeLeadsRequest request;
      if (fuzz::Decode(payload, request)) {
        fuzz::CheckValidation(leads::ValidateMerge(request), "ValidateMerge");
      }
      break;
    }
    case 9:
      fuzz::Rule(payload);
      break;
    case 10:
      fuzz::EmailAndPhone(payload);
      break;
    case 11:
      fuzz::ListQuery(payload);
      break;
    case 12:
      fuzz::RuleTable(payload);
      break;
    case 13:
      fuzz::ImportHead(payload);
      break;
    default:
      fuzz::OffsetTokens(payload);
      break;
  }
  return 0;
}
