#include "services/analytics/domain/event_fold.h"

#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/descriptor.h"

namespace crm::analytics {
namespace {

constexpr size_t kMaxCachedUnknown = 1024;
constexpr size_t kMaxCachedName = 256;

using PrototypeCache = absl::flat_hash_map<std::string, const google::protobuf::Message*>;

// Cached per thread: the descriptor pool's lookup takes its mutex, and a
// fold thread sees a handful of types.
PrototypeCache& Cache() {
  thread_local PrototypeCache cache;
  return cache;
}

// The default instance of the generated message a type URL names, null if
// this binary has none. Keyed by the message name (as Any::Is reads a URL:
// the full name after the last slash), not by the URL, whose prefix any
// producer may vary. Names this binary does not know are remembered only
// while few and short: the topics are open to any producer.
const google::protobuf::Message* Prototype(absl::string_view type_url) {
  const size_t slash = type_url.rfind('/');
  if (slash == absl::string_view::npos) return nullptr;
  const absl::string_view name = type_url.substr(slash + 1);
  PrototypeCache& cache = Cache();
  if (auto it = cache.find(name); it != cache.end()) return it->second;
  const google::protobuf::Message* prototype = nullptr;
  if (const auto* descriptor =
          google::protobuf::DescriptorPool::generated_pool()->FindMessageTypeByName(
              std::string(name));
      descriptor != nullptr) {
    prototype = google::protobuf::MessageFactory::generated_factory()->GetPrototype(descriptor);
  }
  if (prototype != nullptr || (cache.size() < kMaxCachedUnknown && name.size() <= kMaxCachedName)) {
    cache.emplace(name, prototype);
  }
  return prototype;
}

}  // namespace

size_t CachedPayloadTypes() { return Cache().size(); }

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
