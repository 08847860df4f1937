#pragma once

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/civil_time.h"
#include "absl/time/time.h"
#include "crm/v1/common.pb.h"
#include "crm/v1/leads.pb.h"
#include "google/protobuf/timestamp.pb.h"
#include "libs/common/auth/principal.h"

namespace crm::sales {

// Input checks shared by the sales aggregates. Every error is
// INVALID_ARGUMENT with the message "field: reason", the field first.

inline constexpr size_t kMaxId = 64;
inline constexpr size_t kMaxRequestId = 128;
inline constexpr size_t kMaxName = 200;
inline constexpr size_t kMaxTerritory = auth::kMaxTerritoryBytes;
inline constexpr size_t kMaxNotes = 4000;

absl::Status Invalid(absl::string_view field, absl::string_view why);

// Free text (notes, reasons, terms): bounded length, no control characters
// but line breaks and tabs; `required` refuses empty.
absl::Status CheckText(absl::string_view field, absl::string_view value, size_t max,
                       bool required = false);
// A name, title or territory: as CheckText, on one line (no line breaks or
// tabs), as it shows in lists and exports.
absl::Status CheckLine(absl::string_view field, absl::string_view value, size_t max,
                       bool required = false);
// An identifier: required, at most kMaxId bytes of letters, digits and
// _ - . : @ | (owner ids are identity providers' subjects).
absl::Status CheckId(absl::string_view field, absl::string_view value);
// Like CheckId but empty is fine.
absl::Status CheckOptionalId(absl::string_view field, absl::string_view value);
absl::Status CheckRequestId(absl::string_view value);

// Three uppercase letters (ISO 4217 form).
absl::Status CheckCurrency(absl::string_view field, absl::string_view currency);
// A non-negative amount with a currency, below kMaxMinorUnits.
inline constexpr int64_t kMaxMinorUnits = 1'000'000'000'000'000;  // 10^15
absl::Status CheckMoney(absl::string_view field, const crm::v1::Money& money);

// Within the range google.protobuf.Timestamp allows (years 0001 to 9999,
// nanos 0..999999999): beyond it, conversions and other readers fail.
absl::Status CheckTimestamp(absl::string_view field, const google::protobuf::Timestamp& t);

// "YYYY-MM-DD", a real calendar day.
absl::StatusOr<absl::CivilDay> ParseDate(absl::string_view field, absl::string_view value);
std::string FormatDate(absl::CivilDay day);
// The UTC calendar day of an instant.
absl::CivilDay DayOf(absl::Time t);

// Trims names, lowercases the email and checks every field; a contact
// needs a name, an email or a phone.
absl::Status NormalizeContact(absl::string_view field, crm::v1::Contact& contact);

crm::v1::Money MakeMoney(absl::string_view currency, int64_t minor_units);

}  // namespace crm::sales
