#include "services/analytics/domain/customer_access.h"

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
  const auto& profile = loaded->profile();
  const std::string& territory =
      profile.territory().empty() ? profile.region() : profile.territory();
  if (auth::MayAccess(caller, loaded->owner_id(), territory)) return loaded;
  if (!analyst) return auth::NotVisible("customer_id", customer_id);
  RemovePersonalData(*loaded);
  return loaded;
}

}  // namespace crm::analytics
