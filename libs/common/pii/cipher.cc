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

// The key a thread's context was last given: a call with the same key
// does not set it again, since the key setup is the costly part of an
// init (AES key schedule and GCM tables; the two SHA-256 blocks of an
// HMAC key), and a response opens several fields of one customer, a
// blind index uses one key for every value. Compared in constant time,
// wiped when replaced and at thread exit.
class KeptKey {
 public:
  ~KeptKey() { Wipe(); }

  // The key argument of the next init: null keeps the one set. Never null
  // for a new key, empty ones included: a null key means "the previous
  // key" to OpenSSL.
  const unsigned char* ToSet(absl::string_view key) {
    if (kept_ && key.size() == bytes_.size() &&
        CRYPTO_memcmp(key.data(), bytes_.data(), key.size()) == 0) {
      return nullptr;
    }
    Wipe();  // a longer key reallocates, a shorter one leaves a tail
    bytes_.assign(key.data(), key.size());
    kept_ = true;
    return Bytes(bytes_);
  }
  // After a failed call the context's key is unknown.
  void Forget() { kept_ = false; }

 private:
  void Wipe() { OPENSSL_cleanse(bytes_.data(), bytes_.size()); }

  std::string bytes_;
  bool kept_ = false;
};

// One context per thread and direction, set to the cipher once; a call
// sets the key (when new) and the nonce.
struct ThreadCipher {
  explicit ThreadCipher(bool encrypt) : ctx(EVP_CIPHER_CTX_new()) {
    if (!ctx || EVP_CipherInit_ex(ctx.get(), Gcm(), nullptr, nullptr, nullptr, encrypt) != 1) {
      std::abort();
    }
  }
  CipherCtx ctx;
  KeptKey key;
};

ThreadCipher& ThreadCtx(bool encrypt) {
  thread_local ThreadCipher encrypting(true);
  thread_local ThreadCipher decrypting(false);
  return encrypt ? encrypting : decrypting;
}

// HMAC-SHA256 set up once per thread: the one-shot HMAC() fetches the MAC
// and the digest from the provider tables on every call, half the cost of
// a blind index. The digest stays as set here.
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

  struct Free {
    void operator()(EVP_MAC_CTX* c) const { EVP_MAC_CTX_free(c); }
  };
  std::unique_ptr<EVP_MAC_CTX, Free> ctx;
  KeptKey key;
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
  EVP_CIPHER_CTX* ctx = cipher.ctx.get();
  const unsigned char* new_key = cipher.key.ToSet(KeyBytes(key));
  int len = 0;
  // These calls fail only on allocation or misuse; neither can be handled.
  if (EVP_EncryptInit_ex(ctx, nullptr, nullptr, new_key, data) != 1 ||
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
  EVP_CIPHER_CTX* ctx = cipher.ctx.get();
  const unsigned char* new_key = cipher.key.ToSet(KeyBytes(key));
  int len = 0;
  if (EVP_DecryptInit_ex(ctx, nullptr, nullptr, new_key, Bytes(sealed)) != 1 ||
      EVP_DecryptUpdate(ctx, nullptr, &len, Bytes(aad), static_cast<int>(aad.size())) != 1 ||
      EVP_DecryptUpdate(ctx, data, &len, Bytes(sealed) + kNonceSize, static_cast<int>(n)) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, kTagSize, tag.data()) != 1 ||
      EVP_DecryptFinal_ex(ctx, data + len, &len) != 1) {
    cipher.key.Forget();  // whichever call failed, the next one sets the key
    return absl::DataLossError("sealed value does not authenticate");
  }
  return out;
}

std::string Hmac(const Key& key, absl::string_view message) { return Hmac(KeyBytes(key), message); }

std::string Hmac(absl::string_view key, absl::string_view message) {
  std::string out(32, '\0');
  size_t len = 0;
  thread_local ThreadHmac hmac;
  if (EVP_MAC_init(hmac.ctx.get(), hmac.key.ToSet(key), key.size(), nullptr) != 1 ||
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
