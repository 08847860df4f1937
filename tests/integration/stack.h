#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <fstream>
#include <functional>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "crm/v1/analytics.grpc.pb.h"
#include "crm/v1/leads.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "libs/common/testing/temp_dir.h"
#include "grpc/health/v1/health.grpc.pb.h"
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

// The embedded broker, leads and analytics as real processes on loopback.
class Stack {
 public:
  Stack() : leads_port_(FreePort()), analytics_port_(FreePort()) {}

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

  bool StartLeads() {
    leads_ = Service(CRM_LEADS_BIN, "leads", leads_port_);
    return leads_ && WaitServing(LeadsTarget());
  }
  bool StartAnalytics() {
    analytics_ = Service(CRM_ANALYTICS_BIN, "analytics", analytics_port_);
    return analytics_ && WaitServing(AnalyticsTarget());
  }

  Process& broker() { return *broker_; }
  Process& leads() { return *leads_; }
  Process& analytics() { return *analytics_; }

  std::string LeadsTarget() const { return absl::StrCat("127.0.0.1:", leads_port_); }
  std::string AnalyticsTarget() const { return absl::StrCat("127.0.0.1:", analytics_port_); }

  std::unique_ptr<crm::v1::LeadsService::Stub> LeadsStub() const {
    return crm::v1::LeadsService::NewStub(
        grpc::CreateChannel(LeadsTarget(), grpc::InsecureChannelCredentials()));
  }
  std::unique_ptr<crm::v1::AnalyticsService::Stub> AnalyticsStub() const {
    return crm::v1::AnalyticsService::NewStub(
        grpc::CreateChannel(AnalyticsTarget(), grpc::InsecureChannelCredentials()));
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
  std::unique_ptr<Process> Service(const char* bin, const std::string& name, int port) {
    auto p = std::make_unique<Process>(
        std::vector<std::string>{bin, absl::StrCat("--listen=127.0.0.1:", port),
                                 "--data-dir=" + dir_.Sub(name), "--brokers=" + brokers_,
                                 "--worker-threads=4"},
        std::vector<std::string>{}, dir_.Sub(name + ".log"));
    if (!p->Start()) return nullptr;
    return p;
  }

  TempDir dir_;
  int leads_port_;
  int analytics_port_;
  std::string brokers_;
  std::unique_ptr<Process> broker_;
  std::unique_ptr<Process> leads_;
  std::unique_ptr<Process> analytics_;
};

}  // namespace crm::testing
