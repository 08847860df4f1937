#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/support/server_interceptor.h"
#include "libs/common/audit/audit_log.h"
#include "libs/common/auth/jwt.h"
#include "libs/common/auth/principal.h"

// Authentication and method-level authorization for every RPC.
//
// gRPC C++ server interceptors cannot end a call themselves, so the work is
// split: the interceptor verifies the bearer token, looks the method up in
// the policy table and leaves its verdict in the call's metadata, the way
// request_context.h reads per-call data (it also replaces x-crm-actor with
// the token's subject, so events carry the verified actor). Handlers call
// CallerFrom() first and finish with its error before doing anything. As a
// backstop for a handler that forgets, the interceptor replaces the status
// of a refused call with its verdict and drops the response message.
//
// Every call that ends UNAUTHENTICATED or PERMISSION_DENIED — refused here
// or by a handler's record check — goes to the audit log, with the record
// the request named (its first non-empty *_id field).
namespace crm::auth {

// The longest x-correlation-id a call may carry: it goes into every event of
// the call, the access log and the audit trail, so the interceptor refuses a
// longer one (INVALID_ARGUMENT), and logs keep no more of it.
inline constexpr size_t kMaxCorrelationId = 128;

// The verified caller of this call; otherwise the interceptor's refusal
// (UNAUTHENTICATED or PERMISSION_DENIED), or UNAUTHENTICATED when no auth
// interceptor vouched for the call. Metadata a client sent under the
// interceptor's key is removed before it writes its own, and the value is
// sealed with a per-process secret, so a client cannot forge a principal.
absl::StatusOr<Principal> CallerFrom(const grpc::ServerContextBase& ctx);

class AuthInterceptorFactory final : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  // `audit` may be null (no audit trail); it must outlive the server.
  AuthInterceptorFactory(std::shared_ptr<const JwtVerifier> verifier, audit::AuditLog* audit)
      : verifier_(std::move(verifier)), audit_(audit) {}

  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override;

 private:
  std::shared_ptr<const JwtVerifier> verifier_;
  audit::AuditLog* audit_;
};

// A request's record ids: its non-empty string fields called "*_id"
// (request_id, an idempotency key, names no record), in declaration order,
// each cut to 128 bytes, as (field, value).
using RequestIds = std::vector<std::pair<std::string, std::string>>;
RequestIds IdsOf(const google::protobuf::Message& request);

// The record a refusal is about: the id of the field its message starts
// with ("opportunity_id: no ... the caller may access"), else the request's
// first id; empty if it has none. A request may name several records, and
// the one refused is the one the audit trail must file it under.
std::string RefusalTarget(const RequestIds& ids, const absl::Status& refusal);

// The record a request names: its first id, or empty.
std::string RequestTarget(const google::protobuf::Message& request);

// "ipv4:10.0.0.7:51234" -> "10.0.0.7", "ipv6:[::1]:5" -> "::1".
std::string PeerAddress(absl::string_view peer);

}  // namespace crm::auth
