#pragma once

#include <map>
#include <optional>

#include "absl/time/time.h"
#include "crm/v1/service_desk.pb.h"
#include "services/service-desk/domain/business_calendar.h"

namespace crm::service_desk {

// The SLA configuration a ticket decision needs.
struct SlaRules {
  BusinessCalendar calendar = BusinessCalendar::AlwaysOpen();
  // A priority without a policy has no targets.
  std::map<crm::v1::TicketPriority, crm::v1::SlaPolicy> policies;
  // How long after resolution the ticket can be reopened; then it closes.
  absl::Duration reopen_window = absl::Hours(168);
};

// SLA clocks (crm.v1.SlaClock): pure functions of the clock, the calendar
// and the time they are given. A clock runs until its target is met,
// pauses while the ticket waits on the customer or is resolved, and owes
// at most one warning and one breach.

// A running clock started at `now`. A zero target gives a clock that never
// runs (the policy sets no target); a zero warning, or one as long as the
// target or longer, gives no warning.
crm::v1::SlaClock StartClock(const BusinessCalendar& calendar, absl::Time now,
                             absl::Duration target, absl::Duration warning_before);

// Stops a running clock, keeping the business time left. A breached clock
// has nothing left to track and stays as it is.
crm::v1::SlaClock PauseClock(const BusinessCalendar& calendar, crm::v1::SlaClock clock,
                             absl::Time now);

// Restarts a paused clock with the business time it had left; one paused
// while already overdue is due at once.
crm::v1::SlaClock ResumeClock(const BusinessCalendar& calendar, crm::v1::SlaClock clock,
                              absl::Time now);

// The target is met at `now` (first response, resolution); idempotent.
crm::v1::SlaClock MeetClock(crm::v1::SlaClock clock, absl::Time now);
// Clears the met time so the clock can run again (reopen).
crm::v1::SlaClock UnmeetClock(crm::v1::SlaClock clock);

// Running: has a target, not met, not paused.
bool IsRunning(const crm::v1::SlaClock& clock);

enum class SlaDue { kNone, kWarning, kBreach };

// What the clock owes at `now`. A warning that was not given by the time
// the breach is due is skipped: the breach says more.
SlaDue DueAt(const crm::v1::SlaClock& clock, absl::Time now);

// When the clock next owes something; nullopt when it never will.
std::optional<absl::Time> NextDue(const crm::v1::SlaClock& clock);

}  // namespace crm::service_desk
