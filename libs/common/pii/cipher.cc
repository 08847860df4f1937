#include "libs/common/pii/cipher.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <cstdlib>
#include <memory>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"

namespace crm::pii {
namespace {

struct CtxFree {
  void operator()(EVP_CIPHER_CTX* c) const { EVP_CIPHER_CTX_free(c); }
};
using CipherCtx = std::unique_ptr<EVP_CIPHER_CTX, CtxFree>;

const unsigned char* Bytes(absl::string_view s) {
  return reinterpret_cast<const unsigned char*>(s.data());
}

}  // namespace

std::string RandomBytes(size_t n) {
  std::string out(n, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(out.data()), static_cast<int>(n)) != 1) {
    std::abort();  // no entropy: keys and nonces would repeat
  }
  return out;
}

Key RandomKey() {
  Key key;
  const std::string bytes = RandomBytes(kKeySize);
  std::copy(bytes.begin(), bytes.end(), key.begin());
  return key;
}

std::string Seal(const Key& key, absl::string_view plaintext, absl::string_view aad) {
  std::string out = RandomBytes(kNonceSize);
  out.resize(kNonceSize + plaintext.size() + kTagSize);
  auto* data = reinterpret_cast<unsigned char*>(out.data());
  CipherCtx ctx(EVP_CIPHER_CTX_new());
  int len = 0;
  // These calls fail only on allocation or misuse; neither can be handled.
  if (!ctx || EVP_EncryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, key.data(), data) != 1 ||
      EVP_EncryptUpdate(ctx.get(), nullptr, &len, Bytes(aad), static_cast<int>(aad.size())) != 1 ||
      EVP_EncryptUpdate(ctx.get(), data + kNonceSize, &len, Bytes(plaintext),
                        static_cast<int>(plaintext.size())) != 1 ||
      EVP_EncryptFinal_ex(ctx.get(), data + kNonceSize + len, &len) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, kTagSize,
                          data + kNonceSize + plaintext.size()) != 1) {
    std::abort();
  }
  return out;
}

absl::StatusOr<std::string> Open(const Key& key, absl::string_view sealed, absl::string_view aad) {
  if (sealed.size() < kNonceSize + kTagSize) return absl::DataLossError("sealed value too short");
  const size_t n = sealed.size() - kNonceSize - kTagSize;
  std::string out(n, '\0');
  auto* data = reinterpret_cast<unsigned char*>(out.data());
  std::string tag(sealed.substr(kNonceSize + n));
  CipherCtx ctx(EVP_CIPHER_CTX_new());
  int len = 0;
  if (!ctx ||
      EVP_DecryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, key.data(), Bytes(sealed)) != 1 ||
      EVP_DecryptUpdate(ctx.get(), nullptr, &len, Bytes(aad), static_cast<int>(aad.size())) != 1 ||
      EVP_DecryptUpdate(ctx.get(), data, &len, Bytes(sealed) + kNonceSize, static_cast<int>(n)) !=
          1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, kTagSize, tag.data()) != 1 ||
      EVP_DecryptFinal_ex(ctx.get(), data + len, &len) != 1) {
    return absl::DataLossError("sealed value does not authenticate");
  }
  return out;
}

std::string Hmac(const Key& key, absl::string_view message) {
  std::string out(32, '\0');
  unsigned int len = 0;
  if (HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), Bytes(message), message.size(),
           reinterpret_cast<unsigned char*>(out.data()), &len) == nullptr) {
    std::abort();
  }
  return out;
}

absl::StatusOr<Key> KeyFromHex(absl::string_view hex) {
  hex = absl::StripAsciiWhitespace(hex);
  if (hex.size() != 2 * kKeySize) {
    return absl::InvalidArgumentError("key must be 64 hex digits (32 bytes)");
  }
  for (char c : hex) {
    if (!absl::ascii_isxdigit(static_cast<unsigned char>(c))) {
      return absl::InvalidArgumentError("key must be 64 hex digits (32 bytes)");
    }
  }
  const std::string bytes = absl::HexStringToBytes(hex);
  Key key;
  std::copy(bytes.begin(), bytes.end(), key.begin());
  return key;
}

Key DeriveKey(const Key& key, absl::string_view purpose) {
  const std::string mac = Hmac(key, purpose);
  Key out;
  std::copy(mac.begin(), mac.end(), out.begin());
  return out;
}

}  // namespace crm::pii
