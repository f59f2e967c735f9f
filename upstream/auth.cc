// Registry auth: WWW-Authenticate parsing (RFC 9110 section 11), the token cache, and the
// token endpoint's URL and answer.
#include "upstream/auth.h"

#include <simdjson.h>

#include <algorithm>
#include <cctype>

namespace regcache::upstream {

namespace {

// RFC 9110 tchar: the characters of a token.
bool isTokenChar(char ch) {
  unsigned char c = static_cast<unsigned char>(ch);
  if (std::isalnum(c)) {
    return true;
  }
  std::string_view specials = "!#$%&'*+-.^_`|~";
  return specials.find(ch) != std::string_view::npos;
}

std::string lowercase(std::string_view text) {
  std::string out(text);
  for (char& ch : out) {
    ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  }
  return out;
}

// A cursor over a header value. Each parse step returns false on malformed input.
class ChallengeParser {
 public:
  explicit ChallengeParser(std::string_view text) : text_(text) {}

  Result<std::vector<Challenge>> parseAll() {
    std::vector<Challenge> challenges;
    skipSeparators();
    if (atEnd()) {
      return invalidArgument("empty WWW-Authenticate");
    }
    while (!atEnd()) {
      Challenge challenge;
      if (!parseOne(challenge)) {
        return invalidArgument("malformed WWW-Authenticate at offset " + std::to_string(pos_));
      }
      challenges.push_back(std::move(challenge));
      skipSeparators();
    }
    return challenges;
  }

 private:
  bool atEnd() const { return pos_ >= text_.size(); }
  char peek() const { return atEnd() ? '\0' : text_[pos_]; }

  void skipSpaces() {
    while (!atEnd() && (peek() == ' ' || peek() == '\t')) {
      ++pos_;
    }
  }

  // The list syntax allows empty elements: ", ,".
  void skipSeparators() {
    while (!atEnd() && (peek() == ' ' || peek() == '\t' || peek() == ',')) {
      ++pos_;
    }
  }

  std::string_view token() {
    size_t start = pos_;
    while (!atEnd() && isTokenChar(peek())) {
      ++pos_;
    }
    return text_.substr(start, pos_ - start);
  }

  // quoted-string with quoted-pairs; the cursor is on the opening quote.
  bool quotedString(std::string& out) {
    ++pos_;
    while (!atEnd()) {
      char ch = text_[pos_++];
      if (ch == '"') {
        return true;
      }
      if (ch == '\\') {
        if (atEnd()) {
          return false;
        }
        ch = text_[pos_++];
      }
      out += ch;
    }
    return false;  // unterminated
  }

  // One challenge: a scheme, then either a token68 or a comma-separated auth-param list. The
  // list ends where an element is a bare token followed by a space: the next challenge.
  bool parseOne(Challenge& challenge) {
    std::string_view scheme = token();
    if (scheme.empty()) {
      return false;
    }
    challenge.scheme = lowercase(scheme);
    if (atEnd() || peek() == ',') {
      return true;  // no parameters
    }
    if (peek() != ' ' && peek() != '\t') {
      return false;
    }
    skipSpaces();
    if (skipToken68()) {
      return true;
    }
    bool first = true;
    while (!atEnd()) {
      size_t before_separators = pos_;
      skipSeparators();
      size_t element_start = pos_;
      if (atEnd()) {
        return true;
      }
      bool after_comma = text_.substr(before_separators, pos_ - before_separators).find(',') !=
                         std::string_view::npos;
      std::string_view name = token();
      if (name.empty()) {
        return false;
      }
      skipSpaces();
      if (peek() != '=') {
        if (first && !after_comma) {
          return false;  // "Bearer a b"
        }
        pos_ = element_start;  // a new challenge's scheme
        return true;
      }
      ++pos_;
      skipSpaces();
      std::string value;
      if (peek() == '"') {
        if (!quotedString(value)) {
          return false;
        }
      } else {
        value = std::string(token());
        if (value.empty()) {
          return false;
        }
      }
      assign(challenge, lowercase(name), std::move(value));
      skipSpaces();
      if (!atEnd() && peek() != ',') {
        return false;
      }
      first = false;
    }
    return true;
  }

  // "Basic dXNlcg==": a token68 (credentials syntax, RFC 9110 section 11.2) ends the
  // challenge. "realm=x" is not one: text follows its '='. Skipped, we never need it.
  bool skipToken68() {
    size_t start = pos_;
    std::string_view body_chars = "-._~+/";
    while (!atEnd() && (std::isalnum(static_cast<unsigned char>(peek())) ||
                        body_chars.find(peek()) != std::string_view::npos)) {
      ++pos_;
    }
    bool has_body = pos_ > start;
    while (!atEnd() && peek() == '=') {
      ++pos_;
    }
    skipSpaces();
    if (has_body && (atEnd() || peek() == ',')) {
      return true;
    }
    pos_ = start;
    return false;
  }

  static void assign(Challenge& challenge, const std::string& name, std::string value) {
    std::string* field = nullptr;
    if (name == "realm") {
      field = &challenge.realm;
    } else if (name == "service") {
      field = &challenge.service;
    } else if (name == "scope") {
      field = &challenge.scope;
    }
    if (field != nullptr && field->empty()) {
      *field = std::move(value);  // a repeated parameter: the first one wins
    }
  }

  std::string_view text_;
  size_t pos_ = 0;
};

// RFC 3986 unreserved characters stay; everything else is %XX.
std::string percentEncode(std::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (char ch : text) {
    unsigned char c = static_cast<unsigned char>(ch);
    if (std::isalnum(c) || ch == '-' || ch == '.' || ch == '_' || ch == '~') {
      out += ch;
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

}  // namespace

// =============================================================================================
// Challenges

Result<std::vector<Challenge>> parseChallenges(std::string_view header) {
  return ChallengeParser(header).parseAll();
}

Result<Challenge> parseChallenge(std::string_view header) {
  Result<std::vector<Challenge>> all = parseChallenges(header);
  if (!all.isOk()) {
    return all.status();
  }
  return std::move(all.value().front());
}

// =============================================================================================
// Tokens

std::string tokenUrl(const Challenge& challenge, std::string_view scope) {
  std::string url = challenge.realm;
  char separator = url.find('?') == std::string::npos ? '?' : '&';
  if (!challenge.service.empty()) {
    url += separator;
    url += "service=" + percentEncode(challenge.service);
    separator = '&';
  }
  if (!scope.empty()) {
    url += separator;
    url += "scope=" + percentEncode(scope);
  }
  return url;
}

Result<TokenGrant> parseTokenResponse(std::string_view body) {
  simdjson::dom::parser parser;
  simdjson::dom::element root;
  if (parser.parse(body.data(), body.size()).get(root) != simdjson::SUCCESS) {
    return invalidArgument("token response is not JSON");
  }

  TokenGrant grant;
  std::string_view token;
  if (root["token"].get(token) != simdjson::SUCCESS || token.empty()) {
    if (root["access_token"].get(token) != simdjson::SUCCESS || token.empty()) {
      return invalidArgument("token response holds no token");
    }
  }
  grant.token = std::string(token);

  // Integers are the norm; accept a JSON number of any kind.
  double expires_in = 0;
  if (root["expires_in"].get(expires_in) == simdjson::SUCCESS && expires_in >= 1) {
    grant.expires_in = std::chrono::seconds(static_cast<int64_t>(std::min(expires_in, 1e9)));
  }
  return grant;
}

std::optional<std::string> TokenCache::get(std::string_view upstream, std::string_view scope) {
  std::string key = std::string(upstream) + '\n' + std::string(scope);
  std::lock_guard<std::mutex> lock(mu_);
  auto it = tokens_.find(key);
  if (it == tokens_.end()) {
    return std::nullopt;
  }
  if (clock_() >= it->second.expires) {
    tokens_.erase(it);
    return std::nullopt;
  }
  return it->second.token;
}

// A token is dropped a little before its stated expiry, so that a request started with it
// still reaches the registry in time: 10 s early, or a quarter of a short lifetime.
void TokenCache::put(std::string_view upstream, std::string_view scope, std::string token,
                     std::chrono::seconds expires_in) {
  if (expires_in <= std::chrono::seconds(0)) {
    return;
  }
  std::chrono::seconds margin = std::min(std::chrono::seconds(10), expires_in / 4);
  std::string key = std::string(upstream) + '\n' + std::string(scope);
  std::lock_guard<std::mutex> lock(mu_);
  tokens_[key] = Entry{std::move(token), clock_() + (expires_in - margin)};
}

bool TokenCache::holdsToken(std::string_view upstream) {
  std::string prefix = std::string(upstream) + '\n';
  std::lock_guard<std::mutex> lock(mu_);
  auto now = clock_();
  for (const auto& [key, entry] : tokens_) {
    if (key.starts_with(prefix) && now < entry.expires) return true;
  }
  return false;
}

}  // namespace regcache::upstream
