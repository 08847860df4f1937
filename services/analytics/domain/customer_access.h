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
//   their territory (the account's); without an account, by the customer's
//   home (its first lead's owner and region, not a later lead's); any other
//   customer is PERMISSION_DENIED worded exactly like a missing one;
// - analysts: every customer, without personal data: every field marked
//   personal (names, email, phone, ticket subjects, timeline details) is
//   cleared and timeline entries keep their type but not their summary.
// `loaded` is the view store's answer for `customer_id`.
absl::StatusOr<crm::v1::Customer360> Customer360For(const auth::Principal& caller,
                                                    absl::StatusOr<crm::v1::Customer360> loaded,
                                                    const std::string& customer_id);

// The funnel a caller may read: a sales manager's is its territory's (one
// without a territory claim: its own leads and deals), asking for another
// is PERMISSION_DENIED on the field; admin, service and analysts read all.
// With the owner filter a slice can come down to one deal, so it is scoped
// as sales scopes GetForecast.
absl::StatusOr<crm::v1::GetFunnelRequest> ScopeFunnel(const auth::Principal& caller,
                                                      crm::v1::GetFunnelRequest request);

}  // namespace crm::analytics
