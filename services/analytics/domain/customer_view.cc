#include "services/analytics/domain/customer_view.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "crm/v1/leads.pb.h"
#include "google/protobuf/util/time_util.h"

namespace crm::analytics {
namespace {

using google::protobuf::Timestamp;
using google::protobuf::util::TimeUtil;

bool Before(const Timestamp& a, const Timestamp& b) { return a < b; }

std::string ChannelName(crm::v1::LeadChannel c) {
  std::string name = crm::v1::LeadChannel_Name(c);
  constexpr std::string_view kPrefix = "LEAD_CHANNEL_";
  if (name.rfind(kPrefix, 0) == 0) name = name.substr(kPrefix.size());
  std::transform(name.begin(), name.end(), name.begin(),
                 [](char ch) { return ch == '_' ? ' ' : static_cast<char>(std::tolower(ch)); });
  return name;
}

void ApplyLeadCaptured(crm::v1::Customer360& view, const crm::v1::EventEnvelope& event,
                       const crm::v1::LeadCaptured& lead) {
  // Kept sorted so the stored view does not depend on delivery order.
  auto* ids = view.mutable_lead_ids();
  auto pos = std::lower_bound(ids->begin(), ids->end(), lead.lead_id());
  if (pos == ids->end() || *pos != lead.lead_id()) {
    const int index = static_cast<int>(pos - ids->begin());
    ids->Add(std::string(lead.lead_id()));
    // Bubble the new id from the end into place.
    for (int i = ids->size() - 1; i > index; --i) ids->SwapElements(i, i - 1);
  }
  if (view.lifecycle_stage() == crm::v1::LIFECYCLE_STAGE_UNSPECIFIED) {
    view.set_lifecycle_stage(crm::v1::LIFECYCLE_STAGE_LEAD);
  }
  // The newest capture describes the person; ties keep the larger event id.
  if (view.has_profile_as_of() && Before(event.occurred_at(), view.profile_as_of())) return;
  auto* p = view.mutable_profile();
  const auto& c = lead.contact();
  auto set_if = [](std::string* field, const std::string& v) {
    if (!v.empty()) *field = v;
  };
  set_if(p->mutable_first_name(), c.first_name());
  set_if(p->mutable_last_name(), c.last_name());
  set_if(p->mutable_email(), c.email());
  set_if(p->mutable_phone(), c.phone());
  set_if(p->mutable_company(), lead.company());
  set_if(p->mutable_region(), lead.region());
  *view.mutable_profile_as_of() = event.occurred_at();
}

std::string SummarizeLeadCaptured(const crm::v1::LeadCaptured& lead) {
  const std::string& who =
      lead.contact().email().empty() ? lead.contact().phone() : lead.contact().email();
  return absl::StrCat("Lead captured via ", ChannelName(lead.channel()), " (", who, ")",
                      lead.duplicate_of_lead_id().empty() ? "" : ", known person");
}

}  // namespace

std::string Summarize(const crm::v1::EventEnvelope& event) {
  crm::v1::LeadCaptured lead;
  if (event.payload().Is<crm::v1::LeadCaptured>() && event.payload().UnpackTo(&lead)) {
    return SummarizeLeadCaptured(lead);
  }
  return event.type();
}

crm::v1::TimelineEntry ApplyToView(crm::v1::Customer360& view,
                                   const crm::v1::EventEnvelope& event) {
  view.set_customer_id(event.customer_id());
  view.set_event_count(view.event_count() + 1);
  if (!view.has_first_seen() || Before(event.occurred_at(), view.first_seen())) {
    *view.mutable_first_seen() = event.occurred_at();
  }
  if (!view.has_last_seen() || Before(view.last_seen(), event.occurred_at())) {
    *view.mutable_last_seen() = event.occurred_at();
  }
  crm::v1::TimelineEntry entry;
  entry.set_event_id(event.event_id());
  entry.set_type(event.type());
  entry.set_stream(event.stream());
  *entry.mutable_occurred_at() = event.occurred_at();
  crm::v1::LeadCaptured lead;
  if (event.payload().Is<crm::v1::LeadCaptured>() && event.payload().UnpackTo(&lead)) {
    ApplyLeadCaptured(view, event, lead);
    entry.set_summary(SummarizeLeadCaptured(lead));
  } else {
    entry.set_summary(event.type());
  }
  return entry;
}

}  // namespace crm::analytics
