#include "services/service-desk/api/article_commands.h"

#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "libs/common/ids.h"
#include "libs/common/page_token.h"
#include "libs/common/testing/temp_dir.h"
#include "services/service-desk/domain/article_search.h"

namespace crm::service_desk {
namespace {

class ArticleCommandsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store_ = std::move(*DeskStore::Open(dir_.Sub("desk")));
    articles_ = std::make_unique<ArticleCommands>(*store_, [this] { return now_; });
  }
  EventContext Ctx() { return {"crm/service-desk", "agent:kb", "", "", absl::Now()}; }

  std::string Create(const std::string& title, const std::string& body,
                     std::vector<std::string> tags = {}, const std::string& product = "",
                     bool publish = true) {
    crm::v1::CreateArticleRequest r;
    r.set_request_id("create-" + title);
    r.set_title(title);
    r.set_body(body);
    for (auto& t : tags) r.add_tags(t);
    r.set_product(product);
    auto a = articles_->CreateArticle(r, Ctx());
    EXPECT_TRUE(a.ok()) << a.status();
    if (a.ok() && publish) Publish(a->article_id());
    now_ += absl::Seconds(1);
    return a.ok() ? a->article_id() : "";
  }
  void Publish(const std::string& id) {
    crm::v1::PublishArticleRequest r;
    r.set_request_id("publish-" + id + std::to_string(++n_));
    r.set_article_id(id);
    ASSERT_TRUE(articles_->PublishArticle(r, Ctx()).ok());
  }
  std::vector<std::string> Search(const std::string& query, std::vector<std::string> tags = {},
                                  const std::string& product = "") {
    crm::v1::SearchArticlesRequest r;
    r.set_query(query);
    for (auto& t : tags) r.add_tags(t);
    r.set_product(product);
    auto found = articles_->SearchArticles(r);
    EXPECT_TRUE(found.ok()) << found.status();
    std::vector<std::string> ids;
    if (found.ok()) {
      for (const auto& h : found->hits()) ids.push_back(h.article().article_id());
    }
    return ids;
  }

  crm::testing::TempDir dir_;
  absl::Time now_ = absl::FromUnixSeconds(1704099600);
  int n_ = 0;
  std::unique_ptr<DeskStore> store_;
  std::unique_ptr<ArticleCommands> articles_;
};

// Terms an older tokenizer stored (a no-break space joined two words) are
// written again at the next start: an edit alone never fixed them.
TEST_F(ArticleCommandsTest, AStoreIndexedByAnOlderTokenizerIsIndexedAgainAtStart) {
  const auto id = Create("Printer\u00a0offline", "Check the cable.");
  ASSERT_EQ(Search("offline"), (std::vector<std::string>{id}));
  // As a store from before left it: the joined term, no version mark.
  Database& db = store_->events().db();
  rocksdb::WriteBatch old;
  auto* terms = db.Family("article_terms");
  old.Delete(terms, Tokenize("offline").front() + '\0' + id);
  old.Delete(terms, std::string("printer") + '\0' + id);
  old.Put(terms, std::string("printer\u00a0offline") + '\0' + id, "3");
  old.Delete(terms, "\xff\xffindex-version");
  ASSERT_TRUE(db.Write(&old, true).ok());
  EXPECT_TRUE(Search("offline").empty());

  articles_.reset();
  store_.reset();
  SetUp();
  EXPECT_EQ(Search("offline"), (std::vector<std::string>{id}));
  EXPECT_EQ(Search("printer"), (std::vector<std::string>{id}));
  auto joined =
      store_->events().db().Get("article_terms", std::string("printer\u00a0offline") + '\0' + id);
  ASSERT_TRUE(joined.ok()) << joined.status();
  EXPECT_FALSE(joined->has_value());
}

// A store indexed under the rules of version 4 ("update" was "updat") is
// indexed again: an edit would work out the old terms by today's rules and
// leave the stale one.
TEST_F(ArticleCommandsTest, AStoreOfTheLastTokenizerVersionIsIndexedAgainAtStart) {
  const auto id = Create("Update the firmware", "Hold reset.");
  Database& db = store_->events().db();
  rocksdb::WriteBatch old;
  auto* terms = db.Family("article_terms");
  old.Delete(terms, Tokenize("update").front() + '\0' + id);
  old.Put(terms, std::string("updat") + '\0' + id, "3");
  old.Put(terms, "\xff\xffindex-version", "4");
  ASSERT_TRUE(db.Write(&old, true).ok());
  EXPECT_TRUE(Search("update").empty());

  articles_.reset();
  store_.reset();
  SetUp();
  EXPECT_EQ(Search("update"), (std::vector<std::string>{id}));
  auto stale = store_->events().db().Get("article_terms", std::string("updat") + '\0' + id);
  ASSERT_TRUE(stale.ok()) << stale.status();
  EXPECT_FALSE(stale->has_value());
}

// Long articles: a page stops short of what a default gRPC client accepts
// (4 MiB), and the next page goes on from the first hit left out.
TEST_F(ArticleCommandsTest, APageOfLongArticlesStaysUnderTheClientsReplyLimit) {
  std::set<std::string> created;
  for (int i = 0; i < 40; ++i) {
    created.insert(Create(absl::StrCat("Printer manual ", i),
                          absl::StrCat("printer ", std::string(99'000, 'x'))));
  }
  std::set<std::string> seen;
  crm::v1::SearchArticlesRequest r;
  r.set_query("printer");
  r.mutable_page()->set_page_size(100);
  int pages = 0;
  do {
    auto found = articles_->SearchArticles(r);
    ASSERT_TRUE(found.ok()) << found.status();
    EXPECT_LT(found->ByteSizeLong(), size_t{4} << 20);
    for (const auto& h : found->hits()) {
      EXPECT_TRUE(seen.insert(h.article().article_id()).second) << "twice";
    }
    r.mutable_page()->set_page_token(found->next_page_token());
    ++pages;
  } while (!r.page().page_token().empty() && pages < 10);
  EXPECT_GT(pages, 1);
  EXPECT_EQ(seen, created);
}

TEST_F(ArticleCommandsTest, PublishedArticlesAreFoundBestFirst) {
  const auto body_only = Create("Paper jams", "If the printer shows an error, reset it.");
  const auto title = Create("Reset the printer", "Hold the power button for ten seconds.");
  const auto draft = Create("Printer reset for experts", "Use the service menu.", {}, "", false);
  const auto unrelated = Create("Invoices", "Download them from the portal.");
  EXPECT_EQ(Search("printer reset"), (std::vector<std::string>{title, body_only}));
  EXPECT_EQ(Search("invoice"), (std::vector<std::string>{unrelated}));
  EXPECT_TRUE(Search("nothing matches this").empty());
  EXPECT_TRUE(Search("the and of").empty()) << "stop words alone match nothing";

  crm::v1::SearchArticlesRequest r;
  r.set_query("reset printer");
  auto found = articles_->SearchArticles(r);
  ASSERT_TRUE(found.ok());
  EXPECT_EQ(found->hits(0).matched_terms_size(), 2);
  EXPECT_GT(found->hits(0).score(), found->hits(1).score());
  EXPECT_TRUE(Search("expert").empty()) << draft << " is a draft";

  // A plural finds the singular, and the hit names the word as asked.
  const auto cookies = Create("Clear the browser cookie", "Then sign in again.");
  EXPECT_EQ(Search("cookies"), (std::vector<std::string>{cookies}));
  r.set_query("Cookies");
  found = articles_->SearchArticles(r);
  ASSERT_TRUE(found.ok());
  ASSERT_EQ(found->hits_size(), 1);
  EXPECT_EQ(std::vector<std::string>(found->hits(0).matched_terms().begin(),
                                     found->hits(0).matched_terms().end()),
            (std::vector<std::string>{"cookies"}));
}

TEST_F(ArticleCommandsTest, TagsAndProductNarrowTheResults) {
  const auto a = Create("Toner low", "Replace the toner.", {"Printer", "consumables"}, "printer-x");
  const auto b = Create("Toner smudges", "Clean the drum and toner.", {"printer"}, "printer-y");
  const auto c = Create("Scanner lines", "Clean the glass.", {"scanner"}, "scanner-z");
  EXPECT_EQ(Search("toner", {"consumables"}), (std::vector<std::string>{a}));
  EXPECT_EQ(Search("toner", {}, "PRINTER-Y"), (std::vector<std::string>{b}));
  EXPECT_EQ(Search("toner", {}, " printer-y "), (std::vector<std::string>{b}));
  // Stop words alone match nothing, with filters as without.
  EXPECT_TRUE(Search("the", {"printer"}).empty());
  EXPECT_TRUE(Search("the", {}, "printer-x").empty());
  // Tags alone: every article with them, most recently published first.
  EXPECT_EQ(Search("", {"printer"}), (std::vector<std::string>{b, a}));
  EXPECT_EQ(Search("", {"printer", "consumables"}), (std::vector<std::string>{a}));
  EXPECT_EQ(Search(""), (std::vector<std::string>{c, b, a}));
  // A query with no word at all (a stray space or mark) is an empty one.
  EXPECT_EQ(Search(" ", {"printer"}), (std::vector<std::string>{b, a}));
  EXPECT_EQ(Search("?"), (std::vector<std::string>{c, b, a}));
  EXPECT_EQ(Search("\u00a0\u2026"), (std::vector<std::string>{c, b, a}))
      << "no-break space, ellipsis";
  EXPECT_EQ(Search("consumables"), (std::vector<std::string>{a})) << "tag words are searchable";
}

// A tag narrows the results but ranks them as without it: a word is as rare
// as it is in the whole knowledge base.
TEST_F(ArticleCommandsTest, ATagFilterKeepsTheRanking) {
  for (int i = 0; i < 6; ++i) {
    Create(absl::StrCat("Printer manual ", i), "About the printer.", {}, "");
  }
  const auto printer = Create("Printer", "Paper path.", {"hp"});
  const auto jam = Create("Jam", "Paper path.", {"hp"});
  const auto unfiltered = Search("printer jam");
  std::vector<std::string> tagged_order;
  for (const auto& id : unfiltered) {
    if (id == printer || id == jam) tagged_order.push_back(id);
  }
  ASSERT_EQ(tagged_order, (std::vector<std::string>{jam, printer})) << "jam is the rarer word";
  EXPECT_EQ(Search("printer jam", {"hp"}), tagged_order);
}

TEST_F(ArticleCommandsTest, RevisionReindexesAndUnpublishingHides) {
  const auto id = Create("Printer offline", "Check the cable.");
  crm::v1::UpdateArticleRequest u;
  u.set_request_id("u1");
  u.set_article_id(id);
  u.set_title("Scanner offline");
  u.set_body("Check the cable.");
  auto revised = articles_->UpdateArticle(u, Ctx());
  ASSERT_TRUE(revised.ok()) << revised.status();
  EXPECT_TRUE(Search("printer").empty());
  EXPECT_EQ(Search("scanner"), (std::vector<std::string>{id}));
  EXPECT_EQ(Search("cable"), (std::vector<std::string>{id}));

  crm::v1::UnpublishArticleRequest un;
  un.set_request_id("un1");
  un.set_article_id(id);
  ASSERT_TRUE(articles_->UnpublishArticle(un, Ctx()).ok());
  EXPECT_TRUE(Search("scanner").empty());
  EXPECT_TRUE(Search("").empty());
  Publish(id);
  EXPECT_EQ(Search("scanner"), (std::vector<std::string>{id}));
}

TEST_F(ArticleCommandsTest, AClockSteppedBackDatesNoRevisionBeforeTheLast) {
  const auto id = Create("Router reset", "Hold the button.", {}, "", /*publish=*/false);
  now_ -= absl::Hours(1);
  crm::v1::PublishArticleRequest r;
  r.set_request_id("publish-late");
  r.set_article_id(id);
  auto published = articles_->PublishArticle(r, Ctx());
  ASSERT_TRUE(published.ok()) << published.status();
  EXPECT_GT(FromProtoTimestamp(published->published_at()),
            FromProtoTimestamp(published->created_at()));
  EXPECT_GT(FromProtoTimestamp(published->updated_at()),
            FromProtoTimestamp(published->created_at()));
}

TEST_F(ArticleCommandsTest, RetriesVersionsAndBadInput) {
  crm::v1::CreateArticleRequest r;
  r.set_request_id("c1");
  r.set_title("Title");
  r.set_body("Body");
  auto first = articles_->CreateArticle(r, Ctx());
  auto retry = articles_->CreateArticle(r, Ctx());
  ASSERT_TRUE(first.ok() && retry.ok());
  EXPECT_EQ(first->article_id(), retry->article_id());
  EXPECT_EQ(store_->events().LogSize(), 1u);
  auto events = *store_->events().ReadStream(ArticleStream(first->article_id()));
  EXPECT_EQ(events[0].customer_id(), "");
  EXPECT_EQ(events[0].type(), "ArticleCreated");

  crm::v1::PublishArticleRequest p;
  p.set_request_id("p1");
  p.set_article_id(first->article_id());
  p.set_expected_version(7);
  EXPECT_EQ(articles_->PublishArticle(p, Ctx()).status().code(), absl::StatusCode::kAborted);
  p.set_expected_version(1);
  EXPECT_TRUE(articles_->PublishArticle(p, Ctx()).ok());
  p.set_request_id("p2");
  p.set_expected_version(0);
  EXPECT_EQ(articles_->PublishArticle(p, Ctx()).status().code(),
            absl::StatusCode::kFailedPrecondition);

  p.set_request_id("p3");
  p.set_article_id("art_missing");
  p.set_expected_version(2);
  EXPECT_EQ(articles_->PublishArticle(p, Ctx()).status().code(), absl::StatusCode::kNotFound);

  r.set_request_id("c2");
  r.clear_title();
  EXPECT_EQ(articles_->CreateArticle(r, Ctx()).status().message(), "title: required");
  crm::v1::GetArticleRequest g;
  g.set_article_id("art_missing");
  EXPECT_EQ(articles_->GetArticle(g, /*drafts=*/true).status().code(), absl::StatusCode::kNotFound);
  // A draft is the desk's: to other readers it does not exist.
  r.set_request_id("c3");
  r.set_title("Draft");
  auto draft = articles_->CreateArticle(r, Ctx());
  ASSERT_TRUE(draft.ok()) << draft.status();
  g.set_article_id(draft->article_id());
  EXPECT_TRUE(articles_->GetArticle(g, /*drafts=*/true).ok());
  const auto hidden = articles_->GetArticle(g, /*drafts=*/false).status();
  EXPECT_EQ(hidden.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(hidden.message(),
            absl::StrCat("article_id: article ", draft->article_id(), " not found"));
  p.set_request_id("p4");
  p.set_article_id(draft->article_id());
  p.set_expected_version(1);
  ASSERT_TRUE(articles_->PublishArticle(p, Ctx()).ok());
  EXPECT_TRUE(articles_->GetArticle(g, /*drafts=*/false).ok()) << "published";
  crm::v1::SearchArticlesRequest s;
  s.mutable_page()->set_page_size(-1);
  EXPECT_EQ(articles_->SearchArticles(s).status(),
            absl::InvalidArgumentError("page.page_size: negative"));
}

// NOT_FOUND names the request field first, then the id the caller sent,
// whatever version was expected: with 0 the domain's own check answers.
TEST_F(ArticleCommandsTest, AMissingArticleIsNamedByFieldAndId) {
  const std::string missing = "art_missing";
  auto expect_named = [&](absl::Status status, const std::string& what) {
    EXPECT_EQ(status.code(), absl::StatusCode::kNotFound) << what << ": " << status;
    EXPECT_TRUE(absl::StartsWith(status.message(), "article_id: ")) << what << ": " << status;
    EXPECT_TRUE(absl::StrContains(status.message(), missing)) << what << ": " << status;
  };
  for (const int64_t version : {0, 2}) {
    const std::string v = absl::StrCat("@", version, " ");
    crm::v1::UpdateArticleRequest update;
    update.set_request_id("u" + v);
    update.set_article_id(missing);
    update.set_expected_version(version);
    update.set_title("Reset the printer");
    update.set_body("Hold the power button.");
    expect_named(articles_->UpdateArticle(update, Ctx()).status(), v + "UpdateArticle");
    crm::v1::PublishArticleRequest publish;
    publish.set_request_id("p" + v);
    publish.set_article_id(missing);
    publish.set_expected_version(version);
    expect_named(articles_->PublishArticle(publish, Ctx()).status(), v + "PublishArticle");
    crm::v1::UnpublishArticleRequest unpublish;
    unpublish.set_request_id("x" + v);
    unpublish.set_article_id(missing);
    unpublish.set_expected_version(version);
    expect_named(articles_->UnpublishArticle(unpublish, Ctx()).status(), v + "UnpublishArticle");
  }
  crm::v1::GetArticleRequest get;
  get.set_article_id(missing);
  expect_named(articles_->GetArticle(get, /*drafts=*/true).status(), "GetArticle");
  EXPECT_EQ(store_->events().LogSize(), 0u);
}

TEST_F(ArticleCommandsTest, SearchPages) {
  for (int i = 0; i < 5; ++i) Create("Router " + std::to_string(i), "router setup");
  crm::v1::SearchArticlesRequest r;
  r.set_query("router");
  r.mutable_page()->set_page_size(2);
  std::vector<std::string> all;
  for (int page = 0; page < 5; ++page) {
    auto found = articles_->SearchArticles(r);
    ASSERT_TRUE(found.ok()) << found.status();
    for (const auto& h : found->hits()) all.push_back(h.article().article_id());
    if (found->next_page_token().empty()) break;
    r.mutable_page()->set_page_token(found->next_page_token());
  }
  EXPECT_EQ(all.size(), 5u);
  EXPECT_EQ(std::set<std::string>(all.begin(), all.end()).size(), 5u);
}

// Rankings are computed per call: a next page after the hits before it
// moved would skip or repeat hits, so it is ABORTED. A change among the
// hits still to come is simply seen; a token from before the check (the
// offset alone) still pages.
TEST_F(ArticleCommandsTest, ANextPageAfterTheHitsBeforeItMovedIsAborted) {
  std::vector<std::string> ids;
  for (int i = 0; i < 5; ++i) ids.push_back(Create(absl::StrCat("Router ", i), "router setup"));
  crm::v1::SearchArticlesRequest r;
  r.mutable_page()->set_page_size(2);  // newest first: 4 3 | 2 1 | 0
  auto first = articles_->SearchArticles(r);
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_EQ(first->hits_size(), 2);
  EXPECT_EQ(first->hits(1).article().article_id(), ids[3]);
  crm::v1::SearchArticlesRequest next = r;
  next.mutable_page()->set_page_token(first->next_page_token());

  crm::v1::UnpublishArticleRequest un;
  un.set_request_id("un-1");
  un.set_article_id(ids[1]);
  ASSERT_TRUE(articles_->UnpublishArticle(un, Ctx()).ok());
  auto second = articles_->SearchArticles(next);
  ASSERT_TRUE(second.ok()) << second.status();
  ASSERT_EQ(second->hits_size(), 2);
  EXPECT_EQ(second->hits(0).article().article_id(), ids[2]);
  EXPECT_EQ(second->hits(1).article().article_id(), ids[0]);
  EXPECT_TRUE(second->next_page_token().empty());

  // Newer than every hit so far: the second page would repeat ids[3].
  Create("Router 5", "router setup");
  auto moved = articles_->SearchArticles(next);
  EXPECT_EQ(moved.status().code(), absl::StatusCode::kAborted) << moved.status();
  EXPECT_TRUE(absl::StartsWith(moved.status().message(), "page.page_token:"));
  crm::v1::SearchArticlesRequest legacy = r;
  legacy.mutable_page()->set_page_token(SealPageToken(r, "2"));
  auto old = articles_->SearchArticles(legacy);
  ASSERT_TRUE(old.ok()) << old.status();
  ASSERT_EQ(old->hits_size(), 2);
  EXPECT_EQ(old->hits(0).article().article_id(), ids[3]);
}

// Paging reaches every hit of a large knowledge base, ranked or newest
// first, and the newest-first order holds across pages.
// Page tokens handed out hold this digest: it must not change with a new
// build, or every search paged across an upgrade would be ABORTED.
TEST(RankDigestTest, StaysTheValueTokensWereIssuedWith) {
  EXPECT_EQ(DeskStore::RankDigest(DeskStore::kEmptyRankDigest, "art_1"), 0xe7c648cc0d642c5fULL);
  EXPECT_NE(DeskStore::RankDigest(DeskStore::RankDigest(DeskStore::kEmptyRankDigest, "a"), "bc"),
            DeskStore::RankDigest(DeskStore::RankDigest(DeskStore::kEmptyRankDigest, "ab"), "c"));
}

TEST_F(ArticleCommandsTest, SearchPagesReachEveryHitOfALargeKnowledgeBase) {
  constexpr int kArticles = 2050;
  std::vector<std::string> created;
  for (int i = 0; i < kArticles; ++i) {
    created.push_back(Create("Modem " + std::to_string(i), "modem setup"));
  }
  auto all_pages = [&](const std::string& query) {
    crm::v1::SearchArticlesRequest r;
    r.set_query(query);
    r.mutable_page()->set_page_size(100);
    std::vector<std::string> ids;
    for (int page = 0; page < 30; ++page) {
      auto found = articles_->SearchArticles(r);
      EXPECT_TRUE(found.ok()) << found.status();
      if (!found.ok()) break;
      for (const auto& h : found->hits()) ids.push_back(h.article().article_id());
      if (found->next_page_token().empty()) break;
      r.mutable_page()->set_page_token(found->next_page_token());
    }
    return ids;
  };
  const auto ranked = all_pages("modem");
  EXPECT_EQ(ranked.size(), static_cast<size_t>(kArticles));
  EXPECT_EQ(std::set<std::string>(ranked.begin(), ranked.end()).size(),
            static_cast<size_t>(kArticles));
  // Published a second apart, in the order created.
  const std::vector<std::string> newest_first(created.rbegin(), created.rend());
  EXPECT_EQ(all_pages(""), newest_first);

  // A page size over the maximum is taken as the maximum, as in the other
  // services' lists: a full page and a token.
  crm::v1::SearchArticlesRequest big;
  big.set_query("modem");
  big.mutable_page()->set_page_size(1000);
  auto found = articles_->SearchArticles(big);
  ASSERT_TRUE(found.ok()) << found.status();
  EXPECT_EQ(found->hits_size(), 100);
  EXPECT_FALSE(found->next_page_token().empty());
}

}  // namespace
}  // namespace crm::service_desk
