#include "libs/common/envelope.h"

#include <memory>

#include "absl/time/time.h"
#include "crm/v1/envelope.pb.h"
#include "crm/v1/leads.pb.h"
#include "gtest/gtest.h"
#include "libs/common/ids.h"
#include "libs/common/kafka.h"

namespace crm {
namespace {

crm::v1::EventEnvelope SampleEnvelope() {
  crm::v1::EventEnvelope e;
  e.set_event_id(NewId("evt"));
  e.set_stream("lead-01ABC");
  e.set_stream_version(3);
  e.set_customer_id("cus_42");
  e.set_type("LeadCaptured");
  *e.mutable_occurred_at() = ToProtoTimestamp(absl::FromUnixMicros(1700000000123456));
  *e.mutable_recorded_at() = ToProtoTimestamp(absl::FromUnixMicros(1700000000200000));
  e.set_actor("user:alice");
  e.set_correlation_id("corr-1");
  e.set_causation_id("cause-1");
  e.set_source("crm/leads");
  crm::v1::LeadCaptured payload;
  payload.set_lead_id("lead_1");
  payload.mutable_contact()->set_email("a@example.com");
  e.mutable_payload()->PackFrom(payload);
  return e;
}

TEST(EnvelopeTest, RoundTripKeepsEveryFieldAndThePayload) {
  const auto e = SampleEnvelope();
  crm::v1::EventEnvelope back;
  ASSERT_TRUE(back.ParseFromString(e.SerializeAsString()));
  EXPECT_EQ(back.event_id(), e.event_id());
  EXPECT_EQ(back.stream(), "lead-01ABC");
  EXPECT_EQ(back.stream_version(), 3);
  EXPECT_EQ(back.customer_id(), "cus_42");
  EXPECT_EQ(back.type(), "LeadCaptured");
  EXPECT_EQ(back.occurred_at().nanos(), 123456000);
  EXPECT_EQ(back.actor(), "user:alice");
  EXPECT_EQ(back.correlation_id(), "corr-1");
  EXPECT_EQ(back.causation_id(), "cause-1");
  crm::v1::LeadCaptured payload;
  ASSERT_TRUE(back.payload().UnpackTo(&payload));
  EXPECT_EQ(payload.contact().email(), "a@example.com");
  EXPECT_FALSE(back.payload().Is<crm::v1::Lead>());
}

// Stamps compare as envelopes keep them (microseconds): a time later by
// less than that is not later once stored.
TEST(EnvelopeTest, StampedAfterIsLaterAsStored) {
  const absl::Time last = absl::FromUnixMicros(1'700'000'000'000'000);
  EXPECT_EQ(StampedAfter(last + absl::Seconds(1), last), last + absl::Seconds(1));
  for (const absl::Duration at :
       {absl::Seconds(-5), absl::ZeroDuration(), absl::Nanoseconds(500)}) {
    const absl::Time stamped = StampedAfter(last + at, last);
    EXPECT_EQ(stamped, last + absl::Microseconds(1)) << at;
    crm::v1::EventEnvelope e =
        MakeEnvelope(crm::v1::EventEnvelope(), "cus_1", {"", "", "", "", stamped});
    EXPECT_GT(FromProtoTimestamp(e.occurred_at()), last) << at;
  }
}

TEST(EnvelopeTest, CloudEventHeadersFollowTheKafkaBinding) {
  const auto e = SampleEnvelope();
  auto headers = CloudEventHeaders(e, e.customer_id());
  auto get = [](const std::string& k, const std::unique_ptr<RdKafka::Headers>& headers) {
    auto h = headers->get_last(k);
    return std::string(static_cast<const char*>(h.value()), h.value_size());
  };
  EXPECT_EQ(get("ce_specversion", headers), "1.0");
  EXPECT_EQ(get("ce_id", headers), e.event_id());
  EXPECT_EQ(get("ce_type", headers), "crm.v1.LeadCaptured");
  EXPECT_EQ(get("ce_source", headers), "crm/leads");
  EXPECT_EQ(get("ce_time", headers), "2023-11-14T22:13:20.123456Z");
  EXPECT_EQ(get("ce_partitionkey", headers), e.customer_id());
  EXPECT_EQ(get("ce_partitionkey", CloudEventHeaders(e, "pii-key-k1")), "pii-key-k1");
  EXPECT_EQ(get("content-type", headers).rfind("application/protobuf", 0), 0u);
}

TEST(IdsTest, IdsAreUniqueSortableAndPrefixed) {
  std::string prev = NewId("lead");
  EXPECT_EQ(prev.size(), 5u + 26u);
  EXPECT_EQ(prev.rfind("lead_", 0), 0u);
  for (int i = 0; i < 1000; ++i) {
    std::string next = NewId("lead");
    EXPECT_NE(next, prev);
    prev = next;
  }
  const std::string early = NewId("x");
  absl::SleepFor(absl::Milliseconds(2));
  EXPECT_LT(early, NewId("x"));
}

TEST(IdsTest, IdStartsWithItsCreationTimeInMilliseconds) {
  const int64_t before = absl::ToUnixMillis(absl::Now());
  const std::string id = NewId("cus");
  const int64_t after = absl::ToUnixMillis(absl::Now());
  // Crockford base32, the first ten characters: two zero bits, then the
  // 48-bit time.
  const std::string digits = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
  int64_t ms = 0;
  for (char c : id.substr(4, 10)) {
    const size_t d = digits.find(c);
    ASSERT_NE(d, std::string::npos) << id;
    ms = ms * 32 + static_cast<int64_t>(d);
  }
  EXPECT_GE(ms, before) << id;
  EXPECT_LE(ms, after) << id;
  // The rest is random: two ids made in the same millisecond differ there.
  EXPECT_NE(NewId("cus").substr(14), NewId("cus").substr(14));
}

TEST(IdsTest, EncodingPutsTimeThenRandomBitsMostSignificantFirst) {
  struct Case {
    uint64_t ms, hi, lo;
    const char* id;
  };
  const Case cases[] = {
      {0, 0, 0, "x_00000000000000000000000000"},
      {0xFFFFFFFFFFFF, ~uint64_t{0}, 0xFFFF, "x_7ZZZZZZZZZZZZZZZZZZZZZZZZZ"},
      {1700000000123, 0x0123456789ABCDEF, 0xBEEF, "x_01HF7YAT3V04HMASW9NF6YZFQF"},
      {1, 0, 0, "x_00000000010000000000000000"},
      {0, uint64_t{1} << 63, 0, "x_0000000000G000000000000000"},
      {0, 1, 0, "x_00000000000000000000002000"},
      {0, 0, 1, "x_00000000000000000000000001"},
      // Bits outside the 48 time bits and the 16 low bits are not used.
      {0xFFFF000000000000, 0, 0xFFFF0000, "x_00000000000000000000000000"},
  };
  for (const auto& c : cases) EXPECT_EQ(EncodeId("x", c.ms, c.hi, c.lo), c.id);
}

// A reaction's id: the same for the same event and seed, another for
// another seed, and dated at the event, so it sorts with ids of its time.
TEST(IdsTest, AnIdFromAnEventIsTheSameEachTimeAndDatedAtTheEvent) {
  const absl::Time at = absl::FromUnixMillis(1700000000123);
  const std::string id = IdFromEvent("opp", at, "OpenOpportunityFromLead/evt-1");
  EXPECT_EQ(id, IdFromEvent("opp", at, "OpenOpportunityFromLead/evt-1"));
  EXPECT_NE(id, IdFromEvent("opp", at, "OpenOpportunityFromLead/evt-2"));
  EXPECT_EQ(id.substr(0, 14), EncodeId("opp", 1700000000123, 0, 0).substr(0, 14));
  EXPECT_NE(id.substr(14), EncodeId("opp", 1700000000123, 0, 0).substr(14));
  EXPECT_EQ(id.size(), NewId("opp").size());
}

TEST(IdsTest, Rfc3339IsUtcWithMicrosecondsForAnyTime) {
  EXPECT_EQ(FormatRfc3339(absl::UnixEpoch()), "1970-01-01T00:00:00.000000Z");
  EXPECT_EQ(FormatRfc3339(absl::FromUnixMicros(1700000000123456)), "2023-11-14T22:13:20.123456Z");
  // Before the epoch the fraction still counts up from the second before.
  EXPECT_EQ(FormatRfc3339(absl::FromUnixMicros(-1)), "1969-12-31T23:59:59.999999Z");
  EXPECT_EQ(FormatRfc3339(absl::FromUnixSeconds(253402300799)), "9999-12-31T23:59:59.000000Z");
  EXPECT_EQ(FormatRfc3339(absl::FromUnixSeconds(253402300800)), "10000-01-01T00:00:00.000000Z");
  EXPECT_EQ(FormatRfc3339(absl::InfiniteFuture()), "infinite-future");
}

}  // namespace
// Before 1970 too a Timestamp's nanos lie in [0, 1e9): JSON printers and
// strict consumers refuse others.
TEST(TimestampTest, TimesBefore1970KeepTheirNanosPositive) {
  const auto ts = ToProtoTimestamp(absl::FromUnixMicros(-500'000));
  EXPECT_EQ(ts.seconds(), -1);
  EXPECT_EQ(ts.nanos(), 500'000'000);
  EXPECT_TRUE(IsValidProtoTimestamp(ts));
  EXPECT_EQ(FromProtoTimestamp(ts), absl::FromUnixMicros(-500'000));
  const auto whole = ToProtoTimestamp(absl::FromUnixSeconds(-3));
  EXPECT_EQ(whole.seconds(), -3);
  EXPECT_EQ(whole.nanos(), 0);
  const auto after = ToProtoTimestamp(absl::FromUnixMicros(1'700'000'000'123'456));
  EXPECT_EQ(after.seconds(), 1'700'000'000);
  EXPECT_EQ(after.nanos(), 123'456'000);
}

}  // namespace crm
