#include "services/analytics/domain/event_fold.h"

#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/descriptor.h"

namespace crm::analytics {
namespace {

// The default instance of the generated message a type URL names, null if
// this binary has none. Cached per thread: the descriptor pool's lookup
// takes its mutex, and a fold thread sees a handful of types.
const google::protobuf::Message* Prototype(const std::string& type_url) {
  thread_local absl::flat_hash_map<std::string, const google::protobuf::Message*> cache;
  if (auto it = cache.find(type_url); it != cache.end()) return it->second;
  const absl::string_view url = type_url;
  // As Any::Is reads it: the full message name after the last slash.
  const size_t slash = url.rfind('/');
  const google::protobuf::Message* prototype = nullptr;
  if (const auto* descriptor =
          slash == absl::string_view::npos
              ? nullptr
              : google::protobuf::DescriptorPool::generated_pool()->FindMessageTypeByName(
                    std::string(url.substr(slash + 1)));
      descriptor != nullptr) {
    prototype = google::protobuf::MessageFactory::generated_factory()->GetPrototype(descriptor);
  }
  // Unknown URLs are remembered too, but only a bounded number of them: the
  // topics are open to any producer.
  if (prototype != nullptr || cache.size() < 1024) cache.emplace(type_url, prototype);
  return prototype;
}

}  // namespace

Payload::Payload(const crm::v1::EventEnvelope& event, google::protobuf::Arena* arena) {
  const google::protobuf::Message* prototype = Prototype(event.payload().type_url());
  if (prototype == nullptr) return;
  google::protobuf::Message* decoded = prototype->New(arena);
  if (arena == nullptr) owned_.reset(decoded);
  if (!decoded->ParseFromString(event.payload().value())) {
    decoded_ = Decoded::kUnparsable;
    return;
  }
  message_ = decoded;
  prototype_ = prototype;
  decoded_ = Decoded::kYes;
}

}  // namespace crm::analytics
