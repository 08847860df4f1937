#include "services/service-desk/domain/sla.h"

#include <algorithm>

#include "libs/common/ids.h"

namespace crm::service_desk {
namespace {

absl::Time At(const google::protobuf::Timestamp& ts) { return FromProtoTimestamp(ts); }

// Due and warning times for `remaining` business time from `now`.
void Schedule(const BusinessCalendar& calendar, crm::v1::SlaClock& clock, absl::Time now,
              absl::Duration remaining) {
  const absl::Duration left = std::max(remaining, absl::ZeroDuration());
  const absl::Duration warning_before = absl::Seconds(clock.warning_before_seconds());
  *clock.mutable_due_at() = ToProtoTimestamp(calendar.Add(now, left));
  // A clock resumed with no more than the warning lead left warns when
  // business time next runs, not at `now` (a Saturday, say): Add(now, 0)
  // is `now` itself even when the desk is closed.
  *clock.mutable_warning_at() =
      ToProtoTimestamp(calendar.Add(now, std::max(left - warning_before, absl::Nanoseconds(1))));
}

}  // namespace

crm::v1::SlaClock StartClock(const BusinessCalendar& calendar, absl::Time now,
                             absl::Duration target, absl::Duration warning_before) {
  crm::v1::SlaClock clock;
  if (target <= absl::ZeroDuration()) return clock;
  clock.set_target_seconds(absl::ToInt64Seconds(target));
  // One warning length serves both targets of a policy ("an hour before"):
  // a target no longer than it gets no warning, not one at the opening.
  if (warning_before > absl::ZeroDuration() && warning_before < target) {
    clock.set_warning_before_seconds(absl::ToInt64Seconds(warning_before));
  }
  Schedule(calendar, clock, now, target);
  return clock;
}

bool IsRunning(const crm::v1::SlaClock& clock) {
  return clock.target_seconds() > 0 && !clock.has_met_at() && !clock.paused();
}

crm::v1::SlaClock PauseClock(const BusinessCalendar& calendar, crm::v1::SlaClock clock,
                             absl::Time now) {
  if (!IsRunning(clock) || clock.breached()) return clock;
  // Rounded up: 0.8 s left stored as 0 would be due at once on resume,
  // whenever that is.
  clock.set_remaining_seconds(absl::ToInt64Seconds(
      absl::Ceil(calendar.Between(now, At(clock.due_at())), absl::Seconds(1))));
  clock.set_paused(true);
  clock.clear_due_at();
  clock.clear_warning_at();
  return clock;
}

crm::v1::SlaClock ResumeClock(const BusinessCalendar& calendar, crm::v1::SlaClock clock,
                              absl::Time now) {
  if (!clock.paused()) return clock;
  clock.set_paused(false);
  Schedule(calendar, clock, now, absl::Seconds(clock.remaining_seconds()));
  clock.set_remaining_seconds(0);
  return clock;
}

crm::v1::SlaClock MeetClock(crm::v1::SlaClock clock, absl::Time now) {
  if (clock.target_seconds() <= 0 || clock.has_met_at()) return clock;
  *clock.mutable_met_at() = ToProtoTimestamp(now);
  return clock;
}

crm::v1::SlaClock UnmeetClock(crm::v1::SlaClock clock) {
  clock.clear_met_at();
  return clock;
}

SlaDue DueAt(const crm::v1::SlaClock& clock, absl::Time now) {
  if (!IsRunning(clock) || clock.breached()) return SlaDue::kNone;
  if (now >= At(clock.due_at())) return SlaDue::kBreach;
  if (!clock.warned() && At(clock.warning_at()) < At(clock.due_at()) &&
      now >= At(clock.warning_at())) {
    return SlaDue::kWarning;
  }
  return SlaDue::kNone;
}

std::optional<absl::Time> NextDue(const crm::v1::SlaClock& clock) {
  if (!IsRunning(clock) || clock.breached()) return std::nullopt;
  const absl::Time due = At(clock.due_at());
  const absl::Time warning = At(clock.warning_at());
  if (!clock.warned() && warning < due) return warning;
  return due;
}

}  // namespace crm::service_desk
