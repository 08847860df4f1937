#include "libs/common/envelope.h"

#include "libs/common/ids.h"

namespace crm {

crm::v1::EventEnvelope MakeEnvelope(const google::protobuf::Message& payload,
                                    const std::string& customer_id, const EventContext& ctx) {
  crm::v1::EventEnvelope e;
  e.set_event_id(NewId("evt"));
  e.set_customer_id(customer_id);
  e.set_type(payload.GetDescriptor()->name());
  *e.mutable_occurred_at() = ToProtoTimestamp(ctx.occurred_at);
  e.set_actor(ctx.actor);
  e.set_correlation_id(ctx.correlation_id);
  e.set_causation_id(ctx.causation_id);
  e.set_source(ctx.source);
  e.mutable_payload()->PackFrom(payload);
  return e;
}

}  // namespace crm
