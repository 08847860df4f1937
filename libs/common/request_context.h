#pragma once

#include <string>

#include "absl/time/clock.h"
#include "grpcpp/grpcpp.h"
#include "libs/common/envelope.h"

namespace crm {

// Event context of a call: actor and correlation id from metadata
// (x-crm-actor, x-correlation-id), the time of the call as occurred_at.
inline EventContext EventContextFrom(const grpc::ServerContextBase& ctx, std::string source) {
  EventContext e;
  e.source = std::move(source);
  e.occurred_at = absl::Now();
  const auto& md = ctx.client_metadata();
  auto get = [&](const char* key) {
    auto it = md.find(key);
    return it == md.end() ? std::string() : std::string(it->second.data(), it->second.size());
  };
  e.actor = get("x-crm-actor");
  if (e.actor.empty()) e.actor = "anonymous";
  e.correlation_id = get("x-correlation-id");
  return e;
}

}  // namespace crm
