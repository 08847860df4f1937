#pragma once

#include "grpcpp/support/server_interceptor.h"
#include "libs/common/pii/key_vault.h"

namespace crm::pii {

// Opens the sealed PII in every response message a service sends, so
// handlers, projections and events only ever hold ciphertext and callers
// get plaintext (or empty fields for an erased customer). Install after the
// auth interceptor: a refused call's response is already dropped then.
class OpenResponsesFactory final : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  // `vault` must outlive the server.
  explicit OpenResponsesFactory(const KeyVault& vault) : vault_(vault) {}

  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override;

 private:
  const KeyVault& vault_;
};

}  // namespace crm::pii
