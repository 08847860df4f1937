#include "services/sales/domain/opportunity.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "google/protobuf/util/time_util.h"
#include "libs/common/ids.h"
#include "services/sales/domain/pipeline.h"
#include "services/sales/domain/validation.h"

namespace crm::sales {
namespace {

using OpportunityEvents = std::vector<OpportunityEvent>;

absl::Status CheckOptionalDate(absl::string_view field, absl::string_view value) {
  if (value.empty()) return absl::OkStatus();
  return ParseDate(field, value).status();
}

absl::StatusOr<OpportunityEvents> DecideOpen(const std::optional<crm::v1::Opportunity>& state,
                                             const OpenOpportunity& c) {
  if (state.has_value()) {
    return absl::AlreadyExistsError(absl::StrCat("opportunity ", c.opportunity_id, " exists"));
  }
  const auto& r = c.request;
  const crm::v1::PipelineStage* stage =
      r.stage_id().empty() ? &FirstOpenStage(c.pipeline) : FindStage(c.pipeline, r.stage_id());
  if (stage == nullptr) {
    return Invalid("stage_id", absl::StrCat("no stage ", r.stage_id(), " in pipeline ",
                                            c.pipeline.pipeline_id()));
  }
  if (stage->outcome() != crm::v1::STAGE_OUTCOME_OPEN) {
    return Invalid("stage_id", "an opportunity opens in an open stage");
  }
  crm::v1::OpportunityOpened e;
  e.set_opportunity_id(c.opportunity_id);
  e.set_customer_id(r.customer_id());
  e.set_pipeline_id(c.pipeline.pipeline_id());
  // Trimmed, as account names are: "Acme renewal " from a form is the
  // same deal name.
  e.set_name(std::string(absl::StripAsciiWhitespace(r.name())));
  e.set_owner_id(r.owner_id());
  e.set_territory(c.territory);
  e.set_stage_id(stage->stage_id());
  e.set_probability_percent(stage->probability_percent());
  if (r.has_amount()) *e.mutable_amount() = r.amount();
  e.set_expected_close_date(r.expected_close_date());
  e.set_lead_id(c.lead_id);
  return OpportunityEvents{std::move(e)};
}

absl::StatusOr<OpportunityEvents> DecideChangeStage(const crm::v1::Opportunity& s,
                                                    const ChangeStage& c) {
  const crm::v1::PipelineStage* to = FindStage(c.pipeline, c.stage_id);
  if (to == nullptr) {
    return Invalid("stage_id", absl::StrCat("no stage ", c.stage_id, " in pipeline ",
                                            c.pipeline.pipeline_id()));
  }
  const bool to_lost = to->outcome() == crm::v1::STAGE_OUTCOME_LOST;
  if (to_lost && c.lost_reason.empty()) {
    return Invalid("lost_reason", "required when moving to a lost stage");
  }
  if (!to_lost && !c.lost_reason.empty()) return Invalid("lost_reason", "only for a lost stage");
  const crm::v1::PipelineStage* from = FindStage(c.pipeline, s.stage_id());
  // A stage taken out of the pipelines file since the deal entered it: the
  // deal is not stuck there. An open one moves to any open stage or is
  // lost (its place in the order is gone, so not straight to won); a
  // closed one reopens as the pipeline allows.
  crm::v1::PipelineStage retired;
  if (from == nullptr) {
    retired.set_stage_id(s.stage_id());
    retired.set_outcome(s.outcome() == crm::v1::STAGE_OUTCOME_UNSPECIFIED
                            ? crm::v1::STAGE_OUTCOME_OPEN
                            : s.outcome());
    from = &retired;
  }
  if (from == &retired && retired.outcome() == crm::v1::STAGE_OUTCOME_OPEN) {
    if (to->outcome() == crm::v1::STAGE_OUTCOME_WON) {
      return absl::FailedPreconditionError(absl::StrCat(
          "current stage ", s.stage_id(), " is no longer in pipeline ", c.pipeline.pipeline_id(),
          ": move the deal to one of its open stages before winning it"));
    }
  } else if (auto st = CheckTransition(c.pipeline, *from, *to); !st.ok()) {
    return st;
  }

  crm::v1::OpportunityStageChanged e;
  e.set_opportunity_id(s.opportunity_id());
  e.set_customer_id(s.customer_id());
  e.set_from_stage_id(from->stage_id());
  e.set_to_stage_id(to->stage_id());
  e.set_probability_percent(to->probability_percent());
  e.set_outcome(to->outcome());
  const absl::Duration spent =
      std::max(absl::ZeroDuration(), c.at - FromProtoTimestamp(s.stage_entered_at()));
  *e.mutable_time_in_previous_stage() =
      google::protobuf::util::TimeUtil::MicrosecondsToDuration(absl::ToInt64Microseconds(spent));
  e.set_lost_reason(c.lost_reason);
  e.set_reopened(from->outcome() != crm::v1::STAGE_OUTCOME_OPEN);
  if (s.has_amount()) *e.mutable_amount() = s.amount();
  return OpportunityEvents{std::move(e)};
}

absl::StatusOr<OpportunityEvents> DecideRevise(const crm::v1::Opportunity& s,
                                               const ReviseOpportunity& c) {
  if (s.outcome() != crm::v1::STAGE_OUTCOME_OPEN) {
    return absl::FailedPreconditionError(
        absl::StrCat("opportunity ", s.opportunity_id(), " is closed and cannot be revised"));
  }
  const auto& r = c.request;
  crm::v1::OpportunityRevised e;
  e.set_opportunity_id(s.opportunity_id());
  e.set_customer_id(s.customer_id());
  if (r.has_amount()) {
    *e.mutable_amount() = r.amount();
  } else if (s.has_amount()) {
    *e.mutable_amount() = s.amount();
  }
  e.set_expected_close_date(r.expected_close_date().empty() ? s.expected_close_date()
                                                            : r.expected_close_date());
  e.set_name(r.name().empty() ? s.name() : std::string(absl::StripAsciiWhitespace(r.name())));
  return OpportunityEvents{std::move(e)};
}

absl::StatusOr<OpportunityEvents> DecideStale(const crm::v1::Opportunity& s, const FlagStale& c) {
  if (s.outcome() != crm::v1::STAGE_OUTCOME_OPEN) return OpportunityEvents{};
  const absl::Time since = InactiveSince(s, c.last_activity_at);
  if (c.now - since < c.stale_after) return OpportunityEvents{};
  if (StaleReminderCovers(s, since, c.stale_after)) return OpportunityEvents{};  // raised already
  crm::v1::OpportunityWentStale e;
  e.set_opportunity_id(s.opportunity_id());
  e.set_customer_id(s.customer_id());
  e.set_owner_id(s.owner_id());
  *e.mutable_inactive_since() = ToProtoTimestamp(since);
  return OpportunityEvents{std::move(e)};
}

}  // namespace

absl::Status ValidateOpenOpportunity(const crm::v1::OpenOpportunityRequest& r) {
  if (auto st = CheckRequestId(r.request_id()); !st.ok()) return st;
  if (auto st = CheckId("customer_id", r.customer_id()); !st.ok()) return st;
  // Checked as stored: trimmed (DecideOpen).
  if (auto st = CheckLine("name", absl::StripAsciiWhitespace(r.name()), kMaxName,
                          /*required=*/true);
      !st.ok()) {
    return st;
  }
  if (auto st = CheckOptionalId("owner_id", r.owner_id()); !st.ok()) return st;
  if (auto st = CheckOptionalId("pipeline_id", r.pipeline_id()); !st.ok()) return st;
  if (auto st = CheckOptionalId("stage_id", r.stage_id()); !st.ok()) return st;
  if (r.has_amount()) {
    if (auto st = CheckMoney("amount", r.amount()); !st.ok()) return st;
  }
  return CheckOptionalDate("expected_close_date", r.expected_close_date());
}

absl::Status ValidateChangeStage(const crm::v1::ChangeOpportunityStageRequest& r) {
  if (auto st = CheckRequestId(r.request_id()); !st.ok()) return st;
  if (auto st = CheckId("opportunity_id", r.opportunity_id()); !st.ok()) return st;
  if (r.expected_version() <= 0) return Invalid("expected_version", "required");
  if (auto st = CheckId("stage_id", r.stage_id()); !st.ok()) return st;
  if (!r.lost_reason().empty() && absl::StripAsciiWhitespace(r.lost_reason()).empty()) {
    return Invalid("lost_reason", "blank");
  }
  return CheckText("lost_reason", r.lost_reason(), 500);
}

absl::Status ValidateRevise(const crm::v1::ReviseOpportunityRequest& r) {
  if (auto st = CheckRequestId(r.request_id()); !st.ok()) return st;
  if (auto st = CheckId("opportunity_id", r.opportunity_id()); !st.ok()) return st;
  if (r.expected_version() <= 0) return Invalid("expected_version", "required");
  if (!r.has_amount() && r.expected_close_date().empty() && r.name().empty()) {
    return Invalid("amount", "nothing to revise: set amount, expected_close_date or name");
  }
  if (r.has_amount()) {
    if (auto st = CheckMoney("amount", r.amount()); !st.ok()) return st;
  }
  if (auto st = CheckOptionalDate("expected_close_date", r.expected_close_date()); !st.ok()) {
    return st;
  }
  // A name is required on opening; a revision cannot blank it.
  if (!r.name().empty() && absl::StripAsciiWhitespace(r.name()).empty()) {
    return Invalid("name", "blank");
  }
  return CheckLine("name", absl::StripAsciiWhitespace(r.name()), kMaxName);
}

absl::StatusOr<std::vector<OpportunityEvent>> Decide(
    const std::optional<crm::v1::Opportunity>& state, const OpportunityCommand& command) {
  if (const auto* open = std::get_if<OpenOpportunity>(&command)) return DecideOpen(state, *open);
  if (!state.has_value()) {
    // Only a revision carries the id; the callers of the others name it.
    const auto* revise = std::get_if<ReviseOpportunity>(&command);
    return absl::NotFoundError(revise != nullptr
                                   ? absl::StrCat("opportunity_id: opportunity ",
                                                  revise->request.opportunity_id(), " not found")
                                   : "opportunity_id: opportunity not found");
  }
  return std::visit(
      [&](const auto& c) -> absl::StatusOr<OpportunityEvents> {
        using T = std::decay_t<decltype(c)>;
        if constexpr (std::is_same_v<T, ChangeStage>) {
          return DecideChangeStage(*state, c);
        } else if constexpr (std::is_same_v<T, ReviseOpportunity>) {
          return DecideRevise(*state, c);
        } else if constexpr (std::is_same_v<T, FlagStale>) {
          return DecideStale(*state, c);
        } else {
          return absl::InternalError("unreachable");
        }
      },
      command);
}

void Apply(crm::v1::Opportunity& state, const OpportunityEvent& event, absl::Time occurred_at) {
  const auto at = ToProtoTimestamp(occurred_at);
  std::visit(
      [&](const auto& e) {
        using T = std::decay_t<decltype(e)>;
        if constexpr (std::is_same_v<T, crm::v1::OpportunityOpened>) {
          state.set_opportunity_id(e.opportunity_id());
          state.set_customer_id(e.customer_id());
          state.set_pipeline_id(e.pipeline_id());
          state.set_name(e.name());
          state.set_owner_id(e.owner_id());
          state.set_territory(e.territory());
          state.set_stage_id(e.stage_id());
          state.set_probability_percent(e.probability_percent());
          state.set_outcome(crm::v1::STAGE_OUTCOME_OPEN);
          if (e.has_amount()) *state.mutable_amount() = e.amount();
          state.set_expected_close_date(e.expected_close_date());
          state.set_lead_id(e.lead_id());
          *state.mutable_opened_at() = at;
          *state.mutable_stage_entered_at() = at;
        } else if constexpr (std::is_same_v<T, crm::v1::OpportunityStageChanged>) {
          state.set_stage_id(e.to_stage_id());
          state.set_probability_percent(e.probability_percent());
          state.set_outcome(e.outcome());
          state.set_lost_reason(e.lost_reason());
          *state.mutable_stage_entered_at() = at;
          if (e.outcome() == crm::v1::STAGE_OUTCOME_OPEN) {
            state.clear_closed_at();
          } else {
            *state.mutable_closed_at() = at;
          }
          state.clear_stale_since();
          state.clear_stale_reminded_at();
        } else if constexpr (std::is_same_v<T, crm::v1::OpportunityRevised>) {
          if (e.has_amount()) *state.mutable_amount() = e.amount();
          state.set_expected_close_date(e.expected_close_date());
          state.set_name(e.name());
        } else if constexpr (std::is_same_v<T, crm::v1::OpportunityWentStale>) {
          *state.mutable_stale_since() = e.inactive_since();
          *state.mutable_stale_reminded_at() = at;
        }
      },
      event);
  state.set_version(state.version() + 1);
}

bool StaleReminderCovers(const crm::v1::Opportunity& opportunity, absl::Time since,
                         absl::Duration stale_after) {
  if (!opportunity.has_stale_since()) return false;
  // The very inactivity it was raised for, whatever stale_after says now.
  if (FromProtoTimestamp(opportunity.stale_since()) == since) return true;
  if (!opportunity.has_stale_reminded_at()) return false;
  return FromProtoTimestamp(opportunity.stale_reminded_at()) - since >= stale_after;
}

absl::Time InactiveSince(const crm::v1::Opportunity& opportunity, absl::Time last_activity_at) {
  return std::max(FromProtoTimestamp(opportunity.stage_entered_at()), last_activity_at);
}

bool IsStale(const crm::v1::Opportunity& opportunity, absl::Time last_activity_at, absl::Time now,
             absl::Duration stale_after) {
  return opportunity.outcome() == crm::v1::STAGE_OUTCOME_OPEN &&
         now - InactiveSince(opportunity, last_activity_at) >= stale_after;
}

std::string OpportunityStream(absl::string_view opportunity_id) {
  return absl::StrCat("opportunity-", opportunity_id);
}

}  // namespace crm::sales
