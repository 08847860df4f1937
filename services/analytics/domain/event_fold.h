#pragma once

// What every analytics fold needs to stay independent of delivery order.
#include <memory>
#include <string>

#include "crm/v1/analytics.pb.h"
#include "crm/v1/envelope.pb.h"
#include "google/protobuf/arena.h"
#include "google/protobuf/message.h"
#include "google/protobuf/util/time_util.h"  // Timestamp comparison operators

namespace crm::analytics {

// An event's payload, decoded once for all the folds that look at it (the
// 360 view, the funnel, the ticket KPIs) rather than once per fold.
class Payload {
 public:
  enum class Decoded { kYes, kUnknownType, kUnparsable };

  // Decodes on `arena` if given. A type this binary does not know, or bytes
  // that do not parse, leave it empty: every fold then treats the event as
  // one it does not know.
  explicit Payload(const crm::v1::EventEnvelope& event, google::protobuf::Arena* arena = nullptr);

  Decoded decoded() const { return decoded_; }

  // The payload as T, null when it holds another type. Compares default
  // instances: GetDescriptor() runs a once-check per call, and a fold asks
  // for up to twenty types.
  template <typename T>
  const T* As() const {
    return message_ != nullptr && prototype_ == &T::default_instance()
               ? static_cast<const T*>(message_)
               : nullptr;
  }

 private:
  std::unique_ptr<google::protobuf::Message> owned_;  // when not on an arena
  const google::protobuf::Message* message_ = nullptr;
  // The generated default instance of the decoded type.
  const google::protobuf::Message* prototype_ = nullptr;
  Decoded decoded_ = Decoded::kUnknownType;
};

// How many payload type names this thread remembers (their prototypes,
// or that this binary has none); bounded whatever the topics carry.
size_t CachedPayloadTypes();

// Whether a value taken at `at` from event `event_id` (from the sales
// account, or not) outranks the one stamped `b`: any value outranks none, a
// lead's value outranks the account's (customer_view.cc), then the later
// time wins and ties go to the larger event id, so every delivery order
// ends in the same value.
inline bool OutranksStamp(const google::protobuf::Timestamp& at, const std::string& event_id,
                          bool from_account, const crm::v1::AsOf& b) {
  if (!b.has_at()) return true;
  if (from_account != b.from_account()) return b.from_account();
  if (at != b.at()) return b.at() < at;
  return event_id > b.event_id();
}

// The stamp of a value taken from `event`.
inline crm::v1::AsOf StampOf(const crm::v1::EventEnvelope& event, bool from_account = false) {
  crm::v1::AsOf stamp;
  *stamp.mutable_at() = event.occurred_at();
  stamp.set_event_id(event.event_id());
  stamp.set_from_account(from_account);
  return stamp;
}

// Last writer wins by event time: true (and `as_of` moves to the event)
// when the event's value outranks the one stamped `as_of`.
inline bool TakeIfNewer(crm::v1::AsOf* as_of, const crm::v1::EventEnvelope& event) {
  if (!OutranksStamp(event.occurred_at(), event.event_id(), false, *as_of)) return false;
  *as_of = StampOf(event);
  return true;
}

}  // namespace crm::analytics
