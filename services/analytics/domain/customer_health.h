#pragma once

#include <optional>
#include <string>

#include "crm/v1/analytics.pb.h"
#include "google/protobuf/timestamp.pb.h"
#include "services/analytics/domain/analytics_settings.h"

namespace crm::analytics {

// Fills the read-time fields of a stored 360 view for the analytics clock
// `now` (event time, never the wall clock): churn risk score and factors,
// CLV estimate, segments, and an AT_RISK or CHURNED lifecycle stage. A pure
// function of the stored view, `now` and the settings, so a rebuilt store
// answers exactly as the live one did.
void DeriveHealth(crm::v1::Customer360& view, const google::protobuf::Timestamp& now,
                  const AnalyticsConfig& config);

// True when the customer has bought: an order placed or a deal won.
bool IsBuyingCustomer(const crm::v1::Customer360& stored_view);

// Lowercase name of a segment as in docs ("high-value", "at-risk", ...).
std::string SegmentName(crm::v1::Segment segment);

// What the churn monitor does about one customer after DeriveHealth: a
// ChurnRiskRaised when an at-risk score is seen while no alert is raised
// (at most one per crossing), and the alert state to keep.
struct ChurnAlertDecision {
  crm::v1::ChurnAlertState state;
  // Set when the state must be stored (raised, or cleared after the score
  // fell below the threshold).
  bool state_changed = false;
  std::optional<crm::v1::ChurnRiskRaised> raised;
};
ChurnAlertDecision DecideChurnAlert(const crm::v1::ChurnAlertState& previous,
                                    const crm::v1::Customer360& derived_view,
                                    const AnalyticsConfig& config);

// The idempotency key of a crossing: the customer, the customer's latest
// event when it was seen and the crossing's number (ChurnAlertState
// crossings), so seeing the same crossing again appends nothing while a
// later crossing with the same cause still raises.
std::string ChurnRequestKey(const crm::v1::ChurnRiskRaised& raised, int32_t crossing);

}  // namespace crm::analytics
