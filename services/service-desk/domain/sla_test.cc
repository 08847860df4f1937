#include "services/service-desk/domain/sla.h"

#include "gtest/gtest.h"
#include "libs/common/ids.h"

namespace crm::service_desk {
namespace {

absl::Time Utc(int day, int hour, int minute = 0) {
  return absl::FromCivil(absl::CivilMinute(2024, 1, day, hour, minute), absl::UTCTimeZone());
}
absl::Time At(const google::protobuf::Timestamp& ts) { return FromProtoTimestamp(ts); }

// Mon–Fri 09:00–17:00 UTC.
BusinessCalendar Office() {
  crm::v1::BusinessCalendar c;
  for (int day = 1; day <= 5; ++day) {
    auto* h = c.add_hours();
    h->set_weekday(day);
    h->set_start_minute(9 * 60);
    h->set_end_minute(17 * 60);
  }
  return *BusinessCalendar::Create(c);
}

TEST(SlaClockTest, StartsWithDueAndWarningInBusinessTime) {
  // Friday 15:00, 4 business hours, warn 1 hour before.
  const auto clock = StartClock(Office(), Utc(5, 15), absl::Hours(4), absl::Hours(1));
  EXPECT_TRUE(IsRunning(clock));
  EXPECT_EQ(clock.target_seconds(), 4 * 3600);
  EXPECT_EQ(At(clock.due_at()), Utc(8, 11));
  EXPECT_EQ(At(clock.warning_at()), Utc(8, 10));
  EXPECT_EQ(NextDue(clock), Utc(8, 10));
}

TEST(SlaClockTest, NoTargetNeverRuns) {
  const auto clock = StartClock(Office(), Utc(1, 9), absl::ZeroDuration(), absl::Hours(1));
  EXPECT_FALSE(IsRunning(clock));
  EXPECT_EQ(NextDue(clock), std::nullopt);
  EXPECT_EQ(DueAt(clock, Utc(30, 9)), SlaDue::kNone);
}

TEST(SlaClockTest, WarnsThenBreachesEachOnce) {
  auto clock = StartClock(Office(), Utc(1, 9), absl::Hours(2), absl::Minutes(30));
  EXPECT_EQ(DueAt(clock, Utc(1, 10, 29)), SlaDue::kNone);
  EXPECT_EQ(DueAt(clock, Utc(1, 10, 30)), SlaDue::kWarning);
  clock.set_warned(true);
  EXPECT_EQ(DueAt(clock, Utc(1, 10, 59)), SlaDue::kNone);
  EXPECT_EQ(NextDue(clock), Utc(1, 11));
  EXPECT_EQ(DueAt(clock, Utc(1, 11)), SlaDue::kBreach);
  clock.set_breached(true);
  EXPECT_EQ(DueAt(clock, Utc(2, 11)), SlaDue::kNone);
  EXPECT_EQ(NextDue(clock), std::nullopt);
}

TEST(SlaClockTest, WarningNotGivenBeforeTheBreachIsSkipped) {
  const auto clock = StartClock(Office(), Utc(1, 9), absl::Hours(2), absl::Minutes(30));
  EXPECT_EQ(DueAt(clock, Utc(1, 12)), SlaDue::kBreach);
}

TEST(SlaClockTest, ZeroWarningMeansNoWarning) {
  const auto clock = StartClock(Office(), Utc(1, 9), absl::Hours(2), absl::ZeroDuration());
  EXPECT_EQ(NextDue(clock), Utc(1, 11));
  EXPECT_EQ(DueAt(clock, Utc(1, 10, 59)), SlaDue::kNone);
}

// {first response 30 min, resolution 4 h, warn 60 min}: the resolution
// target warns an hour ahead; the first response has no warning rather
// than one the moment the ticket opens.
TEST(SlaClockTest, WarningAsLongAsTheTargetMeansNoWarning) {
  const auto first = StartClock(Office(), Utc(1, 9), absl::Minutes(30), absl::Minutes(60));
  EXPECT_EQ(DueAt(first, Utc(1, 9)), SlaDue::kNone);
  EXPECT_EQ(NextDue(first), Utc(1, 9, 30));
  EXPECT_EQ(DueAt(first, Utc(1, 9, 30)), SlaDue::kBreach);
  const auto exact = StartClock(Office(), Utc(1, 9), absl::Minutes(60), absl::Minutes(60));
  EXPECT_EQ(NextDue(exact), Utc(1, 10));
  const auto resolution = StartClock(Office(), Utc(1, 9), absl::Hours(4), absl::Minutes(60));
  EXPECT_EQ(NextDue(resolution), Utc(1, 12));
}

TEST(SlaClockTest, PauseKeepsTheBusinessTimeLeftAndResumeReschedules) {
  // Due Monday 13:00; paused at 11:00 with 2 business hours left.
  auto clock = StartClock(Office(), Utc(1, 9), absl::Hours(4), absl::Minutes(30));
  clock = PauseClock(Office(), clock, Utc(1, 11));
  EXPECT_TRUE(clock.paused());
  EXPECT_FALSE(IsRunning(clock));
  EXPECT_EQ(clock.remaining_seconds(), 2 * 3600);
  EXPECT_FALSE(clock.has_due_at());
  // A paused clock owes nothing however late it gets.
  EXPECT_EQ(DueAt(clock, Utc(20, 9)), SlaDue::kNone);
  EXPECT_EQ(NextDue(clock), std::nullopt);
  // Resumed Tuesday 16:00: one hour today, one tomorrow.
  clock = ResumeClock(Office(), clock, Utc(2, 16));
  EXPECT_TRUE(IsRunning(clock));
  EXPECT_EQ(At(clock.due_at()), Utc(3, 10));
  EXPECT_EQ(At(clock.warning_at()), Utc(3, 9, 30));
}

// Paused with half an hour left of a one-hour warning lead, resumed on a
// Saturday: the warning waits for Monday's opening, as the due time does.
TEST(SlaClockTest, AClockResumedWithinItsWarningLeadWarnsWhenTheDeskOpens) {
  auto clock = StartClock(Office(), Utc(1, 9), absl::Hours(4), absl::Hours(1));
  clock = PauseClock(Office(), clock, Utc(1, 12, 30));
  ASSERT_FALSE(clock.warned());
  clock = ResumeClock(Office(), clock, Utc(6, 10));
  EXPECT_EQ(At(clock.due_at()), Utc(8, 9, 30));
  EXPECT_EQ(DueAt(clock, Utc(6, 10)), SlaDue::kNone) << "Saturday";
  EXPECT_EQ(DueAt(clock, Utc(8, 8, 59)), SlaDue::kNone);
  EXPECT_EQ(DueAt(clock, Utc(8, 9, 1)), SlaDue::kWarning);
  EXPECT_EQ(DueAt(clock, Utc(8, 9, 30)), SlaDue::kBreach);
}

// Less than a second left is not nothing left: resumed on a Saturday, the
// clock is due when the desk opens, not at once.
TEST(SlaClockTest, PausingKeepsAFractionOfASecondLeft) {
  auto clock = StartClock(Office(), Utc(1, 9), absl::Hours(1), absl::ZeroDuration());
  clock = PauseClock(Office(), clock, Utc(1, 10) - absl::Milliseconds(200));
  EXPECT_EQ(clock.remaining_seconds(), 1);
  clock = ResumeClock(Office(), clock, Utc(6, 10));
  EXPECT_EQ(DueAt(clock, Utc(6, 10)), SlaDue::kNone) << "Saturday";
  EXPECT_EQ(At(clock.due_at()), Utc(8, 9) + absl::Seconds(1));
}

TEST(SlaClockTest, PausedWhileOverdueIsDueAtOnceOnResume) {
  auto clock = StartClock(Office(), Utc(1, 9), absl::Hours(1), absl::ZeroDuration());
  clock = PauseClock(Office(), clock, Utc(1, 12));  // two hours overdue, timer not run yet
  EXPECT_EQ(clock.remaining_seconds(), -2 * 3600);
  clock = ResumeClock(Office(), clock, Utc(2, 10));
  EXPECT_EQ(At(clock.due_at()), Utc(2, 10));
  EXPECT_EQ(DueAt(clock, Utc(2, 10)), SlaDue::kBreach);
}

TEST(SlaClockTest, BreachedClockIsNotPaused) {
  auto clock = StartClock(Office(), Utc(1, 9), absl::Hours(1), absl::ZeroDuration());
  clock.set_breached(true);
  const auto paused = PauseClock(Office(), clock, Utc(1, 12));
  EXPECT_FALSE(paused.paused());
  EXPECT_EQ(At(paused.due_at()), Utc(1, 10));
}

TEST(SlaClockTest, MetClockStopsAndCanRunAgainAfterUnmeet) {
  auto clock = StartClock(Office(), Utc(1, 9), absl::Hours(4), absl::ZeroDuration());
  clock = MeetClock(PauseClock(Office(), clock, Utc(1, 10)), Utc(1, 10));
  EXPECT_FALSE(IsRunning(clock));
  EXPECT_EQ(At(clock.met_at()), Utc(1, 10));
  EXPECT_EQ(At(MeetClock(clock, Utc(1, 11)).met_at()), Utc(1, 10)) << "met once";
  clock = ResumeClock(Office(), UnmeetClock(clock), Utc(2, 9));
  EXPECT_TRUE(IsRunning(clock));
  EXPECT_EQ(At(clock.due_at()), Utc(2, 12));
}

}  // namespace
}  // namespace crm::service_desk
