#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "crm/v1/analytics.grpc.pb.h"
#include "crm/v1/leads.grpc.pb.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "libs/common/testing/temp_dir.h"
#include "tests/integration/process.h"

namespace crm::testing {

// A free loopback port, picked by the kernel.
inline int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

// The body of an HTTP GET on loopback, "" when nothing answers.
inline std::string HttpGet(int port, const std::string& path) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
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
    std::vector<std::string> argv = {bin, "--listen=" + Target(service),
                                     "--data-dir=" + dir_.Sub(service), "--brokers=" + brokers_,
                                     "--worker-threads=4"};
    argv.insert(argv.end(), extra_flags.begin(), extra_flags.end());
    auto p =
        std::make_unique<Process>(argv, std::vector<std::string>{}, dir_.Sub(service + ".log"));
    if (!p->Start()) return false;
    services_[service] = std::move(p);
    return WaitServing(Target(service));
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

  std::shared_ptr<grpc::Channel> Channel(const std::string& service) const {
    return grpc::CreateChannel(Target(service), grpc::InsecureChannelCredentials());
  }
  std::unique_ptr<crm::v1::LeadsService::Stub> LeadsStub() const {
    return crm::v1::LeadsService::NewStub(Channel("leads"));
  }
  std::unique_ptr<crm::v1::AnalyticsService::Stub> AnalyticsStub() const {
    return crm::v1::AnalyticsService::NewStub(Channel("analytics"));
  }

  // The 360 view's event count, -1 while the customer is unknown.
  int64_t EventCount(const std::string& customer_id) const {
    auto stub = AnalyticsStub();
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
    crm::v1::GetCustomer360Request req;
    req.set_customer_id(customer_id);
    crm::v1::Customer360 view;
    if (!stub->GetCustomer360(&ctx, req, &view).ok()) return -1;
    return view.event_count();
  }

  static bool WaitServing(const std::string& target) {
    auto channel = grpc::CreateChannel(target, grpc::InsecureChannelCredentials());
    auto health = grpc::health::v1::Health::NewStub(channel);
    return Eventually(
        [&] {
          grpc::ClientContext ctx;
          ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(500));
          grpc::health::v1::HealthCheckRequest req;
          grpc::health::v1::HealthCheckResponse resp;
          return health->Check(&ctx, req, &resp).ok() &&
                 resp.status() == grpc::health::v1::HealthCheckResponse::SERVING;
        },
        absl::Seconds(20));
  }

 private:
  static std::string Binary(const std::string& service) {
    if (service == "leads") return CRM_LEADS_BIN;
    if (service == "analytics") return CRM_ANALYTICS_BIN;
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
};

}  // namespace crm::testing
