// The event flow across real processes: embedded broker, leads and
// analytics on loopback, driven over gRPC.
#include <algorithm>
#include <chrono>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "libs/common/kafka.h"
#include "tests/integration/stack.h"
#include "tests/integration/topic_io.h"

namespace crm::testing {
namespace {

crm::v1::CaptureLeadRequest Lead(const std::string& request_id, const std::string& email) {
  crm::v1::CaptureLeadRequest r;
  r.set_request_id(request_id);
  r.set_channel(crm::v1::LEAD_CHANNEL_WEB_FORM);
  r.mutable_contact()->set_email(email);
  r.mutable_contact()->set_first_name("Test");
  return r;
}

grpc::Status Capture(crm::v1::LeadsService::Stub& stub, const crm::v1::CaptureLeadRequest& req,
                     crm::v1::CaptureLeadResponse* resp) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  return stub.CaptureLead(&ctx, req, resp);
}

// The customer's 360 view once `ready` holds for it; nullopt if it never
// does.
std::optional<crm::v1::Customer360> ViewWhen(
    Stack& stack, const std::string& customer_id,
    const std::function<bool(const crm::v1::Customer360&)>& ready) {
  auto analytics = stack.AnalyticsStub();
  crm::v1::Customer360 view;
  const bool held = Eventually([&] {
    return Stack::Get360(*analytics, customer_id, view, absl::Seconds(5)).ok() && ready(view);
  });
  if (!held) return std::nullopt;
  return view;
}

class EventFlowTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(stack_.StartBroker());
    ASSERT_TRUE(stack_.StartLeads()) << stack_.leads().Log();
    ASSERT_TRUE(stack_.StartAnalytics()) << stack_.analytics().Log();
  }
  Stack stack_;
};

TEST_F(EventFlowTest, CapturedLeadAppearsInTheCustomer360View) {
  auto leads = stack_.LeadsStub();
  crm::v1::CaptureLeadResponse resp;
  auto req = Lead("flow-1", "Grace@Example.com");
  req.set_company("Navy");
  {
    grpc::ClientContext ctx;
    ctx.AddMetadata("x-correlation-id", "corr-flow-1");
    ASSERT_TRUE(leads->CaptureLead(&ctx, req, &resp).ok());
  }
  // The access log line carries the caller's correlation id (lines are
  // written in batches, at least every 200 ms).
  EXPECT_TRUE(Eventually([&] {
    return stack_.leads().Log().find("\"correlation_id\":\"corr-flow-1\"") != std::string::npos;
  }));

  ASSERT_TRUE(Eventually([&] { return stack_.EventCount(resp.customer_id()) == 1; }))
      << stack_.analytics().Log();
  // The contact is sealed in the event; it reads in plaintext once the
  // customer's key has arrived on crm.keys.v1 (another topic, no order).
  const auto opened = ViewWhen(stack_, resp.customer_id(),
                               [](const auto& v) { return !v.profile().email().empty(); });
  ASSERT_TRUE(opened.has_value());
  const crm::v1::Customer360& view = *opened;
  EXPECT_EQ(view.profile().email(), "grace@example.com");
  EXPECT_EQ(view.profile().company(), "Navy");
  EXPECT_EQ(view.lifecycle_stage(), crm::v1::LIFECYCLE_STAGE_LEAD);
  ASSERT_EQ(view.timeline_size(), 1);
  EXPECT_EQ(view.timeline(0).type(), "LeadCaptured");
  ASSERT_EQ(view.lead_ids_size(), 1);
  EXPECT_EQ(view.lead_ids(0), resp.lead_id());
}

// Captures one more lead of `email` (customer `customer_id`) and waits until
// analytics shows it: its partition carries it after any copy of the
// customer's earlier events, so the view's count is then final. Returns it.
int EventsOnceALaterLeadArrived(Stack& stack, const std::string& customer_id,
                                const std::string& email) {
  auto leads = stack.LeadsStub();
  crm::v1::CaptureLeadResponse later;
  const auto st = Capture(*leads, Lead("later-" + email, email), &later);
  EXPECT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(later.customer_id(), customer_id);
  const auto view = ViewWhen(stack, customer_id, [&](const auto& v) {
    return std::find(v.lead_ids().begin(), v.lead_ids().end(), later.lead_id()) !=
           v.lead_ids().end();
  });
  EXPECT_TRUE(view.has_value()) << customer_id;
  return view.has_value() ? static_cast<int>(view->event_count()) : -1;
}

// A copy applied twice would show as one event too many.
void ExpectEachCustomerOnce(Stack& stack, const std::vector<std::string>& ids,
                            const std::vector<std::string>& emails) {
  for (size_t i = 0; i < ids.size(); ++i) {
    EXPECT_EQ(EventsOnceALaterLeadArrived(stack, ids[i], emails[i]), 2) << ids[i];
  }
}

// The topic may carry a copy (at least once); the views apply it once.
TEST_F(EventFlowTest, KillNineRightAfterReplyLosesNothingAndIsAppliedOnce) {
  std::vector<std::string> customers;
  std::vector<std::string> emails;
  for (int round = 0; round < 3; ++round) {
    auto leads = stack_.LeadsStub();
    crm::v1::CaptureLeadResponse resp;
    ASSERT_TRUE(
        Capture(*leads,
                Lead(absl::StrCat("kill-", round), absl::StrCat("kill", round, "@example.com")),
                &resp)
            .ok());
    stack_.leads().Kill(SIGKILL);  // no chance to flush anything
    ASSERT_TRUE(stack_.StartLeads()) << stack_.leads().Log();

    auto restarted = stack_.LeadsStub();
    grpc::ClientContext ctx;
    crm::v1::GetLeadRequest get;
    get.set_lead_id(resp.lead_id());
    crm::v1::Lead lead;
    ASSERT_TRUE(restarted->GetLead(&ctx, get, &lead).ok()) << "acknowledged lead lost";
    EXPECT_EQ(lead.contact().email(), absl::StrCat("kill", round, "@example.com"));

    ASSERT_TRUE(Eventually([&] { return stack_.EventCount(resp.customer_id()) == 1; }))
        << "round " << round << ": " << stack_.EventCount(resp.customer_id());
    // A retry after the crash returns the first result and adds nothing.
    crm::v1::CaptureLeadResponse again;
    ASSERT_TRUE(
        Capture(*restarted,
                Lead(absl::StrCat("kill-", round), absl::StrCat("kill", round, "@example.com")),
                &again)
            .ok());
    EXPECT_EQ(again.lead_id(), resp.lead_id());
    customers.push_back(resp.customer_id());
    emails.push_back(absl::StrCat("kill", round, "@example.com"));
  }
  ExpectEachCustomerOnce(stack_, customers, emails);
}

TEST_F(EventFlowTest, LeadsCapturedDuringABrokerOutageArriveExactlyOnce) {
  stack_.broker().Signal(SIGUSR1);  // every broker down
  // Down once the broker says so (it logs after taking the last one down).
  ASSERT_TRUE(Eventually([&] {
    return absl::StrContains(stack_.broker().Log(), R"("msg":"brokers down")");
  })) << stack_.broker().Log();
  auto leads = stack_.LeadsStub();
  std::vector<std::string> customers;
  std::vector<std::string> emails;
  for (int i = 0; i < 20; ++i) {
    emails.push_back(absl::StrCat("outage", i, "@example.com"));
    crm::v1::CaptureLeadResponse resp;
    auto st = Capture(
        *leads, Lead(absl::StrCat("outage-", i), absl::StrCat("outage", i, "@example.com")), &resp);
    ASSERT_TRUE(st.ok()) << "commands must be accepted while Kafka is down: " << st.error_message();
    customers.push_back(resp.customer_id());
  }
  absl::SleepFor(absl::Seconds(1));
  // Analytics answers, and knows none of them: nothing can arrive while down.
  auto analytics = stack_.AnalyticsStub();
  for (const auto& c : customers) {
    crm::v1::Customer360 view;
    EXPECT_EQ(Stack::Get360(*analytics, c, view).error_code(), grpc::StatusCode::NOT_FOUND) << c;
  }
  stack_.broker().Signal(SIGUSR2);
  for (size_t i = 0; i < customers.size(); ++i) {
    const std::string& c = customers[i];
    // The first also waits for the clients to reconnect after the outage.
    const absl::Duration timeout = i == 0 ? absl::Seconds(60) : absl::Seconds(30);
    ASSERT_TRUE(Eventually([&] { return stack_.EventCount(c) == 1; }, timeout))
        << c << " has " << stack_.EventCount(c) << "\n"
        << stack_.leads().Log();
  }
  ExpectEachCustomerOnce(stack_, customers, emails);
}

TEST_F(EventFlowTest, EmptyBrokerIsRefilledFromTheEventLogWithoutDuplicates) {
  auto leads = stack_.LeadsStub();
  crm::v1::CaptureLeadResponse first;
  ASSERT_TRUE(Capture(*leads, Lead("refill-1", "refill1@example.com"), &first).ok());
  ASSERT_TRUE(Eventually([&] { return stack_.EventCount(first.customer_id()) == 1; }));

  // The in-memory broker dies with its messages; a new one starts empty.
  stack_.analytics().Kill(SIGTERM);
  stack_.leads().Kill(SIGTERM);
  stack_.broker().Kill(SIGTERM);
  ASSERT_TRUE(stack_.StartBroker());
  ASSERT_TRUE(stack_.StartLeads()) << stack_.leads().Log();
  ASSERT_TRUE(stack_.StartAnalytics()) << stack_.analytics().Log();

  auto restarted = stack_.LeadsStub();
  crm::v1::CaptureLeadResponse second;
  ASSERT_TRUE(Capture(*restarted, Lead("refill-2", "refill1@example.com"), &second).ok());
  EXPECT_EQ(second.customer_id(), first.customer_id());
  ASSERT_TRUE(Eventually([&] { return stack_.EventCount(first.customer_id()) == 2; }))
      << stack_.EventCount(first.customer_id()) << "\n"
      << stack_.analytics().Log();
  EXPECT_TRUE(Eventually(
      [&] { return stack_.leads().Log().find("republishing event log") != std::string::npos; }));
  // The new broker holds the first capture again, once, as the same event.
  std::map<std::string, int> captured;  // event id -> copies
  ConsumeTopic(
      stack_.brokers(), kLeadsTopic,
      [&](const crm::v1::EventEnvelope& e) {
        if (e.type() != "LeadCaptured" || e.customer_id() != first.customer_id()) return false;
        ++captured[e.event_id()];
        return true;
      },
      [&](const auto&) { return captured.size() >= 2; }, absl::Seconds(30),
      /*linger=*/absl::Seconds(2));
  ASSERT_EQ(captured.size(), 2u) << "the first capture is not on the new broker";
  for (const auto& [id, copies] : captured) EXPECT_EQ(copies, 1) << id;
  // Re-published events reached analytics again and were skipped.
  EXPECT_EQ(EventsOnceALaterLeadArrived(stack_, first.customer_id(), "refill1@example.com"), 3);
}

TEST_F(EventFlowTest, BadInputIsInvalidArgumentNamingTheFieldAndAppendsNothing) {
  auto leads = stack_.LeadsStub();
  struct Case {
    std::function<void(crm::v1::CaptureLeadRequest&)> mutate;
    std::string field;
  };
  std::vector<Case> cases = {
      {[](auto& r) { r.clear_request_id(); }, "request_id"},
      {[](auto& r) { r.mutable_contact()->set_email("no-at-sign"); }, "contact.email"},
      {[](auto& r) { r.mutable_contact()->set_phone("12"); }, "contact.phone"},
      {[](auto& r) { r.mutable_contact()->set_first_name(std::string(5000, 'x')); },
       "contact.first_name"},
      {[](auto& r) { r.clear_contact(); }, "contact"},
      {[](auto& r) { r.set_channel(crm::v1::LEAD_CHANNEL_UNSPECIFIED); }, "channel"},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    auto req = Lead(absl::StrCat("bad-", i), "bad@example.com");
    cases[i].mutate(req);
    crm::v1::CaptureLeadResponse resp;
    auto st = Capture(*leads, req, &resp);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << cases[i].field;
    EXPECT_EQ(st.error_message().rfind(cases[i].field + ":", 0), 0u) << st.error_message();
  }
  // Nothing was appended: the same email is still a first contact.
  crm::v1::CaptureLeadResponse ok;
  ASSERT_TRUE(Capture(*leads, Lead("good", "bad@example.com"), &ok).ok());
  EXPECT_FALSE(ok.duplicate());
  // A message far over the size limit is refused by the transport.
  auto huge = Lead("huge", "huge@example.com");
  (*huge.mutable_attributes())["blob"] = std::string(5 * 1024 * 1024, 'x');
  crm::v1::CaptureLeadResponse resp;
  EXPECT_EQ(Capture(*leads, huge, &resp).error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
}

TEST_F(EventFlowTest, PoisonMessageIsParkedOnTheDeadLetterTopicAndConsumingGoesOn) {
  std::string err;
  auto conf = std::move(*MakeKafkaConf({{"bootstrap.servers", stack_.brokers()}}));
  std::unique_ptr<RdKafka::Producer> producer(RdKafka::Producer::create(conf.get(), err));
  ASSERT_TRUE(producer) << err;
  std::string garbage = "\x0a\xff\xff definitely not an envelope";
  // On every partition of a domain topic and of the key topic every
  // service reads, so whichever partitions the next lead and its key land
  // on, they come after the garbage.
  std::set<std::pair<std::string, std::string>> poisoned;
  for (const char* topic : {kLeadsTopic, kKeysTopic}) {
    auto ids = PartitionIds(*producer, topic, 10000);
    ASSERT_TRUE(ids.ok()) << ids.status();
    for (const int32_t partition : *ids) {
      poisoned.emplace(topic, absl::StrCat(partition));
      ASSERT_EQ(producer->produce(topic, partition, RdKafka::Producer::RK_MSG_COPY, garbage.data(),
                                  garbage.size(), nullptr, 0, 0, nullptr),
                RdKafka::ERR_NO_ERROR);
    }
  }
  ASSERT_EQ(producer->flush(10000), RdKafka::ERR_NO_ERROR);

  auto leads = stack_.LeadsStub();
  crm::v1::CaptureLeadResponse resp;
  ASSERT_TRUE(Capture(*leads, Lead("after-poison", "after@example.com"), &resp).ok());
  ASSERT_TRUE(Eventually([&] { return stack_.EventCount(resp.customer_id()) == 1; }));
  // The lead's data key came through crm.keys.v1 after the garbage too.
  EXPECT_TRUE(ViewWhen(stack_, resp.customer_id(), [](const auto& v) {
                return v.profile().email() == "after@example.com";
              }).has_value());

  // The garbage is on the dead-letter topic with where it came from.
  auto cconf = std::move(*MakeKafkaConf({{"bootstrap.servers", stack_.brokers()},
                                         {"group.id", "dlq-check"},
                                         {"auto.offset.reset", "earliest"}}));
  std::unique_ptr<RdKafka::KafkaConsumer> consumer(
      RdKafka::KafkaConsumer::create(cconf.get(), err));
  ASSERT_EQ(consumer->subscribe({kDeadLetterTopic}), RdKafka::ERR_NO_ERROR);
  // Every poisoned partition, by any of the groups reading it.
  std::set<std::pair<std::string, std::string>> parked_from;
  Eventually([&] {
    std::unique_ptr<RdKafka::Message> m(consumer->consume(200));
    if (m->err() == RdKafka::ERR_NO_ERROR &&
        std::string(static_cast<const char*>(m->payload()), m->len()) == garbage &&
        HeaderValue(*m, "crm_dlq_reason").find("undecodable") != std::string::npos) {
      parked_from.emplace(HeaderValue(*m, "crm_dlq_topic"), HeaderValue(*m, "crm_dlq_partition"));
    }
    return parked_from == poisoned;
  });
  consumer->close();
  EXPECT_EQ(parked_from, poisoned) << stack_.analytics().Log();

  // crmctl tail, the documented way to look, shows where and why.
  const std::string tailed =
      RunCommand(absl::StrCat("timeout 60 ", CtlCommand(), " tail ", kDeadLetterTopic,
                              " --from-beginning --count=1 --brokers=", stack_.brokers()));
  EXPECT_TRUE(absl::StrContains(tailed, "\"dead_letter\":{")) << tailed;
  EXPECT_TRUE(absl::StrContains(tailed, "\"reason\":\"undecodable")) << tailed;
  EXPECT_TRUE(absl::StrContains(tailed, "\"undecodable\":true")) << tailed;

  // An envelope whose payload type this build does not know (a newer
  // service's event) is shown with its envelope and the type, not as {}.
  crm::v1::EventEnvelope future;
  future.set_event_id("evt-from-the-future");
  future.set_type("FutureThingHappened");
  future.set_stream("future-1");
  future.set_stream_version(1);
  future.mutable_payload()->set_type_url("type.googleapis.com/crm.v9.FutureThingHappened");
  future.mutable_payload()->set_value("\x08\x01");
  const std::string bytes = future.SerializeAsString();
  ASSERT_EQ(
      producer->produce(kLeadsTopic, 0, RdKafka::Producer::RK_MSG_COPY,
                        const_cast<char*>(bytes.data()), bytes.size(), nullptr, 0, 0, nullptr),
      RdKafka::ERR_NO_ERROR);
  ASSERT_EQ(producer->flush(10000), RdKafka::ERR_NO_ERROR);
  // The topic holds the garbage (one per partition), the lead and this.
  const size_t on_leads = std::count_if(poisoned.begin(), poisoned.end(),
                                        [](const auto& p) { return p.first == kLeadsTopic; });
  const std::string all = RunCommand(
      absl::StrCat("timeout 60 ", CtlCommand(), " tail ", kLeadsTopic,
                   " --from-beginning --count=", on_leads + 2, " --brokers=", stack_.brokers()));
  EXPECT_TRUE(absl::StrContains(all, "\"event_id\":\"evt-from-the-future\"")) << all;
  EXPECT_TRUE(absl::StrContains(
      all, "\"undecodable_payload\":\"type.googleapis.com/crm.v9.FutureThingHappened\""))
      << all;
  // Analytics, which folds every event, cannot read it: parked, not folded
  // in as a blank (the topic keeps it for a rebuild by a newer build).
  auto fconf = std::move(*MakeKafkaConf({{"bootstrap.servers", stack_.brokers()},
                                         {"group.id", "dlq-check-future"},
                                         {"auto.offset.reset", "earliest"}}));
  std::unique_ptr<RdKafka::KafkaConsumer> future_reader(
      RdKafka::KafkaConsumer::create(fconf.get(), err));
  ASSERT_EQ(future_reader->subscribe({kDeadLetterTopic}), RdKafka::ERR_NO_ERROR);
  std::string future_reason;
  Eventually([&] {
    std::unique_ptr<RdKafka::Message> m(future_reader->consume(200));
    if (m->err() == RdKafka::ERR_NO_ERROR &&
        std::string(static_cast<const char*>(m->payload()), m->len()) == bytes) {
      future_reason = HeaderValue(*m, "crm_dlq_reason");
    }
    return !future_reason.empty();
  });
  future_reader->close();
  EXPECT_TRUE(absl::StrContains(future_reason, "unknown event type FutureThingHappened"))
      << future_reason << stack_.analytics().Log();
  // And analytics goes on: a lead captured after it is in its view.
  crm::v1::CaptureLeadResponse later;
  ASSERT_TRUE(Capture(*leads, Lead("after-future", "future@example.com"), &later).ok());
  EXPECT_TRUE(Eventually([&] { return stack_.EventCount(later.customer_id()) >= 1; }));

  // Bytes that parse as an envelope without being an event (empty, or an
  // id alone) are undecodable, as the subscribers park them; --until-end
  // stops at the topic's end instead of waiting for more.
  for (const std::string& raw : {std::string(), std::string("\x0a\x01x")}) {
    ASSERT_EQ(producer->produce(kLeadsTopic, 0, RdKafka::Producer::RK_MSG_COPY,
                                const_cast<char*>(raw.data()), raw.size(), nullptr, 0, 0, nullptr),
              RdKafka::ERR_NO_ERROR);
  }
  ASSERT_EQ(producer->flush(10000), RdKafka::ERR_NO_ERROR);
  const std::string whole = RunCommand(
      absl::StrCat("timeout 60 ", CtlCommand(), " tail ", kLeadsTopic,
                   " --from-beginning --until-end --brokers=", stack_.brokers(), "; echo exit=$?"));
  EXPECT_TRUE(absl::StrContains(whole, "\"event_id\":\"evt-from-the-future\"")) << whole;
  size_t undecodable = 0;
  for (size_t at = whole.find("\"undecodable\":true"); at != std::string::npos;
       at = whole.find("\"undecodable\":true", at + 1)) {
    ++undecodable;
  }
  EXPECT_EQ(undecodable, on_leads + 2) << whole;
  EXPECT_TRUE(absl::EndsWith(whole, "exit=0\n")) << whole;
}

TEST_F(EventFlowTest, MetricsEndpointCountsRpcsAndPublishedEvents) {
  const int port = FreePort();
  stack_.leads().Kill(SIGTERM);
  ASSERT_TRUE(stack_.Start("leads", {absl::StrCat("--metrics-listen=127.0.0.1:", port)}));
  auto leads = stack_.LeadsStub();
  crm::v1::CaptureLeadResponse resp;
  ASSERT_TRUE(Capture(*leads, Lead("metrics-1", "metrics@example.com"), &resp).ok());
  auto bad = Lead("metrics-2", "not-an-email");
  EXPECT_FALSE(Capture(*leads, bad, &resp).ok());
  ASSERT_TRUE(Eventually([&] {
    const std::string text = HttpGet(port, "/metrics");
    // The lead on its topic, the new customer's data key on the keys topic.
    return text.find("crm_events_published_total{topic=\"crm.leads.v1\"} 1\n") !=
               std::string::npos &&
           text.find("crm_events_published_total{topic=\"crm.keys.v1\"} 1\n") !=
               std::string::npos &&
           text.find("crm_outbox_depth 0\n") != std::string::npos;
  })) << HttpGet(port, "/metrics");
  const std::string text = HttpGet(port, "/metrics");
  EXPECT_NE(text.find("crm_rpc_requests_total{code=\"0\",method=\"/crm.v1.LeadsService/"
                      "CaptureLead\"} 1\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("crm_rpc_requests_total{code=\"3\",method=\"/crm.v1.LeadsService/"
                      "CaptureLead\"} 1\n"),
            std::string::npos);
  EXPECT_NE(text.find("crm_rpc_duration_seconds_count{method=\"/crm.v1.LeadsService/"
                      "CaptureLead\"} 2\n"),
            std::string::npos);
  EXPECT_NE(text.find("crm_events_appended_total 2\n"), std::string::npos) << text;
  EXPECT_NE(text.find("crm_rocksdb_estimated_keys{db=\"leads\"}"), std::string::npos);
}

TEST_F(EventFlowTest, SigtermShutsDownCleanlyAndUnknownIdsAreNotFound) {
  auto leads = stack_.LeadsStub();
  grpc::ClientContext ctx;
  crm::v1::GetLeadRequest get;
  get.set_lead_id("lead_unknown");
  crm::v1::Lead lead;
  EXPECT_EQ(leads->GetLead(&ctx, get, &lead).error_code(), grpc::StatusCode::NOT_FOUND);
  crm::v1::Customer360 view;
  EXPECT_EQ(Stack::Get360(*stack_.AnalyticsStub(), "cus_unknown", view).error_code(),
            grpc::StatusCode::NOT_FOUND);

  EXPECT_EQ(stack_.leads().Kill(SIGTERM), 0) << stack_.leads().Log();
  EXPECT_EQ(stack_.analytics().Kill(SIGTERM), 0) << stack_.analytics().Log();
  EXPECT_NE(stack_.leads().Log().find("\"msg\":\"stopped\""), std::string::npos);
}

}  // namespace
}  // namespace crm::testing
