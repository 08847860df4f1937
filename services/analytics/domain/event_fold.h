#pragma once

// What every analytics fold needs to stay independent of delivery order.
#include <memory>

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
  // Decodes on `arena` if given. A type this binary does not know, or bytes
  // that do not parse, leave it empty: every fold then treats the event as
  // one it does not know.
  explicit Payload(const crm::v1::EventEnvelope& event, google::protobuf::Arena* arena = nullptr);

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
};

// Last writer wins by event time: true (and `as_of` moves to the event)
// when the event is later than the one the value was taken from; ties go
// to the larger event id, so every delivery order ends in the same value.
inline bool TakeIfNewer(crm::v1::AsOf* as_of, const crm::v1::EventEnvelope& event) {
  // A value taken from the account yields to any other (customer_view.cc).
  if (as_of->has_at() && !as_of->from_account()) {
    if (event.occurred_at() < as_of->at()) return false;
    if (event.occurred_at() == as_of->at() && event.event_id() <= as_of->event_id()) return false;
  }
  *as_of->mutable_at() = event.occurred_at();
  as_of->set_event_id(event.event_id());
  as_of->clear_from_account();
  return true;
}

}  // namespace crm::analytics
