#pragma once

#include <functional>
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

// Folds the summary of `from` into `into` so that `into` reads as the view
// of one customer with both sets of events (customers merged into one):
// records united by id, each value taken from the later event, counts
// summed, totals derived again. customer_id stays that of `into`; derive
// the health after.
void JoinView(crm::v1::Customer360& into, const crm::v1::Customer360& from);

// Empties the profile values `gone` says can no longer be read (sealed with
// a key destroyed by an erasure), with their stamps. Before a join: an
// erased member's later email would otherwise hide the readable one of a
// member who was not erased.
void DropProfileValues(crm::v1::Customer360& view,
                       const std::function<bool(const std::string&)>& gone);

// One human-readable line for the timeline.
std::string Summarize(const crm::v1::EventEnvelope& event);

}  // namespace crm::analytics
