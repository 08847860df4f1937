// The analytics service's read requests on arbitrary input, against a
// small projection seeded once: the first byte picks the request, the rest
// is its protobuf encoding (or the settings file's text). Beyond not
// crashing: a malformed page token or filter is INVALID_ARGUMENT naming
// the field, and walking the pages of a timeline or a segment from the
// first page returns every entry once.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <set>
#include <string>

#include "crm/v1/analytics.pb.h"
#include "crm/v1/audit.pb.h"
#include "fuzz/analytics_fixture.h"
#include "fuzz/fuzz_input.h"
#include "services/analytics/domain/analytics_settings.h"
#include "services/analytics/domain/funnel.h"
#include "services/analytics/domain/service_kpis.h"

namespace crm::fuzz {
namespace {

constexpr int kSeededTimeline = 120;  // events of cus_fuzz_a, see AnalyticsFixture::Seed

AnalyticsFixture& Fixture() {
  static AnalyticsFixture fixture(/*seed=*/true);
  return fixture;
}

// A read answers OK, NOT_FOUND for an unknown customer, or INVALID_ARGUMENT
// naming the field; anything else (DATA_LOSS, INTERNAL) is a bug.
void CheckRead(const absl::Status& status, absl::string_view what) {
  if (status.code() == absl::StatusCode::kNotFound) return;
  CheckValidation(status, what);
}

void Customer360(absl::string_view payload) {
  crm::v1::GetCustomer360Request request;
  if (!Decode(payload, request)) return;
  const auto& views = Fixture().views();
  auto view = views.GetCustomer360(request.customer_id(), request.timeline_page().page_size(),
                                   request.timeline_page().page_token());
  CheckRead(view.status(), "GetCustomer360");
  if (!view.ok() || !request.timeline_page().page_token().empty()) return;
  // From the first page on, the pages hold the whole timeline once.
  const int32_t page_size = request.timeline_page().page_size();
  if (request.customer_id() != "cus_fuzz_a" || page_size < 5) return;
  std::set<std::string> seen;
  int pages = 0;
  for (auto page = view; page.ok(); ++pages) {
    for (const auto& entry : page->timeline()) {
      Check(seen.insert(entry.event_id()).second, "a timeline entry on two pages",
            entry.event_id());
    }
    if (page->next_page_token().empty() || pages > kSeededTimeline) break;
    page = views.GetCustomer360("cus_fuzz_a", page_size, page->next_page_token());
    Check(page.ok(), "a next_page_token is refused", page.status().ToString());
  }
  Check(seen.size() == kSeededTimeline, "paging the timeline loses entries",
        absl::StrCat(seen.size(), " of ", kSeededTimeline));
}

void Segment(absl::string_view payload) {
  crm::v1::ListSegmentRequest request;
  if (!Decode(payload, request)) return;
  auto page = Fixture().views().ListSegment(request);
  CheckRead(page.status(), "ListSegment");
  std::set<std::string> seen;
  for (int pages = 0; page.ok() && pages < 10; ++pages) {
    for (const auto& m : page->members()) {
      Check(seen.insert(m.customer_id()).second, "a segment member on two pages", m.customer_id());
    }
    if (page->next_page_token().empty()) break;
    request.mutable_page()->set_page_token(page->next_page_token());
    page = Fixture().views().ListSegment(request);
    Check(page.ok(), "a segment's next_page_token is refused", page.status().ToString());
  }
}

void Audit(absl::string_view payload) {
  crm::v1::ListAuditEntriesRequest request;
  if (!Decode(payload, request)) return;
  auto page = Fixture().views().ListAuditEntries(request);
  CheckRead(page.status(), "ListAuditEntries");
  for (int pages = 0; page.ok() && !page->next_page_token().empty() && pages < 10; ++pages) {
    request.mutable_page()->set_page_token(page->next_page_token());
    page = Fixture().views().ListAuditEntries(request);
    Check(page.ok(), "an audit page's next_page_token is refused", page.status().ToString());
  }
}

}  // namespace
}  // namespace crm::fuzz

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  crm::fuzz::Fixture();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace crm;  // NOLINT: the request types and validators read better short
  const auto [selector, payload] = fuzz::Choose(data, size);
  switch (selector % 7) {
    case 0:
      fuzz::Customer360(payload);
      break;
    case 1:
      fuzz::Segment(payload);
      break;
    case 2: {
      v1::GetFunnelRequest request;
      if (!fuzz::Decode(payload, request)) break;
      fuzz::CheckValidation(analytics::ValidateFunnelRequest(request), "ValidateFunnelRequest");
      fuzz::CheckRead(fuzz::Fixture().views().GetFunnel(request).status(), "GetFunnel");
      break;
    }
    case 3: {
      v1::GetServiceKpisRequest request;
      if (!fuzz::Decode(payload, request)) break;
      fuzz::CheckValidation(analytics::ValidateServiceKpisRequest(request),
                            "ValidateServiceKpisRequest");
      fuzz::CheckRead(fuzz::Fixture().views().GetServiceKpis(request).status(), "GetServiceKpis");
      break;
    }
    case 4: {
      v1::AnalyticsSettings settings;
      if (!fuzz::Decode(payload, settings)) break;
      fuzz::CheckValidation(analytics::AnalyticsConfig::Create(settings).status(),
                            "AnalyticsConfig::Create");
      break;
    }
    case 6:
      fuzz::Audit(payload);
      break;
    default: {
      auto settings = analytics::AnalyticsConfig::ParseText(payload);
      fuzz::CheckValidation(settings.status(), "AnalyticsConfig::ParseText");
      if (settings.ok()) {
        fuzz::CheckValidation(analytics::AnalyticsConfig::Create(*settings).status(),
                              "AnalyticsConfig::Create");
      }
      break;
    }
  }
  return 0;
}
