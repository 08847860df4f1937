#include "services/analytics/store/view_store.h"

#include <algorithm>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "crm/v1/leads.pb.h"
#include "crm/v1/sales.pb.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "libs/common/ids.h"
#include "libs/common/pii/cipher.h"
#include "libs/common/reply_budget.h"
#include "libs/common/testing/temp_dir.h"
#include "rocksdb/write_batch.h"
#include "services/analytics/api/analytics_grpc.h"
#include "services/analytics/testing/events.h"

namespace crm::analytics {
namespace {

// For scans of views that must all be readable.
void NoneUnreadable(const std::string& customer_id, const absl::Status& why) {
  ADD_FAILURE() << customer_id << ": " << why;
}

ConsumedMessage Captured(const std::string& customer, int n, int64_t offset) {
  crm::v1::LeadCaptured lead;
  lead.set_lead_id(absl::StrCat("lead_", n));
  lead.set_customer_id(customer);
  lead.mutable_contact()->set_email(absl::StrCat("p", n, "@x.com"));
  crm::v1::EventEnvelope e;
  e.set_event_id(absl::StrCat("evt-", n));
  e.set_stream(absl::StrCat("lead-", n));
  e.set_stream_version(1);
  e.set_customer_id(customer);
  e.set_type("LeadCaptured");
  e.mutable_occurred_at()->set_seconds(1000 + n);
  e.mutable_payload()->PackFrom(lead);
  return {"crm.leads.v1", 0, offset, e.SerializeAsString()};
}

class ViewStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    db_ = std::move(*Database::Open(dir_.Sub("analytics"), ViewFamilies()));
    subscriber_ = std::make_unique<Subscriber>(*db_, projection_, SubscriberOptions{});
    views_ = std::make_unique<ViewStore>(*db_);
  }
  // The subscriber, now with a dead-letter sink that keeps what it parks
  // in `parked_`.
  void KeepParked() {
    SubscriberOptions options;
    options.dead_letter_sink = [this](const std::vector<DeadLetter>& letters) {
      parked_.insert(parked_.end(), letters.begin(), letters.end());
      return absl::OkStatus();
    };
    subscriber_ = std::make_unique<Subscriber>(*db_, projection_, options);
  }
  crm::testing::TempDir dir_;
  std::unique_ptr<Database> db_;
  Customer360Projection projection_;
  std::vector<DeadLetter> parked_;  // outlives the subscriber whose sink fills it
  std::unique_ptr<Subscriber> subscriber_;
  std::unique_ptr<ViewStore> views_;
};

TEST_F(ViewStoreTest, RedeliveredEventsAreCountedOnce) {
  ASSERT_TRUE(subscriber_->ApplyBatch({Captured("cus_1", 1, 0), Captured("cus_1", 2, 1)}).ok());
  ASSERT_TRUE(subscriber_->ApplyBatch({Captured("cus_1", 1, 2), Captured("cus_1", 2, 3)}).ok());
  auto view = views_->GetCustomer360("cus_1", 0, "");
  ASSERT_TRUE(view.ok()) << view.status();
  EXPECT_EQ(view->event_count(), 2);
  EXPECT_EQ(view->timeline_size(), 2);
  EXPECT_EQ(view->lead_ids_size(), 2);
}

// An event this build cannot read (a newer service's type, a payload that
// does not parse) is parked with why, not folded in as a blank; the
// events after it are applied.
TEST_F(ViewStoreTest, EventsItCannotReadAreParkedNotCounted) {
  KeepParked();
  crm::v1::EventEnvelope future;
  future.set_event_id("evt-future");
  future.set_stream("future-1");
  future.set_stream_version(1);
  future.set_customer_id("cus_1");
  future.set_type("FutureThingHappened");
  future.mutable_payload()->set_type_url("type.googleapis.com/crm.v9.FutureThingHappened");
  crm::v1::EventEnvelope garbled;
  garbled.ParseFromString(Captured("cus_1", 3, 0).value);
  garbled.set_stream("lead-garbled");
  garbled.mutable_payload()->set_value("\x0a\xff\xff");
  ASSERT_TRUE(subscriber_
                  ->ApplyBatch({Captured("cus_1", 1, 0),
                                {"crm.leads.v1", 0, 1, future.SerializeAsString()},
                                {"crm.leads.v1", 0, 2, garbled.SerializeAsString()},
                                Captured("cus_1", 2, 3)})
                  .ok());
  auto view = views_->GetCustomer360("cus_1", 0, "");
  ASSERT_TRUE(view.ok()) << view.status();
  EXPECT_EQ(view->event_count(), 2);
  ASSERT_EQ(parked_.size(), 2u);
  EXPECT_THAT(parked_[0].reason, ::testing::HasSubstr("unknown event type FutureThingHappened"));
  EXPECT_THAT(parked_[1].reason, ::testing::HasSubstr("payload does not parse as LeadCaptured"));
}

// A stored record that does not parse is no fault of the event that
// reads it: the event is taken whole (not parked after some of its
// writes), the record starts afresh, and later events apply as usual.
TEST_F(ViewStoreTest, ACorruptStoredRecordStartsAfreshAndTheEventIsTakenWhole) {
  KeepParked();
  ASSERT_TRUE(subscriber_->ApplyBatch({Captured("cus_1", 1, 0)}).ok());
  rocksdb::WriteBatch corrupt;
  ASSERT_TRUE(corrupt.Put(db_->Family("customers"), "cus_1", "\xff not a view").ok());
  ASSERT_TRUE(corrupt.Put(db_->Family("funnel_leads"), "lead_2", "\xff not a record").ok());
  ASSERT_TRUE(db_->Write(&corrupt, true).ok());
  ASSERT_TRUE(views_->GetCustomer360("cus_1", 0, "").status().code() ==
              absl::StatusCode::kDataLoss);

  ASSERT_TRUE(subscriber_->ApplyBatch({Captured("cus_1", 2, 1)}).ok());
  EXPECT_TRUE(parked_.empty()) << parked_.front().reason;
  auto view = views_->GetCustomer360("cus_1", 0, "");
  ASSERT_TRUE(view.ok()) << view.status();
  EXPECT_EQ(view->event_count(), 1) << "counted afresh";
  EXPECT_EQ(view->timeline_size(), 2) << "the timeline rows are their own";
  ASSERT_TRUE(subscriber_->ApplyBatch({Captured("cus_1", 3, 2)}).ok());
  view = views_->GetCustomer360("cus_1", 0, "");
  ASSERT_TRUE(view.ok()) << view.status();
  EXPECT_EQ(view->event_count(), 2);
  EXPECT_EQ(view->timeline_size(), 3);
  EXPECT_TRUE(parked_.empty());
}

// A producer whose clock runs a year ahead: its event is folded at its own
// time, but the analytics clock (and with it every customer's age) stays
// with the events dated no more than an hour past the wall clock.
TEST_F(ViewStoreTest, AnEventFromTheFutureDoesNotAgeEveryCustomer) {
  const absl::Time before = absl::Now();
  crm::v1::LeadCaptured lead;
  lead.set_lead_id("lead_f");
  crm::v1::EventEnvelope e;
  e.set_event_id("evt-f");
  e.set_stream("lead-f");
  e.set_stream_version(1);
  e.set_customer_id("cus_f");
  e.set_type("LeadCaptured");
  *e.mutable_occurred_at() = ToProtoTimestamp(before + absl::Hours(24 * 365));
  e.mutable_payload()->PackFrom(lead);
  ASSERT_TRUE(subscriber_
                  ->ApplyBatch({Captured("cus_1", 1, 0),
                                ConsumedMessage{"crm.leads.v1", 0, 1, e.SerializeAsString()}})
                  .ok());
  auto clock = ReadClock(*db_);
  ASSERT_TRUE(clock.ok()) << clock.status();
  EXPECT_EQ(clock->seconds(), 1001) << "cus_1's capture, the latest not ahead of the wall clock";
  // Events after it move the clock on as before.
  ASSERT_TRUE(subscriber_->ApplyBatch({Captured("cus_1", 2, 2)}).ok());
  EXPECT_EQ(ReadClock(*db_)->seconds(), 1002);
  auto view = views_->GetCustomer360("cus_f", 0, "");
  ASSERT_TRUE(view.ok()) << view.status();
  ASSERT_EQ(view->timeline_size(), 1);
  EXPECT_EQ(view->timeline(0).occurred_at().seconds(), e.occurred_at().seconds());
}

// A GDPR export's part from analytics: the view without its timeline,
// nothing for a stranger, and no answer while the views are rebuilt.
TEST_F(ViewStoreTest, AnExportHoldsTheViewWithoutItsTimeline) {
  ASSERT_TRUE(subscriber_->ApplyBatch({Captured("cus_1", 1, 0), Captured("cus_1", 2, 1)}).ok());
  auto vault = pii::KeyVault::Open(*db_, nullptr, pii::RandomKey(), "crm/analytics");
  ASSERT_TRUE(vault.ok()) << vault.status();
  auto ready = [] { return true; };
  auto exported = ExportedView(*views_, **vault, ready, "cus_1");
  ASSERT_TRUE(exported.ok()) << exported.status();
  ASSERT_EQ(exported->size(), 1u);
  crm::v1::Customer360 view;
  ASSERT_TRUE((*exported)[0].UnpackTo(&view));
  EXPECT_EQ(view.customer_id(), "cus_1");
  EXPECT_EQ(view.event_count(), 2);
  EXPECT_EQ(view.lead_ids_size(), 2);
  EXPECT_EQ(view.timeline_size(), 0);
  EXPECT_TRUE(view.next_page_token().empty());
  EXPECT_TRUE(ExportedView(*views_, **vault, ready, "cus_stranger")->empty());
  EXPECT_EQ(ExportedView(
                *views_, **vault, [] { return false; }, "cus_1")
                .status()
                .code(),
            absl::StatusCode::kUnavailable);
}

TEST_F(ViewStoreTest, TimelinePagesInOccurredOrderWithoutGapsOrRepeats) {
  std::vector<ConsumedMessage> batch;
  // Delivered newest first; the timeline still reads oldest first.
  for (int n = 25; n >= 1; --n) batch.push_back(Captured("cus_1", n, 25 - n));
  batch.push_back(Captured("cus_2", 99, 26));
  ASSERT_TRUE(subscriber_->ApplyBatch(batch).ok());

  std::vector<std::string> seen;
  std::string token;
  int pages = 0;
  do {
    auto view = views_->GetCustomer360("cus_1", 10, token);
    ASSERT_TRUE(view.ok()) << view.status();
    for (const auto& e : view->timeline()) seen.push_back(e.event_id());
    token = view->next_page_token();
    ++pages;
  } while (!token.empty() && pages < 10);
  EXPECT_EQ(pages, 3);
  ASSERT_EQ(seen.size(), 25u);
  for (int n = 1; n <= 25; ++n) EXPECT_EQ(seen[n - 1], absl::StrCat("evt-", n));
}

// The events of one command share their time: the timeline keeps them in
// the order they were decided (a lead captured, then assigned), whatever
// their random event ids say.
TEST_F(ViewStoreTest, EventsOfOneInstantReadInTheirStreamsOrder) {
  crm::v1::LeadCaptured captured;
  captured.set_lead_id("lead_1");
  captured.set_customer_id("cus_1");
  crm::v1::LeadAssigned assigned;
  assigned.set_lead_id("lead_1");
  assigned.set_customer_id("cus_1");
  assigned.set_owner_id("rep_1");
  // Of one instant; the later event has the smaller id.
  ASSERT_TRUE(subscriber_
                  ->ApplyBatch({testing::OnTopic(kLeadsTopic, 0,
                                                 testing::Envelope(captured, "cus_1", "evt_B",
                                                                   "lead-lead_1", 1, 1000)),
                                testing::OnTopic(kLeadsTopic, 1,
                                                 testing::Envelope(assigned, "cus_1", "evt_A",
                                                                   "lead-lead_1", 2, 1000))})
                  .ok());
  auto view = views_->GetCustomer360("cus_1", 0, "");
  ASSERT_TRUE(view.ok()) << view.status();
  ASSERT_EQ(view->timeline_size(), 2);
  EXPECT_EQ(view->timeline(0).type(), "LeadCaptured");
  EXPECT_EQ(view->timeline(1).type(), "LeadAssigned");
}

// A customer's view carries every lead id, order and ticket: with a large
// view a full timeline page would pass what a default gRPC client takes.
TEST_F(ViewStoreTest, ATimelinePageStopsShortOfTheReplyBoundWithTheRestOfTheView) {
  // Lead ids of 64 bytes: the view without its timeline comes to just
  // under the bound.
  constexpr int kLeads = (kMaxReplyBytes - 30'000) / 66;
  std::vector<ConsumedMessage> batch;
  for (int n = 1; n <= kLeads; ++n) {
    ConsumedMessage m = Captured("cus_big", n, n);
    crm::v1::EventEnvelope e;
    ASSERT_TRUE(e.ParseFromString(m.value));
    crm::v1::LeadCaptured lead;
    ASSERT_TRUE(e.payload().UnpackTo(&lead));
    lead.set_lead_id(absl::StrCat("lead_", std::string(50, 'x'), absl::Dec(n, absl::kZeroPad9)));
    e.mutable_payload()->PackFrom(lead);
    m.value = e.SerializeAsString();
    batch.push_back(std::move(m));
    if (batch.size() == 5000 || n == kLeads) {
      ASSERT_TRUE(subscriber_->ApplyBatch(batch).ok());
      batch.clear();
    }
  }
  std::set<std::string> seen;
  std::string token;
  int pages = 0;
  do {
    auto view = views_->GetCustomer360("cus_big", 500, token);
    ASSERT_TRUE(view.ok()) << view.status();
    if (pages == 0) {
      ASSERT_EQ(view->lead_ids_size(), kLeads);
    }
    EXPECT_LE(view->ByteSizeLong(), kMaxReplyBytes);
    EXPECT_GT(view->timeline_size(), 0);
    for (const auto& e : view->timeline()) EXPECT_TRUE(seen.insert(e.event_id()).second);
    token = view->next_page_token();
    ++pages;
  } while (!token.empty() && pages < 1000);
  EXPECT_EQ(seen.size(), static_cast<size_t>(kLeads));
  EXPECT_GT(pages, kLeads / 500 + 1) << "pages end short of 500 entries";
}

TEST_F(ViewStoreTest, ErrorsNameTheProblem) {
  EXPECT_EQ(views_->GetCustomer360("cus_none", 0, "").status().code(), absl::StatusCode::kNotFound);
  auto empty = views_->GetCustomer360("", 0, "");
  EXPECT_EQ(empty.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(empty.status().message().find("customer_id"), std::string::npos);
  ASSERT_TRUE(subscriber_->ApplyBatch({Captured("cus_1", 1, 0)}).ok());
  auto bad = views_->GetCustomer360("cus_1", 10, "!!not-a-token!!");
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("page_token"), std::string::npos);
  EXPECT_EQ(views_->GetCustomer360("cus_1", -1, "").status().code(),
            absl::StatusCode::kInvalidArgument);
  // The same for a customer that does not exist: a caller who may not see
  // cus_1 cannot tell the two apart by the error.
  for (const std::string id : {"cus_1", "cus_none"}) {
    auto negative = views_->GetCustomer360(id, -1, "");
    EXPECT_EQ(negative.status(), absl::InvalidArgumentError("timeline_page.page_size: negative"))
        << id;
    auto malformed = views_->GetCustomer360(id, 10, "!!");
    EXPECT_EQ(malformed.status(), absl::InvalidArgumentError("timeline_page.page_token: malformed"))
        << id;
  }
}

ConsumedMessage Won(const std::string& customer, const std::string& opp, int64_t offset) {
  crm::v1::OpportunityStageChanged won;
  won.set_opportunity_id(opp);
  won.set_from_stage_id("proposal");
  won.set_to_stage_id("won");
  won.set_outcome(crm::v1::STAGE_OUTCOME_WON);
  won.mutable_amount()->set_currency("EUR");
  won.mutable_amount()->set_minor_units(700);
  won.mutable_time_in_previous_stage()->set_seconds(60);
  crm::v1::EventEnvelope e;
  e.set_event_id(absl::StrCat("evt-won-", opp));
  e.set_stream(absl::StrCat("opportunity-", opp));
  e.set_stream_version(2);
  e.set_customer_id(customer);
  e.set_type("OpportunityStageChanged");
  e.mutable_occurred_at()->set_seconds(5000);
  e.mutable_payload()->PackFrom(won);
  return {"crm.sales.v1", 0, offset, e.SerializeAsString()};
}

ConsumedMessage OpportunityOpened(const std::string& customer, const std::string& opp,
                                  const std::string& lead, int64_t offset) {
  crm::v1::OpportunityOpened opened;
  opened.set_opportunity_id(opp);
  opened.set_lead_id(lead);
  opened.set_stage_id("proposal");
  crm::v1::EventEnvelope e;
  e.set_event_id(absl::StrCat("evt-open-", opp));
  e.set_stream(absl::StrCat("opportunity-", opp));
  e.set_stream_version(1);
  e.set_customer_id(customer);
  e.set_type("OpportunityOpened");
  e.mutable_occurred_at()->set_seconds(4000);
  e.mutable_payload()->PackFrom(opened);
  return {"crm.sales.v1", 0, offset, e.SerializeAsString()};
}

TEST_F(ViewStoreTest, FunnelJoinsSalesEventsAcrossBatchesAndTopics) {
  // The sales topic is consumed before the leads topic, over separate batches.
  ASSERT_TRUE(
      subscriber_
          ->ApplyBatch({OpportunityOpened("cus_1", "opp_1", "lead_1", 0), Won("cus_1", "opp_1", 1)})
          .ok());
  ASSERT_TRUE(subscriber_->ApplyBatch({Captured("cus_1", 1, 0), Captured("cus_2", 2, 1)}).ok());
  ASSERT_TRUE(subscriber_->ApplyBatch({Won("cus_1", "opp_1", 1)}).ok());  // redelivered
  auto funnel = views_->GetFunnel({});
  ASSERT_TRUE(funnel.ok()) << funnel.status();
  EXPECT_EQ(funnel->total().leads(), 2);
  EXPECT_EQ(funnel->total().opportunities(), 1);
  EXPECT_EQ(funnel->total().won(), 1);
  ASSERT_EQ(funnel->total().won_revenue_size(), 1);
  EXPECT_EQ(funnel->total().won_revenue(0).minor_units(), 700);
  ASSERT_EQ(funnel->stage_times_size(), 1);
  EXPECT_EQ(funnel->stage_times(0).samples(), 1);
  EXPECT_DOUBLE_EQ(funnel->average_sales_cycle_seconds(), 1000);

  auto view = views_->GetCustomer360("cus_1", 0, "");
  ASSERT_TRUE(view.ok());
  EXPECT_EQ(view->lifecycle_stage(), crm::v1::LIFECYCLE_STAGE_CUSTOMER);
  EXPECT_EQ(view->open_opportunity_count(), 0);

  crm::v1::GetFunnelRequest bad;
  bad.set_period("May");
  EXPECT_EQ(views_->GetFunnel(bad).status().code(), absl::StatusCode::kInvalidArgument);
}

// ---- KPIs, segments and churn risk through the projection ----

using testing::kDay;
using testing::OnTopic;

// Every key and value of the digest families, as crmctl digest reads them.
std::string DigestBytes(const Database& db) {
  std::string out;
  for (const char* family : ViewDigestFamilies()) {
    auto it = db.NewIterator(family);
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      absl::StrAppend(&out, family, "|", it->key().ToString(), "|", it->value().ToString(), "\n");
    }
  }
  return out;
}

// A small history over three topics: two customers with orders, tickets,
// CSAT, and one of analytics' own ChurnRiskRaised.
std::vector<ConsumedMessage> History() {
  using namespace testing;
  crm::v1::ChurnRiskRaised raised;
  raised.set_customer_id("cus_a");
  raised.set_score(62);
  raised.set_threshold(60);
  return {
      OnTopic("crm.sales.v1", 0, OrderPlacedAt("cus_a", "o1", 500, 0)),
      OnTopic("crm.sales.v1", 1, OrderPlacedAt("cus_b", "o2", 2000000, 10 * kDay)),
      OnTopic("crm.service-desk.v1", 0, TicketOpenedAt("cus_b", "t1", 150 * kDay)),
      OnTopic("crm.service-desk.v1", 1,
              TicketEvent(Assigned("t1", "red"), "cus_b", "t1", 2, 150 * kDay + 5)),
      OnTopic("crm.service-desk.v1", 2,
              TicketEvent(FirstReply("t1"), "cus_b", "t1", 3, 150 * kDay + 60)),
      OnTopic("crm.service-desk.v1", 3,
              TicketEvent(Resolved("t1"), "cus_b", "t1", 4, 150 * kDay + 600)),
      OnTopic("crm.service-desk.v1", 4,
              TicketEvent(Csat("t1", 4), "cus_b", "t1", 5, 150 * kDay + 700)),
      OnTopic("crm.analytics.v1", 0,
              Envelope(raised, "cus_a", "evt-churn-a", "churnrisk-cus_a", 1, 150 * kDay)),
      OnTopic("crm.leads.v1", 0, LeadCapturedAt("cus_c", "lead_c", 80, 155 * kDay)),
  };
}

TEST_F(ViewStoreTest, KpisAndHealthAreTheSameBytesWhateverTheTopicOrderBatchesAndDuplicates) {
  auto history = History();
  ASSERT_TRUE(subscriber_->ApplyBatch(history).ok());
  const std::string live = DigestBytes(*db_);

  // Another store: service desk first, then one event per batch from the
  // other end, every batch delivered twice.
  auto other_db = std::move(*Database::Open(dir_.Sub("other"), ViewFamilies()));
  Customer360Projection other_projection;
  Subscriber other(*other_db, other_projection, SubscriberOptions{});
  std::stable_sort(history.begin(), history.end(), [](const auto& a, const auto& b) {
    return (a.topic == "crm.service-desk.v1") > (b.topic == "crm.service-desk.v1");
  });
  std::reverse(history.begin() + 5, history.end());
  for (const auto& m : history) {
    ASSERT_TRUE(other.ApplyBatch({m}).ok());
    ASSERT_TRUE(other.ApplyBatch({m}).ok());
  }
  EXPECT_EQ(DigestBytes(*other_db), live);

  auto kpis = views_->GetServiceKpis({});
  ASSERT_TRUE(kpis.ok()) << kpis.status();
  EXPECT_EQ(kpis->total().tickets(), 1);
  EXPECT_EQ(kpis->total().first_response().median_seconds(), 60);
  EXPECT_EQ(kpis->total().resolution().median_seconds(), 600);
  EXPECT_DOUBLE_EQ(kpis->total().csat_average(), 4.0);
  ASSERT_EQ(kpis->by_team_size(), 1);
  EXPECT_EQ(kpis->by_team(0).key(), "red");
  crm::v1::GetServiceKpisRequest backwards;
  backwards.mutable_from()->set_seconds(10);
  backwards.mutable_to()->set_seconds(5);
  EXPECT_EQ(views_->GetServiceKpis(backwards).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(ViewStoreTest, Customer360ShowsRiskClvAndStageAtTheLatestEventTime) {
  ASSERT_TRUE(subscriber_->ApplyBatch(History()).ok());
  // The clock is the lead captured on day 155, not the wall clock.
  auto a = views_->GetCustomer360("cus_a", 0, "");
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->scored_at().seconds(), 155 * kDay);
  EXPECT_EQ(a->churn_risk_score(), 45 * 155 / 180 + 25);
  EXPECT_EQ(a->lifecycle_stage(), crm::v1::LIFECYCLE_STAGE_AT_RISK);
  ASSERT_EQ(a->clv_estimate_size(), 1);
  EXPECT_GT(a->clv_estimate(0).minor_units(), 500);
  // Its own churn alert is on the timeline.
  ASSERT_EQ(a->timeline_size(), 2);
  EXPECT_EQ(a->timeline(1).type(), "ChurnRiskRaised");

  auto b = views_->GetCustomer360("cus_b", 0, "");
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->lifecycle_stage(), crm::v1::LIFECYCLE_STAGE_CUSTOMER);
  EXPECT_LT(b->churn_risk_score(), 60);
}

// The members `req` and the pages after it list; `pages` counts the calls.
std::vector<std::string> RestOfSegment(const ViewStore& views, crm::v1::ListSegmentRequest req,
                                       int* pages) {
  std::vector<std::string> ids;
  *pages = 0;
  do {
    auto page = views.ListSegment(req);
    EXPECT_TRUE(page.ok()) << page.status();
    if (!page.ok()) break;
    for (const auto& m : page->members()) ids.push_back(m.customer_id());
    req.mutable_page()->set_page_token(page->next_page_token());
    ++*pages;
  } while (!req.page().page_token().empty() && *pages < 20);
  return ids;
}

std::vector<std::string> AllOfSegment(const ViewStore& views, crm::v1::Segment segment,
                                      int page_size, int* pages) {
  crm::v1::ListSegmentRequest req;
  req.set_segment(segment);
  req.mutable_page()->set_page_size(page_size);
  return RestOfSegment(views, req, pages);
}

TEST_F(ViewStoreTest, ListSegmentPagesInCustomerIdOrderWithoutGapsOrRepeats) {
  using namespace testing;
  std::vector<ConsumedMessage> batch;
  // Old buyers c00..c08 (at risk), fresh big buyers at every 3rd id.
  for (int i = 8; i >= 0; --i) {
    const std::string c = absl::StrCat("c0", i);
    batch.push_back(
        OnTopic("crm.sales.v1", 8 - i, OrderPlacedAt(c, absl::StrCat("old", i), 100, 0)));
    if (i % 3 == 0) {
      batch.push_back(OnTopic("crm.sales.v1", 20 + i,
                              OrderPlacedAt(c, absl::StrCat("new", i), 2000000, 200 * kDay)));
    }
  }
  ASSERT_TRUE(subscriber_->ApplyBatch(batch).ok());
  int pages = 0;
  EXPECT_EQ(AllOfSegment(*views_, crm::v1::SEGMENT_AT_RISK, 2, &pages),
            (std::vector<std::string>{"c01", "c02", "c04", "c05", "c07", "c08"}));
  EXPECT_EQ(pages, 3);
  EXPECT_EQ(AllOfSegment(*views_, crm::v1::SEGMENT_HIGH_VALUE, 0, &pages),
            (std::vector<std::string>{"c00", "c03", "c06"}));
  EXPECT_EQ(pages, 1);
  EXPECT_TRUE(AllOfSegment(*views_, crm::v1::SEGMENT_CHURNED, 2, &pages).empty());
  // A row that no longer parses is skipped, not the end of every listing.
  ASSERT_TRUE(db_->raw()
                  ->Put(rocksdb::WriteOptions(), db_->Family("customers"), "c04",
                        std::string("\xff\xff\xff", 3))
                  .ok());
  EXPECT_EQ(AllOfSegment(*views_, crm::v1::SEGMENT_AT_RISK, 2, &pages),
            (std::vector<std::string>{"c01", "c02", "c05", "c07", "c08"}));

  crm::v1::ListSegmentRequest unknown;
  auto st = views_->ListSegment(unknown).status();
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(st.message().substr(0, 8), "segment:");
  crm::v1::ListSegmentRequest bad_token;
  bad_token.set_segment(crm::v1::SEGMENT_DORMANT);
  bad_token.mutable_page()->set_page_token("!!");
  st = views_->ListSegment(bad_token).status();
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("page.page_token"), std::string::npos);
  crm::v1::ListSegmentRequest negative;
  negative.set_segment(crm::v1::SEGMENT_DORMANT);
  negative.mutable_page()->set_page_size(-1);
  EXPECT_EQ(views_->ListSegment(negative).status().code(), absl::StatusCode::kInvalidArgument);
}

ConsumedMessage LeadsMergedAt(const std::string& survivor_customer,
                              const std::string& survivor_lead, const std::string& merged_customer,
                              const std::string& merged_lead, int64_t seconds, int64_t offset) {
  crm::v1::LeadsMerged m;
  m.set_survivor_lead_id(survivor_lead);
  m.set_merged_lead_id(merged_lead);
  m.set_survivor_customer_id(survivor_customer);
  m.set_merged_customer_id(merged_customer);
  return testing::OnTopic("crm.leads.v1", offset,
                          testing::Envelope(m, survivor_customer, "evt-merge-" + merged_lead,
                                            "lead-" + survivor_lead, 2, seconds));
}

// An export covers the person as every service's export does: the customer
// and those merged into it. A customer merged into another is exported
// alone, not with the survivor's data the 360 view joins to it.
TEST_F(ViewStoreTest, AnExportHoldsTheCustomerAndThoseMergedIntoItOnly) {
  using namespace testing;
  ASSERT_TRUE(
      subscriber_
          ->ApplyBatch({OnTopic("crm.leads.v1", 0, LeadCapturedAt("cus_y", "ly", 40, 1000)),
                        OnTopic("crm.leads.v1", 1, LeadCapturedAt("cus_x", "lx", 60, 1050)),
                        OnTopic("crm.sales.v1", 0, OrderPlacedAt("cus_y", "o1", 5000, 1100)),
                        LeadsMergedAt("cus_y", "ly", "cus_x", "lx", 1300, 2)})
          .ok());
  auto vault = pii::KeyVault::Open(*db_, nullptr, pii::RandomKey(), "crm/analytics");
  ASSERT_TRUE(vault.ok()) << vault.status();
  auto ready = [] { return true; };
  auto exported_view = [&](const std::string& customer_id) {
    crm::v1::Customer360 view;
    auto exported = ExportedView(*views_, **vault, ready, customer_id);
    EXPECT_TRUE(exported.ok()) << exported.status();
    if (exported.ok() && exported->size() == 1) {
      EXPECT_TRUE((*exported)[0].UnpackTo(&view));
    }
    return view;
  };
  const crm::v1::Customer360 merged_away = exported_view("cus_x");
  EXPECT_EQ(merged_away.customer_id(), "cus_x");
  EXPECT_EQ(merged_away.merged_customer_ids_size(), 0);
  EXPECT_EQ(std::vector<std::string>(merged_away.lead_ids().begin(), merged_away.lead_ids().end()),
            std::vector<std::string>{"lx"});
  EXPECT_EQ(merged_away.orders_size(), 0) << "the survivor's order";

  const crm::v1::Customer360 survivor = exported_view("cus_y");
  EXPECT_EQ(survivor.customer_id(), "cus_y");
  EXPECT_EQ(std::vector<std::string>(survivor.merged_customer_ids().begin(),
                                     survivor.merged_customer_ids().end()),
            std::vector<std::string>{"cus_x"});
  EXPECT_EQ(survivor.lead_ids_size(), 2);
  EXPECT_EQ(survivor.orders_size(), 1);
  EXPECT_EQ(survivor.timeline_size(), 0);
}

// One survivor may take in hundreds of customers: the 360 view and the
// export still read the whole group, as the churn walk and ListSegment do.
TEST_F(ViewStoreTest, AGroupOfHundredsIsReadWhole) {
  using namespace testing;
  constexpr int kMerged = 255;
  std::vector<ConsumedMessage> batch = {
      OnTopic("crm.leads.v1", 0, LeadCapturedAt("cus_h", "lh", 40, 1000)),
      OnTopic("crm.sales.v1", 0, OrderPlacedAt("cus_g", "og", 5000, 1100)),
      // cus_g went into cus_m007 before cus_m007 went into cus_h.
      LeadsMergedAt("cus_m007", "l7", "cus_g", "lg", 1200, 1)};
  for (int i = 0; i < kMerged; ++i) {
    batch.push_back(LeadsMergedAt("cus_h", absl::StrCat("lh", i), absl::StrFormat("cus_m%03d", i),
                                  absl::StrCat("lm", i), 1300 + i, 2 + i));
  }
  ASSERT_TRUE(subscriber_->ApplyBatch(batch).ok());

  auto has_g = [](const crm::v1::Customer360& v) {
    return std::find(v.merged_customer_ids().begin(), v.merged_customer_ids().end(), "cus_g") !=
           v.merged_customer_ids().end();
  };
  auto view = views_->GetCustomer360("cus_h", 0, "");
  ASSERT_TRUE(view.ok()) << view.status();
  EXPECT_EQ(view->customer_id(), "cus_h");
  EXPECT_EQ(view->merged_customer_ids_size(), kMerged + 1);
  EXPECT_TRUE(has_g(*view));
  EXPECT_EQ(view->orders_size(), 1);
  auto exported = views_->GetExportedView("cus_h");
  ASSERT_TRUE(exported.ok()) << exported.status();
  EXPECT_TRUE(has_g(*exported));
  EXPECT_EQ(exported->orders_size(), 1);
}

// One person captured twice, as two customers, then merged (MergeLeads):
// both read as one view under the survivor, whichever id is asked for and
// whatever order the merge and the merged customer's events arrive in.
TEST_F(ViewStoreTest, MergedCustomersReadAsOneViewWhateverTheOrder) {
  using namespace testing;
  std::vector<ConsumedMessage> history = {
      OnTopic("crm.leads.v1", 0, LeadCapturedAt("cus_a", "la", 40, 1000)),
      OnTopic("crm.leads.v1", 1, LeadCapturedAt("cus_b", "lb", 60, 1050)),
      OnTopic("crm.sales.v1", 0, OrderPlacedAt("cus_a", "o1", 5000, 1100)),
      OnTopic("crm.service-desk.v1", 0, TicketOpenedAt("cus_a", "t1", 1200)),
      LeadsMergedAt("cus_b", "lb", "cus_a", "la", 1300, 2),
      // Sales still knows the person as cus_a.
      OnTopic("crm.sales.v1", 1, OrderPlacedAt("cus_a", "o2", 700, 1400)),
      OnTopic("crm.leads.v1", 3, LeadCapturedAt("cus_c", "lc", 10, 1500)),
  };
  ASSERT_TRUE(subscriber_->ApplyBatch(history).ok());

  auto b = views_->GetCustomer360("cus_b", 0, "");
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(b->customer_id(), "cus_b");
  EXPECT_EQ(
      std::vector<std::string>(b->merged_customer_ids().begin(), b->merged_customer_ids().end()),
      std::vector<std::string>{"cus_a"});
  EXPECT_EQ(std::vector<std::string>(b->lead_ids().begin(), b->lead_ids().end()),
            (std::vector<std::string>{"la", "lb"}));
  EXPECT_EQ(b->orders_size(), 2);
  EXPECT_EQ(b->tickets_size(), 1);
  ASSERT_EQ(b->lifetime_value_size(), 1);
  EXPECT_EQ(b->lifetime_value(0).minor_units(), 5700);
  EXPECT_EQ(b->event_count(), 6);
  ASSERT_EQ(b->timeline_size(), 6);
  for (int i = 1; i < b->timeline_size(); ++i) {
    EXPECT_LT(b->timeline(i - 1).occurred_at().seconds(), b->timeline(i).occurred_at().seconds());
  }

  // The merged customer's id answers with the same view.
  auto a = views_->GetCustomer360("cus_a", 0, "");
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->SerializeAsString(), b->SerializeAsString());

  // Pages of the joined timeline: in time order, no gaps, no repeats.
  std::vector<std::string> paged;
  std::string token;
  do {
    auto page = views_->GetCustomer360("cus_a", 4, token);
    ASSERT_TRUE(page.ok()) << page.status();
    for (const auto& e : page->timeline()) paged.push_back(e.event_id());
    token = page->next_page_token();
  } while (!token.empty() && paged.size() < 20);
  ASSERT_EQ(paged.size(), 6u);
  for (int i = 0; i < 6; ++i) EXPECT_EQ(paged[i], b->timeline(i).event_id());

  // Scans see the person once.
  std::vector<std::string> scanned;
  ASSERT_TRUE(views_
                  ->ForEachCustomer(
                      [&](const crm::v1::Customer360& v) {
                        scanned.push_back(v.customer_id());
                        return absl::OkStatus();
                      },
                      NoneUnreadable)
                  .ok());
  EXPECT_EQ(scanned, (std::vector<std::string>{"cus_b", "cus_c"}));

  // The merge (after the survivor's capture, on the same stream) first,
  // then the rest one batch each from the other end.
  auto other_db = std::move(*Database::Open(dir_.Sub("other"), ViewFamilies()));
  Customer360Projection other_projection;
  Subscriber other(*other_db, other_projection, SubscriberOptions{});
  ASSERT_TRUE(other.ApplyBatch({history[1], history[4]}).ok());
  // The merged customer is named before any of its own events is read: a
  // churn alert lists it for sales to find the account by.
  auto early = ViewStore(*other_db).GetCustomer360("cus_b", 0, "");
  ASSERT_TRUE(early.ok()) << early.status();
  EXPECT_EQ(std::vector<std::string>(early->merged_customer_ids().begin(),
                                     early->merged_customer_ids().end()),
            std::vector<std::string>{"cus_a"});
  for (int i = static_cast<int>(history.size()) - 1; i >= 0; --i) {
    if (i != 1 && i != 4) {
      ASSERT_TRUE(other.ApplyBatch({history[i]}).ok());
    }
  }
  auto reordered = ViewStore(*other_db).GetCustomer360("cus_b", 0, "");
  ASSERT_TRUE(reordered.ok()) << reordered.status();
  EXPECT_EQ(reordered->SerializeAsString(), b->SerializeAsString());
}

// The merged-away customer was erased: its key is gone, and its later
// email would read as nothing. The group shows the survivor's, which can
// still be read; fields no member can read stay empty.
TEST_F(ViewStoreTest, AnErasedMembersValuesDoNotHideTheOthers) {
  using namespace testing;
  auto captured = [](const std::string& customer, const std::string& lead, const std::string& email,
                     const std::string& phone, int64_t seconds, int64_t offset) {
    crm::v1::LeadCaptured c;
    c.set_lead_id(lead);
    c.set_customer_id(customer);
    c.mutable_contact()->set_email(email);
    c.mutable_contact()->set_phone(phone);
    c.set_company("Acme");
    return OnTopic("crm.leads.v1", offset,
                   Envelope(c, customer, "evt-" + lead, "lead-" + lead, 1, seconds));
  };
  ASSERT_TRUE(subscriber_
                  ->ApplyBatch({captured("cus_y", "ly", "pii1.live.a", "", 1000, 0),
                                captured("cus_x", "lx", "pii1.gone.b", "pii1.gone.c", 2000, 1),
                                LeadsMergedAt("cus_y", "ly", "cus_x", "lx", 3000, 2)})
                  .ok());
  // Without the test the later value wins, and would open to nothing.
  EXPECT_EQ(views_->GetCustomer360("cus_y", 0, "")->profile().email(), "pii1.gone.b");

  const ViewStore checked(*db_, AnalyticsConfig::Defaults(), [](const std::string& value) {
    return absl::StartsWith(value, "pii1.gone.");
  });
  for (const char* asked : {"cus_y", "cus_x"}) {
    auto view = checked.GetCustomer360(asked, 0, "");
    ASSERT_TRUE(view.ok()) << view.status();
    EXPECT_EQ(view->profile().email(), "pii1.live.a") << asked;
    EXPECT_EQ(view->profile().phone(), "") << asked;
    EXPECT_EQ(view->profile().company(), "Acme") << asked;
  }
  std::vector<std::string> emails;
  ASSERT_TRUE(checked
                  .ForEachCustomer(
                      [&](const crm::v1::Customer360& v) {
                        emails.push_back(v.profile().email());
                        return absl::OkStatus();
                      },
                      NoneUnreadable)
                  .ok());
  EXPECT_EQ(emails, std::vector<std::string>{"pii1.live.a"});
}

// A group is listed once, where its first member's row is, and the page
// token resumes after that row.
TEST_F(ViewStoreTest, ListSegmentListsAMergedGroupOnceAndPagesOn) {
  using namespace testing;
  std::vector<ConsumedMessage> batch;
  for (int i = 1; i <= 5; ++i) {
    const std::string c = absl::StrCat("c0", i);
    batch.push_back(OnTopic("crm.sales.v1", i, OrderPlacedAt(c, absl::StrCat("old", i), 100, 0)));
  }
  batch.push_back(OnTopic("crm.sales.v1", 9, OrderPlacedAt("c09", "new9", 100, 200 * kDay)));
  batch.push_back(LeadsMergedAt("c05", "l5", "c01", "l1", 1, 0));
  ASSERT_TRUE(subscriber_->ApplyBatch(batch).ok());
  int pages = 0;
  // At the survivor's row, under the survivor's id.
  EXPECT_EQ(AllOfSegment(*views_, crm::v1::SEGMENT_AT_RISK, 1, &pages),
            (std::vector<std::string>{"c02", "c03", "c04", "c05"}));
  EXPECT_EQ(pages, 4);
}

// A merged customer whose first event arrives between two pages (another
// partition's) sorts before the page token: the group must still be
// listed, at its survivor's row.
TEST_F(ViewStoreTest, ListSegmentKeepsAGroupWhoseMemberAppearsBetweenPages) {
  using namespace testing;
  ASSERT_TRUE(
      subscriber_
          ->ApplyBatch({OnTopic("crm.sales.v1", 1, OrderPlacedAt("c02", "o2", 100, 0)),
                        OnTopic("crm.sales.v1", 2, OrderPlacedAt("c05", "o5", 100, 0)),
                        OnTopic("crm.sales.v1", 3, OrderPlacedAt("c09", "o9", 100, 200 * kDay)),
                        LeadsMergedAt("c05", "l5", "c01", "l1", 4, 0)})
          .ok());
  crm::v1::ListSegmentRequest req;
  req.set_segment(crm::v1::SEGMENT_AT_RISK);
  req.mutable_page()->set_page_size(1);
  auto first = views_->ListSegment(req);
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_EQ(first->members_size(), 1);
  EXPECT_EQ(first->members(0).customer_id(), "c02");
  ASSERT_FALSE(first->next_page_token().empty());
  ASSERT_TRUE(
      subscriber_->ApplyBatch({OnTopic("crm.sales.v1", 5, OrderPlacedAt("c01", "o1", 100, 0))})
          .ok());
  req.mutable_page()->set_page_token(first->next_page_token());
  int pages = 0;
  EXPECT_EQ(RestOfSegment(*views_, req, &pages), std::vector<std::string>{"c05"});
}

}  // namespace
}  // namespace crm::analytics
