#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "crm/v1/analytics.pb.h"
#include "libs/common/auth/principal.h"

namespace crm::analytics {

// What of a customer's 360 view `caller` may see (the record check that
// adds to the method table, docs/security.md):
// - admin and service: all of it;
// - sales reps and managers: the customers they own, managers also those of
//   their territory (the account's, else the lead's region); any other
//   customer is PERMISSION_DENIED worded exactly like a missing one;
// - analysts: every customer, without personal data: every field marked
//   personal (names, email, phone, ticket subjects, timeline details) is
//   cleared and timeline entries keep their type but not their summary.
// `loaded` is the view store's answer for `customer_id`.
absl::StatusOr<crm::v1::Customer360> Customer360For(const auth::Principal& caller,
                                                    absl::StatusOr<crm::v1::Customer360> loaded,
                                                    const std::string& customer_id);

}  // namespace crm::analytics
