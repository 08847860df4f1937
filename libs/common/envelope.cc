#include "libs/common/envelope.h"

#include <openssl/sha.h>

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"
#include "libs/common/ids.h"

namespace crm {

bool DecodeEvent(absl::string_view bytes, crm::v1::EventEnvelope& into) {
  // A time outside years 1..9999 (or bad nanos) would overflow every
  // consumer's arithmetic on it.
  return into.ParseFromArray(bytes.data(), static_cast<int>(bytes.size())) &&
         !into.stream().empty() && into.stream_version() > 0 &&
         IsValidProtoTimestamp(into.occurred_at());
}

crm::v1::EventEnvelope MakeEnvelope(const google::protobuf::Message& payload,
                                    const std::string& customer_id, const EventContext& ctx) {
  crm::v1::EventEnvelope e;
  e.set_event_id(NewId("evt"));
  e.set_customer_id(customer_id);
  e.set_type(payload.GetDescriptor()->name());
  *e.mutable_occurred_at() = ToProtoTimestamp(ctx.occurred_at);
  e.set_actor(ctx.actor);
  e.set_correlation_id(ctx.correlation_id);
  e.set_causation_id(ctx.causation_id);
  e.set_source(ctx.source);
  e.mutable_payload()->PackFrom(payload);
  return e;
}

absl::Time StampedAfter(absl::Time at, absl::Time last) {
  // Envelopes keep microseconds (ToProtoTimestamp).
  return absl::FromUnixMicros(absl::ToUnixMicros(at)) > last ? at : last + absl::Microseconds(1);
}

absl::Time StampedAfter(absl::Time at, const google::protobuf::Timestamp& last) {
  return StampedAfter(at, FromProtoTimestamp(last));
}

namespace {
// A newline and 32 hex digits: request ids, event ids and import ids are
// validated to characters without a newline, so no key without a
// fingerprint ends like this.
constexpr size_t kFingerprintHex = 32;
constexpr char kFingerprintMark = '\n';
}  // namespace

std::string RequestFingerprint(const google::protobuf::Message& request) {
  std::string bytes;
  {
    google::protobuf::io::StringOutputStream out(&bytes);
    google::protobuf::io::CodedOutputStream coded(&out);
    coded.SetSerializationDeterministic(true);
    request.SerializeToCodedStream(&coded);
  }
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(), digest);
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(digest), kFingerprintHex / 2));
}

std::string CallerRequestKey(const EventContext& ctx, absl::string_view key,
                             const google::protobuf::Message& request) {
  return absl::StrCat(CallerRequestKey(ctx, key), std::string(1, kFingerprintMark),
                      RequestFingerprint(request));
}

RequestKeyParts SplitRequestKey(absl::string_view request_key) {
  const size_t n = request_key.size();
  if (n <= kFingerprintHex || request_key[n - kFingerprintHex - 1] != kFingerprintMark) {
    return {request_key, {}};
  }
  const absl::string_view hex = request_key.substr(n - kFingerprintHex);
  if (!std::all_of(hex.begin(), hex.end(), [](char c) { return absl::ascii_isxdigit(c); })) {
    return {request_key, {}};
  }
  return {request_key.substr(0, n - kFingerprintHex - 1), hex};
}

}  // namespace crm
