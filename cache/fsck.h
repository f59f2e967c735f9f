// The store's consistency check: re-hashes every blob and checks the index against the disk
// both ways, and with repair drops what is corrupt or dangling.
//
// Safe while `regcache serve` runs on the same data directory: every finding is confirmed
// against a fresh snapshot before it is reported, and every repair re-checks its condition
// inside the write transaction that makes it.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "cache/blob_store.h"
#include "cache/index.h"
#include "cache/status.h"

namespace regcache::cache {

enum class FsckKind {
  kCorruptBlob,        // a blob file whose bytes do not hash to its name
  kBadRecord,          // a blob record that does not decode
  kMissingFile,        // a blob record without its file
  kSizeMismatch,       // a blob file whose size is not its record's
  kUnindexedBlob,      // a blob file without a record, older than the grace period
  kStrayFile,          // a file under blobs/ whose name and place spell no digest
  kDanglingLink,       // a repository link to a blob without a record
  kCorruptManifest,    // a manifest whose bytes do not hash to its key (or do not decode)
  kDanglingTag,        // a tag naming a manifest its repository does not hold
  kTempFile,           // a file under tmp/ whose writer is gone (a crash mid-fill)
  kOrphanUpload,       // a file under uploads/ without an upload record, past the grace period
  kUploadWithoutFile,  // an upload record whose file is gone
};

// "corrupt-blob", "bad-record", "missing-file", "size-mismatch", "unindexed-blob", "stray-file",
// "dangling-link", "corrupt-manifest", "dangling-tag", "temp-file", "orphan-upload",
// "upload-without-file".
std::string_view fsckKindName(FsckKind kind);

struct FsckProblem {
  FsckKind kind;
  std::string repository;      // links, manifests, tags; else empty
  std::string name;            // the digest, tag or upload id; empty for stray and temp files
  std::filesystem::path path;  // the file concerned, when there is one
  std::string detail;          // e.g. "actual=sha256:..." or "record=10 file=12"
  std::string repair;          // what --repair did, empty when nothing (yet)
};

// One line for a person or a script: the kind first, then what and where, e.g.
// "corrupt-blob sha256:ab.. path=/data/blobs/sha256/ab/ab.. actual=sha256:cd..".
std::string describe(const FsckProblem& problem);

struct FsckOptions {
  bool repair = false;
  // Files without a record (blob files, upload files) count as problems only once their ctime
  // is this old: a commit renames its file first and writes the record a moment later.
  int64_t grace_seconds = 3600;
  int64_t now = 0;  // unix seconds: the clock is a parameter
};

struct FsckReport {
  std::vector<FsckProblem> problems;  // confirmed problems, repaired or not
  size_t blobs_checked = 0;
  uint64_t bytes_checked = 0;
  size_t repaired = 0;  // problems whose repair is done
};

// Checks the store. Blocking and slow (reads every blob once, in constant memory): a command's
// main thread, never an event loop. With options.repair, drops index entries that are
// corrupt or dangling (a corrupt or missing blob loses its record and every link, so the next
// pull refetches it or a client pushes it again; dangling links and tags go; a corrupt
// manifest goes with its tags) and then removes corrupt, unindexed, stray, temp and orphaned
// upload files; a plain check afterwards is clean. Record before file, as gc does.
//
// Errors: kIo/kInternal when the index or a directory cannot be read, or a repair fails
// (repairs done before the failure stay done).
Result<FsckReport> checkStore(const Index& index, const BlobStore& store,
                              const FsckOptions& options);

}  // namespace regcache::cache
