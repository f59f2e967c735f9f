// `regcache warm [-c FILE] [--data-dir DIR] [--platform os/arch[/variant]] [-f FILE] REF...`:
// pulls images into the cache through exactly the path a client's pull takes.
//
// Rather than a second way of filling the cache, warm runs the real Registry in-process on
// 127.0.0.1 (port 0) over the same data directory, and pulls from it with libcurl as a client
// would: the manifest (all four types accepted), the children of an index (or the one of
// --platform), then every config and layer, the bytes thrown away. Tag revalidation, fill
// coalescing, digest verification, and indexing are therefore the serve code itself. Blobs the
// store already holds get a HEAD only (which links them into the repository). LMDB lets a
// `regcache serve` on the same directory run meanwhile.
#include <curl/curl.h>
#include <strings.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "proxy/airgap.h"
#include "proxy/commands.h"
#include "proxy/http.h"
#include "proxy/image_ref.h"
#include "proxy/loop.h"
#include "proxy/registry.h"
#include "proxy/serve.h"

namespace regcache::proxy {

namespace {

constexpr size_t kParallelBlobs = 4;
constexpr auto kRedrawInterval = std::chrono::milliseconds(100);
constexpr int kMaxIndexDepth = 4;

struct WarmArgs {
  std::vector<std::string> refs;
  std::optional<Platform> platform;
};

// One blob to pull, and how: GET when the store lacks it, else HEAD (links it, no bytes).
struct BlobJob {
  std::string digest;
  uint64_t size = 0;
  bool held = false;
};

// What one image's warm did, for its report line.
struct WarmImage {
  size_t manifests = 0;
  std::vector<BlobJob> blobs;
  uint64_t bytes = 0;    // of all its blobs
  uint64_t fetched = 0;  // bytes GET'ed this run
};

Result<Platform> parsePlatform(std::string_view text) {
  Platform platform;
  size_t first = text.find('/');
  if (first == std::string_view::npos) return invalidArgument("expected os/arch[/variant]");
  platform.os = text.substr(0, first);
  std::string_view rest = text.substr(first + 1);
  size_t second = rest.find('/');
  platform.architecture = rest.substr(0, second);
  if (second != std::string_view::npos) platform.variant = rest.substr(second + 1);
  if (platform.os.empty() || platform.architecture.empty()) {
    return invalidArgument("expected os/arch[/variant]");
  }
  return platform;
}

// Refs from `path`: one a line, blank lines and '#' comments ignored.
bool readRefFile(const std::string& path, std::vector<std::string>& refs) {
  std::ifstream in(path);
  if (!in) {
    std::fprintf(stderr, "regcache: cannot read %s\n", path.c_str());
    return false;
  }
  std::string line;
  while (std::getline(in, line)) {
    line = line.substr(0, line.find('#'));
    size_t begin = line.find_first_not_of(" \t\r");
    if (begin == std::string::npos) continue;
    size_t end = line.find_last_not_of(" \t\r");
    refs.push_back(line.substr(begin, end - begin + 1));
  }
  return true;
}

bool parseWarmArgs(const std::vector<std::string>& rest, WarmArgs& args) {
  for (size_t i = 0; i < rest.size(); ++i) {
    const std::string& arg = rest[i];
    bool has_value = i + 1 < rest.size();
    if (arg == "--platform" && has_value) {
      auto platform = parsePlatform(rest[++i]);
      if (!platform) {
        std::fprintf(stderr, "regcache: bad --platform %s: %s\n", rest[i].c_str(),
                     platform.status().message().c_str());
        return false;
      }
      args.platform = *platform;
    } else if (arg == "-f" && has_value) {
      if (!readRefFile(rest[++i], args.refs)) return false;
    } else if (!arg.empty() && arg[0] == '-') {
      std::fprintf(stderr, "regcache: unknown option for warm (or missing value): %s\n",
                   arg.c_str());
      return false;
    } else {
      args.refs.push_back(arg);
    }
  }
  if (args.refs.empty()) {
    std::fputs("regcache: warm needs at least one REF (or -f FILE)\n", stderr);
    return false;
  }
  return true;
}

std::string formatBytes(uint64_t bytes) {
  static const char* const kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double value = static_cast<double>(bytes);
  size_t unit = 0;
  while (value >= 1024 && unit + 1 < std::size(kUnits)) {
    value /= 1024;
    ++unit;
  }
  char text[32];
  std::snprintf(text, sizeof text, unit == 0 ? "%.0f %s" : "%.1f %s", value, kUnits[unit]);
  return text;
}

// ---------------------------------------------------------------------------------------------
// Progress
// ---------------------------------------------------------------------------------------------

// A one-line bar per image on a terminal, redrawn in place; nothing until the end otherwise.
class ProgressLine {
 public:
  ProgressLine(std::string ref, uint64_t total)
      : ref_(std::move(ref)),
        total_(total),
        tty_(::isatty(STDERR_FILENO) == 1),
        start_(std::chrono::steady_clock::now()) {}

  void add(uint64_t bytes) {
    done_ += bytes;
    auto now = std::chrono::steady_clock::now();
    if (now - drawn_ >= kRedrawInterval) draw(now);
  }
  // Draws the final state and ends the line.
  void finish() {
    if (!tty_) return;
    draw(std::chrono::steady_clock::now());
    std::fputc('\n', stderr);
  }

 private:
  void draw(std::chrono::steady_clock::time_point now) {
    drawn_ = now;
    if (!tty_) return;
    constexpr int kWidth = 24;
    int filled = total_ == 0 ? kWidth : static_cast<int>(kWidth * done_ / total_);
    double seconds = std::chrono::duration<double>(now - start_).count();
    uint64_t rate = seconds > 0 ? static_cast<uint64_t>(done_ / seconds) : 0;
    std::fprintf(stderr, "\r%s [%.*s%.*s] %s / %s  %s/s\x1b[K", ref_.c_str(), filled,
                 "########################", kWidth - filled, "                        ",
                 formatBytes(done_).c_str(), formatBytes(total_).c_str(),
                 formatBytes(rate).c_str());
    std::fflush(stderr);
  }

  std::string ref_;
  uint64_t total_;
  uint64_t done_ = 0;
  bool tty_;
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point drawn_{};
};

// ---------------------------------------------------------------------------------------------
// The client side: libcurl against the in-process registry
// ---------------------------------------------------------------------------------------------

struct FetchedManifest {
  std::string digest;
  std::string media_type;
  std::string bytes;
};

size_t appendBody(char* data, size_t size, size_t n, void* out) {
  auto* body = static_cast<std::string*>(out);
  if (body->size() + size * n > kMaxManifestBytes) return 0;
  body->append(data, size * n);
  return size * n;
}

size_t collectHeader(char* data, size_t size, size_t n, void* out) {
  auto* fetched = static_cast<FetchedManifest*>(out);
  std::string_view line(data, size * n);
  auto value = [&line](std::string_view name) -> std::optional<std::string> {
    if (line.size() <= name.size() || strncasecmp(line.data(), name.data(), name.size()) != 0) {
      return std::nullopt;
    }
    std::string_view v = line.substr(name.size());
    while (!v.empty() && (v.front() == ' ')) v.remove_prefix(1);
    while (!v.empty() && (v.back() == '\r' || v.back() == '\n' || v.back() == ' ')) {
      v.remove_suffix(1);
    }
    return std::string(v);
  };
  if (auto d = value("docker-content-digest:")) fetched->digest = *d;
  if (auto t = value("content-type:")) fetched->media_type = t->substr(0, t->find(';'));
  return size * n;
}

// Pulls from the in-process registry. One thread.
class LocalPuller {
 public:
  explicit LocalPuller(uint16_t port)
      : base_("http://127.0.0.1:" + std::to_string(port)), easy_(curl_easy_init()) {}
  ~LocalPuller() { curl_easy_cleanup(easy_); }
  LocalPuller(const LocalPuller&) = delete;
  LocalPuller& operator=(const LocalPuller&) = delete;

  // GETs a manifest and checks its digest.
  Result<FetchedManifest> manifest(const Repository& repo, const std::string& reference);
  // GETs (or HEADs, for held ones) every blob, kParallelBlobs at a time, reporting bytes to
  // `progress`. Fails with the first blob that failed.
  Status blobs(const Repository& repo, const std::vector<BlobJob>& jobs, ProgressLine& progress,
               uint64_t& fetched);

 private:
  std::string url(const Repository& repo, std::string_view kind, const std::string& ref) const;
  CURL* blobHandle(const Repository& repo, const BlobJob& job, void* counter) const;

  std::string base_;
  CURL* easy_;
};

// Upstream-backed repositories go by their remote name and ?ns=, which routes them whatever
// their upstream's name looks like (a host:port is no valid path component).
std::string LocalPuller::url(const Repository& repo, std::string_view kind,
                             const std::string& ref) const {
  std::string path = repo.isLocal() ? repo.key : repo.remote;
  std::string out = base_ + "/v2/" + path + "/" + std::string(kind) + "/" + ref;
  if (!repo.isLocal()) out += "?ns=" + repo.upstream->name;
  return out;
}

Result<FetchedManifest> LocalPuller::manifest(const Repository& repo,
                                              const std::string& reference) {
  FetchedManifest fetched;
  curl_slist* headers = curl_slist_append(
      nullptr, ("Accept: " + std::string(kOciManifest) + ", " + std::string(kOciIndex) + ", " +
                std::string(kDockerManifest) + ", " + std::string(kDockerManifestList))
                   .c_str());
  curl_easy_reset(easy_);
  curl_easy_setopt(easy_, CURLOPT_URL, url(repo, "manifests", reference).c_str());
  curl_easy_setopt(easy_, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(easy_, CURLOPT_WRITEFUNCTION, appendBody);
  curl_easy_setopt(easy_, CURLOPT_WRITEDATA, &fetched.bytes);
  curl_easy_setopt(easy_, CURLOPT_HEADERFUNCTION, collectHeader);
  curl_easy_setopt(easy_, CURLOPT_HEADERDATA, &fetched);
  curl_easy_setopt(easy_, CURLOPT_NOPROXY, "*");
  CURLcode code = curl_easy_perform(easy_);
  curl_slist_free_all(headers);
  long status = 0;
  curl_easy_getinfo(easy_, CURLINFO_RESPONSE_CODE, &status);
  if (code != CURLE_OK) return Status(Code::kUnavailable, curl_easy_strerror(code));
  if (status != 200) {
    return Status(status == 404 ? Code::kNotFound : Code::kUnavailable,
                  "manifest " + reference + ": HTTP " + std::to_string(status) + " " +
                      fetched.bytes.substr(0, 300));
  }
  std::string actual = cache::digestOf(fetched.bytes).str();
  if (actual != fetched.digest && fetched.digest.starts_with("sha256:")) {
    return corrupt("manifest " + reference + " hashes to " + actual + ", not " + fetched.digest);
  }
  fetched.digest = actual;
  return fetched;
}

struct BlobTransfer {
  const BlobJob* job;
  ProgressLine* progress;
  uint64_t received = 0;
};

size_t countBody(char*, size_t size, size_t n, void* out) {
  auto* transfer = static_cast<BlobTransfer*>(out);
  transfer->received += size * n;
  transfer->progress->add(size * n);
  return size * n;
}

CURL* LocalPuller::blobHandle(const Repository& repo, const BlobJob& job, void* counter) const {
  CURL* easy = curl_easy_init();
  curl_easy_setopt(easy, CURLOPT_URL, url(repo, "blobs", job.digest).c_str());
  curl_easy_setopt(easy, CURLOPT_NOBODY, job.held ? 1L : 0L);
  curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, countBody);
  curl_easy_setopt(easy, CURLOPT_WRITEDATA, counter);
  curl_easy_setopt(easy, CURLOPT_PRIVATE, counter);
  curl_easy_setopt(easy, CURLOPT_NOPROXY, "*");
  return easy;
}

// Checks one finished transfer. Held blobs count as done when their HEAD answers 200.
Status finishedBlob(CURL* easy, CURLcode code, BlobTransfer& transfer) {
  long status = 0;
  curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
  const BlobJob& job = *transfer.job;
  if (code != CURLE_OK) {
    return Status(Code::kUnavailable, "blob " + job.digest + ": " + curl_easy_strerror(code) +
                                          " (the fill failed: see the upstream's answer)");
  }
  if (status != 200) {
    return Status(Code::kUnavailable, "blob " + job.digest + ": HTTP " + std::to_string(status));
  }
  if (job.held) {
    transfer.progress->add(job.size);
  } else if (transfer.received != job.size) {
    return corrupt("blob " + job.digest + ": got " + std::to_string(transfer.received) +
                   " bytes, the manifest says " + std::to_string(job.size));
  }
  return Status::ok();
}

// The multi loop: at most kParallelBlobs transfers at once, polled every redraw interval.
Status LocalPuller::blobs(const Repository& repo, const std::vector<BlobJob>& jobs,
                          ProgressLine& progress, uint64_t& fetched) {
  CURLM* multi = curl_multi_init();
  std::vector<std::unique_ptr<BlobTransfer>> transfers;
  size_t next = 0;
  size_t active = 0;
  Status result;
  while (next < jobs.size() || active > 0) {
    while (result && active < kParallelBlobs && next < jobs.size()) {
      transfers.push_back(std::make_unique<BlobTransfer>(BlobTransfer{&jobs[next++], &progress}));
      curl_multi_add_handle(multi,
                            blobHandle(repo, *transfers.back()->job, transfers.back().get()));
      ++active;
    }
    if (active == 0) break;
    int running = 0;
    curl_multi_perform(multi, &running);
    int queued = 0;
    while (CURLMsg* msg = curl_multi_info_read(multi, &queued)) {
      if (msg->msg != CURLMSG_DONE) continue;
      BlobTransfer* transfer = nullptr;
      curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &transfer);
      Status status = finishedBlob(msg->easy_handle, msg->data.result, *transfer);
      if (!transfer->job->held) fetched += transfer->received;
      if (result && !status) result = status;
      curl_multi_remove_handle(multi, msg->easy_handle);
      curl_easy_cleanup(msg->easy_handle);
      --active;
    }
    if (active > 0) {
      curl_multi_poll(multi, nullptr, 0, static_cast<int>(kRedrawInterval.count()), nullptr);
    }
    progress.add(0);
  }
  curl_multi_cleanup(multi);
  return result;
}

// ---------------------------------------------------------------------------------------------
// One image
// ---------------------------------------------------------------------------------------------

bool platformMatches(const Descriptor& child, const Platform& want) {
  if (!child.platform) return false;
  return child.platform->os == want.os && child.platform->architecture == want.architecture &&
         (want.variant.empty() || child.platform->variant == want.variant);
}

class ImageWarmer {
 public:
  ImageWarmer(LocalPuller& puller, const DataDir& dir, const std::optional<Platform>& platform)
      : puller_(puller), dir_(dir), platform_(platform) {}

  // Pulls the image `ref` names; fills `image` with what it took.
  Status warm(const ImageRef& ref, WarmImage& image);

 private:
  Status collect(const Repository& repo, const std::string& reference, int depth, WarmImage& image);
  bool isHeld(const std::string& digest) const;

  LocalPuller& puller_;
  const DataDir& dir_;
  const std::optional<Platform>& platform_;
  std::set<std::string> planned_;
};

bool ImageWarmer::isHeld(const std::string& digest) const {
  auto parsed = cache::Digest::parse(digest);
  auto txn = dir_.index->read();
  return parsed && txn && txn->blob(digest) && dir_.store->hasBlob(*parsed);
}

// GETs the manifest and, for an index, the children wanted; queues every blob once.
Status ImageWarmer::collect(const Repository& repo, const std::string& reference, int depth,
                            WarmImage& image) {
  auto fetched = puller_.manifest(repo, reference);
  if (!fetched) return fetched.status();
  auto manifest = parseManifest(fetched->bytes, fetched->media_type);
  if (!manifest) return manifest.status();
  ++image.manifests;
  for (const Descriptor& blob : requiredBlobs(*manifest)) {
    if (!planned_.insert(blob.digest).second) continue;
    image.blobs.push_back(BlobJob{blob.digest, blob.size, isHeld(blob.digest)});
    image.bytes += blob.size;
  }
  if (!manifest->is_index) return Status::ok();
  if (depth >= kMaxIndexDepth) return invalidArgument("indexes nested too deep");
  size_t wanted = 0;
  for (const Descriptor& child : manifest->manifests) {
    if (platform_ && !platformMatches(child, *platform_)) continue;
    ++wanted;
    if (Status s = collect(repo, child.digest, depth + 1, image); !s) return s;
  }
  if (wanted == 0) {
    return notFound("the index lists no manifest for platform " + platform_->os + "/" +
                    platform_->architecture +
                    (platform_->variant.empty() ? "" : "/" + platform_->variant));
  }
  return Status::ok();
}

Status ImageWarmer::warm(const ImageRef& ref, WarmImage& image) {
  planned_.clear();
  if (Status s = collect(ref.repository, ref.reference.str(), 0, image); !s) return s;
  ProgressLine progress(ref.str(), image.bytes);
  Status status = puller_.blobs(ref.repository, image.blobs, progress, image.fetched);
  progress.finish();
  return status;
}

// ---------------------------------------------------------------------------------------------
// The in-process registry
// ---------------------------------------------------------------------------------------------

// The serve stack on 127.0.0.1:0, torn down in serve's order.
class LocalRegistry {
 public:
  LocalRegistry(const Config& config, const DataDir& dir)
      : pool_(std::make_unique<BlockingPool>(2)),
        registry_(config, *dir.index, *dir.store, *pool_),
        server_(options(), registry_) {}
  ~LocalRegistry() {
    server_.stop();
    registry_.shutdown();
    pool_.reset();
  }

  Status start() { return server_.start(); }
  uint16_t port() const { return server_.port(); }

 private:
  static http::ServerOptions options() {
    http::ServerOptions options;
    options.host = "127.0.0.1";
    options.port = 0;
    options.threads = 2;
    return options;
  }

  std::unique_ptr<BlockingPool> pool_;
  Registry registry_;
  http::Server server_;
};

// Warms each ref in turn; prints one line per ref. Returns how many failed.
size_t warmAll(const Config& config, const DataDir& dir, const WarmArgs& args, uint16_t port) {
  LocalPuller puller(port);
  ImageWarmer warmer(puller, dir, args.platform);
  size_t failed = 0;
  for (const std::string& text : args.refs) {
    auto start = std::chrono::steady_clock::now();
    auto ref = parseImageRef(config, text);
    WarmImage image;
    Status status = ref ? warmer.warm(*ref, image) : ref.status();
    if (!status) {
      ++failed;
      std::fprintf(stderr, "warm.failed ref=%s error=\"%s\"\n", text.c_str(),
                   status.message().c_str());
      continue;
    }
    size_t held = 0;
    for (const BlobJob& job : image.blobs) held += job.held ? 1 : 0;
    std::fprintf(stderr,
                 "warm.image ref=%s manifests=%zu blobs=%zu held=%zu bytes=%llu "
                 "fetched=%llu ms=%lld\n",
                 ref->str().c_str(), image.manifests, image.blobs.size(), held,
                 static_cast<unsigned long long>(image.bytes),
                 static_cast<unsigned long long>(image.fetched),
                 static_cast<long long>(millisSince(start)));
  }
  return failed;
}

}  // namespace

int warmCommand(const std::vector<std::string>& argv) {
  CommonOptions common;
  std::vector<std::string> rest;
  WarmArgs args;
  if (!parseCommonOptions(argv, common, rest) || !parseWarmArgs(rest, args)) return kExitUsage;
  auto config = loadCommandConfig(common);
  if (!config) return kExitUsage;
  if (config->offline) {
    std::fputs("regcache: warm: the config says offline = true: there is nothing to pull from\n",
               stderr);
    return kExitFailed;
  }
  // The registry's own logs would tear the progress bar: warnings and worse only, unless asked.
  setUpLogging(common.log_level.empty() ? "warn" : common.log_level);
  auto dir = openDataDir(config->data_dir, false);
  if (!dir) return kExitFailed;

  curl_global_init(CURL_GLOBAL_DEFAULT);
  size_t failed = 0;
  {
    LocalRegistry local(*config, *dir);
    if (Status s = local.start(); !s) {
      std::fprintf(stderr, "regcache: warm: cannot listen on 127.0.0.1: %s\n", s.message().c_str());
      return kExitFailed;
    }
    failed = warmAll(*config, *dir, args, local.port());
  }
  return failed > 0 ? kExitFailed : 0;
}

}  // namespace regcache::proxy
