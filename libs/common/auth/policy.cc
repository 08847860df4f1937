#include "libs/common/auth/policy.h"

#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace crm::auth {
namespace {

// admin and service are listed explicitly on every row rather than implied,
// so the table reads as the whole truth.
#define SALES_ALL kRoleAdmin, kRoleService, kRoleSalesManager, kRoleSalesRep
#define MANAGERS kRoleAdmin, kRoleService, kRoleSalesManager
#define OPERATORS kRoleAdmin, kRoleService
#define DESK kRoleAdmin, kRoleService, kRoleSupportAgent
#define EVERYONE \
  kRoleAdmin, kRoleService, kRoleSalesManager, kRoleSalesRep, kRoleSupportAgent, kRoleAnalyst

constexpr char kLeads[] = "/crm.v1.LeadsService/";
constexpr char kSales[] = "/crm.v1.SalesService/";
constexpr char kDesk[] = "/crm.v1.ServiceDeskService/";
constexpr char kAnalytics[] = "/crm.v1.AnalyticsService/";
constexpr char kAdmin[] = "/crm.v1.AdminService/";

using RoleTable = absl::flat_hash_map<std::string, std::vector<std::string>>;

struct Rule {
  const char* method;
  std::vector<std::string> roles;
};

struct ServiceRules {
  const char* prefix;
  std::vector<Rule> rules;
};

RoleTable BuildTable() {
  const std::vector<ServiceRules> services = {
      {kLeads,
       {
           {"CaptureLead", {SALES_ALL}},
           {"ImportLeads", {MANAGERS}},
           {"GetLead", {SALES_ALL}},
           {"ListLeads", {SALES_ALL}},
           {"GetLeadHistory", {SALES_ALL}},
           {"RecordLeadActivity", {SALES_ALL}},
           {"QualifyLead", {SALES_ALL}},
           {"DisqualifyLead", {SALES_ALL}},
           {"NurtureLead", {SALES_ALL}},
           {"ConvertLead", {SALES_ALL}},
           {"AssignLead", {MANAGERS}},
           {"MergeLeads", {SALES_ALL}},
           {"CreateAssignmentRule", {OPERATORS}},
           {"ListAssignmentRules", {MANAGERS}},
           {"ReorderAssignmentRules", {OPERATORS}},
           {"DisableAssignmentRule", {OPERATORS}},
           {"EnableAssignmentRule", {OPERATORS}},
       }},
      {kSales,
       {
           {"OpenCustomer", {SALES_ALL}},
           {"GetCustomer", {SALES_ALL}},
           {"ListCustomers", {SALES_ALL}},
           {"OpenOpportunity", {SALES_ALL}},
           {"GetOpportunity", {SALES_ALL}},
           {"ListOpportunities", {SALES_ALL}},
           {"ChangeOpportunityStage", {SALES_ALL}},
           {"ReviseOpportunity", {SALES_ALL}},
           {"ListPipelines", {SALES_ALL}},
           {"LogActivity", {SALES_ALL}},
           {"ListActivities", {SALES_ALL}},
           {"CreateTask", {SALES_ALL}},
           {"CompleteTask", {SALES_ALL}},
           {"ListTasks", {SALES_ALL}},
           {"DraftQuote", {SALES_ALL}},
           {"GetQuote", {SALES_ALL}},
           {"AcceptQuote", {SALES_ALL}},
           {"DeclineQuote", {SALES_ALL}},
           {"PlaceOrder", {SALES_ALL}},
           {"GetOrder", {SALES_ALL}},
           {"DraftContract", {SALES_ALL}},
           {"GetContract", {SALES_ALL}},
           {"SubmitContract", {SALES_ALL}},
           // The domain also requires sales_manager to approve or reject.
           {"ApproveContract", {MANAGERS}},
           {"RejectContract", {MANAGERS}},
           {"GetForecast", {SALES_ALL}},
       }},
      {kDesk,
       {
           {"OpenTicket", {DESK}},
           {"AssignTicket", {DESK}},
           {"ReplyToTicket", {DESK}},
           {"AddInternalNote", {DESK}},
           {"MarkTicketPending", {DESK}},
           {"ResolveTicket", {DESK}},
           {"CloseTicket", {DESK}},
           {"ReopenTicket", {DESK}},
           {"LinkSolutionArticle", {DESK}},
           // The customer's rating arrives through the portal or survey
           // integration (service): an agent must not rate its own ticket.
           {"SubmitCsat", {kRoleAdmin, kRoleService}},
           {"GetTicket", {DESK}},
           {"ListTickets", {DESK}},
           {"CreateArticle", {DESK}},
           {"UpdateArticle", {DESK}},
           {"PublishArticle", {DESK}},
           {"UnpublishArticle", {DESK}},
           // The knowledge base is readable by every signed-in role.
           {"GetArticle", {EVERYONE}},
           {"SearchArticles", {EVERYONE}},
       }},
      {kAnalytics,
       {
           // Reps pass here; which customers they may see is a record check
           // in the analytics handler (Customer360For).
           {"GetCustomer360",
            {kRoleAdmin, kRoleService, kRoleAnalyst, kRoleSalesManager, kRoleSalesRep}},
           // A manager's is narrowed to its territory (ScopeFunnel).
           {"GetFunnel", {kRoleAdmin, kRoleService, kRoleAnalyst, kRoleSalesManager}},
           // Aggregates over tickets, no customer records.
           {"GetServiceKpis",
            {kRoleAdmin, kRoleService, kRoleAnalyst, kRoleSalesManager, kRoleSupportAgent}},
           // Lists customer ids across owners and territories: not for reps or
           // managers until it filters by record scope.
           {"ListSegment", {kRoleAdmin, kRoleService, kRoleAnalyst}},
           // Names every actor and what they touched.
           {"ListAuditEntries", {kRoleAdmin}},
       }},
      // Served by every service: operations on its database.
      {kAdmin,
       {
           {"CreateBackup", {kRoleAdmin}},
           {"ListBackups", {kRoleAdmin}},
           {"EraseCustomer", {kRoleAdmin}},
           {"ExportCustomer", {kRoleAdmin}},
       }},
  };
  RoleTable table;
  for (const auto& service : services) {
    for (const auto& rule : service.rules) {
      table[absl::StrCat(service.prefix, rule.method)] = rule.roles;
    }
  }
  return table;
}

#undef SALES_ALL
#undef MANAGERS
#undef OPERATORS
#undef DESK
#undef EVERYONE

const RoleTable& Roles() {
  static const RoleTable table = BuildTable();
  return table;
}

}  // namespace

bool IsOpenMethod(absl::string_view full_method) {
  return absl::StartsWith(full_method, "/grpc.health.v1.Health/") ||
         absl::StartsWith(full_method, "/grpc.reflection.v1alpha.ServerReflection/") ||
         absl::StartsWith(full_method, "/grpc.reflection.v1.ServerReflection/");
}

bool IsKnownMethod(absl::string_view full_method) {
  return Roles().contains(full_method) || full_method == "/grpc.health.v1.Health/Check" ||
         full_method == "/grpc.health.v1.Health/Watch" ||
         full_method == "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo" ||
         full_method == "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo";
}

std::string RecordedMethod(absl::string_view full_method) {
  return IsKnownMethod(full_method) ? std::string(full_method) : "unknown";
}

std::vector<std::string> AllowedRoles(absl::string_view full_method) {
  auto it = Roles().find(full_method);
  return it == Roles().end() ? std::vector<std::string>() : it->second;
}

absl::Status Authorize(absl::string_view full_method, const Principal& principal) {
  auto it = Roles().find(full_method);
  if (it == Roles().end()) {
    // The path is the client's to choose: not echoed into the audit trail.
    return absl::PermissionDeniedError("no access policy for the method, denied by default");
  }
  for (const auto& role : it->second) {
    if (principal.HasRole(role)) return absl::OkStatus();
  }
  return absl::PermissionDeniedError(
      absl::StrCat(full_method, ": not allowed for the caller's roles"));
}

}  // namespace crm::auth
