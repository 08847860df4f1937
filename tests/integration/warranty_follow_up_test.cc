// Warranty follow-ups across real processes: an order arrives on
// crm.sales.v1 (published here as the sales service would), the service
// desk schedules the follow-up from its warranty policy and its timer
// raises WarrantyFollowUpRequested on crm.service-desk.v1 exactly once,
// also after a restart and a redelivered order.
#include <csignal>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "crm/v1/sales.pb.h"
#include "crm/v1/service_desk.pb.h"
#include "gtest/gtest.h"
#include "libs/common/envelope.h"
#include "libs/common/ids.h"
#include "tests/integration/stack.h"
#include "tests/integration/topic_io.h"

namespace crm::testing {
namespace {

// A one-month warranty followed up 60 days ahead falls due at purchase, so
// the follow-up is raised at once; toner has no warranty.
constexpr char kConfig[] = R"pb(
  default_warranty_months: 1
  warranties { product_id: "toner" months: 0 }
  warranty_follow_up_days: 60
)pb";

crm::v1::EventEnvelope OrderPlaced(const std::string& order_id, const std::string& customer_id) {
  crm::v1::OrderPlaced order;
  order.set_order_id(order_id);
  order.set_customer_id(customer_id);
  order.add_lines()->set_product_id("printer-x");
  order.add_lines()->set_product_id("toner");
  EventContext ctx;
  ctx.source = "crm/sales";
  ctx.actor = "rep_ada";
  ctx.occurred_at = absl::Now();
  auto e = MakeEnvelope(order, customer_id, ctx);
  e.set_stream("order-" + order_id);
  e.set_stream_version(1);
  return e;
}

// The customer's follow-ups on crm.service-desk.v1, read until the one for
// `last_order` (everything raised before it precedes it in the partition).
// Each follow-up raised is an event of its own; the relay may publish one
// again after a crash (at least once), so copies of an event id count once.
// Generous: after a SIGKILL the killed member stays in the service's
// consumer group until its session expires, and the restarted one is given
// the sales topic only then (slower still under ASan).
std::vector<crm::v1::WarrantyFollowUpRequested> FollowUpsUntil(const std::string& brokers,
                                                               const std::string& customer_id,
                                                               const std::string& last_order) {
  std::vector<crm::v1::WarrantyFollowUpRequested> out;
  std::set<std::string> event_ids;
  ConsumeTopic(
      brokers, kServiceDeskTopic,
      [&](const crm::v1::EventEnvelope& e) {
        crm::v1::WarrantyFollowUpRequested f;
        if (e.customer_id() != customer_id || !e.payload().UnpackTo(&f)) return false;
        if (!event_ids.insert(e.event_id()).second) return false;  // a relayed copy
        out.push_back(f);
        return true;
      },
      [&](const auto&) { return !out.empty() && out.back().order_id() == last_order; },
      absl::Seconds(90));
  return out;
}

TEST(WarrantyFollowUpIntegrationTest, AnOrderOnTheSalesTopicIsFollowedUpOnceAcrossRestarts) {
  Stack stack;
  const std::string config = stack.dir() + "/service-desk.textproto";
  std::ofstream(config) << kConfig;
  const std::vector<std::string> flags = {"--config=" + config, "--timer-interval-ms=100"};
  ASSERT_TRUE(stack.StartBroker());
  ASSERT_TRUE(stack.Start("service-desk", flags)) << stack.service("service-desk").Log();

  const std::string customer = NewId("cus");
  const auto order = OrderPlaced("ord_warranty_1", customer);
  ASSERT_TRUE(ProduceToTopic(stack.brokers(), kSalesTopic, {order}));
  auto raised = FollowUpsUntil(stack.brokers(), customer, "ord_warranty_1");
  ASSERT_EQ(raised.size(), 1u) << stack.service("service-desk").Log();
  EXPECT_EQ(raised[0].order_id(), "ord_warranty_1");
  EXPECT_EQ(raised[0].product_id(), "printer-x");
  EXPECT_GT(FromProtoTimestamp(raised[0].warranty_ends_at()),
            FromProtoTimestamp(raised[0].purchased_at()));

  // The same order again after a restart (a refilled topic): nothing new.
  stack.service("service-desk").Kill(SIGKILL);
  ASSERT_TRUE(stack.Start("service-desk", flags)) << stack.service("service-desk").Log();
  ASSERT_TRUE(ProduceToTopic(stack.brokers(), kSalesTopic, {order}));
  // A second order comes after it in the customer's partition and falls due
  // later, so a repeated follow-up of the first would be published first.
  ASSERT_TRUE(
      ProduceToTopic(stack.brokers(), kSalesTopic, {OrderPlaced("ord_warranty_2", customer)}));
  raised = FollowUpsUntil(stack.brokers(), customer, "ord_warranty_2");
  ASSERT_EQ(raised.size(), 2u) << stack.service("service-desk").Log();
  EXPECT_EQ(raised[0].order_id(), "ord_warranty_1");
  EXPECT_EQ(raised[1].order_id(), "ord_warranty_2");
}

}  // namespace
}  // namespace crm::testing
