#include "services/sales/domain/pipeline.h"

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "google/protobuf/text_format.h"
#include "services/sales/domain/validation.h"

namespace crm::sales {
namespace {

crm::v1::PipelineStage Stage(const char* id, const char* name, int probability,
                             crm::v1::StageOutcome outcome) {
  crm::v1::PipelineStage s;
  s.set_stage_id(id);
  s.set_name(name);
  s.set_probability_percent(probability);
  s.set_outcome(outcome);
  return s;
}

// Position among the open stages, -1 for a closed stage.
int OpenIndex(const crm::v1::Pipeline& pipeline, absl::string_view stage_id) {
  int i = 0;
  for (const auto& s : pipeline.stages()) {
    if (s.outcome() != crm::v1::STAGE_OUTCOME_OPEN) continue;
    if (s.stage_id() == stage_id) return i;
    ++i;
  }
  return -1;
}

int OpenCount(const crm::v1::Pipeline& pipeline) {
  int n = 0;
  for (const auto& s : pipeline.stages()) n += s.outcome() == crm::v1::STAGE_OUTCOME_OPEN;
  return n;
}

}  // namespace

crm::v1::Pipeline DefaultPipeline() {
  crm::v1::Pipeline p;
  p.set_pipeline_id(kDefaultPipelineId);
  p.set_name("Sales pipeline");
  using crm::v1::STAGE_OUTCOME_LOST;
  using crm::v1::STAGE_OUTCOME_OPEN;
  using crm::v1::STAGE_OUTCOME_WON;
  *p.add_stages() = Stage("prospecting", "Prospecting", 10, STAGE_OUTCOME_OPEN);
  *p.add_stages() = Stage("needs_analysis", "Needs analysis", 20, STAGE_OUTCOME_OPEN);
  *p.add_stages() = Stage("proposal", "Proposal/quote", 50, STAGE_OUTCOME_OPEN);
  *p.add_stages() = Stage("negotiation", "Negotiation", 80, STAGE_OUTCOME_OPEN);
  *p.add_stages() = Stage("contract_signed", "Contract signed", 100, STAGE_OUTCOME_WON);
  *p.add_stages() = Stage("lost", "Lost", 0, STAGE_OUTCOME_LOST);
  p.set_allow_skipping(false);
  p.set_allow_moving_back(true);
  p.set_allow_reopen_lost(true);
  p.set_allow_reopen_won(false);
  return p;
}

absl::Status ValidatePipeline(const crm::v1::Pipeline& p) {
  if (auto st = CheckId("pipeline_id", p.pipeline_id()); !st.ok()) return st;
  const std::string where = absl::StrCat("pipelines[", p.pipeline_id(), "].stages");
  absl::flat_hash_set<std::string> ids;
  int open = 0, won = 0, lost = 0;
  for (const auto& s : p.stages()) {
    if (auto st = CheckId(absl::StrCat(where, ".stage_id"), s.stage_id()); !st.ok()) return st;
    if (!ids.insert(s.stage_id()).second) {
      return Invalid(where, absl::StrCat("duplicate stage ", s.stage_id()));
    }
    if (s.probability_percent() < 0 || s.probability_percent() > 100) {
      return Invalid(absl::StrCat(where, "[", s.stage_id(), "].probability_percent"),
                     "must be 0..100");
    }
    switch (s.outcome()) {
      case crm::v1::STAGE_OUTCOME_OPEN:
        ++open;
        break;
      case crm::v1::STAGE_OUTCOME_WON:
        ++won;
        break;
      case crm::v1::STAGE_OUTCOME_LOST:
        ++lost;
        break;
      default:
        return Invalid(absl::StrCat(where, "[", s.stage_id(), "].outcome"), "required");
    }
  }
  if (open == 0) return Invalid(where, "needs at least one open stage");
  if (won != 1) return Invalid(where, "needs exactly one won stage");
  if (lost == 0) return Invalid(where, "needs at least one lost stage");
  return absl::OkStatus();
}

const crm::v1::PipelineStage* FindStage(const crm::v1::Pipeline& pipeline,
                                        absl::string_view stage_id) {
  for (const auto& s : pipeline.stages()) {
    if (s.stage_id() == stage_id) return &s;
  }
  return nullptr;
}

const crm::v1::PipelineStage& FirstOpenStage(const crm::v1::Pipeline& pipeline) {
  for (const auto& s : pipeline.stages()) {
    if (s.outcome() == crm::v1::STAGE_OUTCOME_OPEN) return s;
  }
  return pipeline.stages(0);  // unreachable for a validated pipeline
}

absl::Status CheckTransition(const crm::v1::Pipeline& pipeline, const crm::v1::PipelineStage& from,
                             const crm::v1::PipelineStage& to) {
  using crm::v1::STAGE_OUTCOME_LOST;
  using crm::v1::STAGE_OUTCOME_OPEN;
  using crm::v1::STAGE_OUTCOME_WON;
  auto refuse = [&](absl::string_view why) {
    return absl::FailedPreconditionError(absl::StrCat("cannot move from ", from.stage_id(), " to ",
                                                      to.stage_id(), ": ", why, " in pipeline ",
                                                      pipeline.pipeline_id()));
  };
  if (from.stage_id() == to.stage_id()) return refuse("already in that stage");
  if (from.outcome() == STAGE_OUTCOME_WON || from.outcome() == STAGE_OUTCOME_LOST) {
    if (to.outcome() != STAGE_OUTCOME_OPEN) return refuse("the opportunity is closed");
    const bool allowed = from.outcome() == STAGE_OUTCOME_WON ? pipeline.allow_reopen_won()
                                                             : pipeline.allow_reopen_lost();
    if (!allowed) {
      return refuse(from.outcome() == STAGE_OUTCOME_WON ? "won deals are not reopened"
                                                        : "lost deals are not reopened");
    }
    return absl::OkStatus();
  }
  if (to.outcome() == STAGE_OUTCOME_LOST) return absl::OkStatus();  // from any open stage
  const int from_index = OpenIndex(pipeline, from.stage_id());
  // Won counts as the stage after the last open one.
  const int to_index =
      to.outcome() == STAGE_OUTCOME_WON ? OpenCount(pipeline) : OpenIndex(pipeline, to.stage_id());
  if (to_index < from_index && !pipeline.allow_moving_back()) return refuse("moving back");
  if (to_index > from_index + 1 && !pipeline.allow_skipping()) return refuse("skipping stages");
  return absl::OkStatus();
}

absl::StatusOr<Pipelines> Pipelines::Create(std::vector<crm::v1::Pipeline> pipelines) {
  if (pipelines.empty()) pipelines.push_back(DefaultPipeline());
  absl::flat_hash_set<std::string> ids;
  for (const auto& p : pipelines) {
    if (auto st = ValidatePipeline(p); !st.ok()) return st;
    if (!ids.insert(p.pipeline_id()).second) {
      return Invalid("pipelines", absl::StrCat("duplicate pipeline ", p.pipeline_id()));
    }
  }
  return Pipelines(std::move(pipelines));
}

absl::StatusOr<Pipelines> Pipelines::FromText(const std::string& text) {
  crm::v1::PipelineConfig config;
  if (!google::protobuf::TextFormat::ParseFromString(text, &config)) {
    return Invalid("pipelines", "not a crm.v1.PipelineConfig in text format");
  }
  return Create({config.pipelines().begin(), config.pipelines().end()});
}

const crm::v1::Pipeline* Pipelines::Find(absl::string_view pipeline_id) const {
  if (pipeline_id.empty()) return &Default();
  for (const auto& p : pipelines_) {
    if (p.pipeline_id() == pipeline_id) return &p;
  }
  return nullptr;
}

}  // namespace crm::sales
