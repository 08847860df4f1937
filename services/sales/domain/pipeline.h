#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "crm/v1/sales.pb.h"

namespace crm::sales {

// Pipelines: the stages an opportunity moves through and the rules for
// moving. Pure; the configured set is loaded once at start.

inline constexpr char kDefaultPipelineId[] = "default";

// prospecting 10 % -> needs analysis 20 % -> proposal/quote 50 % ->
// negotiation 80 % -> contract signed (won, 100 %); lost (0 %) from any
// open stage. Stages are not skipped, moving back is allowed, a lost deal
// can be reopened, a won deal cannot.
crm::v1::Pipeline DefaultPipeline();

// Unique non-empty stage ids, probabilities 0..100, at least one open
// stage, exactly one won stage and at least one lost stage.
absl::Status ValidatePipeline(const crm::v1::Pipeline& pipeline);

// nullptr when the pipeline has no such stage.
const crm::v1::PipelineStage* FindStage(const crm::v1::Pipeline& pipeline,
                                        absl::string_view stage_id);
// The pipeline's first open stage (where new opportunities start).
const crm::v1::PipelineStage& FirstOpenStage(const crm::v1::Pipeline& pipeline);

// OK when the pipeline allows moving from `from` to `to`; otherwise
// FAILED_PRECONDITION saying which rule refuses it.
absl::Status CheckTransition(const crm::v1::Pipeline& pipeline, const crm::v1::PipelineStage& from,
                             const crm::v1::PipelineStage& to);

// The configured pipelines; the first one is the default.
class Pipelines {
 public:
  // The default pipeline only.
  Pipelines() : pipelines_{DefaultPipeline()} {}
  // Validates every pipeline; ids must be unique. Empty = the default only.
  static absl::StatusOr<Pipelines> Create(std::vector<crm::v1::Pipeline> pipelines);
  // A crm.v1.PipelineConfig in protobuf text format.
  static absl::StatusOr<Pipelines> FromText(const std::string& text);

  // nullptr for an unknown id; empty id = the default.
  const crm::v1::Pipeline* Find(absl::string_view pipeline_id) const;
  const crm::v1::Pipeline& Default() const { return pipelines_.front(); }
  const std::vector<crm::v1::Pipeline>& all() const { return pipelines_; }

 private:
  explicit Pipelines(std::vector<crm::v1::Pipeline> p) : pipelines_(std::move(p)) {}
  std::vector<crm::v1::Pipeline> pipelines_;
};

}  // namespace crm::sales
