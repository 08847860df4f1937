#include "services/service-desk/domain/business_calendar.h"

#include "gtest/gtest.h"

namespace crm::service_desk {
namespace {

// January 2024: Monday the 1st, Friday the 5th, Monday the 8th.
absl::Time Utc(int day, int hour, int minute = 0) {
  return absl::FromCivil(absl::CivilMinute(2024, 1, day, hour, minute), absl::UTCTimeZone());
}

crm::v1::BusinessCalendar NineToFive(std::vector<std::string> holidays = {}) {
  crm::v1::BusinessCalendar c;
  for (int day = 1; day <= 5; ++day) {
    auto* h = c.add_hours();
    h->set_weekday(day);
    h->set_start_minute(9 * 60);
    h->set_end_minute(17 * 60);
  }
  for (auto& h : holidays) c.add_holidays(h);
  return c;
}

BusinessCalendar Calendar(const crm::v1::BusinessCalendar& config) {
  auto c = BusinessCalendar::Create(config);
  EXPECT_TRUE(c.ok()) << c.status();
  return *c;
}

void ExpectInvalid(const crm::v1::BusinessCalendar& config, const std::string& field) {
  auto c = BusinessCalendar::Create(config);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(c.status().message().substr(0, field.size() + 1), field + ":") << c.status();
}

TEST(BusinessCalendarTest, TimeWithinOneWorkingDay) {
  const auto cal = Calendar(NineToFive());
  EXPECT_EQ(cal.Add(Utc(1, 10), absl::Hours(2)), Utc(1, 12));
  EXPECT_EQ(cal.Between(Utc(1, 10), Utc(1, 12)), absl::Hours(2));
}

TEST(BusinessCalendarTest, TimeRunningOutAtClosingIsDueAtClosing) {
  const auto cal = Calendar(NineToFive());
  EXPECT_EQ(cal.Add(Utc(1, 15), absl::Hours(2)), Utc(1, 17));
}

TEST(BusinessCalendarTest, TimeCarriesOverToTheNextMorning) {
  const auto cal = Calendar(NineToFive());
  EXPECT_EQ(cal.Add(Utc(1, 16), absl::Hours(2)), Utc(2, 10));
  // Starting before opening counts from opening.
  EXPECT_EQ(cal.Add(Utc(1, 7), absl::Hours(1)), Utc(1, 10));
  // Starting after closing counts from the next opening.
  EXPECT_EQ(cal.Add(Utc(1, 20), absl::Minutes(30)), Utc(2, 9, 30));
}

TEST(BusinessCalendarTest, WeekendsAreSkipped) {
  const auto cal = Calendar(NineToFive());
  EXPECT_EQ(cal.Add(Utc(5, 16), absl::Hours(2)), Utc(8, 10));
  EXPECT_EQ(cal.Between(Utc(5, 16), Utc(8, 10)), absl::Hours(2));
  EXPECT_FALSE(cal.IsOpen(Utc(6, 12)));
  EXPECT_TRUE(cal.IsOpen(Utc(5, 12)));
  EXPECT_FALSE(cal.IsOpen(Utc(5, 17)));  // closing time is closed
}

TEST(BusinessCalendarTest, HolidaysAreSkipped) {
  const auto cal = Calendar(NineToFive({"2024-01-08"}));
  EXPECT_EQ(cal.Add(Utc(5, 16), absl::Hours(2)), Utc(9, 10));
  EXPECT_EQ(cal.Between(Utc(5, 9), Utc(9, 17)), absl::Hours(16));
}

TEST(BusinessCalendarTest, SplitHoursSkipTheBreak) {
  crm::v1::BusinessCalendar config;
  for (auto [start, end] : {std::pair{9 * 60, 12 * 60}, std::pair{13 * 60, 17 * 60}}) {
    auto* h = config.add_hours();
    h->set_weekday(1);
    h->set_start_minute(start);
    h->set_end_minute(end);
  }
  const auto cal = Calendar(config);
  EXPECT_EQ(cal.Add(Utc(1, 11), absl::Hours(2)), Utc(1, 14));
  EXPECT_EQ(cal.Between(Utc(1, 11), Utc(1, 14)), absl::Hours(2));
  // Only Mondays are open: the next working time is a week later.
  EXPECT_EQ(cal.Add(Utc(1, 16), absl::Hours(2)), Utc(8, 10));
}

TEST(BusinessCalendarTest, HoursAreLocalToTheTimeZone) {
  auto config = NineToFive();
  config.set_time_zone("America/New_York");  // UTC-5 in January
  const auto cal = Calendar(config);
  EXPECT_FALSE(cal.IsOpen(Utc(1, 10)));  // 05:00 in New York
  EXPECT_TRUE(cal.IsOpen(Utc(1, 15)));   // 10:00 in New York
  EXPECT_EQ(cal.Add(Utc(1, 10), absl::Hours(1)), Utc(1, 15));
}

// Hours that begin at a wall time the clocks skip begin when they jump:
// 02:30 on the spring-forward night in Los Angeles is 03:00 PDT. Hours
// wholly inside the skipped hour do not exist.
TEST(BusinessCalendarTest, HoursStartingInTheSkippedHourStartWhenTheClocksJump) {
  crm::v1::BusinessCalendar config;
  config.set_time_zone("America/Los_Angeles");
  for (auto [start, end] : {std::pair{2 * 60, 2 * 60 + 30}, std::pair{2 * 60 + 45, 10 * 60}}) {
    auto* h = config.add_hours();
    h->set_weekday(7);  // Sunday 2024-03-10
    h->set_start_minute(start);
    h->set_end_minute(end);
  }
  const auto cal = Calendar(config);
  const absl::Time jump = absl::FromCivil(absl::CivilSecond(2024, 3, 10, 10, 0, 0),
                                          absl::UTCTimeZone());  // 03:00 PDT
  EXPECT_TRUE(cal.IsOpen(jump));
  EXPECT_EQ(cal.Between(jump - absl::Hours(3), jump + absl::Hours(8)), absl::Hours(7));
  EXPECT_EQ(cal.Add(jump - absl::Hours(1), absl::Minutes(1)), jump + absl::Minutes(1));
}

TEST(BusinessCalendarTest, BetweenIsNegativeBackwardsAndInvertsAdd) {
  const auto cal = Calendar(NineToFive());
  EXPECT_EQ(cal.Between(Utc(8, 10), Utc(5, 16)), -absl::Hours(2));
  for (int minutes : {1, 59, 480, 481, 2400, 5000}) {
    const absl::Time start = Utc(3, 13, 17);
    EXPECT_EQ(cal.Between(start, cal.Add(start, absl::Minutes(minutes))), absl::Minutes(minutes))
        << minutes;
  }
}

TEST(BusinessCalendarTest, AlwaysOpenIsPlainTime) {
  const auto cal = BusinessCalendar::AlwaysOpen();
  EXPECT_EQ(cal.Add(Utc(6, 23), absl::Hours(3)), Utc(7, 2));
  EXPECT_EQ(cal.Between(Utc(6, 23), Utc(7, 2)), absl::Hours(3));
}

TEST(BusinessCalendarTest, BadConfigurationNamesTheField) {
  auto c = NineToFive();
  c.set_time_zone("Mars/Olympus_Mons");
  ExpectInvalid(c, "calendar.time_zone");
  c = NineToFive();
  c.mutable_hours(2)->set_weekday(8);
  ExpectInvalid(c, "calendar.hours[2].weekday");
  c = NineToFive();
  c.mutable_hours(0)->set_end_minute(8 * 60);
  ExpectInvalid(c, "calendar.hours[0].end_minute");
  c = NineToFive();
  c.mutable_hours(0)->set_start_minute(-1);
  ExpectInvalid(c, "calendar.hours[0].start_minute");
  c = NineToFive();
  auto* overlap = c.add_hours();
  overlap->set_weekday(1);
  overlap->set_start_minute(16 * 60);
  overlap->set_end_minute(18 * 60);
  ExpectInvalid(c, "calendar.hours[5]");
  ExpectInvalid(crm::v1::BusinessCalendar(), "calendar.hours");
  ExpectInvalid(NineToFive({"2024-13-01"}), "calendar.holidays[0]");
}

}  // namespace
}  // namespace crm::service_desk
