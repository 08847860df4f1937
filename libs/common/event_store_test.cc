#include "libs/common/event_store.h"

#include <atomic>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "libs/common/envelope.h"
#include "libs/common/key_codec.h"
#include "libs/common/testing/temp_dir.h"

namespace crm {
namespace {

crm::v1::EventEnvelope Event(const std::string& type, const std::string& customer = "cus_1") {
  crm::v1::EventEnvelope e;
  e.set_event_id(absl::StrCat("evt-", type, "-", customer));
  e.set_type(type);
  e.set_customer_id(customer);
  return e;
}

AppendRequest Request(const std::string& stream, int64_t expected,
                      std::vector<crm::v1::EventEnvelope> events, const std::string& state) {
  AppendRequest r;
  r.stream = stream;
  r.expected_version = expected;
  r.events = std::move(events);
  r.state = state;
  return r;
}

class EventStoreTest : public ::testing::Test {
 protected:
  void SetUp() override { Reopen(); }
  void Reopen() {
    store_.reset();
    auto s = EventStore::Open(dir_.Sub("db"), {"contacts"});
    ASSERT_TRUE(s.ok()) << s.status();
    store_ = std::move(*s);
  }
  testing::TempDir dir_;
  std::unique_ptr<EventStore> store_;
};

TEST_F(EventStoreTest, AppendAssignsVersionsAndReadsBack) {
  auto r = store_->Append(Request("lead-1", 0, {Event("A"), Event("B")}, "s2"));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->first_version, 1);
  EXPECT_EQ(r->last_version, 2);
  EXPECT_FALSE(r->replayed);

  auto events = store_->ReadStream("lead-1");
  ASSERT_TRUE(events.ok());
  ASSERT_EQ(events->size(), 2u);
  EXPECT_EQ((*events)[0].type(), "A");
  EXPECT_EQ((*events)[0].stream_version(), 1);
  EXPECT_EQ((*events)[1].stream_version(), 2);
  EXPECT_EQ((*events)[1].stream(), "lead-1");
  EXPECT_GT((*events)[1].recorded_at().seconds(), 0);

  auto state = store_->LoadState("lead-1");
  ASSERT_TRUE(state.ok());
  EXPECT_EQ(state->version, 2);
  EXPECT_EQ(state->state, "s2");
}

TEST_F(EventStoreTest, VersionConflictIsAbortedAndWritesNothing) {
  ASSERT_TRUE(store_->Append(Request("lead-1", 0, {Event("A")}, "s1")).ok());
  auto r = store_->Append(Request("lead-1", 0, {Event("B")}, "bad"));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kAborted);
  EXPECT_NE(r.status().message().find("expected 0, current 1"), std::string::npos);

  auto stale = store_->Append(Request("lead-1", 5, {Event("B")}, "bad"));
  EXPECT_EQ(stale.status().code(), absl::StatusCode::kAborted);

  EXPECT_EQ(store_->ReadStream("lead-1")->size(), 1u);
  EXPECT_EQ(store_->LoadState("lead-1")->state, "s1");
  EXPECT_EQ(store_->ReadOutbox(0, 100)->size(), 1u);
}

// An event no Kafka message could carry would block the outbox behind it
// forever: it is refused, and the appends beside it are not held up.
TEST_F(EventStoreTest, AnEventTooLargeToPublishIsRefusedAndWritesNothing) {
  auto big = Event("Noted");
  big.mutable_payload()->set_value(std::string(EventStore::kMaxEventBytes, 'x'));
  std::vector<AppendRequest> batch;
  batch.push_back(Request("lead-1", 0, {Event("A"), big}, "s1"));
  batch.push_back(Request("lead-2", 0, {Event("A")}, "s2"));
  auto results = store_->AppendBatch(std::move(batch));
  ASSERT_TRUE(results.ok()) << results.status();
  ASSERT_EQ(results->size(), 2u);
  EXPECT_EQ((*results)[0].status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE((*results)[0].status().message().find("event Noted on lead-1 is"), std::string::npos)
      << (*results)[0].status();
  EXPECT_TRUE((*results)[1].ok()) << (*results)[1].status();
  EXPECT_EQ(store_->LoadState("lead-1").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->ReadStream("lead-1")->size(), 0u);
  EXPECT_EQ(store_->OutboxSize(), 1u);
}

TEST_F(EventStoreTest, RetryWithSameRequestKeyReturnsFirstResultAndAppendsNothing) {
  auto first = Request("lead-1", 0, {Event("A")}, "s1");
  first.request_key = "capture/req-1";
  first.response = "first-response";
  ASSERT_TRUE(store_->Append(first).ok());

  // A retry decides again (with a new id, say) but must change nothing.
  auto retry = Request("lead-2", 0, {Event("A")}, "other");
  retry.request_key = "capture/req-1";
  retry.response = "second-response";
  auto r = store_->Append(retry);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->replayed);
  EXPECT_EQ(r->response, "first-response");
  EXPECT_EQ(store_->LoadState("lead-2").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->LogSize(), 1u);
  EXPECT_EQ(*store_->FindResponse("capture/req-1"), "first-response");
}

// A request_id used again for another request: its result is not the
// other request's answer, and the other request is not silently dropped.
TEST_F(EventStoreTest, ARequestKeyOfAnotherRequestIsRefusedAndARetryIsAnswered) {
  EventContext ctx{"crm/test", "user:ann", "", "", absl::Now()};
  crm::v1::EventEnvelope reply_to_a;  // any message stands for a request
  reply_to_a.set_stream("ticket-a");
  crm::v1::EventEnvelope reply_to_b = reply_to_a;
  reply_to_b.set_stream("ticket-b");
  const std::string key_a = CallerRequestKey(ctx, "Reply/r1", reply_to_a);
  const std::string key_b = CallerRequestKey(ctx, "Reply/r1", reply_to_b);
  ASSERT_NE(key_a, key_b);
  EXPECT_EQ(key_a, CallerRequestKey(ctx, "Reply/r1", reply_to_a)) << "a retry has the same key";
  EXPECT_EQ(SplitRequestKey(key_a).key, CallerRequestKey(ctx, "Reply/r1"));

  auto first = Request("ticket-a", 0, {Event("Replied")}, "s1");
  first.request_key = key_a;
  first.response = "reply on a";
  ASSERT_TRUE(store_->Append(first).ok());
  for (bool reopen : {false, true}) {
    if (reopen) Reopen();
    auto other = Request("ticket-b", 0, {Event("Replied")}, "s1");
    other.request_key = key_b;
    auto refused = store_->Append(other);
    EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument) << refused.status();
    EXPECT_TRUE(absl::StartsWith(refused.status().message(), "request_id:"));
    EXPECT_EQ(store_->FindResponse(key_b).status().code(), absl::StatusCode::kInvalidArgument);

    auto retry = Request("ticket-a", 1, {Event("Replied")}, "s2");
    retry.request_key = key_a;
    auto replayed = store_->Append(retry);
    ASSERT_TRUE(replayed.ok()) << replayed.status();
    EXPECT_TRUE(replayed->replayed);
    EXPECT_EQ(replayed->response, "reply on a");
    EXPECT_EQ(*store_->FindResponse(key_a), "reply on a");
    EXPECT_EQ(store_->LogSize(), 1u);
  }
  // A key stored without a fingerprint (an older store) answers any.
  auto plain = Request("ticket-c", 0, {Event("Replied")}, "s1");
  plain.request_key = CallerRequestKey(ctx, "Reply/r2");
  plain.response = "reply on c";
  ASSERT_TRUE(store_->Append(plain).ok());
  EXPECT_EQ(*store_->FindResponse(CallerRequestKey(ctx, "Reply/r2", reply_to_b)), "reply on c");
}

TEST_F(EventStoreTest, EverythingSurvivesReopen) {
  auto req = Request("lead-1", 0, {Event("A")}, "s1");
  req.request_key = "k1";
  req.projection_writes.push_back({"contacts", "email:a@b.co", "lead-1"});
  ASSERT_TRUE(store_->Append(req).ok());
  ASSERT_TRUE(store_->Append(Request("lead-1", 1, {Event("B")}, "s2")).ok());
  Reopen();

  EXPECT_EQ(store_->ReadStream("lead-1")->size(), 2u);
  EXPECT_EQ(store_->LoadState("lead-1")->version, 2);
  EXPECT_EQ(store_->LogSize(), 2u);
  EXPECT_EQ(**store_->db().Get("contacts", "email:a@b.co"), "lead-1");
  auto erase = Request("lead-1", 2, {Event("C")}, "s3");
  erase.projection_writes.push_back({"contacts", "email:a@b.co", "", /*erase=*/true});
  ASSERT_TRUE(store_->Append(erase).ok());
  EXPECT_FALSE(store_->db().Get("contacts", "email:a@b.co")->has_value());
  EXPECT_TRUE(store_->FindResponse("k1")->has_value());
  // Positions continue after a reopen instead of overwriting the log.
  ASSERT_TRUE(store_->Append(Request("lead-3", 0, {Event("C")}, "s")).ok());
  auto outbox = store_->ReadOutbox(0, 10);
  ASSERT_EQ(outbox->size(), 4u);
  EXPECT_EQ((*outbox)[3].position, 4u);
}

// Rows reach the database sorted by key; writes of one key in one batch
// still take effect in the order they were asked for.
TEST_F(EventStoreTest, WritesOfOneKeyInOneBatchLandInRequestOrder) {
  std::vector<AppendRequest> batch;
  batch.push_back(Request("lead-1", 0, {Event("A", "cus_1")}, "s1"));
  batch.back().projection_writes.push_back({"contacts", "email:x", "lead-1"});
  batch.back().projection_writes.push_back({"contacts", "email:y", "lead-1"});
  batch.push_back(Request("lead-2", 0, {Event("A", "cus_2")}, "s2"));
  batch.back().projection_writes.push_back({"contacts", "email:x", "", /*erase=*/true});
  batch.back().projection_writes.push_back({"contacts", "email:a", "lead-2"});
  batch.push_back(Request("lead-0", 0, {Event("A", "cus_0")}, "s0"));
  batch.back().projection_writes.push_back({"contacts", "email:y", "lead-0"});
  auto written = store_->AppendBatch(std::move(batch));
  ASSERT_TRUE(written.ok()) << written.status();
  for (const auto& r : *written) ASSERT_TRUE(r.ok()) << r.status();

  EXPECT_FALSE(store_->db().Get("contacts", "email:x")->has_value());
  EXPECT_EQ(**store_->db().Get("contacts", "email:y"), "lead-0");
  EXPECT_EQ(**store_->db().Get("contacts", "email:a"), "lead-2");
  // The log keeps the order of the requests, not of the keys.
  auto outbox = store_->ReadOutbox(0, 10);
  ASSERT_TRUE(outbox.ok()) << outbox.status();
  ASSERT_EQ(outbox->size(), 3u);
  EXPECT_EQ((*outbox)[0].envelope.stream(), "lead-1");
  EXPECT_EQ((*outbox)[1].envelope.stream(), "lead-2");
  EXPECT_EQ((*outbox)[2].envelope.stream(), "lead-0");
}

// A read of the outbox stops once it holds the bytes asked for (with at
// least one entry), across the chunks it reads in, and goes on from there.
TEST_F(EventStoreTest, AnOutboxReadStopsAtItsByteBound) {
  for (int i = 0; i < 600; ++i) {
    auto e = Event("Big", absl::StrCat("cus_", 1000 + i));
    e.mutable_payload()->set_value(std::string(1000, 'x'));
    ASSERT_TRUE(store_->Append(Request(absl::StrCat("s-", 1000 + i), 0, {e}, "")).ok());
  }
  auto all = store_->ReadOutbox(0, 1000);
  ASSERT_TRUE(all.ok()) << all.status();
  ASSERT_EQ(all->size(), 600u);
  // Entries differ by a byte or two (recorded_at): the bound is counted.
  size_t first_300 = 0;
  for (size_t i = 0; i < 300; ++i) first_300 += (*all)[i].bytes.size();
  auto bounded = store_->ReadOutbox(0, 1000, first_300 + 1);
  ASSERT_TRUE(bounded.ok()) << bounded.status();
  EXPECT_EQ(bounded->size(), 301u);  // the entry that reaches the bound is the last
  auto rest = store_->ReadOutbox(bounded->back().position + 1, 1000);
  EXPECT_EQ(rest->size(), 299u);
  EXPECT_EQ(store_->ReadOutbox(0, 1000, 1)->size(), 1u) << "at least one entry";
}

// A person's export of many large events comes in pages a default gRPC
// client can take, each going on where the last one ended.
TEST_F(EventStoreTest, CustomerEventsComeInPagesWithinTheBudget) {
  constexpr int kEvents = 40;
  for (int i = 0; i < kEvents; ++i) {
    for (const std::string customer : {"cus_ann", "cus_bob", "cus_old"}) {
      auto e = Event(absl::StrCat("Big", i), customer);
      e.mutable_payload()->set_value(std::string(customer == "cus_bob" ? 10 : 100'000, 'x'));
      ASSERT_TRUE(store_->Append(Request(absl::StrCat(customer, "-", i), 0, {e}, "")).ok());
    }
  }
  std::vector<std::string> seen;
  uint64_t after = 0;
  int pages = 0;
  do {
    ReplyBudget budget;
    auto page = store_->ReadCustomerEvents({"cus_ann", "cus_old"}, after, &budget);
    ASSERT_TRUE(page.ok()) << page.status();
    size_t bytes = 0;
    for (const auto& e : page->events) {
      seen.push_back(absl::StrCat(e.customer_id(), "/", e.type()));
      bytes += e.ByteSizeLong();
    }
    EXPECT_LE(bytes, kMaxReplyBytes);
    after = page->resume_after;
    ++pages;
  } while (after != 0 && pages < 10);
  EXPECT_EQ(pages, 3);
  std::vector<std::string> expected;
  for (int i = 0; i < kEvents; ++i) {
    expected.push_back(absl::StrCat("cus_ann/Big", i));
    expected.push_back(absl::StrCat("cus_old/Big", i));
  }
  EXPECT_EQ(seen, expected);
  auto whole = store_->ReadCustomerEvents({"cus_bob"});
  ASSERT_TRUE(whole.ok()) << whole.status();
  EXPECT_EQ(whole->events.size(), static_cast<size_t>(kEvents));
  EXPECT_EQ(whole->resume_after, 0u);
}

TEST_F(EventStoreTest, OutboxKeepsAppendOrderUntilRelayedAndRequeueRefillsIt) {
  ASSERT_TRUE(store_->Append(Request("s-1", 0, {Event("A")}, "")).ok());
  ASSERT_TRUE(store_->Append(Request("s-2", 0, {Event("B")}, "")).ok());
  ASSERT_TRUE(store_->Append(Request("s-1", 1, {Event("C")}, "")).ok());
  auto outbox = store_->ReadOutbox(0, 10);
  ASSERT_EQ(outbox->size(), 3u);
  EXPECT_EQ((*outbox)[0].envelope.type(), "A");
  EXPECT_EQ((*outbox)[1].envelope.type(), "B");
  EXPECT_EQ((*outbox)[2].envelope.type(), "C");

  ASSERT_TRUE(store_->MarkRelayed((*outbox)[1].position + 1).ok());
  EXPECT_EQ(store_->ReadOutbox(0, 10)->size(), 1u);
  EXPECT_EQ(store_->OutboxSize(), 1u);
  // The cursor never goes back, and it survives a reopen.
  ASSERT_TRUE(store_->MarkRelayed((*outbox)[0].position).ok());
  Reopen();
  outbox = store_->ReadOutbox(0, 10);
  ASSERT_EQ(outbox->size(), 1u);
  EXPECT_EQ((*outbox)[0].envelope.type(), "C");
  EXPECT_EQ(store_->OutboxSize(), 1u);

  auto requeued = store_->RequeueLog();
  ASSERT_TRUE(requeued.ok());
  EXPECT_EQ(*requeued, 3u);
  outbox = store_->ReadOutbox(0, 10);
  ASSERT_EQ(outbox->size(), 3u);
  EXPECT_EQ((*outbox)[2].envelope.stream_version(), 2);
}

TEST_F(EventStoreTest, NothingRelayedYetSurvivesReopen) {
  ASSERT_TRUE(store_->Append(Request("s-1", 0, {Event("A")}, "")).ok());
  ASSERT_TRUE(store_->Append(Request("s-2", 0, {Event("B")}, "")).ok());
  Reopen();
  EXPECT_EQ(store_->ReadOutbox(0, 10)->size(), 2u);
  EXPECT_EQ(store_->OutboxSize(), 2u);
}

// A store whose outbox still holds one copy per unrelayed event (the
// format before the cursor) goes on relaying from its first entry.
TEST_F(EventStoreTest, OutboxRowsOfAnOlderStoreBecomeTheCursor) {
  for (int i = 1; i <= 4; ++i) {
    ASSERT_TRUE(store_->Append(Request(absl::StrCat("s-", i), 0, {Event("A")}, "")).ok());
  }
  {
    auto* cf = store_->db().Family("outbox");
    rocksdb::WriteBatch old_format;
    ASSERT_TRUE(old_format.Delete(cf, "relayed").ok());
    for (uint64_t p : {3, 4}) {
      const auto copy = store_->ReadOutbox(p, 1);
      ASSERT_TRUE(old_format.Put(cf, BigEndian64(p), (*copy)[0].bytes).ok());
    }
    ASSERT_TRUE(store_->db().Write(&old_format, /*sync=*/true).ok());
  }
  Reopen();
  auto outbox = store_->ReadOutbox(0, 10);
  ASSERT_EQ(outbox->size(), 2u);
  EXPECT_EQ((*outbox)[0].position, 3u);
  EXPECT_EQ((*outbox)[0].envelope.stream(), "s-3");
  EXPECT_EQ(store_->OutboxSize(), 2u);
  {  // The copies are gone; only the cursor is left.
    auto it = store_->db().NewIterator("outbox");
    int rows = 0;
    for (it->SeekToFirst(); it->Valid(); it->Next()) ++rows;
    EXPECT_EQ(rows, 1);
  }
  Reopen();
  EXPECT_EQ(store_->ReadOutbox(0, 10)->size(), 2u);
}

// A failed append skips its positions and the relay moves past them; after
// a reopen, new events must not be given those positions behind the cursor.
TEST_F(EventStoreTest, AppendsAfterAFailedOneAndAReopenAreRelayed) {
  ASSERT_TRUE(store_->Append(Request("s-1", 0, {Event("A")}, "")).ok());
  store_->db().FailWritesForTest(/*every=*/1, /*times=*/1);
  ASSERT_FALSE(store_->Append(Request("s-2", 0, {Event("B"), Event("C")}, "")).ok());
  ASSERT_TRUE(store_->MarkRelayed(store_->StablePosition()).ok());
  EXPECT_EQ(store_->OutboxSize(), 0u);
  Reopen();
  ASSERT_TRUE(store_->Append(Request("s-3", 0, {Event("D")}, "")).ok());
  auto outbox = store_->ReadOutbox(0, 10);
  ASSERT_TRUE(outbox.ok()) << outbox.status();
  ASSERT_EQ(outbox->size(), 1u);
  EXPECT_EQ((*outbox)[0].envelope.type(), "D");
  EXPECT_EQ(store_->OutboxSize(), 1u);
}

TEST_F(EventStoreTest, ConcurrentWritersOnOneStreamGetExactlyOneWinnerPerVersion) {
  constexpr int kThreads = 8;
  constexpr int kRounds = 20;
  std::atomic<int> wins{0};
  std::atomic<int> conflicts{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kRounds; ++i) {
        auto state = store_->LoadState("opp-1");
        const int64_t v = state.ok() ? state->version : 0;
        auto r = store_->Append(Request("opp-1", v, {Event(absl::StrCat("E", t))}, ""));
        if (r.ok()) {
          ++wins;
        } else {
          ASSERT_EQ(r.status().code(), absl::StatusCode::kAborted) << r.status();
          ++conflicts;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(wins + conflicts, kThreads * kRounds);
  // A writer loses only to a win at the version it read, and each win beats
  // each other writer at most once: every round yields a win.
  EXPECT_GE(wins.load(), kRounds);
  auto events = store_->ReadStream("opp-1");
  ASSERT_EQ(static_cast<int>(events->size()), wins.load());
  for (size_t i = 0; i < events->size(); ++i) {
    EXPECT_EQ((*events)[i].stream_version(), static_cast<int64_t>(i + 1));
  }
}

TEST_F(EventStoreTest, BatchAppendsManyWithOneResultEach) {
  ASSERT_TRUE(store_->Append(Request("s-0", 0, {Event("A")}, "")).ok());
  std::vector<AppendRequest> batch;
  batch.push_back(Request("s-1", 0, {Event("A")}, "s1"));
  batch.push_back(Request("s-0", 0, {Event("B")}, ""));     // conflict: s-0 is at 1
  batch.push_back(Request("s-1", 1, {Event("C")}, "s1b"));  // builds on the first
  auto keyed = Request("s-2", 0, {Event("D")}, "");
  keyed.request_key = "import/1";
  keyed.response = "row-1";
  batch.push_back(keyed);
  auto again = Request("s-3", 0, {Event("D")}, "");
  again.request_key = "import/1";  // the same row twice in one batch
  batch.push_back(again);
  batch.push_back(Request("", 0, {Event("E")}, ""));

  auto results = store_->AppendBatch(std::move(batch));
  ASSERT_TRUE(results.ok()) << results.status();
  ASSERT_EQ(results->size(), 6u);
  EXPECT_TRUE((*results)[0].ok());
  EXPECT_EQ((*results)[1].status().code(), absl::StatusCode::kAborted);
  ASSERT_TRUE((*results)[2].ok());
  EXPECT_EQ((*results)[2]->last_version, 2);
  EXPECT_FALSE((*results)[3]->replayed);
  EXPECT_TRUE((*results)[4]->replayed);
  EXPECT_EQ((*results)[4]->response, "row-1");
  EXPECT_EQ((*results)[5].status().code(), absl::StatusCode::kInvalidArgument);

  EXPECT_EQ(store_->LogSize(), 4u);  // s-0 A, s-1 A, s-1 C, s-2 D
  EXPECT_EQ(store_->LoadState("s-1")->state, "s1b");
  EXPECT_EQ(store_->LoadState("s-3").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->ReadStream("s-0")->size(), 1u);

  // A later batch meets what the first one stored and its own writes.
  std::vector<AppendRequest> later;
  later.push_back(Request("s-1", 2, {Event("F")}, "s1c"));  // stored at 2
  later.push_back(Request("s-1", 3, {Event("G")}, "s1d"));  // builds on the one before
  later.push_back(Request("s-0", 0, {Event("H")}, ""));     // stale: s-0 is at 1
  for (const char* stream : {"s-4", "s-5"}) {
    auto replay = Request(stream, 0, {Event("I")}, "");
    replay.request_key = "import/1";  // stored by the first batch
    later.push_back(replay);
  }
  results = store_->AppendBatch(std::move(later));
  ASSERT_TRUE(results.ok()) << results.status();
  ASSERT_EQ(results->size(), 5u);
  ASSERT_TRUE((*results)[0].ok());
  EXPECT_EQ((*results)[0]->last_version, 3);
  ASSERT_TRUE((*results)[1].ok());
  EXPECT_EQ((*results)[1]->last_version, 4);
  EXPECT_EQ((*results)[2].status().code(), absl::StatusCode::kAborted);
  for (int i : {3, 4}) {
    ASSERT_TRUE((*results)[i].ok());
    EXPECT_TRUE((*results)[i]->replayed);
    EXPECT_EQ((*results)[i]->response, "row-1");
  }
  EXPECT_EQ(store_->LogSize(), 6u);
  EXPECT_EQ(store_->LoadState("s-1")->state, "s1d");
  EXPECT_EQ(store_->LoadState("s-4").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->LoadState("s-5").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(EventStoreTest, AppendAllWritesEveryRequestOrNone) {
  ASSERT_TRUE(store_->Append(Request("s-0", 0, {Event("A")}, "s0")).ok());
  std::vector<AppendRequest> conflicting;
  conflicting.push_back(Request("s-1", 0, {Event("A")}, "s1"));
  conflicting.back().projection_writes.push_back({"contacts", "k-1", "v-1"});
  conflicting.push_back(Request("s-0", 0, {Event("B")}, ""));  // s-0 is at 1
  auto refused = store_->AppendAll(std::move(conflicting));
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kAborted) << refused.status();
  EXPECT_EQ(store_->LoadState("s-1").status().code(), absl::StatusCode::kNotFound);
  EXPECT_FALSE(store_->db().Get("contacts", "k-1")->has_value());
  EXPECT_EQ(store_->LogSize(), 1u);
  EXPECT_EQ(store_->OutboxSize(), 1u);

  std::vector<AppendRequest> fitting;
  fitting.push_back(Request("s-1", 0, {Event("A")}, "s1"));
  fitting.push_back(Request("s-0", 1, {Event("B")}, "s0b"));
  auto written = store_->AppendAll(std::move(fitting));
  ASSERT_TRUE(written.ok()) << written.status();
  ASSERT_EQ(written->size(), 2u);
  EXPECT_EQ((*written)[1].last_version, 2);
  EXPECT_EQ(store_->LoadState("s-0")->state, "s0b");
  EXPECT_EQ(store_->LogSize(), 3u);

  // A request recorded before (same request key) writes its partners
  // neither.
  auto keyed = Request("s-2", 0, {Event("C")}, "");
  keyed.request_key = "merge/1";
  ASSERT_TRUE(store_->Append(keyed).ok());
  std::vector<AppendRequest> replay;
  replay.push_back(Request("s-3", 0, {Event("D")}, ""));
  replay.push_back(keyed);
  EXPECT_EQ(store_->AppendAll(std::move(replay)).status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(store_->LoadState("s-3").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->LogSize(), 4u);
}

TEST_F(EventStoreTest, FullOutboxRefusesAppendsUntilItDrains) {
  store_->SetOutboxLimit(2);
  ASSERT_TRUE(store_->Append(Request("s-1", 0, {Event("A")}, "")).ok());
  ASSERT_TRUE(store_->Append(Request("s-2", 0, {Event("B")}, "")).ok());
  EXPECT_EQ(store_->OutboxSize(), 2u);
  auto refused = store_->Append(Request("s-3", 0, {Event("C")}, ""));
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(store_->LogSize(), 2u);

  // What a service must write at start, before its relay runs, still goes.
  std::vector<AppendRequest> at_start;
  at_start.push_back(Request("s-4", 0, {Event("D")}, ""));
  auto written = store_->AppendBatch(std::move(at_start), EventStore::Admission::kUnlimited);
  ASSERT_TRUE(written.ok()) << written.status();
  EXPECT_TRUE((*written)[0].ok()) << (*written)[0].status();
  EXPECT_EQ(store_->LogSize(), 3u);
  EXPECT_EQ(store_->Append(Request("s-3", 0, {Event("C")}, "")).status().code(),
            absl::StatusCode::kResourceExhausted);
  std::vector<AppendRequest> together;
  together.push_back(Request("s-3", 0, {Event("C")}, ""));
  EXPECT_EQ(store_->AppendAll(std::move(together)).status().code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(store_->LogSize(), 3u);

  auto outbox = store_->ReadOutbox(0, 10);
  ASSERT_TRUE(store_->MarkRelayed((*outbox)[1].position + 1).ok());
  EXPECT_EQ(store_->OutboxSize(), 1u);
  // One event of room: a batch of more is refused whole, not let past the
  // bound by its size.
  std::vector<AppendRequest> batch;
  for (int i = 5; i < 10; ++i) batch.push_back(Request(absl::StrCat("s-", i), 0, {Event("E")}, ""));
  EXPECT_EQ(store_->AppendBatch(std::move(batch)).status().code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(store_->LogSize(), 3u);
  EXPECT_TRUE(store_->Append(Request("s-3", 0, {Event("C")}, "")).ok());
  Reopen();
  EXPECT_EQ(store_->OutboxSize(), 2u);
  // With nothing waiting, any batch goes: one larger than the bound could
  // otherwise never be written.
  store_->SetOutboxLimit(2);
  ASSERT_TRUE(store_->MarkRelayed(store_->LogSize() + 1).ok());
  std::vector<AppendRequest> large;
  for (int i = 5; i < 10; ++i) large.push_back(Request(absl::StrCat("s-", i), 0, {Event("E")}, ""));
  auto written_large = store_->AppendBatch(std::move(large));
  ASSERT_TRUE(written_large.ok()) << written_large.status();
  EXPECT_EQ(store_->LogSize(), 9u);
}

// A full outbox refuses what would append: a retry of a recorded request
// still gets its result, and a stale version its conflict.
TEST_F(EventStoreTest, AFullOutboxStillAnswersRetriesAndVersionConflicts) {
  store_->SetOutboxLimit(1);
  auto keyed = Request("s-1", 0, {Event("A")}, "");
  keyed.request_key = "capture/1";
  ASSERT_TRUE(store_->Append(keyed).ok());
  ASSERT_EQ(store_->BacklogSize(), 1u);
  auto retried = store_->Append(keyed);
  ASSERT_TRUE(retried.ok()) << retried.status();
  EXPECT_TRUE(retried->replayed);
  EXPECT_EQ(store_->Append(Request("s-1", 0, {Event("B")}, "")).status().code(),
            absl::StatusCode::kAborted);
  EXPECT_EQ(store_->Append(Request("s-1", 1, {Event("B")}, "")).status().code(),
            absl::StatusCode::kResourceExhausted);
  // Written together, a retry makes the whole write one: ALREADY_EXISTS.
  std::vector<AppendRequest> together;
  together.push_back(Request("s-2", 0, {Event("C")}, ""));
  together.push_back(keyed);
  EXPECT_EQ(store_->AppendAll(std::move(together)).status().code(),
            absl::StatusCode::kAlreadyExists);
  // A second request building on the first's stream counts too.
  std::vector<AppendRequest> chained;
  chained.push_back(Request("s-1", 1, {Event("D")}, ""));
  chained.push_back(Request("s-1", 2, {Event("E")}, ""));
  EXPECT_EQ(store_->AppendBatch(std::move(chained)).status().code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(store_->LogSize(), 1u);
}

// Refilling an empty broker puts the whole log back in the outbox: that is
// not a backlog, and appends go on (a log past the bound refused them all).
TEST_F(EventStoreTest, ARefillOfTheLogDoesNotCountAgainstTheOutboxBound) {
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(store_->Append(Request(absl::StrCat("s-", i), 0, {Event("A")}, "")).ok());
  }
  ASSERT_TRUE(store_->MarkRelayed(store_->LogSize() + 1).ok());
  store_->SetOutboxLimit(3);
  ASSERT_TRUE(store_->RequeueLog().ok());
  EXPECT_EQ(store_->OutboxSize(), 5u);
  EXPECT_EQ(store_->BacklogSize(), 0u);
  for (int restart = 0; restart < 2; ++restart) {
    const auto st = store_->Append(Request(absl::StrCat("new-", restart), 0, {Event("B")}, ""));
    EXPECT_TRUE(st.ok()) << st.status();
    Reopen();  // the refill is told from a backlog after a restart too
    store_->SetOutboxLimit(3);
  }
  // New events still count: the bound holds for them.
  ASSERT_TRUE(store_->Append(Request("new-2", 0, {Event("B")}, "")).ok());
  EXPECT_EQ(store_->BacklogSize(), 3u);
  EXPECT_EQ(store_->Append(Request("new-3", 0, {Event("B")}, "")).status().code(),
            absl::StatusCode::kResourceExhausted);
  // Relayed past the refill, the mark no longer matters.
  ASSERT_TRUE(store_->MarkRelayed(store_->LogSize() + 1).ok());
  EXPECT_EQ(store_->OutboxSize(), 0u);
  EXPECT_TRUE(store_->Append(Request("new-3", 0, {Event("B")}, "")).ok());
}

TEST_F(EventStoreTest, StablePositionNeverPassesAnAppendStillBeingWritten) {
  // Appends take log positions in one order and commit in another; a
  // reader trusting StablePosition must find every position below it.
  std::atomic<bool> done{false};
  std::vector<std::thread> writers;
  for (int w = 0; w < 6; ++w) {
    writers.emplace_back([&, w] {
      for (int i = 0; i < 150; ++i) {
        auto r = store_->Append(Request(absl::StrCat("s-", w, "-", i), EventStore::kNoStream,
                                        {Event("Tested"), Event("Tested")}, ""));
        EXPECT_TRUE(r.ok()) << r.status();
      }
    });
  }
  int checks = 0;
  std::thread reader([&] {
    while (!done.load()) {
      const uint64_t stable = store_->StablePosition();
      auto outbox = store_->ReadOutbox(1, 100000);
      ASSERT_TRUE(outbox.ok());
      std::vector<bool> present(stable, false);
      for (const auto& e : *outbox) {
        if (e.position < stable) present[e.position] = true;
      }
      for (uint64_t p = 1; p < stable; ++p) ASSERT_TRUE(present[p]) << p << " < " << stable;
      ++checks;
    }
  });
  for (auto& t : writers) t.join();
  done.store(true);
  reader.join();
  EXPECT_GT(checks, 0);
  EXPECT_EQ(store_->StablePosition(), store_->LogSize() + 1);
}

TEST_F(EventStoreTest, AReadOfAPersonsEventsHasEveryAppendAcknowledgedBeforeIt) {
  // Appends commit out of position order: a read that ended at a position
  // still being written said it was complete without later ones acked.
  std::atomic<int> acked{0};
  std::vector<std::thread> writers;
  for (int w = 0; w < 6; ++w) {
    writers.emplace_back([&, w] {
      for (int i = 0; i < 150; ++i) {
        auto r = store_->Append(Request(absl::StrCat("s-", w, "-", i), EventStore::kNoStream,
                                        {Event("T", "cus_x")}, ""));
        EXPECT_TRUE(r.ok()) << r.status();
        acked.fetch_add(1);
      }
    });
  }
  int reads = 0;
  bool failed = false;
  while (!failed && acked.load() < 900) {
    const int before = acked.load();
    auto read = store_->ReadCustomerEvents({"cus_x"});
    // Not ASSERT: the writers must be joined whatever happens here.
    EXPECT_TRUE(read.ok()) << read.status();
    failed = !read.ok();
    if (failed) break;
    EXPECT_EQ(read->resume_after, 0u);
    EXPECT_GE(read->events.size(), static_cast<size_t>(before)) << "read " << reads;
    failed = read->resume_after != 0 || read->events.size() < static_cast<size_t>(before);
    ++reads;
  }
  for (auto& t : writers) t.join();
  EXPECT_GT(reads, 0);
}

TEST_F(EventStoreTest, AnAppendToAStreamWithADamagedStateRowIsDataLoss) {
  rocksdb::WriteBatch damage;
  damage.Put(store_->db().Family(EventStore::kStateFamily), "s-damaged", "abc");
  ASSERT_TRUE(store_->db().Write(&damage, /*sync=*/false).ok());
  EXPECT_EQ(store_->Append(Request("s-damaged", 0, {Event("A")}, "")).status().code(),
            absl::StatusCode::kDataLoss);
  EXPECT_TRUE(store_->Append(Request("s-whole", 0, {Event("A")}, "")).ok());

  // In a batch (an import chunk), only the damaged stream's request fails.
  std::vector<AppendRequest> batch;
  batch.push_back(Request("s-damaged", 0, {Event("B")}, ""));
  batch.push_back(Request("s-new", 0, {Event("C")}, ""));
  auto results = store_->AppendBatch(std::move(batch));
  ASSERT_TRUE(results.ok()) << results.status();
  ASSERT_EQ(results->size(), 2u);
  EXPECT_EQ((*results)[0].status().code(), absl::StatusCode::kDataLoss);
  EXPECT_TRUE((*results)[1].ok()) << (*results)[1].status();
  EXPECT_EQ(store_->ReadStream("s-new")->size(), 1u);
}

TEST_F(EventStoreTest, RejectsAppendWithoutStream) {
  EXPECT_EQ(store_->Append(Request("", 0, {Event("A")}, "")).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace crm
