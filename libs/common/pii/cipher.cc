#include "libs/common/pii/cipher.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include <cstdlib>
#include <cstring>
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

// Fetched once: the implicit fetch behind EVP_aes_256_gcm() looks the
// algorithm up in the provider tables on every init.
const EVP_CIPHER* Gcm() {
  static const EVP_CIPHER* const cipher = [] {
    EVP_CIPHER* c = EVP_CIPHER_fetch(nullptr, "AES-256-GCM", nullptr);
    if (c == nullptr) std::abort();
    return c;
  }();
  return cipher;
}

// One context per thread and direction, set to the cipher once. A call
// sets the key only when it differs from the last one (the AES key
// schedule and GCM tables are the costly part of an init: a response
// opens several fields of one customer), then the nonce.
class ThreadCipher {
 public:
  explicit ThreadCipher(bool encrypt) : ctx_(EVP_CIPHER_CTX_new()) {
    if (!ctx_ || EVP_CipherInit_ex(ctx_.get(), Gcm(), nullptr, nullptr, nullptr, encrypt) != 1) {
      std::abort();
    }
  }
  ~ThreadCipher() { OPENSSL_cleanse(key_.data(), key_.size()); }

  EVP_CIPHER_CTX* ctx() const { return ctx_.get(); }

  // The key argument of the next init: null keeps the one set.
  const unsigned char* KeyToSet(const Key& key) {
    if (keyed_ && CRYPTO_memcmp(key.data(), key_.data(), key_.size()) == 0) return nullptr;
    key_ = key;
    keyed_ = true;
    return key_.data();
  }
  // After a failed init the context's key is unknown.
  void Forget() { keyed_ = false; }

 private:
  CipherCtx ctx_;
  Key key_{};
  bool keyed_ = false;
};

ThreadCipher& ThreadCtx(bool encrypt) {
  thread_local ThreadCipher encrypting(true);
  thread_local ThreadCipher decrypting(false);
  return encrypt ? encrypting : decrypting;
}

// HMAC-SHA256 set up once per thread: the one-shot HMAC() fetches the MAC
// and the digest from the provider tables on every call, half the cost of
// a blind index.
struct ThreadHmac {
  ThreadHmac() {
    static EVP_MAC* const mac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
    if (mac == nullptr) std::abort();
    ctx.reset(EVP_MAC_CTX_new(mac));
    char digest[] = "SHA256";
    const OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string("digest", digest, 0),
                                 OSSL_PARAM_construct_end()};
    if (!ctx || EVP_MAC_CTX_set_params(ctx.get(), params) != 1) std::abort();
  }
  ~ThreadHmac() { OPENSSL_cleanse(key.data(), key.size()); }

  struct Free {
    void operator()(EVP_MAC_CTX* c) const { EVP_MAC_CTX_free(c); }
  };
  std::unique_ptr<EVP_MAC_CTX, Free> ctx;
  // The key last set (a blind index uses one key for every value).
  std::string key;
  bool keyed = false;
};

// Random bytes drawn from the DRBG a block at a time: one RAND_bytes call
// per 12-byte nonce costs more than the sealing itself. The block is
// per thread and handed out once, so no two callers see the same bytes.
void FillRandom(unsigned char* out, size_t n) {
  struct Pool {
    unsigned char bytes[4096];
    size_t used = sizeof(bytes);
  };
  thread_local Pool pool;
  if (n > sizeof(pool.bytes) / 4) {
    if (RAND_bytes(out, static_cast<int>(n)) != 1) std::abort();
    return;
  }
  if (pool.used + n > sizeof(pool.bytes)) {
    // No entropy: keys and nonces would repeat.
    if (RAND_bytes(pool.bytes, sizeof(pool.bytes)) != 1) std::abort();
    pool.used = 0;
  }
  std::memcpy(out, pool.bytes + pool.used, n);
  OPENSSL_cleanse(pool.bytes + pool.used, n);
  pool.used += n;
}

}  // namespace

std::string RandomBytes(size_t n) {
  std::string out(n, '\0');
  FillRandom(reinterpret_cast<unsigned char*>(out.data()), n);
  return out;
}

Key RandomKey() {
  Key key;
  FillRandom(key.data(), key.size());
  return key;
}

std::string Seal(const Key& key, absl::string_view plaintext, absl::string_view aad) {
  std::string out(kNonceSize + plaintext.size() + kTagSize, '\0');
  auto* data = reinterpret_cast<unsigned char*>(out.data());
  FillRandom(data, kNonceSize);
  ThreadCipher& cipher = ThreadCtx(/*encrypt=*/true);
  EVP_CIPHER_CTX* ctx = cipher.ctx();
  int len = 0;
  // These calls fail only on allocation or misuse; neither can be handled.
  if (EVP_EncryptInit_ex(ctx, nullptr, nullptr, cipher.KeyToSet(key), data) != 1 ||
      EVP_EncryptUpdate(ctx, nullptr, &len, Bytes(aad), static_cast<int>(aad.size())) != 1 ||
      EVP_EncryptUpdate(ctx, data + kNonceSize, &len, Bytes(plaintext),
                        static_cast<int>(plaintext.size())) != 1 ||
      EVP_EncryptFinal_ex(ctx, data + kNonceSize + len, &len) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, kTagSize,
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
  ThreadCipher& cipher = ThreadCtx(/*encrypt=*/false);
  EVP_CIPHER_CTX* ctx = cipher.ctx();
  int len = 0;
  if (EVP_DecryptInit_ex(ctx, nullptr, nullptr, cipher.KeyToSet(key), Bytes(sealed)) != 1 ||
      EVP_DecryptUpdate(ctx, nullptr, &len, Bytes(aad), static_cast<int>(aad.size())) != 1 ||
      EVP_DecryptUpdate(ctx, data, &len, Bytes(sealed) + kNonceSize, static_cast<int>(n)) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, kTagSize, tag.data()) != 1 ||
      EVP_DecryptFinal_ex(ctx, data + len, &len) != 1) {
    cipher.Forget();  // whichever call failed, the next one sets the key
    return absl::DataLossError("sealed value does not authenticate");
  }
  return out;
}

std::string Hmac(const Key& key, absl::string_view message) {
  return Hmac(absl::string_view(reinterpret_cast<const char*>(key.data()), key.size()), message);
}

std::string Hmac(absl::string_view key, absl::string_view message) {
  std::string out(32, '\0');
  size_t len = 0;
  thread_local ThreadHmac hmac;
  // The digest stays as set when the context was made; the key is set
  // when it differs from the last one (two SHA-256 blocks), else a null
  // key makes OpenSSL reuse it. An empty key is passed as "".
  static constexpr unsigned char kEmpty[1] = {0};
  const unsigned char* key_bytes = nullptr;
  if (!hmac.keyed || key.size() != hmac.key.size() ||
      CRYPTO_memcmp(key.data(), hmac.key.data(), key.size()) != 0) {
    // Wiped first: a longer key reallocates, a shorter one leaves a tail.
    OPENSSL_cleanse(hmac.key.data(), hmac.key.size());
    hmac.key.assign(key.data(), key.size());
    hmac.keyed = true;
    key_bytes = key.empty() ? kEmpty : Bytes(key);
  }
  if (EVP_MAC_init(hmac.ctx.get(), key_bytes, key.size(), nullptr) != 1 ||
      EVP_MAC_update(hmac.ctx.get(), Bytes(message), message.size()) != 1 ||
      EVP_MAC_final(hmac.ctx.get(), reinterpret_cast<unsigned char*>(out.data()), &len,
                    out.size()) != 1 ||
      len != out.size()) {
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
