// The consume path on arbitrary messages: a batch of up to eight messages
// (length-prefixed parts after a first byte that picks their topics) goes
// through Subscriber::ApplyBatch into the analytics projection, the
// consumer of every topic, and each decodable envelope through the leads
// service's payload decoder. Beyond not crashing: no message, however
// malformed, fails the batch (a failed batch is retried forever and stops
// the consumer), undecodable ones are dead-lettered, and delivering the
// same batch again applies nothing (duplicates are skipped).
#include <cstddef>
#include <cstdint>
#include <vector>

#include "crm/v1/envelope.pb.h"
#include "fuzz/analytics_fixture.h"
#include "fuzz/fuzz_input.h"
#include "libs/common/kafka.h"
#include "services/leads/domain/lead.h"

namespace crm::fuzz {
namespace {

AnalyticsFixture& Fixture() {
  static AnalyticsFixture fixture(/*seed=*/false);
  return fixture;
}

const char* TopicOf(uint8_t selector, size_t index) {
  static const char* const kTopics[] = {kLeadsTopic, kSalesTopic, kServiceDeskTopic,
                                        kAnalyticsTopic};
  return kTopics[(selector >> (2 * (index % 4))) & 3];
}

}  // namespace
}  // namespace crm::fuzz

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  crm::fuzz::Fixture();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace crm;  // NOLINT: short names for the fuzz helpers
  const auto [selector, payload] = fuzz::Choose(data, size);
  auto& fixture = fuzz::Fixture();
  std::vector<ConsumedMessage> batch;
  size_t undecodable = 0;
  for (auto& part : fuzz::SplitParts(payload, 8)) {
    v1::EventEnvelope envelope;
    if (envelope.ParseFromString(part) && !envelope.stream().empty() &&
        envelope.stream_version() > 0) {
      leads::UnpackLeadEvent(envelope);
    } else {
      ++undecodable;
    }
    batch.push_back(fixture.Message(fuzz::TopicOf(selector, batch.size()), std::move(part)));
  }
  if (batch.empty()) return 0;

  const size_t dead_before = fixture.dead_letters();
  absl::Status st = fixture.subscriber().ApplyBatch(batch);
  fuzz::Check(st.ok(), "a consumed batch fails (the consumer would retry it forever)",
              st.ToString());
  fuzz::Check(fixture.dead_letters() - dead_before >= undecodable,
              "an undecodable message is not dead-lettered");

  // Redelivery, as after a crash before the offsets were stored.
  const uint64_t applied_before = fixture.subscriber().applied();
  st = fixture.subscriber().ApplyBatch(batch);
  fuzz::Check(st.ok(), "a redelivered batch fails", st.ToString());
  fuzz::Check(fixture.subscriber().applied() == applied_before,
              "a redelivered event is applied twice");
  return 0;
}
