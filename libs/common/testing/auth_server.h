#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "grpcpp/grpcpp.h"
#include "libs/common/auth/auth_interceptor.h"
#include "libs/common/auth/dev_key.h"
#include "libs/common/auth/jwt.h"

namespace crm::testing {

// One service on a loopback port of this process behind the auth
// interceptor, as ServiceHost serves it: handlers see verified callers, so
// a test reaches their record checks through real calls.
class AuthServer {
 public:
  explicit AuthServer(grpc::Service& service, absl::Duration clock_skew = absl::Seconds(60)) {
    auth::JwtVerifierOptions options;
    options.clock_skew = clock_skew;
    options.hs256_key = auth::kDevHs256Key;
    options.issuer = auth::kDefaultIssuer;
    options.audience = auth::kDefaultAudience;
    auto verifier = auth::JwtVerifier::Create(std::move(options));
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(&service);
    std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> creators;
    creators.push_back(std::make_unique<auth::AuthInterceptorFactory>(
        std::shared_ptr<const auth::JwtVerifier>(std::move(verifier).value()), nullptr));
    builder.experimental().SetInterceptorCreators(std::move(creators));
    server_ = builder.BuildAndStart();
    channel_ =
        grpc::CreateChannel(absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials());
  }
  ~AuthServer() { server_->Shutdown(); }
  AuthServer(const AuthServer&) = delete;
  AuthServer& operator=(const AuthServer&) = delete;

  std::shared_ptr<grpc::Channel> channel() const { return channel_; }

  // A call context carrying a token for this caller.
  static std::unique_ptr<grpc::ClientContext> As(std::string subject,
                                                 std::vector<std::string> roles,
                                                 std::string territory = "",
                                                 absl::Duration ttl = absl::Hours(1)) {
    auth::TokenSpec spec;
    spec.ttl = ttl;
    spec.subject = std::move(subject);
    spec.roles = std::move(roles);
    spec.territory = std::move(territory);
    spec.issuer = auth::kDefaultIssuer;
    spec.audience = auth::kDefaultAudience;
    auto token = auth::SignHs256(spec, auth::kDevHs256Key);
    auto ctx = std::make_unique<grpc::ClientContext>();
    ctx->AddMetadata("authorization", absl::StrCat("Bearer ", token.value()));
    return ctx;
  }

 private:
  std::unique_ptr<grpc::Server> server_;
  std::shared_ptr<grpc::Channel> channel_;
};

}  // namespace crm::testing
