#include "services/service-desk/domain/article_search.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <string_view>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "libs/common/text.h"

namespace crm::service_desk {
namespace {

constexpr int64_t kTitleWeight = 3;
constexpr int64_t kBodyWeight = 1;
constexpr int64_t kMaxBodyWeight = 10;
constexpr int64_t kTagWordWeight = 5;

// Sorted, for binary search.
constexpr std::array<std::string_view, 50> kStopWords = {
    "a",   "am",  "an",   "and",  "are",  "as",  "at",   "be",    "but",  "by",
    "can", "do",  "does", "for",  "from", "has", "have", "how",   "i",    "if",
    "in",  "is",  "it",   "its",  "me",   "my",  "no",   "not",   "of",   "on",
    "or",  "our", "so",   "than", "that", "the", "then", "there", "they", "this",
    "to",  "was", "we",   "what", "when", "why", "will", "with",  "you",  "your"};

bool IsStopWord(std::string_view w) {
  return std::binary_search(kStopWords.begin(), kStopWords.end(), w);
}

// Singulars whose final s is no plural's, "status", "lens", "alias": kept,
// so that their "-ses" plurals, which lose the s and then the e, meet them.
// Other words in "us" or "as" are plurals ("menus", "cpus", "areas").
bool IsSingularInS(std::string_view w) {
  static constexpr std::array<std::string_view, 24> kWords = {
      "alias",     "atlas",  "bias",       "bonus",  "campus", "canvas",  "census",   "chaos",
      "consensus", "corpus", "ethos",      "focus",  "genius", "iris",    "lens",     "minus",
      "nexus",     "plus",   "prospectus", "radius", "status", "surplus", "syllabus", "virus"};
  return std::find(kWords.begin(), kWords.end(), w) != kWords.end();
}

// One index term for a word's singular and plural, which need not be a
// word: "cookie" and "cookies" give "cooki", "battery" and "batteries"
// "batteri", "box" and "boxes" "box", "cache" and "caches" "cach",
// "address" and "addresses" "address", "menu" and "menus" "menu", "lens"
// and "lenses" "lens". Hits show
// the query's words, never these.
std::string Stem(std::string w) {
  if (w.size() > 3) {
    if (absl::EndsWith(w, "ies") && w.size() > 4) {
      w.resize(w.size() - 2);  // "batteries" -> "batteri"
    } else if (absl::EndsWith(w, "sses")) {
      w.resize(w.size() - 2);  // "addresses" -> "address"
    } else if (absl::EndsWith(w, "s") && !absl::EndsWith(w, "ss") && !absl::EndsWith(w, "sis") &&
               !IsSingularInS(w)) {
      w.pop_back();  // "printers" -> "printer", "boxes" -> "boxe" (-> "box" below)
    }
    // An e that "es" plurals keep ("boxes", "patches", "sizes", "cookies"
    // -> "cooki"): dropped from the singular too. Other final e's stay, so
    // "plane" is not "plan".
    if (w.size() > 3 && w.back() == 'e') {
      const absl::string_view stem = absl::string_view(w).substr(0, w.size() - 1);
      if (absl::EndsWith(stem, "s") || absl::EndsWith(stem, "x") || absl::EndsWith(stem, "z") ||
          absl::EndsWith(stem, "ch") || absl::EndsWith(stem, "sh") || absl::EndsWith(stem, "i")) {
        w.pop_back();
      }
    }
  }
  // A consonant's y is the i its plural has: "battery", "batteries"; "try",
  // "tries".
  if (w.size() > 2 && w.back() == 'y' && !absl::StrContains("aeiouy", w[w.size() - 2])) {
    w.back() = 'i';
  }
  return w;
}

// Bytes of the separator starting at text[i], or 0 inside a word: ASCII
// other than letters and digits, and the non-ASCII punctuation and spaces
// text pasted from word processors carries: no-break space, guillemets,
// U+2000..U+206F (spaces, dashes, curly quotes, ellipsis; not the joiners
// U+200C, U+200D and U+2060, which sit inside words of some scripts),
// ideographic space, comma, full stop and brackets, fullwidth and
// halfwidth punctuation, the byte order mark. Other non-ASCII is part of words.
size_t SeparatorAt(absl::string_view text, size_t i) {
  const auto at = [&](size_t k) { return static_cast<unsigned char>(text[k]); };
  const unsigned char c = at(i);
  if (c < 0x80) return absl::ascii_isalnum(c) ? 0 : 1;
  const size_t left = text.size() - i;
  if (c == 0xC2 && left >= 2 && (at(i + 1) == 0xA0 || at(i + 1) == 0xAB || at(i + 1) == 0xBB)) {
    return 2;
  }
  if (left < 3) return 0;
  const unsigned char b = at(i + 1), d = at(i + 2);
  if (c == 0xE2 && b == 0x80) return d == 0x8C || d == 0x8D ? 0 : 3;  // U+2000..U+203F
  if (c == 0xE2 && b == 0x81) return d <= 0xAF && d != 0xA0 ? 3 : 0;  // U+2040..U+206F
  if (c == 0xE3 && b == 0x80 && (d <= 0x82 || (d >= 0x88 && d <= 0x91))) {
    return 3;  // U+3000..U+3002, brackets U+3008..U+3011
  }
  if (c == 0xEF && b == 0xBC && (d <= 0x8F || (d >= 0x9A && d <= 0xA0) || d >= 0xBB)) {
    return 3;  // U+FF00..U+FF0F, U+FF1A..U+FF20, U+FF3B..U+FF3F
  }
  if (c == 0xEF && b == 0xBD && (d == 0x80 || (d >= 0x9B && d <= 0xA5))) {
    return 3;  // U+FF40, U+FF5B..U+FF65
  }
  if (c == 0xEF && b == 0xBB && d == 0xBF) return 3;  // U+FEFF
  return 0;
}

}  // namespace

namespace {

// Calls fn(word, term) for each word of `text`: the word lowercased as
// written, and the index term it stands for.
template <typename Fn>
void ForEachWord(absl::string_view text, Fn fn) {
  size_t i = 0;
  while (i < text.size()) {
    if (const size_t separator = SeparatorAt(text, i); separator > 0) {
      i += separator;
      continue;
    }
    // UTF-8 continuation bytes never start a separator: j may step bytewise.
    size_t j = i;
    while (j < text.size() && SeparatorAt(text, j) == 0) ++j;
    if (j > i) {
      std::string word = Utf8ToLower(text.substr(i, j - i));
      if (word.size() >= 2 && !IsStopWord(word)) {
        std::string term = Stem(word);
        fn(std::move(word), std::move(term));
      }
    }
    i = j;
  }
}

}  // namespace

std::vector<std::string> Tokenize(absl::string_view text) {
  std::vector<std::string> out;
  ForEachWord(text, [&](std::string, std::string term) { out.push_back(std::move(term)); });
  return out;
}

bool HasWordChar(absl::string_view text) {
  for (size_t i = 0; i < text.size();) {
    const size_t separator = SeparatorAt(text, i);
    if (separator == 0) return true;
    i += separator;
  }
  return false;
}

std::vector<QueryWord> QueryWords(absl::string_view query) {
  std::vector<QueryWord> out;
  absl::flat_hash_set<std::string> seen;
  ForEachWord(query, [&](std::string word, std::string term) {
    if (seen.insert(term).second) out.push_back({std::move(term), std::move(word)});
  });
  return out;
}

std::vector<std::string> QueryTerms(absl::string_view query) {
  std::vector<std::string> out;
  for (auto& w : QueryWords(query)) out.push_back(std::move(w.term));
  return out;
}

// Lowercased here too: tags stored before they were lowercased beyond ASCII
// are indexed as a search names them.
std::string TagTerm(absl::string_view tag) { return absl::StrCat("#", Utf8ToLower(tag)); }

std::map<std::string, int64_t> IndexTerms(const crm::v1::Article& article) {
  std::map<std::string, int64_t> terms;
  for (const auto& w : Tokenize(article.title())) terms[w] += kTitleWeight;
  std::map<std::string, int64_t> body;
  for (const auto& w : Tokenize(article.body())) {
    body[w] = std::min(body[w] + kBodyWeight, kMaxBodyWeight);
  }
  for (const auto& [w, weight] : body) terms[w] += weight;
  for (const auto& tag : article.tags()) {
    for (const auto& w : QueryTerms(tag)) terms[w] += kTagWordWeight;
    terms[TagTerm(tag)] = 1;
  }
  return terms;
}

std::vector<RankedArticle> RankArticles(const std::vector<TermPostings>& postings,
                                        int64_t total_articles) {
  absl::flat_hash_map<std::string, RankedArticle> by_id;
  for (const auto& p : postings) {
    if (p.weight_by_article.empty()) continue;
    const double df = static_cast<double>(p.weight_by_article.size());
    const double idf = std::log(1.0 + std::max<double>(total_articles, df) / df);
    for (const auto& [id, weight] : p.weight_by_article) {
      auto& r = by_id[id];
      r.article_id = id;
      r.score += idf * (1.0 + std::log(static_cast<double>(std::max<int64_t>(weight, 1))));
      r.matched_terms.push_back(p.term);
    }
  }
  std::vector<RankedArticle> out;
  out.reserve(by_id.size());
  for (auto& [id, r] : by_id) out.push_back(std::move(r));
  std::sort(out.begin(), out.end(), [](const RankedArticle& a, const RankedArticle& b) {
    if (a.matched_terms.size() != b.matched_terms.size()) {
      return a.matched_terms.size() > b.matched_terms.size();
    }
    if (a.score != b.score) return a.score > b.score;
    return a.article_id < b.article_id;
  });
  return out;
}

}  // namespace crm::service_desk
