#include "libs/common/grpc_status.h"

#include "absl/strings/str_cat.h"
#include "libs/common/ids.h"
#include "libs/common/log.h"
#include "libs/common/service_detail.h"

namespace crm {

grpc::Status ToGrpcStatus(const absl::Status& s) {
  if (s.ok()) return grpc::Status::OK;
  const auto code = static_cast<grpc::StatusCode>(s.code());
  const bool internal =
      s.code() == absl::StatusCode::kInternal || s.code() == absl::StatusCode::kUnknown;
  if (!internal && !HasServiceDetail(s)) return grpc::Status(code, std::string(s.message()));
  const std::string ref = NewId("err");
  log::Error("request failed inside the service",
             {{"ref", ref}, {"code", absl::StatusCodeToString(s.code())}, {"error", s.message()}});
  return grpc::Status(code, absl::StrCat(internal ? "internal error" : "unavailable",
                                         " (reference ", ref, "): the service logged the cause"));
}

}  // namespace crm
