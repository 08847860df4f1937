#include "services/analytics/api/churn_monitor.h"

#include <algorithm>
#include <optional>

#include "absl/strings/str_cat.h"
#include "libs/common/envelope.h"
#include "libs/common/ids.h"
#include "libs/common/log.h"
#include "libs/common/metrics.h"
#include "libs/common/status_macros.h"
#include "libs/common/thread_name.h"
#include "services/analytics/domain/customer_health.h"

namespace crm::analytics {
namespace {

constexpr char kAlerts[] = "churn_alerts";  // customer_id -> ChurnAlertState
constexpr char kSource[] = "crm/analytics";

// Every customer of the view's group: its decisions are stored under each.
std::vector<std::string> GroupIds(const crm::v1::Customer360& view) {
  std::vector<std::string> ids = {view.customer_id()};
  ids.insert(ids.end(), view.merged_customer_ids().begin(), view.merged_customer_ids().end());
  return ids;
}

}  // namespace

std::vector<std::string> ChurnMonitor::Families() { return {kAlerts}; }

ChurnMonitor::ChurnMonitor(const ViewStore& views, EventStore& events, std::function<bool()> ready)
    : views_(views),
      events_(events),
      ready_(std::move(ready)),
      passes_(MetricsRegistry::Default().GetCounter(
          "crm_churn_passes_total",
          "Churn monitor passes over every customer (one that stops at a storage error "
          "or a shutdown is not counted)")),
      raised_(MetricsRegistry::Default().GetCounter("crm_churn_alerts_raised_total",
                                                    "ChurnRiskRaised events appended")),
      not_evaluated_(MetricsRegistry::Default().GetCounter(
          "crm_churn_customers_not_evaluated_total",
          "Customers a churn pass could not read or decide (retried on the next pass)")) {}

ChurnMonitor::~ChurnMonitor() { Stop(); }

absl::StatusOr<crm::v1::ChurnAlertState> ChurnMonitor::LoadAlert(
    const crm::v1::Customer360& view) const {
  // A group's decision is stored under each of its customers, so they agree
  // once it has one; a customer merged in since brings its own. The group is
  // alerted if any of them is (the person's alert is open), and counts on
  // from the most crossings any has seen.
  std::optional<crm::v1::ChurnAlertState> found;
  int32_t crossings = 0;
  for (const auto& id : GroupIds(view)) {
    CRM_ASSIGN_OR_RETURN(auto raw, events_.db().Get(kAlerts, id));
    if (!raw.has_value()) continue;
    crm::v1::ChurnAlertState state;
    if (!state.ParseFromString(*raw)) {
      return absl::DataLossError(absl::StrCat("corrupt churn alert of ", id));
    }
    crossings = std::max(crossings, state.crossings());
    if (!found.has_value() || (state.raised() && !found->raised())) found = std::move(state);
  }
  crm::v1::ChurnAlertState out = found.value_or(crm::v1::ChurnAlertState());
  out.set_crossings(crossings);
  return out;
}

std::vector<ProjectionWrite> ChurnMonitor::AlertWrites(const crm::v1::Customer360& view,
                                                       const crm::v1::ChurnAlertState& state) {
  std::vector<ProjectionWrite> writes;
  const std::string bytes = state.SerializeAsString();
  for (const auto& id : GroupIds(view)) writes.push_back({kAlerts, id, bytes});
  return writes;
}

absl::Status ChurnMonitor::StoreAlert(const crm::v1::Customer360& view,
                                      const crm::v1::ChurnAlertState& state) {
  rocksdb::WriteBatch batch;
  for (const auto& w : AlertWrites(view, state)) {
    CRM_RETURN_IF_ERROR(FromRocks(batch.Put(events_.db().Family(w.family), w.key, w.value)));
  }
  return events_.db().Write(&batch, /*sync=*/true);
}

absl::StatusOr<int> ChurnMonitor::RunOnce() {
  if (ready_ && !ready_()) return 0;
  int raised = 0, failed = 0;
  absl::Status first_failure;
  std::string first_failed;
  auto not_evaluated = [&](const std::string& customer_id, const absl::Status& why) {
    not_evaluated_.Inc();
    if (failed++ > 0) return;
    first_failure = why;
    first_failed = customer_id;
    log::Error("churn monitor: customer not evaluated",
               {{"customer_id", customer_id}, {"error", why.ToString()}});
  };
  // One customer that cannot be read or decided (a corrupt view or alert
  // row, an append refused) must not keep every customer after it from
  // being decided: the pass goes on, and the next one tries it again.
  CRM_RETURN_IF_ERROR(views_.ForEachCustomer(
      [&](const crm::v1::Customer360& view) -> absl::Status {
        if (stopping_.load(std::memory_order_relaxed)) {
          return absl::CancelledError("churn pass ended by a stop");
        }
        absl::StatusOr<bool> evaluated = Evaluate(view);
        if (evaluated.ok()) {
          if (*evaluated) {
            ++raised;
            raised_.Inc();
          }
        } else {
          not_evaluated(view.customer_id(), evaluated.status());
        }
        return absl::OkStatus();
      },
      not_evaluated));
  passes_.Inc();
  if (failed > 0) {
    return absl::Status(
        first_failure.code(),
        absl::StrCat(failed, " customer(s) not evaluated (", raised, " alert(s) raised); first ",
                     first_failed, ": ", first_failure.message()));
  }
  return raised;
}

absl::StatusOr<bool> ChurnMonitor::Evaluate(const crm::v1::Customer360& view) {
  CRM_ASSIGN_OR_RETURN(auto previous, LoadAlert(view));
  ChurnAlertDecision d = DecideChurnAlert(previous, view, views_.config());
  if (!d.state_changed) return false;
  if (!d.raised.has_value()) {
    CRM_RETURN_IF_ERROR(StoreAlert(view, d.state));
    return false;
  }

  AppendRequest req;
  req.stream = absl::StrCat("churnrisk-", view.customer_id());
  auto current = events_.LoadState(req.stream);
  if (!current.ok() && !absl::IsNotFound(current.status())) return current.status();
  req.expected_version = current.ok() ? current->version : EventStore::kNoStream;
  EventContext ctx;
  ctx.source = kSource;
  ctx.actor = "analytics";
  ctx.correlation_id = d.raised->cause_event_id();
  ctx.causation_id = d.raised->cause_event_id();
  // Event time, not the wall clock: the evaluation's place in history.
  ctx.occurred_at = FromProtoTimestamp(d.raised->evaluated_at());
  req.events.push_back(MakeEnvelope(*d.raised, view.customer_id(), ctx));
  req.request_key = ChurnRequestKey(*d.raised, d.state.crossings());
  req.projection_writes = AlertWrites(view, d.state);
  CRM_ASSIGN_OR_RETURN(auto result, events_.Append(std::move(req)));
  if (result.replayed) {
    // This crossing was raised before the alert state was lost: keep the
    // state, raise nothing.
    CRM_RETURN_IF_ERROR(StoreAlert(view, d.state));
    return false;
  }
  log::Info("churn risk raised",
            {{"customer_id", view.customer_id()}, {"score", absl::StrCat(d.raised->score())}});
  return true;
}

void ChurnMonitor::Start(absl::Duration interval) {
  thread_ = std::thread([this, interval] {
    NameThisThread("crm-churn");
    std::unique_lock lock(mu_);
    while (!stopping_) {
      lock.unlock();
      if (auto n = RunOnce(); !n.ok() && !absl::IsCancelled(n.status())) {
        log::Error("churn monitor pass", {{"error", n.status().ToString()}});
      }
      lock.lock();
      cv_.wait_for(lock, absl::ToChronoMilliseconds(interval), [this] { return stopping_.load(); });
    }
  });
}

void ChurnMonitor::Stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

}  // namespace crm::analytics
