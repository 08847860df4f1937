#pragma once

#include <utility>

#include "absl/status/statusor.h"
#include "grpcpp/grpcpp.h"
#include "libs/common/auth/auth_interceptor.h"
#include "libs/common/blocking_executor.h"
#include "libs/common/grpc_status.h"
#include "libs/common/pii/field_sealer.h"

namespace crm {

// RunUnary for a call the auth interceptor judged, `body(caller)` given
// the caller. A refused caller is answered at once on the gRPC thread: calls
// without a valid token never take a place in the executor's bounded queue,
// so a flood of them cannot turn callers with one away as "server busy".
template <typename Body>
grpc::ServerUnaryReactor* RunAsCaller(grpc::CallbackServerContext* ctx, BlockingExecutor& executor,
                                      Body body) {
  absl::StatusOr<auth::Principal> caller = auth::CallerFrom(*ctx);
  if (!caller.ok()) {
    auto* reactor = ctx->DefaultReactor();
    reactor->Finish(ToGrpcStatus(caller.status()));
    return reactor;
  }
  return RunUnary(ctx, executor,
                  [caller = *std::move(caller), body = std::move(body)]() mutable -> absl::Status {
                    return body(caller);
                  });
}

// Runs `fn(request, caller)` on the executor and finishes the call with the
// response it returns. Nothing runs for a caller the auth interceptor
// refused, nor for a request carrying a sealed-looking value
// (pii::RefuseSealedInput).
template <typename Request, typename Response, typename Fn>
grpc::ServerUnaryReactor* ServeUnary(grpc::CallbackServerContext* ctx, BlockingExecutor& executor,
                                     const Request* request, Response* response, Fn fn) {
  return RunAsCaller(
      ctx, executor,
      [request, response, fn = std::move(fn)](const auth::Principal& caller) -> absl::Status {
        if (auto st = pii::RefuseSealedInput(*request); !st.ok()) return st;
        absl::StatusOr<Response> result = fn(*request, caller);
        if (!result.ok()) return result.status();
        *response = *std::move(result);
        return absl::OkStatus();
      });
}

}  // namespace crm
