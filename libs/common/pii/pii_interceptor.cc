#include "libs/common/pii/pii_interceptor.h"

#include <memory>

#include "absl/strings/match.h"
#include "libs/common/pii/field_sealer.h"

namespace crm::pii {
namespace {

using grpc::experimental::InterceptionHookPoints;

class OpenResponses final : public grpc::experimental::Interceptor {
 public:
  explicit OpenResponses(const KeyVault& vault) : vault_(vault) {}

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_MESSAGE)) {
      // Null once serialized (a refused call's dropped response). Our
      // services speak protobuf only, so the message is one.
      if (const void* sent = methods->GetSendMessage(); sent != nullptr) {
        const auto& response = *static_cast<const google::protobuf::Message*>(sent);
        if (HasPii(response.GetDescriptor())) {
          // The handler's message is const and may be its stored state: send
          // an opened copy, kept alive here until it is serialized. Merged
          // into a new one: CopyFrom first walks the type's descriptors to
          // refuse a copy from a sub-message (a fifth of the interceptor).
          opened_.reset(response.New());
          opened_->MergeFrom(response);
          OpenFields(*opened_, vault_);
          methods->ModifySendMessage(opened_.get());
        }
      }
    }
    methods->Proceed();
  }

 private:
  const KeyVault& vault_;
  std::unique_ptr<google::protobuf::Message> opened_;
};

}  // namespace

grpc::experimental::Interceptor* OpenResponsesFactory::CreateServerInterceptor(
    grpc::experimental::ServerRpcInfo* info) {
  // gRPC's own services (health, reflection) hold no personal data, and the
  // health service sends raw byte buffers, not protobuf messages.
  if (absl::StartsWith(info->method(), "/grpc.")) return nullptr;
  // gRPC takes ownership of the returned interceptor.
  return std::make_unique<OpenResponses>(vault_).release();
}

}  // namespace crm::pii
