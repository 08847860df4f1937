#include "libs/common/audit/failed_auth_tracker.h"

#include "gtest/gtest.h"

namespace crm::audit {
namespace {

const absl::Time kT0 = absl::FromUnixSeconds(1'800'000'000);

TEST(FailedAuthTrackerTest, FlagsOnceWhenThresholdReachedWithinWindow) {
  FailedAuthTracker tracker(3, absl::Minutes(1));
  EXPECT_FALSE(tracker.RecordFailure("10.0.0.7", kT0).has_value());
  EXPECT_FALSE(tracker.RecordFailure("10.0.0.7", kT0 + absl::Seconds(10)).has_value());
  auto flag = tracker.RecordFailure("10.0.0.7", kT0 + absl::Seconds(20));
  ASSERT_TRUE(flag.has_value());
  EXPECT_EQ(flag->caller, "10.0.0.7");
  EXPECT_EQ(flag->failures, 3);
  EXPECT_EQ(flag->first_failure_at, kT0);
  EXPECT_EQ(flag->last_failure_at, kT0 + absl::Seconds(20));
  // A flood within the same window is one alert.
  for (int i = 0; i < 100; ++i) {
    EXPECT_FALSE(tracker.RecordFailure("10.0.0.7", kT0 + absl::Seconds(30)).has_value());
  }
}

TEST(FailedAuthTrackerTest, CallersAreCountedApart) {
  FailedAuthTracker tracker(2, absl::Minutes(1));
  EXPECT_FALSE(tracker.RecordFailure("a", kT0).has_value());
  EXPECT_FALSE(tracker.RecordFailure("b", kT0).has_value());
  EXPECT_TRUE(tracker.RecordFailure("a", kT0 + absl::Seconds(1)).has_value());
  EXPECT_TRUE(tracker.RecordFailure("b", kT0 + absl::Seconds(1)).has_value());
}

TEST(FailedAuthTrackerTest, FailuresSpreadOverLongerThanTheWindowAreNotFlagged) {
  FailedAuthTracker tracker(3, absl::Minutes(1));
  for (int i = 0; i < 10; ++i) {
    EXPECT_FALSE(tracker.RecordFailure("slow", kT0 + absl::Seconds(31) * i).has_value()) << i;
  }
}

TEST(FailedAuthTrackerTest, FlagsAgainInALaterWindow) {
  FailedAuthTracker tracker(2, absl::Minutes(1));
  tracker.RecordFailure("a", kT0);
  ASSERT_TRUE(tracker.RecordFailure("a", kT0 + absl::Seconds(1)).has_value());
  EXPECT_FALSE(tracker.RecordFailure("a", kT0 + absl::Seconds(59)).has_value());
  EXPECT_FALSE(tracker.RecordFailure("a", kT0 + absl::Minutes(2)).has_value());
  EXPECT_TRUE(tracker.RecordFailure("a", kT0 + absl::Minutes(2) + absl::Seconds(1)).has_value());
}

TEST(FailedAuthTrackerTest, ManyCallersStayBoundedAndStillFlag) {
  FailedAuthTracker tracker(2, absl::Minutes(1), /*max_callers=*/100);
  for (int i = 0; i < 1000; ++i) tracker.RecordFailure("spray-" + std::to_string(i), kT0);
  // The bound forgot some callers, but a fresh one is still tracked.
  EXPECT_FALSE(tracker.RecordFailure("x", kT0 + absl::Seconds(1)).has_value());
  EXPECT_TRUE(tracker.RecordFailure("x", kT0 + absl::Seconds(2)).has_value());
}

}  // namespace
}  // namespace crm::audit
