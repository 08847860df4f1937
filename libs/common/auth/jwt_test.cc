#include "libs/common/auth/jwt.h"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"

namespace crm::auth {
namespace {

constexpr char kKey[] = "a-test-key-that-is-at-least-32-bytes-long";
const absl::Time kNow = absl::FromUnixSeconds(1'700'000'000);

struct RsaPem {
  std::string private_pem;
  std::string public_pem;
};

// A fresh RSA key pair as PEM text.
RsaPem MakeRsa(int bits = 2048) {
  std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> key(EVP_RSA_gen(bits), EVP_PKEY_free);
  auto pem = [](auto write) {
    std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), BIO_free);
    write(bio.get());
    char* data = nullptr;
    const long len = BIO_get_mem_data(bio.get(), &data);
    return std::string(data, static_cast<size_t>(len));
  };
  RsaPem out;
  out.private_pem = pem([&](BIO* b) {
    PEM_write_bio_PrivateKey(b, key.get(), nullptr, nullptr, 0, nullptr, nullptr);
  });
  out.public_pem = pem([&](BIO* b) { PEM_write_bio_PUBKEY(b, key.get()); });
  return out;
}

const RsaPem& Rsa() {
  static const RsaPem rsa = MakeRsa();
  return rsa;
}

TokenSpec Alice() {
  TokenSpec spec;
  spec.subject = "alice";
  spec.roles = {"sales_rep", "not-a-role"};
  spec.territory = "emea";
  spec.issuer = "crm-test";
  spec.audience = "crm";
  spec.issued_at = kNow - absl::Minutes(1);
  spec.ttl = absl::Hours(1);
  return spec;
}

std::unique_ptr<const JwtVerifier> Verifier(bool hs256 = true, bool rs256 = true) {
  JwtVerifierOptions o;
  if (hs256) o.hs256_key = kKey;
  if (rs256) o.rs256_public_key_pem = Rsa().public_pem;
  o.issuer = "crm-test";
  o.audience = "crm";
  auto v = JwtVerifier::Create(o);
  EXPECT_TRUE(v.ok()) << v.status();
  return *std::move(v);
}

void ExpectUnauthenticated(const absl::StatusOr<Principal>& p, absl::string_view why) {
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), absl::StatusCode::kUnauthenticated) << p.status();
  EXPECT_NE(p.status().message().find(why), absl::string_view::npos) << p.status();
}

TEST(Base64UrlTest, RoundTripsEveryLengthWithoutPadding) {
  std::string bytes;
  for (int i = 0; i < 40; ++i) {
    const std::string text = Base64UrlEncode(bytes);
    EXPECT_EQ(text.find('='), std::string::npos);
    auto back = Base64UrlDecode(text);
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_EQ(*back, bytes);
    bytes.push_back(static_cast<char>(0xfb - i));  // bytes that need '-' and '_'
  }
  EXPECT_EQ(Base64UrlEncode("\xfb\xff"), "-_8");
}

TEST(Base64UrlTest, RejectsPaddingForeignCharactersAndStrayBits) {
  EXPECT_FALSE(Base64UrlDecode("YQ==").ok());
  EXPECT_FALSE(Base64UrlDecode("Y+8").ok());
  EXPECT_FALSE(Base64UrlDecode("Y/8").ok());
  EXPECT_FALSE(Base64UrlDecode("YQ.").ok());
  EXPECT_FALSE(Base64UrlDecode("Y").ok());  // impossible length
  EXPECT_TRUE(Base64UrlDecode("YQ").ok());
  EXPECT_FALSE(Base64UrlDecode("YR").ok());  // same byte, non-zero leftover bits
}

TEST(JwtTest, ValidHs256TokenYieldsThePrincipalWithKnownRolesOnly) {
  auto token = SignHs256(Alice(), kKey);
  ASSERT_TRUE(token.ok()) << token.status();
  auto p = Verifier()->Verify(*token, kNow);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->subject, "alice");
  EXPECT_EQ(p->territory, "emea");
  EXPECT_EQ(p->roles, std::vector<std::string>{"sales_rep"});
}

// A territory becomes the territory of the accounts its holder opens: one
// no account could hold is refused with the token, trailing spaces are not.
TEST(JwtTest, ATerritoryIsTrimmedAndMustFitARecord) {
  TokenSpec spec = Alice();
  spec.territory = " emea\n";
  auto p = Verifier()->Verify(*SignHs256(spec, kKey), kNow);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->territory, "emea");
  spec.territory = std::string(kMaxTerritoryBytes + 1, 'e');
  ExpectUnauthenticated(Verifier()->Verify(*SignHs256(spec, kKey), kNow), "territory");
  spec.territory = "emea\tnorth";
  ExpectUnauthenticated(Verifier()->Verify(*SignHs256(spec, kKey), kNow), "territory");
}

TEST(JwtTest, ValidRs256TokenVerifies) {
  auto token = SignRs256(Alice(), Rsa().private_pem);
  ASSERT_TRUE(token.ok()) << token.status();
  auto p = Verifier()->Verify(*token, kNow);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->subject, "alice");
  // The same token with only HS256 configured is refused.
  ExpectUnauthenticated(Verifier(true, false)->Verify(*token, kNow), "not accepted");
}

TEST(JwtTest, TamperedPayloadOrSignatureIsRefused) {
  for (bool rsa : {false, true}) {
    auto token = rsa ? SignRs256(Alice(), Rsa().private_pem) : SignHs256(Alice(), kKey);
    ASSERT_TRUE(token.ok());
    std::vector<std::string> parts = absl::StrSplit(*token, '.');
    // Promote alice to admin, keep the signature.
    TokenSpec admin = Alice();
    admin.roles = {"admin"};
    const std::string forged_payload = Base64UrlEncode(ClaimsJson(admin));
    ExpectUnauthenticated(
        Verifier()->Verify(absl::StrCat(parts[0], ".", forged_payload, ".", parts[2]), kNow),
        "signature does not verify");
    // Flip one signature character.
    std::string sig = parts[2];
    sig[sig.size() / 2] = sig[sig.size() / 2] == 'A' ? 'B' : 'A';
    ExpectUnauthenticated(Verifier()->Verify(absl::StrCat(parts[0], ".", parts[1], ".", sig), kNow),
                          "signature does not verify");
  }
  // Signed with another key.
  auto other = SignHs256(Alice(), "another-key-that-is-at-least-32-bytes!!");
  ExpectUnauthenticated(Verifier()->Verify(*other, kNow), "signature does not verify");
}

TEST(JwtTest, WrongAlgorithmsAreRefused) {
  const std::string claims = ClaimsJson(Alice());
  auto none = SignRaw(R"({"alg":"none","typ":"JWT"})", claims, "none", "");
  ExpectUnauthenticated(Verifier()->Verify(*none, kNow), "'none' is not accepted");
  // alg=none with a signature segment appended anyway.
  ExpectUnauthenticated(Verifier()->Verify(*none + "AAAA", kNow), "not accepted");
  auto hs512 = SignRaw(R"({"alg":"HS512"})", claims, "HS256", kKey);
  ExpectUnauthenticated(Verifier()->Verify(*hs512, kNow), "'HS512' is not accepted");
  // Key confusion: HMAC keyed with the RSA public key, against a verifier
  // that only trusts that RSA key.
  auto confused = SignRaw(R"({"alg":"HS256"})", claims, "HS256", Rsa().public_pem);
  ExpectUnauthenticated(Verifier(false, true)->Verify(*confused, kNow), "'HS256' is not accepted");
  auto no_alg = SignRaw(R"({"typ":"JWT"})", claims, "HS256", kKey);
  ExpectUnauthenticated(Verifier()->Verify(*no_alg, kNow), "no alg");
  auto crit = SignRaw(R"({"alg":"HS256","crit":["exp"]})", claims, "HS256", kKey);
  ExpectUnauthenticated(Verifier()->Verify(*crit, kNow), "crit");
}

TEST(JwtTest, ExpiryAndNotBeforeAllowOnlyTheClockSkew) {
  auto token = SignHs256(Alice(), kKey);  // expires at kNow + 59 min
  auto verified = Verifier()->Verify(*token, kNow + absl::Minutes(59));
  ASSERT_TRUE(verified.ok()) << verified.status();
  // A call that outlives the check (a stream) is held to the same moment.
  EXPECT_EQ(verified->valid_until, kNow + absl::Minutes(60));
  EXPECT_TRUE(Verifier()->Verify(*token, kNow + absl::Minutes(59) + absl::Seconds(59)).ok());
  ExpectUnauthenticated(Verifier()->Verify(*token, kNow + absl::Minutes(61)), "expired");

  TokenSpec later = Alice();
  later.not_before = kNow + absl::Minutes(5);
  auto early = SignHs256(later, kKey);
  ExpectUnauthenticated(Verifier()->Verify(*early, kNow), "not valid yet");
  EXPECT_TRUE(Verifier()->Verify(*early, kNow + absl::Minutes(4) + absl::Seconds(30)).ok());

  auto no_exp = SignRaw(R"({"alg":"HS256"})", R"({"iss":"crm-test","aud":"crm","sub":"alice"})",
                        "HS256", kKey);
  ExpectUnauthenticated(Verifier()->Verify(*no_exp, kNow), "exp is required");
}

TEST(JwtTest, ARememberedTokenIsStillHeldToExpiryAndNotBefore) {
  auto v = Verifier();
  auto token = SignHs256(Alice(), kKey);
  ExpectUnauthenticated(v->Verify(*token, kNow + absl::Minutes(61)), "expired");
  EXPECT_EQ(v->CachedTokens(), 0u);  // a refused token is not remembered

  auto first = v->Verify(*token, kNow);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(v->CachedTokens(), 1u);
  auto again = v->Verify(*token, kNow + absl::Minutes(30));
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->subject, "alice");
  EXPECT_EQ(again->roles, first->roles);
  EXPECT_EQ(again->territory, "emea");
  ExpectUnauthenticated(v->Verify(*token, kNow + absl::Minutes(61)), "expired");

  // Another signature on the same header and payload is another token.
  std::string forged = *token;
  forged.back() = forged.back() == 'A' ? 'B' : 'A';
  ExpectUnauthenticated(v->Verify(forged, kNow), "signature");

  TokenSpec later = Alice();
  later.not_before = kNow + absl::Minutes(5);
  auto early = SignHs256(later, kKey);
  EXPECT_TRUE(v->Verify(*early, kNow + absl::Minutes(10)).ok());
  ExpectUnauthenticated(v->Verify(*early, kNow), "not valid yet");
}

TEST(JwtTest, RememberedTokensAreBounded) {
  auto v = Verifier(/*hs256=*/true, /*rs256=*/false);
  for (size_t i = 0; i < JwtVerifier::kMaxCachedTokens + 10; ++i) {
    TokenSpec spec = Alice();
    spec.subject = absl::StrCat("user-", i);
    auto token = SignHs256(spec, kKey);
    auto p = v->Verify(*token, kNow);
    ASSERT_TRUE(p.ok()) << p.status();
    EXPECT_EQ(p->subject, spec.subject);
    EXPECT_LE(v->CachedTokens(), JwtVerifier::kMaxCachedTokens);
  }
}

TEST(JwtTest, WrongIssuerOrAudienceIsRefused) {
  TokenSpec spec = Alice();
  spec.issuer = "someone-else";
  ExpectUnauthenticated(Verifier()->Verify(*SignHs256(spec, kKey), kNow), "issuer");
  spec = Alice();
  spec.audience = "billing";
  ExpectUnauthenticated(Verifier()->Verify(*SignHs256(spec, kKey), kNow), "audience");
  // An audience list that includes us is fine.
  const std::string exp = absl::StrCat(absl::ToUnixSeconds(kNow + absl::Hours(1)));
  auto listed = SignRaw(
      R"({"alg":"HS256"})",
      absl::StrCat(R"({"iss":"crm-test","aud":["billing","crm"],"sub":"bob","exp":)", exp, "}"),
      "HS256", kKey);
  auto p = Verifier()->Verify(*listed, kNow);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_TRUE(p->roles.empty());
}

TEST(JwtTest, MalformedTokensAreRefused) {
  auto v = Verifier();
  ExpectUnauthenticated(v->Verify("", kNow), "empty");
  ExpectUnauthenticated(v->Verify("abc", kNow), "compact JWS");
  ExpectUnauthenticated(v->Verify("a.b", kNow), "compact JWS");
  ExpectUnauthenticated(v->Verify("a.b.c.d", kNow), "compact JWS");
  ExpectUnauthenticated(v->Verify("!!.e30.AAAA", kNow), "header is not base64url");
  ExpectUnauthenticated(v->Verify(Base64UrlEncode("[1]") + ".e30.AAAA", kNow), "JSON object");
  ExpectUnauthenticated(v->Verify(std::string(9000, 'a'), kNow), "8 KiB");
  const std::string exp = absl::StrCat(absl::ToUnixSeconds(kNow + absl::Hours(1)));
  auto not_json = SignRaw(R"({"alg":"HS256"})", "not json", "HS256", kKey);
  ExpectUnauthenticated(v->Verify(*not_json, kNow), "payload is not a JSON object");
  auto roles_string = SignRaw(
      R"({"alg":"HS256"})",
      absl::StrCat(R"({"iss":"crm-test","aud":"crm","sub":"a","roles":"admin","exp":)", exp, "}"),
      "HS256", kKey);
  ExpectUnauthenticated(v->Verify(*roles_string, kNow), "roles is not a list");
  auto no_sub =
      SignRaw(R"({"alg":"HS256"})",
              absl::StrCat(R"({"iss":"crm-test","aud":"crm","exp":)", exp, "}"), "HS256", kKey);
  ExpectUnauthenticated(v->Verify(*no_sub, kNow), "sub is required");
  auto exp_string =
      SignRaw(R"({"alg":"HS256"})", R"({"iss":"crm-test","aud":"crm","sub":"a","exp":"tomorrow"})",
              "HS256", kKey);
  ExpectUnauthenticated(v->Verify(*exp_string, kNow), "exp is not a number");
  // Beyond int64 seconds: refused, not converted (undefined behaviour).
  auto exp_huge = SignRaw(R"({"alg":"HS256"})",
                          R"({"iss":"crm-test","aud":"crm","sub":"a","exp":1e300})", "HS256", kKey);
  ExpectUnauthenticated(v->Verify(*exp_huge, kNow), "exp is out of range");
}

TEST(JwtTest, VerifierRefusesWeakOrMissingKeys) {
  JwtVerifierOptions o;
  o.issuer = "i";
  o.audience = "a";
  EXPECT_FALSE(JwtVerifier::Create(o).ok());
  o.hs256_key = "short";
  EXPECT_FALSE(JwtVerifier::Create(o).ok());
  o.hs256_key.clear();
  o.rs256_public_key_pem = MakeRsa(1024).public_pem;
  EXPECT_FALSE(JwtVerifier::Create(o).ok());
  o.rs256_public_key_pem = "-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----\n";
  EXPECT_FALSE(JwtVerifier::Create(o).ok());
  o.rs256_public_key_pem = Rsa().public_pem;
  EXPECT_TRUE(JwtVerifier::Create(o).ok());
}

}  // namespace
}  // namespace crm::auth
