// Concurrent writers on one opportunity through the sales gRPC API: all of
// them hold the same expected_version, so exactly one may win each version
// and every other one must get ABORTED (optimistic concurrency), whatever
// mix of commands races.
#include <algorithm>
#include <atomic>
#include <barrier>
#include <chrono>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "crm/v1/sales.grpc.pb.h"
#include "gtest/gtest.h"
#include "libs/common/kafka.h"
#include "tests/integration/stack.h"
#include "tests/integration/topic_io.h"

namespace crm::testing {
namespace {

constexpr int kWriters = 8;
constexpr int kRounds = 6;

std::unique_ptr<grpc::ClientContext> Call() {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  return ctx;
}

crm::v1::Money Eur(int64_t minor_units) {
  crm::v1::Money m;
  m.set_currency("EUR");
  m.set_minor_units(minor_units);
  return m;
}

TEST(SalesConcurrencyTest, OneWriterWinsEachVersionTheOthersAreAborted) {
  Stack stack;
  ASSERT_TRUE(stack.StartBroker());
  ASSERT_TRUE(stack.Start("sales")) << stack.service("sales").Log();
  auto sales = crm::v1::SalesService::NewStub(stack.Channel("sales"));

  crm::v1::OpenCustomerRequest open;
  open.set_request_id("race-customer");
  open.set_customer_id("cus_race");
  open.set_name("Race Inc");
  open.set_owner_id("rep_ada");
  open.set_territory("EMEA");
  crm::v1::Customer customer;
  auto st = sales->OpenCustomer(Call().get(), open, &customer);
  ASSERT_TRUE(st.ok()) << st.error_message();
  crm::v1::OpenOpportunityRequest opp_request;
  opp_request.set_request_id("race-opportunity");
  opp_request.set_customer_id("cus_race");
  opp_request.set_name("Race");
  *opp_request.mutable_amount() = Eur(100'000);
  opp_request.set_expected_close_date("2030-06-30");
  crm::v1::Opportunity opp;
  st = sales->OpenOpportunity(Call().get(), opp_request, &opp);
  ASSERT_TRUE(st.ok()) << st.error_message();

  // One stub (and channel) per writer, so the calls really run in parallel.
  std::vector<std::unique_ptr<crm::v1::SalesService::Stub>> stubs;
  for (int w = 0; w < kWriters; ++w) {
    stubs.push_back(crm::v1::SalesService::NewStub(stack.Channel("sales")));
  }
  // The default pipeline's open stages, in order: a stage change may only
  // go one step on from wherever the previous round's winner left it.
  const std::vector<std::string> kOpenStages = {"prospecting", "needs_analysis", "proposal",
                                                "negotiation"};
  std::string last_loser;  // request_id of a revise that got ABORTED
  for (int round = 0; round < kRounds; ++round) {
    const int64_t version = opp.version();
    const auto at = std::find(kOpenStages.begin(), kOpenStages.end(), opp.stage_id());
    ASSERT_NE(at, kOpenStages.end()) << opp.stage_id();
    const bool can_move = at + 1 != kOpenStages.end();
    const std::string next_stage = can_move ? *(at + 1) : "";
    std::vector<grpc::Status> results(kWriters);
    std::vector<crm::v1::Opportunity> replies(kWriters);
    std::barrier start(kWriters);
    std::vector<std::thread> writers;
    for (int w = 0; w < kWriters; ++w) {
      writers.emplace_back([&, w] {
        auto& stub = *stubs[w];
        const std::string request_id = absl::StrCat("race-", round, "-", w);
        start.arrive_and_wait();
        // Half revise the amount, half move the stage (while the pipeline
        // still has an open stage ahead): both compete for the version.
        if (w % 2 == 1 && can_move) {
          crm::v1::ChangeOpportunityStageRequest change;
          change.set_request_id(request_id);
          change.set_opportunity_id(opp.opportunity_id());
          change.set_expected_version(version);
          change.set_stage_id(next_stage);
          results[w] = stub.ChangeOpportunityStage(Call().get(), change, &replies[w]);
        } else {
          crm::v1::ReviseOpportunityRequest revise;
          revise.set_request_id(request_id);
          revise.set_opportunity_id(opp.opportunity_id());
          revise.set_expected_version(version);
          *revise.mutable_amount() = Eur(100'000 + round * 100 + w);
          results[w] = stub.ReviseOpportunity(Call().get(), revise, &replies[w]);
        }
      });
    }
    for (auto& t : writers) t.join();

    int winner = -1;
    int aborted = 0;
    for (int w = 0; w < kWriters; ++w) {
      if (results[w].ok()) {
        EXPECT_EQ(winner, -1) << "round " << round << ": writers " << winner << " and " << w
                              << " both won version " << version;
        winner = w;
      } else if (results[w].error_code() == grpc::StatusCode::ABORTED) {
        ++aborted;
        if (w % 2 == 0) last_loser = absl::StrCat("race-", round, "-", w);
      } else {
        ADD_FAILURE() << "round " << round << " writer " << w << ": " << results[w].error_code()
                      << " " << results[w].error_message();
      }
    }
    ASSERT_NE(winner, -1) << "round " << round << ": nobody won version " << version;
    EXPECT_EQ(aborted, kWriters - 1) << "round " << round;
    ASSERT_EQ(replies[winner].version(), version + 1);

    // The stored opportunity is the winner's, one version on.
    crm::v1::GetOpportunityRequest get;
    get.set_opportunity_id(opp.opportunity_id());
    crm::v1::Opportunity stored;
    st = sales->GetOpportunity(Call().get(), get, &stored);
    ASSERT_TRUE(st.ok()) << st.error_message();
    EXPECT_EQ(stored.version(), version + 1);
    EXPECT_EQ(stored.amount().minor_units(), replies[winner].amount().minor_units());
    EXPECT_EQ(stored.stage_id(), replies[winner].stage_id());
    opp = stored;
  }

  // A loser retrying its request with the current version goes through:
  // the conflict left nothing behind under its request_id.
  ASSERT_FALSE(last_loser.empty());
  crm::v1::ReviseOpportunityRequest retry;
  retry.set_request_id(last_loser);
  retry.set_opportunity_id(opp.opportunity_id());
  retry.set_expected_version(opp.version());
  *retry.mutable_amount() = Eur(42);
  crm::v1::Opportunity after;
  st = sales->ReviseOpportunity(Call().get(), retry, &after);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(after.version(), opp.version() + 1);

  // The log holds the winners alone: one event per version, none of a
  // loser, as outside consumers read it from crm.sales.v1 (a relay may
  // re-send an event: a copy has the same id).
  const std::string stream = "opportunity-" + opp.opportunity_id();
  std::map<int64_t, std::set<std::string>> versions;  // version -> event ids
  ConsumeTopic(
      stack.brokers(), kSalesTopic,
      [&](const crm::v1::EventEnvelope& e) {
        if (e.stream() != stream) return false;
        versions[e.stream_version()].insert(e.event_id());
        return true;
      },
      [&](const auto&) { return versions.size() >= static_cast<size_t>(after.version()); },
      absl::Seconds(30), /*linger=*/absl::Seconds(2));
  ASSERT_EQ(versions.size(), static_cast<size_t>(after.version()));
  int64_t expected = 1;
  for (const auto& [version, ids] : versions) {
    EXPECT_EQ(version, expected++);
    EXPECT_EQ(ids.size(), 1u) << "version " << version << " has " << ids.size() << " events";
  }
}

}  // namespace
}  // namespace crm::testing
