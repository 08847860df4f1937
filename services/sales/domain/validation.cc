#include "services/sales/domain/validation.h"

#include <cctype>

#include "absl/algorithm/container.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "libs/common/contact_fields.h"
#include "libs/common/ids.h"
#include "libs/common/pii/sealed_value.h"
#include "libs/common/status_macros.h"
#include "libs/common/text.h"

namespace crm::sales {

absl::Status Invalid(absl::string_view field, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", why));
}

namespace {

absl::Status CheckBoundedText(absl::string_view field, absl::string_view value, size_t max,
                              bool required, bool multiline) {
  if (required && absl::StripAsciiWhitespace(value).empty()) return Invalid(field, "required");
  if (value.size() > max) return Invalid(field, absl::StrCat("longer than ", max, " bytes"));
  if (HasControlCharacters(value, multiline)) {
    return Invalid(field, multiline ? "contains control characters"
                                    : "contains control characters (line breaks or tabs too)");
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CheckText(absl::string_view field, absl::string_view value, size_t max,
                       bool required) {
  return CheckBoundedText(field, value, max, required, /*multiline=*/true);
}

absl::Status CheckLine(absl::string_view field, absl::string_view value, size_t max,
                       bool required) {
  return CheckBoundedText(field, value, max, required, /*multiline=*/false);
}

absl::Status CheckOptionalId(absl::string_view field, absl::string_view value) {
  if (value.size() > kMaxId) return Invalid(field, absl::StrCat("longer than ", kMaxId, " bytes"));
  for (char c : value) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '-' && c != '.' &&
        c != ':' && c != '@' && c != '|') {
      // '|' for identity providers' subjects ("google-oauth2|1234"), which
      // become owner ids.
      return Invalid(field, "may contain only letters, digits and _ - . : @ |");
    }
  }
  return absl::OkStatus();
}

absl::Status CheckId(absl::string_view field, absl::string_view value) {
  if (value.empty()) return Invalid(field, "required");
  return CheckOptionalId(field, value);
}

absl::Status CheckRequestId(absl::string_view value) {
  // A key: it goes into request keys and every event's correlation id.
  return CheckLine("request_id", value, kMaxRequestId, /*required=*/true);
}

absl::Status CheckCurrency(absl::string_view field, absl::string_view currency) {
  if (!IsCurrencyCode(currency)) return Invalid(field, "must be an ISO 4217 code such as EUR");
  return absl::OkStatus();
}

absl::Status CheckMoney(absl::string_view field, const crm::v1::Money& money) {
  if (auto st = CheckCurrency(absl::StrCat(field, ".currency"), money.currency()); !st.ok()) {
    return st;
  }
  if (money.minor_units() < 0) {
    return Invalid(absl::StrCat(field, ".minor_units"), "must not be negative");
  }
  if (money.minor_units() >= kMaxMinorUnits) {
    return Invalid(absl::StrCat(field, ".minor_units"), "too large");
  }
  return absl::OkStatus();
}

absl::Status CheckTimestamp(absl::string_view field, const google::protobuf::Timestamp& t) {
  if (!IsValidProtoTimestamp(t)) return Invalid(field, "out of range");
  return absl::OkStatus();
}

absl::StatusOr<absl::CivilDay> ParseDate(absl::string_view field, absl::string_view value) {
  absl::CivilDay day;
  // ParseCivilTime normalizes 2025-02-30 to March; a round trip refuses it.
  // A leading '-' would parse as a year before 1 and print back the same.
  if (value.size() != 10 || !absl::ascii_isdigit(static_cast<unsigned char>(value[0])) ||
      !absl::ParseCivilTime(value, &day) || FormatDate(day) != value || day.year() < 1) {
    return Invalid(field, "must be a date YYYY-MM-DD");
  }
  return day;
}

std::string FormatDate(absl::CivilDay day) {
  return absl::StrFormat("%04d-%02d-%02d", day.year(), day.month(), day.day());
}

absl::CivilDay DayOf(absl::Time t) { return absl::ToCivilDay(t, absl::UTCTimeZone()); }

absl::Status NormalizeContact(absl::string_view field, crm::v1::Contact& contact) {
  // Sealed values (pii::IsSealed) were checked by the service that sealed
  // them, e.g. the lead a conversion copies; they are ciphertext here.
  auto plain = [](const std::string& v) { return !pii::IsSealed(v); };
  auto strip = [&](const std::string& v) {
    return plain(v) ? std::string(absl::StripAsciiWhitespace(v)) : v;
  };
  contact.set_first_name(strip(contact.first_name()));
  contact.set_last_name(strip(contact.last_name()));
  for (auto [name, value, max] : {std::tuple{"first_name", contact.first_name(), size_t{100}},
                                  std::tuple{"last_name", contact.last_name(), size_t{100}},
                                  std::tuple{"title", contact.title(), size_t{100}}}) {
    if (!plain(value)) continue;
    if (auto st = CheckLine(absl::StrCat(field, ".", name), value, max); !st.ok()) return st;
  }
  // The normal form leads gives them, so one person matches across services.
  for (auto [name, value, normalize] :
       {std::tuple{"email", contact.mutable_email(), &NormalizeEmail},
        std::tuple{"phone", contact.mutable_phone(), &NormalizePhone}}) {
    if (!plain(*value)) continue;
    if (TrimContact(*value).empty()) {
      value->clear();
      continue;
    }
    auto normal = normalize(*value, absl::StrCat(field, ".", name));
    if (!normal.ok()) return normal.status();
    *value = *std::move(normal);
  }
  if (contact.first_name().empty() && contact.last_name().empty() && contact.email().empty() &&
      contact.phone().empty()) {
    return Invalid(field, "a name, an email or a phone is required");
  }
  return absl::OkStatus();
}

crm::v1::Money MakeMoney(absl::string_view currency, int64_t minor_units) {
  crm::v1::Money m;
  m.set_currency(std::string(currency));
  m.set_minor_units(minor_units);
  return m;
}

}  // namespace crm::sales
