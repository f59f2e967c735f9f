// Client auth: htpasswd parsing, bcrypt, Basic credentials, namespaces, the verification cache.
#include "proxy/auth.h"

#include <crypt.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <future>
#include <thread>

using namespace regcache;
using namespace regcache::proxy;

namespace {

// A bcrypt entry made now, at the cheapest cost, as `htpasswd -B -C 4` would.
std::string bcryptOf(const std::string& password) {
  char setting[CRYPT_GENSALT_OUTPUT_SIZE];
  REQUIRE(crypt_gensalt_rn("$2y$", 4, nullptr, 0, setting, sizeof setting) != nullptr);
  crypt_data data{};
  const char* hash = crypt_rn(password.c_str(), setting, &data, sizeof data);
  REQUIRE(hash != nullptr);
  return hash;
}

// A temp dir removed at the end of the test.
struct TempDir {
  std::filesystem::path path;
  TempDir() {
    char pattern[] = "/tmp/regcache-auth-XXXXXX";
    path = mkdtemp(pattern);
  }
  ~TempDir() { std::filesystem::remove_all(path); }
};

void writeFile(const std::filesystem::path& file, const std::string& text) {
  std::ofstream(file, std::ios::binary | std::ios::trunc) << text;
}

// A loop on its own thread, for callbacks that come back through Loop::post.
struct RunningLoop {
  Loop loop;
  std::thread thread{[this] { loop.run(); }};
  ~RunningLoop() {
    loop.stop();
    thread.join();
  }
};

// Verifies on `auth` and reports whether `done` ran inside the call, and its verdict.
struct Outcome {
  bool synchronous = false;
  bool valid = false;
};

Outcome verifyAndWait(ClientAuth& auth, Loop& loop, const BasicCredentials& credentials) {
  auto promise = std::make_shared<std::promise<bool>>();
  auto future = promise->get_future();
  bool returned = false;
  bool called_before_return = false;
  // Posted to the loop so that `returned` is read and written on one thread.
  loop.post([&, promise] {
    auth.verify(loop, credentials, [&, promise](bool valid) {
      called_before_return = !returned;
      promise->set_value(valid);
    });
    returned = true;
  });
  bool valid = future.get();
  std::promise<void> flushed;
  loop.post([&] { flushed.set_value(); });
  flushed.get_future().get();
  return {called_before_return, valid};
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// htpasswd

TEST_CASE("parseHtpasswd: comments, blank lines and CRLF are skipped; entries are read",
          "[proxy][auth]") {
  std::string alice = bcryptOf("pw-a");
  std::string bob = bcryptOf("pw-b");
  auto entries = parseHtpasswd("# users of the mirror\n\n   \nalice:" + alice + "\r\n" +
                                   "  # indented comment\nbob:" + bob + "\n",
                               "htpasswd");
  REQUIRE(entries.isOk());
  CHECK(entries->size() == 2);
  CHECK(entries->at("alice") == alice);
  CHECK(entries->at("bob") == bob);
  CHECK(parseHtpasswd("", "empty")->empty());
}

TEST_CASE("parseHtpasswd: a bad line is refused with its file and line", "[proxy][auth]") {
  std::string hash = bcryptOf("pw");
  struct Case {
    std::string text;
    std::string where;
  };
  const Case cases[] = {
      {"# ok\nno-colon-here\n", "f:2: "},
      {"alice:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n", "f:1: "},   // not bcrypt
      {"alice:$apr1$xyz$abcdefghijklmnopqrstuv\n", "f:1: "},    // MD5
      {":" + hash + "\n", "f:1: "},                             // empty user
      {"al ice:" + hash + "\n", "f:1: "},                       // space in user
      {"alice:" + hash + "\n\nalice:" + hash + "\n", "f:3: "},  // listed twice
      {"alice:" + hash.substr(0, 59) + "\n", "f:1: "},          // truncated hash
  };
  for (const Case& c : cases) {
    INFO(c.text);
    auto entries = parseHtpasswd(c.text, "f");
    REQUIRE_FALSE(entries.isOk());
    CHECK(entries.status().code() == Code::kInvalidArgument);
    CHECK(entries.status().message().starts_with(c.where));
  }
}

TEST_CASE("loadHtpasswd: a missing file is an I/O error naming it", "[proxy][auth]") {
  auto entries = loadHtpasswd("/nonexistent/htpasswd");
  REQUIRE_FALSE(entries.isOk());
  CHECK(entries.status().code() == Code::kIo);
  CHECK(entries.status().message().find("/nonexistent/htpasswd") != std::string::npos);
}

TEST_CASE("verifyBcrypt: the right password matches, others do not", "[proxy][auth]") {
  std::string hash = bcryptOf("correct horse");
  CHECK(verifyBcrypt("correct horse", hash));
  CHECK_FALSE(verifyBcrypt("correct horsf", hash));
  CHECK_FALSE(verifyBcrypt("", hash));
  // bcrypt stops at a NUL; a password with one must not pass as its prefix.
  CHECK_FALSE(verifyBcrypt(std::string("correct horse\0x", 15), hash));
  CHECK_FALSE(verifyBcrypt("correct horse", "not a hash"));

  // A fixed entry, as `htpasswd -B` (Apache's $2y$) would write it.
  const std::string fixed = "$2y$05$abcdefghijklmnopqrstuuLK7U1u6pVRmL7L1BBM2aS35PSZnDXlK";
  CHECK(verifyBcrypt("s3cret", fixed));
  CHECK_FALSE(verifyBcrypt("S3cret", fixed));
}

// ---------------------------------------------------------------------------------------------
// Credentials and namespaces

TEST_CASE("parseBasicCredentials: Basic user:password, and nothing else", "[proxy][auth]") {
  auto c = parseBasicCredentials("Basic YWxpY2U6cHc6d2l0aDpjb2xvbnM=");  // alice:pw:with:colons
  REQUIRE(c);
  CHECK(c->user == "alice");
  CHECK(c->password == "pw:with:colons");

  c = parseBasicCredentials("basic  Ym9iOnNlY3JldA");  // bob:secret, no padding, any case
  REQUIRE(c);
  CHECK(c->user == "bob");
  CHECK(c->password == "secret");

  c = parseBasicCredentials("Basic Og==");  // ":" as containers/image sends without a login
  REQUIRE(c);
  CHECK(c->user.empty());
  CHECK(c->password.empty());

  CHECK_FALSE(parseBasicCredentials("Bearer eyJhbGciOi"));
  CHECK_FALSE(parseBasicCredentials("Basic"));
  CHECK_FALSE(parseBasicCredentials("Basic !!!!"));
  CHECK_FALSE(parseBasicCredentials("Basic YWxpY2U="));  // "alice": no colon
  CHECK_FALSE(parseBasicCredentials(""));
}

TEST_CASE("namespaceCovers: whole path components only", "[proxy][auth]") {
  struct Case {
    const char* ns;
    const char* repository;
    bool covers;
  };
  const Case cases[] = {
      {"team", "team/app", true},
      {"team", "team", true},
      {"team", "team/a/b", true},
      {"team", "teamx/app", false},
      {"team", "tea/app", false},
      {"team", "x/team/app", false},
      {"local/shared", "local/shared/app", true},
      {"local/shared", "local/sharedx/app", false},
      {"local/shared", "local/other", false},
      {"local/shared", "local", false},
      {"*", "anything/at/all", true},
      {"", "team/app", false},
  };
  for (const Case& c : cases) {
    INFO(c.ns << " vs " << c.repository);
    CHECK(namespaceCovers(c.ns, c.repository) == c.covers);
  }
}

// ---------------------------------------------------------------------------------------------
// VerifiedCache

TEST_CASE("VerifiedCache: entries expire after the ttl and the size stays bounded",
          "[proxy][auth]") {
  auto now = std::chrono::steady_clock::time_point{};
  VerifiedCache cache(2, std::chrono::seconds(300), [&now] { return now; });
  std::string a = VerifiedCache::keyFor({"alice", "pw"});
  CHECK(a.find("pw") == std::string::npos);  // a hash of the password, not the password
  CHECK(a != VerifiedCache::keyFor({"alice", "pw2"}));
  CHECK(VerifiedCache::keyFor({"ab", "c"}) != VerifiedCache::keyFor({"a", "bc"}));

  cache.insert(a);
  now += std::chrono::seconds(299);
  CHECK(cache.contains(a));
  now += std::chrono::seconds(1);
  CHECK_FALSE(cache.contains(a));

  for (int i = 0; i < 10; ++i) cache.insert(VerifiedCache::keyFor({"u" + std::to_string(i), ""}));
  CHECK(cache.size() == 2);
  CHECK(cache.contains(VerifiedCache::keyFor({"u9", ""})));  // the newest is always kept
  cache.clear();
  CHECK(cache.size() == 0);
}

// ---------------------------------------------------------------------------------------------
// ClientAuth

TEST_CASE("ClientAuth: a verified password is answered from the cache, a wrong one never is",
          "[proxy][auth]") {
  TempDir dir;
  writeFile(dir.path / "htpasswd", "alice:" + bcryptOf("pw") + "\n");
  BlockingPool pool(1);
  RunningLoop running;
  ClientAuth::Options options;
  options.htpasswd = dir.path / "htpasswd";
  auto auth = ClientAuth::open(options, pool);
  REQUIRE(auth.isOk());

  Outcome first = verifyAndWait(**auth, running.loop, {"alice", "pw"});
  CHECK(first.valid);
  CHECK_FALSE(first.synchronous);  // a bcrypt on the pool
  Outcome second = verifyAndWait(**auth, running.loop, {"alice", "pw"});
  CHECK(second.valid);
  CHECK(second.synchronous);  // the cache

  for (int i = 0; i < 2; ++i) {
    Outcome wrong = verifyAndWait(**auth, running.loop, {"alice", "nope"});
    CHECK_FALSE(wrong.valid);
    CHECK_FALSE(wrong.synchronous);
  }
  Outcome unknown = verifyAndWait(**auth, running.loop, {"mallory", "pw"});
  CHECK_FALSE(unknown.valid);
  CHECK((*auth)->verifying() == 0);
}

TEST_CASE("ClientAuth: reload takes new passwords at once and keeps the old file on error",
          "[proxy][auth]") {
  TempDir dir;
  auto file = dir.path / "htpasswd";
  writeFile(file, "alice:" + bcryptOf("old") + "\n");
  BlockingPool pool(1);
  RunningLoop running;
  ClientAuth::Options options;
  options.htpasswd = file;
  auto auth = ClientAuth::open(options, pool);
  REQUIRE(auth.isOk());
  REQUIRE(verifyAndWait(**auth, running.loop, {"alice", "old"}).valid);

  writeFile(file, "alice:" + bcryptOf("new") + "\n");
  REQUIRE((*auth)->reload().isOk());
  CHECK_FALSE(verifyAndWait(**auth, running.loop, {"alice", "old"}).valid);  // not cached
  CHECK(verifyAndWait(**auth, running.loop, {"alice", "new"}).valid);

  writeFile(file, "alice:plaintext\n");
  Status bad = (*auth)->reload();
  CHECK(bad.code() == Code::kInvalidArgument);
  CHECK(verifyAndWait(**auth, running.loop, {"alice", "new"}).valid);
}

TEST_CASE("ClientAuth: write permission follows [[auth.allow]]", "[proxy][auth]") {
  TempDir dir;
  writeFile(dir.path / "htpasswd", "");
  BlockingPool pool(1);
  ClientAuth::Options options;
  options.htpasswd = dir.path / "htpasswd";
  options.allow = {{"alice", {"team-a", "local/shared"}}, {"root", {"*"}}};
  auto auth = ClientAuth::open(options, pool);
  REQUIRE(auth.isOk());
  const ClientAuth& a = **auth;

  CHECK(a.mayWrite("alice", "team-a/app"));
  CHECK(a.mayWrite("alice", "local/shared/tool"));
  CHECK_FALSE(a.mayWrite("alice", "team-ab/app"));
  CHECK_FALSE(a.mayWrite("alice", "local/private"));
  CHECK_FALSE(a.mayWrite("alice", "team-b/app"));
  CHECK(a.mayWrite("root", "team-b/app"));
  CHECK_FALSE(a.mayWrite("bob", "team-a/app"));  // no allow entry: nowhere
}

TEST_CASE("ClientAuth: an unreadable htpasswd is an error at open", "[proxy][auth]") {
  BlockingPool pool(1);
  ClientAuth::Options options;
  options.htpasswd = "/nonexistent/htpasswd";
  CHECK(ClientAuth::open(options, pool).status().code() == Code::kIo);
}

// ---------------------------------------------------------------------------------------------
// The [auth] config keys

TEST_CASE("parseConfig: [[auth.allow]] entries are read", "[proxy][auth]") {
  auto config = parseConfig(
      "[auth]\n"
      "htpasswd = \"/etc/regcache/htpasswd\"\n"
      "anonymous_pull = false\n"
      "[[auth.allow]]\n"
      "user = \"alice\"\n"
      "namespaces = [\"team-a\", \"local/shared\"]\n"
      "[[auth.allow]]\n"
      "user = \"admin\"\n"
      "namespaces = [\"*\"]\n",
      "t.toml");
  REQUIRE(config.isOk());
  CHECK(config->htpasswd == "/etc/regcache/htpasswd");
  CHECK_FALSE(config->anonymous_pull);
  REQUIRE(config->auth_allow.size() == 2);
  CHECK(config->auth_allow[0].user == "alice");
  CHECK(config->auth_allow[0].namespaces == std::vector<std::string>{"team-a", "local/shared"});
  CHECK(config->auth_allow[1].namespaces == std::vector<std::string>{"*"});
}

TEST_CASE("parseConfig: bad [[auth.allow]] entries are refused with their line", "[proxy][auth]") {
  const std::string head = "[auth]\nhtpasswd = \"/h\"\n";
  struct Case {
    std::string text;
    std::string message_start;
  };
  const Case cases[] = {
      {head + "[[auth.allow]]\nuser = \"a\"\nteams = [\"x\"]\n", "t.toml:5: auth.allow[0].teams"},
      {head + "[[auth.allow]]\nnamespaces = [\"x\"]\n", "t.toml:3: auth.allow[0]"},
      {head + "[[auth.allow]]\nuser = \"a\"\nnamespaces = [\"Bad Name\"]\n",
       "t.toml:5: auth.allow[0].namespaces[0]"},
      {head + "[[auth.allow]]\nuser = \"a\"\n[[auth.allow]]\nuser = \"a\"\n",
       "t.toml:5: auth.allow[1].user"},
      {"[[auth.allow]]\nuser = \"a\"\nnamespaces = [\"x\"]\n", "t.toml:1: auth.allow"},
  };
  for (const Case& c : cases) {
    INFO(c.text);
    auto config = parseConfig(c.text, "t.toml");
    REQUIRE_FALSE(config.isOk());
    CHECK(config.status().message().starts_with(c.message_start));
  }
}
