#pragma once

#include <algorithm>
#include <cstddef>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "libs/common/text.h"

namespace crm::auth {

// The roles a token may carry. Anything else in a token's "roles" claim is
// dropped at verification, so policy code only ever sees these names.
inline constexpr char kRoleAdmin[] = "admin";
inline constexpr char kRoleSalesManager[] = "sales_manager";
inline constexpr char kRoleSalesRep[] = "sales_rep";
inline constexpr char kRoleSupportAgent[] = "support_agent";
inline constexpr char kRoleAnalyst[] = "analyst";
inline constexpr char kRoleService[] = "service";

inline bool IsKnownRole(absl::string_view role) {
  for (absl::string_view known : {kRoleAdmin, kRoleSalesManager, kRoleSalesRep, kRoleSupportAgent,
                                  kRoleAnalyst, kRoleService}) {
    if (role == known) return true;
  }
  return false;
}

// The longest territory a token may name: it becomes the territory of the
// accounts and leads its holder records (a region, an account's
// territory), which keep at most this much.
inline constexpr size_t kMaxTerritoryBytes = 64;

// Whether a (trimmed) territory claim fits a record: at most
// kMaxTerritoryBytes, on one line. Verifiers and token issuers both ask.
inline bool FitsTerritoryClaim(absl::string_view territory) {
  return territory.size() <= kMaxTerritoryBytes &&
         !HasControlCharacters(territory, /*multiline=*/false);
}

// Who is calling, as a verified token says: the subject (`sub`), its roles
// and the sales territory it works in (`territory`, may be empty).
struct Principal {
  std::string subject;
  std::vector<std::string> roles;
  std::string territory;
  // When the token would be refused (its exp and the clock skew allowed):
  // a streaming call outlives the moment its token was checked.
  absl::Time valid_until = absl::InfiniteFuture();

  bool HasRole(absl::string_view role) const {
    return std::find(roles.begin(), roles.end(), role) != roles.end();
  }
  // admin and service see and change every record.
  bool SeesEverything() const { return HasRole(kRoleAdmin) || HasRole(kRoleService); }
};

}  // namespace crm::auth
