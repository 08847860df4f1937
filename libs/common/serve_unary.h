#pragma once

#include <utility>

#include "absl/status/statusor.h"
#include "grpcpp/grpcpp.h"
#include "libs/common/auth/auth_interceptor.h"
#include "libs/common/blocking_executor.h"
#include "libs/common/pii/field_sealer.h"

namespace crm {

// Runs `fn(request, caller)` on the executor and finishes the call with the
// response it returns. Nothing runs for a caller the auth interceptor
// refused, nor for a request carrying a sealed-looking value
// (pii::RefuseSealedInput).
template <typename Request, typename Response, typename Fn>
grpc::ServerUnaryReactor* ServeUnary(grpc::CallbackServerContext* ctx, BlockingExecutor& executor,
                                     const Request* request, Response* response, Fn fn) {
  return RunUnary(
      ctx, executor,
      [request, response, fn = std::move(fn), caller = auth::CallerFrom(*ctx)]() -> absl::Status {
        if (!caller.ok()) return caller.status();
        if (auto st = pii::RefuseSealedInput(*request); !st.ok()) return st;
        absl::StatusOr<Response> result = fn(*request, *caller);
        if (!result.ok()) return result.status();
        *response = *std::move(result);
        return absl::OkStatus();
      });
}

}  // namespace crm
