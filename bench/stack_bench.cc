// Command throughput and latency of the running stack over gRPC on
// loopback, next to the raw unary QPS of a bare gRPC server on the same
// machine in the same run:
//   grpc unary echo (health Check on a server with nothing else);
//   CaptureLead on crm-leads (durable: synced append, group commit), 64 clients;
//   GetLead of one lead on the same crm-leads, 64 clients (the read path);
//   ChangeOpportunityStage on crm-sales, 64 clients, each moving its own
//   opportunity between two stages with the version it last saw.
// Each also prints the machine's CPU time per call; the commands also the
// service's, by part (request handlers, relay, librdkafka, gRPC, ...).
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "bench/figures.h"
#include "crm/v1/leads.grpc.pb.h"
#include "crm/v1/sales.grpc.pb.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "libs/common/runtime.h"
#include "tests/integration/stack.h"

namespace crm::bench {
namespace {

constexpr int kClients = 64;
const absl::Duration kRun = absl::Seconds(8);

struct Result {
  double qps = 0;
  std::vector<absl::Duration> latencies;
  int64_t errors = 0;
  double cpu_us_per_call = 0;
};

// CPU seconds the whole machine has been busy (client, server, broker and
// kernel alike; steal excluded), from /proc/stat: per call it is the cost
// of a call, a figure other tenants of the host move far less than req/s.
double MachineBusySeconds() {
  std::ifstream in("/proc/stat");
  std::string cpu;
  uint64_t user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0;
  in >> cpu >> user >> nice >> system >> idle >> iowait >> irq >> softirq;
  return static_cast<double>(user + nice + system + irq + softirq) /
         static_cast<double>(sysconf(_SC_CLK_TCK));
}

// CPU seconds the threads of process `pid` have used, by part of the
// service (thread names: docs/operations.md). Threads that have ended are
// not listed, so a part that starts short-lived threads is undercounted.
std::map<std::string, double> ServiceCpuSeconds(pid_t pid) {
  std::map<std::string, double> out;
  std::error_code ec;
  for (const auto& task :
       std::filesystem::directory_iterator(absl::StrCat("/proc/", pid, "/task"), ec)) {
    std::ifstream in(task.path() / "stat");
    std::string stat;
    if (!std::getline(in, stat)) continue;
    // "tid (name) state ...": the name may hold spaces; utime and stime are
    // the 12th and 13th fields after it.
    const size_t open = stat.find('(');
    const size_t close = stat.rfind(')');
    if (open == std::string::npos || close == std::string::npos || close + 2 > stat.size()) {
      continue;
    }
    const std::string name = stat.substr(open + 1, close - open - 1);
    const std::vector<std::string> fields = absl::StrSplit(stat.substr(close + 2), ' ');
    uint64_t utime = 0, stime = 0;
    if (fields.size() < 13 || !absl::SimpleAtoi(fields[11], &utime) ||
        !absl::SimpleAtoi(fields[12], &stime)) {
      continue;
    }
    const std::string part = absl::StartsWith(name, "crm-")       ? name
                             : absl::StartsWith(name, "rdk:")     ? "librdkafka"
                             : absl::StartsWith(name, "rocksdb:") ? "rocksdb background"
                                                                  : "grpc and other";
    out[part] += static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
  }
  return out;
}

// Prints the service's CPU per call of `r`, by part, since `before`.
void ReportServiceCpu(const std::string& name, pid_t pid,
                      const std::map<std::string, double>& before, const Result& r) {
  const double calls = std::max<double>(1, r.latencies.size());
  for (const auto& [part, seconds] : ServiceCpuSeconds(pid)) {
    const auto was = before.find(part);
    const double used = seconds - (was == before.end() ? 0 : was->second);
    if (used <= 0) continue;  // idle parts (the main thread, timers)
    Figure(absl::StrCat(name, ", service CPU per call, ", part), 1e6 * used / calls, "us");
  }
}

// Channels to `target`: clients share a few connections, as real callers do.
std::vector<std::shared_ptr<grpc::Channel>> Channels(const std::string& target) {
  std::vector<std::shared_ptr<grpc::Channel>> channels;
  for (int i = 0; i < 4; ++i) {
    grpc::ChannelArguments args;
    args.SetInt("grpc.channel_id", i);  // distinct connections
    channels.push_back(grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args));
  }
  return channels;
}

// One stub per client over the shared Channels(target).
template <typename Service>
std::vector<std::unique_ptr<typename Service::Stub>> Stubs(const std::string& target) {
  auto channels = Channels(target);
  std::vector<std::unique_ptr<typename Service::Stub>> stubs;
  for (int c = 0; c < kClients; ++c) {
    stubs.push_back(Service::NewStub(channels[c % channels.size()]));
  }
  return stubs;
}

// The broker and `service` with a handler thread per client, or exit.
void StartOrExit(crm::testing::Stack& stack, const std::string& service) {
  if (!stack.StartBroker() || !stack.Start(service, {"--worker-threads=64"})) {
    std::fprintf(stderr, "stack did not start\n");
    std::exit(1);
  }
}

// Authenticated like any caller: token checks are part of the cost.
std::string Bearer() {
  return "Bearer " + crm::testing::DevToken(auth::Principal{"bench", {auth::kRoleAdmin}, ""});
}

// Runs `call(client, n)` from kClients threads for kRun. Only successful
// calls count towards throughput, latency and CPU per call: a fast refusal
// (UNAVAILABLE, RESOURCE_EXHAUSTED) is not a command served.
Result Drive(const std::function<grpc::Status(int client, int64_t n)>& call) {
  std::vector<std::vector<absl::Duration>> per_client(kClients);
  std::atomic<int64_t> errors{0};
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  const absl::Time start = absl::Now();
  const double busy_start = MachineBusySeconds();
  for (int c = 0; c < kClients; ++c) {
    threads.emplace_back([&, c] {
      for (int64_t n = 0; !stop.load(std::memory_order_relaxed); ++n) {
        const absl::Time t0 = absl::Now();
        if (!call(c, n).ok()) {
          ++errors;
          continue;
        }
        per_client[c].push_back(absl::Now() - t0);
      }
    });
  }
  absl::SleepFor(kRun);
  stop = true;
  for (auto& t : threads) t.join();
  const absl::Duration elapsed = absl::Now() - start;
  const double busy = MachineBusySeconds() - busy_start;
  Result r;
  for (auto& v : per_client) r.latencies.insert(r.latencies.end(), v.begin(), v.end());
  r.qps = PerSecond(static_cast<double>(r.latencies.size()), elapsed);
  r.cpu_us_per_call = 1e6 * busy / std::max<double>(1, r.latencies.size());
  r.errors = errors.load();
  return r;
}

void Report(const std::string& name, const Result& r) {
  Figure(absl::StrCat(name, " (", kClients, " clients)"), r.qps, "req/s");
  Figure(absl::StrCat(name, " p50"), QuantileMicros(r.latencies, 0.5), "us");
  Figure(absl::StrCat(name, " p99"), QuantileMicros(r.latencies, 0.99), "us");
  Figure(absl::StrCat(name, ", machine CPU per call"), r.cpu_us_per_call, "us");
  if (r.errors > 0) Figure(absl::StrCat(name, " errors"), static_cast<double>(r.errors), "calls");
}

// The smallest unary handler there is, on the callback API the services use.
class EchoHealth final : public grpc::health::v1::Health::CallbackService {
  grpc::ServerUnaryReactor* Check(grpc::CallbackServerContext* ctx,
                                  const grpc::health::v1::HealthCheckRequest*,
                                  grpc::health::v1::HealthCheckResponse* resp) override {
    resp->set_status(grpc::health::v1::HealthCheckResponse::SERVING);
    auto* reactor = ctx->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }
};

double RawEcho() {
  EchoHealth echo;
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&echo);
  auto server = builder.BuildAndStart();
  auto stubs = Stubs<grpc::health::v1::Health>(absl::StrCat("127.0.0.1:", port));
  const Result r = Drive([&](int client, int64_t) {
    grpc::ClientContext ctx;
    grpc::health::v1::HealthCheckRequest req;
    grpc::health::v1::HealthCheckResponse resp;
    return stubs[client]->Check(&ctx, req, &resp);
  });
  Report("grpc unary echo, raw", r);
  server->Shutdown();
  return r.qps;
}

double CaptureLeads() {
  crm::testing::Stack stack;
  StartOrExit(stack, "leads");
  auto stubs = Stubs<crm::v1::LeadsService>(stack.Target("leads"));
  const std::string bearer = Bearer();
  const auto cpu_before = ServiceCpuSeconds(stack.leads().pid());
  const Result r = Drive([&](int client, int64_t n) {
    crm::v1::CaptureLeadRequest req;
    req.set_request_id(absl::StrCat("bench-", client, "-", n));
    req.set_channel(crm::v1::LEAD_CHANNEL_WEB_FORM);
    req.mutable_contact()->set_email(absl::StrCat("c", client, "n", n, "@example.com"));
    req.mutable_contact()->set_first_name("Bench");
    req.set_company("Example Ltd");
    req.set_region("EMEA");
    crm::v1::CaptureLeadResponse resp;
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", bearer);
    return stubs[client]->CaptureLead(&ctx, req, &resp);
  });
  Report("CaptureLead, durable", r);
  ReportServiceCpu("CaptureLead", stack.leads().pid(), cpu_before, r);

  // A read through the same service (auth, hand-off to a worker, PII
  // opened): what the framework costs without the durable write.
  crm::v1::CaptureLeadRequest one;
  one.set_request_id("bench-read");
  one.set_channel(crm::v1::LEAD_CHANNEL_WEB_FORM);
  one.mutable_contact()->set_email("reader@example.com");
  one.set_company("Example Ltd");
  crm::v1::CaptureLeadResponse captured;
  grpc::ClientContext ctx;
  ctx.AddMetadata("authorization", bearer);
  if (auto st = stubs[0]->CaptureLead(&ctx, one, &captured); !st.ok()) {
    std::fprintf(stderr, "CaptureLead: %s\n", st.error_message().c_str());
    std::exit(1);
  }
  Report("GetLead", Drive([&](int client, int64_t) {
           crm::v1::GetLeadRequest req;
           req.set_lead_id(captured.lead_id());
           crm::v1::Lead lead;
           grpc::ClientContext ctx;
           ctx.AddMetadata("authorization", bearer);
           return stubs[client]->GetLead(&ctx, req, &lead);
         }));
  return r.qps;
}

double ChangeStages() {
  crm::testing::Stack stack;
  StartOrExit(stack, "sales");
  auto stubs = Stubs<crm::v1::SalesService>(stack.Target("sales"));
  const std::string bearer = Bearer();
  auto call = [&](int client, auto method, const auto& req, auto* resp) {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", bearer);
    return ((*stubs[client]).*method)(&ctx, req, resp);
  };
  crm::v1::OpenCustomerRequest customer;
  customer.set_request_id("bench-customer");
  customer.set_customer_id("cus_bench");
  customer.set_name("Bench Ltd");
  customer.set_owner_id("rep_bench");
  customer.set_territory("EMEA");
  crm::v1::Customer opened;
  if (auto st = call(0, &crm::v1::SalesService::Stub::OpenCustomer, customer, &opened); !st.ok()) {
    std::fprintf(stderr, "OpenCustomer: %s\n", st.error_message().c_str());
    std::exit(1);
  }
  // One opportunity per client: clients do not race each other, so every
  // call is a real stage change (the race is fault_sales_test's subject).
  std::vector<crm::v1::Opportunity> opportunities(kClients);
  for (int c = 0; c < kClients; ++c) {
    crm::v1::OpenOpportunityRequest open;
    open.set_request_id(absl::StrCat("bench-opportunity-", c));
    open.set_customer_id("cus_bench");
    open.set_name(absl::StrCat("Deal ", c));
    if (auto st = call(c, &crm::v1::SalesService::Stub::OpenOpportunity, open, &opportunities[c]);
        !st.ok()) {
      std::fprintf(stderr, "OpenOpportunity: %s\n", st.error_message().c_str());
      std::exit(1);
    }
  }
  const auto cpu_before = ServiceCpuSeconds(stack.service("sales").pid());
  const Result r = Drive([&](int client, int64_t n) {
    crm::v1::Opportunity& opportunity = opportunities[client];
    crm::v1::ChangeOpportunityStageRequest req;
    req.set_request_id(absl::StrCat("bench-", client, "-", n));
    req.set_opportunity_id(opportunity.opportunity_id());
    req.set_expected_version(opportunity.version());
    req.set_stage_id(opportunity.stage_id() == "prospecting" ? "needs_analysis" : "prospecting");
    crm::v1::Opportunity moved;
    auto st = call(client, &crm::v1::SalesService::Stub::ChangeOpportunityStage, req, &moved);
    if (st.ok()) opportunity = std::move(moved);
    return st;
  });
  Report("ChangeOpportunityStage, durable", r);
  ReportServiceCpu("ChangeOpportunityStage", stack.service("sales").pid(), cpu_before, r);
  return r.qps;
}

}  // namespace
}  // namespace crm::bench

int main() {
  crm::UseReleaseRuntime();
  const double echo = crm::bench::RawEcho();
  const double capture = crm::bench::CaptureLeads();
  crm::bench::Figure("CaptureLead / raw echo", 100.0 * capture / echo, "%");
  const double stage = crm::bench::ChangeStages();
  crm::bench::Figure("ChangeOpportunityStage / raw echo", 100.0 * stage / echo, "%");
  return 0;
}
