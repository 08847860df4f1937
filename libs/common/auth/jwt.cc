#include "libs/common/auth/jwt.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <cmath>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "libs/common/pii/cipher.h"
#include "libs/common/status_macros.h"
#include "libs/common/text.h"

namespace crm::auth {
namespace {

constexpr size_t kMaxTokenBytes = 8 * 1024;
constexpr size_t kMinHs256KeyBytes = 32;
constexpr int kMinRsaBits = 2048;
constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

// RAII for the OpenSSL objects used here.
struct PkeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct MdCtxFree {
  void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
};
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyFree>;
using BioPtr = std::unique_ptr<BIO, BioFree>;
using MdCtxPtr = std::unique_ptr<EVP_MD_CTX, MdCtxFree>;

absl::Status Unauthenticated(absl::string_view why) {
  return absl::UnauthenticatedError(absl::StrCat("invalid bearer token: ", why));
}

BioPtr MemBio(absl::string_view pem) {
  return BioPtr(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
}

absl::StatusOr<PkeyPtr> RsaKey(PkeyPtr key, absl::string_view what) {
  if (key == nullptr) return absl::InvalidArgumentError(absl::StrCat(what, ": not a PEM key"));
  if (EVP_PKEY_base_id(key.get()) != EVP_PKEY_RSA) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": not an RSA key"));
  }
  if (EVP_PKEY_get_bits(key.get()) < kMinRsaBits) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": RSA key shorter than 2048 bits"));
  }
  return key;
}

absl::StatusOr<PkeyPtr> ReadPublicKey(absl::string_view pem) {
  BioPtr bio = MemBio(pem);
  return RsaKey(PkeyPtr(PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr)),
                "RS256 public key");
}

absl::StatusOr<PkeyPtr> ReadPrivateKey(absl::string_view pem) {
  BioPtr bio = MemBio(pem);
  return RsaKey(PkeyPtr(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr)),
                "RS256 private key");
}

absl::StatusOr<std::string> RsaSign(EVP_PKEY* key, absl::string_view data) {
  MdCtxPtr ctx(EVP_MD_CTX_new());
  size_t len = 0;
  if (ctx == nullptr || EVP_DigestSignInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key) != 1 ||
      EVP_DigestSign(ctx.get(), nullptr, &len, reinterpret_cast<const unsigned char*>(data.data()),
                     data.size()) != 1) {
    return absl::InternalError("RS256 signing failed");
  }
  std::string sig(len, '\0');
  if (EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &len,
                     reinterpret_cast<const unsigned char*>(data.data()), data.size()) != 1) {
    return absl::InternalError("RS256 signing failed");
  }
  sig.resize(len);
  return sig;
}

bool RsaVerify(EVP_PKEY* key, absl::string_view data, absl::string_view sig) {
  MdCtxPtr ctx(EVP_MD_CTX_new());
  return ctx != nullptr &&
         EVP_DigestVerifyInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key) == 1 &&
         EVP_DigestVerify(ctx.get(), reinterpret_cast<const unsigned char*>(sig.data()), sig.size(),
                          reinterpret_cast<const unsigned char*>(data.data()), data.size()) == 1;
}

// A JSON object, or why the segment is not one.
absl::StatusOr<google::protobuf::Struct> JsonObject(absl::string_view segment,
                                                    absl::string_view what) {
  auto bytes = Base64UrlDecode(segment);
  if (!bytes.ok()) return Unauthenticated(absl::StrCat(what, " is not base64url"));
  google::protobuf::Struct object;
  if (!google::protobuf::util::JsonStringToMessage(*bytes, &object).ok()) {
    return Unauthenticated(absl::StrCat(what, " is not a JSON object"));
  }
  return object;
}

const google::protobuf::Value* Field(const google::protobuf::Struct& s, const std::string& name) {
  auto it = s.fields().find(name);
  return it == s.fields().end() ? nullptr : &it->second;
}

// A NumericDate claim (seconds since the epoch) if present.
absl::StatusOr<std::optional<absl::Time>> TimeClaim(const google::protobuf::Struct& claims,
                                                    const std::string& name) {
  const auto* v = Field(claims, name);
  if (v == nullptr) return std::nullopt;
  if (v->kind_case() != google::protobuf::Value::kNumberValue ||
      !std::isfinite(v->number_value())) {
    return Unauthenticated(absl::StrCat(name, " is not a number"));
  }
  // Converting a double beyond int64 is undefined: such a date is refused
  // (year ~292 billion; a real token's is within a few years of now).
  constexpr double kLimit = 9.2e18;
  if (std::fabs(v->number_value()) >= kLimit) {
    return Unauthenticated(absl::StrCat(name, " is out of range"));
  }
  return absl::FromUnixSeconds(static_cast<int64_t>(v->number_value()));
}

absl::StatusOr<std::string> StringClaim(const google::protobuf::Struct& claims,
                                        const std::string& name) {
  const auto* v = Field(claims, name);
  if (v == nullptr) return std::string();
  if (v->kind_case() != google::protobuf::Value::kStringValue) {
    return Unauthenticated(absl::StrCat(name, " is not a string"));
  }
  return v->string_value();
}

}  // namespace

std::string Base64UrlEncode(absl::string_view bytes) {
  std::string out;
  out.reserve((bytes.size() * 4 + 2) / 3);
  size_t i = 0;
  auto at = [&](size_t k) { return static_cast<uint32_t>(static_cast<unsigned char>(bytes[k])); };
  for (; i + 3 <= bytes.size(); i += 3) {
    const uint32_t n = at(i) << 16 | at(i + 1) << 8 | at(i + 2);
    for (int shift : {18, 12, 6, 0}) out.push_back(kAlphabet[(n >> shift) & 63]);
  }
  if (const size_t rest = bytes.size() - i; rest > 0) {
    const uint32_t n = at(i) << 16 | (rest == 2 ? at(i + 1) << 8 : 0);
    out.push_back(kAlphabet[(n >> 18) & 63]);
    out.push_back(kAlphabet[(n >> 12) & 63]);
    if (rest == 2) out.push_back(kAlphabet[(n >> 6) & 63]);
  }
  return out;
}

absl::StatusOr<std::string> Base64UrlDecode(absl::string_view text) {
  if (text.size() % 4 == 1) return absl::InvalidArgumentError("base64url: impossible length");
  auto value = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '-') return 62;
    if (c == '_') return 63;
    return -1;
  };
  std::string out;
  out.reserve(text.size() * 3 / 4);
  uint32_t acc = 0;
  int bits = 0;
  for (char c : text) {
    const int v = value(c);
    if (v < 0) return absl::InvalidArgumentError("base64url: unexpected character");
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xff));
    }
  }
  // Leftover bits must be zero, or two spellings would decode alike.
  if ((acc & ((1u << bits) - 1)) != 0) return absl::InvalidArgumentError("base64url: stray bits");
  return out;
}

struct JwtVerifier::Keys {
  PkeyPtr rsa_public;
};

JwtVerifier::JwtVerifier(JwtVerifierOptions options, std::unique_ptr<Keys> keys)
    : options_(std::move(options)), keys_(std::move(keys)) {}

JwtVerifier::~JwtVerifier() = default;

absl::StatusOr<std::unique_ptr<const JwtVerifier>> JwtVerifier::Create(JwtVerifierOptions options) {
  if (options.hs256_key.empty() && options.rs256_public_key_pem.empty()) {
    return absl::InvalidArgumentError("no token key: set an HS256 key or an RS256 public key");
  }
  if (!options.hs256_key.empty() && options.hs256_key.size() < kMinHs256KeyBytes) {
    return absl::InvalidArgumentError("HS256 key: at least 32 bytes");
  }
  if (options.issuer.empty() || options.audience.empty()) {
    return absl::InvalidArgumentError("token issuer and audience are required");
  }
  auto keys = std::make_unique<Keys>();
  if (!options.rs256_public_key_pem.empty()) {
    CRM_ASSIGN_OR_RETURN(keys->rsa_public, ReadPublicKey(options.rs256_public_key_pem));
  }
  return std::unique_ptr<const JwtVerifier>(new JwtVerifier(std::move(options), std::move(keys)));
}

absl::StatusOr<Principal> JwtVerifier::Verify(absl::string_view token, absl::Time now) const {
  {
    absl::MutexLock lock(&mu_);
    if (auto it = verified_.find(token); it != verified_.end()) {
      CRM_RETURN_IF_ERROR(CheckTime(it->second, now));
      return it->second.principal;
    }
  }
  CRM_ASSIGN_OR_RETURN(Checked checked, Check(token));
  CRM_RETURN_IF_ERROR(CheckTime(checked, now));
  Remember(token, checked, now);
  return std::move(checked.principal);
}

bool JwtVerifier::Expired(const Checked& checked, absl::Time now) const {
  return now > checked.expires + options_.clock_skew;
}

absl::Status JwtVerifier::CheckTime(const Checked& checked, absl::Time now) const {
  if (Expired(checked, now)) return Unauthenticated("token expired");
  if (checked.not_before.has_value() && now + options_.clock_skew < *checked.not_before) {
    return Unauthenticated("token not valid yet (nbf)");
  }
  return absl::OkStatus();
}

void JwtVerifier::Remember(absl::string_view token, const Checked& checked, absl::Time now) const {
  absl::MutexLock lock(&mu_);
  if (verified_.size() >= kMaxCachedTokens) {
    // Expired tokens go first; if every one is live, start over rather
    // than let many callers grow the cache without bound.
    absl::erase_if(verified_, [&](const auto& entry) { return Expired(entry.second, now); });
    if (verified_.size() >= kMaxCachedTokens) verified_.clear();
  }
  verified_.try_emplace(token, checked);
}

size_t JwtVerifier::CachedTokens() const {
  absl::MutexLock lock(&mu_);
  return verified_.size();
}

absl::StatusOr<JwtVerifier::Checked> JwtVerifier::Check(absl::string_view token) const {
  if (token.empty()) return Unauthenticated("empty");
  if (token.size() > kMaxTokenBytes) return Unauthenticated("longer than 8 KiB");
  const std::vector<absl::string_view> parts = absl::StrSplit(token, '.');
  if (parts.size() != 3) return Unauthenticated("not a compact JWS (header.payload.signature)");

  CRM_ASSIGN_OR_RETURN(const google::protobuf::Struct header, JsonObject(parts[0], "header"));
  const auto* alg = Field(header, "alg");
  if (alg == nullptr || alg->kind_case() != google::protobuf::Value::kStringValue) {
    return Unauthenticated("header has no alg");
  }
  // Extensions we do not understand must not be ignored (RFC 7515 §4.1.11).
  if (Field(header, "crit") != nullptr) return Unauthenticated("crit header is not supported");

  // The key is chosen by our configuration, the header only picks which of
  // the configured ones: an RSA public key is never used as an HMAC secret,
  // and "none" is never accepted.
  const absl::string_view signed_part(token.data(), parts[0].size() + 1 + parts[1].size());
  auto signature = Base64UrlDecode(parts[2]);
  if (!signature.ok()) return Unauthenticated("signature is not base64url");
  if (alg->string_value() == "HS256" && !options_.hs256_key.empty()) {
    const std::string mac = pii::Hmac(options_.hs256_key, signed_part);
    if (signature->size() != mac.size() ||
        CRYPTO_memcmp(signature->data(), mac.data(), mac.size()) != 0) {
      return Unauthenticated("signature does not verify");
    }
  } else if (alg->string_value() == "RS256" && keys_->rsa_public != nullptr) {
    if (!RsaVerify(keys_->rsa_public.get(), signed_part, *signature)) {
      return Unauthenticated("signature does not verify");
    }
  } else {
    return Unauthenticated(
        absl::StrCat("algorithm '", TruncateUtf8(alg->string_value(), 16), "' is not accepted"));
  }

  CRM_ASSIGN_OR_RETURN(const google::protobuf::Struct claims, JsonObject(parts[1], "payload"));
  CRM_ASSIGN_OR_RETURN(const std::string issuer, StringClaim(claims, "iss"));
  if (issuer != options_.issuer) return Unauthenticated("issuer is not trusted");
  const auto* aud = Field(claims, "aud");
  bool audience_ok = false;
  if (aud != nullptr && aud->kind_case() == google::protobuf::Value::kStringValue) {
    audience_ok = aud->string_value() == options_.audience;
  } else if (aud != nullptr && aud->kind_case() == google::protobuf::Value::kListValue) {
    for (const auto& v : aud->list_value().values()) {
      audience_ok |= v.kind_case() == google::protobuf::Value::kStringValue &&
                     v.string_value() == options_.audience;
    }
  }
  if (!audience_ok) return Unauthenticated("audience does not include this service");
  Checked checked;
  CRM_ASSIGN_OR_RETURN(const std::optional<absl::Time> exp, TimeClaim(claims, "exp"));
  if (!exp.has_value()) return Unauthenticated("exp is required");
  checked.expires = *exp;
  checked.principal.valid_until = *exp + options_.clock_skew;
  CRM_ASSIGN_OR_RETURN(checked.not_before, TimeClaim(claims, "nbf"));

  Principal& p = checked.principal;
  CRM_ASSIGN_OR_RETURN(p.subject, StringClaim(claims, "sub"));
  if (p.subject.empty()) return Unauthenticated("sub is required");
  CRM_ASSIGN_OR_RETURN(p.territory, StringClaim(claims, "territory"));
  // Trimmed and bounded as records keep territories: a token whose territory
  // no account could hold would have its holder's records refused later, or
  // out of every manager's reach.
  p.territory = std::string(absl::StripAsciiWhitespace(p.territory));
  if (!FitsTerritoryClaim(p.territory)) {
    return Unauthenticated(
        absl::StrCat("territory is longer than ", kMaxTerritoryBytes, " bytes or not on one line"));
  }
  if (const auto* roles = Field(claims, "roles"); roles != nullptr) {
    if (roles->kind_case() != google::protobuf::Value::kListValue) {
      return Unauthenticated("roles is not a list");
    }
    for (const auto& v : roles->list_value().values()) {
      if (v.kind_case() != google::protobuf::Value::kStringValue) {
        return Unauthenticated("roles holds a non-string");
      }
      if (IsKnownRole(v.string_value()) && !p.HasRole(v.string_value())) {
        p.roles.push_back(v.string_value());
      }
    }
  }
  return checked;
}

std::string ClaimsJson(const TokenSpec& spec) {
  google::protobuf::Struct claims;
  auto& f = *claims.mutable_fields();
  f["iss"].set_string_value(spec.issuer);
  f["aud"].set_string_value(spec.audience);
  f["sub"].set_string_value(spec.subject);
  auto* roles = f["roles"].mutable_list_value();
  for (const auto& r : spec.roles) roles->add_values()->set_string_value(r);
  if (!spec.territory.empty()) f["territory"].set_string_value(spec.territory);
  f["iat"].set_number_value(static_cast<double>(absl::ToUnixSeconds(spec.issued_at)));
  f["exp"].set_number_value(static_cast<double>(absl::ToUnixSeconds(spec.issued_at + spec.ttl)));
  if (spec.not_before.has_value()) {
    f["nbf"].set_number_value(static_cast<double>(absl::ToUnixSeconds(*spec.not_before)));
  }
  std::string json;
  (void)google::protobuf::util::MessageToJsonString(claims, &json);
  return json;
}

absl::StatusOr<std::string> SignRaw(absl::string_view header_json, absl::string_view payload_json,
                                    absl::string_view alg, absl::string_view key) {
  const std::string signing_input =
      absl::StrCat(Base64UrlEncode(header_json), ".", Base64UrlEncode(payload_json));
  if (alg == "none") return absl::StrCat(signing_input, ".");
  if (alg == "HS256") {
    return absl::StrCat(signing_input, ".", Base64UrlEncode(pii::Hmac(key, signing_input)));
  }
  if (alg == "RS256") {
    CRM_ASSIGN_OR_RETURN(PkeyPtr pkey, ReadPrivateKey(key));
    CRM_ASSIGN_OR_RETURN(const std::string sig, RsaSign(pkey.get(), signing_input));
    return absl::StrCat(signing_input, ".", Base64UrlEncode(sig));
  }
  return absl::InvalidArgumentError(absl::StrCat("unsupported alg ", alg));
}

absl::StatusOr<std::string> SignHs256(const TokenSpec& spec, absl::string_view key) {
  return SignRaw(R"({"alg":"HS256","typ":"JWT"})", ClaimsJson(spec), "HS256", key);
}

absl::StatusOr<std::string> SignRs256(const TokenSpec& spec, absl::string_view private_key_pem) {
  return SignRaw(R"({"alg":"RS256","typ":"JWT"})", ClaimsJson(spec), "RS256", private_key_pem);
}

}  // namespace crm::auth
