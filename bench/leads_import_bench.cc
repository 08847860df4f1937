// Bulk lead import throughput: the ImportLeads use case in process, and the
// same over gRPC on loopback (server in this process, no outbox relay).
// Rows look like a trade-show list: every tenth row is a person seen
// earlier in the list, every hundredth row is invalid, and rules assign by
// region and product to owners and teams.
//
//   crm_leads_import_bench [--rows=N] [google benchmark flags]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "bench/figures.h"
#include "benchmark/benchmark.h"
#include "crm/v1/leads.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "libs/common/auth/auth_interceptor.h"
#include "libs/common/auth/dev_key.h"
#include "libs/common/auth/jwt.h"
#include "libs/common/blocking_executor.h"
#include "libs/common/pii/cipher.h"
#include "libs/common/runtime.h"
#include "libs/common/testing/temp_dir.h"
#include "services/leads/api/lead_commands.h"
#include "services/leads/api/lead_import.h"
#include "services/leads/api/leads_grpc.h"

namespace crm::leads {
namespace {

int64_t g_rows = 200'000;
constexpr int kRowsPerMessage = 1000;
// Per gRPC call, the most the service takes (ImportOptions): the reply has
// one result per row.
constexpr int kRowsPerCall = 16'000;

EventContext BenchContext() { return {kLeadsSource, "user:bench", "", "", absl::Now()}; }

crm::v1::ImportLeadRow Row(int64_t row, const std::string& batch) {
  static const char* kRegions[] = {"EMEA", "NA", "APAC", "LATAM"};
  static const char* kProducts[] = {"crm-suite", "analytics", "service-desk", "telephony"};
  static const char* kTitles[] = {"Head of Sales", "Engineer", "VP Marketing", "Buyer", ""};
  crm::v1::ImportLeadRow r;
  r.set_row_number(row);
  // Every tenth row is a person from ten rows before (same email).
  const int64_t person = row % 10 == 0 && row > 10 ? row - 10 : row;
  auto* c = r.mutable_contact();
  c->set_first_name(absl::StrCat("First", person));
  c->set_last_name("Visitor");
  c->set_email(row % 100 == 7 ? "not-an-email"
                              : absl::StrCat("p", person, "-", batch, "@expo.test"));
  c->set_title(kTitles[row % 5]);
  r.set_company(absl::StrCat("Company ", person % 5000));
  r.set_region(kRegions[row % 4]);
  r.add_product_interests(kProducts[row % 4]);
  if (row % 3 == 0) r.add_product_interests(kProducts[(row + 1) % 4]);
  (*r.mutable_attributes())["booth"] = "B12";
  if (row % 2 == 0) {
    r.mutable_bant()->mutable_budget()->set_currency("EUR");
    r.mutable_bant()->mutable_budget()->set_minor_units(2'500'000);
    r.mutable_bant()->set_timeline(crm::v1::PURCHASE_TIMELINE_QUARTER);
  }
  return r;
}

// Messages of kRowsPerMessage rows, numbered from `first_row`.
std::vector<crm::v1::ImportLeadsRequest> Messages(const std::string& import_id, int64_t first_row,
                                                  int64_t rows) {
  std::vector<crm::v1::ImportLeadsRequest> out;
  for (int64_t i = 0; i < rows; ++i) {
    if (i % kRowsPerMessage == 0) {
      out.emplace_back();
      out.back().set_import_id(import_id);
      out.back().set_default_channel(crm::v1::LEAD_CHANNEL_TRADE_SHOW);
    }
    *out.back().add_rows() = Row(first_row + i, import_id);
  }
  return out;
}

void CreateRules(LeadCommands& commands) {
  auto rule = [&](const std::string& name, std::vector<std::string> regions,
                  std::vector<std::string> products, const std::string& owner,
                  const std::string& team, std::vector<std::string> members,
                  crm::v1::TeamStrategy strategy) {
    crm::v1::CreateAssignmentRuleRequest r;
    r.set_request_id(absl::StrCat("rule-", name));
    r.mutable_rule()->set_name(name);
    for (auto& x : regions) r.mutable_rule()->add_regions(x);
    for (auto& x : products) r.mutable_rule()->add_product_interests(x);
    r.mutable_rule()->set_owner_id(owner);
    r.mutable_rule()->set_team_id(team);
    for (auto& m : members) r.mutable_rule()->add_team_members(m);
    r.mutable_rule()->set_strategy(strategy);
    if (!commands.CreateAssignmentRule(r, BenchContext()).ok()) std::abort();
  };
  rule("emea-crm", {"EMEA"}, {"crm-suite"}, "usr_emea_lead", "", {},
       crm::v1::TEAM_STRATEGY_UNSPECIFIED);
  rule("emea", {"EMEA"}, {}, "", "team_emea", {"usr_e1", "usr_e2", "usr_e3"},
       crm::v1::TEAM_STRATEGY_ROUND_ROBIN);
  rule("na", {"NA"}, {}, "", "team_na", {"usr_n1", "usr_n2", "usr_n3", "usr_n4"},
       crm::v1::TEAM_STRATEGY_LEAST_LOADED);
  rule("apac-analytics", {"APAC"}, {"analytics", "telephony"}, "usr_apac", "", {},
       crm::v1::TEAM_STRATEGY_UNSPECIFIED);
  // LATAM and the rest of APAC wait in the default queue.
}

struct Service {
  crm::testing::TempDir dir;
  std::unique_ptr<LeadStore> store;
  std::unique_ptr<LeadCommands> commands;
  std::unique_ptr<LeadImporter> importer;

  Service() {
    store = std::move(*LeadStore::Open(dir.Sub("leads"), crm::pii::RandomKey()));
    // No relay drains the outbox here: let it hold every event.
    store->events().SetOutboxLimit(std::numeric_limits<uint64_t>::max());
    commands = std::make_unique<LeadCommands>(*store);
    CreateRules(*commands);
    importer = std::make_unique<LeadImporter>(*commands);
  }
};

// Leads written (rows accepted or reported duplicates; rejected rows write
// none) and wall time per benchmark, for the figure lines.
struct Totals {
  int64_t leads = 0;
  absl::Duration time;
  // CPU time of the whole process (every thread, RocksDB's included).
  double cpu_seconds = 0;
};

Totals g_use_case;
Totals g_grpc;
// A failed call: its iteration's leads are counted without its time, so no
// figure is printed at all.
bool g_failed = false;

void Fail(benchmark::State& state, const std::string& error) {
  g_failed = true;
  state.SkipWithError(error.c_str());
}

void Report(benchmark::State& state, int64_t leads) {
  state.SetItemsProcessed(leads);
  state.counters["leads_per_s"] =
      benchmark::Counter(static_cast<double>(leads), benchmark::Counter::kIsRate);
}

// The use case alone: LeadImporter fed messages as the gRPC handler would.
void BM_ImportLeadsUseCase(benchmark::State& state) {
  Service service;
  int run = 0;
  int64_t total = 0;
  for (auto _ : state) {
    state.PauseTiming();
    const std::string import_id = absl::StrCat("bench-", run++);
    auto messages = Messages(import_id, 1, g_rows);
    state.ResumeTiming();
    const absl::Time start = absl::Now();
    const double cpu_start = crm::bench::ProcessCpuSeconds();
    // In calls of kRowsPerCall rows, as a client must send them.
    int64_t leads = 0;
    constexpr size_t kMessagesPerCall = kRowsPerCall / kRowsPerMessage;
    for (size_t first = 0; first < messages.size(); first += kMessagesPerCall) {
      auto session =
          service.importer->Begin(import_id, crm::v1::LEAD_CHANNEL_TRADE_SHOW, BenchContext());
      if (!session.ok()) return Fail(state, session.status().ToString());
      for (size_t m = first; m < std::min(messages.size(), first + kMessagesPerCall); ++m) {
        if (auto st = (*session)->Add(messages[m].mutable_rows()); !st.ok()) {
          return Fail(state, st.ToString());
        }
      }
      auto response = (*session)->Finish();
      if (!response.ok()) return Fail(state, response.status().ToString());
      leads += response->accepted() + response->duplicates();
    }
    total += leads;
    g_use_case.leads += leads;
    g_use_case.time += absl::Now() - start;
    g_use_case.cpu_seconds += crm::bench::ProcessCpuSeconds() - cpu_start;
  }
  Report(state, total);
}

// Client streams over loopback to the gRPC service in this process.
void BM_ImportLeadsGrpc(benchmark::State& state) {
  Service service;
  BlockingExecutor executor(4);
  LeadsGrpc grpc_service(*service.commands, *service.importer, executor);
  int port = 0;
  // Authenticated like the service: the token check is part of the cost.
  auth::JwtVerifierOptions jwt;
  jwt.hs256_key = auth::kDevHs256Key;
  jwt.issuer = auth::kDefaultIssuer;
  jwt.audience = auth::kDefaultAudience;
  std::shared_ptr<const auth::JwtVerifier> verifier = *auth::JwtVerifier::Create(jwt);
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> interceptors;
  interceptors.push_back(
      std::make_unique<auth::AuthInterceptorFactory>(verifier, /*audit=*/nullptr));
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&grpc_service);
  builder.experimental().SetInterceptorCreators(std::move(interceptors));
  auto server = builder.BuildAndStart();
  auth::TokenSpec spec;
  spec.subject = "bench";
  spec.roles = {auth::kRoleAdmin};
  spec.issuer = auth::kDefaultIssuer;
  spec.audience = auth::kDefaultAudience;
  const std::string bearer = "Bearer " + *auth::SignHs256(spec, auth::kDevHs256Key);
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(64 << 20);
  auto stub = crm::v1::LeadsService::NewStub(grpc::CreateCustomChannel(
      absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials(), args));

  int run = 0;
  int64_t total = 0;
  for (auto _ : state) {
    state.PauseTiming();
    const std::string import_id = absl::StrCat("grpc-", run++);
    std::vector<std::vector<crm::v1::ImportLeadsRequest>> calls;
    for (int64_t first = 1; first <= g_rows; first += kRowsPerCall) {
      calls.push_back(
          Messages(import_id, first, std::min<int64_t>(kRowsPerCall, g_rows - first + 1)));
    }
    state.ResumeTiming();
    const absl::Time start = absl::Now();
    const double cpu_start = crm::bench::ProcessCpuSeconds();
    for (const auto& messages : calls) {
      grpc::ClientContext ctx;
      ctx.AddMetadata("authorization", bearer);
      crm::v1::ImportLeadsResponse response;
      auto writer = stub->ImportLeads(&ctx, &response);
      for (const auto& m : messages) {
        if (!writer->Write(m)) break;
      }
      writer->WritesDone();
      auto st = writer->Finish();
      if (!st.ok()) return Fail(state, st.error_message());
      total += response.accepted() + response.duplicates();
      g_grpc.leads += response.accepted() + response.duplicates();
    }
    g_grpc.time += absl::Now() - start;
    g_grpc.cpu_seconds += crm::bench::ProcessCpuSeconds() - cpu_start;
  }
  server->Shutdown();
  Report(state, total);
}

BENCHMARK(BM_ImportLeadsUseCase)->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(3);
BENCHMARK(BM_ImportLeadsGrpc)->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(3);

}  // namespace
}  // namespace crm::leads

int main(int argc, char** argv) {
  crm::UseReleaseRuntime();
  // Our own flag first; the rest is Google Benchmark's.
  std::vector<char*> rest;
  for (int i = 0; i < argc; ++i) {
    absl::string_view arg = argv[i];
    if (absl::ConsumePrefix(&arg, "--rows=")) {
      if (!absl::SimpleAtoi(arg, &crm::leads::g_rows) || crm::leads::g_rows <= 0) {
        std::fprintf(stderr, "--rows: a positive number\n");
        return 2;
      }
      continue;
    }
    rest.push_back(argv[i]);
  }
  int rest_argc = static_cast<int>(rest.size());
  benchmark::Initialize(&rest_argc, rest.data());
  std::printf("rows per import: %lld (every hundredth rejected; the figures count leads)\n",
              static_cast<long long>(crm::leads::g_rows));
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  using crm::leads::g_grpc;
  using crm::leads::g_use_case;
  // Leads written: a rejected row (every hundredth) writes none. The CPU
  // cost per lead says what the machine can do when the benchmark has it to
  // itself (wall-clock figures drop when other work shares it).
  if (crm::leads::g_failed || g_use_case.leads == 0 || g_grpc.leads == 0) {
    std::fprintf(stderr, "an import benchmark failed: no figures\n");
    return 1;
  }
  crm::bench::Figure("leads import, use case in process",
                     crm::bench::PerSecond(g_use_case.leads, g_use_case.time), "leads/s");
  crm::bench::Figure("leads import, use case, CPU per lead",
                     g_use_case.cpu_seconds * 1e6 / g_use_case.leads, "us");
  // The service's handler and use case, without the outbox relay that
  // crm-leads runs beside them.
  crm::bench::Figure("leads import, gRPC on loopback, no relay",
                     crm::bench::PerSecond(g_grpc.leads, g_grpc.time), "leads/s");
  crm::bench::Figure("leads import, gRPC, CPU per lead (client and server)",
                     g_grpc.cpu_seconds * 1e6 / g_grpc.leads, "us");
  return 0;
}
