#pragma once

#include <array>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/time/civil_time.h"
#include "absl/time/time.h"
#include "crm/v1/service_desk.pb.h"

namespace crm::service_desk {

// Business time of one time zone: weekly working hours minus holidays. SLA
// targets are measured in it, so a ticket opened on Friday evening is not
// overdue on Saturday morning.
class BusinessCalendar {
 public:
  // Validates the configuration; errors name the field, e.g.
  // "calendar.hours[2].end_minute: ...". The time zone must be installed.
  static absl::StatusOr<BusinessCalendar> Create(const crm::v1::BusinessCalendar& config);

  // Every day, all day, in UTC.
  static BusinessCalendar AlwaysOpen();

  // The instant `business` of business time after `start`; `start` itself
  // for zero or less. Lands on a closing time exactly when the time runs
  // out there (due at 17:00, not at 09:00 the next day).
  absl::Time Add(absl::Time start, absl::Duration business) const;

  // Business time within [from, to); negative when `to` is before `from`.
  absl::Duration Between(absl::Time from, absl::Time to) const;

  bool IsOpen(absl::Time t) const;

  // Working time of a week without holidays.
  absl::Duration WeeklyOpen() const;

 private:
  // Minutes after midnight, [start, end), sorted and not overlapping.
  using Intervals = std::vector<std::pair<int, int>>;

  BusinessCalendar() = default;
  // The day's open intervals as instants; none on holidays.
  std::vector<std::pair<absl::Time, absl::Time>> OpenIntervals(absl::CivilDay day) const;
  // The instant a wall-clock time of the zone names.
  absl::Time Instant(absl::CivilSecond wall) const;

  absl::TimeZone zone_ = absl::UTCTimeZone();
  std::array<Intervals, 7> week_;  // index 0 = Monday
  absl::flat_hash_set<absl::CivilDay> holidays_;
};

}  // namespace crm::service_desk
