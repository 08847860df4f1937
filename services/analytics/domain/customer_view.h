#pragma once

#include <string>

#include "crm/v1/analytics.pb.h"
#include "crm/v1/envelope.pb.h"
#include "services/analytics/domain/event_fold.h"

namespace crm::analytics {

// Pure fold of the 360° view: folds `event` into `view` (the summary part,
// without the timeline) and returns the event's timeline entry. The result
// depends only on the set of events, not on the order topics deliver them
// in, so a rebuild gives the same view.
crm::v1::TimelineEntry ApplyToView(crm::v1::Customer360& view, const crm::v1::EventEnvelope& event,
                                   const Payload& payload);
// The same, decoding the payload itself.
crm::v1::TimelineEntry ApplyToView(crm::v1::Customer360& view, const crm::v1::EventEnvelope& event);

// One human-readable line for the timeline.
std::string Summarize(const crm::v1::EventEnvelope& event);

}  // namespace crm::analytics
