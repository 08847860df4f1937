#include "libs/common/service_host.h"

#include <signal.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/resource_quota.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/support/server_interceptor.h"
#include "libs/common/auth/auth_interceptor.h"
#include "libs/common/auth/jwt.h"
#include "libs/common/auth/policy.h"
#include "libs/common/log.h"
#include "libs/common/metrics.h"
#include "libs/common/pii/pii_interceptor.h"

namespace crm {
namespace {

// Threads for synchronous gRPC services (server reflection): its pollers
// and the streams it serves at once.
constexpr int kSyncServerThreads = 16;

sigset_t ShutdownSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  return set;
}

// The RPC metrics of one method. Looked up once per method: a registry
// lookup builds and compares label maps under the registry's lock.
class MethodMetrics {
 public:
  explicit MethodMetrics(std::string method)
      : method_(std::move(method)),
        duration_(MetricsRegistry::Default().GetHistogram("crm_rpc_duration_seconds",
                                                          "RPC latency from arrival to status",
                                                          {{"method", method_}})) {}

  const std::string& method() const { return method_; }

  void Record(grpc::StatusCode code, absl::Duration took) {
    duration_.Observe(absl::ToDoubleSeconds(took));
    const size_t c = static_cast<size_t>(code);
    if (c >= by_code_.size()) {  // not a canonical code: not kept
      CounterFor(c).Inc();
      return;
    }
    Counter* counter = by_code_[c].load(std::memory_order_acquire);
    if (counter == nullptr) {
      // Racing callers get the same counter from the registry.
      counter = &CounterFor(c);
      by_code_[c].store(counter, std::memory_order_release);
    }
    counter->Inc();
  }

 private:
  Counter& CounterFor(size_t code) const {
    return MetricsRegistry::Default().GetCounter(
        "crm_rpc_requests_total", "RPCs served, by method and status code",
        {{"method", method_}, {"code", absl::StrCat(code)}});
  }

  const std::string method_;
  Histogram& duration_;
  std::array<std::atomic<Counter*>, 17> by_code_{};  // OK .. UNAUTHENTICATED
};

// One access-log line per RPC: method, canonical code and latency,
// and the RPC metrics.
class AccessLog final : public grpc::experimental::Interceptor {
 public:
  explicit AccessLog(MethodMetrics& metrics) : metrics_(metrics), start_(absl::Now()) {}

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    using grpc::experimental::InterceptionHookPoints;
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::POST_RECV_INITIAL_METADATA)) {
      // The caller's correlation id ties this line to the events it caused.
      auto* md = methods->GetRecvInitialMetadata();
      if (auto it = md->find("x-correlation-id"); it != md->end()) {
        // The call is refused if it is longer; the log line shows its head.
        correlation_id_.assign(it->second.data(),
                               std::min(it->second.size(), auth::kMaxCorrelationId));
      }
    }
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_STATUS)) {
      const grpc::Status status = methods->GetSendStatus();
      const absl::Duration took = absl::Now() - start_;
      metrics_.Record(status.error_code(), took);
      const std::string code = absl::StrCat(static_cast<int>(status.error_code()));
      const std::string ms = absl::StrCat(absl::ToDoubleMilliseconds(took));
      const std::string& method = metrics_.method();
      if (status.ok()) {
        log::Info(
            "rpc",
            {{"method", method}, {"code", code}, {"ms", ms}, {"correlation_id", correlation_id_}});
      } else {
        log::Warn("rpc", {{"method", method},
                          {"code", code},
                          {"ms", ms},
                          {"correlation_id", correlation_id_},
                          {"error", status.error_message()}});
      }
    }
    methods->Proceed();
  }

 private:
  MethodMetrics& metrics_;
  std::string correlation_id_;
  absl::Time start_;
};

class AccessLogFactory final : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override {
    // Calls to methods no server has share one label (RecordedMethod).
    const std::string method = auth::RecordedMethod(info->method());
    MethodMetrics* metrics;
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto& slot = by_method_[method];
      if (slot == nullptr) slot = std::make_unique<MethodMetrics>(method);
      metrics = slot.get();
    }
    // gRPC takes ownership of the returned interceptor.
    return std::make_unique<AccessLog>(*metrics).release();
  }

 private:
  std::mutex mu_;
  absl::flat_hash_map<std::string, std::unique_ptr<MethodMetrics>> by_method_;
};

// TLS when a certificate is configured; with a client CA, clients must
// present a certificate it signed (mTLS).
std::shared_ptr<grpc::ServerCredentials> ServerCredentials(const ServiceConfig& config) {
  if (config.tls_cert_pem.empty()) return grpc::InsecureServerCredentials();
  grpc::SslServerCredentialsOptions options(
      config.tls_client_ca_pem.empty()
          ? GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE
          : GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  options.pem_root_certs = config.tls_client_ca_pem;
  options.pem_key_cert_pairs.push_back({config.tls_key_pem, config.tls_cert_pem});
  return grpc::SslServerCredentials(options);
}

}  // namespace

void ServiceHost::BlockShutdownSignals() {
  sigset_t set = ShutdownSignals();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

// Each main names the log's service before it starts a thread; set here,
// the name would be written while those threads log.
ServiceHost::ServiceHost(ServiceConfig config) : config_(std::move(config)) {}

absl::Status ServiceHost::Run() {
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();

  auth::JwtVerifierOptions jwt;
  jwt.hs256_key = config_.jwt_hs256_key;
  jwt.rs256_public_key_pem = config_.jwt_rs256_public_key_pem;
  jwt.issuer = config_.jwt_issuer;
  jwt.audience = config_.jwt_audience;
  auto verifier = auth::JwtVerifier::Create(std::move(jwt));
  if (!verifier.ok()) return verifier.status();

  // Metrics first: a service that cannot bind them must not have served.
  MetricsServer metrics(MetricsRegistry::Default());
  if (!config_.metrics_listen.empty()) {
    if (auto st = metrics.Start(config_.metrics_listen); !st.ok()) return st;
    log::Info("metrics",
              {{"listen", config_.metrics_listen}, {"port", absl::StrCat(metrics.port())}});
  }

  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(config_.listen, ServerCredentials(config_), &port);
  // gRPC binds with SO_REUSEPORT by default: a second process on the port
  // (a restored copy started beside the live one) would share its calls,
  // each answering from its own database. It must fail to listen instead.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.SetMaxReceiveMessageSize(4 * 1024 * 1024);
  // Server reflection is the one synchronous service here, open without a
  // token: each of its streams holds a thread while it waits for a
  // request, so idle streams would take threads until the process hit its
  // limit. The quota bounds them (a stream past it is RESOURCE_EXHAUSTED);
  // the callback services do not draw on it.
  grpc::ResourceQuota sync_threads("crm-sync-threads");
  sync_threads.SetMaxThreads(kSyncServerThreads);
  builder.SetResourceQuota(sync_threads);
  builder.SetSyncServerOption(grpc::ServerBuilder::SyncServerOption::NUM_CQS, 1);
  builder.SetSyncServerOption(grpc::ServerBuilder::SyncServerOption::MIN_POLLERS, 1);
  builder.SetSyncServerOption(grpc::ServerBuilder::SyncServerOption::MAX_POLLERS, 2);
  for (auto* s : services_) builder.RegisterService(s);
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> interceptors;
  // Auth first: send hooks run in list order, so the access log sees the
  // status the auth backstop may have replaced.
  interceptors.push_back(std::make_unique<auth::AuthInterceptorFactory>(
      std::shared_ptr<const auth::JwtVerifier>(std::move(verifier).value()), audit_.get()));
  if (pii_vault_ != nullptr) {
    interceptors.push_back(std::make_unique<pii::OpenResponsesFactory>(*pii_vault_));
  }
  interceptors.push_back(std::make_unique<AccessLogFactory>());
  builder.experimental().SetInterceptorCreators(std::move(interceptors));

  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || port == 0) {
    metrics.Stop();
    return absl::UnavailableError(absl::StrCat("cannot listen on ", config_.listen));
  }
  log::Info("serving", {{"listen", config_.listen},
                        {"port", absl::StrCat(port)},
                        {"data_dir", config_.data_dir},
                        {"tls", config_.tls_cert_pem.empty()        ? "off"
                                : config_.tls_client_ca_pem.empty() ? "server"
                                                                    : "mutual"},
                        {"brokers", config_.brokers}});

  grpc::HealthCheckServiceInterface* health = server->GetHealthCheckService();
  bool gate_open = !ready_;
  bool stopped = false;  // a watched database takes no writes
  if (!gate_open) health->SetServingStatus(gated_service_, false);
  auto open_gate = [&] {
    if (gate_open || !ready_()) return;
    gate_open = true;
    if (!stopped) health->SetServingStatus(gated_service_, true);
    log::Info("ready", {{"grpc_service", gated_service_}});
  };
  auto watch_storage = [&] {
    absl::Status stopped_by;
    for (const Database* db : watched_) {
      if (stopped_by.ok()) stopped_by = db->StoppedBy();
    }
    if (stopped == !stopped_by.ok()) return;
    stopped = !stopped_by.ok();
    if (stopped) {
      log::Error("storage stopped taking writes: NOT_SERVING until it recovers or a restart",
                 {{"error", stopped_by.ToString()}});
      health->SetServingStatus(false);
      return;
    }
    log::Info("storage takes writes again");
    // Name by name: a gated service must not read SERVING, even briefly,
    // before its gate opened.
    health->SetServingStatus("", true);
    if (!gated_service_.empty()) health->SetServingStatus(gated_service_, gate_open);
  };
  open_gate();

  // Access log lines leave in batches, at least every 200 ms.
  log::BufferInfo(true);
  const sigset_t set = ShutdownSignals();
  const timespec flush_every = {0, 200'000'000};
  int sig;
  while ((sig = sigtimedwait(&set, nullptr, &flush_every)) < 0) {
    log::Flush();
    watch_storage();
    open_gate();
  }
  log::BufferInfo(false);
  log::Info("shutting down", {{"signal", absl::StrCat(sig)}});

  health->SetServingStatus(false);
  if (config_.shutdown_drain_ms > 0) {
    // Probes and balancers see NOT_SERVING and stop sending; calls that
    // still arrive are served until the listener closes.
    log::Info("draining", {{"ms", absl::StrCat(config_.shutdown_drain_ms)}});
    absl::SleepFor(absl::Milliseconds(config_.shutdown_drain_ms));
  }
  // A backup copying a large database would hold Wait past the grace
  // period; the next backup takes it again.
  if (admin_) admin_->StopBackups();
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
  server->Wait();
  // Every call has ended: write the last refusals before the relay stops.
  if (audit_) audit_->Stop();
  for (auto it = hooks_.rbegin(); it != hooks_.rend(); ++it) (*it)();
  metrics.Stop();
  log::Info("stopped");
  return absl::OkStatus();
}

}  // namespace crm
