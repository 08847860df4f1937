#include "services/analytics/domain/customer_access.h"

#include <algorithm>
#include <string>

#include "absl/strings/ascii.h"
#include "libs/common/auth/record_access.h"
#include "libs/common/pii/field_sealer.h"

namespace crm::analytics {

namespace {

void RemovePersonalData(crm::v1::Customer360& view) {
  pii::ClearFields(view);
  // Summaries hold no personal data, but they quote reasons typed by
  // people (a lost deal's, a reopened ticket's).
  for (auto& entry : *view.mutable_timeline()) entry.clear_summary();
}

// The home lead's owner by its latest assignment; none if not known.
std::string HomeOwner(const crm::v1::Customer360& view) {
  const auto& owners = view.lead_owners();
  auto it = std::lower_bound(owners.begin(), owners.end(), view.home_lead_id(),
                             [](const auto& o, const std::string& id) { return o.lead_id() < id; });
  return it != owners.end() && it->lead_id() == view.home_lead_id() ? it->owner_id() : "";
}

}  // namespace

absl::StatusOr<crm::v1::Customer360> Customer360For(const auth::Principal& caller,
                                                    absl::StatusOr<crm::v1::Customer360> loaded,
                                                    const std::string& customer_id) {
  if (caller.SeesEverything()) return loaded;
  const bool analyst = caller.HasRole(auth::kRoleAnalyst);
  if (!loaded.ok()) {
    if (absl::IsNotFound(loaded.status()) && !analyst) {
      return auth::NotVisible("customer_id", customer_id);
    }
    return loaded.status();
  }
  // The account's territory and owner, even empty (sales lets no manager
  // or rep reach an account without them); without an account, the home
  // lead's (a view stored before homes were kept: the latest lead's).
  const auto& profile = loaded->profile();
  const bool account = loaded->has_account_as_of() || !loaded->account_owner_id().empty();
  const bool home = loaded->tracks_home() && loaded->has_home_as_of();
  const std::string& territory = account ? profile.territory()
                                 : home  ? loaded->home_region()
                                         : profile.region();
  std::string owner = account ? loaded->account_owner_id()
                      : home  ? HomeOwner(*loaded)
                              : loaded->owner_id();
  // A view stored before account owners were kept apart holds the
  // account's owner in owner_id, stamped by the account's event.
  if (account && owner.empty() && !loaded->has_account_owner_as_of() && loaded->has_owner_as_of() &&
      loaded->owner_as_of().event_id() == loaded->account_as_of().event_id()) {
    owner = loaded->owner_id();
  }
  if (auth::MayAccess(caller, owner, territory)) return loaded;
  if (!analyst) return auth::NotVisible("customer_id", customer_id);
  RemovePersonalData(*loaded);
  return loaded;
}

absl::StatusOr<crm::v1::GetFunnelRequest> ScopeFunnel(const auth::Principal& caller,
                                                      crm::v1::GetFunnelRequest request) {
  // Judged and filtered trimmed, as territories are stored.
  request.set_territory(std::string(absl::StripAsciiWhitespace(request.territory())));
  if (caller.SeesEverything() || caller.HasRole(auth::kRoleAnalyst)) return request;
  if (!caller.territory.empty()) {
    if (!request.territory().empty() &&
        !auth::SameTerritory(request.territory(), caller.territory)) {
      return absl::PermissionDeniedError("territory: outside the caller's territory");
    }
    request.set_territory(caller.territory);
    return request;
  }
  if (!request.owner_id().empty() && request.owner_id() != caller.subject) {
    return absl::PermissionDeniedError(
        "owner_id: a manager without a territory reads its own funnel only");
  }
  request.set_owner_id(caller.subject);
  return request;
}

}  // namespace crm::analytics
