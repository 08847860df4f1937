#include "libs/common/pii/field_sealer.h"

#include <algorithm>
#include <memory>
#include <optional>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "crm/v1/pii.pb.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/message.h"
#include "libs/common/contact_fields.h"

namespace crm::pii {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::Reflection;

bool Marked(const FieldDescriptor* f) { return f->options().GetExtension(crm::v1::pii); }

bool IsPiiField(const FieldDescriptor* f) {
  return f->type() == FieldDescriptor::TYPE_STRING && Marked(f);
}

// A marked map<string, string>: its values are personal data, its keys
// (attribute names) are not.
bool IsPiiMap(const FieldDescriptor* f) {
  return f->is_map() && Marked(f) &&
         f->message_type()->map_value()->type() == FieldDescriptor::TYPE_STRING;
}

bool IsMessageField(const FieldDescriptor* f) {
  return f->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE;
}

bool ComputeHasPii(const Descriptor* type, absl::flat_hash_map<const Descriptor*, bool>& memo) {
  if (auto it = memo.find(type); it != memo.end()) return it->second;
  memo[type] = false;  // a recursive type is decided by its other fields
  bool found = false;
  for (int i = 0; i < type->field_count() && !found; ++i) {
    const FieldDescriptor* f = type->field(i);
    found = IsPiiField(f) || IsPiiMap(f) ||
            (IsMessageField(f) && ComputeHasPii(f->message_type(), memo));
  }
  memo[type] = found;
  return found;
}

// Calls `fn(value)` on every PII string in the message, rewriting it.
template <typename Fn>
void ForEachPii(Message& message, const Fn& fn) {
  const Descriptor* type = message.GetDescriptor();
  if (!HasPii(type)) return;
  const Reflection* r = message.GetReflection();
  for (int i = 0; i < type->field_count(); ++i) {
    const FieldDescriptor* f = type->field(i);
    if (IsPiiField(f)) {
      if (f->is_repeated()) {
        for (int j = 0; j < r->FieldSize(message, f); ++j) {
          std::string value = r->GetRepeatedString(message, f, j);
          if (fn(value)) r->SetRepeatedString(&message, f, j, std::move(value));
        }
      } else if (r->HasField(message, f) || !r->GetString(message, f).empty()) {
        std::string value = r->GetString(message, f);
        if (fn(value)) r->SetString(&message, f, std::move(value));
      }
    } else if (IsPiiMap(f)) {
      const FieldDescriptor* value_field = f->message_type()->map_value();
      for (int j = 0; j < r->FieldSize(message, f); ++j) {
        Message* entry = r->MutableRepeatedMessage(&message, f, j);
        const Reflection* er = entry->GetReflection();
        std::string value = er->GetString(*entry, value_field);
        if (fn(value)) er->SetString(entry, value_field, std::move(value));
      }
    } else if (IsMessageField(f) && HasPii(f->message_type())) {
      if (f->is_repeated()) {
        for (int j = 0; j < r->FieldSize(message, f); ++j) {
          ForEachPii(*r->MutableRepeatedMessage(&message, f, j), fn);
        }
      } else if (r->HasField(message, f)) {
        ForEachPii(*r->MutableMessage(&message, f), fn);
      }
    }
  }
}

// Whether a request value looks sealed, or will once the services
// normalize it (names and regions are trimmed, emails lowercased, trimmed
// of Unicode blanks and unwrapped from quotes or brackets): a check of the
// raw value alone let " pii1.<key>.<ciphertext>" through, and a value that
// looks sealed is stored as it is, in clear.
bool MayBecomeSealed(absl::string_view value) {
  for (absl::string_view before; before != value;) {
    before = value;
    value = TrimContact(value);
    if (!value.empty() &&
        absl::string_view("\"'<([").find(value.front()) != absl::string_view::npos) {
      value.remove_prefix(1);
    }
  }
  return absl::StartsWithIgnoreCase(value, kSealedPrefix);
}

// The path of the first sealed-looking string in `message` (every string
// field, marked or not: a request's plain text may become an event's
// personal data), appended to `path`; false if there is none.
bool FindSealed(const Message& message, std::string& path) {
  const Reflection* r = message.GetReflection();
  std::vector<const FieldDescriptor*> fields;
  r->ListFields(message, &fields);  // set fields only
  const size_t base = path.size();
  auto at = [&](const FieldDescriptor* f, std::optional<int> index) {
    path.resize(base);
    absl::StrAppend(&path, base == 0 ? "" : ".", f->name());
    if (index.has_value()) absl::StrAppend(&path, "[", *index, "]");
  };
  for (const FieldDescriptor* f : fields) {
    if (f->cpp_type() == FieldDescriptor::CPPTYPE_STRING &&
        f->type() == FieldDescriptor::TYPE_STRING) {
      if (f->is_repeated()) {
        for (int j = 0; j < r->FieldSize(message, f); ++j) {
          if (MayBecomeSealed(r->GetRepeatedStringReference(message, f, j, nullptr))) {
            at(f, j);
            return true;
          }
        }
      } else {
        std::string scratch;
        if (MayBecomeSealed(r->GetStringReference(message, f, &scratch))) {
          at(f, std::nullopt);
          return true;
        }
      }
    } else if (f->is_map()) {
      // Named by key: "attributes[booth]".
      const FieldDescriptor* key = f->message_type()->map_key();
      for (int j = 0; j < r->FieldSize(message, f); ++j) {
        const Message& entry = r->GetRepeatedMessage(message, f, j);
        std::string inner;
        if (FindSealed(entry, inner)) {
          at(f, std::nullopt);
          absl::StrAppend(&path, "[",
                          key->cpp_type() == FieldDescriptor::CPPTYPE_STRING
                              ? entry.GetReflection()->GetString(entry, key)
                              : absl::StrCat(j),
                          "]");
          return true;
        }
      }
    } else if (IsMessageField(f)) {
      if (f->is_repeated()) {
        for (int j = 0; j < r->FieldSize(message, f); ++j) {
          at(f, j);
          if (FindSealed(r->GetRepeatedMessage(message, f, j), path)) return true;
        }
      } else {
        at(f, std::nullopt);
        if (FindSealed(r->GetMessage(message, f), path)) return true;
      }
    }
  }
  path.resize(base);
  return false;
}

std::string SealValue(const DataKey& key, absl::string_view plaintext) {
  return absl::StrCat(kSealedPrefix, key.key_id, ".",
                      absl::WebSafeBase64Escape(Seal(key.key, plaintext, key.key_id)));
}

}  // namespace

bool HasPii(const Descriptor* type) {
  // Per thread: asked on every response, so no lock; types are few.
  thread_local absl::flat_hash_map<const Descriptor*, bool> memo;
  return ComputeHasPii(type, memo);
}

void SealFields(Message& message, const DataKey& key) {
  ForEachPii(message, [&](std::string& value) {
    if (value.empty() || IsSealed(value)) return false;
    value = SealValue(key, value);
    return true;
  });
}

absl::Status SealForCustomer(KeyVault& vault, const std::string& customer_id,
                             const EventContext& ctx, absl::Span<Message* const> messages) {
  std::optional<DataKey> key;  // issued on the first value that needs it
  absl::Status status;
  for (Message* m : messages) {
    ForEachPii(*m, [&](std::string& value) {
      if (value.empty() || IsSealed(value) || !status.ok()) return false;
      if (!key.has_value()) {
        auto ensured = customer_id.empty()
                           ? absl::InternalError("personal data without a customer to seal it")
                           : vault.EnsureKey(customer_id, ctx);
        if (!ensured.ok()) {
          status = ensured.status();
          return false;
        }
        key = *std::move(ensured);
      }
      value = SealValue(*key, value);
      return true;
    });
  }
  return status;
}

namespace {

// The plaintext of a sealed value; nullopt when its key is gone or it does
// not authenticate.
std::optional<std::string> OpenSealed(absl::string_view value, const KeyVault& vault) {
  const absl::string_view rest = value.substr(kSealedPrefix.size());
  const size_t dot = rest.find('.');
  std::string sealed;
  if (dot == absl::string_view::npos ||
      !absl::WebSafeBase64Unescape(rest.substr(dot + 1), &sealed)) {
    return std::nullopt;
  }
  const std::optional<Key> key = vault.Find(rest.substr(0, dot));
  if (!key.has_value()) return std::nullopt;
  absl::StatusOr<std::string> plain = Open(*key, sealed, rest.substr(0, dot));
  if (!plain.ok()) return std::nullopt;
  return *std::move(plain);
}

}  // namespace

void OpenFields(Message& message, const KeyVault& vault) {
  ForEachPii(message, [&](std::string& value) {
    if (!IsSealed(value)) return false;
    value = OpenSealed(value, vault).value_or(std::string());
    return true;
  });
}

bool Unreadable(absl::string_view value, const KeyVault& vault) {
  return IsSealed(value) && !OpenSealed(value, vault).has_value();
}

absl::Status RefuseSealedInput(const Message& request) {
  std::string path;
  if (!FindSealed(request, path)) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(path, ": may not start with \"", kSealedPrefix,
                                                 "\" (the form of encrypted values)"));
}

void ClearFields(Message& message) {
  ForEachPii(message, [](std::string& value) {
    if (value.empty()) return false;
    value.clear();
    return true;
  });
}

void OpenEvent(crm::v1::EventEnvelope& event, const KeyVault& vault) {
  absl::string_view name = event.payload().type_url();
  name.remove_prefix(std::min(name.size(), name.rfind('/') + 1));
  const auto* type =
      google::protobuf::DescriptorPool::generated_pool()->FindMessageTypeByName(std::string(name));
  if (type == nullptr || !HasPii(type)) return;
  std::unique_ptr<Message> payload(
      google::protobuf::MessageFactory::generated_factory()->GetPrototype(type)->New());
  if (!event.payload().UnpackTo(payload.get())) return;
  OpenFields(*payload, vault);
  event.mutable_payload()->PackFrom(*payload);
}

std::string BlindIndex(const KeyVault& vault, absl::string_view kind, absl::string_view value) {
  const std::string mac = Hmac(vault.blind_index_key(), absl::StrCat(kind, ":", value));
  return absl::StrCat(kind, "#", absl::WebSafeBase64Escape(absl::string_view(mac).substr(0, 16)));
}

}  // namespace crm::pii
