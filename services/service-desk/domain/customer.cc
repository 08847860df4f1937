#include "services/service-desk/domain/customer.h"

#include <algorithm>
#include <tuple>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/match.h"
#include "google/protobuf/util/time_util.h"
#include "libs/common/arithmetic.h"
#include "libs/common/ids.h"

namespace crm::service_desk {
namespace {

void AddSorted(google::protobuf::RepeatedPtrField<std::string>* list, const std::string& value) {
  if (value.empty() || std::find(list->begin(), list->end(), value) != list->end()) return;
  *list->Add() = value;
  std::sort(list->begin(), list->end());
}

// The profile fields of `from`, taken at `at`: the newest profile
// overwrites, an older one only fills gaps, so the result is the same in
// either order.
void TakeProfile(crm::v1::CustomerContext& c, const crm::v1::CustomerContext& from,
                 const google::protobuf::Timestamp& at) {
  const bool newest = !c.has_profile_as_of() || !(at < c.profile_as_of());
  auto set_if = [newest](std::string* field, const std::string& v) {
    if (!v.empty() && (newest || field->empty())) *field = v;
  };
  set_if(c.mutable_first_name(), from.first_name());
  set_if(c.mutable_last_name(), from.last_name());
  set_if(c.mutable_email(), from.email());
  set_if(c.mutable_phone(), from.phone());
  set_if(c.mutable_company(), from.company());
  set_if(c.mutable_region(), from.region());
  if (newest) *c.mutable_profile_as_of() = at;
}

void TakeFirstSeen(crm::v1::CustomerContext& c, const google::protobuf::Timestamp& at) {
  if (!c.has_first_seen_at() || at < c.first_seen_at()) *c.mutable_first_seen_at() = at;
}

void SortPurchases(crm::v1::CustomerContext& c) {
  std::sort(c.mutable_purchases()->begin(), c.mutable_purchases()->end(),
            [](const crm::v1::ProductPurchase& a, const crm::v1::ProductPurchase& b) {
              const auto ta = FromProtoTimestamp(a.purchased_at());
              const auto tb = FromProtoTimestamp(b.purchased_at());
              return std::tie(ta, a.order_id(), a.product_id()) <
                     std::tie(tb, b.order_id(), b.product_id());
            });
}

// Contexts stored before has_account existed name their account.
bool HasAccount(const crm::v1::CustomerContext& c) {
  return c.has_account() || !c.account_name().empty();
}

}  // namespace

void ApplyLeadCaptured(crm::v1::CustomerContext& c, const crm::v1::LeadCaptured& lead,
                       const google::protobuf::Timestamp& occurred_at) {
  c.set_customer_id(lead.customer_id());
  c.set_known(true);
  AddSorted(c.mutable_lead_ids(), lead.lead_id());
  for (const auto& p : lead.product_interests()) AddSorted(c.mutable_product_interests(), p);
  TakeFirstSeen(c, occurred_at);
  crm::v1::CustomerContext profile;
  profile.set_first_name(lead.contact().first_name());
  profile.set_last_name(lead.contact().last_name());
  profile.set_email(lead.contact().email());
  profile.set_phone(lead.contact().phone());
  profile.set_company(lead.company());
  profile.set_region(lead.region());
  TakeProfile(c, profile, occurred_at);
}

void JoinCustomer(crm::v1::CustomerContext& into, const crm::v1::CustomerContext& from) {
  if (from.known()) into.set_known(true);
  for (const auto& id : from.lead_ids()) AddSorted(into.mutable_lead_ids(), id);
  for (const auto& p : from.product_interests()) AddSorted(into.mutable_product_interests(), p);
  if (from.has_first_seen_at()) TakeFirstSeen(into, from.first_seen_at());
  if (from.has_profile_as_of()) TakeProfile(into, from, from.profile_as_of());
  // The first account met (the survivor's, read first) stays the account.
  if (!HasAccount(into) && HasAccount(from)) {
    into.set_has_account(true);
    into.set_account_name(from.account_name());
    into.set_owner_id(from.owner_id());
    into.set_tier(from.tier());
    into.set_account_first_name(from.account_first_name());
    into.set_account_last_name(from.account_last_name());
    into.set_account_email(from.account_email());
    into.set_account_phone(from.account_phone());
    into.set_account_territory(from.account_territory());
  }
  // A set, not a scan per line: an account of years has tens of thousands.
  absl::flat_hash_set<std::pair<std::string, std::string>> seen;
  seen.reserve(into.purchases_size() + from.purchases_size());
  for (const auto& q : into.purchases()) seen.emplace(q.order_id(), q.product_id());
  for (const auto& p : from.purchases()) {
    if (seen.emplace(p.order_id(), p.product_id()).second) *into.add_purchases() = p;
  }
  SortPurchases(into);
}

void ApplyCustomerOpened(crm::v1::CustomerContext& c, const crm::v1::CustomerOpened& opened) {
  c.set_customer_id(opened.customer_id());
  c.set_known(true);
  c.set_has_account(true);
  // An account sales named after its id (a converted lead with no company
  // and no readable name) has no name to show, least of all as a company.
  c.set_account_name(opened.name() == opened.customer_id() ? "" : opened.name());
  c.set_owner_id(opened.owner_id());
  c.set_tier(opened.tier());
  AddSorted(c.mutable_lead_ids(), opened.lead_id());
  // Kept apart: the leads' profile stays as the captures made it.
  const crm::v1::Contact contact =
      opened.contacts_size() > 0 ? opened.contacts(0) : crm::v1::Contact();
  c.set_account_first_name(contact.first_name());
  c.set_account_last_name(contact.last_name());
  c.set_account_email(contact.email());
  c.set_account_phone(contact.phone());
  c.set_account_territory(opened.territory());
}

void WithAccountFallbacks(crm::v1::CustomerContext& c) {
  auto fill = [](std::string* field, std::string* fallback) {
    if (field->empty()) *field = std::move(*fallback);
    fallback->clear();
  };
  fill(c.mutable_first_name(), c.mutable_account_first_name());
  fill(c.mutable_last_name(), c.mutable_account_last_name());
  fill(c.mutable_email(), c.mutable_account_email());
  fill(c.mutable_phone(), c.mutable_account_phone());
  fill(c.mutable_region(), c.mutable_account_territory());
  if (c.company().empty()) c.set_company(c.account_name());
}

void ApplyCustomerTierChanged(crm::v1::CustomerContext& c,
                              const crm::v1::CustomerTierChanged& changed) {
  c.set_customer_id(changed.customer_id());
  c.set_tier(changed.to_tier());
}

void ApplyOrderPlaced(crm::v1::CustomerContext& c, const crm::v1::OrderPlaced& order,
                      const google::protobuf::Timestamp& occurred_at) {
  c.set_customer_id(order.customer_id());
  c.set_known(true);
  // An order is applied whole or not at all, so one already among the
  // purchases is a redelivery.
  const bool seen = std::any_of(c.purchases().begin(), c.purchases().end(),
                                [&](const auto& p) { return p.order_id() == order.order_id(); });
  if (seen) return;
  const int first = c.purchases_size();
  for (const auto& line : order.lines()) {
    if (line.product_id().empty()) continue;
    // Lines of one product (e.g. at different discounts) are one purchase.
    auto same = std::find_if(
        c.mutable_purchases()->begin() + first, c.mutable_purchases()->end(),
        [&](const crm::v1::ProductPurchase& p) { return p.product_id() == line.product_id(); });
    if (same != c.mutable_purchases()->end()) {
      same->set_quantity(SaturatingAdd(same->quantity(), line.quantity()));
      continue;
    }
    auto* p = c.add_purchases();
    p->set_product_id(line.product_id());
    p->set_order_id(order.order_id());
    p->set_quantity(line.quantity());
    *p->mutable_purchased_at() = occurred_at;
  }
  SortPurchases(c);
}

void FillWarranties(crm::v1::CustomerContext& c, const DeskSettings& settings) {
  for (auto& p : *c.mutable_purchases()) {
    const auto end = settings.WarrantyEnd(p.product_id(), FromProtoTimestamp(p.purchased_at()));
    if (end.has_value()) {
      *p.mutable_warranty_ends_at() = ToProtoTimestamp(*end);
    } else {
      p.clear_warranty_ends_at();
    }
  }
}

std::optional<absl::Time> WarrantyEndFor(const crm::v1::CustomerContext& c,
                                         absl::string_view product, absl::Time now) {
  std::optional<absl::Time> latest;
  if (product.empty()) return latest;
  for (const auto& p : c.purchases()) {
    if (!p.has_warranty_ends_at() || !absl::EqualsIgnoreCase(p.product_id(), product)) continue;
    const absl::Time end = FromProtoTimestamp(p.warranty_ends_at());
    if (end > now && (!latest.has_value() || end > *latest)) latest = end;
  }
  return latest;
}

void TrimPurchases(crm::v1::CustomerContext& customer, absl::string_view product, size_t max) {
  const int n = customer.purchases_size();
  if (static_cast<size_t>(n) <= max) return;
  std::vector<bool> keep(n, false);
  size_t kept = 0;
  for (bool of_product : {true, false}) {
    for (int i = n - 1; i >= 0 && kept < max; --i) {
      if (keep[i]) continue;
      if (of_product && !absl::EqualsIgnoreCase(customer.purchases(i).product_id(), product)) {
        continue;
      }
      keep[i] = true;
      ++kept;
    }
  }
  google::protobuf::RepeatedPtrField<crm::v1::ProductPurchase> shown;
  shown.Reserve(static_cast<int>(kept));
  for (int i = 0; i < n; ++i) {
    if (keep[i]) *shown.Add() = std::move(*customer.mutable_purchases(i));
  }
  customer.mutable_purchases()->Swap(&shown);
  customer.set_purchases_omitted(customer.purchases_omitted() + n - static_cast<int>(kept));
}

}  // namespace crm::service_desk
