#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "crm/v1/service_desk.pb.h"

namespace crm::service_desk {

// Knowledge base search, pure: how text becomes terms, what an article
// contributes to the index, and how matches are ranked.

// Index terms of the words of `text`: ASCII letters and digits
// lowercased, other UTF-8 kept as is, common English stop words and
// one-letter words dropped, a singular and its plural made one term
// ("printer" and "printers", "battery" and "batteries", "cookie" and
// "cookies"; the term need not be a word).
std::vector<std::string> Tokenize(absl::string_view text);

// Whether `text` holds a character words are made of (anything Tokenize
// does not separate on): a query of spaces and marks holds none.
bool HasWordChar(absl::string_view text);

// The query's distinct terms, in order, each with the first word that
// gave it (lowercased): what a hit shows as matched.
struct QueryWord {
  std::string term;
  std::string word;
};
std::vector<QueryWord> QueryWords(absl::string_view query);
// The terms alone.
std::vector<std::string> QueryTerms(absl::string_view query);

// The index term of a tag, kept apart from words: "#" + tag.
std::string TagTerm(absl::string_view tag);

// Terms of an article with their weights: a word counts 3 per occurrence
// in the title, 1 in the body (at most 10 from the body, so repetition
// does not buy rank), 5 as a word of a tag; each tag also as TagTerm.
std::map<std::string, int64_t> IndexTerms(const crm::v1::Article& article);

struct TermPostings {
  std::string term;
  absl::flat_hash_map<std::string, int64_t> weight_by_article;
};

struct RankedArticle {
  std::string article_id;
  double score = 0;
  std::vector<std::string> matched_terms;
};

// Articles matching at least one term, best first: more distinct query
// words matched first, then the score Σ idf(term) · (1 + ln weight) with
// idf = ln(1 + total / articles with the term), then article id.
std::vector<RankedArticle> RankArticles(const std::vector<TermPostings>& postings,
                                        int64_t total_articles);

}  // namespace crm::service_desk
