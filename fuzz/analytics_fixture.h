#pragma once

// The analytics projection on a RocksDB of its own, in a temp dir that
// lives as long as the fuzz process: events go in through the subscriber's
// ApplyBatch, the decode path of every consumed message, and the views are
// read back through the ViewStore the gRPC API answers from.
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "fuzz/fuzz_input.h"
#include "libs/common/database.h"
#include "libs/common/kafka.h"
#include "libs/common/subscriber.h"
#include "libs/common/testing/temp_dir.h"
#include "services/analytics/store/view_store.h"
#include "services/analytics/testing/events.h"

namespace crm::fuzz {

class AnalyticsFixture final : public CountingConsumer {
 public:
  // `seed`: starts with the customers Seed() writes.
  explicit AnalyticsFixture(bool seed)
      : db_(OpenOrFail(Database::Open(dir_.Sub("analytics"), analytics::ViewFamilies()),
                       "cannot open the analytics database")),
        subscriber_(*db_, projection_, Options()),
        views_(*db_) {
    if (seed) Seed();
  }

  Subscriber& subscriber() override { return subscriber_; }
  const analytics::ViewStore& views() const { return views_; }

  // A consumed message as the consume loop hands it over, with the next
  // offset of its partition.
  ConsumedMessage Message(const std::string& topic, std::string value) {
    return {topic, 0, next_offset_++, std::move(value)};
  }

  // Customers the seed corpus names: cus_fuzz_a has a timeline longer than
  // one page (all captured by rep_ada, whose audit trail is as long),
  // cus_fuzz_b a lead, an order and a ticket.
  void Seed() {
    namespace t = analytics::testing;
    std::vector<ConsumedMessage> batch;
    for (int i = 0; i < 120; ++i) {
      crm::v1::EventEnvelope lead =
          t::LeadCapturedAt("cus_fuzz_a", absl::StrCat("a", i), i % 100, 1'700'000'000 + i * 3600);
      lead.set_actor("rep_ada");  // an audit trail longer than one page
      batch.push_back(Message(kLeadsTopic, lead.SerializeAsString()));
    }
    batch.push_back(Message(
        kLeadsTopic, t::LeadCapturedAt("cus_fuzz_b", "b1", 40, 1'700'000'000).SerializeAsString()));
    batch.push_back(Message(
        kSalesTopic,
        t::OrderPlacedAt("cus_fuzz_b", "o1", 1'500'000, 1'700'100'000).SerializeAsString()));
    batch.push_back(
        Message(kServiceDeskTopic,
                t::TicketOpenedAt("cus_fuzz_b", "t1", 1'700'200'000).SerializeAsString()));
    const absl::Status st = subscriber_.ApplyBatch(batch);
    Check(st.ok(), "seeding the analytics views failed", st.ToString());
  }

 private:
  std::unique_ptr<Database> db_;
  analytics::Customer360Projection projection_;
  Subscriber subscriber_;
  analytics::ViewStore views_;
  int64_t next_offset_ = 0;
};

}  // namespace crm::fuzz
