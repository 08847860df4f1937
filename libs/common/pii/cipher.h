#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

// AES-256-GCM and HMAC-SHA256 over OpenSSL, the primitives of PII protection.
namespace crm::pii {

inline constexpr size_t kKeySize = 32;
inline constexpr size_t kNonceSize = 12;
inline constexpr size_t kTagSize = 16;

using Key = std::array<uint8_t, kKeySize>;

// The key's bytes, e.g. to seal a key under another one.
inline absl::string_view KeyBytes(const Key& key) {
  return absl::string_view(reinterpret_cast<const char*>(key.data()), key.size());
}

// A fresh random key from the OS generator.
Key RandomKey();
// `n` random bytes; aborts when the generator fails (no safe fallback).
std::string RandomBytes(size_t n);

// nonce || ciphertext || tag, a random nonce per call. `aad` is bound to
// the ciphertext: opening with another aad fails.
std::string Seal(const Key& key, absl::string_view plaintext, absl::string_view aad);
// DATA_LOSS when the bytes were changed, the key is wrong or the aad differs.
absl::StatusOr<std::string> Open(const Key& key, absl::string_view sealed, absl::string_view aad);

// HMAC-SHA256, raw 32 bytes.
std::string Hmac(const Key& key, absl::string_view message);
// The same with a key of any length (an HS256 token secret).
std::string Hmac(absl::string_view key, absl::string_view message);

// A key given as 64 hex digits (the master key's format in files and env).
absl::StatusOr<Key> KeyFromHex(absl::string_view hex);
// A key derived from `key` for one purpose (HMAC(key, purpose)), so one
// master key serves wrapping and the blind index without reuse.
Key DeriveKey(const Key& key, absl::string_view purpose);

// The master key that wraps data keys now and, during a rotation, the ones
// it replaces: what is still wrapped under a previous key is read and
// re-wrapped under the current one.
struct MasterKeys {
  // Implicit: one key is a set of master keys without previous ones.
  MasterKeys(const Key& current, std::vector<Key> previous = {})  // NOLINT
      : current(current), previous(std::move(previous)) {}
  Key current;
  std::vector<Key> previous;
};

}  // namespace crm::pii
