// Client auth: htpasswd parsing, bcrypt verification on the pool, the cache of verified
// credentials, write permissions, and the admission of each request.
#include "proxy/auth.h"

#include <crypt.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <spdlog/spdlog.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "proxy/errors.h"
#include "proxy/registry.h"
#include "proxy/routes.h"

namespace regcache::proxy {

namespace {

// A request body held while its credentials are verified is bounded: verification misses are
// rare (the first request of a client, once per cache lifetime), and the first request of a
// push carries no large body.
constexpr size_t kMaxHeldBody = 4u << 20;

constexpr std::string_view kChallenge = "Basic realm=\"regcache\"";

std::string_view trimRight(std::string_view s) {
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) {
    s.remove_suffix(1);
  }
  return s;
}

// User names end up in the access log as `user=<name>`: printable, no spaces or quotes.
bool isValidUser(std::string_view user) {
  if (user.empty()) return false;
  for (unsigned char c : user) {
    if (c <= 0x20 || c == 0x7f || c == ':' || c == '"' || c == '\\') return false;
  }
  return true;
}

bool isBcrypt(std::string_view hash) {
  // "$2y$" + two cost digits + "$" + 53 characters of salt and hash.
  return hash.size() == 60 &&
         (hash.starts_with("$2y$") || hash.starts_with("$2b$") || hash.starts_with("$2a$")) &&
         hash[6] == '$';
}

int base64Value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

// Standard base64 with optional padding; nullopt on any other character.
std::optional<std::string> decodeBase64(std::string_view text) {
  while (!text.empty() && text.back() == '=') text.remove_suffix(1);
  if (text.size() % 4 == 1) return std::nullopt;
  std::string out;
  out.reserve(text.size() * 3 / 4);
  uint32_t bits = 0;
  int count = 0;
  for (char c : text) {
    int v = base64Value(c);
    if (v < 0) return std::nullopt;
    bits = (bits << 6) | static_cast<uint32_t>(v);
    count += 6;
    if (count >= 8) {
      count -= 8;
      out.push_back(static_cast<char>((bits >> count) & 0xff));
    }
  }
  return out;
}

bool equalsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    char x = a[i] >= 'A' && a[i] <= 'Z' ? static_cast<char>(a[i] - 'A' + 'a') : a[i];
    char y = b[i] >= 'A' && b[i] <= 'Z' ? static_cast<char>(b[i] - 'A' + 'a') : b[i];
    if (x != y) return false;
  }
  return true;
}

bool isRead(const http::Request& request) {
  return request.method == "GET" || request.method == "HEAD";
}

// The operational endpoints a load balancer or Prometheus polls without credentials.
bool isOpenEndpoint(const http::Request& request) {
  return isRead(request) &&
         (request.path == "/metrics" || request.path == "/healthz" || request.path == "/readyz");
}

// The API version check, Docker's first request to a registry.
bool isBase(const http::Request& request) {
  return request.path == "/v2/" || request.path == "/v2";
}

void challenge(const std::shared_ptr<http::Exchange>& ex, std::string_view message) {
  http::Response response = errorResponse(ErrorCode::kUnauthorized, message);
  response.headers.add("WWW-Authenticate", std::string(kChallenge));
  respond(ex, std::move(response));
}

// A request body that arrives while its credentials are being verified.
struct HeldRequest {
  std::string body;
  bool ended = false;    // the whole body arrived
  bool decided = false;  // the verdict came (or the request was refused)
  bool stopped = false;  // the admitted handler refused more body
  std::unique_ptr<http::Handler> admitted;
};

// Holds the body until the verdict, then hands everything to the admitted handler.
class HoldingHandler : public http::Handler {
 public:
  HoldingHandler(std::shared_ptr<HeldRequest> held, std::weak_ptr<http::Exchange> ex)
      : held_(std::move(held)), ex_(std::move(ex)) {}

  bool onBody(std::string_view data) override {
    if (held_->decided) {
      if (held_->admitted == nullptr) return true;  // answered: the server discards the rest
      return !held_->stopped && held_->admitted->onBody(data);
    }
    if (held_->body.size() + data.size() > kMaxHeldBody) {
      // TODO(auth): pausing the connection's reads would let any body wait for the verdict;
      // http::Exchange has no way to pause yet. Clients retry a 429, by then verified.
      held_->decided = true;
      held_->body.clear();
      if (auto ex = ex_.lock()) {
        http::Response response = errorResponse(
            ErrorCode::kTooManyRequests, "credentials are being verified; retry the request");
        response.headers.add("Retry-After", "1");
        respond(ex, std::move(response));
      }
      return false;
    }
    held_->body.append(data);
    return true;
  }

  void onEnd() override {
    if (!held_->decided) {
      held_->ended = true;
    } else if (held_->admitted != nullptr && !held_->stopped) {
      held_->admitted->onEnd();
    }
  }

  void onAbort() override {
    if (held_->admitted != nullptr) held_->admitted->onAbort();
  }

 private:
  std::shared_ptr<HeldRequest> held_;
  std::weak_ptr<http::Exchange> ex_;
};

}  // namespace

// ---------------------------------------------------------------------------------------------
// htpasswd and bcrypt

Result<HtpasswdEntries> parseHtpasswd(std::string_view text, std::string_view source) {
  HtpasswdEntries entries;
  size_t line_number = 0;
  while (!text.empty()) {
    size_t end = text.find('\n');
    std::string_view line = trimRight(text.substr(0, end));
    text.remove_prefix(end == std::string_view::npos ? text.size() : end + 1);
    ++line_number;

    size_t first = line.find_first_not_of(" \t");
    if (first == std::string_view::npos || line[first] == '#') continue;
    auto fail = [&](std::string_view what) {
      return invalidArgument(std::string(source) + ":" + std::to_string(line_number) + ": " +
                             std::string(what));
    };
    size_t colon = line.find(':');
    if (colon == std::string_view::npos) return fail("expected user:hash");
    std::string user(line.substr(0, colon));
    std::string_view hash = line.substr(colon + 1);
    if (!isValidUser(user)) return fail("user name is empty or has spaces, quotes or controls");
    if (!isBcrypt(hash)) {
      return fail("user " + user + ": not a bcrypt hash (make entries with `htpasswd -B`)");
    }
    if (!entries.emplace(user, std::string(hash)).second) {
      return fail("user " + user + " is listed twice");
    }
  }
  return entries;
}

Result<HtpasswdEntries> loadHtpasswd(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) {
    return ioError("cannot read htpasswd " + file.string() + ": " + std::strerror(errno));
  }
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) {
    return ioError("cannot read htpasswd " + file.string() + ": " + std::strerror(errno));
  }
  return parseHtpasswd(text.str(), file.string());
}

bool verifyBcrypt(std::string_view password, const std::string& hash) {
  // bcrypt reads a C string: a password with a NUL would be checked only up to it.
  if (!isBcrypt(hash) || password.find('\0') != std::string_view::npos) return false;
  auto data = std::make_unique<crypt_data>();  // about 32 KiB: not on the stack
  std::string phrase(password);
  const char* out = crypt_rn(phrase.c_str(), hash.c_str(), data.get(), sizeof(crypt_data));
  OPENSSL_cleanse(phrase.data(), phrase.size());
  if (out == nullptr || std::strlen(out) != hash.size()) return false;
  return CRYPTO_memcmp(out, hash.data(), hash.size()) == 0;
}

// ---------------------------------------------------------------------------------------------
// Credentials and permissions

std::optional<BasicCredentials> parseBasicCredentials(std::string_view header) {
  size_t first = header.find_first_not_of(' ');
  if (first == std::string_view::npos) return std::nullopt;
  header.remove_prefix(first);
  size_t space = header.find(' ');
  if (space == std::string_view::npos || !equalsIgnoreCase(header.substr(0, space), "basic")) {
    return std::nullopt;
  }
  std::string_view token = trimRight(header.substr(space));
  token.remove_prefix(std::min(token.find_first_not_of(' '), token.size()));
  auto decoded = decodeBase64(token);
  if (!decoded) return std::nullopt;
  size_t colon = decoded->find(':');
  if (colon == std::string::npos) return std::nullopt;
  return BasicCredentials{decoded->substr(0, colon), decoded->substr(colon + 1)};
}

bool namespaceCovers(std::string_view ns, std::string_view repository) {
  if (ns == "*") return true;
  if (ns.empty() || !repository.starts_with(ns)) return false;
  return repository.size() == ns.size() || repository[ns.size()] == '/';
}

// ---------------------------------------------------------------------------------------------
// VerifiedCache

VerifiedCache::VerifiedCache(size_t capacity, std::chrono::seconds ttl, Clock clock)
    : capacity_(capacity), ttl_(ttl), clock_(std::move(clock)) {}

std::string VerifiedCache::keyFor(const BasicCredentials& credentials) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_Digest(credentials.password.data(), credentials.password.size(), digest, &length,
             EVP_sha256(), nullptr);
  // The length prefix keeps "ab"+"c..." and "a"+"bc..." apart.
  std::string key = std::to_string(credentials.user.size()) + ":" + credentials.user + ":";
  key.append(reinterpret_cast<const char*>(digest), length);
  return key;
}

bool VerifiedCache::contains(const std::string& key) {
  std::lock_guard lock(mu_);
  auto it = expiry_.find(key);
  if (it == expiry_.end()) return false;
  if (it->second > clock_()) return true;
  expiry_.erase(it);
  return false;
}

void VerifiedCache::insert(std::string key) {
  std::lock_guard lock(mu_);
  auto now = clock_();
  if (expiry_.size() >= capacity_ && expiry_.find(key) == expiry_.end()) {
    std::erase_if(expiry_, [now](const auto& entry) { return entry.second <= now; });
    // Still full: any entry will do; its owner pays one bcrypt more.
    if (expiry_.size() >= capacity_) expiry_.erase(expiry_.begin());
  }
  expiry_[std::move(key)] = now + ttl_;
}

void VerifiedCache::clear() {
  std::lock_guard lock(mu_);
  expiry_.clear();
}

size_t VerifiedCache::size() const {
  std::lock_guard lock(mu_);
  return expiry_.size();
}

// ---------------------------------------------------------------------------------------------
// ClientAuth

ClientAuth::Options ClientAuth::optionsFrom(const Config& config) {
  Options options;
  options.htpasswd = config.htpasswd.value_or("");
  options.anonymous_pull = config.anonymous_pull;
  options.allow = config.auth_allow;
  return options;
}

Result<std::unique_ptr<ClientAuth>> ClientAuth::open(Options options, BlockingPool& pool) {
  auto users = loadHtpasswd(options.htpasswd);
  if (!users) return users.status();
  auto shared = std::make_shared<const HtpasswdEntries>(std::move(*users));
  return std::unique_ptr<ClientAuth>(new ClientAuth(std::move(options), pool, std::move(shared)));
}

ClientAuth::ClientAuth(Options options, BlockingPool& pool,
                       std::shared_ptr<const HtpasswdEntries> users)
    : options_(std::move(options)),
      pool_(pool),
      verified_(
          options_.cache_capacity, options_.cache_ttl,
          options_.clock ? options_.clock : [] { return std::chrono::steady_clock::now(); }),
      users_(std::move(users)) {}

std::shared_ptr<const HtpasswdEntries> ClientAuth::users() const {
  std::lock_guard lock(mu_);
  return users_;
}

Status ClientAuth::reload() {
  auto users = loadHtpasswd(options_.htpasswd);
  if (!users) return users.status();
  auto shared = std::make_shared<const HtpasswdEntries>(std::move(*users));
  size_t count = shared->size();
  {
    std::lock_guard lock(mu_);
    users_ = std::move(shared);
    ++generation_;
    // Under mu_, so a verification that read the old users cannot insert after this clear.
    verified_.clear();
  }
  spdlog::info("auth.reload htpasswd={} users={}", options_.htpasswd.string(), count);
  return Status::ok();
}

void ClientAuth::verify(Loop& loop, const BasicCredentials& credentials,
                        std::function<void(bool)> done) {
  std::string key = VerifiedCache::keyFor(credentials);
  if (verified_.contains(key)) {
    done(true);
    return;
  }
  std::string hash;
  bool known = false;
  uint64_t generation = 0;
  {
    std::lock_guard lock(mu_);
    generation = generation_;
    auto it = users_->find(credentials.user);
    known = it != users_->end();
    // An unknown user costs a bcrypt too, against some user's hash, so that timing does not
    // tell which users exist.
    if (known) {
      hash = it->second;
    } else if (!users_->empty()) {
      hash = users_->begin()->second;
    }
  }
  verifying_.fetch_add(1);
  pool_.run(
      loop,
      [this, key = std::move(key), password = credentials.password, hash, known, generation] {
        bool valid = verifyBcrypt(password, hash) && known;
        if (valid) {
          std::lock_guard lock(mu_);
          if (generation == generation_) verified_.insert(key);
        }
        verifying_.fetch_sub(1);
        return valid;
      },
      std::move(done));
}

bool ClientAuth::mayWrite(std::string_view user, std::string_view repository) const {
  for (const AuthAllow& allow : options_.allow) {
    if (allow.user != user) continue;
    for (const std::string& ns : allow.namespaces) {
      if (namespaceCovers(ns, repository)) return true;
    }
  }
  return false;
}

ClientAuth::HandlerPtr ClientAuth::decide(const std::shared_ptr<http::Exchange>& ex,
                                          const std::optional<std::string>& user,
                                          const Proceed& proceed) {
  const http::Request& request = ex->request();
  if (!user) {
    challenge(ex, "invalid username or password");
    return nullptr;
  }
  ex->addLogField("user=" + *user);
  if (!isRead(request)) {
    auto route = parseRoute(request.path);
    if (route && !route->name.empty() && !mayWrite(*user, route->name)) {
      std::string ns = route->name.substr(0, route->name.find('/'));
      respond(ex, errorResponse(ErrorCode::kDenied, "user " + *user + " may not push to or " +
                                                        "delete from namespace " + ns + " (" +
                                                        route->name + ")"));
      return nullptr;
    }
  }
  return proceed(ex);
}

ClientAuth::HandlerPtr ClientAuth::admit(const std::shared_ptr<http::Exchange>& ex,
                                         Proceed proceed) {
  const http::Request& request = ex->request();
  if (isOpenEndpoint(request)) return proceed(ex);

  std::optional<BasicCredentials> credentials;
  if (const std::string* header = request.headers.get("Authorization")) {
    credentials = parseBasicCredentials(*header);
    if (!credentials) {
      challenge(ex, "credentials must be HTTP Basic (user and password)");
      return nullptr;
    }
    if (credentials->user.empty() && credentials->password.empty()) credentials.reset();
  }
  if (!credentials) {
    if (isRead(request) && options_.anonymous_pull && isBase(request)) {
      // 200 so that anonymous pulls go ahead (Docker refuses to pull anonymously once /v2/
      // challenges with Basic), with the challenge beside it so that clients which read it
      // on a 200 (containers/image: skopeo, podman) send their login with pushes.
      http::Response response;
      response.headers.add("Content-Type", "application/json");
      response.headers.add("WWW-Authenticate", std::string(kChallenge));
      response.body = "{}";
      respond(ex, std::move(response));
      return nullptr;
    }
    if (isRead(request) && options_.anonymous_pull) return proceed(ex);
    challenge(ex, isRead(request) ? "authentication required"
                                  : "pushes and deletes need a user: log in first");
    return nullptr;
  }

  // The common case: verified a moment ago.
  if (verified_.contains(VerifiedCache::keyFor(*credentials))) {
    return decide(ex, credentials->user, proceed);
  }
  auto held = std::make_shared<HeldRequest>();
  std::weak_ptr<http::Exchange> weak_ex = ex;
  std::weak_ptr<HeldRequest> weak_held = held;
  verify(ex->loop(), *credentials,
         [this, weak_ex, weak_held, user = credentials->user, proceed](bool valid) {
           auto ex = weak_ex.lock();
           auto held = weak_held.lock();
           if (!ex || !held || !ex->alive() || held->decided) return;
           held->decided = true;
           auto admitted = decide(ex, valid ? std::optional(user) : std::nullopt, proceed);
           if (admitted == nullptr) {
             held->body.clear();
             return;
           }
           std::string body = std::move(held->body);
           if (!body.empty() && !admitted->onBody(body)) held->stopped = true;
           held->admitted = std::move(admitted);
           if (held->ended && !held->stopped) held->admitted->onEnd();
         });
  return std::make_unique<HoldingHandler>(std::move(held), weak_ex);
}

}  // namespace regcache::proxy
