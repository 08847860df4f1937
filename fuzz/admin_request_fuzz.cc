// The admin service's request checks and the bearer-token verifier every
// call passes, on arbitrary input: the first byte picks which, the rest is
// a protobuf encoding (requests), a raw token, or a header and claims the
// target signs itself, so the claims parser is reached past the signature.
// Beyond not crashing: errors are INVALID_ARGUMENT naming the field (the
// requests) or UNAUTHENTICATED (tokens), an erased customer id is one the
// services could have minted, an export token reads back the position it
// was sealed with, a remembered token verifies as it did the first time,
// and a page token opens to its position for its own query only.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/time/time.h"
#include "crm/v1/admin.pb.h"
#include "fuzz/fuzz_input.h"
#include "libs/common/admin_service.h"
#include "libs/common/auth/jwt.h"
#include "libs/common/page_token.h"

namespace crm::fuzz {
namespace {

constexpr char kKey[] = "fuzz-hs256-key-of-at-least-32-bytes!";
const absl::Time kNow = absl::FromUnixSeconds(1'800'000'000);

void Erase(absl::string_view payload) {
  crm::v1::EraseCustomerRequest request;
  if (!Decode(payload, request)) return;
  const absl::Status st = CheckEraseCustomerRequest(request);
  CheckValidation(st, "CheckEraseCustomerRequest");
  if (!st.ok()) return;
  // The id becomes a row key every service keeps and reads back on start.
  const std::string& id = request.customer_id();
  Check(!id.empty() && id.size() <= 64, "an erasure of a customer id of the wrong size", id);
  for (const unsigned char c : id) {
    Check(c > 0x20 && c < 0x7f, "an erasure of a customer id with a non-printable byte", id);
  }
  Check(!absl::StripAsciiWhitespace(request.reason()).empty(), "an erasure without a reason");
}

void Export(absl::string_view payload) {
  crm::v1::ExportCustomerRequest request;
  if (!Decode(payload, request)) return;
  const auto after = ExportStartsAfter(request, "leads");
  CheckValidation(after.status(), "ExportStartsAfter");
  if (!after.ok()) return;
  Check(!request.page_token().empty() || *after == 0, "a first page that starts after 0");
  // The next page's token leads back to where this page ended, and only on
  // the service that issued it.
  const uint64_t next = 1 + (*after % (uint64_t{1} << 40)) + request.customer_id().size();
  request.set_page_token(ExportPageToken(request, "leads", next));
  const auto resumed = ExportStartsAfter(request, "leads");
  Check(resumed.ok() && *resumed == next, "an export token does not resume where it was sealed",
        resumed.status().ToString());
  const auto elsewhere = ExportStartsAfter(request, "sales");
  Check(absl::IsInvalidArgument(elsewhere.status()), "an export token read by another service");
}

// A verifier per token: one kept across inputs would answer a token an
// earlier input verified from its memory both times, and the check below
// would compare that memory with itself.
std::unique_ptr<const auth::JwtVerifier> NewVerifier() {
  auth::JwtVerifierOptions o;
  o.hs256_key = kKey;
  o.issuer = "crm-fuzz";
  o.audience = "crm";
  auto v = auth::JwtVerifier::Create(o);
  Check(v.ok(), "cannot create the token verifier", v.status().ToString());
  return *std::move(v);
}

// Verifies `token` twice: the second answer comes from the verifier's
// memory of tokens that passed and must be the first one.
void VerifyTwice(absl::string_view token) {
  const auto verifier = NewVerifier();
  const auto first = verifier->Verify(token, kNow);
  if (!first.ok()) {
    Check(absl::IsUnauthenticated(first.status()), "a bad token is not UNAUTHENTICATED",
          first.status().ToString());
  }
  const auto second = verifier->Verify(token, kNow);
  Check(first.ok() == second.ok(), "a token verifies differently the second time",
        second.status().ToString());
  if (first.ok()) {
    Check(first->subject == second->subject && first->roles == second->roles &&
              first->territory == second->territory,
          "a remembered token names another principal");
    Check(!first->subject.empty(), "a token without a subject verifies");
  }
}

void SignedClaims(absl::string_view payload) {
  const std::vector<std::string> parts = SplitParts(payload, 2);
  if (parts.size() != 2) return;
  auto token = auth::SignRaw(parts[0], parts[1], "HS256", kKey);
  if (token.ok()) VerifyTwice(*token);
}

// Page tokens of every list: any token opens or is refused naming the
// field, a sealed position opens to itself for its query and for no other
// filter, and opening a page keeps its size.
void PageTokens(absl::string_view payload) {
  const std::vector<std::string> parts = SplitParts(payload, 2);
  if (parts.size() != 2) return;
  crm::v1::ExportCustomerRequest request;  // any request: the fingerprint is its filters
  request.set_customer_id(parts[0]);
  CheckValidation(OpenPageToken(request, parts[1], "page_token").status(), "OpenPageToken");
  const std::string token = SealPageToken(request, parts[1]);
  Check(token.empty() == parts[1].empty(), "a position seals to no token, or the end to one");
  const auto position = OpenPageToken(request, token, "page_token");
  if (token.size() > 1024) {
    CheckValidation(position.status(), "OpenPageToken");
  } else {
    Check(position.ok() && *position == parts[1], "a page token does not open to its position",
          position.status().ToString());
  }
  if (!token.empty()) {
    request.set_customer_id(parts[0] + "x");
    const auto other = OpenPageToken(request, token, "page_token");
    CheckValidation(other.status(), "OpenPageToken");
    Check(!other.ok(), "a page token opens for other filters");
  }
  crm::v1::PageRequest page;
  page.set_page_size(static_cast<int32_t>(parts[1].size()) - 2);
  page.set_page_token(SealPageToken(request, parts[1]));
  const auto opened = OpenPage(request, page);
  if (opened.ok())
    Check(opened->page_size() == page.page_size(), "opening a page changes its size");
  const auto size = PageSize(page.page_size(), "page.page_size", 50, 1000);
  CheckValidation(size.status(), "PageSize");
  if (size.ok()) Check(*size >= 1 && *size <= 1000, "a page size out of range");
}

}  // namespace
}  // namespace crm::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto [selector, payload] = crm::fuzz::Choose(data, size);
  switch (selector % 5) {
    case 0:
      crm::fuzz::Erase(payload);
      break;
    case 1:
      crm::fuzz::Export(payload);
      break;
    case 2:
      crm::fuzz::VerifyTwice(payload);
      break;
    case 3:
      crm::fuzz::SignedClaims(payload);
      break;
    default:
      crm::fuzz::PageTokens(payload);
      break;
  }
  return 0;
}
