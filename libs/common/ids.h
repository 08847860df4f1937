#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "google/protobuf/timestamp.pb.h"

namespace crm {

// A new unique id "prefix_" + 26 Crockford base32 characters: 48 bits of
// milliseconds then 80 random bits (ULID layout), so ids sort by creation.
std::string NewId(absl::string_view prefix);
// The id of a record a reaction to an event creates: NewId's layout with
// the event's time `at` and 80 bits of a SHA-256 of `seed` (the event's id
// and what it caused), so that handling the event again after its answer
// was lost (a restore) makes the same id, not a second record. It sorts by
// the event's time, not by when it was made: a listing by id in progress
// may not show a record made late for an old event.
std::string IdFromEvent(absl::string_view prefix, absl::Time at, absl::string_view seed);
// The id NewId makes from its parts: the low 48 bits of `ms`, all of `hi`
// and the low 16 bits of `lo`.
std::string EncodeId(absl::string_view prefix, uint64_t ms, uint64_t hi, uint64_t lo);

google::protobuf::Timestamp ToProtoTimestamp(absl::Time t);
absl::Time FromProtoTimestamp(const google::protobuf::Timestamp& ts);
// Whether `ts` lies in google.protobuf.Timestamp's range (years 0001 to
// 9999, nanos 0 to 999,999,999), which JSON printers and other readers of
// the events require.
bool IsValidProtoTimestamp(const google::protobuf::Timestamp& ts);
// RFC 3339 in UTC with microseconds, as CloudEvents ce_time wants.
std::string FormatRfc3339(absl::Time t);

}  // namespace crm
