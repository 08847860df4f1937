#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "libs/common/auth/principal.h"

// Record-level checks the handlers add to the method table: a sales rep
// works on the records they own, a sales manager on those of their
// territory, admin and service on all of them.
namespace crm::auth {

// Whether a manager of `manager_territory` covers a record of `territory`
// (a lead's territory is its region). Compared ignoring case, as assignment
// rules match regions: a lead captured in "emea" is routed by an "EMEA"
// rule, and the account and deal converted from it keep its spelling. And
// trimmed: a record stored before territories were trimmed ("EMEA ") is
// still the EMEA manager's. An empty territory matches no manager.
inline bool SameTerritory(absl::string_view territory, absl::string_view manager_territory) {
  manager_territory = absl::StripAsciiWhitespace(manager_territory);
  return !manager_territory.empty() &&
         absl::EqualsIgnoreCase(absl::StripAsciiWhitespace(territory), manager_territory);
}

// What reports group territories by: spellings SameTerritory takes for one
// ("emea", "EMEA ") share it, so they make one row, not two.
inline std::string TerritoryKey(absl::string_view territory) {
  return absl::AsciiStrToLower(absl::StripAsciiWhitespace(territory));
}

// The label of such a row: the first spelling in byte order, so it does not
// depend on the order the records were read in.
inline void KeepFirstSpelling(std::string& label, absl::string_view spelling) {
  spelling = absl::StripAsciiWhitespace(spelling);
  if (label.empty() || spelling < label) label = std::string(spelling);
}

// Whether `p` may read and change a record with this owner and territory.
inline bool MayAccess(const Principal& p, absl::string_view owner_id, absl::string_view territory) {
  if (p.SeesEverything()) return true;
  const bool sales = p.HasRole(kRoleSalesRep) || p.HasRole(kRoleSalesManager);
  if (sales && !owner_id.empty() && owner_id == p.subject) return true;
  return p.HasRole(kRoleSalesManager) && SameTerritory(territory, p.territory);
}

// The one answer a scoped caller gets both for a record it may not access
// and for one that does not exist, so probing ids tells nothing:
// PERMISSION_DENIED with the same text. Callers that see everything get the
// plain NOT_FOUND instead (they learn nothing new from it).
inline absl::Status NotVisible(absl::string_view field, absl::string_view id) {
  return absl::PermissionDeniedError(
      absl::StrCat(field, ": no ", id, " that the caller may access"));
}

// Whether a record check refused the caller or found no record: either
// reads as the record not visible. Any other failure (storage) is no answer
// either way, and callers pass it on so the caller retries.
inline bool IsRefusal(const absl::Status& check) {
  return check.code() == absl::StatusCode::kPermissionDenied ||
         check.code() == absl::StatusCode::kNotFound;
}

// The answer for a record reached through its parent (a quote through its
// deal): `parent` is the parent's check.
inline absl::Status ThroughParent(const absl::Status& parent, absl::string_view field,
                                  absl::string_view id) {
  return IsRefusal(parent) ? NotVisible(field, id) : parent;
}

// The result of loading a record, turned into the caller's answer.
template <typename Record, typename Owner, typename Territory>
absl::Status CheckLoaded(const Principal& p, const absl::StatusOr<Record>& loaded,
                         absl::string_view field, absl::string_view id, Owner owner,
                         Territory territory) {
  if (!loaded.ok()) {
    if (loaded.status().code() == absl::StatusCode::kNotFound && !p.SeesEverything()) {
      return NotVisible(field, id);
    }
    return loaded.status();
  }
  if (!MayAccess(p, owner(*loaded), territory(*loaded))) return NotVisible(field, id);
  return absl::OkStatus();
}

}  // namespace crm::auth
