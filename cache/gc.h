// Garbage collection: removes the blobs, temp files and upload files that nothing needs.
//
// Safe while `regcache serve` runs on the same data directory (see collectGarbage below for
// the argument), and offline.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "cache/blob_store.h"
#include "cache/index.h"
#include "cache/status.h"

namespace regcache::cache {

// The blob digests a stored manifest references as config or layers. cache/ does not parse
// manifests (proxy/manifest.h does), so the caller supplies this. An error (bytes that do not
// parse) stops gc: a manifest it cannot read might need any blob.
using ManifestBlobs = std::function<Result<std::vector<std::string>>(std::string_view media_type,
                                                                     std::string_view bytes)>;

struct GcOptions {
  bool dry_run = false;  // list what would go, delete nothing
  // Files without an index record (blob files, upload files) are taken only once their ctime
  // is this old: a commit renames its file first and writes the record a moment later.
  int64_t grace_seconds = 3600;
  int64_t now = 0;  // unix seconds: the clock is a parameter
};

enum class GcKind {
  kBlob,           // a blob record no link or manifest needs, and its file
  kUnindexedBlob,  // a blob file with no record, older than the grace period
  kTemp,           // a file under tmp/ whose writer process is gone
  kUpload,         // a file under uploads/ with no upload record, older than the grace period
};

// "blob", "unindexed-blob", "temp", "upload".
std::string_view gcKindName(GcKind kind);

struct GcItem {
  GcKind kind;
  std::string name;  // the digest (blobs), the upload id, or the file name (temps)
  std::filesystem::path path;
  uint64_t bytes = 0;
};

struct GcReport {
  std::vector<GcItem> items;  // removed, or (dry run) that would be
  size_t blobs = 0;           // items of kind kBlob and kUnindexedBlob
  size_t files = 0;           // items of kind kTemp and kUpload
  uint64_t bytes = 0;         // freed, or (dry run) that would be
  // Candidates that turned out to be needed again when re-checked under the writer lock (a
  // push or a link landed while gc ran): kept, and counted so tests can see the race.
  size_t kept = 0;
};

// Collects garbage in the store at `store` indexed by `index`. Blocking: a command's main
// thread or a pool, never an event loop.
//
// A blob record is needed while any repository links it or any stored manifest (of any
// repository) references it as config or layer. The run:
//  1. marks, in one read snapshot, every needed digest (parsing every manifest: the slow part,
//     done without blocking writers);
//  2. in one write transaction re-walks links and any manifest stored since the snapshot, drops
//     the candidates found needed, deletes the remaining records and commits;
//  3. unlinks their files. Record first, file after: a crash in between leaves an unindexed
//     file for the next run, never a record without its file.
// Then it takes unindexed blob files and upload files past the grace period, and orphaned
// temps. Every unlink of a blob or upload file happens inside a write transaction that has just
// checked that no record for it exists, so no commit can write one in between.
//
// Errors: kIo/kInternal from the index or a directory walk; kCorrupt from a manifest that does
// not parse (nothing is deleted then). A failure after step 2 leaves only unindexed files.
Result<GcReport> collectGarbage(const Index& index, const BlobStore& store,
                                const ManifestBlobs& manifest_blobs, const GcOptions& options);

}  // namespace regcache::cache
