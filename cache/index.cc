// The LMDB index: key layout, the versioned value encoding, and the read and write transactions.
//
// Keys join their parts with '\0', which no repository name, tag or digest may contain, so a
// prefix scan over `repository + '\0'` sees exactly that repository and byte order of keys is
// lexical order of their parts. Values start with a format version byte; the fields after it
// are fixed-width little-endian integers and u32-length-prefixed strings.
#include "cache/index.h"

#include <lmdb.h>
#include <spdlog/spdlog.h>

#include <initializer_list>
#include <system_error>
#include <utility>

namespace regcache::cache {

namespace {

// ---------------------------------------------------------------------------------------------
// Value encoding
// ---------------------------------------------------------------------------------------------

// Bumped when a record's layout changes; a reader meeting an unknown version reports kCorrupt
// rather than guessing.
constexpr uint8_t kFormatVersion = 1;

class Encoder {
 public:
  Encoder() { buf_.push_back(static_cast<char>(kFormatVersion)); }

  Encoder& u32(uint32_t v) { return fixed(v, 4); }
  Encoder& u64(uint64_t v) { return fixed(v, 8); }
  Encoder& i64(int64_t v) { return fixed(static_cast<uint64_t>(v), 8); }
  Encoder& str(std::string_view s) {
    u32(static_cast<uint32_t>(s.size()));
    buf_.append(s);
    return *this;
  }
  const std::string& bytes() const { return buf_; }

 private:
  Encoder& fixed(uint64_t v, int width) {
    for (int i = 0; i < width; ++i) {
      buf_.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
    }
    return *this;
  }
  std::string buf_;
};

// Reads what Encoder wrote. Failures are sticky: after a short read every getter returns zero
// or empty and ok() is false, so callers decode every field and check once.
class Decoder {
 public:
  explicit Decoder(std::string_view data) : data_(data) {
    ok_ = !data_.empty() && static_cast<uint8_t>(data_[0]) == kFormatVersion;
    pos_ = 1;
  }

  uint32_t u32() { return static_cast<uint32_t>(fixed(4)); }
  uint64_t u64() { return fixed(8); }
  int64_t i64() { return static_cast<int64_t>(fixed(8)); }
  std::string_view str() {
    uint32_t len = u32();
    if (!ok_ || data_.size() - pos_ < len) {
      ok_ = false;
      return {};
    }
    std::string_view s = data_.substr(pos_, len);
    pos_ += len;
    return s;
  }
  bool ok() const { return ok_; }

 private:
  uint64_t fixed(size_t width) {
    if (!ok_ || data_.size() - pos_ < width) {
      ok_ = false;
      return 0;
    }
    uint64_t v = 0;
    for (size_t i = 0; i < width; ++i) {
      v |= uint64_t{static_cast<uint8_t>(data_[pos_ + i])} << (8 * i);
    }
    pos_ += width;
    return v;
  }
  std::string_view data_;
  size_t pos_ = 0;
  bool ok_ = false;
};

std::string encodeBlob(const BlobRecord& r) {
  return Encoder().u64(r.size).i64(r.created).u32(r.flags).bytes();
}

Result<BlobRecord> decodeBlob(std::string_view value) {
  Decoder d(value);
  BlobRecord r;
  r.size = d.u64();
  r.created = d.i64();
  r.flags = d.u32();
  if (!d.ok()) {
    return corrupt("index: undecodable blob record");
  }
  return r;
}

// Bytes last: it is the large field, and nothing after it needs its length to be skipped.
std::string encodeManifest(const ManifestRecord& r) {
  return Encoder()
      .i64(r.created)
      .str(r.media_type)
      .str(r.subject)
      .str(r.artifact_type)
      .str(r.bytes)
      .bytes();
}

Result<ManifestView> decodeManifest(std::string_view value) {
  Decoder d(value);
  ManifestView m;
  m.created = d.i64();
  m.media_type = d.str();
  m.subject = d.str();
  m.artifact_type = d.str();
  m.bytes = d.str();
  if (!d.ok()) {
    return corrupt("index: undecodable manifest record");
  }
  return m;
}

std::string encodeTag(std::string_view digest, int64_t updated, int64_t checked) {
  return Encoder().i64(updated).i64(checked).str(digest).bytes();
}

Result<TagView> decodeTag(std::string_view value) {
  Decoder d(value);
  TagView t;
  t.updated = d.i64();
  t.checked = d.i64();
  t.digest = d.str();
  if (!d.ok()) {
    return corrupt("index: undecodable tag record");
  }
  return t;
}

// The referrer's own digest is the last part of its key, so it is not repeated here.
std::string encodeReferrer(const ReferrerRecord& r) {
  return Encoder()
      .u64(r.size)
      .str(r.media_type)
      .str(r.artifact_type)
      .str(r.annotations_json)
      .bytes();
}

bool decodeReferrer(std::string_view value, ReferrerRecord* r) {
  Decoder d(value);
  r->size = d.u64();
  r->media_type = d.str();
  r->artifact_type = d.str();
  r->annotations_json = d.str();
  return d.ok();
}

std::string encodeUpload(const UploadRecord& r) {
  return Encoder().i64(r.started).str(r.repository).bytes();
}

bool decodeUpload(std::string_view value, UploadRecord* r) {
  Decoder d(value);
  r->started = d.i64();
  r->repository = std::string(d.str());
  return d.ok();
}

// ---------------------------------------------------------------------------------------------
// Keys and LMDB plumbing
// ---------------------------------------------------------------------------------------------

std::string joinKey(std::initializer_list<std::string_view> parts) {
  std::string key;
  bool first = true;
  for (std::string_view part : parts) {
    if (!first) {
      key.push_back('\0');
    }
    key.append(part);
    first = false;
  }
  return key;
}

// Writes refuse parts that would make keys ambiguous.
Status checkKeyParts(std::initializer_list<std::string_view> parts) {
  for (std::string_view part : parts) {
    if (part.empty() || part.find('\0') != std::string_view::npos) {
      return invalidArgument("index: empty key part or one containing NUL");
    }
  }
  return Status::ok();
}

MDB_val toVal(std::string_view s) { return MDB_val{s.size(), const_cast<char*>(s.data())}; }

std::string_view toView(const MDB_val& v) {
  return std::string_view(static_cast<const char*>(v.mv_data), v.mv_size);
}

Status mdbError(int rc, std::string_view what) {
  std::string message = "index: " + std::string(what) + ": " + mdb_strerror(rc);
  if (rc == MDB_NOTFOUND) {
    return notFound(std::move(message));
  }
  if (rc == MDB_BAD_VALSIZE) {
    return invalidArgument(std::move(message));
  }
  return ioError(std::move(message));
}

Status finishedTxn() { return Status(Code::kInternal, "index: transaction already finished"); }

Result<std::string_view> getValue(MDB_txn* txn, MDB_dbi dbi, std::string_view key) {
  if (txn == nullptr) {
    return finishedTxn();
  }
  MDB_val k = toVal(key);
  MDB_val v;
  int rc = mdb_get(txn, dbi, &k, &v);
  if (rc != 0) {
    return mdbError(rc, "get");
  }
  return toView(v);
}

Status putValue(MDB_txn* txn, MDB_dbi dbi, std::string_view key, std::string_view value) {
  if (txn == nullptr) {
    return finishedTxn();
  }
  MDB_val k = toVal(key);
  MDB_val v = toVal(value);
  int rc = mdb_put(txn, dbi, &k, &v, 0);
  return rc == 0 ? Status::ok() : mdbError(rc, "put");
}

// kNotFound when the key was absent.
Status deleteKey(MDB_txn* txn, MDB_dbi dbi, std::string_view key) {
  if (txn == nullptr) {
    return finishedTxn();
  }
  MDB_val k = toVal(key);
  int rc = mdb_del(txn, dbi, &k, nullptr);
  return rc == 0 ? Status::ok() : mdbError(rc, "del");
}

class Cursor {
 public:
  Cursor(MDB_txn* txn, MDB_dbi dbi) {
    if (txn != nullptr && mdb_cursor_open(txn, dbi, &cursor_) != 0) {
      cursor_ = nullptr;
    }
  }
  ~Cursor() {
    if (cursor_ != nullptr) {
      mdb_cursor_close(cursor_);
    }
  }
  Cursor(const Cursor&) = delete;
  Cursor& operator=(const Cursor&) = delete;

  // Positions at the first key >= `key`; 0, MDB_NOTFOUND or an error code.
  int seek(std::string_view key) {
    if (cursor_ == nullptr) {
      return EINVAL;
    }
    key_ = toVal(key);
    // LMDB rejects an empty key for MDB_SET_RANGE; the first key is what it would mean.
    return mdb_cursor_get(cursor_, &key_, &value_, key.empty() ? MDB_FIRST : MDB_SET_RANGE);
  }
  int next() { return mdb_cursor_get(cursor_, &key_, &value_, MDB_NEXT); }
  std::string_view key() const { return toView(key_); }
  std::string_view value() const { return toView(value_); }

 private:
  MDB_cursor* cursor_ = nullptr;
  MDB_val key_{};
  MDB_val value_{};
};

void logScanError(int rc) {
  if (rc != 0 && rc != MDB_NOTFOUND) {
    spdlog::error("index.scan_failed error=\"{}\"", mdb_strerror(rc));
  }
}

// Calls visit(key, value) for entries at or after `from` whose keys start with `prefix`, in key
// order, while visit returns true. A listing cut short by a disk error is logged and returned as
// far as it got: the callers return plain lists.
template <typename Visit>
void scan(MDB_txn* txn, MDB_dbi dbi, std::string_view from, std::string_view prefix,
          Visit&& visit) {
  Cursor cursor(txn, dbi);
  int rc = cursor.seek(from);
  for (; rc == 0; rc = cursor.next()) {
    if (!cursor.key().starts_with(prefix) || !visit(cursor.key(), cursor.value())) {
      return;
    }
  }
  logScanError(rc);
}

// The whole-index walk behind the forEach* methods: like scan() over a whole database, except
// that a cursor error comes back as kIo instead of a silently short list.
template <typename Visit>
Status walk(MDB_txn* txn, MDB_dbi dbi, Visit&& visit) {
  if (txn == nullptr) {
    return finishedTxn();
  }
  Cursor cursor(txn, dbi);
  int rc = cursor.seek("");
  for (; rc == 0; rc = cursor.next()) {
    if (!visit(cursor.key(), cursor.value())) {
      return Status::ok();
    }
  }
  return rc == MDB_NOTFOUND ? Status::ok() : mdbError(rc, "walk");
}

// Splits a two-part key at its first '\0' (no part may contain one).
std::pair<std::string_view, std::string_view> splitKey(std::string_view key) {
  size_t nul = key.find('\0');
  if (nul == std::string_view::npos) {
    return {key, {}};
  }
  return {key.substr(0, nul), key.substr(nul + 1)};
}

// ---------------------------------------------------------------------------------------------
// Reads shared by ReadTxn and WriteTxn
// ---------------------------------------------------------------------------------------------

Result<BlobRecord> readBlob(MDB_txn* txn, const Index::Dbs& dbs, std::string_view digest) {
  Result<std::string_view> value = getValue(txn, dbs.blobs, digest);
  if (!value) {
    return value.status();
  }
  return decodeBlob(*value);
}

bool readIsLinked(MDB_txn* txn, const Index::Dbs& dbs, std::string_view repository,
                  std::string_view digest) {
  return getValue(txn, dbs.links, joinKey({repository, digest})).isOk();
}

Result<ManifestView> readManifest(MDB_txn* txn, const Index::Dbs& dbs, std::string_view repository,
                                  std::string_view digest) {
  Result<std::string_view> value = getValue(txn, dbs.manifests, joinKey({repository, digest}));
  if (!value) {
    return value.status();
  }
  return decodeManifest(*value);
}

Result<TagView> readTag(MDB_txn* txn, const Index::Dbs& dbs, std::string_view repository,
                        std::string_view tag) {
  Result<std::string_view> value = getValue(txn, dbs.tags, joinKey({repository, tag}));
  if (!value) {
    return value.status();
  }
  return decodeTag(*value);
}

Result<UploadRecord> readUpload(MDB_txn* txn, const Index::Dbs& dbs, std::string_view uuid) {
  Result<std::string_view> value = getValue(txn, dbs.uploads, uuid);
  if (!value) {
    return value.status();
  }
  UploadRecord record;
  if (!decodeUpload(*value, &record)) {
    return corrupt("index: undecodable upload record");
  }
  return record;
}

Status walkBlobs(MDB_txn* txn, const Index::Dbs& dbs, const BlobVisitor& visit) {
  return walk(txn, dbs.blobs, [&](std::string_view key, std::string_view value) {
    return visit(key, decodeBlob(value));
  });
}

Status walkLinks(MDB_txn* txn, const Index::Dbs& dbs, const LinkVisitor& visit) {
  return walk(txn, dbs.links, [&](std::string_view key, std::string_view) {
    auto [repository, digest] = splitKey(key);
    return visit(repository, digest);
  });
}

Status walkManifests(MDB_txn* txn, const Index::Dbs& dbs, const ManifestVisitor& visit) {
  return walk(txn, dbs.manifests, [&](std::string_view key, std::string_view value) {
    auto [repository, digest] = splitKey(key);
    return visit(repository, digest, decodeManifest(value));
  });
}

Status walkTags(MDB_txn* txn, const Index::Dbs& dbs, const TagVisitor& visit) {
  return walk(txn, dbs.tags, [&](std::string_view key, std::string_view value) {
    auto [repository, tag] = splitKey(key);
    return visit(repository, tag, decodeTag(value));
  });
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// ReadTxn
// ---------------------------------------------------------------------------------------------

ReadTxn::~ReadTxn() {
  if (txn_ != nullptr) {
    index_->recycle(txn_);
  }
}

ReadTxn::ReadTxn(ReadTxn&& other) noexcept
    : index_(other.index_), txn_(std::exchange(other.txn_, nullptr)) {}

Result<BlobRecord> ReadTxn::blob(std::string_view digest) const {
  return readBlob(txn_, index_->dbs(), digest);
}

bool ReadTxn::isLinked(std::string_view repository, std::string_view digest) const {
  return readIsLinked(txn_, index_->dbs(), repository, digest);
}

Result<ManifestView> ReadTxn::manifest(std::string_view repository, std::string_view digest) const {
  return readManifest(txn_, index_->dbs(), repository, digest);
}

Result<TagView> ReadTxn::tag(std::string_view repository, std::string_view tag) const {
  return readTag(txn_, index_->dbs(), repository, tag);
}

std::vector<std::string> ReadTxn::tags(std::string_view repository, std::string_view last,
                                       size_t limit) const {
  std::vector<std::string> out;
  if (limit == 0) {
    return out;
  }
  std::string prefix = joinKey({repository, ""});
  // prefix + last + '\0' is the smallest key strictly after prefix + last.
  std::string from = last.empty() ? prefix : prefix + std::string(last) + '\0';
  scan(txn_, index_->dbs().tags, from, prefix, [&](std::string_view key, std::string_view) {
    out.emplace_back(key.substr(prefix.size()));
    return out.size() < limit;
  });
  return out;
}

bool ReadTxn::hasRepository(std::string_view repository) const {
  std::string prefix = joinKey({repository, ""});
  Cursor cursor(txn_, index_->dbs().manifests);
  return cursor.seek(prefix) == 0 && cursor.key().starts_with(prefix);
}

// Manifests are keyed repository + '\0' + digest, so each repository is a run of keys. Rather
// than walk every manifest, this seeks once per repository to repository + '\x01', the smallest
// key past the whole run: listing costs O(repositories * log(manifests)).
std::vector<std::string> ReadTxn::repositories(std::string_view last, size_t limit) const {
  std::vector<std::string> out;
  if (limit == 0) {
    return out;
  }
  Cursor cursor(txn_, index_->dbs().manifests);
  std::string from = last.empty() ? std::string() : std::string(last) + '\x01';
  int rc = cursor.seek(from);
  while (rc == 0) {
    std::string_view key = cursor.key();
    out.emplace_back(key.substr(0, key.find('\0')));
    if (out.size() >= limit) {
      return out;
    }
    from = out.back() + '\x01';
    rc = cursor.seek(from);
  }
  logScanError(rc);
  return out;
}

std::vector<ReferrerRecord> ReadTxn::referrers(std::string_view repository,
                                               std::string_view subject) const {
  std::vector<ReferrerRecord> out;
  std::string prefix = joinKey({repository, subject, ""});
  scan(txn_, index_->dbs().referrers, prefix, prefix,
       [&](std::string_view key, std::string_view value) {
         ReferrerRecord record;
         if (decodeReferrer(value, &record)) {
           record.digest = std::string(key.substr(prefix.size()));
           out.push_back(std::move(record));
         }
         return true;
       });
  return out;
}

Result<UploadRecord> ReadTxn::upload(std::string_view uuid) const {
  return readUpload(txn_, index_->dbs(), uuid);
}

Result<int64_t> ReadTxn::access(std::string_view repository, std::string_view digest) const {
  Result<std::string_view> value =
      getValue(txn_, index_->dbs().access, joinKey({repository, digest}));
  if (!value) {
    return value.status();
  }
  Decoder d(*value);
  int64_t when = d.i64();
  if (!d.ok()) {
    return corrupt("index: undecodable access time");
  }
  return when;
}

std::vector<std::pair<std::string, UploadRecord>> ReadTxn::uploads() const {
  std::vector<std::pair<std::string, UploadRecord>> out;
  scan(txn_, index_->dbs().uploads, "", "", [&](std::string_view key, std::string_view value) {
    UploadRecord record;
    if (decodeUpload(value, &record)) {
      out.emplace_back(std::string(key), std::move(record));
    }
    return true;
  });
  return out;
}

Status ReadTxn::forEachBlob(const BlobVisitor& visit) const {
  return walkBlobs(txn_, index_->dbs(), visit);
}

Status ReadTxn::forEachLink(const LinkVisitor& visit) const {
  return walkLinks(txn_, index_->dbs(), visit);
}

Status ReadTxn::forEachManifest(const ManifestVisitor& visit) const {
  return walkManifests(txn_, index_->dbs(), visit);
}

Status ReadTxn::forEachTag(const TagVisitor& visit) const {
  return walkTags(txn_, index_->dbs(), visit);
}

// ---------------------------------------------------------------------------------------------
// WriteTxn
// ---------------------------------------------------------------------------------------------

WriteTxn::~WriteTxn() {
  if (txn_ != nullptr) {
    mdb_txn_abort(txn_);
  }
}

WriteTxn::WriteTxn(WriteTxn&& other) noexcept
    : index_(other.index_), txn_(std::exchange(other.txn_, nullptr)) {}

Result<BlobRecord> WriteTxn::blob(std::string_view digest) const {
  return readBlob(txn_, index_->dbs(), digest);
}

bool WriteTxn::isLinked(std::string_view repository, std::string_view digest) const {
  return readIsLinked(txn_, index_->dbs(), repository, digest);
}

Result<TagView> WriteTxn::tag(std::string_view repository, std::string_view tag) const {
  return readTag(txn_, index_->dbs(), repository, tag);
}

Result<ManifestView> WriteTxn::manifest(std::string_view repository,
                                        std::string_view digest) const {
  return readManifest(txn_, index_->dbs(), repository, digest);
}

Status WriteTxn::forEachLink(const LinkVisitor& visit) const {
  return walkLinks(txn_, index_->dbs(), visit);
}

Status WriteTxn::forEachManifest(const ManifestVisitor& visit) const {
  return walkManifests(txn_, index_->dbs(), visit);
}

Status WriteTxn::putBlob(std::string_view digest, const BlobRecord& record) {
  if (Status s = checkKeyParts({digest}); !s) {
    return s;
  }
  BlobRecord merged = record;
  Result<BlobRecord> old = blob(digest);
  if (old) {
    merged.flags |= old->flags;
  } else if (old.status().code() == Code::kIo || old.status().code() == Code::kInternal) {
    return old.status();
  }
  // An undecodable old record is simply replaced.
  return putValue(txn_, index_->dbs().blobs, digest, encodeBlob(merged));
}

Status WriteTxn::deleteBlob(std::string_view digest) {
  return deleteKey(txn_, index_->dbs().blobs, digest);
}

// Repositories are collected first and unlinked after: deleting under a live cursor would move
// it.
Result<size_t> WriteTxn::deleteBlobAndLinks(std::string_view digest) {
  std::vector<std::string> repositories;
  Status s = walkLinks(txn_, index_->dbs(), [&](std::string_view repository, std::string_view d) {
    if (d == digest) {
      repositories.emplace_back(repository);
    }
    return true;
  });
  if (!s) {
    return s;
  }
  for (const std::string& repository : repositories) {
    if (s = unlink(repository, digest); !s) {
      return s;
    }
  }
  s = deleteBlob(digest);
  if (!s && s.code() != Code::kNotFound) {
    return s;
  }
  return repositories.size();
}

Status WriteTxn::link(std::string_view repository, std::string_view digest) {
  if (Status s = checkKeyParts({repository, digest}); !s) {
    return s;
  }
  // A link carries no data beyond its key; the version byte keeps the door open.
  return putValue(txn_, index_->dbs().links, joinKey({repository, digest}), Encoder().bytes());
}

Status WriteTxn::unlink(std::string_view repository, std::string_view digest) {
  return deleteKey(txn_, index_->dbs().links, joinKey({repository, digest}));
}

Status WriteTxn::putManifest(std::string_view repository, std::string_view digest,
                             const ManifestRecord& record, const ReferrerRecord* referrer) {
  if (Status s = checkKeyParts({repository, digest}); !s) {
    return s;
  }
  Status s = putValue(txn_, index_->dbs().manifests, joinKey({repository, digest}),
                      encodeManifest(record));
  if (!s || referrer == nullptr || record.subject.empty()) {
    return s;
  }

  // The entry is keyed by `digest`; referrer->digest is not consulted.
  return putValue(txn_, index_->dbs().referrers, joinKey({repository, record.subject, digest}),
                  encodeReferrer(*referrer));
}

// Tags are found by scanning the repository's tags: there is no reverse index from digest to
// tag, since a repository has few tags next to the cost of keeping one in step on every putTag.
Status WriteTxn::deleteManifest(std::string_view repository, std::string_view digest) {
  Result<ManifestView> old = manifest(repository, digest);
  if (!old) {
    return old.status();
  }
  // Copied now: the view dies with the first write below.
  std::string subject(old->subject);

  std::vector<std::string> doomed_tags;
  std::string prefix = joinKey({repository, ""});
  scan(txn_, index_->dbs().tags, prefix, prefix, [&](std::string_view key, std::string_view value) {
    Result<TagView> tag = decodeTag(value);
    if (tag && tag->digest == digest) {
      doomed_tags.emplace_back(key);
    }
    return true;
  });
  for (const std::string& key : doomed_tags) {
    if (Status s = deleteKey(txn_, index_->dbs().tags, key); !s) {
      return s;
    }
  }

  if (!subject.empty()) {
    Status s = deleteKey(txn_, index_->dbs().referrers, joinKey({repository, subject, digest}));
    if (!s && s.code() != Code::kNotFound) {
      return s;
    }
  }
  return deleteKey(txn_, index_->dbs().manifests, joinKey({repository, digest}));
}

Status WriteTxn::putTag(std::string_view repository, std::string_view tag, std::string_view digest,
                        int64_t updated, int64_t checked) {
  if (Status s = checkKeyParts({repository, tag, digest}); !s) {
    return s;
  }
  return putValue(txn_, index_->dbs().tags, joinKey({repository, tag}),
                  encodeTag(digest, updated, checked));
}

Status WriteTxn::deleteTag(std::string_view repository, std::string_view tag) {
  return deleteKey(txn_, index_->dbs().tags, joinKey({repository, tag}));
}

Result<UploadRecord> WriteTxn::upload(std::string_view uuid) const {
  return readUpload(txn_, index_->dbs(), uuid);
}

Status WriteTxn::putAccess(std::string_view repository, std::string_view digest, int64_t when) {
  return putValue(txn_, index_->dbs().access, joinKey({repository, digest}),
                  Encoder().i64(when).bytes());
}

Status WriteTxn::deleteAccess(std::string_view repository, std::string_view digest) {
  return deleteKey(txn_, index_->dbs().access, joinKey({repository, digest}));
}

Status WriteTxn::putUpload(std::string_view uuid, const UploadRecord& record) {
  if (Status s = checkKeyParts({uuid}); !s) {
    return s;
  }
  return putValue(txn_, index_->dbs().uploads, uuid, encodeUpload(record));
}

Status WriteTxn::deleteUpload(std::string_view uuid) {
  return deleteKey(txn_, index_->dbs().uploads, uuid);
}

Status WriteTxn::commit() {
  if (txn_ == nullptr) {
    return finishedTxn();
  }
  // LMDB frees the transaction whether or not the commit succeeds.
  int rc = mdb_txn_commit(std::exchange(txn_, nullptr));
  return rc == 0 ? Status::ok() : mdbError(rc, "commit");
}

// ---------------------------------------------------------------------------------------------
// Index
// ---------------------------------------------------------------------------------------------

namespace {

constexpr unsigned kDbCount = 7;
// Every ReadTxn holds a slot (MDB_NOTLS ties slots to transactions, not threads), and other
// processes (gc, fsck, du) share the table; LMDB's default of 126 is tight.
constexpr unsigned kMaxReaders = 512;
// Reset read transactions kept for reuse (each holds a reader slot): enough for the loops,
// the blocking pool and a walk or two at once.
constexpr size_t kSpareReadTxns = 16;

Status openDbs(MDB_env* env, Index::Dbs* dbs) {
  MDB_txn* txn = nullptr;
  int rc = mdb_txn_begin(env, nullptr, 0, &txn);
  if (rc != 0) {
    return mdbError(rc, "begin");
  }
  std::pair<const char*, unsigned*> named[] = {
      {"blobs", &dbs->blobs},   {"links", &dbs->links},         {"manifests", &dbs->manifests},
      {"tags", &dbs->tags},     {"referrers", &dbs->referrers}, {"uploads", &dbs->uploads},
      {"access", &dbs->access},
  };
  for (auto& [name, dbi] : named) {
    MDB_dbi handle = 0;
    rc = mdb_dbi_open(txn, name, MDB_CREATE, &handle);
    if (rc != 0) {
      mdb_txn_abort(txn);
      return mdbError(rc, std::string("open db ") + name);
    }
    *dbi = handle;
  }
  rc = mdb_txn_commit(txn);
  return rc == 0 ? Status::ok() : mdbError(rc, "commit db handles");
}

Status configureEnv(MDB_env* env, const Index::Options& options) {
  int rc = mdb_env_set_maxdbs(env, kDbCount);
  if (rc == 0) {
    rc = mdb_env_set_mapsize(env, options.map_size);
  }
  if (rc == 0) {
    rc = mdb_env_set_maxreaders(env, kMaxReaders);
  }
  return rc == 0 ? Status::ok() : mdbError(rc, "configure env");
}

}  // namespace

Result<std::unique_ptr<Index>> Index::open(const std::filesystem::path& dir, Options options) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) {
    return ioError("index: create " + dir.string() + ": " + ec.message());
  }

  std::unique_ptr<Index> index(new Index());
  int rc = mdb_env_create(&index->env_);
  if (rc != 0) {
    index->env_ = nullptr;
    return mdbError(rc, "create env");
  }
  if (Status s = configureEnv(index->env_, options); !s) {
    return s;
  }
  rc = mdb_env_open(index->env_, dir.c_str(), MDB_NOTLS, 0640);
  if (rc != 0) {
    return mdbError(rc, "open " + dir.string());
  }

  // A process that died inside a read transaction leaves its slot pinning old pages.
  int cleared = 0;
  mdb_reader_check(index->env_, &cleared);
  if (cleared > 0) {
    spdlog::warn("index.stale_readers cleared={} dir={}", cleared, dir.string());
  }

  if (Status s = openDbs(index->env_, &index->dbs_); !s) {
    return s;
  }
  return index;
}

Index::~Index() {
  for (MDB_txn* txn : spare_) {
    mdb_txn_abort(txn);
  }
  if (env_ != nullptr) {
    mdb_env_close(env_);
  }
}

Result<ReadTxn> Index::read() const {
  MDB_txn* txn = nullptr;
  {
    std::lock_guard lock(spare_mu_);
    if (!spare_.empty()) {
      txn = spare_.back();
      spare_.pop_back();
    }
  }
  if (txn != nullptr) {
    if (mdb_txn_renew(txn) == 0) {
      return ReadTxn(this, txn);
    }
    mdb_txn_abort(txn);  // begin afresh below
  }
  int rc = mdb_txn_begin(env_, nullptr, MDB_RDONLY, &txn);
  if (rc != 0) {
    return mdbError(rc, "begin read");
  }
  return ReadTxn(this, txn);
}

void Index::recycle(MDB_txn* txn) const {
  mdb_txn_reset(txn);  // drops the snapshot now, so old pages are not held while it waits
  {
    std::lock_guard lock(spare_mu_);
    if (spare_.size() < kSpareReadTxns) {
      spare_.push_back(txn);
      return;
    }
  }
  mdb_txn_abort(txn);
}

Result<WriteTxn> Index::write() const {
  MDB_txn* txn = nullptr;
  int rc = mdb_txn_begin(env_, nullptr, 0, &txn);
  if (rc != 0) {
    return mdbError(rc, "begin write");
  }
  return WriteTxn(this, txn);
}

}  // namespace regcache::cache
