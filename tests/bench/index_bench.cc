// Index scale for tests/bench/run.py: fills an index with a million blob records and a hundred
// thousand tags straight through cache::Index (a million HTTP pushes would take the whole
// bench's time), and times direct lookups against it.
//
//   index_bench fill DATA_DIR REPO DIGEST [--blobs N] [--tags N]
//     Copies the manifest REPO@DIGEST (already pushed over HTTP, so it is a real one) into
//     N/100 repositories "<REPO>-s<k>" under 100 tags each, and adds N blob records, each
//     linked into one of those repositories. Prints one JSON line: counts and seconds.
//   index_bench lookup DATA_DIR REPO [--blobs N] [--tags N] [--count N]
//     Times `count` lookups of random blob records and random tags, each in its own read
//     transaction as a request would make it. Prints one JSON line: p50/p99 in microseconds.
//
// Names are derived from a counter, so `lookup` and run.py find what `fill` wrote without
// a list. Blob digests are well-formed but are not hashes of any bytes: no files back them.
#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "cache/index.h"

namespace {

using regcache::Result;
using regcache::Status;
using regcache::cache::BlobRecord;
using regcache::cache::Index;
using regcache::cache::ManifestRecord;
using regcache::cache::ManifestView;
using Clock = std::chrono::steady_clock;

constexpr size_t kTagsPerRepository = 100;
constexpr size_t kBatch = 100000;  // records per write transaction (one fsync each)

struct Options {
  size_t blobs = 1000000;
  size_t tags = 100000;
  size_t count = 200000;
};

uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// The i-th blob digest: 64 hex digits from four rounds of splitmix64.
std::string blobDigest(uint64_t i) {
  char hex[65];
  for (int part = 0; part < 4; ++part) {
    snprintf(hex + part * 16, 17, "%016" PRIx64, splitmix64(i * 4 + part));
  }
  return "sha256:" + std::string(hex, 64);
}

std::string repositoryName(std::string_view base, size_t k) {
  char suffix[32];
  snprintf(suffix, sizeof suffix, "-s%05zu", k);
  return std::string(base) + suffix;
}

std::string tagName(size_t t) {
  char name[16];
  snprintf(name, sizeof name, "t%03zu", t);
  return name;
}

double secondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

int fail(std::string_view what, const Status& status) {
  fprintf(stderr, "index_bench: %.*s: %s\n", static_cast<int>(what.size()), what.data(),
          status.message().c_str());
  return 1;
}

Result<ManifestRecord> readManifest(const Index& index, std::string_view repo,
                                    std::string_view digest) {
  auto txn = index.read();
  if (!txn) return txn.status();
  Result<ManifestView> view = txn->manifest(repo, digest);
  if (!view) return view.status();
  return ManifestRecord{std::string(view->media_type), std::string(view->bytes),
                        std::string(view->subject), std::string(view->artifact_type),
                        view->created};
}

// Adds repositories [first, last) with the manifest and their 100 tags, in one transaction.
Status fillRepositories(const Index& index, std::string_view repo, std::string_view digest,
                        const ManifestRecord& manifest, size_t first, size_t last) {
  auto txn = index.write();
  if (!txn) return txn.status();
  const int64_t now = static_cast<int64_t>(time(nullptr));
  for (size_t k = first; k < last; ++k) {
    std::string name = repositoryName(repo, k);
    Status status = txn->putManifest(name, digest, manifest, nullptr);
    for (size_t t = 0; status && t < kTagsPerRepository; ++t) {
      status = txn->putTag(name, tagName(t), digest, now, now);
    }
    if (!status) return status;
  }
  return txn->commit();
}

// Adds blob records [first, last), each linked into repository i % repositories.
Status fillBlobs(const Index& index, std::string_view repo, size_t repositories, size_t first,
                 size_t last) {
  auto txn = index.write();
  if (!txn) return txn.status();
  const BlobRecord record{4096, static_cast<int64_t>(time(nullptr)), regcache::cache::kBlobPushed};
  for (size_t i = first; i < last; ++i) {
    std::string digest = blobDigest(i);
    Status status = txn->putBlob(digest, record);
    if (status) status = txn->link(repositoryName(repo, i % repositories), digest);
    if (!status) return status;
  }
  return txn->commit();
}

int fill(const std::string& dir, std::string_view repo, std::string_view digest,
         const Options& options) {
  auto index = Index::open(dir + "/index");
  if (!index) return fail("open", index.status());
  Result<ManifestRecord> manifest = readManifest(**index, repo, digest);
  if (!manifest) return fail("read the seed manifest", manifest.status());

  const size_t repositories = std::max<size_t>(1, options.tags / kTagsPerRepository);
  const Clock::time_point start = Clock::now();
  const size_t repos_per_txn = kBatch / kTagsPerRepository;
  for (size_t k = 0; k < repositories; k += repos_per_txn) {
    Status status = fillRepositories(**index, repo, digest, *manifest, k,
                                     std::min(repositories, k + repos_per_txn));
    if (!status) return fail("fill tags", status);
  }
  for (size_t i = 0; i < options.blobs; i += kBatch) {
    Status status = fillBlobs(**index, repo, repositories, i, std::min(options.blobs, i + kBatch));
    if (!status) return fail("fill blobs", status);
  }
  printf("{\"blobs\": %zu, \"tags\": %zu, \"repositories\": %zu, \"seconds\": %.3f}\n",
         options.blobs, repositories * kTagsPerRepository, repositories, secondsSince(start));
  return 0;
}

double percentile(std::vector<double>& v, double p) {
  if (v.empty()) return 0;
  size_t at = std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())));
  std::nth_element(v.begin(), v.begin() + static_cast<ptrdiff_t>(at), v.end());
  return v[at];
}

// Times lookups of random keys; `lookup(i)` returns whether key i was found.
template <typename Lookup>
int timeLookups(const char* label, size_t count, size_t range, Lookup&& lookup, bool last) {
  std::vector<double> us;
  us.reserve(count);
  size_t missing = 0;
  for (size_t n = 0; n < count; ++n) {
    size_t i = splitmix64(n ^ 0x5eed) % range;
    Clock::time_point t0 = Clock::now();
    bool found = lookup(i);
    us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
    if (!found) ++missing;
  }
  double p50 = percentile(us, 0.50);
  double p99 = percentile(us, 0.99);
  printf("\"%s_p50_us\": %.2f, \"%s_p99_us\": %.2f, \"%s_missing\": %zu%s", label, p50, label, p99,
         label, missing, last ? "" : ", ");
  return missing == 0 ? 0 : 1;
}

int lookup(const std::string& dir, std::string_view repo, const Options& options) {
  auto index = Index::open(dir + "/index");
  if (!index) return fail("open", index.status());
  const Index& idx = **index;
  const size_t repositories = std::max<size_t>(1, options.tags / kTagsPerRepository);

  // Each lookup opens its own read transaction, as a request does.
  auto blob = [&](size_t i) {
    auto txn = idx.read();
    return txn && txn->blob(blobDigest(i)).isOk();
  };
  auto tag = [&](size_t i) {
    auto txn = idx.read();
    return txn &&
           txn->tag(repositoryName(repo, i / kTagsPerRepository), tagName(i % kTagsPerRepository))
               .isOk();
  };
  printf("{");
  int rc = timeLookups("blob", options.count, options.blobs, blob, false);
  rc |= timeLookups("tag", options.count, repositories * kTagsPerRepository, tag, true);
  printf("}\n");
  return rc;
}

bool parseOptions(int argc, char** argv, int first, Options* options) {
  for (int i = first; i < argc; i += 2) {
    if (i + 1 >= argc) return false;
    size_t value = strtoull(argv[i + 1], nullptr, 10);
    if (!strcmp(argv[i], "--blobs")) {
      options->blobs = value;
    } else if (!strcmp(argv[i], "--tags")) {
      options->tags = value;
    } else if (!strcmp(argv[i], "--count")) {
      options->count = value;
    } else {
      return false;
    }
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  if (argc >= 5 && !strcmp(argv[1], "fill") && parseOptions(argc, argv, 5, &options)) {
    return fill(argv[2], argv[3], argv[4], options);
  }
  if (argc >= 4 && !strcmp(argv[1], "lookup") && parseOptions(argc, argv, 4, &options)) {
    return lookup(argv[2], argv[3], options);
  }
  fprintf(stderr,
          "usage: index_bench fill DATA_DIR REPO DIGEST [--blobs N] [--tags N]\n"
          "       index_bench lookup DATA_DIR REPO [--blobs N] [--tags N] [--count N]\n");
  return 2;
}
