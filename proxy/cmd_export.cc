// `regcache export -o FILE [-c FILE] [--data-dir DIR] (REF... | --all | --since DURATION)`:
// writes cached images as an OCI image layout in a tar, for carrying across an air gap.
//
// The plan is made from one LMDB read snapshot (manifest bytes copied out, blobs checked on
// disk), then the snapshot is dropped and the tar is streamed: oci-layout, index.json, the
// manifests, then each blob once, copied from its file with sendfile. Memory is bounded by the
// manifests, never by blob sizes. Only the index and the store are read, so it runs beside
// `regcache serve`.
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <set>
#include <string>
#include <vector>

#include "cache/tar.h"
#include "proxy/airgap.h"
#include "proxy/commands.h"
#include "proxy/image_ref.h"
#include "proxy/oci_layout.h"

namespace regcache::proxy {

namespace {

struct ExportArgs {
  std::string output;
  std::vector<std::string> refs;
  bool all = false;
  std::optional<std::chrono::seconds> since;
};

// What goes into the tar: the images of index.json, every manifest they reach and every blob,
// each once, in the order first met.
struct ExportPlan {
  std::vector<LayoutImage> images;
  std::vector<std::pair<std::string, std::string>> manifests;  // digest, bytes
  std::vector<std::pair<cache::Digest, uint64_t>> blobs;       // digest, size
  std::set<std::string> seen;                                  // digests already planned
  uint64_t blob_bytes = 0;
  size_t children_left_out = 0;  // index children not cached (warmed with --platform)
};

bool parseExportArgs(const std::vector<std::string>& rest, ExportArgs& args) {
  for (size_t i = 0; i < rest.size(); ++i) {
    const std::string& arg = rest[i];
    bool has_value = i + 1 < rest.size();
    if ((arg == "-o" || arg == "--output") && has_value) {
      args.output = rest[++i];
    } else if (arg == "--all") {
      args.all = true;
    } else if (arg == "--since" && has_value) {
      auto since = parseDuration(rest[++i]);
      if (!since) {
        std::fprintf(stderr, "regcache: bad --since: %s\n", since.status().message().c_str());
        return false;
      }
      args.since = *since;
    } else if (!arg.empty() && arg[0] == '-') {
      std::fprintf(stderr, "regcache: unknown option for export (or missing value): %s\n",
                   arg.c_str());
      return false;
    } else {
      args.refs.push_back(arg);
    }
  }
  if (args.output.empty()) {
    std::fputs("regcache: export needs -o FILE (- for stdout)\n", stderr);
    return false;
  }
  if (args.refs.empty() == !(args.all || args.since)) {
    std::fputs("regcache: export takes REF... or --all or --since DURATION\n", stderr);
    return false;
  }
  return true;
}

// ---------------------------------------------------------------------------------------------
// Planning
// ---------------------------------------------------------------------------------------------

// Adds the manifest `digest` of `repository` and what it needs to the plan. An index's
// children that are not cached (warmed with --platform) are left out: the image is exported
// with the platforms held. Returns the manifest's media type.
Result<std::string> planManifest(const cache::ReadTxn& txn, const cache::BlobStore& store,
                                 const std::string& repository, const std::string& digest,
                                 ExportPlan& plan) {
  auto view = txn.manifest(repository, digest);
  if (!view) return notFound("manifest " + digest + " is not cached in " + repository);
  std::string media_type(view->media_type);
  auto manifest = parseManifest(view->bytes, media_type);
  if (!manifest) return manifest.status();
  if (plan.seen.count(digest)) return media_type;

  std::vector<std::pair<std::string, std::string>> manifests{{digest, std::string(view->bytes)}};
  std::vector<std::pair<cache::Digest, uint64_t>> blobs;
  for (const Descriptor& blob : requiredBlobs(*manifest)) {
    auto parsed = cache::Digest::parse(blob.digest);
    auto file = parsed ? store.openBlob(*parsed) : Result<cache::OpenFile>(parsed.status());
    if (!file) return notFound("blob " + blob.digest + " of " + digest + " is not in the store");
    if (file->size() != blob.size) {
      return corrupt("blob " + blob.digest + " is " + std::to_string(file->size()) +
                     " bytes on disk, the manifest says " + std::to_string(blob.size));
    }
    blobs.emplace_back(*parsed, blob.size);
  }
  plan.seen.insert(digest);
  plan.manifests.insert(plan.manifests.end(), manifests.begin(), manifests.end());
  for (auto& [blob, size] : blobs) {
    if (!plan.seen.insert(blob.str()).second) continue;
    plan.blob_bytes += size;
    plan.blobs.emplace_back(blob, size);
  }
  size_t held = 0;
  for (const Descriptor& child : manifest->manifests) {
    auto planned = planManifest(txn, store, repository, child.digest, plan);
    if (planned) {
      ++held;
      continue;
    }
    ++plan.children_left_out;
    std::fprintf(stderr, "export.partial index=%s child=%s reason=\"%s\"\n", digest.c_str(),
                 child.digest.c_str(), planned.status().message().c_str());
  }
  if (manifest->is_index && held == 0 && !manifest->manifests.empty()) {
    return notFound("index " + digest + " has none of its platforms cached");
  }
  return media_type;
}

// Undoes what an image that failed half-way added to the plan.
void rollBack(ExportPlan& plan, size_t manifests, size_t blobs) {
  for (size_t i = manifests; i < plan.manifests.size(); ++i) {
    plan.seen.erase(plan.manifests[i].first);
  }
  for (size_t i = blobs; i < plan.blobs.size(); ++i) {
    plan.seen.erase(plan.blobs[i].first.str());
    plan.blob_bytes -= plan.blobs[i].second;
  }
  plan.manifests.erase(plan.manifests.begin() + static_cast<ptrdiff_t>(manifests),
                       plan.manifests.end());
  plan.blobs.erase(plan.blobs.begin() + static_cast<ptrdiff_t>(blobs), plan.blobs.end());
}

// Plans one image; on failure the plan is left as it was.
Status planImage(const cache::ReadTxn& txn, const cache::BlobStore& store,
                 const std::string& repository, const std::string& digest,
                 const std::string& ref_name, ExportPlan& plan) {
  size_t manifests = plan.manifests.size();
  size_t blobs = plan.blobs.size();
  auto media_type = planManifest(txn, store, repository, digest, plan);
  if (!media_type) {
    rollBack(plan, manifests, blobs);
    return media_type.status();
  }
  auto view = txn.manifest(repository, digest);
  plan.images.push_back(LayoutImage{*media_type, digest, view->bytes.size(), ref_name, repository});
  return Status::ok();
}

// The digest a command-line ref names in the cache.
Result<std::string> cachedDigest(const cache::ReadTxn& txn, const ImageRef& ref) {
  if (ref.reference.isDigest()) return ref.reference.digest->str();
  auto tag = txn.tag(ref.repository.key, ref.reference.tag);
  if (!tag) return notFound("tag " + ref.reference.tag + " is not cached in " + ref.repository.key);
  return std::string(tag->digest);
}

// (repository, tag) of every cached tag set at or after `since` (0: all).
std::vector<std::pair<std::string, std::string>> cachedTags(const cache::ReadTxn& txn,
                                                            int64_t since) {
  constexpr size_t kPage = 1000;
  std::vector<std::pair<std::string, std::string>> out;
  std::string last_repo;
  while (true) {
    auto repos = txn.repositories(last_repo, kPage);
    for (const std::string& repo : repos) {
      std::string last_tag;
      while (true) {
        auto tags = txn.tags(repo, last_tag, kPage);
        for (const std::string& tag : tags) {
          auto view = txn.tag(repo, tag);
          if (view && view->updated >= since) out.emplace_back(repo, tag);
        }
        if (tags.size() < kPage) break;
        last_tag = tags.back();
      }
    }
    if (repos.size() < kPage) break;
    last_repo = repos.back();
  }
  return out;
}

// Plans every image asked for; prints each one that cannot be exported. Returns how many failed.
size_t planExport(const Config& config, const DataDir& dir, const ExportArgs& args,
                  ExportPlan& plan) {
  auto txn = dir.index->read();
  if (!txn) {
    std::fprintf(stderr, "regcache: index: %s\n", txn.status().message().c_str());
    return 1;
  }
  size_t failed = 0;
  auto fail = [&failed](const std::string& ref, const Status& status) {
    std::fprintf(stderr, "export.failed ref=%s error=\"%s\"\n", ref.c_str(),
                 status.message().c_str());
    ++failed;
  };
  std::set<std::string> names;
  for (const std::string& text : args.refs) {
    auto ref = parseImageRef(config, text);
    auto digest = ref ? cachedDigest(*txn, *ref) : Result<std::string>(ref.status());
    if (!digest) {
      fail(text, digest.status());
      continue;
    }
    if (!names.insert(ref->str()).second) continue;
    if (Status s = planImage(*txn, *dir.store, ref->repository.key, *digest, ref->str(), plan);
        !s) {
      fail(text, s);
    }
  }
  if (args.all || args.since) {
    int64_t since = args.since ? static_cast<int64_t>(std::time(nullptr)) - args.since->count() : 0;
    for (const auto& [repo, tag] : cachedTags(*txn, since)) {
      std::string ref_name = repo + ":" + tag;
      auto view = txn->tag(repo, tag);
      if (!view || !names.insert(ref_name).second) continue;
      if (Status s = planImage(*txn, *dir.store, repo, std::string(view->digest), ref_name, plan);
          !s) {
        fail(ref_name, s);
      }
    }
  }
  return failed;
}

// ---------------------------------------------------------------------------------------------
// Writing
// ---------------------------------------------------------------------------------------------

Status writeLayout(int fd, const DataDir& dir, const ExportPlan& plan) {
  cache::TarWriter tar(fd, static_cast<int64_t>(std::time(nullptr)));
  if (Status s = tar.addFile(kOciLayoutName, kOciLayoutContent); !s) return s;
  if (Status s = tar.addFile(kLayoutIndexName, layoutIndexJson(plan.images)); !s) return s;
  if (Status s = tar.addDirectory("blobs"); !s) return s;
  std::set<std::string> algorithm_dirs;
  auto addAlgorithmDir = [&](std::string_view algorithm) {
    if (!algorithm_dirs.insert(std::string(algorithm)).second) return Status::ok();
    return tar.addDirectory("blobs/" + std::string(algorithm));
  };
  for (const auto& [digest, bytes] : plan.manifests) {
    auto parsed = cache::Digest::parse(digest);
    if (!parsed) return parsed.status();
    if (Status s = addAlgorithmDir(parsed->algorithmName()); !s) return s;
    if (Status s = tar.addFile(blobEntryName(*parsed), bytes); !s) return s;
  }
  for (const auto& [digest, size] : plan.blobs) {
    if (Status s = addAlgorithmDir(digest.algorithmName()); !s) return s;
    auto file = dir.store->openBlob(digest);
    if (!file) return file.status();
    if (Status s = tar.addFileFrom(blobEntryName(digest), file->fd(), size); !s) return s;
  }
  return tar.finish();
}

// Writes to a temp name beside `output` and renames it into place, so a failed export never
// leaves a file that looks complete. "-" writes to stdout.
Status writeOutput(const std::string& output, const DataDir& dir, const ExportPlan& plan) {
  if (output == "-") return writeLayout(STDOUT_FILENO, dir, plan);
  std::string temp = output + ".tmp-" + std::to_string(::getpid());
  int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return ioError("cannot create " + temp + ": " + std::strerror(errno));
  Status status = writeLayout(fd, dir, plan);
  if (status && ::fsync(fd) != 0) status = ioError("fsync " + temp + ": " + std::strerror(errno));
  if (::close(fd) != 0 && status) status = ioError("close " + temp + ": " + std::strerror(errno));
  if (status && ::rename(temp.c_str(), output.c_str()) != 0) {
    status = ioError("rename to " + output + ": " + std::strerror(errno));
  }
  if (!status) ::unlink(temp.c_str());
  return status;
}

}  // namespace

int exportCommand(const std::vector<std::string>& argv) {
  CommonOptions common;
  std::vector<std::string> rest;
  ExportArgs args;
  if (!parseCommonOptions(argv, common, rest) || !parseExportArgs(rest, args)) return kExitUsage;
  auto config = loadCommandConfig(common);
  if (!config) return kExitUsage;
  auto dir = openDataDir(config->data_dir, true);
  if (!dir) return kExitFailed;

  auto start = std::chrono::steady_clock::now();
  ExportPlan plan;
  size_t failed = planExport(*config, *dir, args, plan);
  if (plan.images.empty()) {
    std::fputs("regcache: export: no image to write\n", stderr);
    return kExitFailed;
  }
  if (Status s = writeOutput(args.output, *dir, plan); !s) {
    std::fprintf(stderr, "regcache: export: %s\n", s.message().c_str());
    return kExitFailed;
  }
  for (const LayoutImage& image : plan.images) {
    std::fprintf(stderr, "export.image ref=%s digest=%s\n", image.ref_name.c_str(),
                 image.digest.c_str());
  }
  std::fprintf(stderr,
               "export.done file=%s images=%zu manifests=%zu blobs=%zu bytes=%llu "
               "children_left_out=%zu ms=%lld\n",
               args.output.c_str(), plan.images.size(), plan.manifests.size(), plan.blobs.size(),
               static_cast<unsigned long long>(plan.blob_bytes), plan.children_left_out,
               static_cast<long long>(millisSince(start)));
  return failed > 0 ? kExitFailed : 0;
}

}  // namespace regcache::proxy
