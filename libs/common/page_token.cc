#include "libs/common/page_token.h"

#include <openssl/sha.h>

#include <algorithm>
#include <memory>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"

namespace crm {
namespace {

constexpr size_t kFingerprintBytes = 8;

// The request's filters: every field but the paging ones, serialized
// deterministically (map order), with the request type's name.
std::string Fingerprint(const google::protobuf::Message& request) {
  std::unique_ptr<google::protobuf::Message> query(request.New());
  query->CopyFrom(request);
  const auto* descriptor = query->GetDescriptor();
  const auto* reflection = query->GetReflection();
  for (int i = 0; i < descriptor->field_count(); ++i) {
    const auto* field = descriptor->field(i);
    if (field->is_repeated()) continue;
    if (field->type() == google::protobuf::FieldDescriptor::TYPE_MESSAGE &&
        field->message_type() == crm::v1::PageRequest::descriptor()) {
      reflection->ClearField(query.get(), field);  // the token and the page size
    } else if (field->name() == "page_token" &&
               field->type() == google::protobuf::FieldDescriptor::TYPE_STRING) {
      reflection->ClearField(query.get(), field);
    }
  }
  std::string bytes = std::string(descriptor->full_name());
  bytes.push_back('\0');
  {
    google::protobuf::io::StringOutputStream raw(&bytes);
    google::protobuf::io::CodedOutputStream out(&raw);
    out.SetSerializationDeterministic(true);
    query->SerializeToCodedStream(&out);
  }
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(), digest);
  return std::string(reinterpret_cast<const char*>(digest), kFingerprintBytes);
}

}  // namespace

std::string SealPageToken(const google::protobuf::Message& request, absl::string_view position) {
  if (position.empty()) return "";
  return absl::WebSafeBase64Escape(absl::StrCat(Fingerprint(request), position));
}

absl::StatusOr<std::string> OpenPageToken(const google::protobuf::Message& request,
                                          absl::string_view token, absl::string_view field) {
  if (token.empty()) return std::string();
  // A damaged token and one of another query look alike (a damaged one's
  // fingerprint does not match): one answer for both.
  std::string raw;
  if (token.size() > 1024 || !absl::WebSafeBase64Unescape(token, &raw) ||
      raw.size() <= kFingerprintBytes ||
      raw.compare(0, kFingerprintBytes, Fingerprint(request)) != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        field,
        ": not a token of this query; pass the previous reply's next_page_token with the same "
        "filters, or none to start again"));
  }
  return raw.substr(kFingerprintBytes);
}

absl::StatusOr<crm::v1::PageRequest> OpenPage(const google::protobuf::Message& request,
                                              const crm::v1::PageRequest& page,
                                              absl::string_view field) {
  crm::v1::PageRequest opened = page;
  auto position = OpenPageToken(request, page.page_token(), field);
  if (!position.ok()) return position.status();
  opened.set_page_token(*std::move(position));
  return opened;
}

absl::StatusOr<size_t> PageSize(int32_t page_size, absl::string_view field, size_t fallback,
                                size_t max) {
  if (page_size < 0) return absl::InvalidArgumentError(absl::StrCat(field, ": negative"));
  if (page_size == 0) return std::min(fallback, max);
  return std::min(static_cast<size_t>(page_size), max);
}

}  // namespace crm
