// The leads service's request validators on arbitrary requests: the first
// byte picks the request, the rest is its protobuf encoding (or raw text
// for the email and phone normalizers). Beyond not crashing: errors are
// INVALID_ARGUMENT naming the field, normalizing is idempotent, and a bulk
// import row is normalized exactly like the capture it stands for.
#include <cstddef>
#include <cstdint>

#include "absl/time/time.h"
#include "crm/v1/leads.pb.h"
#include "fuzz/fuzz_input.h"
#include "libs/common/contact_fields.h"
#include "services/leads/api/lead_commands.h"
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
  switch (selector % 12) {
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
    default:
      fuzz::ListQuery(payload);
      break;
  }
  return 0;
}
