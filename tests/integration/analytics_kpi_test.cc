// Service KPIs, segments and churn risk end to end: events produced to the
// topics as the other services would, analytics answering over gRPC and
// publishing ChurnRiskRaised to crm.analytics.v1 exactly once, even after
// its views are wiped and rebuilt.
#include <array>
#include <cstdio>
#include <filesystem>
#include <memory>

#include "absl/strings/str_cat.h"
#include "crm/v1/sales.pb.h"
#include "crm/v1/service_desk.pb.h"
#include "gtest/gtest.h"
#include "tests/integration/stack.h"
#include "tests/integration/topic_io.h"

namespace crm::testing {
namespace {

constexpr int64_t kDay = 86400;
constexpr int64_t kStart = 1700000000;  // 2023-11-14

crm::v1::EventEnvelope Envelope(const google::protobuf::Message& payload,
                                const std::string& customer, const std::string& stream,
                                int64_t version, int64_t seconds, const std::string& source) {
  crm::v1::EventEnvelope e;
  e.set_event_id(absl::StrCat("evt-", stream, "-", version));
  e.set_stream(stream);
  e.set_stream_version(version);
  e.set_customer_id(customer);
  e.set_type(payload.GetDescriptor()->name());
  e.mutable_occurred_at()->set_seconds(seconds);
  e.set_source(source);
  e.mutable_payload()->PackFrom(payload);
  return e;
}

// The alerts on crm.analytics.v1, read until there are more than `want`
// (or `timeout`), and then for `linger` more.
std::vector<crm::v1::EventEnvelope> ChurnAlerts(const std::string& brokers, size_t want,
                                                absl::Duration timeout,
                                                absl::Duration linger = absl::ZeroDuration()) {
  return ConsumeTopic(
      brokers, "crm.analytics.v1",
      [](const crm::v1::EventEnvelope& e) { return e.type() == "ChurnRiskRaised"; },
      [want](const auto& seen) { return seen.size() > want; }, timeout, linger);
}

TEST(AnalyticsKpiTest, KpisSegmentsAndAChurnAlertPublishedOnceAcrossAViewRebuild) {
  Stack stack;
  ASSERT_TRUE(stack.StartBroker());
  const int metrics_port = FreePort();
  const std::vector<std::string> flags = {
      "--churn-interval-ms=200", "--events-dir=" + stack.dir() + "/analytics-events",
      absl::StrCat("--metrics-listen=127.0.0.1:", metrics_port)};
  auto counted = [&](const char* name) {
    return MetricSum(HttpGet(metrics_port, "/metrics"), name);
  };
  ASSERT_TRUE(stack.Start("analytics", flags));

  // cus_old bought once; cus_new's support ticket 150 days later moves the
  // analytics clock, so cus_old's risk crosses the threshold.
  crm::v1::OrderPlaced order;
  order.set_order_id("ord_1");
  order.set_customer_id("cus_old");
  order.mutable_totals()->mutable_total()->set_currency("EUR");
  order.mutable_totals()->mutable_total()->set_minor_units(2500000);
  ASSERT_TRUE(ProduceToTopic(stack.brokers(), "crm.sales.v1",
                             {Envelope(order, "cus_old", "order-ord_1", 1, kStart, "crm/sales")}));
  const int64_t opened = kStart + 150 * kDay;
  crm::v1::TicketOpened ticket;
  ticket.set_ticket_id("tkt_1");
  ticket.set_customer_id("cus_new");
  ticket.set_product("router");
  ticket.set_category("complaint");
  crm::v1::TicketAssigned assigned;
  assigned.set_ticket_id("tkt_1");
  assigned.set_team_id("red");
  crm::v1::TicketReplied reply;
  reply.set_ticket_id("tkt_1");
  reply.set_first_response(true);
  crm::v1::TicketResolved resolved;
  resolved.set_ticket_id("tkt_1");
  crm::v1::CsatSubmitted csat;
  csat.set_ticket_id("tkt_1");
  csat.set_score(2);
  const std::string desk = "crm/service-desk";
  ASSERT_TRUE(ProduceToTopic(stack.brokers(), "crm.service-desk.v1",
                             {Envelope(ticket, "cus_new", "ticket-tkt_1", 1, opened, desk),
                              Envelope(assigned, "cus_new", "ticket-tkt_1", 2, opened, desk),
                              Envelope(reply, "cus_new", "ticket-tkt_1", 3, opened + 90, desk),
                              Envelope(resolved, "cus_new", "ticket-tkt_1", 4, opened + 900, desk),
                              Envelope(csat, "cus_new", "ticket-tkt_1", 5, opened + 999, desk)}));

  // The alert, read back from the topic as sales would read it.
  // Generous: under ASan the consumer group, the monitor tick and the relay
  // are several times slower; the wait ends as soon as the alert is read.
  // Read on after it, so that a second one would be seen.
  auto alerts = ChurnAlerts(stack.brokers(), 0, absl::Seconds(90), absl::Seconds(2));
  ASSERT_EQ(alerts.size(), 1u) << stack.analytics().Log();
  EXPECT_EQ(counted("crm_churn_alerts_raised_total"), 1);
  EXPECT_EQ(alerts[0].customer_id(), "cus_old");
  EXPECT_EQ(alerts[0].source(), "crm/analytics");
  // Event time (the clock when the monitor saw the crossing), not the wall clock.
  EXPECT_GE(alerts[0].occurred_at().seconds(), opened);
  EXPECT_LE(alerts[0].occurred_at().seconds(), opened + 999);
  crm::v1::ChurnRiskRaised raised;
  ASSERT_TRUE(alerts[0].payload().UnpackTo(&raised));
  EXPECT_EQ(raised.score(), 62);
  EXPECT_EQ(raised.cause_event_id(), "evt-order-ord_1-1");

  auto stub = stack.AnalyticsStub();
  // KPIs over gRPC.
  crm::v1::ServiceKpis kpis;
  grpc::Status last;
  ASSERT_TRUE(Eventually([&] {
    grpc::ClientContext ctx;
    crm::v1::GetServiceKpisRequest req;
    last = stub->GetServiceKpis(&ctx, req, &kpis);
    return last.ok() && kpis.total().tickets() == 1 && kpis.total().csat_count() == 1;
  })) << last.error_message()
      << " " << kpis.ShortDebugString();
  EXPECT_EQ(kpis.total().first_response().median_seconds(), 90);
  EXPECT_EQ(kpis.total().resolution().p90_seconds(), 900);
  EXPECT_DOUBLE_EQ(kpis.total().complaint_rate(), 1.0);
  ASSERT_EQ(kpis.by_team_size(), 1);
  EXPECT_EQ(kpis.by_team(0).key(), "red");
  {
    grpc::ClientContext ctx;
    crm::v1::GetServiceKpisRequest backwards;
    backwards.mutable_from()->set_seconds(opened);
    backwards.mutable_to()->set_seconds(kStart);
    const auto st = stub->GetServiceKpis(&ctx, backwards, &kpis);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_NE(st.error_message().find("to:"), std::string::npos) << st.error_message();
  }

  // Segments over gRPC.
  {
    grpc::ClientContext ctx;
    crm::v1::ListSegmentRequest req;
    req.set_segment(crm::v1::SEGMENT_AT_RISK);
    crm::v1::ListSegmentResponse resp;
    ASSERT_TRUE(stub->ListSegment(&ctx, req, &resp).ok());
    ASSERT_EQ(resp.members_size(), 1);
    EXPECT_EQ(resp.members(0).customer_id(), "cus_old");
    EXPECT_EQ(resp.evaluated_at().seconds(), opened + 999);
  }
  {
    grpc::ClientContext ctx;
    crm::v1::ListSegmentRequest req;
    crm::v1::ListSegmentResponse resp;
    const auto st = stub->ListSegment(&ctx, req, &resp);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_NE(st.error_message().find("segment"), std::string::npos);
  }
  // The 360 view shows the risk and the alert on the timeline.
  ASSERT_TRUE(Eventually([&] { return stack.EventCount("cus_old") == 2; }))
      << stack.analytics().Log();
  {
    crm::v1::Customer360 view;
    ASSERT_TRUE(Stack::Get360(*stub, "cus_old", view).ok());
    EXPECT_EQ(view.lifecycle_stage(), crm::v1::LIFECYCLE_STAGE_AT_RISK);
    EXPECT_EQ(view.churn_risk_score(), 62);
    ASSERT_EQ(view.clv_estimate_size(), 1);
    EXPECT_GT(view.clv_estimate(0).minor_units(), 2500000);
    ASSERT_EQ(view.timeline_size(), 2);
    EXPECT_EQ(view.timeline(1).type(), "ChurnRiskRaised");
  }

  // Wipe the views and rebuild them from the topics: the same bytes, and
  // no second alert.
  ASSERT_EQ(stack.analytics().Kill(SIGTERM), 0);
  const std::string digest_cmd =
      absl::StrCat(CtlCommand(), " digest analytics --data-dir=", stack.dir(), "/analytics");
  const std::string live = RunCommand(digest_cmd);
  ASSERT_NE(live.find("entries"), std::string::npos) << live;
  std::filesystem::remove_all(stack.dir() + "/analytics");
  ASSERT_TRUE(stack.Start("analytics", flags));
  ASSERT_TRUE(Eventually([&] {
    grpc::ClientContext ctx;
    crm::v1::GetServiceKpisRequest req;
    return stack.EventCount("cus_old") == 2 && stack.EventCount("cus_new") == 5 &&
           stub->GetServiceKpis(&ctx, req, &kpis).ok() && kpis.total().csat_count() == 1;
  })) << stack.analytics().Log();
  // Passes over the rebuilt views (counted only once they caught up) raise
  // nothing: the crossing was raised before.
  const double passes = counted("crm_churn_passes_total");
  ASSERT_TRUE(Eventually([&] { return counted("crm_churn_passes_total") >= passes + 2; }))
      << stack.analytics().Log();
  EXPECT_EQ(counted("crm_churn_alerts_raised_total"), 0);
  // A new consumer group takes seconds to join (longer under ASan): wait
  // for the first alert, then read on so that a second one would be seen.
  EXPECT_EQ(ChurnAlerts(stack.brokers(), 0, absl::Seconds(60), absl::Seconds(3)).size(), 1u);
  ASSERT_EQ(stack.analytics().Kill(SIGTERM), 0);
  EXPECT_EQ(RunCommand(digest_cmd), live);
}

}  // namespace
}  // namespace crm::testing
