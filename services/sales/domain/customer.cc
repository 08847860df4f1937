#include "services/sales/domain/customer.h"

#include "absl/container/flat_hash_set.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "libs/common/ids.h"
#include "services/sales/domain/validation.h"

namespace crm::sales {
namespace {

constexpr int kMaxContacts = 20;

}  // namespace

LoyaltyProgram LoyaltyProgram::Default() {
  return LoyaltyProgram(
      "EUR",
      {{"standard", 0}, {"silver", 1'000'000}, {"gold", 5'000'000}, {"platinum", 20'000'000}});
}

absl::StatusOr<LoyaltyProgram> LoyaltyProgram::Create(std::string currency,
                                                      std::vector<LoyaltyTier> tiers) {
  if (auto st = CheckCurrency("loyalty.currency", currency); !st.ok()) return st;
  if (tiers.empty()) return Invalid("loyalty.tiers", "at least one tier is required");
  if (tiers.front().threshold != 0) return Invalid("loyalty.tiers", "the first tier starts at 0");
  absl::flat_hash_set<std::string> names;
  for (size_t i = 0; i < tiers.size(); ++i) {
    if (auto st = CheckId("loyalty.tiers.name", tiers[i].name); !st.ok()) return st;
    if (!names.insert(tiers[i].name).second) {
      return Invalid("loyalty.tiers", absl::StrCat("duplicate tier ", tiers[i].name));
    }
    if (i > 0 && tiers[i].threshold <= tiers[i - 1].threshold) {
      return Invalid("loyalty.tiers", "thresholds must ascend");
    }
  }
  return LoyaltyProgram(std::move(currency), std::move(tiers));
}

absl::StatusOr<LoyaltyProgram> LoyaltyProgram::Parse(std::string currency,
                                                     absl::string_view tiers) {
  std::vector<LoyaltyTier> parsed;
  for (absl::string_view item : absl::StrSplit(tiers, ',', absl::SkipWhitespace())) {
    std::pair<absl::string_view, absl::string_view> kv = absl::StrSplit(item, ':');
    LoyaltyTier t;
    t.name = std::string(absl::StripAsciiWhitespace(kv.first));
    if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(kv.second), &t.threshold) || t.threshold < 0) {
      return Invalid("loyalty.tiers", absl::StrCat("'", item, "' is not name:threshold"));
    }
    parsed.push_back(std::move(t));
  }
  return Create(std::move(currency), std::move(parsed));
}

int LoyaltyProgram::Rank(absl::string_view tier) const {
  for (size_t i = 0; i < tiers_.size(); ++i) {
    if (tiers_[i].name == tier) return static_cast<int>(i);
  }
  return -1;
}

const std::string& LoyaltyProgram::TierFor(int64_t spend) const {
  size_t best = 0;
  for (size_t i = 0; i < tiers_.size(); ++i) {
    if (spend >= tiers_[i].threshold) best = i;
  }
  return tiers_[best].name;
}

absl::StatusOr<crm::v1::OpenCustomerRequest> NormalizeOpenCustomer(
    const crm::v1::OpenCustomerRequest& request, const LoyaltyProgram& program) {
  crm::v1::OpenCustomerRequest r = request;
  if (auto st = CheckRequestId(r.request_id()); !st.ok()) return st;
  if (auto st = CheckOptionalId("customer_id", r.customer_id()); !st.ok()) return st;
  r.set_name(std::string(absl::StripAsciiWhitespace(r.name())));
  if (auto st = CheckLine("name", r.name(), kMaxName, /*required=*/true); !st.ok()) return st;
  if (auto st = CheckOptionalId("owner_id", r.owner_id()); !st.ok()) return st;
  // Trimmed: managers' access compares territories whole, so "EMEA " from a
  // form would put the account out of the EMEA manager's reach.
  r.set_territory(std::string(absl::StripAsciiWhitespace(r.territory())));
  if (auto st = CheckLine("territory", r.territory(), kMaxTerritory); !st.ok()) return st;
  if (r.tier().empty()) r.set_tier(program.EntryTier());
  if (program.Rank(r.tier()) < 0) return Invalid("tier", "not a tier of the loyalty program");
  if (r.contacts_size() > kMaxContacts) {
    return Invalid("contacts", absl::StrCat("more than ", kMaxContacts, " entries"));
  }
  for (int i = 0; i < r.contacts_size(); ++i) {
    if (auto st = NormalizeContact(absl::StrCat("contacts[", i, "]"), *r.mutable_contacts(i));
        !st.ok()) {
      return st;
    }
  }
  return r;
}

namespace {

absl::StatusOr<std::vector<CustomerEvent>> DecideOpen(const std::optional<crm::v1::Customer>& state,
                                                      const OpenCustomer& c) {
  if (state.has_value()) {
    return absl::AlreadyExistsError(
        absl::StrCat("customer ", c.request.customer_id(), " is already open"));
  }
  if (c.request.customer_id().empty()) return Invalid("customer_id", "must be assigned");
  crm::v1::CustomerOpened e;
  e.set_customer_id(c.request.customer_id());
  e.set_name(c.request.name());
  e.set_owner_id(c.request.owner_id());
  e.set_territory(c.request.territory());
  e.set_tier(c.request.tier());
  *e.mutable_contacts() = c.request.contacts();
  e.set_lead_id(c.lead_id);
  return std::vector<CustomerEvent>{std::move(e)};
}

absl::StatusOr<std::vector<CustomerEvent>> DecideSpend(
    const std::optional<crm::v1::Customer>& state, const RecordSpend& c) {
  if (!state.has_value()) return absl::NotFoundError("customer not found");
  if (auto st = CheckMoney("amount", c.amount); !st.ok()) return st;
  if (auto st = CheckId("contract_id", c.contract_id); !st.ok()) return st;
  const auto& spend = state->cumulative_spend();
  const auto it = spend.find(c.amount.currency());
  const int64_t before = it == spend.end() ? 0 : it->second;
  int64_t after = 0;
  if (__builtin_add_overflow(before, c.amount.minor_units(), &after)) {
    return absl::FailedPreconditionError(
        absl::StrCat("cumulative spend in ", c.amount.currency(), " would overflow"));
  }
  std::vector<CustomerEvent> events;
  crm::v1::CustomerSpendRecorded recorded;
  recorded.set_customer_id(state->customer_id());
  recorded.set_contract_id(c.contract_id);
  *recorded.mutable_amount() = c.amount;
  recorded.set_cumulative_minor_units(after);
  events.push_back(std::move(recorded));
  if (c.amount.currency() == c.program.currency()) {
    const std::string& earned = c.program.TierFor(after);
    // Upgrades only: a tier set by hand above the earned one is kept, and
    // so is one the program no longer ranks (renamed or retired), which no
    // spend can be said to be above.
    const bool unranked = !state->tier().empty() && c.program.Rank(state->tier()) < 0;
    if (!unranked && c.program.Rank(earned) > c.program.Rank(state->tier())) {
      crm::v1::CustomerTierChanged changed;
      changed.set_customer_id(state->customer_id());
      changed.set_from_tier(state->tier());
      changed.set_to_tier(earned);
      *changed.mutable_cumulative_spend() = MakeMoney(c.amount.currency(), after);
      events.push_back(std::move(changed));
    }
  }
  return events;
}

}  // namespace

absl::StatusOr<std::vector<CustomerEvent>> Decide(const std::optional<crm::v1::Customer>& state,
                                                  const CustomerCommand& command) {
  return std::visit(
      [&](const auto& c) -> absl::StatusOr<std::vector<CustomerEvent>> {
        using T = std::decay_t<decltype(c)>;
        if constexpr (std::is_same_v<T, OpenCustomer>) {
          return DecideOpen(state, c);
        } else {
          return DecideSpend(state, c);
        }
      },
      command);
}

void Apply(crm::v1::Customer& state, const CustomerEvent& event, absl::Time occurred_at) {
  std::visit(
      [&](const auto& e) {
        using T = std::decay_t<decltype(e)>;
        if constexpr (std::is_same_v<T, crm::v1::CustomerOpened>) {
          state.set_customer_id(e.customer_id());
          state.set_name(e.name());
          state.set_owner_id(e.owner_id());
          state.set_territory(e.territory());
          state.set_tier(e.tier());
          *state.mutable_contacts() = e.contacts();
          state.set_lead_id(e.lead_id());
          *state.mutable_opened_at() = ToProtoTimestamp(occurred_at);
        } else if constexpr (std::is_same_v<T, crm::v1::CustomerSpendRecorded>) {
          (*state.mutable_cumulative_spend())[e.amount().currency()] = e.cumulative_minor_units();
        } else if constexpr (std::is_same_v<T, crm::v1::CustomerTierChanged>) {
          state.set_tier(e.to_tier());
        }
      },
      event);
  state.set_version(state.version() + 1);
}

std::string CustomerStream(absl::string_view customer_id) {
  return absl::StrCat("customer-", customer_id);
}

}  // namespace crm::sales
