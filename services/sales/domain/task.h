#pragma once

#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "crm/v1/sales.pb.h"

namespace crm::sales {

// Field checks; the errors name the field.
absl::Status ValidateCreateTask(const crm::v1::CreateTaskRequest& request);
absl::Status ValidateLogActivity(const crm::v1::LogActivityRequest& request);

// ---- Tasks ----

struct CreateTask {
  crm::v1::CreateTaskRequest request;  // validated; customer and owner resolved
  std::string task_id;
};
struct CompleteTask {};
// Raises the due reminder once the due time has passed, once per task.
struct RaiseTaskReminder {
  absl::Time now;
};
using TaskCommand = std::variant<CreateTask, CompleteTask, RaiseTaskReminder>;
using TaskEvent =
    std::variant<crm::v1::TaskCreated, crm::v1::TaskCompleted, crm::v1::TaskReminderRaised>;

absl::StatusOr<std::vector<TaskEvent>> Decide(const std::optional<crm::v1::Task>& state,
                                              const TaskCommand& command);
void Apply(crm::v1::Task& state, const TaskEvent& event, absl::Time occurred_at);

// Open and past its due time.
bool IsOverdue(const crm::v1::Task& task, absl::Time now);

// "task-<id>"
std::string TaskStream(absl::string_view task_id);

// ---- Activities: one event per activity, never changed afterwards ----

struct LogActivity {
  crm::v1::LogActivityRequest request;  // validated; customer resolved
  std::string activity_id;
  std::string logged_by;
  absl::Time now;  // occurred_at defaults to it and may not lie after it
};
using ActivityEvent = std::variant<crm::v1::ActivityLogged>;

absl::StatusOr<std::vector<ActivityEvent>> Decide(const std::optional<crm::v1::Activity>& state,
                                                  const LogActivity& command);
void Apply(crm::v1::Activity& state, const ActivityEvent& event, absl::Time occurred_at);

// "activity-<id>"
std::string ActivityStream(absl::string_view activity_id);

}  // namespace crm::sales
