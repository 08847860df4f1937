#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "libs/common/auth/principal.h"

// JSON Web Tokens (RFC 7519) in compact form, signed with HS256 or RS256
// (RFC 7518), checked with OpenSSL. Only what the services need: verify a
// bearer token into a Principal, and mint one (dev tokens, tests).
namespace crm::auth {

// Unpadded base64url (RFC 4648 §5), as JWT segments use it. Decoding is
// strict: no padding, no other characters, no stray bits in the last
// symbol, so one token has exactly one spelling.
std::string Base64UrlEncode(absl::string_view bytes);
absl::StatusOr<std::string> Base64UrlDecode(absl::string_view text);

struct JwtVerifierOptions {
  // Shared secret for HS256; empty = HS256 tokens are refused. At least 32
  // bytes (RFC 7518 §3.2: no shorter than the hash).
  std::string hs256_key;
  // PEM "PUBLIC KEY" (RSA, >= 2048 bits) for RS256; empty = refused.
  std::string rs256_public_key_pem;
  std::string issuer;    // "iss" must equal this
  std::string audience;  // "aud" must be, or contain, this
  // Tolerated clock difference between the issuer and us for exp and nbf.
  absl::Duration clock_skew = absl::Seconds(60);
};

// Thread-safe after Create; one instance serves every call.
class JwtVerifier {
 public:
  static absl::StatusOr<std::unique_ptr<const JwtVerifier>> Create(JwtVerifierOptions options);
  ~JwtVerifier();

  // The principal a compact JWS names, or UNAUTHENTICATED saying why not.
  // The signature is checked before any claim is looked at.
  //
  // A caller sends the same token with every call until it expires, so a
  // token that verified is remembered (its exact bytes, at most
  // kMaxCachedTokens of them): the next call skips the signature and JSON
  // work but is still held to exp and nbf at `now`.
  absl::StatusOr<Principal> Verify(absl::string_view token, absl::Time now) const;

  static constexpr size_t kMaxCachedTokens = 1024;
  size_t CachedTokens() const;

 private:
  struct Keys;
  // What a token says that does not change with the time of the call.
  struct Checked {
    Principal principal;
    absl::Time expires;
    std::optional<absl::Time> not_before;
  };
  JwtVerifier(JwtVerifierOptions options, std::unique_ptr<Keys> keys);

  absl::StatusOr<Checked> Check(absl::string_view token) const;
  bool Expired(const Checked& checked, absl::Time now) const;
  absl::Status CheckTime(const Checked& checked, absl::Time now) const;
  void Remember(absl::string_view token, const Checked& checked, absl::Time now) const;

  JwtVerifierOptions options_;
  std::unique_ptr<Keys> keys_;
  mutable absl::Mutex mu_;
  mutable absl::flat_hash_map<std::string, Checked> verified_ ABSL_GUARDED_BY(mu_);
};

// What a minted token says.
struct TokenSpec {
  std::string subject;
  std::vector<std::string> roles;
  std::string territory;
  std::string issuer;
  std::string audience;
  absl::Time issued_at = absl::Now();
  absl::Duration ttl = absl::Hours(1);
  std::optional<absl::Time> not_before;
};

// The JSON claims of `spec` (iss, aud, sub, roles, territory, iat, exp, nbf).
std::string ClaimsJson(const TokenSpec& spec);

absl::StatusOr<std::string> SignHs256(const TokenSpec& spec, absl::string_view key);
absl::StatusOr<std::string> SignRs256(const TokenSpec& spec, absl::string_view private_key_pem);

// Signs arbitrary header and payload JSON with the algorithm the caller
// names ("HS256" with a secret, "RS256" with a PEM private key, "none"
// without a signature) so tests can build every kind of bad token.
absl::StatusOr<std::string> SignRaw(absl::string_view header_json, absl::string_view payload_json,
                                    absl::string_view alg, absl::string_view key);

}  // namespace crm::auth
