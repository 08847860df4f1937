#include "services/analytics/domain/customer_view.h"

#include <algorithm>
#include <array>
#include <map>
#include <optional>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "crm/v1/leads.pb.h"
#include "crm/v1/sales.pb.h"
#include "crm/v1/service_desk.pb.h"
#include "google/protobuf/util/time_util.h"
#include "libs/common/arithmetic.h"
#include "libs/common/ids.h"
#include "services/analytics/domain/event_fold.h"

namespace crm::analytics {
namespace {

using crm::v1::AsOf;
using crm::v1::Customer360;
using crm::v1::EventEnvelope;
using google::protobuf::Timestamp;
using google::protobuf::util::TimeUtil;

bool Before(const Timestamp& a, const Timestamp& b) { return a < b; }

// Finds or inserts the record with `id` in a repeated field kept sorted by id,
// so the stored view does not depend on the order records appeared in.
template <typename Repeated, typename IdOf>
auto* FindOrInsertSorted(Repeated* records, const std::string& id, IdOf id_of) {
  auto pos = std::lower_bound(records->begin(), records->end(), id,
                              [&](const auto& r, const std::string& v) { return id_of(r) < v; });
  if (pos != records->end() && id_of(*pos) == id) return &*pos;
  const int index = static_cast<int>(pos - records->begin());
  records->Add();
  // Bubble the new record from the end into place.
  for (int i = records->size() - 1; i > index; --i) records->SwapElements(i, i - 1);
  return records->Mutable(index);
}

// An empty id (an outside producer's) is no id to list.
void AddSortedUnique(google::protobuf::RepeatedPtrField<std::string>* ids, const std::string& id) {
  if (id.empty()) return;
  *FindOrInsertSorted(ids, id, [](const std::string& s) -> const std::string& { return s; }) = id;
}

// Lifecycle only moves forward through lead < prospect < customer; taking
// the maximum makes it order-independent.
void Reach(Customer360& view, crm::v1::LifecycleStage stage) {
  if (view.lifecycle_stage() < stage) view.set_lifecycle_stage(stage);
}

std::string EnumWord(const std::string& name, std::string_view prefix) {
  std::string word = name.rfind(prefix, 0) == 0 ? name.substr(prefix.size()) : name;
  std::transform(word.begin(), word.end(), word.begin(),
                 [](char ch) { return ch == '_' ? ' ' : static_cast<char>(std::tolower(ch)); });
  return word;
}

std::string ChannelName(crm::v1::LeadChannel c) {
  return EnumWord(crm::v1::LeadChannel_Name(c), "LEAD_CHANNEL_");
}

std::string StatusName(crm::v1::TicketStatus s) {
  return EnumWord(crm::v1::TicketStatus_Name(s), "TICKET_STATUS_");
}

std::string MoneyText(const crm::v1::Money& m) {
  const int64_t units = m.minor_units();
  const int64_t whole = units / 100;
  // The remainder's sign dropped after the division: -INT64_MIN overflows.
  const int64_t cents = units % 100 < 0 ? -(units % 100) : units % 100;
  return absl::StrCat(units < 0 && whole == 0 ? "-" : "", whole, ".", cents < 10 ? "0" : "", cents,
                      m.currency().empty() ? "" : " ", m.currency());
}

// The profile's fields with the stamp of each: one list for the fold and
// the join.
template <typename Profile, typename Stamps>
auto ProfileFields(Profile* p, Stamps* s) {
  return std::array{std::pair{p->mutable_first_name(), s->mutable_first_name()},
                    std::pair{p->mutable_last_name(), s->mutable_last_name()},
                    std::pair{p->mutable_email(), s->mutable_email()},
                    std::pair{p->mutable_phone(), s->mutable_phone()},
                    std::pair{p->mutable_company(), s->mutable_company()},
                    std::pair{p->mutable_region(), s->mutable_region()}};
}

void ApplyContact(Customer360& view, const EventEnvelope& event, const crm::v1::Contact& c,
                  const std::string& company, const std::string& region) {
  // Each field from the latest event that set it: a newer capture without
  // a phone keeps the phone an older one gave, in any delivery order.
  const std::array<const std::string*, 6> values = {&c.first_name(), &c.last_name(), &c.email(),
                                                    &c.phone(),      &company,       &region};
  auto fields = ProfileFields(view.mutable_profile(), view.mutable_profile_stamps());
  for (size_t i = 0; i < fields.size(); ++i) {
    if (!values[i]->empty() && TakeIfNewer(fields[i].second, event)) *fields[i].first = *values[i];
  }
  if (!view.has_profile_as_of() || Before(view.profile_as_of(), event.occurred_at())) {
    *view.mutable_profile_as_of() = event.occurred_at();
  }
}

// The account's contact fills the profile fields no lead set, stamped as
// the account's: a lead's value takes the field whenever it comes, and of
// two accounts (a merged group) the later fills it, in any order.
void FillFromAccount(Customer360& view, const EventEnvelope& event, const crm::v1::Contact& c) {
  const std::array<const std::string*, 4> values = {&c.first_name(), &c.last_name(), &c.email(),
                                                    &c.phone()};
  auto fields = ProfileFields(view.mutable_profile(), view.mutable_profile_stamps());
  for (size_t i = 0; i < values.size(); ++i) {
    if (values[i]->empty()) continue;
    crm::v1::AsOf* stamp = fields[i].second;
    if (!stamp->has_at() && !fields[i].first->empty()) continue;  // a lead's, stored unstamped
    if (!OutranksStamp(event.occurred_at(), event.event_id(), /*from_account=*/true, *stamp)) {
      continue;
    }
    *stamp = StampOf(event, /*from_account=*/true);
    *fields[i].first = *values[i];
  }
}

// A lead's owner (none: taken from its owner): the customer's owner only
// while no account names one.
void SetLeadOwner(Customer360& view, const EventEnvelope& event, const std::string& owner_id) {
  if (!view.account_owner_id().empty()) return;
  if (TakeIfNewer(view.mutable_owner_as_of(), event)) view.set_owner_id(owner_id);
}

// An earlier capture of the customer's makes its lead the home.
void TakeHome(Customer360& view, const EventEnvelope& event, const std::string& lead_id,
              const std::string& region) {
  if (!view.tracks_home()) return;
  // The earliest capture wins: the mirror of last writer wins.
  if (view.has_home_as_of() &&
      OutranksStamp(event.occurred_at(), event.event_id(), false, view.home_as_of())) {
    return;
  }
  view.set_home_lead_id(lead_id);
  view.set_home_region(region);
  *view.mutable_home_as_of() = StampOf(event);
}

crm::v1::LeadOwner* LeadOwnerOf(Customer360& view, const std::string& lead_id) {
  auto* owner = FindOrInsertSorted(view.mutable_lead_owners(), lead_id,
                                   [](const auto& o) -> const std::string& { return o.lead_id(); });
  owner->set_lead_id(lead_id);
  return owner;
}

// A lead's owner from its latest assignment (into a queue: none).
void SetOwnerOfLead(Customer360& view, const EventEnvelope& event, const std::string& lead_id,
                    const std::string& owner_id) {
  auto* owner = LeadOwnerOf(view, lead_id);
  if (TakeIfNewer(owner->mutable_as_of(), event)) owner->set_owner_id(owner_id);
}

// The account event the account owner was taken from.
AsOf AccountOwnerStamp(const Customer360& view) {
  if (view.account_owner_id().empty()) return AsOf();
  return view.has_account_owner_as_of() ? view.account_owner_as_of() : view.account_as_of();
}

// The account's owner outranks every lead's, whichever arrived first.
void TakeAccountOwner(Customer360& view) {
  if (view.account_owner_id().empty()) return;
  view.set_owner_id(view.account_owner_id());
  *view.mutable_owner_as_of() = AccountOwnerStamp(view);
}

crm::v1::LeadDisqualification* DisqualificationOf(Customer360& view, const std::string& lead_id) {
  auto* d = FindOrInsertSorted(view.mutable_lead_disqualifications(), lead_id,
                               [](const auto& x) -> const std::string& { return x.lead_id(); });
  d->set_lead_id(lead_id);
  return d;
}

// A lead's disqualification, by the latest event that decides it.
void SetDisqualified(Customer360& view, const EventEnvelope& event, const std::string& lead_id,
                     bool disqualified) {
  auto* d = DisqualificationOf(view, lead_id);
  if (TakeIfNewer(d->mutable_as_of(), event)) d->set_disqualified(disqualified);
}

void SetTier(Customer360& view, const EventEnvelope& event, const std::string& tier) {
  if (tier.empty()) return;
  if (TakeIfNewer(view.mutable_tier_as_of(), event)) view.set_tier(tier);
}

// The person's latest score, and the lead's own: "potential" asks whether
// a lead still in play scores enough, not whichever lead scored last.
void SetLeadScore(Customer360& view, const EventEnvelope& event, const std::string& lead_id,
                  int32_t score) {
  if (TakeIfNewer(view.mutable_lead_score_as_of(), event)) view.set_lead_score(score);
  auto* lead = DisqualificationOf(view, lead_id);
  if (TakeIfNewer(lead->mutable_score_as_of(), event)) lead->set_score(score);
}

crm::v1::OpportunitySummary* Opportunity(Customer360& view, const std::string& id) {
  auto* opp =
      FindOrInsertSorted(view.mutable_opportunities(), id,
                         [](const auto& o) -> const std::string& { return o.opportunity_id(); });
  opp->set_opportunity_id(id);
  return opp;
}

crm::v1::TicketSummary* Ticket(Customer360& view, const std::string& id) {
  auto* t = FindOrInsertSorted(view.mutable_tickets(), id,
                               [](const auto& r) -> const std::string& { return r.ticket_id(); });
  t->set_ticket_id(id);
  return t;
}

void SetTicketStatus(crm::v1::TicketSummary* t, const EventEnvelope& event,
                     crm::v1::TicketStatus status) {
  if (TakeIfNewer(t->mutable_status_as_of(), event)) t->set_status(status);
}

crm::v1::TicketSla SlaOf(const crm::v1::SlaClock& clock) {
  crm::v1::TicketSla sla;
  sla.set_target_seconds(clock.target_seconds());
  if (clock.has_due_at()) *sla.mutable_due_at() = clock.due_at();
  sla.set_paused(clock.paused());
  sla.set_remaining_seconds(clock.remaining_seconds());
  if (clock.has_met_at()) *sla.mutable_met_at() = clock.met_at();
  sla.set_warned(clock.warned());
  sla.set_breached(clock.breached());
  return sla;
}

// Joins what two events said of one SLA target: the later event's clock
// (`take`), with the facts the desk never takes back kept from both, so
// the result does not depend on delivery order: a warning, a breach and
// the first response (the earliest one reported; a reopened ticket keeps
// it). A resolution is met anew after each reopening: its met time is the
// later event's.
void JoinSla(crm::v1::TicketSla* into, const crm::v1::TicketSla& from, bool take,
             bool first_response) {
  crm::v1::TicketSla other = from;
  if (take) std::swap(*into, other);
  if (other.warned()) into->set_warned(true);
  if (other.breached()) into->set_breached(true);
  if (first_response && other.has_met_at() &&
      (!into->has_met_at() || Before(other.met_at(), into->met_at()))) {
    *into->mutable_met_at() = other.met_at();
  }
}

void DeriveSlaState(crm::v1::TicketSummary* t) {
  // Ranked worst first.
  constexpr std::array kRank = {crm::v1::TICKET_SLA_STATE_BREACHED,
                                crm::v1::TICKET_SLA_STATE_AT_RISK,
                                crm::v1::TICKET_SLA_STATE_ON_TRACK,
                                crm::v1::TICKET_SLA_STATE_PAUSED, crm::v1::TICKET_SLA_STATE_MET};
  auto state_of = [](const crm::v1::TicketSla& sla) {
    if (sla.breached()) return crm::v1::TICKET_SLA_STATE_BREACHED;
    if (sla.target_seconds() <= 0) return crm::v1::TICKET_SLA_STATE_UNSPECIFIED;
    if (sla.has_met_at()) return crm::v1::TICKET_SLA_STATE_MET;
    if (sla.paused()) return crm::v1::TICKET_SLA_STATE_PAUSED;
    if (sla.warned()) return crm::v1::TICKET_SLA_STATE_AT_RISK;
    return crm::v1::TICKET_SLA_STATE_ON_TRACK;
  };
  const auto a = state_of(t->first_response()), b = state_of(t->resolution());
  t->set_sla_state(crm::v1::TICKET_SLA_STATE_UNSPECIFIED);
  for (auto state : kRank) {
    if (a == state || b == state) {
      t->set_sla_state(state);
      break;
    }
  }
}

// Both targets of `t` joined with another report of them (JoinSla).
void JoinClocks(crm::v1::TicketSummary* t, const crm::v1::TicketSla& first_response,
                const crm::v1::TicketSla& resolution, bool take) {
  JoinSla(t->mutable_first_response(), first_response, take, /*first_response=*/true);
  JoinSla(t->mutable_resolution(), resolution, take, /*first_response=*/false);
  DeriveSlaState(t);
}

// The clocks a ticket event carried, taken if the event is the latest to
// carry them.
void TakeClocks(crm::v1::TicketSummary* t, const EventEnvelope& event,
                const crm::v1::SlaClock& first_response, const crm::v1::SlaClock& resolution) {
  const bool take = TakeIfNewer(t->mutable_sla_as_of(), event);
  JoinClocks(t, SlaOf(first_response), SlaOf(resolution), take);
}

// A warning, a breach or a first response: one fact about one target.
template <typename Set>
void TakeSlaFact(crm::v1::TicketSummary* t, crm::v1::SlaTarget target, Set set) {
  crm::v1::TicketSla fact;
  set(fact);
  if (target == crm::v1::SLA_TARGET_FIRST_RESPONSE) {
    JoinSla(t->mutable_first_response(), fact, /*take=*/false, /*first_response=*/true);
  } else {
    JoinSla(t->mutable_resolution(), fact, /*take=*/false, /*first_response=*/false);
  }
  DeriveSlaState(t);
}

// Counts and sums are recomputed from the keyed records, never incremented,
// so a record seen twice or late cannot skew them.
void DeriveTotals(Customer360& view) {
  int open_opps = 0;
  for (const auto& o : view.opportunities()) {
    if (o.outcome() == crm::v1::STAGE_OUTCOME_UNSPECIFIED ||
        o.outcome() == crm::v1::STAGE_OUTCOME_OPEN) {
      ++open_opps;
    }
  }
  view.set_open_opportunity_count(open_opps);

  std::map<std::string, int64_t> ltv;
  for (const auto& o : view.orders()) {
    int64_t& sum = ltv[o.total().currency()];
    sum = SaturatingAdd(sum, o.total().minor_units());
  }
  view.clear_lifetime_value();
  for (const auto& [currency, units] : ltv) {
    auto* m = view.add_lifetime_value();
    m->set_currency(currency);
    m->set_minor_units(units);
  }

  int open_tickets = 0, breached = 0, csat_count = 0;
  int64_t csat_sum = 0;
  for (const auto& t : view.tickets()) {
    if (t.status() != crm::v1::TICKET_STATUS_RESOLVED &&
        t.status() != crm::v1::TICKET_STATUS_CLOSED) {
      ++open_tickets;
    }
    if (t.sla_breached()) ++breached;
    if (t.csat_score() > 0) {
      ++csat_count;
      csat_sum += t.csat_score();
    }
  }
  view.set_open_ticket_count(open_tickets);
  view.set_breached_ticket_count(breached);
  view.set_csat_count(csat_count);
  view.set_csat_average(csat_count == 0 ? 0.0 : static_cast<double>(csat_sum) / csat_count);
}

// A timeline entry's text: the summary is built from ids, stages, amounts
// and types; the free text an event carried goes to `detail`, sealed as it
// came, so the edge opens it for those who may read it and an erasure
// reaches it.
struct Folded {
  Folded(std::string s) : summary(std::move(s)) {}  // NOLINT: most events have no detail
  Folded(std::string s, std::string d) : summary(std::move(s)), detail(std::move(d)) {}
  std::string summary;
  std::string detail;
};

// Whether the payload is one of `T...` (each naming its lead in lead_id)
// without a lead id.
template <typename... T>
bool NamesNoLead(const Payload& payload) {
  bool missing = false;
  ((payload.As<T>() != nullptr && (missing = payload.As<T>()->lead_id().empty(), true)) || ...);
  return missing;
}

// Folds the payload into the view and returns the timeline text; an
// unknown payload leaves the view as is and is summarized by its type.
Folded FoldPayload(Customer360& view, const EventEnvelope& event, const Payload& payload) {
  using namespace crm::v1;
  // An event without its record's id (an outside producer's) names no deal,
  // order or ticket of the view: it is folded into a throwaway one, as the
  // funnel and KPI folds do, so no phantom counts as open.
  // Made only for such an event: every event of a rebuild passes here.
  std::optional<OpportunitySummary> no_opportunity;
  std::optional<TicketSummary> no_ticket;
  auto opportunity = [&](const std::string& id) {
    return id.empty() ? &no_opportunity.emplace() : Opportunity(view, id);
  };
  auto ticket = [&](const std::string& id) {
    return id.empty() ? &no_ticket.emplace() : Ticket(view, id);
  };
  if (const auto* m = payload.As<LeadCaptured>()) {
    AddSortedUnique(view.mutable_lead_ids(), m->lead_id());
    Reach(view, LIFECYCLE_STAGE_LEAD);
    ApplyContact(view, event, m->contact(), m->company(), m->region());
    TakeHome(view, event, m->lead_id(), m->region());
    if (m->has_score()) SetLeadScore(view, event, m->lead_id(), m->score().total());
    // No contact data in summaries: they are free text, never decrypted.
    return absl::StrCat("Lead captured via ", ChannelName(m->channel()),
                        m->duplicate_of_lead_id().empty() ? "" : ", known person");
  }
  if (const auto* m = payload.As<LeadAssigned>()) {
    AddSortedUnique(view.mutable_lead_ids(), m->lead_id());
    Reach(view, LIFECYCLE_STAGE_LEAD);
    // A lead taken from its owner into a queue is the latest assignment,
    // without an owner; a new lead of the person queued assigns nothing.
    if (!m->owner_id().empty() || !m->previous_owner_id().empty()) {
      SetLeadOwner(view, event, m->owner_id());
    }
    SetOwnerOfLead(view, event, m->lead_id(), m->owner_id());
    if (m->owner_id().empty()) return absl::StrCat("Lead queued in ", m->queue());
    return absl::StrCat("Lead assigned to ", m->owner_id(),
                        m->team_id().empty() ? "" : absl::StrCat(" (team ", m->team_id(), ")"));
  }
  if (const auto* m = payload.As<LeadScoreChanged>()) {
    AddSortedUnique(view.mutable_lead_ids(), m->lead_id());
    Reach(view, LIFECYCLE_STAGE_LEAD);
    SetLeadScore(view, event, m->lead_id(), m->score().total());
    return absl::StrCat("Lead score ", m->previous().total(), " -> ", m->score().total(),
                        m->reason().empty() ? "" : absl::StrCat(" (", m->reason(), ")"));
  }
  if (const auto* m = payload.As<LeadQualified>()) {
    AddSortedUnique(view.mutable_lead_ids(), m->lead_id());
    Reach(view, LIFECYCLE_STAGE_PROSPECT);
    SetDisqualified(view, event, m->lead_id(), false);
    return {"Lead qualified", m->note()};
  }
  if (const auto* m = payload.As<LeadDisqualified>()) {
    AddSortedUnique(view.mutable_lead_ids(), m->lead_id());
    Reach(view, LIFECYCLE_STAGE_LEAD);
    SetDisqualified(view, event, m->lead_id(), true);
    return absl::StrCat("Lead disqualified", m->reason().empty() ? "" : ": ", m->reason());
  }
  if (const auto* m = payload.As<LeadNurtureStarted>()) {
    AddSortedUnique(view.mutable_lead_ids(), m->lead_id());
    SetDisqualified(view, event, m->lead_id(), false);
    return event.type();  // as before it changed the view: timelines stay
  }
  if (const auto* m = payload.As<LeadConverted>()) {
    AddSortedUnique(view.mutable_lead_ids(), m->lead_id());
    Reach(view, LIFECYCLE_STAGE_PROSPECT);
    SetDisqualified(view, event, m->lead_id(), false);
    ApplyContact(view, event, m->contact(), m->company(), m->region());
    if (!m->owner_id().empty()) {
      SetLeadOwner(view, event, m->owner_id());
      SetOwnerOfLead(view, event, m->lead_id(), m->owner_id());
    }
    return absl::StrCat(
        "Lead converted to an opportunity",
        m->opportunity_name().empty() ? "" : absl::StrCat(" \"", m->opportunity_name(), "\""),
        m->owner_id().empty() ? "" : absl::StrCat(" for ", m->owner_id()));
  }
  if (const auto* m = payload.As<LeadMergedInto>()) {
    DisqualificationOf(view, m->lead_id())->set_merged(true);
    return event.type();  // as before it changed the view: timelines stay
  }
  if (const auto* m = payload.As<LeadsMerged>()) {
    if (!m->merged_lead_id().empty())
      DisqualificationOf(view, m->merged_lead_id())->set_merged(true);
    return absl::StrCat("Lead ", m->merged_lead_id(), " merged into ", m->survivor_lead_id());
  }
  if (const auto* m = payload.As<CustomerOpened>()) {
    if (TakeIfNewer(view.mutable_account_as_of(), event)) {
      // One named after its id (a converted lead with no company and no
      // readable name) has no name to show.
      view.mutable_profile()->set_account_name(m->name() == m->customer_id() ? "" : m->name());
      view.mutable_profile()->set_territory(m->territory());
    }
    if (AsOf stamp = AccountOwnerStamp(view);
        !m->owner_id().empty() && TakeIfNewer(&stamp, event)) {
      view.set_account_owner_id(m->owner_id());
      *view.mutable_account_owner_as_of() = stamp;
    }
    TakeAccountOwner(view);
    SetTier(view, event, m->tier());
    if (m->contacts_size() > 0) FillFromAccount(view, event, m->contacts(0));
    AddSortedUnique(view.mutable_lead_ids(), m->lead_id());
    Reach(view, LIFECYCLE_STAGE_PROSPECT);
    return absl::StrCat("Customer account opened: ", m->name(),
                        m->owner_id().empty() ? "" : absl::StrCat(", owner ", m->owner_id()));
  }
  if (const auto* m = payload.As<CustomerTierChanged>()) {
    SetTier(view, event, m->to_tier());
    return absl::StrCat("Tier ", m->from_tier().empty() ? "none" : m->from_tier(), " -> ",
                        m->to_tier());
  }
  if (const auto* m = payload.As<OpportunityOpened>()) {
    auto* opp = opportunity(m->opportunity_id());
    if (TakeIfNewer(opp->mutable_name_as_of(), event)) opp->set_name(m->name());
    if (TakeIfNewer(opp->mutable_as_of(), event)) {
      opp->set_stage_id(m->stage_id());
      opp->set_outcome(STAGE_OUTCOME_OPEN);
    }
    if (TakeIfNewer(opp->mutable_amount_as_of(), event)) *opp->mutable_amount() = m->amount();
    Reach(view, LIFECYCLE_STAGE_PROSPECT);
    DeriveTotals(view);
    return absl::StrCat("Opportunity opened: ", m->name(), " at ", m->stage_id(), ", ",
                        MoneyText(m->amount()));
  }
  if (const auto* m = payload.As<OpportunityStageChanged>()) {
    auto* opp = opportunity(m->opportunity_id());
    if (TakeIfNewer(opp->mutable_as_of(), event)) {
      opp->set_stage_id(m->to_stage_id());
      opp->set_outcome(m->outcome());
    }
    if (m->has_amount() && TakeIfNewer(opp->mutable_amount_as_of(), event)) {
      *opp->mutable_amount() = m->amount();
    }
    // A won deal makes a customer only while it stays won (a pipeline may
    // reopen it): DeriveHealth reads the outcomes, not a stage reached.
    Reach(view, LIFECYCLE_STAGE_PROSPECT);
    DeriveTotals(view);
    std::string summary = absl::StrCat("Opportunity ", m->opportunity_id(), " ", m->from_stage_id(),
                                       " -> ", m->to_stage_id());
    if (m->outcome() == STAGE_OUTCOME_WON)
      absl::StrAppend(&summary, ", won ", MoneyText(m->amount()));
    if (m->outcome() == STAGE_OUTCOME_LOST) {
      absl::StrAppend(&summary, ", lost", m->lost_reason().empty() ? "" : ": ", m->lost_reason());
    }
    if (m->reopened()) absl::StrAppend(&summary, " (reopened)");
    return summary;
  }
  if (const auto* m = payload.As<OpportunityRevised>()) {
    auto* opp = opportunity(m->opportunity_id());
    std::string summary = absl::StrCat("Opportunity ", m->opportunity_id(), " revised");
    if (!m->name().empty()) {
      if (TakeIfNewer(opp->mutable_name_as_of(), event)) opp->set_name(m->name());
      absl::StrAppend(&summary, ": \"", m->name(), "\"");
    }
    if (m->has_amount()) {
      if (TakeIfNewer(opp->mutable_amount_as_of(), event)) *opp->mutable_amount() = m->amount();
      absl::StrAppend(&summary, ", ", MoneyText(m->amount()));
    }
    if (!m->expected_close_date().empty()) {
      absl::StrAppend(&summary, ", closing ", m->expected_close_date());
    }
    Reach(view, LIFECYCLE_STAGE_PROSPECT);
    DeriveTotals(view);
    return summary;
  }
  if (const auto* m = payload.As<OrderPlaced>()) {
    if (m->order_id().empty()) return std::string("Order placed");
    auto* order =
        FindOrInsertSorted(view.mutable_orders(), m->order_id(),
                           [](const auto& o) -> const std::string& { return o.order_id(); });
    order->set_order_id(m->order_id());
    order->set_opportunity_id(m->opportunity_id());
    *order->mutable_total() = m->totals().total();
    *order->mutable_placed_at() = event.occurred_at();
    Reach(view, LIFECYCLE_STAGE_CUSTOMER);
    DeriveTotals(view);
    return absl::StrCat("Order ", m->order_id(), " placed, ", MoneyText(m->totals().total()));
  }
  if (const auto* m = payload.As<ActivityLogged>()) {
    return {
        absl::StrCat("Activity logged: ", EnumWord(ActivityKind_Name(m->kind()), "ACTIVITY_KIND_")),
        m->subject()};
  }
  if (const auto* m = payload.As<TicketOpened>()) {
    auto* t = ticket(m->ticket_id());
    t->set_subject(m->subject());
    t->set_product(m->product());
    *t->mutable_opened_at() = event.occurred_at();
    SetTicketStatus(t, event, TICKET_STATUS_NEW);
    TakeClocks(t, event, m->first_response(), m->resolution());
    DeriveTotals(view);
    return {absl::StrCat("Ticket opened",
                         m->product().empty() ? "" : absl::StrCat(" (", m->product(), ")")),
            m->subject()};
  }
  if (const auto* m = payload.As<TicketStatusChanged>()) {
    auto* t = ticket(m->ticket_id());
    SetTicketStatus(t, event, m->to_status());
    TakeClocks(t, event, m->first_response(), m->resolution());
    DeriveTotals(view);
    return absl::StrCat("Ticket ", m->ticket_id(), " ", StatusName(m->from_status()), " -> ",
                        StatusName(m->to_status()));
  }
  if (const auto* m = payload.As<TicketResolved>()) {
    auto* t = ticket(m->ticket_id());
    SetTicketStatus(t, event, TICKET_STATUS_RESOLVED);
    TakeClocks(t, event, m->first_response(), m->resolution());
    DeriveTotals(view);
    return absl::StrCat("Ticket ", m->ticket_id(), " resolved");
  }
  if (const auto* m = payload.As<TicketClosed>()) {
    SetTicketStatus(ticket(m->ticket_id()), event, TICKET_STATUS_CLOSED);
    DeriveTotals(view);
    return absl::StrCat("Ticket ", m->ticket_id(), " closed");
  }
  if (const auto* m = payload.As<TicketReopened>()) {
    auto* t = ticket(m->ticket_id());
    SetTicketStatus(t, event, TICKET_STATUS_OPEN);
    TakeClocks(t, event, m->first_response(), m->resolution());
    DeriveTotals(view);
    return absl::StrCat("Ticket ", m->ticket_id(), " reopened", m->reason().empty() ? "" : ": ",
                        m->reason());
  }
  if (const auto* m = payload.As<TicketReplied>()) {
    if (m->first_response()) {
      TakeSlaFact(ticket(m->ticket_id()), SLA_TARGET_FIRST_RESPONSE,
                  [&](crm::v1::TicketSla& sla) { *sla.mutable_met_at() = event.occurred_at(); });
      DeriveTotals(view);  // the ticket's row may be new (its opening not seen)
    }
    return absl::StrCat("Ticket ", m->ticket_id(), " answered by the ",
                        m->author_type() == AUTHOR_TYPE_CUSTOMER ? "customer" : "agent");
  }
  if (const auto* m = payload.As<TicketSlaWarningRaised>()) {
    TakeSlaFact(ticket(m->ticket_id()), m->target(),
                [](crm::v1::TicketSla& sla) { sla.set_warned(true); });
    DeriveTotals(view);
    return absl::StrCat("Ticket ", m->ticket_id(), " is close to its ",
                        EnumWord(SlaTarget_Name(m->target()), "SLA_TARGET_"), " SLA");
  }
  if (const auto* m = payload.As<TicketSlaBreached>()) {
    auto* t = ticket(m->ticket_id());
    t->set_sla_breached(true);
    TakeSlaFact(t, m->target(), [](crm::v1::TicketSla& sla) { sla.set_breached(true); });
    DeriveTotals(view);
    return absl::StrCat("Ticket ", m->ticket_id(), " breached its ",
                        EnumWord(SlaTarget_Name(m->target()), "SLA_TARGET_"), " SLA");
  }
  if (const auto* m = payload.As<ChurnRiskRaised>()) {
    return absl::StrCat("Churn risk raised: score ", m->score(), " (threshold ", m->threshold(),
                        ")");
  }
  if (const auto* m = payload.As<CsatSubmitted>()) {
    auto* t = ticket(m->ticket_id());
    if (TakeIfNewer(t->mutable_csat_as_of(), event)) t->set_csat_score(m->score());
    DeriveTotals(view);
    return absl::StrCat("CSAT ", m->score(), " for ticket ", m->ticket_id());
  }
  return event.type();
}

// True when `a` was taken from a later event than `b` (TakeIfNewer's order).
bool Later(const AsOf& a, const AsOf& b) {
  return a.has_at() && OutranksStamp(a.at(), a.event_id(), a.from_account(), b);
}

// `into` takes the value of `from` when `from`'s is later.
template <typename Set>
void TakeLater(AsOf* into_as_of, const AsOf& from_as_of, Set set) {
  if (!Later(from_as_of, *into_as_of)) return;
  set();
  *into_as_of = from_as_of;
}

void JoinProfile(Customer360& into, const Customer360& from) {
  // As ApplyContact, field by field. A view stored before fields were
  // stamped fills only the fields left empty.
  // Copies of the profile and its stamps only (ProfileFields takes mutable
  // ones), not of the whole view with its records.
  crm::v1::CustomerProfile profile = from.profile();
  crm::v1::ProfileStamps stamps = from.profile_stamps();
  auto theirs = ProfileFields(&profile, &stamps);
  auto ours = ProfileFields(into.mutable_profile(), into.mutable_profile_stamps());
  for (size_t i = 0; i < ours.size(); ++i) {
    const std::string& value = *theirs[i].first;
    if (value.empty()) continue;
    if (!theirs[i].second->has_at()) {
      if (ours[i].first->empty()) *ours[i].first = value;
      continue;
    }
    TakeLater(ours[i].second, *theirs[i].second, [&] { *ours[i].first = value; });
  }
  if (from.has_profile_as_of() &&
      (!into.has_profile_as_of() || Before(into.profile_as_of(), from.profile_as_of()))) {
    *into.mutable_profile_as_of() = from.profile_as_of();
  }
  // Only a member's stamp joins: an empty one made present in the group
  // would read as an account (customer_access.cc) and hide a group of leads
  // from their owner and manager.
  if (from.has_account_as_of()) {
    TakeLater(into.mutable_account_as_of(), from.account_as_of(), [&] {
      into.mutable_profile()->set_account_name(from.profile().account_name());
      into.mutable_profile()->set_territory(from.profile().territory());
    });
  }
  // Apart from the account's name: a later account opened without an owner
  // does not take away the owner an earlier one named.
  AsOf owner_stamp = AccountOwnerStamp(into);
  TakeLater(&owner_stamp, AccountOwnerStamp(from),
            [&] { into.set_account_owner_id(from.account_owner_id()); });
  if (!into.account_owner_id().empty()) *into.mutable_account_owner_as_of() = owner_stamp;
}

}  // namespace

void DropProfileValues(Customer360& view, const std::function<bool(const std::string&)>& gone) {
  for (auto [value, stamp] : ProfileFields(view.mutable_profile(), view.mutable_profile_stamps())) {
    if (value->empty() || !gone(*value)) continue;
    value->clear();
    stamp->Clear();
  }
}

void JoinView(Customer360& into, const Customer360& from) {
  // A group knows its home if every member does.
  into.set_tracks_home(into.event_count() == 0 ? from.tracks_home()
                                               : into.tracks_home() && from.tracks_home());
  into.set_tracks_lead_scores(into.event_count() == 0
                                  ? from.tracks_lead_scores()
                                  : into.tracks_lead_scores() && from.tracks_lead_scores());
  JoinProfile(into, from);
  // The group's home is its earliest first lead.
  if (from.has_home_as_of() &&
      (!into.has_home_as_of() || Later(into.home_as_of(), from.home_as_of()))) {
    into.set_home_lead_id(from.home_lead_id());
    *into.mutable_home_as_of() = from.home_as_of();
    into.set_home_region(from.home_region());
  }
  for (const auto& theirs : from.lead_owners()) {
    auto* ours = LeadOwnerOf(into, theirs.lead_id());
    TakeLater(ours->mutable_as_of(), theirs.as_of(),
              [&] { ours->set_owner_id(theirs.owner_id()); });
  }
  for (const auto& theirs : from.lead_disqualifications()) {
    auto* ours = DisqualificationOf(into, theirs.lead_id());
    TakeLater(ours->mutable_as_of(), theirs.as_of(),
              [&] { ours->set_disqualified(theirs.disqualified()); });
    TakeLater(ours->mutable_score_as_of(), theirs.score_as_of(),
              [&] { ours->set_score(theirs.score()); });
    if (theirs.merged()) ours->set_merged(true);
  }
  Reach(into, from.lifecycle_stage());
  if (from.has_owner_as_of()) {
    TakeLater(into.mutable_owner_as_of(), from.owner_as_of(),
              [&] { into.set_owner_id(from.owner_id()); });
  }
  TakeAccountOwner(into);  // after the profile join took the later account
  if (from.has_tier_as_of()) {
    TakeLater(into.mutable_tier_as_of(), from.tier_as_of(), [&] { into.set_tier(from.tier()); });
  }
  if (from.has_lead_score_as_of()) {
    TakeLater(into.mutable_lead_score_as_of(), from.lead_score_as_of(),
              [&] { into.set_lead_score(from.lead_score()); });
  }
  for (const auto& id : from.lead_ids()) AddSortedUnique(into.mutable_lead_ids(), id);
  into.set_event_count(into.event_count() + from.event_count());
  if (from.has_first_seen() &&
      (!into.has_first_seen() || Before(from.first_seen(), into.first_seen()))) {
    *into.mutable_first_seen() = from.first_seen();
  }
  if (from.has_last_seen() &&
      (!into.has_last_seen() || Before(into.last_seen(), from.last_seen()))) {
    *into.mutable_last_seen() = from.last_seen();
  }
  if (Later(from.last_event(), into.last_event())) *into.mutable_last_event() = from.last_event();
  for (const auto& o : from.opportunities()) {
    auto* opp = Opportunity(into, o.opportunity_id());
    if (o.has_name_as_of()) {
      TakeLater(opp->mutable_name_as_of(), o.name_as_of(), [&] { opp->set_name(o.name()); });
    } else if (opp->name().empty()) {
      opp->set_name(o.name());  // stored before names were stamped
    }
    TakeLater(opp->mutable_as_of(), o.as_of(), [&] {
      opp->set_stage_id(o.stage_id());
      opp->set_outcome(o.outcome());
    });
    TakeLater(opp->mutable_amount_as_of(), o.amount_as_of(),
              [&] { *opp->mutable_amount() = o.amount(); });
  }
  for (const auto& o : from.orders()) {
    auto* order =
        FindOrInsertSorted(into.mutable_orders(), o.order_id(),
                           [](const auto& r) -> const std::string& { return r.order_id(); });
    *order = o;  // an order is placed once: both copies are the same
  }
  for (const auto& t : from.tickets()) {
    auto* ticket = Ticket(into, t.ticket_id());
    if (!t.subject().empty()) ticket->set_subject(t.subject());
    if (!t.product().empty()) ticket->set_product(t.product());
    if (t.has_opened_at()) *ticket->mutable_opened_at() = t.opened_at();
    if (t.sla_breached()) ticket->set_sla_breached(true);
    const bool take = Later(t.sla_as_of(), ticket->sla_as_of());
    JoinClocks(ticket, t.first_response(), t.resolution(), take);
    if (take) *ticket->mutable_sla_as_of() = t.sla_as_of();
    TakeLater(ticket->mutable_status_as_of(), t.status_as_of(),
              [&] { ticket->set_status(t.status()); });
    TakeLater(ticket->mutable_csat_as_of(), t.csat_as_of(),
              [&] { ticket->set_csat_score(t.csat_score()); });
  }
  DeriveTotals(into);
}

std::string Summarize(const EventEnvelope& event) {
  Customer360 scratch;
  return FoldPayload(scratch, event, Payload(event)).summary;
}

crm::v1::TimelineEntry ApplyToView(Customer360& view, const EventEnvelope& event) {
  return ApplyToView(view, event, Payload(event));
}

namespace {

// Events that report time passing, raised by timers when nothing happened
// (a deal gone stale, an SLA breached and what it escalates, a reminder, a
// warranty running out, a resolved ticket closed when its reopen window
// ended) or analytics' own churn alert: not the customer's activity.
// Counting them would make a silent customer look active, and a raised
// churn risk lower itself.
bool IsActivity(const EventEnvelope& event, const Payload& payload) {
  using namespace crm::v1;
  const bool by_system = absl::StartsWith(event.actor(), "system:");
  // Closed by an agent is activity; by the desk's timer ("system:timer") not.
  if (payload.As<TicketClosed>() != nullptr) return !by_system;
  // A task sales opens itself (the retention call a churn alert asks for)
  // is work planned, not contact: counted, the alert would lower the risk
  // that raised it and the customer would never become dormant.
  if (payload.As<TaskCreated>() != nullptr) return !by_system;
  return payload.As<ChurnRiskRaised>() == nullptr &&
         payload.As<OpportunityWentStale>() == nullptr &&
         payload.As<TaskReminderRaised>() == nullptr &&
         payload.As<TicketSlaWarningRaised>() == nullptr &&
         payload.As<TicketSlaBreached>() == nullptr && payload.As<TicketEscalated>() == nullptr &&
         payload.As<TeamLeadNotified>() == nullptr &&
         payload.As<WarrantyFollowUpRequested>() == nullptr;
}

// When the activity itself happened. A call or meeting written up later
// (ActivityLogged's occurred_at, LeadActivityRecorded's activity_at) counts
// at its own time, as sales' staleness counts it: writing up an old call
// must not make a silent customer look active today. Never later than it
// was logged.
const Timestamp& ActivityTime(const EventEnvelope& event, const Payload& payload) {
  const Timestamp* own = nullptr;
  if (const auto* m = payload.As<crm::v1::ActivityLogged>(); m != nullptr && m->has_occurred_at()) {
    own = &m->occurred_at();
  } else if (const auto* l = payload.As<crm::v1::LeadActivityRecorded>();
             l != nullptr && l->has_activity_at()) {
    own = &l->activity_at();
  }
  // A time no Timestamp holds (an outside producer's) is not the activity's:
  // the view could not be printed as JSON, nor its idle days counted.
  return own != nullptr && IsValidProtoTimestamp(*own) && Before(*own, event.occurred_at())
             ? *own
             : event.occurred_at();
}

}  // namespace

crm::v1::TimelineEntry ApplyToView(Customer360& view, const EventEnvelope& event,
                                   const Payload& payload) {
  view.set_customer_id(event.customer_id());
  // A view folded from its first event keeps its home; one stored before
  // homes were kept does not learn it from later events (TakeHome).
  if (view.event_count() == 0) {
    view.set_tracks_home(true);
    view.set_tracks_lead_scores(true);
  }
  view.set_event_count(view.event_count() + 1);
  if (IsActivity(event, payload)) {
    const Timestamp& at = ActivityTime(event, payload);
    if (!view.has_first_seen() || Before(at, view.first_seen())) *view.mutable_first_seen() = at;
    if (!view.has_last_seen() || Before(view.last_seen(), at)) *view.mutable_last_seen() = at;
    TakeIfNewer(view.mutable_last_event(), event);
  }
  crm::v1::TimelineEntry entry;
  entry.set_event_id(event.event_id());
  entry.set_type(event.type());
  entry.set_stream(event.stream());
  *entry.mutable_occurred_at() = event.occurred_at();
  // A lead event without its lead's id (an outside producer's) names no
  // lead: its entry reads as any other's, and the view takes nothing from
  // it (no home lead, owner or score).
  std::optional<Customer360> scratch;
  if (NamesNoLead<crm::v1::LeadCaptured, crm::v1::LeadAssigned, crm::v1::LeadScoreChanged,
                  crm::v1::LeadQualified, crm::v1::LeadDisqualified, crm::v1::LeadNurtureStarted,
                  crm::v1::LeadConverted, crm::v1::LeadMergedInto>(payload)) {
    scratch.emplace();
  }
  Folded folded = FoldPayload(scratch.has_value() ? *scratch : view, event, payload);
  entry.set_summary(std::move(folded.summary));
  entry.set_detail(std::move(folded.detail));
  return entry;
}

}  // namespace crm::analytics
