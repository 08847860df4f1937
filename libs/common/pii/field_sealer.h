#pragma once

#include <string>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "crm/v1/envelope.pb.h"
#include "google/protobuf/message.h"
#include "libs/common/pii/key_vault.h"
#include "libs/common/pii/sealed_value.h"

// Field-level encryption of the string fields marked [(crm.v1.pii) = true]
// (proto/crm/v1/pii.proto), found by reflection in any message and in the
// messages nested in it. A sealed value is a string of its own:
//   "pii1." key_id "." base64url(nonce || ciphertext || tag)
// so it says which key opens it and survives copying into other events and
// projections unchanged.
namespace crm::pii {

// Whether the message type has a PII field at any depth.
bool HasPii(const google::protobuf::Descriptor* type);

// Seals every non-empty PII field that is not sealed yet.
void SealFields(google::protobuf::Message& message, const DataKey& key);

// Seals the PII of `messages` (events about to be appended) with the
// customer's data key, issuing and appending one first when the vault holds
// none. No key is issued when there is nothing to seal.
absl::Status SealForCustomer(KeyVault& vault, const std::string& customer_id,
                             const EventContext& ctx,
                             absl::Span<google::protobuf::Message* const> messages);

// SealForCustomer on a command's decided events (variants of event messages).
template <typename... Events>
absl::Status SealEvents(KeyVault& vault, const std::string& customer_id, const EventContext& ctx,
                        std::vector<std::variant<Events...>>& events) {
  std::vector<google::protobuf::Message*> messages;
  messages.reserve(events.size());
  for (auto& event : events) {
    std::visit([&](auto& message) { messages.push_back(&message); }, event);
  }
  return SealForCustomer(vault, customer_id, ctx, messages);
}

// INVALID_ARGUMENT naming the first string field of a request, at any
// depth, that looks sealed ("pii1." ...). Sealed values enter records only
// through the service's own sealing: one copied from a topic into a request
// would be stored as is and opened for the caller with its customer's key.
absl::Status RefuseSealedInput(const google::protobuf::Message& request);

// Replaces each sealed value by its plaintext. A value whose key the vault
// no longer holds (the customer was erased) or that does not authenticate
// becomes empty: the data is gone, not an error.
void OpenFields(google::protobuf::Message& message, const KeyVault& vault);
// Whether `value` is sealed and OpenFields would empty it.
bool Unreadable(absl::string_view value, const KeyVault& vault);

// Empties every PII field, sealed or not: for callers who may see a record
// but not the personal data in it.
void ClearFields(google::protobuf::Message& message);

// OpenFields on the event's payload (an Any of a generated message type).
void OpenEvent(crm::v1::EventEnvelope& event, const KeyVault& vault);

// A dedupe lookup key for normalized contact data, e.g. BlindIndex(vault,
// "email", "ann@example.com"): equal inputs give equal keys, and the key
// does not reveal the input to anyone without the master key.
std::string BlindIndex(const KeyVault& vault, absl::string_view kind, absl::string_view value);

}  // namespace crm::pii
