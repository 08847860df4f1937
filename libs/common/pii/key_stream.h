#pragma once

#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
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

// The stream of one service's erasures of a customer:
// "pii-erase-<service>-<customer_id>", the service being the issuer's last
// path part ("crm/sales" -> "sales"). Subscribers skip the versions of a
// stream they applied, and every service numbers its own streams from 1:
// were the stream named for the customer alone, a second service's
// erasure of a customer another service had erased would be skipped.
inline std::string EraseStream(absl::string_view issuer, absl::string_view customer_id) {
  const size_t slash = issuer.rfind('/');
  const absl::string_view service =
      slash == absl::string_view::npos ? issuer : issuer.substr(slash + 1);
  return absl::StrCat(kEraseStreamPrefix, service, "-", customer_id);
}

}  // namespace crm::pii
