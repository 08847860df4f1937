#include "absl/strings/string_view.h"
#include "services/leads/domain/lead.h"

#include <cctype>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "libs/common/ids.h"

namespace crm::leads {
namespace {

constexpr size_t kMaxName = 100;
constexpr size_t kMaxEmail = 254;
constexpr size_t kMaxCompany = 200;
constexpr size_t kMaxRegion = 64;
constexpr size_t kMaxRequestId = 128;
constexpr size_t kMaxInterests = 50;
constexpr size_t kMaxInterestLength = 64;
constexpr size_t kMaxAttributes = 50;
constexpr size_t kMaxAttributeKey = 64;
constexpr size_t kMaxAttributeValue = 1024;

absl::Status Invalid(absl::string_view field, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", why));
}

// Bounded, valid UTF-8 is left to protobuf; here: length and control chars.
absl::Status CheckText(absl::string_view field, absl::string_view value, size_t max) {
  if (value.size() > max) return Invalid(field, absl::StrCat("longer than ", max, " bytes"));
  for (unsigned char c : value) {
    if (c < 0x20 || c == 0x7f) return Invalid(field, "contains control characters");
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::string> NormalizeEmail(absl::string_view raw, absl::string_view field) {
  std::string email = absl::AsciiStrToLower(absl::StripAsciiWhitespace(raw));
  if (email.size() > kMaxEmail) return Invalid(field, "longer than 254 bytes");
  const size_t at = email.find('@');
  if (at == std::string::npos || at == 0 || email.find('@', at + 1) != std::string::npos) {
    return Invalid(field, "not an email address");
  }
  const absl::string_view domain = absl::string_view(email).substr(at + 1);
  const size_t dot = domain.rfind('.');
  if (dot == absl::string_view::npos || dot == 0 || dot + 1 == domain.size() ||
      domain.find("..") != absl::string_view::npos) {
    return Invalid(field, "not an email address");
  }
  for (unsigned char c : email) {
    if (c <= 0x20 || c == 0x7f || c == ',' || c == ';' || c == '<' || c == '>') {
      return Invalid(field, "not an email address");
    }
  }
  return email;
}

absl::StatusOr<std::string> NormalizePhone(absl::string_view raw, absl::string_view field) {
  absl::string_view s = absl::StripAsciiWhitespace(raw);
  if (s.size() > 32) return Invalid(field, "longer than 32 characters");
  std::string digits;
  bool plus = false;
  if (absl::ConsumePrefix(&s, "+")) {
    plus = true;
  } else if (absl::ConsumePrefix(&s, "00")) {
    plus = true;
  }
  if (!plus) return Invalid(field, "must be in international form (+ and country code)");
  for (char c : s) {
    if (std::isdigit(static_cast<unsigned char>(c))) {
      digits.push_back(c);
    } else if (c != ' ' && c != '-' && c != '.' && c != '(' && c != ')') {
      return Invalid(field, "may contain only digits and separators");
    }
  }
  if (digits.size() < 8 || digits.size() > 15 || digits[0] == '0') {
    return Invalid(field, "must have 8 to 15 digits after + and not start with 0");
  }
  return absl::StrCat("+", digits);
}

absl::StatusOr<crm::v1::CaptureLeadRequest> NormalizeCaptureRequest(
    const crm::v1::CaptureLeadRequest& request) {
  crm::v1::CaptureLeadRequest r = request;
  if (r.request_id().empty()) return Invalid("request_id", "required");
  if (auto st = CheckText("request_id", r.request_id(), kMaxRequestId); !st.ok()) return st;
  if (r.channel() == crm::v1::LEAD_CHANNEL_UNSPECIFIED || !crm::v1::LeadChannel_IsValid(r.channel())) {
    return Invalid("channel", "required");
  }
  auto* c = r.mutable_contact();
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
  for (auto [field, value, max] :
       {std::tuple{"contact.first_name", c->first_name(), kMaxName},
        std::tuple{"contact.last_name", c->last_name(), kMaxName},
        std::tuple{"contact.title", c->title(), kMaxName},
        std::tuple{"company", r.company(), kMaxCompany},
        std::tuple{"region", r.region(), kMaxRegion}}) {
    if (auto st = CheckText(field, value, max); !st.ok()) return st;
  }
  if (static_cast<size_t>(r.product_interests_size()) > kMaxInterests) {
    return Invalid("product_interests", absl::StrCat("more than ", kMaxInterests, " entries"));
  }
  for (const auto& p : r.product_interests()) {
    if (p.empty()) return Invalid("product_interests", "empty entry");
    if (auto st = CheckText("product_interests", p, kMaxInterestLength); !st.ok()) return st;
  }
  if (r.attributes_size() > static_cast<int>(kMaxAttributes)) {
    return Invalid("attributes", absl::StrCat("more than ", kMaxAttributes, " entries"));
  }
  for (const auto& [k, v] : r.attributes()) {
    if (k.empty()) return Invalid("attributes", "empty key");
    if (auto st = CheckText("attributes", k, kMaxAttributeKey); !st.ok()) return st;
    if (v.size() > kMaxAttributeValue) {
      return Invalid(absl::StrCat("attributes[", k, "]"),
                     absl::StrCat("longer than ", kMaxAttributeValue, " bytes"));
    }
  }
  return r;
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
  return std::vector<LeadEvent>{std::move(e)};
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
        }
      },
      event);
  state.set_version(state.version() + 1);
}

std::string LeadStream(absl::string_view lead_id) { return absl::StrCat("lead-", lead_id); }

}  // namespace crm::leads
