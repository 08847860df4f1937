#include "services/leads/domain/scoring.h"

#include <algorithm>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"

namespace crm::leads {
namespace {

constexpr int32_t kMaxPart = 20;

int32_t BudgetPoints(const crm::v1::Bant& bant) {
  if (!bant.has_budget()) return 0;
  const int64_t major = bant.budget().minor_units() / 100;
  if (bant.budget().minor_units() <= 0) return 0;
  if (major >= 100'000) return 20;
  if (major >= 10'000) return 15;
  if (major >= 1'000) return 10;
  return 5;
}

// Whole words of the title, so "Headhunter" is not a head of anything;
// words after "to" name whom the person works for ("Assistant to the CEO").
int32_t AuthorityPoints(const crm::v1::Lead& lead) {
  if (lead.bant().decision_maker()) return 20;
  const std::string title = absl::AsciiStrToLower(lead.contact().title());
  if (title.empty()) return 0;
  static constexpr absl::string_view kExecutive[] = {
      "chief", "founder", "cofounder", "president", "vp",  "svp", "evp",  "director", "head",
      "ceo",   "cto",     "cfo",       "coo",       "cio", "cmo", "ciso", "cro",      "cpo"};
  static constexpr absl::string_view kManager[] = {"manager", "lead", "supervisor", "principal",
                                                   "avp"};
  int32_t points = 5;
  // Only "to" standing alone: "Go-to-Market Director" directs.
  absl::string_view role = title;
  for (absl::string_view part : absl::StrSplit(title, ' ', absl::SkipEmpty())) {
    if (part == "to") {
      role = absl::string_view(title.data(), part.data() - title.data());
      break;
    }
  }
  // "Owner" and "partner" are executive ("Owner & CEO", "Restaurant Owner",
  // "Managing Partner", "Partner at a law firm") unless a word before says
  // whose function it is ("Product Owner", "Channel Partner") or a word
  // after makes it a role about partners ("Partner Manager").
  static constexpr absl::string_view kStakeholder[] = {"owner", "partner"};
  static constexpr absl::string_view kOwnedFunction[] = {
      "product",    "process",  "data",        "content",   "channel",     "service",
      "system",     "systems",  "application", "program",   "solution",    "solutions",
      "technology", "alliance", "alliances",   "asset",     "risk",        "control",
      "platform",   "feature",  "release",     "community", "integration", "implementation"};
  static constexpr absl::string_view kPartnerRole[] = {
      "manager", "management", "marketing",  "success",    "program",     "programs",
      "account", "accounts",   "relations",  "enablement", "development", "sales",
      "channel", "lead",       "operations", "specialist", "coordinator", "associate"};
  auto in = [](const auto& words, absl::string_view word) {
    return std::find(std::begin(words), std::end(words), word) != std::end(words);
  };
  for (absl::string_view segment : absl::StrSplit(role, absl::ByAnyChar(",/&()"))) {
    std::vector<absl::string_view> words =
        absl::StrSplit(segment, absl::ByAnyChar(" -."), absl::SkipEmpty());
    for (size_t i = 0; i < words.size(); ++i) {
      if (in(kStakeholder, words[i])) {
        const bool function = i > 0 && in(kOwnedFunction, words[i - 1]);
        const bool about = i + 1 < words.size() && in(kPartnerRole, words[i + 1]);
        if (!function && !about) return 15;
        continue;
      }
      if (in(kExecutive, words[i])) return 15;
      if (in(kManager, words[i])) points = 10;
    }
  }
  return points;
}

int32_t NeedPoints(const crm::v1::Lead& lead) {
  const int32_t stated = absl::StripAsciiWhitespace(lead.bant().need()).empty() ? 0 : 10;
  return std::min(kMaxPart, stated + 5 * std::min(lead.product_interests_size(), 2));
}

int32_t TimelinePoints(crm::v1::PurchaseTimeline timeline) {
  switch (timeline) {
    case crm::v1::PURCHASE_TIMELINE_IMMEDIATE:
      return 20;
    case crm::v1::PURCHASE_TIMELINE_QUARTER:
      return 15;
    case crm::v1::PURCHASE_TIMELINE_YEAR:
      return 10;
    default:
      return 0;
  }
}

int32_t ChannelPoints(crm::v1::LeadChannel channel) {
  switch (channel) {
    case crm::v1::LEAD_CHANNEL_TRADE_SHOW:
    case crm::v1::LEAD_CHANNEL_STORE:
    case crm::v1::LEAD_CHANNEL_SALES:
      return 5;
    case crm::v1::LEAD_CHANNEL_WEB_FORM:
    case crm::v1::LEAD_CHANNEL_EMAIL:
    case crm::v1::LEAD_CHANNEL_PARTNER:
      return 3;
    case crm::v1::LEAD_CHANNEL_UNSPECIFIED:
      return 0;
    default:
      return 1;
  }
}

}  // namespace

crm::v1::LeadScore ComputeScore(const crm::v1::Lead& lead) {
  crm::v1::LeadScore s;
  s.set_budget(BudgetPoints(lead.bant()));
  s.set_authority(AuthorityPoints(lead));
  s.set_need(NeedPoints(lead));
  s.set_timeline(TimelinePoints(lead.bant().timeline()));
  s.set_engagement(std::min(
      kMaxPart, ChannelPoints(lead.channel()) + std::max<int32_t>(0, lead.engagement_points())));
  s.set_total(s.budget() + s.authority() + s.need() + s.timeline() + s.engagement());
  return s;
}

bool SameScore(const crm::v1::LeadScore& a, const crm::v1::LeadScore& b) {
  return a.budget() == b.budget() && a.authority() == b.authority() && a.need() == b.need() &&
         a.timeline() == b.timeline() && a.engagement() == b.engagement() && a.total() == b.total();
}

}  // namespace crm::leads
