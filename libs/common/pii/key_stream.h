#pragma once

#include "absl/strings/match.h"
#include "absl/strings/string_view.h"

// Key records (data keys issued and destroyed, customers erased and merged) are
// appended to each service's own event log on streams of their own; the
// relay publishes them on crm.keys.v1 keyed by stream, so that a compacted
// topic keeps only a key's last record.
namespace crm::pii {

inline constexpr char kKeyStreamPrefix[] = "pii-key-";
inline constexpr char kEraseStreamPrefix[] = "pii-erase-";
inline constexpr char kMergeStreamPrefix[] = "pii-merge-";

inline bool IsKeyRecordStream(absl::string_view stream) {
  return absl::StartsWith(stream, kKeyStreamPrefix) ||
         absl::StartsWith(stream, kEraseStreamPrefix) ||
         absl::StartsWith(stream, kMergeStreamPrefix);
}

}  // namespace crm::pii
