#pragma once

#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "crm/v1/envelope.pb.h"
#include "google/protobuf/message.h"
#include "google/protobuf/timestamp.pb.h"

namespace crm {

// Who and what caused an event; carried into every envelope it produces.
struct EventContext {
  std::string source;  // emitting service, "crm/leads"
  std::string actor;
  std::string correlation_id;
  std::string causation_id;
  absl::Time occurred_at;
};

// A new envelope for `payload`; stream, stream_version and recorded_at are
// set by the event store on append. The type is the payload's message name.
crm::v1::EventEnvelope MakeEnvelope(const google::protobuf::Message& payload,
                                    const std::string& customer_id, const EventContext& ctx);

// Whether `bytes` decode into `into` as an event: an envelope with a
// stream, a version and a valid occurred_at. Empty or foreign bytes often parse as a protobuf
// message (an empty buffer is a valid empty one), so parsing alone is no
// test; subscribers park what fails this.
bool DecodeEvent(absl::string_view bytes, crm::v1::EventEnvelope& into);

// A call is stamped when it arrives and may be decided after a later one
// on the same record. Its events follow that one's, so they are stamped
// after them: consumers keep a record's latest value by time, not by
// version. Returns `at`, or `last` (the record's latest event time) plus a
// microsecond when `at`, as an envelope keeps it, is not later.
absl::Time StampedAfter(absl::Time at, absl::Time last);
// The same after a record's stored time (an updated_at or occurred_at).
absl::Time StampedAfter(absl::Time at, const google::protobuf::Timestamp& last);

// The idempotency key of a command, scoped to its caller: the same
// request_id from two callers is two requests, and a caller cannot read
// another caller's stored result by guessing its request_id. The actor is
// length-prefixed, so no actor/key pair can spell another's.
inline std::string CallerRequestKey(const EventContext& ctx, absl::string_view key) {
  return absl::StrCat(ctx.actor.size(), ":", ctx.actor, "/", key);
}

// The same, followed by a fingerprint of the request (a digest of its
// deterministic encoding): a retry sends the same request and gets the
// first result, while a different request under a used request_id is
// refused (EventStore keeps results under the key without the fingerprint,
// see SplitRequestKey) instead of answered with another request's result
// and silently dropped.
std::string CallerRequestKey(const EventContext& ctx, absl::string_view key,
                             const google::protobuf::Message& request);

// That fingerprint alone: 32 hex digits of a SHA-256 of the message's
// deterministic encoding (map entries sorted).
std::string RequestFingerprint(const google::protobuf::Message& request);

struct RequestKeyParts {
  absl::string_view key;          // what results are stored under
  absl::string_view fingerprint;  // empty when the key has none
};
RequestKeyParts SplitRequestKey(absl::string_view request_key);

}  // namespace crm
