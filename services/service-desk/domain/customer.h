#pragma once

#include <optional>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "crm/v1/envelope.pb.h"
#include "crm/v1/leads.pb.h"
#include "crm/v1/sales.pb.h"
#include "crm/v1/service_desk.pb.h"
#include "services/service-desk/domain/settings.h"

namespace crm::service_desk {

// The service desk's view of a customer, folded from other services'
// events. Topics are not ordered with each other and may redeliver, so
// every fold is commutative where it can be and otherwise lets the newest
// event win.

// A captured lead names the customer: the newest capture gives the
// profile and older ones fill its gaps; lead ids and product interests
// accumulate, sorted.
void ApplyLeadCaptured(crm::v1::CustomerContext& customer, const crm::v1::LeadCaptured& lead,
                       const google::protobuf::Timestamp& occurred_at);

// The sales account: name, owner and tier, and its first contact and
// territory, kept apart from the leads' profile.
void ApplyCustomerOpened(crm::v1::CustomerContext& customer, const crm::v1::CustomerOpened& opened);
// The context as read: the account's contact, name and territory fill the
// gaps the leads left in the profile, whatever order the topics delivered
// them in.
void WithAccountFallbacks(crm::v1::CustomerContext& customer);
// Sales events of one customer share a partition, so they arrive in order.
void ApplyCustomerTierChanged(crm::v1::CustomerContext& customer,
                              const crm::v1::CustomerTierChanged& changed);
// Each order line becomes a purchase (once per order and product), kept
// sorted by time, order and product.
void ApplyOrderPlaced(crm::v1::CustomerContext& customer, const crm::v1::OrderPlaced& order,
                      const google::protobuf::Timestamp& occurred_at);

// A customer merged into `into`'s (the merge link leads publishes) is the
// same person:
// its leads, product interests and purchases join, the newest profile
// wins and gaps are filled, and `into`'s account stays if it has one.
void JoinCustomer(crm::v1::CustomerContext& into, const crm::v1::CustomerContext& from);

// Fills each purchase's warranty end from the settings' policies.
void FillWarranties(crm::v1::CustomerContext& customer, const DeskSettings& settings);

// The most purchases a ticket's reply shows: an account of years holds tens
// of thousands, which would pass the reply bound and the client's limit.
inline constexpr size_t kMaxPurchasesShown = 500;
// Keeps at most `max` purchases, oldest first still: every one of `product`
// (the ticket's, whose warranty is the question) before the others, newest
// first of each; how many were left out goes in purchases_omitted.
void TrimPurchases(crm::v1::CustomerContext& customer, absl::string_view product, size_t max);
// The latest warranty end of the customer's purchases of `product` (case
// ignored) that is after `now`; nullopt when nothing is under warranty.
// Purchases must have their warranty ends filled.
std::optional<absl::Time> WarrantyEndFor(const crm::v1::CustomerContext& customer,
                                         absl::string_view product, absl::Time now);

}  // namespace crm::service_desk
