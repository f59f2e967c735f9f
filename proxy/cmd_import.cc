// `regcache import [-c FILE] [--data-dir DIR] FILE`: loads an OCI image layout tar (as export
// writes it) so its images are served under their original names, offline too.
//
// Two passes over different things: the tar is streamed once, each blob entry hashed while it
// is copied into a temp file of the store (nothing is kept in memory but index.json); then
// each image of index.json is checked from its manifests down, and only an image whose every
// part arrived intact is committed: its blobs renamed into the store, then one index write
// transaction for its blob records, links, manifests and tag. So a damaged archive loads
// nothing that failed verification, and still loads the images it carries whole.
//
// Entries the cache already holds are not copied (the body is skipped, by lseek on a file),
// and an image whose records are all present writes nothing: a re-import changes nothing.
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "cache/tar.h"
#include "proxy/airgap.h"
#include "proxy/commands.h"
#include "proxy/image_ref.h"
#include "proxy/oci_layout.h"
#include "proxy/reference.h"

namespace regcache::proxy {

namespace {

int64_t nowSeconds() { return static_cast<int64_t>(std::time(nullptr)); }

// The tar itself is broken (cut short, bad header), as opposed to one entry's content.
bool isArchiveDamage(const Status& status) {
  return status.code() == Code::kCorrupt && status.message().starts_with("tar:");
}

// A blob entry that arrived whole: verified into `temp`, or skipped because the cache already
// holds it (`temp` empty).
struct ArrivedBlob {
  std::string temp;
  uint64_t size = 0;
};

// One image of index.json, resolved to where it goes and what it needs.
struct ImageLoad {
  std::string repository;
  std::string tag;  // empty: loaded by digest only
  uint32_t flag = cache::kBlobCached;
  std::vector<std::pair<std::string, cache::ManifestRecord>> manifests;  // digest, record
  std::map<std::string, uint64_t> blobs;                                 // digest, size
};

class LayoutImport {
 public:
  LayoutImport(const Config& config, const DataDir& dir) : config_(config), dir_(dir) {}
  ~LayoutImport();
  LayoutImport(const LayoutImport&) = delete;
  LayoutImport& operator=(const LayoutImport&) = delete;

  // Streams the archive; entries that fail are recorded, and damage to the tar itself stops
  // the reading (what arrived before it is kept). Returns false when nothing can be loaded.
  bool readArchive(int fd);
  // Checks and commits each image; prints a line per image. Returns how many failed.
  size_t loadImages();

  size_t failedEntries() const { return failed_entries_.size(); }
  uint64_t copiedBlobs() const { return copied_blobs_; }
  uint64_t copiedBytes() const { return copied_bytes_; }

 private:
  Status readEntry(cache::TarReader& tar, const cache::TarEntry& entry);
  Status readSmallFile(cache::TarReader& tar, const cache::TarEntry& entry, std::string& out);
  bool isHeld(const cache::Digest& digest, uint64_t& size) const;
  Status copyVerified(cache::TarReader& tar, const cache::Digest& digest);
  void failEntry(const std::string& name, const std::string& reason);

  Status resolveImage(const LayoutImage& image, ImageLoad& load) const;
  Status planManifest(const std::string& digest, const std::string& media_type, uint64_t size,
                      ImageLoad& load) const;
  Result<std::string> manifestBytes(const std::string& digest, const std::string& repository) const;
  Status checkBlob(const Descriptor& blob) const;
  Result<bool> commitImage(const ImageLoad& load);
  Result<bool> indexImage(const ImageLoad& load) const;

  const Config& config_;
  const DataDir& dir_;
  std::optional<std::vector<LayoutImage>> images_;
  std::set<std::string> repositories_;               // of images_, to find held manifests
  std::map<std::string, ArrivedBlob> arrived_;       // by digest
  std::map<std::string, std::string> failed_blobs_;  // digest -> why its entry failed
  std::vector<std::pair<std::string, std::string>> failed_entries_;  // name, why
  bool layout_seen_ = false;
  uint64_t copied_blobs_ = 0;
  uint64_t copied_bytes_ = 0;
};

LayoutImport::~LayoutImport() {
  for (const auto& [digest, blob] : arrived_) {
    if (!blob.temp.empty()) ::unlink(blob.temp.c_str());
  }
}

void LayoutImport::failEntry(const std::string& name, const std::string& reason) {
  std::fprintf(stderr, "import.entry name=%s error=\"%s\"\n", name.c_str(), reason.c_str());
  failed_entries_.emplace_back(name, reason);
}

// ---------------------------------------------------------------------------------------------
// Reading the archive
// ---------------------------------------------------------------------------------------------

bool LayoutImport::readArchive(int fd) {
  cache::TarReader tar(fd);
  std::string current = "(archive start)";
  while (true) {
    auto entry = tar.next();
    if (!entry) {
      failEntry(current, entry.status().message());
      break;
    }
    if (!entry->has_value()) break;
    current = (*entry)->name;
    if (Status s = readEntry(tar, **entry); !s) {
      failEntry(current, s.message());
      if (isArchiveDamage(s)) break;  // a body cut short ends the archive too
    }
  }
  if (!images_) {
    failEntry("index.json", "missing from the archive: nothing to load");
    return false;
  }
  if (!layout_seen_) std::fputs("import: warning: no oci-layout entry\n", stderr);
  return true;
}

Status LayoutImport::readEntry(cache::TarReader& tar, const cache::TarEntry& entry) {
  if (entry.type != cache::TarEntry::Type::kFile) return Status::ok();
  std::string_view name = entry.name;
  if (name.starts_with("./")) name.remove_prefix(2);
  if (name == kOciLayoutName) {
    std::string content;
    if (Status s = readSmallFile(tar, entry, content); !s) return s;
    layout_seen_ = true;
    return checkOciLayout(content);
  }
  if (name == kLayoutIndexName) {
    std::string content;
    if (Status s = readSmallFile(tar, entry, content); !s) return s;
    auto images = parseLayoutIndex(content);
    if (!images) return images.status();
    for (const LayoutImage& image : *images) repositories_.insert(image.repository);
    images_ = std::move(*images);
    return Status::ok();
  }
  auto digest = digestOfEntryName(name);
  if (!digest) return Status::ok();  // not ours to judge: the spec allows other files
  uint64_t held_size = 0;
  if (arrived_.count(digest->str())) return Status::ok();
  if (isHeld(*digest, held_size)) {
    arrived_[digest->str()] = ArrivedBlob{"", held_size};
    return Status::ok();
  }
  return copyVerified(tar, *digest);
}

Status LayoutImport::readSmallFile(cache::TarReader& tar, const cache::TarEntry& entry,
                                   std::string& out) {
  if (entry.size > kMaxLayoutIndexBytes) {
    return invalidArgument("too large (" + std::to_string(entry.size) + " bytes)");
  }
  out.resize(entry.size);
  size_t got = 0;
  while (got < entry.size) {
    auto n = tar.read(out.data() + got, entry.size - got);
    if (!n) return n.status();
    got += *n;
  }
  return Status::ok();
}

// Held: a blob with its record and file, or a manifest already in the repository of one of the
// archive's images (children live beside their index). Needs index.json first for manifests,
// as export writes it; from other writers a held manifest is copied, then dropped unused.
bool LayoutImport::isHeld(const cache::Digest& digest, uint64_t& size) const {
  auto txn = dir_.index->read();
  if (!txn) return false;
  std::string key = digest.str();
  if (auto record = txn->blob(key); record && dir_.store->hasBlob(digest)) {
    size = record->size;
    return true;
  }
  for (const std::string& repository : repositories_) {
    if (repository.empty()) continue;
    if (auto manifest = txn->manifest(repository, key)) {
      size = manifest->bytes.size();
      return true;
    }
  }
  return false;
}

// Copies the entry's body into a temp file of the store while hashing it; keeps the file only
// when the hash matches the entry's name.
Status LayoutImport::copyVerified(cache::TarReader& tar, const cache::Digest& digest) {
  std::string temp = dir_.store->tempPath();
  int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) return ioError("cannot create " + temp + ": " + std::strerror(errno));
  cache::Hasher hasher(digest.algorithm());
  constexpr size_t kChunk = 1 << 20;
  auto buf = std::make_unique<char[]>(kChunk);
  Status status;
  uint64_t copied = 0;
  while (status) {
    auto n = tar.read(buf.get(), kChunk);
    if (!n) status = n.status();
    if (!status || *n == 0) break;
    hasher.update(buf.get(), *n);
    for (size_t done = 0; done < *n && status;) {
      ssize_t w = ::write(fd, buf.get() + done, *n - done);
      if (w < 0 && errno == EINTR) continue;
      if (w < 0) status = ioError("write " + temp + ": " + std::strerror(errno));
      if (w > 0) done += static_cast<size_t>(w);
    }
    copied += *n;
  }
  ::close(fd);
  cache::Digest actual = hasher.finish();
  if (status && actual != digest) status = corrupt("content hashes to " + actual.str());
  if (!status) {
    ::unlink(temp.c_str());
    failed_blobs_[digest.str()] = status.message();
    return status;
  }
  arrived_[digest.str()] = ArrivedBlob{temp, copied};
  ++copied_blobs_;
  copied_bytes_ += copied;
  return Status::ok();
}

// ---------------------------------------------------------------------------------------------
// Loading the images
// ---------------------------------------------------------------------------------------------

// Where the image goes: its io.regcache.repository annotation, else what its full ref.name
// routes to here. Its tag comes from ref.name.
Status LayoutImport::resolveImage(const LayoutImage& image, ImageLoad& load) const {
  load.repository = image.repository;
  if (load.repository.empty() && !image.ref_name.empty()) {
    auto ref = parseImageRef(config_, image.ref_name);
    if (ref && !image.ref_name.starts_with(ref->repository.key)) ref = notFound("");
    if (ref) load.repository = ref->repository.key;
  }
  if (load.repository.empty()) {
    return invalidArgument("no io.regcache.repository annotation and no full ref.name");
  }
  size_t slash = load.repository.find('/');
  std::string first = load.repository.substr(0, slash);
  bool local = false;
  for (const auto& ns : config_.local_namespaces) local = local || ns == first;
  bool upstream = config_.upstream(first) != nullptr;
  std::string routed = upstream ? load.repository.substr(slash + 1) : load.repository;
  if (slash == std::string::npos || !isValidRepository(routed)) {
    return invalidArgument("bad repository " + load.repository);
  }
  if (!upstream && !local) {
    std::fprintf(stderr, "import: warning: %s is under no configured upstream or namespace\n",
                 load.repository.c_str());
  }
  load.flag = local ? cache::kBlobPushed : cache::kBlobCached;
  std::string prefix = load.repository + ":";
  if (image.ref_name.starts_with(prefix)) load.tag = image.ref_name.substr(prefix.size());
  if (image.ref_name.find('/') == std::string::npos && isValidTag(image.ref_name)) {
    load.tag = image.ref_name;  // a bare tag, as other tools write ref.name
  }
  if (!load.tag.empty() && !isValidTag(load.tag)) return invalidArgument("bad tag " + load.tag);
  return Status::ok();
}

Result<std::string> LayoutImport::manifestBytes(const std::string& digest,
                                                const std::string& repository) const {
  if (auto failed = failed_blobs_.find(digest); failed != failed_blobs_.end()) {
    return corrupt("manifest " + digest + " failed verification: " + failed->second);
  }
  auto arrived = arrived_.find(digest);
  if (arrived == arrived_.end()) return notFound("manifest " + digest + " is not in the archive");
  if (arrived->second.temp.empty()) {
    auto txn = dir_.index->read();
    if (!txn) return txn.status();
    if (auto view = txn->manifest(repository, digest)) return std::string(view->bytes);
    for (const std::string& other : repositories_) {
      if (other.empty()) continue;
      if (auto view = txn->manifest(other, digest)) return std::string(view->bytes);
    }
    return notFound("manifest " + digest + " is neither in the archive nor the cache");
  }
  if (arrived->second.size > kMaxManifestBytes) return corrupt("manifest " + digest + " too large");
  std::string bytes(arrived->second.size, '\0');
  int fd = ::open(arrived->second.temp.c_str(), O_RDONLY | O_CLOEXEC);
  ssize_t n = fd < 0 ? -1 : ::pread(fd, bytes.data(), bytes.size(), 0);
  if (fd >= 0) ::close(fd);
  if (n != static_cast<ssize_t>(bytes.size())) return ioError("cannot read back " + digest);
  return bytes;
}

Status LayoutImport::checkBlob(const Descriptor& blob) const {
  if (auto failed = failed_blobs_.find(blob.digest); failed != failed_blobs_.end()) {
    return corrupt("blob " + blob.digest + " failed verification: " + failed->second);
  }
  auto arrived = arrived_.find(blob.digest);
  if (arrived == arrived_.end()) return notFound("blob " + blob.digest + " is not in the archive");
  if (arrived->second.size != blob.size) {
    return corrupt("blob " + blob.digest + " is " + std::to_string(arrived->second.size) +
                   " bytes, its descriptor says " + std::to_string(blob.size));
  }
  return Status::ok();
}

// Adds a manifest and what it needs to `load`. An index child absent from the archive is left
// out (export writes only the platforms it holds); one that failed verification fails the image.
Status LayoutImport::planManifest(const std::string& digest, const std::string& media_type,
                                  uint64_t size, ImageLoad& load) const {
  for (const auto& [planned, record] : load.manifests) {
    if (planned == digest) return Status::ok();
  }
  auto bytes = manifestBytes(digest, load.repository);
  if (!bytes) return bytes.status();
  if (bytes->size() != size)
    return corrupt("manifest " + digest + " size differs from its descriptor");
  auto manifest = parseManifest(*bytes, media_type);
  if (!manifest) return invalidArgument("manifest " + digest + ": " + manifest.status().message());
  for (const Descriptor& blob : requiredBlobs(*manifest)) {
    if (Status s = checkBlob(blob); !s) return s;
    load.blobs[blob.digest] = blob.size;
  }
  load.manifests.emplace_back(
      digest, cache::ManifestRecord{manifest->media_type, std::move(*bytes),
                                    manifest->subject ? manifest->subject->digest : "",
                                    manifest->artifact_type, nowSeconds()});
  for (const Descriptor& child : manifest->manifests) {
    Status s = planManifest(child.digest, child.media_type, child.size, load);
    if (!s && !(s.code() == Code::kNotFound && !failed_blobs_.count(child.digest))) return s;
  }
  return Status::ok();
}

// Renames the image's new blobs into the store, then indexes everything. Returns whether
// anything was written (false: already held).
Result<bool> LayoutImport::commitImage(const ImageLoad& load) {
  for (const auto& [digest, size] : load.blobs) {
    ArrivedBlob& blob = arrived_[digest];
    if (blob.temp.empty()) continue;
    auto parsed = cache::Digest::parse(digest);
    if (!parsed) return parsed.status();
    if (Status s = dir_.store->commit(blob.temp, *parsed); !s) return s;
    blob.temp.clear();
  }
  return indexImage(load);
}

Result<bool> LayoutImport::indexImage(const ImageLoad& load) const {
  auto txn = dir_.index->write();
  if (!txn) return txn.status();
  bool wrote = false;
  int64_t now = nowSeconds();
  Status status;
  for (const auto& [digest, size] : load.blobs) {
    auto record = txn->blob(digest);
    if (status && (!record || !(record->flags & load.flag))) {
      status =
          txn->putBlob(digest, cache::BlobRecord{size, record ? record->created : now, load.flag});
      wrote = true;
    }
    if (status && !txn->isLinked(load.repository, digest)) {
      status = txn->link(load.repository, digest);
      wrote = true;
    }
  }
  for (const auto& [digest, record] : load.manifests) {
    if (!status || txn->manifest(load.repository, digest)) continue;
    std::optional<cache::ReferrerRecord> referrer;
    if (!record.subject.empty()) {
      auto parsed = parseManifest(record.bytes, record.media_type);
      referrer = cache::ReferrerRecord{digest, record.media_type, record.artifact_type,
                                       record.bytes.size(), parsed ? parsed->annotations_json : ""};
    }
    status = txn->putManifest(load.repository, digest, record, referrer ? &*referrer : nullptr);
    wrote = true;
  }
  const std::string& top = load.manifests.front().first;
  auto tag =
      load.tag.empty() ? Result<cache::TagView>(notFound("")) : txn->tag(load.repository, load.tag);
  if (status && !load.tag.empty() && (!tag || tag->digest != top)) {
    status = txn->putTag(load.repository, load.tag, top, now, now);
    wrote = true;
  }
  if (!status) return status;
  if (!wrote) return false;  // the transaction is dropped unwritten
  if (Status s = txn->commit(); !s) return s;
  return true;
}

size_t LayoutImport::loadImages() {
  size_t failed = 0;
  for (const LayoutImage& image : *images_) {
    ImageLoad load;
    Status status = resolveImage(image, load);
    if (status) status = planManifest(image.digest, image.media_type, image.size, load);
    Result<bool> wrote = status ? commitImage(load) : Result<bool>(status);
    std::string name = image.ref_name.empty() ? image.digest : image.ref_name;
    if (!wrote) {
      ++failed;
      std::fprintf(stderr, "import.image ref=%s digest=%s result=failed error=\"%s\"\n",
                   name.c_str(), image.digest.c_str(), wrote.status().message().c_str());
      continue;
    }
    std::fprintf(stderr, "import.image ref=%s repository=%s digest=%s result=%s\n", name.c_str(),
                 load.repository.c_str(), image.digest.c_str(), *wrote ? "loaded" : "already held");
  }
  return failed;
}

}  // namespace

int importCommand(const std::vector<std::string>& argv) {
  CommonOptions common;
  std::vector<std::string> rest;
  if (!parseCommonOptions(argv, common, rest)) return kExitUsage;
  if (rest.size() != 1 || (rest[0].size() > 1 && rest[0][0] == '-')) {
    std::fputs("regcache: import takes one FILE (- for stdin)\n", stderr);
    return kExitUsage;
  }
  auto config = loadCommandConfig(common);
  if (!config) return kExitUsage;
  int fd = rest[0] == "-" ? STDIN_FILENO : ::open(rest[0].c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    std::fprintf(stderr, "regcache: cannot open %s: %s\n", rest[0].c_str(), std::strerror(errno));
    return kExitFailed;
  }
  auto dir = openDataDir(config->data_dir, false);
  if (!dir) return kExitFailed;

  auto start = std::chrono::steady_clock::now();
  LayoutImport import(*config, *dir);
  bool readable = import.readArchive(fd);
  if (fd != STDIN_FILENO) ::close(fd);
  size_t failed_images = readable ? import.loadImages() : 0;
  std::fprintf(stderr,
               "import.done failed_entries=%zu failed_images=%zu copied_blobs=%llu "
               "copied_bytes=%llu ms=%lld\n",
               import.failedEntries(), failed_images,
               static_cast<unsigned long long>(import.copiedBlobs()),
               static_cast<unsigned long long>(import.copiedBytes()),
               static_cast<long long>(millisSince(start)));
  return readable && failed_images == 0 && import.failedEntries() == 0 ? 0 : kExitFailed;
}

}  // namespace regcache::proxy
