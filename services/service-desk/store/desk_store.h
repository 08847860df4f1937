#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "crm/v1/service_desk.pb.h"
#include "libs/common/event_store.h"
#include "libs/common/fnv.h"
#include "libs/common/reply_budget.h"
#include "libs/common/striped_mutex.h"
#include "services/service-desk/domain/settings.h"

namespace crm::service_desk {

// An aggregate's folded state with the stream version it is at.
template <typename T>
struct Versioned {
  int64_t version = 0;
  T state;
};

// A ticket the timer has to visit at `at`.
struct DueTimer {
  absl::Time at;
  std::string ticket_id;
  std::string key;
};

// A scheduled warranty follow-up: its key in the schedule and the event
// to raise.
struct DueWarrantyFollowUp {
  std::string key;
  crm::v1::WarrantyFollowUpRequested follow_up;
};

struct TicketPage {
  std::vector<crm::v1::Ticket> tickets;
  std::string next_page_token;
};

struct MessagePage {
  std::vector<crm::v1::TicketMessage> messages;
  std::string next_page_token;
};

// The service desk's RocksDB: the event log (libs/common EventStore) and
// the read models written in the same batch as the events that change
// them — ticket index by customer and by agent, timer schedule,
// conversation, round-robin cursors, knowledge base index — plus the
// customers projected from other services' topics by the subscriber.
//
// RocksDB projection writes are puts only, so entries that stop applying
// are overwritten with a marker ("" or "0") instead of deleted; readers
// skip them.
class DeskStore {
 public:
  // Column families of the database, the subscriber's included.
  static std::vector<std::string> Families();
  static absl::StatusOr<std::unique_ptr<DeskStore>> Open(const std::string& path);

  explicit DeskStore(std::unique_ptr<EventStore> events) : events_(std::move(events)) {}

  EventStore& events() { return *events_; }
  Database& db() { return events_->db(); }

  // Article streams, held from deciding on an article's publication to
  // storing the decision: by the article's commands and by a ticket command
  // that links it, so an unpublish cannot land between a link's "is
  // published" check and its append. Here because both use cases share the
  // store. Taken before a ticket's lock, never while holding one.
  StripedMutex& article_locks() { return article_locks_; }

  // ---- tickets ----
  // nullopt for an unknown ticket.
  absl::StatusOr<std::optional<Versioned<crm::v1::Ticket>>> LoadTicket(
      const std::string& ticket_id) const;
  // NOT_FOUND for an unknown ticket.
  absl::StatusOr<crm::v1::Ticket> GetTicket(const std::string& ticket_id) const;
  // A page of the conversation, oldest first: all of it by default, up to
  // the reply bound (kMaxReplyBytes) less `reserved` bytes of the rest of
  // the reply.
  absl::StatusOr<MessagePage> Messages(const std::string& ticket_id,
                                       const crm::v1::PageRequest& request, size_t reserved) const;
  // Filters and pages in ticket id order (creation order to the
  // millisecond); the request is validated by the caller. page_size
  // defaults to 50; a page also ends at the reply bound. With `group` (the
  // customers found to be one person), a customer_id filter lists the
  // tickets of every member. A page also ends after `scan_budget` index
  // entries (a selective filter over a large book must not hold a worker):
  // it may then be short, even empty, with a token that goes on.
  absl::StatusOr<TicketPage> ListTickets(const crm::v1::ListTicketsRequest& request,
                                         const std::vector<std::string>& group = {},
                                         size_t scan_budget = kListScanBudget) const;

  // The writes that keep the ticket read models in step with an append
  // taking the ticket from `before` to `after`. `messages` are the
  // conversation entries the append adds, with their stream versions.
  std::vector<ProjectionWrite> TicketWrites(
      const std::optional<crm::v1::Ticket>& before, const crm::v1::Ticket& after,
      const std::vector<std::pair<int64_t, crm::v1::TicketMessage>>& messages) const;

  // ---- assignment ----
  // Active tickets of each agent of the team, from an index of active
  // tickets only: as many reads as the agents hold now, not as they ever
  // held.
  absl::StatusOr<AgentLoad> LoadOf(const crm::v1::Team& team) const;
  // The agent the team's last automatic assignment went to; empty if none.
  absl::StatusOr<std::string> LastPicked(const std::string& team_id) const;
  static ProjectionWrite PickedWrite(const std::string& team_id, const std::string& agent_id);

  // ---- timers ----
  // Scheduled visits due at or before `now`, earliest first. Entries may be
  // stale (the ticket moved on); the visit decides from the ticket itself.
  absl::StatusOr<std::vector<DueTimer>> DueTimers(absl::Time now, size_t max) const;
  // Removes a visited entry; the caller holds the ticket's lock so no
  // append rewrites the same key meanwhile.
  absl::Status DropTimer(const DueTimer& timer);
  static std::string TimerKey(absl::Time at, const std::string& ticket_id);

  // ---- warranty follow-ups (scheduled by CustomerProjection) ----
  static std::string WarrantyFollowUpKey(const crm::v1::WarrantyFollowUpRequested& due);
  // Follow-ups due at or before `now`, earliest first.
  absl::StatusOr<std::vector<DueWarrantyFollowUp>> DueWarrantyFollowUps(absl::Time now,
                                                                        size_t max) const;
  // Takes a raised follow-up off the schedule in the append that raises it.
  static ProjectionWrite DropWarrantyFollowUpWrite(const std::string& key);
  // Takes a follow-up that will not be raised off the schedule.
  absl::Status DropWarrantyFollowUp(const std::string& key);

  // ---- customers ----
  // What is known of the customer plus ticket counts; known = false (and
  // only the counts) for a customer no event has named. With `group` (the
  // customers found to be one person, the survivor first): the whole
  // group's leads, purchases and tickets, answered as `customer_id`.
  absl::StatusOr<crm::v1::CustomerContext> CustomerContextOf(
      const std::string& customer_id, const std::vector<std::string>& group = {}) const;
  absl::StatusOr<bool> IsKnownCustomer(const std::string& customer_id) const;

  // ---- knowledge base ----
  absl::StatusOr<std::optional<Versioned<crm::v1::Article>>> LoadArticle(
      const std::string& article_id) const;
  // NOT_FOUND for an unknown article.
  absl::StatusOr<crm::v1::Article> GetArticle(const std::string& article_id) const;
  // Article record, published flag and search index for an append taking
  // the article from `before` to `after`. Only published articles are indexed.
  std::vector<ProjectionWrite> ArticleWrites(const std::optional<crm::v1::Article>& before,
                                             const crm::v1::Article& after) const;
  struct ArticleSearchPage {
    std::vector<crm::v1::ArticleHit> hits;
    bool more = false;  // hits follow this page
    // The ids ranked before `offset`, in order (RankDigest): a next page
    // whose ranking before it changed would skip or repeat hits.
    uint64_t before_digest = kEmptyRankDigest;
  };
  static constexpr uint64_t kEmptyRankDigest = Fnv1a64::kOffsetBasis;
  // `digest` followed by `article_id`; stable across processes (FNV-1a).
  static uint64_t RankDigest(uint64_t digest, absl::string_view article_id);
  // Published articles: ranked by `words` (all of them when none, most
  // recently published first), every tag required, product matched
  // ignoring case; the `count` hits from `offset` on.
  absl::StatusOr<ArticleSearchPage> SearchArticles(const std::vector<std::string>& words,
                                                   const std::vector<std::string>& tags,
                                                   const std::string& product, size_t offset,
                                                   size_t count) const;

  // Family names, for the projection that shares the database.
  static const char kCustomersFamily[];
  static const char kWarrantyFollowUpsFamily[];

 private:
  // Writes the search index again from the published articles when an
  // older tokenizer wrote it (a store from before, or a new one).
  absl::Status ReindexArticlesIfStale();
  // Builds the index of agents' active tickets from the agents' ticket
  // lists, once, in a store written before it.
  absl::Status IndexActiveTicketsIfMissing();

  absl::StatusOr<int64_t> PublishedCount() const;

  std::unique_ptr<EventStore> events_;
  StripedMutex article_locks_;
};

}  // namespace crm::service_desk
