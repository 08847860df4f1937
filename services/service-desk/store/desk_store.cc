#include "services/service-desk/store/desk_store.h"

#include <algorithm>
#include <functional>
#include <limits>
#include <map>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "libs/common/database.h"
#include "libs/common/ids.h"
#include "libs/common/key_codec.h"
#include "libs/common/log.h"
#include "libs/common/page_token.h"
#include "libs/common/pii/key_vault.h"
#include "libs/common/reply_budget.h"
#include "libs/common/status_macros.h"
#include "libs/common/subscriber.h"
#include "services/service-desk/domain/article.h"
#include "services/service-desk/domain/article_search.h"
#include "services/service-desk/domain/customer.h"
#include "services/service-desk/domain/ticket.h"

namespace crm::service_desk {
namespace {

constexpr char kTickets[] = "tickets";                   // ticket id -> Ticket
constexpr char kCustomerTickets[] = "customer_tickets";  // customer \0 ticket -> "1" active | "0"
constexpr char kAgentTickets[] = "agent_tickets";        // agent \0 ticket -> "1" | "0" | "" gone
constexpr char kAgentActive[] = "agent_active";      // agent \0 ticket -> "" while active with it
constexpr char kTimers[] = "ticket_timers";          // micros ticket -> ""
constexpr char kMessages[] = "ticket_messages";      // ticket \0 version -> TicketMessage
constexpr char kRoundRobin[] = "round_robin";        // team -> last agent picked
constexpr char kArticles[] = "articles";             // article id -> Article
constexpr char kTerms[] = "article_terms";           // term \0 article -> weight | "" gone
constexpr char kPublished[] = "published_articles";  // article id -> publish time | "" unpublished

constexpr size_t kDefaultPageSize = 50;
constexpr size_t kMaxPageSize = 500;

std::string Pair(absl::string_view a, absl::string_view b) { return absl::StrCat(PrefixKey(a), b); }

// Flipping the sign bit makes times before 1970 sort first as unsigned.
std::string TimeKey(absl::Time at) {
  return BigEndian64(static_cast<uint64_t>(absl::ToUnixMicros(at)) ^ (uint64_t{1} << 63));
}

absl::Time TimeOfKey(absl::string_view key) {
  return absl::FromUnixMicros(static_cast<int64_t>(ReadBigEndian64(key) ^ (uint64_t{1} << 63)));
}

const char* ActiveMark(const crm::v1::Ticket& t) { return IsActive(t.status()) ? "1" : "0"; }

template <typename T>
absl::StatusOr<T> Parse(absl::string_view bytes, absl::string_view what) {
  T message;
  if (!message.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    return absl::DataLossError(absl::StrCat("corrupt ", what));
  }
  return message;
}

template <typename T>
absl::StatusOr<std::optional<Versioned<T>>> LoadVersioned(const EventStore& events,
                                                          const std::string& stream) {
  auto loaded = events.LoadState(stream);
  if (absl::IsNotFound(loaded.status())) return std::nullopt;
  if (!loaded.ok()) return loaded.status();
  CRM_ASSIGN_OR_RETURN(T state, Parse<T>(loaded->state, stream));
  return Versioned<T>{loaded->version, std::move(state)};
}

}  // namespace

const char DeskStore::kCustomersFamily[] = "customers";  // customer id -> CustomerContext
// due micros, customer \0 order \0 product -> WarrantyFollowUpRequested
const char DeskStore::kWarrantyFollowUpsFamily[] = "warranty_follow_ups";

std::vector<std::string> DeskStore::Families() {
  auto families = Subscriber::Families();
  for (const char* f : {kTickets, kCustomerTickets, kAgentTickets, kAgentActive, kTimers, kMessages,
                        kRoundRobin, kCustomersFamily, kArticles, kTerms, kPublished,
                        kWarrantyFollowUpsFamily, pii::KeyVault::kFamily}) {
    families.push_back(f);
  }
  return families;
}

absl::StatusOr<std::unique_ptr<DeskStore>> DeskStore::Open(const std::string& path) {
  // "customer_merges": merge links an earlier build kept itself.
  CRM_ASSIGN_OR_RETURN(auto events, EventStore::Open(path, Families(), {"customer_merges"}));
  auto store = std::make_unique<DeskStore>(std::move(events));
  CRM_RETURN_IF_ERROR(store->ReindexArticlesIfStale());
  CRM_RETURN_IF_ERROR(store->IndexActiveTicketsIfMissing());
  return store;
}

namespace {
// In the active index, where no agent id sorts (ids are printable ASCII).
constexpr char kActiveBuiltKey[] =
    "\xff\xff"
    "built";
}  // namespace

absl::Status DeskStore::IndexActiveTicketsIfMissing() {
  Database& db = events_->db();
  CRM_ASSIGN_OR_RETURN(auto built, db.Get(kAgentActive, kActiveBuiltKey));
  if (built.has_value()) return absl::OkStatus();
  rocksdb::WriteBatch batch;
  auto* active = db.Family(kAgentActive);
  int64_t indexed = 0;
  auto it = db.NewIterator(kAgentTickets);
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    if (View(it->value()) != "1") continue;
    CRM_RETURN_IF_ERROR(FromRocks(batch.Put(active, it->key(), "")));
    ++indexed;
  }
  CRM_RETURN_IF_ERROR(FromRocks(it->status()));
  CRM_RETURN_IF_ERROR(FromRocks(batch.Put(active, kActiveBuiltKey, "")));
  CRM_RETURN_IF_ERROR(db.Write(&batch, /*sync=*/true));
  if (indexed > 0)
    log::Info("agents' active tickets indexed", {{"tickets", absl::StrCat(indexed)}});
  return absl::OkStatus();
}

namespace {

// In the terms family, where no term sorts: terms are words and "#" tags.
constexpr char kIndexVersionKey[] = "\xff\xffindex-version";
// Which tokenizer wrote the terms. An edit writes only the difference of
// the terms before and after, both as today's tokenizer finds them: terms
// an older one wrote would stay wrong for good. Raise it with Tokenize.
// 2: Unicode punctuation separates words; 3: CJK brackets and the rest of
// the fullwidth and halfwidth punctuation too; 4: singular and plural are
// one term ("cookie", "cookies"; "menu", "menus"); 5: final e's kept but
// after s, x, z, ch, sh and i ("update" is no longer "updat"), and singulars
// in s ("lens", "alias") meet their plurals; 6: capitals of Latin-1,
// Latin Extended-A, Greek and Cyrillic lowercased, not ASCII only; 7: the
// Greek final sigma folded, Cyrillic beyond Russian lowercased.
constexpr char kIndexVersion[] = "7";

}  // namespace

absl::Status DeskStore::ReindexArticlesIfStale() {
  Database& db = events_->db();
  CRM_ASSIGN_OR_RETURN(auto version, db.Get(kTerms, kIndexVersionKey));
  if (version == kIndexVersion) return absl::OkStatus();
  rocksdb::WriteBatch batch;
  auto* terms = db.Family(kTerms);
  auto old = db.NewIterator(kTerms);
  for (old->SeekToFirst(); old->Valid(); old->Next()) {
    CRM_RETURN_IF_ERROR(FromRocks(batch.Delete(terms, old->key())));
  }
  CRM_RETURN_IF_ERROR(FromRocks(old->status()));
  int64_t articles = 0;
  auto it = db.NewIterator(kArticles);
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    CRM_ASSIGN_OR_RETURN(auto article, Parse<crm::v1::Article>(View(it->value()), "article"));
    if (!article.published()) continue;
    ++articles;
    for (const auto& [term, weight] : IndexTerms(article)) {
      CRM_RETURN_IF_ERROR(
          FromRocks(batch.Put(terms, Pair(term, article.article_id()), absl::StrCat(weight))));
    }
  }
  CRM_RETURN_IF_ERROR(FromRocks(it->status()));
  CRM_RETURN_IF_ERROR(FromRocks(batch.Put(terms, kIndexVersionKey, kIndexVersion)));
  CRM_RETURN_IF_ERROR(db.Write(&batch, /*sync=*/true));
  if (articles > 0) {
    log::Info("search index rebuilt", {{"articles", absl::StrCat(articles)}});
  }
  return absl::OkStatus();
}

// ---- tickets ----

absl::StatusOr<std::optional<Versioned<crm::v1::Ticket>>> DeskStore::LoadTicket(
    const std::string& ticket_id) const {
  return LoadVersioned<crm::v1::Ticket>(*events_, TicketStream(ticket_id));
}

absl::StatusOr<crm::v1::Ticket> DeskStore::GetTicket(const std::string& ticket_id) const {
  CRM_ASSIGN_OR_RETURN(auto raw, events_->db().Get(kTickets, ticket_id));
  if (!raw.has_value())
    return absl::NotFoundError(absl::StrCat("ticket ", ticket_id, " not found"));
  return Parse<crm::v1::Ticket>(*raw, "ticket");
}

absl::StatusOr<MessagePage> DeskStore::Messages(const std::string& ticket_id,
                                                const crm::v1::PageRequest& request,
                                                size_t reserved) const {
  // The token is the ticket version of the last message returned.
  int64_t after = 0;
  if (!request.page_token().empty() &&
      (!absl::SimpleAtoi(request.page_token(), &after) || after <= 0)) {
    return absl::InvalidArgumentError("messages_page.page_token: malformed");
  }
  const size_t page_size =
      request.page_size() > 0 ? request.page_size() : std::numeric_limits<size_t>::max();
  MessagePage page;
  ReplyBudget budget(reserved);
  int64_t last_version = 0;
  const std::string prefix = PrefixKey(ticket_id);
  std::string start = prefix;
  AppendBigEndian64(&start, static_cast<uint64_t>(after) + 1);
  auto it = events_->db().NewIterator(kMessages);
  for (it->Seek(start); it->Valid() && it->key().starts_with(prefix); it->Next()) {
    if (page.messages.size() == page_size || !budget.Take(it->value().size())) {
      page.next_page_token = absl::StrCat(last_version);
      break;
    }
    CRM_ASSIGN_OR_RETURN(auto m, Parse<crm::v1::TicketMessage>(View(it->value()), "message"));
    page.messages.push_back(std::move(m));
    last_version = static_cast<int64_t>(ReadBigEndian64(View(it->key()).substr(prefix.size())));
  }
  CRM_RETURN_IF_ERROR(FromRocks(it->status()));
  return page;
}

absl::StatusOr<TicketPage> DeskStore::ListTickets(const crm::v1::ListTicketsRequest& r,
                                                  const std::vector<std::string>& group,
                                                  size_t scan_budget) const {
  std::string after;
  if (!r.page().page_token().empty() &&
      !absl::WebSafeBase64Unescape(r.page().page_token(), &after)) {
    return absl::InvalidArgumentError("page.page_token: malformed");
  }
  CRM_ASSIGN_OR_RETURN(const size_t page_size, PageSize(r.page().page_size(), "page.page_size",
                                                        kDefaultPageSize, kMaxPageSize));
  std::vector<std::string> customers = group;
  if (customers.empty()) customers.push_back(r.customer_id());
  // One cursor per customer: one given twice would list its tickets twice.
  std::sort(customers.begin(), customers.end());
  customers.erase(std::unique(customers.begin(), customers.end()), customers.end());

  // Walk the narrowest index; every entry leads to a ticket id, in id order.
  // A customer's index is walked for each member of its group at once,
  // always taking the smallest id next, so the pages stay in id order.
  const char* family = kTickets;
  std::vector<std::string> prefixes = {""};
  if (!r.customer_id().empty()) {
    family = kCustomerTickets;
    prefixes.clear();
    for (const auto& customer : customers) prefixes.push_back(PrefixKey(customer));
  } else if (!r.assignee_id().empty()) {
    family = kAgentTickets;
    prefixes = {PrefixKey(r.assignee_id())};
  }
  auto matches = [&](const crm::v1::Ticket& t) {
    return (r.customer_id().empty() ||
            std::find(customers.begin(), customers.end(), t.customer_id()) != customers.end()) &&
           (r.assignee_id().empty() || t.assignee_id() == r.assignee_id()) &&
           (r.team_id().empty() || t.team_id() == r.team_id()) &&
           (!r.unassigned() || t.assignee_id().empty()) &&
           (r.status() == crm::v1::TICKET_STATUS_UNSPECIFIED || t.status() == r.status()) &&
           (r.priority() == crm::v1::TICKET_PRIORITY_UNSPECIFIED || t.priority() == r.priority()) &&
           (!r.has_breached() || t.breached() == r.breached());
  };

  TicketPage page;
  ReplyBudget budget;
  MergedScan scan(events_->db(), family, prefixes, after);
  size_t examined = 0;
  for (; scan.Valid(); scan.Next()) {
    if (examined++ == scan_budget) {
      page.next_page_token = absl::WebSafeBase64Escape(after);  // the last entry examined
      break;
    }
    after = std::string(scan.suffix());
    if (family == kAgentTickets && scan.value().empty()) continue;  // reassigned away
    crm::v1::Ticket ticket;
    if (family == kTickets) {
      CRM_ASSIGN_OR_RETURN(ticket, Parse<crm::v1::Ticket>(View(scan.value()), "ticket"));
    } else {
      CRM_ASSIGN_OR_RETURN(ticket, GetTicket(std::string(scan.suffix())));
    }
    if (!matches(ticket)) continue;
    // One more match exists: if the page is full, or this ticket would
    // take it past the reply bound (500 tickets of long descriptions),
    // the next page starts with it.
    if (page.tickets.size() == page_size || !budget.Take(ticket.ByteSizeLong())) {
      page.next_page_token = absl::WebSafeBase64Escape(page.tickets.back().ticket_id());
      break;
    }
    page.tickets.push_back(std::move(ticket));
  }
  CRM_RETURN_IF_ERROR(scan.status());
  return page;
}

std::vector<ProjectionWrite> DeskStore::TicketWrites(
    const std::optional<crm::v1::Ticket>& before, const crm::v1::Ticket& after,
    const std::vector<std::pair<int64_t, crm::v1::TicketMessage>>& messages) const {
  const std::string& id = after.ticket_id();
  std::vector<ProjectionWrite> w;
  w.push_back({kTickets, id, after.SerializeAsString()});
  const bool activity_changed = !before || IsActive(before->status()) != IsActive(after.status());
  if (activity_changed) {
    w.push_back({kCustomerTickets, Pair(after.customer_id(), id), ActiveMark(after)});
  }
  const std::string old_agent = before ? before->assignee_id() : "";
  if (old_agent != after.assignee_id()) {
    if (!old_agent.empty()) w.push_back({kAgentTickets, Pair(old_agent, id), ""});
    if (!after.assignee_id().empty()) {
      w.push_back({kAgentTickets, Pair(after.assignee_id(), id), ActiveMark(after)});
    }
  } else if (!after.assignee_id().empty() && activity_changed) {
    w.push_back({kAgentTickets, Pair(after.assignee_id(), id), ActiveMark(after)});
  }
  // The active index: a row while the ticket is active with its agent.
  const bool was_active = before && IsActive(before->status()) && !old_agent.empty();
  const bool is_active = IsActive(after.status()) && !after.assignee_id().empty();
  if (was_active && (!is_active || old_agent != after.assignee_id())) {
    w.push_back({kAgentActive, Pair(old_agent, id), "", /*erase=*/true});
  }
  if (is_active && (!was_active || old_agent != after.assignee_id())) {
    w.push_back({kAgentActive, Pair(after.assignee_id(), id), ""});
  }
  if (after.has_next_sla_check_at() && (!before || !before->has_next_sla_check_at() ||
                                        before->next_sla_check_at().SerializeAsString() !=
                                            after.next_sla_check_at().SerializeAsString())) {
    w.push_back({kTimers, TimerKey(FromProtoTimestamp(after.next_sla_check_at()), id), ""});
  }
  for (const auto& [version, message] : messages) {
    std::string key = PrefixKey(id);
    AppendBigEndian64(&key, static_cast<uint64_t>(version));
    w.push_back({kMessages, std::move(key), message.SerializeAsString()});
  }
  return w;
}

// ---- assignment ----

absl::StatusOr<AgentLoad> DeskStore::LoadOf(const crm::v1::Team& team) const {
  AgentLoad load;
  for (const auto& agent : team.agent_ids()) {
    int64_t active = 0;
    const std::string prefix = PrefixKey(agent);
    auto it = events_->db().NewIterator(kAgentActive);
    for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) ++active;
    CRM_RETURN_IF_ERROR(FromRocks(it->status()));
    load[agent] = active;
  }
  return load;
}

absl::StatusOr<std::string> DeskStore::LastPicked(const std::string& team_id) const {
  CRM_ASSIGN_OR_RETURN(auto raw, events_->db().Get(kRoundRobin, team_id));
  return raw.value_or("");
}

ProjectionWrite DeskStore::PickedWrite(const std::string& team_id, const std::string& agent_id) {
  return {kRoundRobin, team_id, agent_id};
}

// ---- timers ----

std::string DeskStore::TimerKey(absl::Time at, const std::string& ticket_id) {
  return absl::StrCat(TimeKey(at), ticket_id);
}

absl::StatusOr<std::vector<DueTimer>> DeskStore::DueTimers(absl::Time now, size_t max) const {
  std::vector<DueTimer> out;
  const std::string end = TimeKey(now);
  auto it = events_->db().NewIterator(kTimers);
  for (it->SeekToFirst(); it->Valid() && out.size() < max; it->Next()) {
    const std::string key = it->key().ToString();
    if (key.size() < 8 || key.substr(0, 8) > end) break;
    out.push_back({TimeOfKey(key), key.substr(8), key});
  }
  CRM_RETURN_IF_ERROR(FromRocks(it->status()));
  return out;
}

absl::Status DeskStore::DropTimer(const DueTimer& timer) {
  rocksdb::WriteBatch batch;
  CRM_RETURN_IF_ERROR(FromRocks(batch.Delete(events_->db().Family(kTimers), timer.key)));
  // Not synced: a lost delete only brings back a visit that finds nothing due.
  return events_->db().Write(&batch, /*sync=*/false);
}

// ---- warranty follow-ups ----

std::string DeskStore::WarrantyFollowUpKey(const crm::v1::WarrantyFollowUpRequested& due) {
  return absl::StrCat(TimeKey(FromProtoTimestamp(due.due_at())), PrefixKey(due.customer_id()),
                      PrefixKey(due.order_id()), due.product_id());
}

absl::StatusOr<std::vector<DueWarrantyFollowUp>> DeskStore::DueWarrantyFollowUps(absl::Time now,
                                                                                 size_t max) const {
  std::vector<DueWarrantyFollowUp> out;
  const std::string end = TimeKey(now);
  auto it = events_->db().NewIterator(kWarrantyFollowUpsFamily);
  for (it->SeekToFirst(); it->Valid() && out.size() < max; it->Next()) {
    const std::string key = it->key().ToString();
    if (key.size() < 8 || key.substr(0, 8) > end) break;
    CRM_ASSIGN_OR_RETURN(auto follow_up, Parse<crm::v1::WarrantyFollowUpRequested>(
                                             View(it->value()), "warranty follow-up"));
    out.push_back({key, std::move(follow_up)});
  }
  CRM_RETURN_IF_ERROR(FromRocks(it->status()));
  return out;
}

ProjectionWrite DeskStore::DropWarrantyFollowUpWrite(const std::string& key) {
  ProjectionWrite w{kWarrantyFollowUpsFamily, key, ""};
  w.erase = true;
  return w;
}

absl::Status DeskStore::DropWarrantyFollowUp(const std::string& key) {
  rocksdb::WriteBatch batch;
  CRM_RETURN_IF_ERROR(FromRocks(batch.Delete(events_->db().Family(kWarrantyFollowUpsFamily), key)));
  return events_->db().Write(&batch, /*sync=*/false);
}

// ---- customers ----

absl::StatusOr<crm::v1::CustomerContext> DeskStore::CustomerContextOf(
    const std::string& customer_id, const std::vector<std::string>& group) const {
  crm::v1::CustomerContext c;
  auto it = events_->db().NewIterator(kCustomerTickets);
  for (const std::string& member : group.empty() ? std::vector<std::string>{customer_id} : group) {
    CRM_ASSIGN_OR_RETURN(auto raw, events_->db().Get(kCustomersFamily, member));
    if (raw.has_value()) {
      CRM_ASSIGN_OR_RETURN(auto stored, Parse<crm::v1::CustomerContext>(*raw, "customer"));
      JoinCustomer(c, stored);
    }
    const std::string prefix = PrefixKey(member);
    for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
      c.set_ticket_count(c.ticket_count() + 1);
      if (View(it->value()) == "1") c.set_active_ticket_count(c.active_ticket_count() + 1);
    }
    CRM_RETURN_IF_ERROR(FromRocks(it->status()));
  }
  WithAccountFallbacks(c);
  c.set_customer_id(customer_id);
  return c;
}

absl::StatusOr<bool> DeskStore::IsKnownCustomer(const std::string& customer_id) const {
  CRM_ASSIGN_OR_RETURN(auto raw, events_->db().Get(kCustomersFamily, customer_id));
  return raw.has_value();
}

// ---- knowledge base ----

absl::StatusOr<std::optional<Versioned<crm::v1::Article>>> DeskStore::LoadArticle(
    const std::string& article_id) const {
  return LoadVersioned<crm::v1::Article>(*events_, ArticleStream(article_id));
}

absl::StatusOr<crm::v1::Article> DeskStore::GetArticle(const std::string& article_id) const {
  CRM_ASSIGN_OR_RETURN(auto raw, events_->db().Get(kArticles, article_id));
  if (!raw.has_value()) {
    return absl::NotFoundError(absl::StrCat("article ", article_id, " not found"));
  }
  return Parse<crm::v1::Article>(*raw, "article");
}

std::vector<ProjectionWrite> DeskStore::ArticleWrites(const std::optional<crm::v1::Article>& before,
                                                      const crm::v1::Article& after) const {
  const std::string& id = after.article_id();
  std::vector<ProjectionWrite> w;
  w.push_back({kArticles, id, after.SerializeAsString()});
  // The publication time rides in the index: newest-first search orders by
  // it without reading articles.
  const absl::Time published_at = FromProtoTimestamp(after.published_at());
  if (!before || before->published() != after.published() ||
      (after.published() && FromProtoTimestamp(before->published_at()) != published_at)) {
    w.push_back({kPublished, id, after.published() ? TimeKey(published_at) : ""});
  }
  const auto old_terms =
      before && before->published() ? IndexTerms(*before) : std::map<std::string, int64_t>{};
  const auto new_terms = after.published() ? IndexTerms(after) : std::map<std::string, int64_t>{};
  for (const auto& [term, weight] : old_terms) {
    if (!new_terms.contains(term)) w.push_back({kTerms, Pair(term, id), ""});
  }
  for (const auto& [term, weight] : new_terms) {
    auto old = old_terms.find(term);
    if (old == old_terms.end() || old->second != weight) {
      w.push_back({kTerms, Pair(term, id), absl::StrCat(weight)});
    }
  }
  return w;
}

absl::StatusOr<int64_t> DeskStore::PublishedCount() const {
  int64_t n = 0;
  auto it = events_->db().NewIterator(kPublished);
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    if (!it->value().empty()) ++n;
  }
  CRM_RETURN_IF_ERROR(FromRocks(it->status()));
  return n;
}

uint64_t DeskStore::RankDigest(uint64_t digest, absl::string_view article_id) {
  return Fnv1a64(digest).AddField(article_id).value();
}

absl::StatusOr<DeskStore::ArticleSearchPage> DeskStore::SearchArticles(
    const std::vector<std::string>& words, const std::vector<std::string>& tags,
    const std::string& product, size_t offset, size_t count) const {
  auto postings_of = [&](const std::string& term) -> absl::StatusOr<TermPostings> {
    TermPostings p;
    p.term = term;
    const std::string prefix = PrefixKey(term);
    auto it = events_->db().NewIterator(kTerms);
    for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
      int64_t weight = 0;
      if (it->value().empty() || !absl::SimpleAtoi(View(it->value()), &weight)) continue;
      p.weight_by_article[std::string(View(it->key()).substr(prefix.size()))] = weight;
    }
    CRM_RETURN_IF_ERROR(FromRocks(it->status()));
    return p;
  };

  // Tags narrow the candidates: each required tag's articles, intersected.
  std::optional<absl::flat_hash_set<std::string>> tagged;
  for (const auto& tag : tags) {
    CRM_ASSIGN_OR_RETURN(auto p, postings_of(TagTerm(tag)));
    absl::flat_hash_set<std::string> ids;
    for (const auto& [id, w] : p.weight_by_article) {
      if (!tagged || tagged->contains(id)) ids.insert(id);
    }
    tagged = std::move(ids);
  }

  // Walks candidates in order, reading articles only as far as the page.
  auto page_of = [&](std::vector<RankedArticle> ordered) -> absl::StatusOr<ArticleSearchPage> {
    ArticleSearchPage page;
    size_t skipped = 0;
    for (auto& r : ordered) {
      if (tagged && !tagged->contains(r.article_id)) continue;
      CRM_ASSIGN_OR_RETURN(auto article, GetArticle(r.article_id));
      if (!article.published()) continue;
      if (!product.empty() && !absl::EqualsIgnoreCase(article.product(), product)) continue;
      if (skipped < offset) {
        ++skipped;
        page.before_digest = RankDigest(page.before_digest, r.article_id);
        continue;
      }
      if (page.hits.size() == count) {
        page.more = true;
        break;
      }
      crm::v1::ArticleHit& hit = page.hits.emplace_back();
      *hit.mutable_article() = std::move(article);
      hit.set_score(r.score);
      for (auto& t : r.matched_terms) hit.add_matched_terms(std::move(t));
    }
    return page;
  };

  if (!words.empty()) {
    std::vector<TermPostings> postings;
    // Ranked over the whole knowledge base (a word's rarity is its rarity
    // there), then narrowed to the tagged articles, as to the product.
    for (const auto& word : words) {
      CRM_ASSIGN_OR_RETURN(auto p, postings_of(word));
      postings.push_back(std::move(p));
    }
    CRM_ASSIGN_OR_RETURN(const int64_t total, PublishedCount());
    return page_of(RankArticles(postings, total));
  }

  // No words: every published (or tagged) article, most recently published
  // first, by the time the published index holds. Rows written before it
  // held one say "1"; their article tells the time.
  std::vector<std::pair<absl::Time, std::string>> newest;
  auto add = [&](std::string id, absl::string_view value) -> absl::Status {
    if (value.empty()) return absl::OkStatus();  // unpublished
    if (value.size() == 8) {
      newest.emplace_back(TimeOfKey(value), std::move(id));
      return absl::OkStatus();
    }
    CRM_ASSIGN_OR_RETURN(auto article, GetArticle(id));
    newest.emplace_back(FromProtoTimestamp(article.published_at()), std::move(id));
    return absl::OkStatus();
  };
  if (tagged) {
    for (const auto& id : *tagged) {
      CRM_ASSIGN_OR_RETURN(auto value, events_->db().Get(kPublished, id));
      if (value.has_value()) CRM_RETURN_IF_ERROR(add(id, *value));
    }
  } else {
    auto it = events_->db().NewIterator(kPublished);
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      CRM_RETURN_IF_ERROR(add(it->key().ToString(), View(it->value())));
    }
    CRM_RETURN_IF_ERROR(FromRocks(it->status()));
  }
  std::sort(newest.begin(), newest.end(), std::greater<>());
  std::vector<RankedArticle> ordered;
  ordered.reserve(newest.size());
  for (auto& [at, id] : newest) ordered.push_back({std::move(id), 0, {}});
  return page_of(std::move(ordered));
}

}  // namespace crm::service_desk
