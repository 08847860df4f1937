#include "libs/common/auth/auth_interceptor.h"

#include <openssl/rand.h>

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/message.h"
#include "libs/common/auth/policy.h"
#include "libs/common/grpc_status.h"

namespace crm::auth {
namespace {

using grpc::experimental::InterceptionHookPoints;

// Where the verdict travels from interceptor to handler. Never sent on the
// wire by us; a copy a client sends is erased first.
constexpr char kVerdictKey[] = "x-crm-auth-verdict";
// Headers that used to carry identity unverified; the token replaces them.
constexpr char kActorKey[] = "x-crm-actor";
constexpr char kLegacyRolesKey[] = "x-crm-roles";

// A random per-process value: a verdict without it was not written by our
// interceptor (e.g. a server built without it), and is refused.
const std::string& Seal() {
  static const std::string seal = [] {
    unsigned char bytes[16] = {};
    if (RAND_bytes(bytes, sizeof(bytes)) != 1) std::abort();  // no entropy: cannot run safely
    return std::string(absl::BytesToHexString(
        absl::string_view(reinterpret_cast<const char*>(bytes), sizeof(bytes))));
  }();
  return seal;
}

// Length-prefixed fields ("5:alice"), so any byte in a claim is safe.
void Put(std::string& out, absl::string_view field) {
  absl::StrAppend(&out, field.size(), ":", field);
}

bool Take(absl::string_view& in, absl::string_view& field) {
  const size_t colon = in.find(':');
  size_t len = 0;
  if (colon == absl::string_view::npos || !absl::SimpleAtoi(in.substr(0, colon), &len) ||
      in.size() - colon - 1 < len) {
    return false;
  }
  field = in.substr(colon + 1, len);
  in.remove_prefix(colon + 1 + len);
  return true;
}

std::string EncodeVerdict(const absl::StatusOr<Principal>& verdict) {
  std::string out;
  Put(out, Seal());
  Put(out, absl::StrCat(static_cast<int>(verdict.status().code())));
  Put(out, verdict.status().message());
  if (verdict.ok()) {
    Put(out, verdict->subject);
    Put(out, verdict->territory);
    Put(out, absl::StrJoin(verdict->roles, ","));
    Put(out, absl::StrCat(absl::ToUnixMicros(verdict->valid_until)));
  }
  return out;
}

absl::StatusOr<Principal> DecodeVerdict(absl::string_view in) {
  const absl::Status forged = absl::UnauthenticatedError("no verified caller for this call");
  absl::string_view seal, code_text, message;
  int code = 0;
  if (!Take(in, seal) || seal != Seal() || !Take(in, code_text) ||
      !absl::SimpleAtoi(code_text, &code) || !Take(in, message)) {
    return forged;
  }
  if (code != 0) return absl::Status(static_cast<absl::StatusCode>(code), message);
  absl::string_view subject, territory, roles, valid_until_text;
  int64_t valid_until = 0;
  if (!Take(in, subject) || !Take(in, territory) || !Take(in, roles) || subject.empty() ||
      !Take(in, valid_until_text) || !absl::SimpleAtoi(valid_until_text, &valid_until)) {
    return forged;
  }
  Principal p;
  p.subject = std::string(subject);
  p.territory = std::string(territory);
  p.valid_until = absl::FromUnixMicros(valid_until);
  for (absl::string_view r : absl::StrSplit(roles, ',', absl::SkipEmpty())) p.roles.emplace_back(r);
  return p;
}

absl::StatusOr<absl::string_view> BearerToken(
    const std::multimap<grpc::string_ref, grpc::string_ref>& md) {
  auto [it, end] = md.equal_range("authorization");
  if (it == end) {
    return absl::UnauthenticatedError(
        "missing bearer token: send metadata 'authorization: Bearer <JWT>'");
  }
  if (std::next(it) != end) return absl::UnauthenticatedError("more than one authorization header");
  const absl::string_view value(it->second.data(), it->second.size());
  constexpr absl::string_view kScheme = "bearer ";
  if (value.size() <= kScheme.size() ||
      !absl::EqualsIgnoreCase(value.substr(0, kScheme.size()), kScheme)) {
    return absl::UnauthenticatedError("authorization header is not 'Bearer <JWT>'");
  }
  return absl::StripAsciiWhitespace(value.substr(kScheme.size()));
}

class AuthInterceptor final : public grpc::experimental::Interceptor {
 public:
  AuthInterceptor(grpc::experimental::ServerRpcInfo* info, const JwtVerifier& verifier,
                  audit::AuditLog* audit)
      : method_(info->method()),
        verifier_(verifier),
        audit_(IsOpenMethod(method_) ? nullptr : audit),
        ctx_(info->server_context()) {}

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::POST_RECV_INITIAL_METADATA)) {
      auto* md = methods->GetRecvInitialMetadata();
      // Decide before erasing: the string_refs of erased entries die with them.
      absl::StatusOr<Principal> verdict = Decide(*md);
      for (const char* key : {kVerdictKey, kActorKey, kLegacyRolesKey}) md->erase(key);
      refused_ = verdict.status();
      if (audit_ != nullptr) {
        if (auto it = md->find("x-correlation-id"); it != md->end()) {
          // A longer one is refused (Decide), but a denial is audited first.
          correlation_id_.assign(it->second.data(),
                                 std::min<size_t>(it->second.size(), kMaxCorrelationId));
        }
      }
      if (!IsOpenMethod(method_)) {
        verdict_value_ = EncodeVerdict(verdict);
        md->emplace(kVerdictKey, verdict_value_);
        if (verdict.ok()) {
          actor_value_ = verdict->subject;
          md->emplace(kActorKey, actor_value_);
        }
      }
    }
    if (audit_ != nullptr && !target_seen_ &&
        methods->QueryInterceptionHookPoint(InterceptionHookPoints::POST_RECV_MESSAGE)) {
      // Our services speak protobuf only, so the message is one. A stream's
      // first message names the target.
      if (const void* message = methods->GetRecvMessage(); message != nullptr) {
        ids_ = IdsOf(*static_cast<const google::protobuf::Message*>(message));
      }
      target_seen_ = true;
    }
    if (audit_ != nullptr &&
        methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_STATUS)) {
      RecordIfDenied(refused_.ok() ? FromGrpcStatus(methods->GetSendStatus()) : refused_);
    }
    if (!refused_.ok()) {
      // Backstop: whatever the handler did, a refused call answers with the
      // refusal and without a response message.
      if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_MESSAGE)) {
        if (auto* buffer = methods->GetSerializedSendMessage(); buffer != nullptr) buffer->Clear();
      }
      if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_STATUS)) {
        methods->ModifySendStatus(ToGrpcStatus(refused_));
      }
    }
    methods->Proceed();
  }

 private:
  absl::StatusOr<Principal> Decide(const std::multimap<grpc::string_ref, grpc::string_ref>& md) {
    if (IsOpenMethod(method_)) return Principal{};
    auto token = BearerToken(md);
    if (!token.ok()) return token.status();
    auto principal = verifier_.Verify(*token, absl::Now());
    if (!principal.ok()) return principal.status();
    // Known from here on, also when the method table refuses the call.
    subject_ = principal->subject;
    if (auto st = Authorize(method_, *principal); !st.ok()) return st;
    // Only gRPC's metadata limit (kilobytes) would bound it otherwise.
    // Checked last, so a refused caller is still audited as one.
    for (auto [it, end] = md.equal_range("x-correlation-id"); it != end; ++it) {
      if (it->second.size() > kMaxCorrelationId) {
        return absl::InvalidArgumentError(
            absl::StrCat("x-correlation-id: longer than ", kMaxCorrelationId, " bytes"));
      }
    }
    return principal;
  }

  void RecordIfDenied(const absl::Status& status) {
    if (status.code() != absl::StatusCode::kUnauthenticated &&
        status.code() != absl::StatusCode::kPermissionDenied) {
      return;
    }
    audit::Denial d;
    d.method = method_;
    d.target = RefusalTarget(ids_, status);
    d.subject = status.code() == absl::StatusCode::kUnauthenticated ? "" : subject_;
    d.peer = ctx_ != nullptr ? PeerAddress(ctx_->peer()) : "";
    d.correlation_id = std::move(correlation_id_);
    d.status = status;
    d.at = absl::Now();
    audit_->Record(std::move(d));
  }

  const std::string method_;
  const JwtVerifier& verifier_;
  audit::AuditLog* const audit_;
  grpc::ServerContextBase* const ctx_;
  absl::Status refused_;
  std::string subject_;
  RequestIds ids_;
  bool target_seen_ = false;
  std::string correlation_id_;
  // Storage the metadata string_refs point into; lives as long as the call.
  std::string verdict_value_;
  std::string actor_value_;
};

}  // namespace

RequestIds IdsOf(const google::protobuf::Message& request) {
  RequestIds ids;
  const google::protobuf::Descriptor* d = request.GetDescriptor();
  const google::protobuf::Reflection* r = request.GetReflection();
  for (int i = 0; i < d->field_count(); ++i) {
    const google::protobuf::FieldDescriptor* f = d->field(i);
    if (f->is_repeated() || f->cpp_type() != google::protobuf::FieldDescriptor::CPPTYPE_STRING ||
        !absl::EndsWith(f->name(), "_id") || f->name() == "request_id") {
      continue;
    }
    std::string value = r->GetString(request, f);
    // Bounded: the value is the caller's, and it goes into the audit log.
    if (!value.empty()) ids.emplace_back(f->name(), value.substr(0, 128));
  }
  return ids;
}

std::string RefusalTarget(const RequestIds& ids, const absl::Status& refusal) {
  const absl::string_view message = refusal.message();
  // "<field>: no <value> that the caller may access": a refusal of that
  // record. One naming the field without its value ("owner_id: a rep
  // converts to themselves") refuses the caller's choice of a person, not
  // a record, and is filed under the request's record.
  for (const auto& [field, value] : ids) {
    if (absl::StartsWith(message, field) && message.substr(field.size(), 1) == ":" &&
        absl::StrContains(message.substr(field.size()), value)) {
      return value;
    }
  }
  return ids.empty() ? "" : ids.front().second;
}

std::string RequestTarget(const google::protobuf::Message& request) {
  return RefusalTarget(IdsOf(request), absl::OkStatus());
}

std::string PeerAddress(absl::string_view peer) {
  absl::string_view rest = peer;
  if (!absl::ConsumePrefix(&rest, "ipv4:") && !absl::ConsumePrefix(&rest, "ipv6:")) {
    return std::string(peer);  // unix:, or something new: keep it whole
  }
  if (absl::ConsumePrefix(&rest, "[")) return std::string(rest.substr(0, rest.find(']')));
  return std::string(rest.substr(0, rest.rfind(':')));
}

absl::StatusOr<Principal> CallerFrom(const grpc::ServerContextBase& ctx) {
  const auto& md = ctx.client_metadata();
  auto [it, end] = md.equal_range(kVerdictKey);
  if (it == end || std::next(it) != end) {
    return absl::UnauthenticatedError("no verified caller for this call");
  }
  return DecodeVerdict(absl::string_view(it->second.data(), it->second.size()));
}

grpc::experimental::Interceptor* AuthInterceptorFactory::CreateServerInterceptor(
    grpc::experimental::ServerRpcInfo* info) {
  // gRPC takes ownership of the returned interceptor.
  return std::make_unique<AuthInterceptor>(info, *verifier_, audit_).release();
}

}  // namespace crm::auth
