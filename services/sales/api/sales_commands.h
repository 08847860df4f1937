#pragma once

#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "crm/v1/envelope.pb.h"
#include "crm/v1/sales.pb.h"
#include "libs/common/envelope.h"
#include "libs/common/pii/key_vault.h"
#include "libs/common/striped_mutex.h"
#include "services/sales/domain/customer.h"
#include "services/sales/domain/pipeline.h"
#include "services/sales/store/sales_store.h"

namespace crm::sales {

inline constexpr char kSalesSource[] = "crm/sales";

using Clock = std::function<absl::Time()>;

struct SalesSettings {
  Pipelines pipelines;
  LoyaltyProgram loyalty = LoyaltyProgram::Default();
  // An open opportunity without activity for this long is stale.
  absl::Duration stale_after = absl::Hours(24 * 14);
  // "Now" of queries that depend on it (overdue tasks, stale deals).
  Clock clock = [] { return absl::Now(); };
};

// The use cases of the sales service: validate, load, Decide, Apply and
// append in one batch. Transport-free so it is tested without gRPC. A
// command's `ctx.occurred_at` is its time.
class SalesCommands {
 public:
  SalesCommands(SalesStore& store, SalesSettings settings)
      : store_(store), settings_(std::move(settings)) {}

  // The service's event log (stored results of earlier calls among them).
  const EventStore& events() const { return store_.events(); }

  // Seals the personal data of requests (OpenCustomer's contacts, the
  // subject and notes of activities and tasks) with the customer's data key
  // (libs/common/pii); without a vault it is stored as sent.
  void SealPiiWith(pii::KeyVault& vault) { vault_ = &vault; }

  // ---- Customers ----
  // `as_sent` is the request before the caller's defaults were filled in
  // (territory and owner from its token): a retry is matched by it, as the
  // token may have changed between attempts. Null: `request` as sent.
  absl::StatusOr<crm::v1::Customer> OpenCustomer(
      const crm::v1::OpenCustomerRequest& request, EventContext ctx,
      const crm::v1::OpenCustomerRequest* as_sent = nullptr);
  absl::StatusOr<crm::v1::Customer> GetCustomer(const crm::v1::GetCustomerRequest& request) const;
  // `visible` (the caller's access; all when null) is applied with the
  // filters, before the page is cut, so a page is full whenever more follow.
  absl::StatusOr<crm::v1::ListCustomersResponse> ListCustomers(
      const crm::v1::ListCustomersRequest& request,
      const std::function<bool(const crm::v1::Customer&)>& visible = nullptr) const;
  // The request checked and its page opened: a caller whose slice of the
  // filter is empty is still told of bad input.
  static absl::StatusOr<crm::v1::PageRequest> OpenListCustomers(
      const crm::v1::ListCustomersRequest& request);

  // ---- Opportunities ----
  absl::StatusOr<crm::v1::Opportunity> OpenOpportunity(
      const crm::v1::OpenOpportunityRequest& request, EventContext ctx);
  absl::StatusOr<crm::v1::Opportunity> GetOpportunity(
      const crm::v1::GetOpportunityRequest& request) const;
  absl::StatusOr<crm::v1::ListOpportunitiesResponse> ListOpportunities(
      const crm::v1::ListOpportunitiesRequest& request,
      const std::function<bool(const crm::v1::Opportunity&)>& visible = nullptr) const;
  static absl::StatusOr<crm::v1::PageRequest> OpenListOpportunities(
      const crm::v1::ListOpportunitiesRequest& request);
  absl::StatusOr<crm::v1::Opportunity> ChangeOpportunityStage(
      const crm::v1::ChangeOpportunityStageRequest& request, EventContext ctx);
  absl::StatusOr<crm::v1::Opportunity> ReviseOpportunity(
      const crm::v1::ReviseOpportunityRequest& request, EventContext ctx);
  crm::v1::ListPipelinesResponse ListPipelines() const;

  // ---- Activities and tasks ----
  absl::StatusOr<crm::v1::Activity> LogActivity(const crm::v1::LogActivityRequest& request,
                                                EventContext ctx);
  // An account's activities include those of its deals; `visible` (all when
  // null) is applied before the page is cut.
  absl::StatusOr<crm::v1::ListActivitiesResponse> ListActivities(
      const crm::v1::ListActivitiesRequest& request,
      const std::function<bool(const crm::v1::Activity&)>& visible = nullptr) const;
  static absl::StatusOr<crm::v1::PageRequest> OpenListActivities(
      const crm::v1::ListActivitiesRequest& request);
  absl::StatusOr<crm::v1::Task> CreateTask(const crm::v1::CreateTaskRequest& request,
                                           EventContext ctx);
  absl::StatusOr<crm::v1::Task> CompleteTask(const crm::v1::CompleteTaskRequest& request,
                                             EventContext ctx);
  absl::StatusOr<crm::v1::ListTasksResponse> ListTasks(
      const crm::v1::ListTasksRequest& request,
      const std::function<bool(const crm::v1::Task&)>& visible = nullptr) const;
  static absl::StatusOr<crm::v1::PageRequest> OpenListTasks(
      const crm::v1::ListTasksRequest& request);
  // NOT_FOUND when there is no such task (record checks load it first).
  absl::StatusOr<crm::v1::Task> GetTask(const std::string& task_id) const;

  // ---- Quotes, orders, contracts ----
  absl::StatusOr<crm::v1::Quote> DraftQuote(const crm::v1::DraftQuoteRequest& request,
                                            EventContext ctx);
  absl::StatusOr<crm::v1::Quote> GetQuote(const crm::v1::GetQuoteRequest& request) const;
  absl::StatusOr<crm::v1::Quote> AcceptQuote(const crm::v1::AcceptQuoteRequest& request,
                                             EventContext ctx);
  absl::StatusOr<crm::v1::Quote> DeclineQuote(const crm::v1::DeclineQuoteRequest& request,
                                              EventContext ctx);
  absl::StatusOr<crm::v1::Order> PlaceOrder(const crm::v1::PlaceOrderRequest& request,
                                            EventContext ctx);
  absl::StatusOr<crm::v1::Order> GetOrder(const crm::v1::GetOrderRequest& request) const;
  absl::StatusOr<crm::v1::Contract> DraftContract(const crm::v1::DraftContractRequest& request,
                                                  EventContext ctx);
  absl::StatusOr<crm::v1::Contract> GetContract(const crm::v1::GetContractRequest& request) const;
  absl::StatusOr<crm::v1::Contract> SubmitContract(const crm::v1::SubmitContractRequest& request,
                                                   EventContext ctx);
  // `roles` are the caller's; approving and rejecting need sales_manager.
  absl::StatusOr<crm::v1::Contract> ApproveContract(const crm::v1::ApproveContractRequest& request,
                                                    EventContext ctx,
                                                    const std::vector<std::string>& roles);
  absl::StatusOr<crm::v1::Contract> RejectContract(const crm::v1::RejectContractRequest& request,
                                                   EventContext ctx,
                                                   const std::vector<std::string>& roles);

  absl::StatusOr<crm::v1::GetForecastResponse> GetForecast(
      const crm::v1::GetForecastRequest& request) const;

  // ---- Reactions to events, exactly once per event_id ----
  // LeadConverted: opens the account (unless open already) and an
  // opportunity, and answers a churn alert kept for the person (below).
  absl::Status OpenAccountFromLead(const crm::v1::EventEnvelope& event);
  // InvoiceRequested: counts the contract's value towards loyalty.
  absl::Status RecordSpendFromInvoice(const crm::v1::EventEnvelope& event);
  // ChurnRiskRaised (analytics): a retention-call task for the account's
  // owner, due kRetentionCallWithin after the crossing or after it is
  // answered, whichever is later. For a person without an account here the alert is kept
  // until a conversion opens one (the leads topic is read apart from
  // analytics'). None for a crossing older than kRetentionAlertsKept when
  // read (the topic's history, read once when sales first subscribes).
  absl::Status OpenRetentionTask(const crm::v1::EventEnvelope& event);
  static constexpr absl::Duration kRetentionCallWithin = absl::Hours(48);
  static constexpr absl::Duration kRetentionAlertsKept = absl::Hours(30 * 24);

  // ---- Timers; each returns how many reminders it raised ----
  absl::StatusOr<int> RaiseTaskReminders(absl::Time now);
  // A pass flags at most `max_flags` deals (one synced append each), so
  // thousands gone stale at once (an import of old deals) do not hold the
  // reminder thread, and with it task reminders and shutdown, for minutes.
  struct StalePass {
    int raised = 0;
    bool more = false;  // stale deals left for the next pass
  };
  static constexpr size_t kMaxStaleFlagsPerPass = 200;
  absl::StatusOr<StalePass> FlagStaleOpportunities(absl::Time now,
                                                   size_t max_flags = kMaxStaleFlagsPerPass);

  const SalesSettings& settings() const { return settings_; }

 private:
  template <typename State>
  struct Outcome {
    State state;
    size_t appended = 0;
  };
  // A customer, and the opportunity when the target was one.
  struct Target {
    crm::v1::Customer customer;
    std::optional<crm::v1::Opportunity> opportunity;
  };

  // Runs one command on one stream: answers a retry of `request_key` from
  // its first result, checks `expected_version` (kAnyVersion: none),
  // decides, folds and appends events, state, read-model rows and the
  // idempotency record in one batch. A race on an unversioned command is
  // retried on fresh state.
  static constexpr int64_t kAnyVersion = -1;
  // Whether the stream's events after `expected_version`, up to `version`,
  // are all the timer's notes (a stale deal's reminder): no one's change a
  // caller who read the earlier version could be overwriting.
  absl::StatusOr<bool> OnlyTimerNotesAfter(const std::string& stream, int64_t expected_version,
                                           int64_t version) const;
  template <typename State, typename Decider, typename Rows>
  absl::StatusOr<Outcome<State>> Execute(const std::string& stream, const std::string& request_key,
                                         int64_t expected_version, const EventContext& ctx,
                                         Decider&& decide, Rows&& rows);

  // A command on one existing record that writes no read-model rows (the
  // quote and contract transitions): checks request_id and the record id
  // (named `id_field` in errors), then runs `command(ctx)` under the
  // caller's request key "<method>/<request_id>" with `request`'s
  // fingerprint. With `unless_lost_to`, a command that passes its own
  // checks is refused while the record's deal is lost (DealNotLost), under
  // the deal's lock so it cannot be lost meanwhile.
  template <typename State, typename MakeCommand>
  absl::StatusOr<State> Transition(const google::protobuf::Message& request,
                                   absl::string_view method, absl::string_view id_field,
                                   const std::string& id, const std::string& request_id,
                                   EventContext raw_ctx, MakeCommand&& command,
                                   absl::string_view unless_lost_to = {});
  // The record on `stream`: NOT_FOUND naming `noun` and `id` when it was
  // never created.
  template <typename State>
  absl::StatusOr<State> LoadExisting(absl::string_view noun, const std::string& stream,
                                     const std::string& id) const;

  absl::StatusOr<crm::v1::Customer> OpenCustomerWith(const crm::v1::OpenCustomerRequest& request,
                                                     const std::string& lead_id,
                                                     const std::string& request_key,
                                                     const EventContext& ctx);
  // `opportunity_id`: the new deal's id (a new one when empty).
  absl::StatusOr<crm::v1::Opportunity> OpenOpportunityWith(
      const crm::v1::OpenOpportunityRequest& request, const std::string& lead_id,
      const std::string& request_key, const EventContext& ctx,
      const std::string& opportunity_id = "");
  absl::StatusOr<crm::v1::Customer> LoadCustomer(const std::string& customer_id) const;
  absl::StatusOr<crm::v1::Opportunity> LoadOpportunity(const std::string& opportunity_id) const;
  // The deal's quote, or none yet (FAILED_PRECONDITION on quote_id for
  // another): one quote of a deal is accepted and ordered.
  absl::Status TheDealsQuote(const std::string& opportunity_id, const std::string& quote_id) const;
  // FAILED_PRECONDITION on quote_id when the deal accepted another quote
  // after this one (a loss between them or not): only the last is ordered.
  absl::Status AcceptedLast(const std::string& opportunity_id, const std::string& quote_id) const;
  // FAILED_PRECONDITION while the deal is lost ("reopen it to `to`"); OK
  // for none (an empty id). The caller holds the deal's lock.
  absl::Status DealNotLost(const std::string& opportunity_id, absl::string_view to) const;
  // As DealNotLost, and the deal's amount is in the quote's `currency`
  // (CheckQuoteCurrency, naming quote_id): it may have been revised since.
  absl::Status DealTakesQuote(const std::string& opportunity_id, absl::string_view to,
                              absl::string_view currency) const;
  // FAILED_PRECONDITION on amount.currency when `currency` is not that of
  // the quote the deal ordered: its order and invoice stay in the quote's.
  absl::Status OrderedInCurrency(const std::string& opportunity_id,
                                 absl::string_view currency) const;
  absl::StatusOr<Target> ResolveTarget(const std::string& customer_id,
                                       const std::string& opportunity_id) const;
  // Seals the request's personal data (validated already) for the customer.
  absl::Status SealFreeText(google::protobuf::Message& request, const std::string& customer_id,
                            const EventContext& ctx);
  // Fills the read-side fields (last activity) of an opportunity.
  absl::StatusOr<crm::v1::Opportunity> WithActivity(crm::v1::Opportunity opportunity) const;
  // WithActivity for a command's answer: the change is stored, so a failed
  // read leaves the fields out (logged) rather than fail a call whose retry
  // with a new request id would make the change twice.
  crm::v1::Opportunity AsWritten(crm::v1::Opportunity opportunity) const;

  SalesStore& store_;
  pii::KeyVault* vault_ = nullptr;
  SalesSettings settings_;
  // Per opportunity: serializes the read-modify-write of its last activity,
  // and holds a stage change to lost off a quote drafted or accepted on the
  // strength of the deal being open.
  StripedMutex opportunity_locks_;
  // By request id: calls that mint an id and a key before their append.
  StripedMutex request_locks_;
  // The last deal a bounded stale pass tried (FlagStaleOpportunities).
  std::string stale_resume_after_;
};

}  // namespace crm::sales
