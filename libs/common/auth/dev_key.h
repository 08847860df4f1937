#pragma once

// The development signing key. `./crm up`, the integration tests and
// `crmctl token` use it so a local stack works out of the box. It is public
// (it is in the repository), so a service refuses it on a non-loopback
// address, --allow-insecure or not. Never use it in production: set
// CRM_JWT_HS256_KEY_FILE or CRM_JWT_RS256_PUBLIC_KEY_FILE instead.
namespace crm::auth {

inline constexpr char kDevHs256Key[] = "crm-dev-only-hs256-key--do-not-use-in-production";
// The PII master key of ./crm up and the tests: as public as the token key.
inline constexpr char kDevPiiMasterKeyHex[] =
    "63726d2d6465762d6f6e6c792d7069692d6d61737465722d6b65792d2d2d2d21";
inline constexpr char kDefaultIssuer[] = "crm-dev";
inline constexpr char kDefaultAudience[] = "crm";

}  // namespace crm::auth
