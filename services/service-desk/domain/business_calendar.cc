#include "services/service-desk/domain/business_calendar.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace crm::service_desk {
namespace {

// Search bound for Add: a calendar with at least one working interval a
// week and fewer holidays than this finds its time well within it.
constexpr int kMaxDays = 3660;
constexpr int kMaxHolidays = 1000;

absl::Status Invalid(absl::string_view field, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", why));
}

int WeekdayIndex(absl::CivilDay day) {
  // absl::Weekday::monday is 0.
  return static_cast<int>(absl::GetWeekday(day));
}

}  // namespace

absl::StatusOr<BusinessCalendar> BusinessCalendar::Create(const crm::v1::BusinessCalendar& config) {
  BusinessCalendar c;
  if (!config.time_zone().empty() && !absl::LoadTimeZone(config.time_zone(), &c.zone_)) {
    return Invalid("calendar.time_zone",
                   absl::StrCat("unknown time zone '", config.time_zone(), "'"));
  }
  for (int i = 0; i < config.hours_size(); ++i) {
    const auto& h = config.hours(i);
    const std::string field = absl::StrCat("calendar.hours[", i, "]");
    if (h.weekday() < 1 || h.weekday() > 7) {
      return Invalid(absl::StrCat(field, ".weekday"), "must be 1 (Monday) to 7 (Sunday)");
    }
    if (h.start_minute() < 0 || h.start_minute() >= 24 * 60) {
      return Invalid(absl::StrCat(field, ".start_minute"), "must be 0 to 1439");
    }
    if (h.end_minute() <= h.start_minute() || h.end_minute() > 24 * 60) {
      return Invalid(absl::StrCat(field, ".end_minute"),
                     "must be after start_minute, at most 1440");
    }
    auto& day = c.week_[h.weekday() - 1];
    for (const auto& [s, e] : day) {
      if (h.start_minute() < e && s < h.end_minute()) {
        return Invalid(field, "overlaps other hours of the same weekday");
      }
    }
    day.emplace_back(h.start_minute(), h.end_minute());
    std::sort(day.begin(), day.end());
  }
  if (std::all_of(c.week_.begin(), c.week_.end(), [](const auto& d) { return d.empty(); })) {
    return Invalid("calendar.hours", "no working hours in the week");
  }
  if (config.holidays_size() > kMaxHolidays) {
    return Invalid("calendar.holidays", absl::StrCat("more than ", kMaxHolidays, " entries"));
  }
  for (int i = 0; i < config.holidays_size(); ++i) {
    absl::CivilDay day;
    if (!absl::ParseCivilTime(config.holidays(i), &day)) {
      return Invalid(absl::StrCat("calendar.holidays[", i, "]"), "must be YYYY-MM-DD");
    }
    c.holidays_.insert(day);
  }
  return c;
}

BusinessCalendar BusinessCalendar::AlwaysOpen() {
  BusinessCalendar c;
  for (auto& day : c.week_) day = {{0, 24 * 60}};
  return c;
}

std::vector<std::pair<absl::Time, absl::Time>> BusinessCalendar::OpenIntervals(
    absl::CivilDay day) const {
  std::vector<std::pair<absl::Time, absl::Time>> out;
  if (holidays_.contains(day)) return out;
  const absl::CivilSecond midnight(day);
  for (const auto& [s, e] : week_[WeekdayIndex(day)]) {
    // Civil arithmetic, then the zone: a day with a DST change has its
    // working hours at the wall-clock times it says.
    out.emplace_back(Instant(midnight + s * 60), Instant(midnight + e * 60));
  }
  return out;
}

absl::Time BusinessCalendar::Instant(absl::CivilSecond wall) const {
  const absl::TimeZone::TimeInfo at = zone_.At(wall);
  // A wall time the clocks skip (02:30 on a spring-forward night) is the
  // moment they jump (03:00), not an hour past it.
  return at.kind == absl::TimeZone::TimeInfo::SKIPPED ? at.trans : at.pre;
}

absl::Duration BusinessCalendar::WeeklyOpen() const {
  absl::Duration total;
  for (const auto& day : week_) {
    for (const auto& [s, e] : day) total += absl::Minutes(e - s);
  }
  return total;
}

absl::Time BusinessCalendar::Add(absl::Time start, absl::Duration business) const {
  if (business <= absl::ZeroDuration()) return start;
  absl::CivilDay day = absl::ToCivilDay(start, zone_);
  for (int i = 0; i < kMaxDays; ++i, ++day) {
    for (const auto& [open, close] : OpenIntervals(day)) {
      const absl::Time from = std::max(open, start);
      if (from >= close) continue;
      const absl::Duration available = close - from;
      if (business <= available) return from + business;
      business -= available;
    }
  }
  return absl::InfiniteFuture();
}

absl::Duration BusinessCalendar::Between(absl::Time from, absl::Time to) const {
  if (to < from) return -Between(to, from);
  absl::Duration total;
  const absl::CivilDay last = absl::ToCivilDay(to, zone_);
  for (absl::CivilDay day = absl::ToCivilDay(from, zone_); day <= last; ++day) {
    for (const auto& [open, close] : OpenIntervals(day)) {
      const absl::Time a = std::max(open, from);
      const absl::Time b = std::min(close, to);
      if (a < b) total += b - a;
    }
  }
  return total;
}

bool BusinessCalendar::IsOpen(absl::Time t) const {
  for (const auto& [open, close] : OpenIntervals(absl::ToCivilDay(t, zone_))) {
    if (open <= t && t < close) return true;
  }
  return false;
}

}  // namespace crm::service_desk
