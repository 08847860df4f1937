#include "services/sales/domain/task.h"

#include <limits>

#include "gtest/gtest.h"
#include "libs/common/ids.h"
#include "libs/common/testing/given_when_then.h"

namespace crm::sales {
namespace {

using TaskScenario = crm::testing::Scenario<crm::v1::Task, TaskEvent, TaskCommand>;
using ActivityScenario = crm::testing::Scenario<crm::v1::Activity, ActivityEvent, LogActivity>;

const absl::Time kDue = absl::FromUnixSeconds(1'750'000'000);

TaskScenario Task() {
  return TaskScenario(
      [](const std::optional<crm::v1::Task>& s, const TaskCommand& c) { return Decide(s, c); },
      [](crm::v1::Task& s, const TaskEvent& e, absl::Time t) { Apply(s, e, t); });
}

ActivityScenario Activity() {
  return ActivityScenario(
      [](const std::optional<crm::v1::Activity>& s, const LogActivity& c) { return Decide(s, c); },
      [](crm::v1::Activity& s, const ActivityEvent& e, absl::Time t) { Apply(s, e, t); });
}

crm::v1::TaskCreated Created() {
  crm::v1::TaskCreated e;
  e.set_task_id("task_1");
  e.set_customer_id("cus_1");
  e.set_opportunity_id("opp_1");
  e.set_title("Send the proposal");
  e.set_owner_id("rep_ada");
  *e.mutable_due_at() = ToProtoTimestamp(kDue);
  return e;
}

crm::v1::TaskCompleted Completed() {
  crm::v1::TaskCompleted e;
  e.set_task_id("task_1");
  e.set_customer_id("cus_1");
  return e;
}

crm::v1::TaskReminderRaised Reminded() {
  crm::v1::TaskReminderRaised e;
  e.set_task_id("task_1");
  e.set_customer_id("cus_1");
  e.set_owner_id("rep_ada");
  e.set_title("Send the proposal");
  *e.mutable_due_at() = ToProtoTimestamp(kDue);
  return e;
}

crm::v1::CreateTaskRequest ValidCreate() {
  crm::v1::CreateTaskRequest r;
  r.set_request_id("r1");
  r.set_customer_id("cus_1");
  r.set_opportunity_id("opp_1");
  r.set_title("Send the proposal");
  r.set_owner_id("rep_ada");
  *r.mutable_due_at() = ToProtoTimestamp(kDue);
  return r;
}

TEST(TaskTest, CreatedWithOwnerAndDueTime) {
  Task().Given({}).When(CreateTask{ValidCreate(), "task_1"}).Then({Created()});
  Task()
      .Given({Created()})
      .When(CreateTask{ValidCreate(), "task_1"})
      .ThenError(absl::StatusCode::kAlreadyExists);
}

TEST(TaskTest, CompletedOnce) {
  Task().Given({Created()}).When(CompleteTask{}).Then({Completed()});
  Task()
      .Given({Created(), Completed()})
      .When(CompleteTask{})
      .ThenError(absl::StatusCode::kFailedPrecondition);
  Task().Given({}).When(CompleteTask{}).ThenError(absl::StatusCode::kNotFound, "task_id:");
}

TEST(TaskReminderTest, RaisedOnceWhenTheDueTimeHasPassed) {
  Task().Given({Created()}).When(RaiseTaskReminder{kDue - absl::Seconds(1)}).Then({});
  Task().Given({Created()}).When(RaiseTaskReminder{kDue}).Then({Reminded()});
  Task().Given({Created(), Reminded()}).When(RaiseTaskReminder{kDue + absl::Hours(5)}).Then({});
  Task().Given({Created(), Completed()}).When(RaiseTaskReminder{kDue + absl::Hours(5)}).Then({});
}

TEST(TaskReminderTest, OverdueMeansOpenAndPastDue) {
  auto scenario = Task();
  scenario.Given({Created()});
  EXPECT_FALSE(IsOverdue(*scenario.state(), kDue - absl::Seconds(1)));
  EXPECT_TRUE(IsOverdue(*scenario.state(), kDue));
  auto done = Task();
  done.Given({Created(), Completed()});
  EXPECT_FALSE(IsOverdue(*done.state(), kDue + absl::Hours(1)));
  EXPECT_EQ(done.state()->status(), crm::v1::TASK_STATUS_COMPLETED);
}

TEST(TaskTest, BadInputNamesTheField) {
  auto field_of = [](const crm::v1::CreateTaskRequest& r) {
    auto st = ValidateCreateTask(r);
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
    return std::string(st.message().substr(0, st.message().find(':')));
  };
  auto r = ValidCreate();
  ASSERT_TRUE(ValidateCreateTask(r).ok());
  r.clear_due_at();
  EXPECT_EQ(field_of(r), "due_at");
  r = ValidCreate();
  r.clear_title();
  EXPECT_EQ(field_of(r), "title");
  r = ValidCreate();
  r.set_title("Send the\nproposal");  // one line; notes may break lines
  EXPECT_EQ(field_of(r), "title");
  r = ValidCreate();
  r.set_notes("Send the\nproposal");
  EXPECT_TRUE(ValidateCreateTask(r).ok());
  r = ValidCreate();
  r.clear_customer_id();
  r.clear_opportunity_id();
  EXPECT_EQ(field_of(r), "customer_id");
}

TEST(TaskTest, DueAtOutsideTheTimestampRangeIsRefused) {
  auto message_of = [](int64_t seconds, int32_t nanos) {
    auto r = ValidCreate();
    r.mutable_due_at()->set_seconds(seconds);
    r.mutable_due_at()->set_nanos(nanos);
    return std::string(ValidateCreateTask(r).message());
  };
  // 9999-12-31T23:59:59.999999999Z is the last valid instant.
  EXPECT_EQ(message_of(253'402'300'799, 999'999'999), "");
  EXPECT_EQ(message_of(253'402'300'800, 0), "due_at: out of range");  // year 10000
  EXPECT_EQ(message_of(std::numeric_limits<int64_t>::max(), 0), "due_at: out of range");
  EXPECT_EQ(message_of(1'750'000'000, 1'000'000'000), "due_at: out of range");
  EXPECT_EQ(message_of(1'750'000'000, -1), "due_at: out of range");
  EXPECT_EQ(message_of(std::numeric_limits<int64_t>::min(), 0), "due_at: out of range");
  // Within the range but not after 1970: refused as before.
  EXPECT_EQ(message_of(0, 0).substr(0, 7), "due_at:");
}

LogActivity Call(std::optional<absl::Time> occurred = std::nullopt) {
  LogActivity c;
  c.request.set_request_id("r1");
  c.request.set_customer_id("cus_1");
  c.request.set_opportunity_id("opp_1");
  c.request.set_kind(crm::v1::ACTIVITY_KIND_CALL);
  c.request.set_subject("Discovery call");
  if (occurred) *c.request.mutable_occurred_at() = ToProtoTimestamp(*occurred);
  c.activity_id = "act_1";
  c.logged_by = "rep_ada";
  c.now = kDue;
  return c;
}

crm::v1::ActivityLogged Logged(absl::Time at) {
  crm::v1::ActivityLogged e;
  e.set_activity_id("act_1");
  e.set_customer_id("cus_1");
  e.set_opportunity_id("opp_1");
  e.set_kind(crm::v1::ACTIVITY_KIND_CALL);
  e.set_subject("Discovery call");
  *e.mutable_occurred_at() = ToProtoTimestamp(at);
  e.set_logged_by("rep_ada");
  return e;
}

TEST(ActivityTest, LoggedNowOrWhenItHappened) {
  Activity().Given({}).When(Call()).Then({Logged(kDue)});
  Activity().Given({}).When(Call(kDue - absl::Hours(3))).Then({Logged(kDue - absl::Hours(3))});
  Activity()
      .Given({})
      .When(Call(kDue + absl::Hours(1)))
      .ThenError(absl::StatusCode::kInvalidArgument, "occurred_at:");
}

TEST(ActivityTest, BadInputNamesTheField) {
  auto r = Call().request;
  ASSERT_TRUE(ValidateLogActivity(r).ok());
  r.set_kind(crm::v1::ACTIVITY_KIND_UNSPECIFIED);
  EXPECT_EQ(ValidateLogActivity(r).message(), "kind: required");
  r.set_kind(static_cast<crm::v1::ActivityKind>(99));
  EXPECT_EQ(ValidateLogActivity(r).message(), "kind: unknown kind");
  r = Call().request;
  r.clear_subject();
  EXPECT_EQ(ValidateLogActivity(r).message().substr(0, 8), "subject:");
  r = Call().request;
  r.set_subject("Discovery\tcall");
  EXPECT_EQ(ValidateLogActivity(r).message().substr(0, 8), "subject:");
  for (auto kind :
       {crm::v1::ACTIVITY_KIND_EMAIL, crm::v1::ACTIVITY_KIND_VISIT, crm::v1::ACTIVITY_KIND_NOTE}) {
    r = Call().request;
    r.set_kind(kind);
    EXPECT_TRUE(ValidateLogActivity(r).ok());
  }
}

}  // namespace
}  // namespace crm::sales
