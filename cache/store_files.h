// Walks over the files of the blob store on disk, for the commands that audit it (gc, fsck, du).
//
// The blob store itself (cache/blob_store.h) only serves and commits blobs by digest; these
// functions look at everything that is actually there, including what should not be.
// All of them block on the disk: never call them on an event loop thread.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "cache/blob_store.h"
#include "cache/digest.h"
#include "cache/status.h"

namespace regcache::cache {

// A regular file found in the store.
struct StoreFile {
  std::filesystem::path path;
  uint64_t size = 0;
  // st_ctime, unix seconds. rename() updates it, so a blob committed a moment ago looks new
  // even when its bytes (its mtime) are old: this is the age grace periods are measured by.
  int64_t changed = 0;
};

// Called for each regular file under blobs/. `digest` is the digest the file's name and place
// (blobs/<alg>/<ab>/<hex>) spell, or nullopt when they spell none.
using BlobFileVisitor =
    std::function<void(const std::optional<Digest>& digest, const StoreFile& file)>;

// Visits every regular file under blobs/. Files that vanish during the walk (a concurrent gc
// or eviction) are skipped. kIo when a directory cannot be read.
Status forEachBlobFile(const BlobStore& store, const BlobFileVisitor& visit);

// The files under tmp/ whose writer is no longer running (the pid their name starts with is
// gone; names without one count as orphaned too, as BlobStore::removeOrphanTemps decides).
std::vector<StoreFile> orphanTemps(const BlobStore& store);

// Every regular file under uploads/, as (uuid, file).
std::vector<std::pair<std::string, StoreFile>> uploadFiles(const BlobStore& store);

// Hashes the file at `path` with `algorithm`, streaming it through a fixed 1 MiB buffer.
// kNotFound when the file is gone, kIo on a read error.
Result<Digest> hashFile(const std::filesystem::path& path, DigestAlgorithm algorithm);

// Unlinks `path`. A file already gone is ok (someone else removed it first).
Status removeFile(const std::filesystem::path& path);

// Sum of the sizes of the regular files under `dir`, recursively (0 when it is missing).
uint64_t treeBytes(const std::filesystem::path& dir);

}  // namespace regcache::cache
