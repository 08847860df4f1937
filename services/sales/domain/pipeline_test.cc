#include "services/sales/domain/pipeline.h"

#include "gtest/gtest.h"

namespace crm::sales {
namespace {

const crm::v1::PipelineStage& S(const crm::v1::Pipeline& p, const char* id) {
  const auto* s = FindStage(p, id);
  EXPECT_NE(s, nullptr) << id;
  return *s;
}

absl::Status Move(const crm::v1::Pipeline& p, const char* from, const char* to) {
  return CheckTransition(p, S(p, from), S(p, to));
}

TEST(PipelineTest, DefaultPipelineHasTheSalesStagesWithProbabilities) {
  const auto p = DefaultPipeline();
  ASSERT_TRUE(ValidatePipeline(p).ok());
  std::vector<std::pair<std::string, int>> stages;
  for (const auto& s : p.stages()) stages.emplace_back(s.stage_id(), s.probability_percent());
  EXPECT_EQ(stages, (std::vector<std::pair<std::string, int>>{{"prospecting", 10},
                                                              {"needs_analysis", 20},
                                                              {"proposal", 50},
                                                              {"negotiation", 80},
                                                              {"contract_signed", 100},
                                                              {"lost", 0}}));
  EXPECT_EQ(S(p, "contract_signed").outcome(), crm::v1::STAGE_OUTCOME_WON);
  EXPECT_EQ(S(p, "lost").outcome(), crm::v1::STAGE_OUTCOME_LOST);
  EXPECT_EQ(FirstOpenStage(p).stage_id(), "prospecting");
}

TEST(PipelineTest, DefaultPipelineMovesOneStageForwardOrAnyStageBack) {
  const auto p = DefaultPipeline();
  EXPECT_TRUE(Move(p, "prospecting", "needs_analysis").ok());
  EXPECT_TRUE(Move(p, "needs_analysis", "proposal").ok());
  EXPECT_TRUE(Move(p, "negotiation", "contract_signed").ok());
  EXPECT_TRUE(Move(p, "negotiation", "prospecting").ok());
  for (const char* open : {"prospecting", "needs_analysis", "proposal", "negotiation"}) {
    EXPECT_TRUE(Move(p, open, "lost").ok()) << open;
  }
}

TEST(PipelineTest, DefaultPipelineRefusesSkipsAndWinningEarly) {
  const auto p = DefaultPipeline();
  for (auto [from, to] :
       {std::pair{"prospecting", "proposal"}, std::pair{"prospecting", "contract_signed"},
        std::pair{"proposal", "contract_signed"}}) {
    auto st = Move(p, from, to);
    EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition) << from << "->" << to;
    EXPECT_NE(st.message().find("skipping"), std::string::npos) << st;
  }
}

TEST(PipelineTest, LostDealsReopenWonDealsDoNot) {
  const auto p = DefaultPipeline();
  EXPECT_TRUE(Move(p, "lost", "prospecting").ok());
  EXPECT_TRUE(Move(p, "lost", "negotiation").ok());
  EXPECT_EQ(Move(p, "lost", "contract_signed").code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(Move(p, "contract_signed", "negotiation").code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(Move(p, "contract_signed", "lost").code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(Move(p, "proposal", "proposal").code(), absl::StatusCode::kFailedPrecondition);
}

TEST(PipelineTest, RulesFollowTheDefinition) {
  auto p = DefaultPipeline();
  p.set_allow_skipping(true);
  p.set_allow_moving_back(false);
  p.set_allow_reopen_lost(false);
  p.set_allow_reopen_won(true);
  EXPECT_TRUE(Move(p, "prospecting", "contract_signed").ok());
  EXPECT_TRUE(Move(p, "prospecting", "negotiation").ok());
  EXPECT_EQ(Move(p, "negotiation", "proposal").code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(Move(p, "lost", "prospecting").code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(Move(p, "contract_signed", "negotiation").ok());
}

TEST(PipelineTest, InvalidDefinitionsAreRefused) {
  auto with = [](const std::function<void(crm::v1::Pipeline&)>& change) {
    auto p = DefaultPipeline();
    change(p);
    return ValidatePipeline(p);
  };
  EXPECT_FALSE(with([](auto& p) { p.mutable_stages(1)->set_stage_id("prospecting"); }).ok());
  EXPECT_FALSE(with([](auto& p) { p.mutable_stages(0)->set_probability_percent(101); }).ok());
  EXPECT_FALSE(
      with([](auto& p) { p.mutable_stages(5)->set_outcome(crm::v1::STAGE_OUTCOME_WON); }).ok());
  EXPECT_FALSE(
      with([](auto& p) { p.mutable_stages(4)->set_outcome(crm::v1::STAGE_OUTCOME_LOST); }).ok());
  EXPECT_FALSE(
      with([](auto& p) { p.mutable_stages(5)->set_outcome(crm::v1::STAGE_OUTCOME_OPEN); }).ok());
  EXPECT_FALSE(with([](auto& p) {
                 p.mutable_stages(2)->set_outcome(crm::v1::STAGE_OUTCOME_UNSPECIFIED);
               }).ok());
  EXPECT_FALSE(with([](auto& p) { p.clear_pipeline_id(); }).ok());
}

TEST(PipelinesTest, ConfigurationIsReadFromTextFormat) {
  auto set = Pipelines::FromText(R"pb(
    pipelines {
      pipeline_id: "renewals"
      stages { stage_id: "due" probability_percent: 60 outcome: STAGE_OUTCOME_OPEN }
      stages { stage_id: "renewed" probability_percent: 100 outcome: STAGE_OUTCOME_WON }
      stages { stage_id: "churned" outcome: STAGE_OUTCOME_LOST }
    }
  )pb");
  ASSERT_TRUE(set.ok()) << set.status();
  EXPECT_EQ(set->Default().pipeline_id(), "renewals");
  EXPECT_NE(set->Find("renewals"), nullptr);
  EXPECT_EQ(set->Find("default"), nullptr);
  EXPECT_EQ(set->Find(""), &set->Default());

  EXPECT_FALSE(Pipelines::FromText("pipelines { nonsense: 1 }").ok());
  EXPECT_FALSE(Pipelines::Create({DefaultPipeline(), DefaultPipeline()}).ok());
  EXPECT_EQ(Pipelines().Default().pipeline_id(), kDefaultPipelineId);
}

}  // namespace
}  // namespace crm::sales
