#include "services/sales/domain/task.h"

#include "absl/strings/str_cat.h"
#include "libs/common/ids.h"
#include "services/sales/domain/validation.h"

namespace crm::sales {
namespace {

// Clocks of callers differ a little; an activity "now" on a fast clock is fine.
constexpr absl::Duration kClockSkew = absl::Minutes(5);

absl::Status CheckTarget(absl::string_view customer_id, absl::string_view opportunity_id) {
  if (customer_id.empty() && opportunity_id.empty()) {
    return Invalid("customer_id", "a customer_id or an opportunity_id is required");
  }
  if (auto st = CheckOptionalId("customer_id", customer_id); !st.ok()) return st;
  return CheckOptionalId("opportunity_id", opportunity_id);
}

}  // namespace

absl::Status ValidateCreateTask(const crm::v1::CreateTaskRequest& r) {
  if (auto st = CheckRequestId(r.request_id()); !st.ok()) return st;
  if (auto st = CheckTarget(r.customer_id(), r.opportunity_id()); !st.ok()) return st;
  if (auto st = CheckLine("title", r.title(), kMaxName, /*required=*/true); !st.ok()) return st;
  if (auto st = CheckText("notes", r.notes(), kMaxNotes); !st.ok()) return st;
  if (auto st = CheckOptionalId("owner_id", r.owner_id()); !st.ok()) return st;
  if (!r.has_due_at()) return Invalid("due_at", "required");
  if (auto st = CheckTimestamp("due_at", r.due_at()); !st.ok()) return st;
  if (r.due_at().seconds() <= 0) return Invalid("due_at", "not a valid time");
  return absl::OkStatus();
}

absl::Status ValidateLogActivity(const crm::v1::LogActivityRequest& r) {
  if (auto st = CheckRequestId(r.request_id()); !st.ok()) return st;
  if (auto st = CheckTarget(r.customer_id(), r.opportunity_id()); !st.ok()) return st;
  if (r.kind() == crm::v1::ACTIVITY_KIND_UNSPECIFIED) return Invalid("kind", "required");
  // A value set but unknown to this build (a newer client) is no missing one.
  if (!crm::v1::ActivityKind_IsValid(r.kind())) return Invalid("kind", "unknown kind");
  if (auto st = CheckLine("subject", r.subject(), kMaxName, /*required=*/true); !st.ok()) {
    return st;
  }
  if (auto st = CheckText("notes", r.notes(), kMaxNotes); !st.ok()) return st;
  if (r.has_occurred_at() && (r.occurred_at().seconds() <= 0 || r.occurred_at().nanos() < 0 ||
                              r.occurred_at().nanos() >= 1000000000)) {
    return Invalid("occurred_at", "not a valid time");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<TaskEvent>> Decide(const std::optional<crm::v1::Task>& state,
                                              const TaskCommand& command) {
  if (const auto* create = std::get_if<CreateTask>(&command)) {
    if (state.has_value()) {
      return absl::AlreadyExistsError(absl::StrCat("task ", create->task_id, " exists"));
    }
    const auto& r = create->request;
    crm::v1::TaskCreated e;
    e.set_task_id(create->task_id);
    e.set_customer_id(r.customer_id());
    e.set_opportunity_id(r.opportunity_id());
    e.set_title(r.title());
    e.set_notes(r.notes());
    e.set_owner_id(r.owner_id());
    *e.mutable_due_at() = r.due_at();
    return std::vector<TaskEvent>{std::move(e)};
  }
  // The command carries no id; the caller names it in its answer.
  if (!state.has_value()) return absl::NotFoundError("task_id: task not found");
  if (std::holds_alternative<CompleteTask>(command)) {
    if (state->status() != crm::v1::TASK_STATUS_OPEN) {
      return absl::FailedPreconditionError(
          absl::StrCat("task ", state->task_id(), " is already completed"));
    }
    crm::v1::TaskCompleted e;
    e.set_task_id(state->task_id());
    e.set_customer_id(state->customer_id());
    return std::vector<TaskEvent>{std::move(e)};
  }
  const auto& remind = std::get<RaiseTaskReminder>(command);
  if (state->status() != crm::v1::TASK_STATUS_OPEN || state->has_reminded_at() ||
      remind.now < FromProtoTimestamp(state->due_at())) {
    return std::vector<TaskEvent>{};
  }
  crm::v1::TaskReminderRaised e;
  e.set_task_id(state->task_id());
  e.set_customer_id(state->customer_id());
  e.set_owner_id(state->owner_id());
  e.set_title(state->title());
  *e.mutable_due_at() = state->due_at();
  return std::vector<TaskEvent>{std::move(e)};
}

void Apply(crm::v1::Task& state, const TaskEvent& event, absl::Time occurred_at) {
  std::visit(
      [&](const auto& e) {
        using T = std::decay_t<decltype(e)>;
        if constexpr (std::is_same_v<T, crm::v1::TaskCreated>) {
          state.set_task_id(e.task_id());
          state.set_customer_id(e.customer_id());
          state.set_opportunity_id(e.opportunity_id());
          state.set_title(e.title());
          state.set_notes(e.notes());
          state.set_owner_id(e.owner_id());
          *state.mutable_due_at() = e.due_at();
          state.set_status(crm::v1::TASK_STATUS_OPEN);
          *state.mutable_created_at() = ToProtoTimestamp(occurred_at);
        } else if constexpr (std::is_same_v<T, crm::v1::TaskCompleted>) {
          state.set_status(crm::v1::TASK_STATUS_COMPLETED);
          *state.mutable_completed_at() = ToProtoTimestamp(occurred_at);
        } else if constexpr (std::is_same_v<T, crm::v1::TaskReminderRaised>) {
          *state.mutable_reminded_at() = ToProtoTimestamp(occurred_at);
        }
      },
      event);
  state.set_version(state.version() + 1);
}

bool IsOverdue(const crm::v1::Task& task, absl::Time now) {
  return task.status() == crm::v1::TASK_STATUS_OPEN && FromProtoTimestamp(task.due_at()) <= now;
}

std::string TaskStream(absl::string_view task_id) { return absl::StrCat("task-", task_id); }

absl::StatusOr<std::vector<ActivityEvent>> Decide(const std::optional<crm::v1::Activity>& state,
                                                  const LogActivity& command) {
  if (state.has_value()) {
    return absl::AlreadyExistsError(absl::StrCat("activity ", command.activity_id, " exists"));
  }
  const auto& r = command.request;
  if (r.has_occurred_at() && FromProtoTimestamp(r.occurred_at()) > command.now + kClockSkew) {
    return Invalid("occurred_at", "in the future");
  }
  crm::v1::ActivityLogged e;
  e.set_activity_id(command.activity_id);
  e.set_customer_id(r.customer_id());
  e.set_opportunity_id(r.opportunity_id());
  e.set_kind(r.kind());
  e.set_subject(r.subject());
  e.set_notes(r.notes());
  *e.mutable_occurred_at() = r.has_occurred_at() ? r.occurred_at() : ToProtoTimestamp(command.now);
  e.set_logged_by(command.logged_by);
  return std::vector<ActivityEvent>{std::move(e)};
}

void Apply(crm::v1::Activity& state, const ActivityEvent& event, absl::Time /*occurred_at*/) {
  const auto& e = std::get<crm::v1::ActivityLogged>(event);
  state.set_activity_id(e.activity_id());
  state.set_customer_id(e.customer_id());
  state.set_opportunity_id(e.opportunity_id());
  state.set_kind(e.kind());
  state.set_subject(e.subject());
  state.set_notes(e.notes());
  state.set_logged_by(e.logged_by());
  *state.mutable_occurred_at() = e.occurred_at();
}

std::string ActivityStream(absl::string_view activity_id) {
  return absl::StrCat("activity-", activity_id);
}

}  // namespace crm::sales
