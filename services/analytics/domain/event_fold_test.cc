#include "services/analytics/domain/event_fold.h"

#include <gtest/gtest.h>

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

}  // namespace
}  // namespace crm::analytics
