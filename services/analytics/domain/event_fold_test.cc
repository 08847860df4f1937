#include "services/analytics/domain/event_fold.h"

#include <gtest/gtest.h>

#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "crm/v1/leads.pb.h"
#include "google/protobuf/arena.h"
#include "services/analytics/testing/events.h"

namespace crm::analytics {
namespace {

using testing::LeadCapturedAt;

TEST(PayloadTest, DecodesTheTypeTheEnvelopeNamesOnceAndOnlyAsThatType) {
  const auto event = LeadCapturedAt("cus_1", "lead_1", 40, 1000);
  google::protobuf::Arena arena;
  for (const Payload& payload : {Payload(event), Payload(event, &arena)}) {
    const auto* lead = payload.As<crm::v1::LeadCaptured>();
    ASSERT_NE(lead, nullptr);
    EXPECT_EQ(lead->lead_id(), "lead_1");
    EXPECT_EQ(lead->score().total(), 40);
    EXPECT_EQ(payload.As<crm::v1::LeadAssigned>(), nullptr);
  }
}

TEST(PayloadTest, UnknownTypesAndBadBytesLeaveItEmpty) {
  auto event = LeadCapturedAt("cus_1", "lead_1", 40, 1000);
  // A type no service of this binary defines, e.g. from a newer producer.
  event.mutable_payload()->set_type_url("type.googleapis.com/crm.v9.Unheard");
  EXPECT_EQ(Payload(event).As<crm::v1::LeadCaptured>(), nullptr);
  // Any::Is needs the slash before the name: a bare name is not a type URL.
  event.mutable_payload()->set_type_url("crm.v1.LeadCaptured");
  EXPECT_EQ(Payload(event).As<crm::v1::LeadCaptured>(), nullptr);
  // The right type with bytes that do not parse as it.
  event.mutable_payload()->set_type_url("type.googleapis.com/crm.v1.LeadCaptured");
  event.mutable_payload()->set_value("\xff\xff\xff");
  EXPECT_EQ(Payload(event).As<crm::v1::LeadCaptured>(), nullptr);
}

// Any producer may write to the topics: type URLs it makes up, each new,
// must not grow the decoder's memory without bound, whether they name a
// known type under another prefix, an unknown one, or a huge one.
TEST(PayloadTest, MadeUpTypeUrlsDoNotGrowTheCache) {
  auto event = LeadCapturedAt("cus_1", "lead_1", 40, 1000);
  std::thread([&] {  // a fresh thread: a cache of its own
    for (int i = 0; i < 5000; ++i) {
      event.mutable_payload()->set_type_url(absl::StrCat("junk-", i, "/crm.v1.LeadCaptured"));
      ASSERT_NE(Payload(event).As<crm::v1::LeadCaptured>(), nullptr) << "still decoded";
      event.mutable_payload()->set_type_url(absl::StrCat("type.googleapis.com/crm.v9.Made", i));
      EXPECT_EQ(Payload(event).decoded(), Payload::Decoded::kUnknownType);
      event.mutable_payload()->set_type_url(
          absl::StrCat("type.googleapis.com/", std::string(100'000, 'x'), i));
      EXPECT_EQ(Payload(event).decoded(), Payload::Decoded::kUnknownType);
    }
    EXPECT_LE(CachedPayloadTypes(), 1025u);
  })
      .join();
}

}  // namespace
}  // namespace crm::analytics
