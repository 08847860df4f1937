// The consume path on arbitrary messages: a batch of up to 16 messages
// (length-prefixed parts after a first byte that picks their topics) goes
// through Subscriber::ApplyBatch into every consumer of the shared topics
// (the analytics projection, the service desk's customer projection, the
// sales reactions, a key reader's vault), and each decodable envelope
// through the leads service's payload decoder. Beyond not crashing: no
// message, however malformed, fails a batch (a failed batch is retried
// forever and stops the consumer), undecodable ones are dead-lettered, and
// delivering the same batch again applies nothing (duplicates are skipped).
#include <cstddef>
#include <cstdint>
#include <vector>

#include "absl/strings/str_cat.h"
#include "crm/v1/envelope.pb.h"
#include "fuzz/analytics_fixture.h"
#include "fuzz/consumers.h"
#include "fuzz/fuzz_input.h"
#include "libs/common/kafka.h"
#include "services/leads/domain/lead.h"

namespace crm::fuzz {
namespace {

AnalyticsFixture& Fixture() {
  static AnalyticsFixture fixture(/*seed=*/false);
  return fixture;
}

DeskConsumer& Desk() {
  static DeskConsumer desk;
  return desk;
}

SalesConsumer& Sales() {
  static SalesConsumer sales;
  return sales;
}

KeyConsumer& Keys() {
  static KeyConsumer keys;
  return keys;
}

// Applies `batch` to `consumer` twice, as after a crash before the offsets
// were stored, and checks what every consumer must hold to. Failure
// messages are built only on failure: this runs for every input.
void CheckConsumes(absl::string_view name, CountingConsumer& consumer,
                   const std::vector<ConsumedMessage>& batch, size_t undecodable) {
  Subscriber& subscriber = consumer.subscriber();
  const size_t dead_before = consumer.dead_letters();
  absl::Status st = subscriber.ApplyBatch(batch);
  if (!st.ok()) {
    Fail(absl::StrCat(name, ": a consumed batch fails (retried forever)"), st.ToString());
  }
  if (consumer.dead_letters() - dead_before < undecodable) {
    Fail(absl::StrCat(name, ": an undecodable message is not dead-lettered"));
  }
  const uint64_t applied_before = subscriber.applied();
  st = subscriber.ApplyBatch(batch);
  if (!st.ok()) {
    Fail(absl::StrCat(name, ": a redelivered batch fails"), st.ToString());
  }
  if (subscriber.applied() != applied_before) {
    Fail(absl::StrCat(name, ": a redelivered event is applied twice"));
  }
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
  crm::fuzz::Desk();
  crm::fuzz::Sales();
  crm::fuzz::Keys();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace crm;  // NOLINT: short names for the fuzz helpers
  const auto [selector, payload] = fuzz::Choose(data, size);
  auto& fixture = fuzz::Fixture();
  std::vector<ConsumedMessage> batch;
  size_t undecodable = 0;
  for (auto& part : fuzz::SplitParts(payload, 16)) {
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

  fuzz::CheckConsumes("analytics", fixture, batch, undecodable);
  fuzz::CheckConsumes("service desk", fuzz::Desk(), batch, undecodable);
  fuzz::CheckConsumes("sales", fuzz::Sales(), batch, undecodable);
  fuzz::CheckConsumes("keys", fuzz::Keys(), batch, undecodable);
  return 0;
}
