#pragma once

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "crm/v1/analytics.grpc.pb.h"
#include "crm/v1/leads.grpc.pb.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/support/client_interceptor.h"
#include "gtest/gtest.h"
#include "libs/common/auth/dev_key.h"
#include "libs/common/auth/jwt.h"
#include "libs/common/auth/principal.h"
#include "libs/common/testing/temp_dir.h"
#include "tests/integration/process.h"

namespace crm::testing {

// Whether a listener could bind loopback `port` now (0: any port; then
// `port` is set to the one the kernel picked).
inline bool CanBindLoopback(int& port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bool ok = bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  socklen_t len = sizeof(addr);
  ok = ok && getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0;
  close(fd);
  if (ok) port = ntohs(addr.sin_port);
  return ok;
}

// A free loopback port for a service to listen on. Drawn below the
// kernel's ephemeral range (ip_local_port_range starts at 32768): a port
// bind(0) hands out may be taken by any outgoing connection (a Kafka
// client's, a test's) before the service binds it. Random, so two tests
// running at once rarely draw the same one; never one this process drew
// before, so the ports of one stack, drawn before any is bound, differ.
inline int FreePort() {
  static std::mutex mu;
  static std::set<int> drawn;
  static std::mt19937 rng(std::random_device{}());
  std::lock_guard<std::mutex> lock(mu);
  std::uniform_int_distribution<int> pick(20000, 32000);
  for (int attempt = 0; attempt < 100; ++attempt) {
    int port = pick(rng);
    if (!drawn.contains(port) && CanBindLoopback(port)) {
      drawn.insert(port);
      return port;
    }
  }
  int any = 0;
  if (!CanBindLoopback(any)) return 0;
  drawn.insert(any);
  return any;
}

// The body of an HTTP GET on loopback, "" when nothing answers.
inline std::string HttpGet(int port, const std::string& path) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  // A server that accepts and never answers fails the test's check, not
  // the test run.
  const timeval timeout{.tv_sec = 5, .tv_usec = 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return "";
  }
  const std::string req = "GET " + path + " HTTP/1.1\r\nHost: localhost\r\n\r\n";
  send(fd, req.data(), req.size(), 0);
  std::string out;
  char buf[4096];
  for (ssize_t n; (n = recv(fd, buf, sizeof(buf), 0)) > 0;) out.append(buf, n);
  close(fd);
  const size_t body = out.find("\r\n\r\n");
  return body == std::string::npos ? "" : out.substr(body + 4);
}

// The sum of a metric's samples in a Prometheus text page, over every
// label set or, given `label` (`group="crm-analytics"`), over those that
// carry it; -1 when it has none.
inline double MetricSum(const std::string& text, const std::string& name,
                        const std::string& label = "") {
  double sum = -1;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (!absl::ConsumePrefix(&line, name) || line.empty()) continue;
    if (line.front() == '{') {
      const size_t close = line.find('}');
      if (close == absl::string_view::npos) continue;
      if (!label.empty() && !absl::StrContains(line.substr(0, close), label)) continue;
      line.remove_prefix(close + 1);
    } else if (line.front() != ' ' || !label.empty()) {
      continue;  // another metric whose name starts with this one
    }
    double v = 0;
    if (absl::SimpleAtod(absl::StripAsciiWhitespace(line), &v)) sum = (sum < 0 ? 0 : sum) + v;
  }
  return sum;
}

// Polls `done` until it holds or `timeout` passes.
inline bool Eventually(const std::function<bool()>& done,
                       absl::Duration timeout = absl::Seconds(30)) {
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    if (done()) return true;
    absl::SleepFor(absl::Milliseconds(50));
  }
  return done();
}

// A development token (dev key, default issuer and audience) for `p`.
inline std::string DevToken(const auth::Principal& p, absl::Duration ttl = absl::Hours(1)) {
  auth::TokenSpec spec;
  spec.subject = p.subject;
  spec.roles = p.roles;
  spec.territory = p.territory;
  spec.issuer = auth::kDefaultIssuer;
  spec.audience = auth::kDefaultAudience;
  spec.ttl = ttl;
  return *auth::SignHs256(spec, auth::kDevHs256Key);
}

// The caller tests act as unless they pick another: an admin. Older tests
// name their actor in x-crm-actor and extra roles in x-crm-roles; the
// servers ignore both now, so they become the token's subject and roles.
inline auth::Principal DefaultTestPrincipal(
    const std::multimap<std::string, std::string>& metadata) {
  auth::Principal p{"test-admin", {auth::kRoleAdmin}, ""};
  if (auto it = metadata.find("x-crm-actor"); it != metadata.end()) p.subject = it->second;
  if (auto it = metadata.find("x-crm-roles"); it != metadata.end()) {
    for (absl::string_view r : absl::StrSplit(it->second, ',', absl::SkipWhitespace())) {
      p.roles.emplace_back(absl::StripAsciiWhitespace(r));
    }
  }
  return p;
}

// Attaches "authorization: Bearer <token>" to every call that has none.
class BearerTokenInterceptor final : public grpc::experimental::Interceptor {
 public:
  explicit BearerTokenInterceptor(std::optional<auth::Principal> principal)
      : principal_(std::move(principal)) {}

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(
            grpc::experimental::InterceptionHookPoints::PRE_SEND_INITIAL_METADATA)) {
      auto* md = methods->GetSendInitialMetadata();
      if (md->find("authorization") == md->end()) {
        md->emplace("authorization",
                    "Bearer " + DevToken(principal_ ? *principal_ : DefaultTestPrincipal(*md)));
      }
    }
    methods->Proceed();
  }

 private:
  std::optional<auth::Principal> principal_;
};

class BearerTokenFactory final : public grpc::experimental::ClientInterceptorFactoryInterface {
 public:
  explicit BearerTokenFactory(std::optional<auth::Principal> principal)
      : principal_(std::move(principal)) {}
  grpc::experimental::Interceptor* CreateClientInterceptor(
      grpc::experimental::ClientRpcInfo*) override {
    return std::make_unique<BearerTokenInterceptor>(principal_).release();
  }

 private:
  std::optional<auth::Principal> principal_;
};

// Client side TLS: the CA that signed the servers' certificates and, for
// mTLS, the client's own certificate and key (PEM text).
struct ClientTls {
  std::string root_ca_pem;
  std::string cert_pem;
  std::string key_pem;
};

inline std::shared_ptr<grpc::ChannelCredentials> ClientCredentials(
    const std::optional<ClientTls>& tls) {
  if (!tls) return grpc::InsecureChannelCredentials();
  grpc::SslCredentialsOptions o;
  o.pem_root_certs = tls->root_ca_pem;
  o.pem_cert_chain = tls->cert_pem;
  o.pem_private_key = tls->key_pem;
  return grpc::SslCredentials(o);
}

// A channel whose calls carry a token for `principal` (nullopt: the
// default test principal), or none at all when `with_token` is false.
inline std::shared_ptr<grpc::Channel> AuthChannel(const std::string& target,
                                                  std::optional<auth::Principal> principal,
                                                  const std::optional<ClientTls>& tls = {},
                                                  bool with_token = true) {
  std::vector<std::unique_ptr<grpc::experimental::ClientInterceptorFactoryInterface>> factories;
  if (with_token) factories.push_back(std::make_unique<BearerTokenFactory>(std::move(principal)));
  // A service restarted by a test answers within a second of its reconnect
  // attempts: gRPC's default backoff (1 s growing to 2 min) could leave a
  // client idle past a test's wait for the restarted service.
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 200);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 200);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  return grpc::experimental::CreateCustomChannelWithInterceptors(target, ClientCredentials(tls),
                                                                 args, std::move(factories));
}

// The embedded broker and the services as real processes on loopback. Each
// service gets a free port and its own data dir under one temp dir.
class Stack {
 public:
  Stack() {
    for (const char* name : {"leads", "sales", "service-desk", "analytics"})
      ports_[name] = FreePort();
  }

  std::string dir() const { return dir_.path(); }
  const std::string& brokers() const { return brokers_; }

  bool StartBroker() {
    const std::string file = dir_.Sub("broker.addr");
    std::remove(file.c_str());
    broker_ = std::make_unique<Process>(
        std::vector<std::string>{CRM_BROKER_BIN, "--address-file=" + file},
        std::vector<std::string>{}, dir_.Sub("broker.log"));
    if (!broker_->Start()) return false;
    return Eventually(
        [&] {
          std::ifstream in(file);
          std::string line;
          if (!std::getline(in, line) || line.empty()) return false;
          brokers_ = line;
          return true;
        },
        absl::Seconds(10));
  }

  // Starts (or restarts) a service and waits until its health check says
  // SERVING. `extra_flags` are appended to the command line.
  bool Start(const std::string& service, std::vector<std::string> extra_flags = {}) {
    const std::string bin = Binary(service);
    if (bin.empty()) return false;
    // A second replica ("analytics-2") gets a port of its own.
    if (!ports_.contains(service)) ports_[service] = FreePort();
    std::vector<std::string> argv = {bin,
                                     "--listen=" + Target(service),
                                     "--data-dir=" + dir_.Sub(service),
                                     "--brokers=" + brokers_,
                                     "--worker-threads=4",
                                     std::string("--jwt-hs256-key=") + auth::kDevHs256Key};
    argv.insert(argv.end(), extra_flags.begin(), extra_flags.end());
    auto p =
        std::make_unique<Process>(argv, std::vector<std::string>{}, dir_.Sub(service + ".log"));
    if (!p->Start()) return false;
    const Process& started = *p;
    services_[service] = std::move(p);
    return WaitServing(Target(service), ClientCredentials(client_tls_), &started);
  }
  bool StartLeads() { return Start("leads"); }
  bool StartAnalytics() { return Start("analytics"); }

  Process& broker() { return *broker_; }
  Process& service(const std::string& name) { return *services_.at(name); }
  Process& leads() { return service("leads"); }
  Process& analytics() { return service("analytics"); }

  std::string Target(const std::string& service) const {
    return absl::StrCat("127.0.0.1:", ports_.at(service));
  }
  std::string LeadsTarget() const { return Target("leads"); }
  std::string AnalyticsTarget() const { return Target("analytics"); }

  // Calls on this channel carry a token for the default test principal
  // (an admin; see DefaultTestPrincipal), or for `as` when given.
  std::shared_ptr<grpc::Channel> Channel(const std::string& service,
                                         std::optional<auth::Principal> as = std::nullopt) const {
    return AuthChannel(Target(service), std::move(as), client_tls_);
  }
  // A channel that sends no token.
  std::shared_ptr<grpc::Channel> ChannelWithoutToken(const std::string& service) const {
    return AuthChannel(Target(service), std::nullopt, client_tls_, /*with_token=*/false);
  }
  // Client TLS for every later channel and health check; servers get their
  // TLS flags through Start's extra_flags.
  void UseClientTls(std::optional<ClientTls> tls) { client_tls_ = std::move(tls); }
  std::unique_ptr<crm::v1::LeadsService::Stub> LeadsStub() const {
    return crm::v1::LeadsService::NewStub(Channel("leads"));
  }
  std::unique_ptr<crm::v1::AnalyticsService::Stub> AnalyticsStub() const {
    return crm::v1::AnalyticsService::NewStub(Channel("analytics"));
  }

  // The 360 view's event count, -1 while the customer is unknown.
  int64_t EventCount(const std::string& customer_id) const {
    return EventCount(*AnalyticsStub(), customer_id);
  }
  // The same through `stub`: for loops over many customers, which would
  // otherwise open a channel for each.
  static int64_t EventCount(crm::v1::AnalyticsService::Stub& stub, const std::string& customer_id) {
    crm::v1::Customer360 view;
    if (!Get360(stub, customer_id, view).ok()) return -1;
    return view.event_count();
  }
  // GetCustomer360 of `customer_id` through `stub`, answered within `timeout`.
  static grpc::Status Get360(crm::v1::AnalyticsService::Stub& stub, const std::string& customer_id,
                             crm::v1::Customer360& view,
                             absl::Duration timeout = absl::Seconds(2)) {
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
    crm::v1::GetCustomer360Request req;
    req.set_customer_id(customer_id);
    return stub.GetCustomer360(&ctx, req, &view);
  }

  // Every lead `req` lists, page after page; a failed page fails the test
  // and ends the list there.
  static std::vector<crm::v1::LeadSummary> ListAllLeads(crm::v1::LeadsService::Stub& stub,
                                                        crm::v1::ListLeadsRequest req) {
    std::vector<crm::v1::LeadSummary> out;
    req.mutable_page()->set_page_size(1000);
    for (;;) {
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
      crm::v1::ListLeadsResponse page;
      auto st = stub.ListLeads(&ctx, req, &page);
      EXPECT_TRUE(st.ok()) << st.error_message();
      if (!st.ok()) return out;
      for (auto& l : *page.mutable_leads()) out.push_back(std::move(l));
      if (page.next_page_token().empty()) return out;
      req.mutable_page()->set_page_token(page.next_page_token());
    }
  }

  // With `process`, fails as soon as it exits: a service that could not
  // bind its port must not pass for another stack's answering there.
  static bool WaitServing(
      const std::string& target,
      std::shared_ptr<grpc::ChannelCredentials> creds = grpc::InsecureChannelCredentials(),
      const Process* process = nullptr) {
    bool exited = false;
    const bool serving = Eventually(
        [&] {
          if (process != nullptr && !process->running()) {
            exited = true;
            return true;
          }
          return Health(target, creds) == grpc::health::v1::HealthCheckResponse::SERVING;
        },
        absl::Seconds(60));
    return serving && !exited;
  }

  // The health of `grpc_service` ("" for the server as a whole) on one of
  // the stack's services; UNKNOWN when it does not answer within 2 s.
  grpc::health::v1::HealthCheckResponse::ServingStatus ServiceHealth(
      const std::string& service, const std::string& grpc_service) {
    return Health(Target(service), ClientCredentials(client_tls_), grpc_service, absl::Seconds(2));
  }

  // The health of `grpc_service`, by default the server's overall status;
  // UNKNOWN when it does not answer within `deadline`.
  static grpc::health::v1::HealthCheckResponse::ServingStatus Health(
      const std::string& target,
      std::shared_ptr<grpc::ChannelCredentials> creds = grpc::InsecureChannelCredentials(),
      const std::string& grpc_service = "", absl::Duration deadline = absl::Milliseconds(500)) {
    // A new channel each time: one whose first connect was refused waits
    // out gRPC's reconnect backoff, seconds after the server has started
    // listening.
    auto health = grpc::health::v1::Health::NewStub(grpc::CreateChannel(target, creds));
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + deadline));
    grpc::health::v1::HealthCheckRequest req;
    req.set_service(grpc_service);
    grpc::health::v1::HealthCheckResponse resp;
    if (!health->Check(&ctx, req, &resp).ok())
      return grpc::health::v1::HealthCheckResponse::UNKNOWN;
    return resp.status();
  }

 private:
  static std::string Binary(const std::string& service) {
    if (service == "leads") return CRM_LEADS_BIN;
    if (service == "analytics" || absl::StartsWith(service, "analytics-")) {
      return CRM_ANALYTICS_BIN;
    }
#ifdef CRM_SALES_BIN
    if (service == "sales") return CRM_SALES_BIN;
#endif
#ifdef CRM_SERVICE_DESK_BIN
    if (service == "service-desk") return CRM_SERVICE_DESK_BIN;
#endif
    return "";
  }

  TempDir dir_;
  std::map<std::string, int> ports_;
  std::string brokers_;
  std::unique_ptr<Process> broker_;
  std::map<std::string, std::unique_ptr<Process>> services_;
  std::optional<ClientTls> client_tls_;
};

}  // namespace crm::testing
