#pragma once

// What the fuzz targets share: the input as a choice plus bytes, protobuf
// decoding of those bytes, and the checks a target makes beyond "does not
// crash" (a failed check aborts, which libFuzzer and the standalone driver
// both report as a failure with the input that caused it).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/message.h"
#include "google/protobuf/util/message_differencer.h"
#include "libs/common/pii/field_sealer.h"
#include "libs/common/subscriber.h"
#include "libs/common/testing/temp_dir.h"

namespace crm::fuzz {

// The first byte picks what the input exercises; the rest is its payload.
struct Choice {
  uint8_t selector = 0;
  absl::string_view payload;
};

inline Choice Choose(const uint8_t* data, size_t size) {
  if (size == 0) return {};
  return {data[0], absl::string_view(reinterpret_cast<const char*>(data + 1), size - 1)};
}

// Splits `bytes` into at most `max` parts, each a 2-byte little-endian
// length and that many bytes (a short last part takes what is left): a
// structured input the fuzzer can still mutate byte by byte.
inline std::vector<std::string> SplitParts(absl::string_view bytes, size_t max) {
  std::vector<std::string> parts;
  while (bytes.size() >= 2 && parts.size() < max) {
    size_t len =
        static_cast<uint8_t>(bytes[0]) | (static_cast<size_t>(static_cast<uint8_t>(bytes[1])) << 8);
    bytes.remove_prefix(2);
    if (len > bytes.size()) len = bytes.size();
    parts.emplace_back(bytes.substr(0, len));
    bytes.remove_prefix(len);
  }
  return parts;
}

[[noreturn]] inline void Fail(absl::string_view what, absl::string_view detail = "") {
  std::fprintf(stderr, "fuzz check failed: %.*s %.*s\n", static_cast<int>(what.size()), what.data(),
               static_cast<int>(detail.size()), detail.data());
  std::abort();
}

inline void Check(bool condition, absl::string_view what, absl::string_view detail = "") {
  if (!condition) Fail(what, detail);
}

// A request validator answers bad input with INVALID_ARGUMENT whose
// message starts with the field ("field: reason"); any other code would
// reach the client as the wrong gRPC status.
inline void CheckValidation(const absl::Status& status, absl::string_view what) {
  if (status.ok()) return;
  Check(status.code() == absl::StatusCode::kInvalidArgument, what, status.ToString());
  // A field path: a lowercase name, then its reason (":"), a subfield (".")
  // or an element ("[").
  const absl::string_view m = status.message();
  size_t name = 0;
  while (name < m.size() &&
         (absl::ascii_islower(m[name]) || absl::ascii_isdigit(m[name]) || m[name] == '_')) {
    ++name;
  }
  const bool names_field = name > 0 && absl::ascii_islower(m[0]) && name < m.size() &&
                           (m[name] == ':' || m[name] == '.' || m[name] == '[') &&
                           m.find(": ") != absl::string_view::npos;
  Check(names_field, what, "message does not start with the field: " + status.ToString());
}

// Decodes `bytes` as `message`; false for bytes that are no valid encoding
// (the target then has nothing to check). Every request is refused with a
// sealed-looking string in any field before a handler sees it
// (serve_unary.h): that walk runs on each decoded input too.
inline bool Decode(absl::string_view bytes, google::protobuf::Message& message) {
  if (!message.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) return false;
  CheckValidation(pii::RefuseSealedInput(message), "RefuseSealedInput");
  return true;
}

template <typename T>
std::unique_ptr<T> OpenOrFail(absl::StatusOr<std::unique_ptr<T>> opened, absl::string_view what) {
  Check(opened.ok(), what, opened.status().ToString());
  return *std::move(opened);
}

// A consumer of the topics under fuzzing: its databases in a temp dir that
// lives as long as it, and a dead-letter sink that counts what it parks
// (undecodable messages, events it rejects) instead of producing them.
class CountingConsumer {
 public:
  virtual ~CountingConsumer() = default;
  virtual Subscriber& subscriber() = 0;
  size_t dead_letters() const { return *dead_letters_; }

 protected:
  SubscriberOptions Options() const {
    SubscriberOptions options;
    options.group_id = "fuzz";
    options.dead_letter_sink = [dead_letters = dead_letters_](const std::vector<DeadLetter>& l) {
      *dead_letters += l.size();
      return absl::OkStatus();
    };
    return options;
  }

  testing::TempDir dir_;  // before the derived class's databases: outlives them

 private:
  std::shared_ptr<size_t> dead_letters_ = std::make_shared<size_t>(0);
};

inline bool Same(const google::protobuf::Message& a, const google::protobuf::Message& b) {
  return google::protobuf::util::MessageDifferencer::Equals(a, b);
}

}  // namespace crm::fuzz
