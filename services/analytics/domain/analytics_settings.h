#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "crm/v1/analytics.pb.h"

namespace crm::analytics {

// The validated thresholds of segments, churn risk, CLV and complaints:
// every field of the proto is set (zeros replaced by the defaults).
class AnalyticsConfig {
 public:
  // Errors are INVALID_ARGUMENT naming the field, e.g. "dormant_after_days: negative".
  static absl::StatusOr<AnalyticsConfig> Create(crm::v1::AnalyticsSettings settings);
  // The defaults of every field, as documented on crm.v1.AnalyticsSettings.
  static AnalyticsConfig Defaults();
  // Protobuf text format; the error says line and column.
  static absl::StatusOr<crm::v1::AnalyticsSettings> ParseText(absl::string_view text);

  const crm::v1::AnalyticsSettings& settings() const { return settings_; }
  // True for a category listed in complaint_categories (ignoring case) or
  // a priority at or above complaint_min_priority.
  bool IsComplaint(absl::string_view category, int32_t priority) const;

 private:
  AnalyticsConfig() = default;
  crm::v1::AnalyticsSettings settings_;
  // complaint_categories lowercased (Utf8ToLower), as tickets' are compared.
  std::vector<std::string> complaint_categories_;
};

}  // namespace crm::analytics
