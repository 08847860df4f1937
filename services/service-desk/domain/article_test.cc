#include "services/service-desk/domain/article.h"

#include "gtest/gtest.h"
#include "libs/common/testing/given_when_then.h"
#include "services/service-desk/domain/article_search.h"

namespace crm::service_desk {
namespace {

using ArticleScenario = crm::testing::Scenario<crm::v1::Article, ArticleEvent, ArticleCommand>;

ArticleScenario Scenario() {
  return ArticleScenario(
      [](const std::optional<crm::v1::Article>& s, const ArticleCommand& c) {
        return Decide(s, c);
      },
      [](crm::v1::Article& s, const ArticleEvent& e, absl::Time t) { Apply(s, e, t); });
}

ArticleContent Content(std::string title = "Reset the printer") {
  return {std::move(title), "Hold the power button.", {"hardware", "printer"}, "printer-x"};
}

crm::v1::ArticleCreated Created() {
  crm::v1::ArticleCreated e;
  e.set_article_id("art_1");
  e.set_author_id("agent:ann");
  e.set_title("Reset the printer");
  e.set_body("Hold the power button.");
  e.add_tags("hardware");
  e.add_tags("printer");
  e.set_product("printer-x");
  return e;
}

crm::v1::ArticlePublished Published() {
  crm::v1::ArticlePublished e;
  e.set_article_id("art_1");
  return e;
}

TEST(ArticleTest, CreatedArticleIsADraft) {
  auto s = Scenario();
  s.Given({}).When(CreateArticle{"art_1", "agent:ann", Content()}).Then({Created()});
  crm::v1::Article a;
  Apply(a, Created(), absl::FromUnixSeconds(10));
  EXPECT_FALSE(a.published());
  EXPECT_EQ(a.author_id(), "agent:ann");
  EXPECT_EQ(a.version(), 1);
}

TEST(ArticleTest, PublishAndUnpublishToggleOnce) {
  Scenario().Given({Created()}).When(PublishArticle{}).Then({Published()});
  Scenario()
      .Given({Created(), Published()})
      .When(PublishArticle{})
      .ThenError(absl::StatusCode::kFailedPrecondition, "is published");
  crm::v1::ArticleUnpublished unpublished;
  unpublished.set_article_id("art_1");
  Scenario().Given({Created(), Published()}).When(UnpublishArticle{}).Then({unpublished});
  Scenario()
      .Given({Created()})
      .When(UnpublishArticle{})
      .ThenError(absl::StatusCode::kFailedPrecondition, "not published");
}

TEST(ArticleTest, RevisionOnlyWhenSomethingChanged) {
  Scenario().Given({Created()}).When(ReviseArticle{Content()}).Then({});
  crm::v1::ArticleRevised revised;
  revised.set_article_id("art_1");
  revised.set_title("Reboot the printer");
  revised.set_body("Hold the power button.");
  revised.add_tags("hardware");
  revised.add_tags("printer");
  revised.set_product("printer-x");
  Scenario().Given({Created()}).When(ReviseArticle{Content("Reboot the printer")}).Then({revised});
  Scenario()
      .Given({})
      .When(ReviseArticle{Content()})
      .ThenError(absl::StatusCode::kNotFound, "article_id: ");
}

TEST(ArticleTest, ContentIsValidatedAndTagsNormalized) {
  auto c = NormalizeArticleContent("  Title ", "Body", {" Printer", "printer", "HARDWARE"}, "x");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->title, "Title");
  EXPECT_EQ(c->tags, (std::vector<std::string>{"hardware", "printer"}));
  auto german = NormalizeArticleContent("T", "B", {"Übersicht", "übersicht"}, "");
  ASSERT_TRUE(german.ok()) << german.status();
  EXPECT_EQ(german->tags, (std::vector<std::string>{"übersicht"}));
  EXPECT_EQ(NormalizeArticleContent(" ", "Body", {}, "").status().message().substr(0, 6), "title:");
  EXPECT_EQ(NormalizeArticleContent("T", "", {}, "").status().message().substr(0, 5), "body:");
  EXPECT_EQ(NormalizeArticleContent("T", "B", {"ok", ""}, "").status().message().substr(0, 8),
            "tags[1]:");
  EXPECT_EQ(NormalizeArticleContent("T", "B", std::vector<std::string>(21, "x"), "")
                .status()
                .message()
                .substr(0, 5),
            "tags:");
}

TEST(SearchTest, TokenizeLowercasesDropsStopWordsAndPlurals) {
  EXPECT_EQ(Tokenize("How do I reset the Printers? Batteries, a B2B-invoice; glass"),
            (std::vector<std::string>{"reset", "printer", "batteri", "b2b", "invoice", "glass"}));
  EXPECT_EQ(QueryTerms("printer printers PRINTER"), (std::vector<std::string>{"printer"}));
  EXPECT_EQ(Tokenize("Drucker über Größe"), (std::vector<std::string>{"drucker", "über", "größe"}));
  // Capitals beyond ASCII too: a German, Polish or Russian query meets the
  // word whatever its case.
  EXPECT_EQ(Tokenize("ÄNDERUNG Über ŁÓDŹ ПРИНТЕР"), Tokenize("änderung über łódź принтер"));
  // Punctuation and spaces of pasted text separate words as ASCII ones do:
  // no-break space, em dash, curly apostrophe and quotes, ideographic space.
  EXPECT_EQ(Tokenize("Printer\u00a0offline\u2014jam rear\u2019s \u201cTray\u201d\u3000paper\u2026"),
            (std::vector<std::string>{"printer", "offline", "jam", "rear", "tray", "paper"}));
  EXPECT_EQ(Tokenize("Printer\u2019s"), Tokenize("Printer's"));
  // Fullwidth punctuation separates; joiners inside a word do not.
  EXPECT_EQ(
      Tokenize(
          "\u3010\u516c\u544a\u3011\uff5e\u6253\u5370\u673a\uff3b\uff0c\u5361\u7eb8\uff1a\uff64"),
      (std::vector<std::string>{"\u516c\u544a", "\u6253\u5370\u673a", "\u5361\u7eb8"}));
  EXPECT_EQ(Tokenize("\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645"),
            (std::vector<std::string>{"\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645"}));
}

// A singular finds its plural and the other way round, whichever ending
// the plural takes; singulars that end in s stay apart from their stem.
TEST(SearchTest, ASingularAndItsPluralAreOneTerm) {
  for (const auto& [singular, plural] :
       std::vector<std::pair<std::string, std::string>>{{"cookie", "cookies"},
                                                        {"battery", "batteries"},
                                                        {"menu", "menus"},
                                                        {"API", "APIs"},
                                                        {"address", "addresses"},
                                                        {"box", "boxes"},
                                                        {"patch", "patches"},
                                                        {"cache", "caches"},
                                                        {"key", "keys"},
                                                        {"status", "statuses"},
                                                        {"printer", "printers"},
                                                        {"glass", "glasses"},
                                                        {"size", "sizes"},
                                                        {"invoice", "invoices"},
                                                        {"update", "updates"},
                                                        {"try", "tries"},
                                                        {"lens", "lenses"},
                                                        {"alias", "aliases"},
                                                        {"bias", "biases"}}) {
    EXPECT_EQ(Tokenize(singular), Tokenize(plural)) << singular << " / " << plural;
  }
  EXPECT_NE(Tokenize("status"), Tokenize("statue"));
  for (const auto& [word, other] : std::vector<std::pair<std::string, std::string>>{
           {"plan", "plane"}, {"car", "care"}, {"code", "cod"}, {"rate", "rat"}}) {
    EXPECT_NE(Tokenize(word), Tokenize(other)) << word << " / " << other;
  }
  EXPECT_EQ(Tokenize("analysis"), (std::vector<std::string>{"analysis"}));
  // Each term with the first word the query gave it.
  const auto words = QueryWords("Cookies cookie BATTERY");
  ASSERT_EQ(words.size(), 2u);
  EXPECT_EQ(words[0].term, "cooki");
  EXPECT_EQ(words[0].word, "cookies");
  EXPECT_EQ(words[1].word, "battery");
}

TEST(SearchTest, TitleWordsWeighMoreThanBodyWordsAndTagsAreTerms) {
  crm::v1::Article a;
  a.set_title("Printer reset");
  a.set_body("Reset the printer. Reset again. " + std::string(200, ' ') + [] {
    std::string s;
    for (int i = 0; i < 30; ++i) s += "toner ";
    return s;
  }());
  a.add_tags("paper jam");
  const auto terms = IndexTerms(a);
  EXPECT_EQ(terms.at("printer"), 3 + 1);
  EXPECT_EQ(terms.at("reset"), 3 + 2);
  EXPECT_EQ(terms.at("toner"), 10) << "body repetition is capped";
  EXPECT_EQ(terms.at("paper"), 5);
  EXPECT_EQ(terms.at("#paper jam"), 1);
  // A tag stored before it was lowercased beyond ASCII is indexed as a
  // search names it.
  a.add_tags("Übersicht");
  EXPECT_EQ(IndexTerms(a).count(TagTerm("übersicht")), 1u);
  EXPECT_EQ(TagTerm("Übersicht"), TagTerm("übersicht"));
}

TEST(SearchTest, MoreMatchedWordsRankFirstThenRarerWordsAndWeight) {
  std::vector<TermPostings> postings(2);
  postings[0].term = "printer";
  postings[0].weight_by_article = {{"a", 1}, {"b", 4}, {"c", 1}, {"d", 1}};
  postings[1].term = "jam";
  postings[1].weight_by_article = {{"a", 1}, {"e", 1}};
  const auto ranked = RankArticles(postings, 10);
  ASSERT_EQ(ranked.size(), 5u);
  EXPECT_EQ(ranked[0].article_id, "a");  // both words
  EXPECT_EQ(ranked[0].matched_terms, (std::vector<std::string>{"printer", "jam"}));
  EXPECT_EQ(ranked[1].article_id, "b");  // a heavy match of the common word
  EXPECT_EQ(ranked[2].article_id, "e");  // the rarer word beats the common one at equal weight
  EXPECT_EQ(ranked[3].article_id, "c");  // ties by id
  EXPECT_EQ(ranked[4].article_id, "d");
  EXPECT_GT(ranked[2].score, ranked[3].score);
  EXPECT_EQ(ranked[3].score, ranked[4].score);
}

}  // namespace
}  // namespace crm::service_desk
