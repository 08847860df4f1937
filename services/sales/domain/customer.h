#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "crm/v1/sales.pb.h"

namespace crm::sales {

struct LoyaltyTier {
  std::string name;
  // Cumulative spend (minor units of the program's currency) from which
  // the tier applies.
  int64_t threshold = 0;
};

// Tiers by cumulative approved spend in one currency; spend in other
// currencies is recorded but does not count towards a tier.
class LoyaltyProgram {
 public:
  // standard from 0, silver from 10 000.00, gold from 50 000.00, platinum
  // from 200 000.00 EUR.
  static LoyaltyProgram Default();
  // Tiers ascending by threshold, the first at 0, names unique.
  static absl::StatusOr<LoyaltyProgram> Create(std::string currency,
                                               std::vector<LoyaltyTier> tiers);
  // "standard:0,silver:1000000,gold:5000000" (thresholds in minor units).
  static absl::StatusOr<LoyaltyProgram> Parse(std::string currency, absl::string_view tiers);

  const std::string& currency() const { return currency_; }
  const std::string& EntryTier() const { return tiers_.front().name; }
  // Position of a tier, -1 when the program has none of that name.
  int Rank(absl::string_view tier) const;
  // The highest tier whose threshold `spend` reaches.
  const std::string& TierFor(int64_t spend) const;

 private:
  LoyaltyProgram(std::string currency, std::vector<LoyaltyTier> tiers)
      : currency_(std::move(currency)), tiers_(std::move(tiers)) {}
  std::string currency_;
  std::vector<LoyaltyTier> tiers_;
};

// Validates and normalizes (trims, lowercases emails, resolves the entry
// tier); the error names the first offending field.
absl::StatusOr<crm::v1::OpenCustomerRequest> NormalizeOpenCustomer(
    const crm::v1::OpenCustomerRequest& request, const LoyaltyProgram& program);

// Commands of a customer account.
struct OpenCustomer {
  crm::v1::OpenCustomerRequest request;  // normalized, customer_id assigned
  std::string lead_id;                   // set when opened by a conversion
};
// Counts an approved contract's value; may upgrade the tier.
struct RecordSpend {
  std::string contract_id;
  crm::v1::Money amount;
  LoyaltyProgram program = LoyaltyProgram::Default();
};
using CustomerCommand = std::variant<OpenCustomer, RecordSpend>;

using CustomerEvent = std::variant<crm::v1::CustomerOpened, crm::v1::CustomerSpendRecorded,
                                   crm::v1::CustomerTierChanged>;

absl::StatusOr<std::vector<CustomerEvent>> Decide(const std::optional<crm::v1::Customer>& state,
                                                  const CustomerCommand& command);
void Apply(crm::v1::Customer& state, const CustomerEvent& event, absl::Time occurred_at);

// "customer-<id>"
std::string CustomerStream(absl::string_view customer_id);

}  // namespace crm::sales
