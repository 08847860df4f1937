#pragma once

#include <functional>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"

namespace crm::testing {

// Aggregate tests that read as Given(events).When(command).Then(events):
// state is folded from the given events with Apply, then Decide runs.
template <typename State, typename Event, typename Command>
class Scenario {
 public:
  using DecideFn = std::function<absl::StatusOr<std::vector<Event>>(const std::optional<State>&,
                                                                    const Command&)>;
  using ApplyFn = std::function<void(State&, const Event&, absl::Time)>;

  Scenario(DecideFn decide, ApplyFn apply) : decide_(decide), apply_(apply) {}

  Scenario& Given(std::vector<Event> events) { return GivenAt(absl::UnixEpoch(), events); }
  // Events that happened at `at`, for rules that look at when.
  Scenario& GivenAt(absl::Time at, std::vector<Event> events) {
    for (const auto& e : events) {
      if (!state_) state_.emplace();
      apply_(*state_, e, at);
    }
    return *this;
  }

  Scenario& When(const Command& command) {
    result_ = decide_(state_, command);
    return *this;
  }

  void Then(const std::vector<Event>& expected) {
    ASSERT_TRUE(result_.ok()) << result_.status();
    ASSERT_EQ(result_->size(), expected.size());
    for (size_t i = 0; i < expected.size(); ++i) {
      ASSERT_EQ((*result_)[i].index(), expected[i].index()) << "event " << i;
      std::visit(
          [&](const auto& want) {
            const auto& got = std::get<std::decay_t<decltype(want)>>((*result_)[i]);
            EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(got, want))
                << "event " << i << "\n got: " << got.ShortDebugString()
                << "\nwant: " << want.ShortDebugString();
          },
          expected[i]);
    }
  }

  void ThenError(absl::StatusCode code, const std::string& message_part = "") {
    ASSERT_FALSE(result_.ok());
    EXPECT_EQ(result_.status().code(), code) << result_.status();
    EXPECT_NE(result_.status().message().find(message_part), std::string::npos) << result_.status();
  }

  const std::optional<State>& state() const { return state_; }

 private:
  DecideFn decide_;
  ApplyFn apply_;
  std::optional<State> state_;
  absl::StatusOr<std::vector<Event>> result_ = absl::UnknownError("When() not called");
};

}  // namespace crm::testing
