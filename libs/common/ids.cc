#include "libs/common/ids.h"

#include <openssl/sha.h>

#include <cstdint>

#include "absl/random/random.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "google/protobuf/util/time_util.h"

namespace crm {
namespace {

constexpr char kCrockford[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

absl::BitGen& ThreadBitGen() {
  thread_local absl::BitGen gen;
  return gen;
}

}  // namespace

std::string NewId(absl::string_view prefix) {
  const uint64_t ms = static_cast<uint64_t>(absl::ToUnixMillis(absl::Now()));
  const uint64_t hi = absl::Uniform<uint64_t>(ThreadBitGen());
  const uint64_t lo = absl::Uniform<uint64_t>(ThreadBitGen());
  return EncodeId(prefix, ms, hi, lo);
}

std::string IdFromEvent(absl::string_view prefix, absl::Time at, absl::string_view seed) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(seed.data()), seed.size(), digest);
  uint64_t hi = 0;
  for (int i = 0; i < 8; ++i) hi = (hi << 8) | digest[i];
  const uint64_t lo = (uint64_t{digest[8]} << 8) | digest[9];
  const int64_t ms = absl::ToUnixMillis(at);
  return EncodeId(prefix, ms < 0 ? 0 : static_cast<uint64_t>(ms), hi, lo);
}

std::string EncodeId(absl::string_view prefix, uint64_t ms, uint64_t hi, uint64_t lo) {
  // 128 bits: 48 time bits, 80 random bits.
  const unsigned __int128 bits = (static_cast<unsigned __int128>(ms & 0xFFFFFFFFFFFF) << 80) |
                                 (static_cast<unsigned __int128>(hi) << 16) | (lo & 0xFFFF);
  // 130 bits in 26 characters, most significant first: the first character
  // carries 3 bits, and the first ten the time, so ids sort by it.
  char chars[26];
  for (int c = 0; c < 26; ++c) {
    chars[c] = kCrockford[static_cast<int>(bits >> (125 - 5 * c)) & 31];
  }
  std::string out;
  out.reserve(prefix.size() + 1 + sizeof(chars));
  out.append(prefix.data(), prefix.size());
  out.push_back('_');
  out.append(chars, sizeof(chars));
  return out;
}

google::protobuf::Timestamp ToProtoTimestamp(absl::Time t) {
  google::protobuf::Timestamp ts;
  const int64_t us = absl::ToUnixMicros(t);
  // Floored: before 1970 the nanos stay in [0, 1e9) as a Timestamp needs
  // (-0.5 s is -1 s + 500,000,000 ns, not 0 s - 500,000,000 ns).
  int64_t seconds = us / 1000000;
  int64_t micros = us % 1000000;
  if (micros < 0) {
    --seconds;
    micros += 1000000;
  }
  ts.set_seconds(seconds);
  ts.set_nanos(static_cast<int32_t>(micros * 1000));
  return ts;
}

bool IsValidProtoTimestamp(const google::protobuf::Timestamp& ts) {
  using google::protobuf::util::TimeUtil;
  return ts.seconds() >= TimeUtil::kTimestampMinSeconds &&
         ts.seconds() <= TimeUtil::kTimestampMaxSeconds && ts.nanos() >= 0 &&
         ts.nanos() <= 999'999'999;
}

absl::Time FromProtoTimestamp(const google::protobuf::Timestamp& ts) {
  return absl::FromUnixSeconds(ts.seconds()) + absl::Nanoseconds(ts.nanos());
}

std::string FormatRfc3339(absl::Time t) {
  // On every log line and produced record (ce_time): the digits are
  // written directly, since FormatTime interprets its format string.
  const absl::TimeZone::CivilInfo civil = absl::UTCTimeZone().At(t);
  const absl::CivilSecond s = civil.cs;
  if (t == absl::InfiniteFuture() || t == absl::InfinitePast() || s.year() < 0 || s.year() > 9999) {
    return absl::FormatTime("%Y-%m-%dT%H:%M:%E6SZ", t, absl::UTCTimeZone());
  }
  std::string out = "0000-00-00T00:00:00.000000Z";
  auto digits = [&out](size_t end, int64_t value) {  // right-aligned in [.., end)
    for (size_t i = end; value > 0; value /= 10) out[--i] = static_cast<char>('0' + value % 10);
  };
  digits(4, s.year());
  digits(7, s.month());
  digits(10, s.day());
  digits(13, s.hour());
  digits(16, s.minute());
  digits(19, s.second());
  digits(26, absl::ToInt64Microseconds(civil.subsecond));
  return out;
}

}  // namespace crm
