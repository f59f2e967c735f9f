// Blob endpoints: GET/HEAD/DELETE of blobs, and the upload protocol (POST, PATCH, PUT, GET,
// DELETE on uploads, single-request POST and cross-repository mount).
#include <spdlog/spdlog.h>

#include "proxy/errors.h"
#include "proxy/range.h"
#include "proxy/registry.h"

namespace regcache::proxy {

namespace {

std::string blobLocation(const Route& route, const cache::Digest& digest) {
  return "/v2/" + route.name + "/blobs/" + digest.str();
}

std::string uploadLocation(const Route& route, std::string_view uuid) {
  return "/v2/" + route.name + "/blobs/uploads/" + std::string(uuid);
}

// The spec's "Range: 0-<end of range>" for an upload holding `size` bytes.
std::string uploadRange(uint64_t size) { return "0-" + std::to_string(size == 0 ? 0 : size - 1); }

http::Response uploadAccepted(int status, const Route& route, std::string_view uuid,
                              uint64_t size) {
  http::Response response;
  response.status = status;
  response.headers.add("Location", uploadLocation(route, uuid));
  response.headers.add("Range", uploadRange(size));
  response.headers.add("Docker-Upload-UUID", std::string(uuid));
  return response;
}

http::Response blobCreated(const Route& route, const cache::Digest& digest) {
  http::Response response;
  response.status = 201;
  response.headers.add("Location", blobLocation(route, digest));
  response.headers.add("Docker-Content-Digest", digest.str());
  return response;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// The body of PATCH, PUT and single-request POST: streamed into an upload.

// Appends the request body to an acquired upload. On the end of the body, either answers 202
// (PATCH) or verifies `digest` and commits the blob (PUT, POST with digest). Releases the
// upload whatever happens.
class UploadBodyHandler : public http::Handler {
 public:
  UploadBodyHandler(Registry& registry, std::shared_ptr<http::Exchange> ex, Route route,
                    std::shared_ptr<Upload> upload, std::optional<cache::Digest> digest)
      : registry_(registry),
        ex_(std::move(ex)),
        route_(std::move(route)),
        upload_(std::move(upload)),
        digest_(std::move(digest)) {}

  ~UploadBodyHandler() override {
    if (upload_) registry_.uploads_.release(upload_);
  }

  bool onBody(std::string_view data) override {
    uint64_t limit = registry_.config_.max_upload_size;
    if (limit != 0 && upload_->size() + data.size() > limit) {
      fail(errorResponse(ErrorCode::kSizeInvalid,
                         "upload exceeds max_upload_size of " + std::to_string(limit) + " bytes",
                         413));
      return false;
    }
    Status status = upload_->append(data);
    if (!status) {
      spdlog::error("upload.write uuid={} error=\"{}\"", upload_->uuid(), status.message());
      fail(errorFromStatus(status, ErrorCode::kBlobUploadUnknown, ErrorCode::kBlobUploadInvalid));
      return false;
    }
    return true;
  }

  void onEnd() override {
    if (failed_) return;
    if (!digest_) {
      // Released before the 202 goes out: a client may send the next request on another
      // connection the moment it sees the answer.
      http::Response accepted = uploadAccepted(202, route_, upload_->uuid(), upload_->size());
      registry_.uploads_.release(upload_);
      upload_.reset();
      respond(ex_, std::move(accepted));
      return;
    }
    finish();
  }

 private:
  void fail(http::Response response) {
    failed_ = true;
    registry_.uploads_.release(upload_);
    upload_.reset();
    respond(ex_, std::move(response));
  }

  // Verifies the digest (hashing the file on the pool when the running hash is unknown) and
  // commits, then answers 201.
  void finish() {
    std::optional<cache::Digest> running = upload_->runningDigest(digest_->algorithm());
    std::shared_ptr<Upload> upload = std::move(upload_);  // the job owns it from here
    Registry& registry = registry_;
    cache::Digest expected = *digest_;
    std::weak_ptr<http::Exchange> weak = ex_;
    Route route = route_;
    registry.pool_.run(
        ex_->loop(),
        [&registry, upload, running, expected]() -> Result<cache::Digest> {
          cache::Digest actual = running ? *running : cache::Digest(expected);
          if (!running) {
            auto hashed = registry.uploads_.hashFile(*upload, expected.algorithm());
            if (!hashed) return hashed.status();
            actual = *hashed;
          }
          if (actual != expected) {
            return invalidArgument("digest " + expected.str() + " does not match the " +
                                   std::to_string(upload->size()) + " bytes uploaded (" +
                                   actual.str() + ")");
          }
          Status status = registry.uploads_.commit(upload, expected);
          if (!status) return status;
          return actual;
        },
        [&registry, upload, weak, route](Result<cache::Digest> result) {
          registry.uploads_.release(upload);
          auto ex = weak.lock();
          if (!ex) return;
          if (!result) {
            if (result.status().code() != Code::kInvalidArgument) {
              spdlog::error("upload.commit uuid={} error=\"{}\"", upload->uuid(),
                            result.status().message());
            }
            respond(ex, errorFromStatus(result.status(), ErrorCode::kBlobUploadUnknown,
                                        ErrorCode::kDigestInvalid));
            return;
          }
          respond(ex, blobCreated(route, *result));
        });
  }

  Registry& registry_;
  std::shared_ptr<http::Exchange> ex_;
  Route route_;
  std::shared_ptr<Upload> upload_;
  std::optional<cache::Digest> digest_;
  bool failed_ = false;
};

// ---------------------------------------------------------------------------------------------
// Blob GET, HEAD and DELETE

void Registry::getBlob(const ExchangePtr& ex, const Route& route, const Repository& repo) {
  auto digest = cache::Digest::parse(route.reference);
  if (!digest) {
    respond(ex, errorResponse(ErrorCode::kDigestInvalid, digest.status().message()));
    return;
  }
  std::string key = digest->str();
  std::optional<cache::BlobRecord> record;
  {
    auto txn = index_.read();
    if (!txn) {
      respond(ex,
              errorFromStatus(txn.status(), ErrorCode::kBlobUnknown, ErrorCode::kDigestInvalid));
      return;
    }
    auto found = txn->blob(key);
    if (found && txn->isLinked(repo.key, key)) {
      record = *found;
    } else if (found && !repo.isLocal() && (found->flags & cache::kBlobCached)) {
      // Fetched from upstream for another repository: the same bytes, verified. Link it here
      // so the next lookup is a plain hit.
      record = *found;
      linkLater(repo.key, key);
    }
  }
  if (!record && !repo.isLocal() && !config_.offline) {
    pull_.getBlob(ex, route, repo, *digest);
    return;
  }
  if (record && !repo.isLocal()) ex->addLogField("cache=hit");
  if (!record) {
    respond(ex,
            errorResponse(ErrorCode::kBlobUnknown, "blob " + key + " unknown to " + route.name));
    return;
  }

  http::Response response;
  response.headers.add("Content-Type", "application/octet-stream");
  response.headers.add("Docker-Content-Digest", key);
  response.headers.add("Accept-Ranges", "bytes");
  response.headers.add("ETag", "\"" + key + "\"");
  response.headers.add("Cache-Control", "max-age=31536000");
  if (ex->request().isHead()) {
    response.head_length = record->size;
    respond(ex, std::move(response));
    return;
  }

  auto file = store_.openBlob(*digest);
  if (!file) {
    spdlog::error("blob.missing digest={} repository={} error=\"{}\"", key, repo.key,
                  file.status().message());
    respond(ex, errorResponse(ErrorCode::kBlobUnknown, "blob " + key + " is not on disk"));
    return;
  }
  uint64_t size = file->size();
  http::Response::File body{file->release(), 0, size};

  if (const std::string* range_header = ex->request().headers.get("Range")) {
    auto range = parseRange(*range_header, size);
    if (!range && range.status().code() == Code::kConflict) {
      ::close(body.fd);
      http::Response refused =
          errorResponse(ErrorCode::kSizeInvalid, "range not satisfiable: " + *range_header, 416);
      refused.headers.add("Content-Range", "bytes */" + std::to_string(size));
      respond(ex, std::move(refused));
      return;
    }
    if (range && range->has_value()) {
      const ByteRange& r = **range;
      response.status = 206;
      response.headers.add("Content-Range", "bytes " + std::to_string(r.first) + "-" +
                                                std::to_string(r.last) + "/" +
                                                std::to_string(size));
      body.offset = r.first;
      body.length = r.length();
    }
  }
  response.file = body;
  respond(ex, std::move(response));
}

void Registry::linkLater(const std::string& repository, const std::string& digest) {
  const cache::Index& index = index_;
  pool_.submit([&index, repository, digest] {
    auto txn = index.write();
    if (txn && !txn->blob(digest)) return;  // gone since (gc, eviction): nothing to link
    Status status = txn ? txn->link(repository, digest) : txn.status();
    if (status) status = txn->commit();
    if (!status) spdlog::warn("blob.link repository={} error=\"{}\"", repository, status.message());
  });
}

void Registry::deleteBlob(const ExchangePtr& ex, const Route& route, const Repository& repo) {
  auto digest = cache::Digest::parse(route.reference);
  if (!digest) {
    respond(ex, errorResponse(ErrorCode::kDigestInvalid, digest.status().message()));
    return;
  }
  std::weak_ptr<http::Exchange> weak = ex;
  std::string key = repo.key;
  std::string digest_str = digest->str();
  pool_.run(
      ex->loop(),
      [this, key, digest_str]() -> Status {
        auto txn = index_.write();
        if (!txn) return txn.status();
        Status status = txn->unlink(key, digest_str);
        return status ? txn->commit() : status;
      },
      [weak, digest_str](Status status) {
        auto ex = weak.lock();
        if (!ex) return;
        if (!status) {
          respond(ex, errorFromStatus(status, ErrorCode::kBlobUnknown, ErrorCode::kDigestInvalid));
          return;
        }
        http::Response response;
        response.status = 202;
        respond(ex, std::move(response));
      });
}

// ---------------------------------------------------------------------------------------------
// Uploads

std::unique_ptr<http::Handler> Registry::startUpload(const ExchangePtr& ex, const Route& route,
                                                     const Repository& repo) {
  const http::Request& request = ex->request();
  if (auto mount = request.queryParam("mount")) {
    auto digest = cache::Digest::parse(*mount);
    if (!digest) {
      respond(ex, errorResponse(ErrorCode::kDigestInvalid, digest.status().message()));
      return nullptr;
    }
    return mountBlob(ex, route, repo, *digest);
  }

  if (auto digest_param = request.queryParam("digest")) {
    // Single-request upload: the body is the whole blob.
    auto digest = cache::Digest::parse(*digest_param);
    if (!digest) {
      respond(ex, errorResponse(ErrorCode::kDigestInvalid, digest.status().message()));
      return nullptr;
    }
    auto upload = uploads_.createEphemeral(repo.key);
    if (!upload) {
      spdlog::error("upload.create error=\"{}\"", upload.status().message());
      respond(ex, errorFromStatus(upload.status(), ErrorCode::kBlobUploadUnknown,
                                  ErrorCode::kBlobUploadInvalid));
      return nullptr;
    }
    return std::make_unique<UploadBodyHandler>(*this, ex, route, std::move(*upload), *digest);
  }

  return beginUpload(ex, route, repo);
}

std::unique_ptr<http::Handler> Registry::beginUpload(const ExchangePtr& ex, const Route& route,
                                                     const Repository& repo) {
  std::weak_ptr<http::Exchange> weak = ex;
  std::string key = repo.key;
  return whenComplete([this, weak, key, route] {
    auto ex = weak.lock();
    if (!ex) return;
    pool_.run(
        ex->loop(), [this, key] { return uploads_.create(key); },
        [this, weak, route](Result<std::shared_ptr<Upload>> upload) {
          if (upload) uploads_.release(*upload);
          auto ex = weak.lock();
          if (!ex) return;
          if (!upload) {
            spdlog::error("upload.create error=\"{}\"", upload.status().message());
            respond(ex, errorFromStatus(upload.status(), ErrorCode::kBlobUploadUnknown,
                                        ErrorCode::kBlobUploadInvalid));
            return;
          }
          respond(ex, uploadAccepted(202, route, (*upload)->uuid(), 0));
        });
  });
}

std::unique_ptr<http::Handler> Registry::mountBlob(const ExchangePtr& ex, const Route& route,
                                                   const Repository& repo,
                                                   const cache::Digest& digest) {
  const http::Request& request = ex->request();
  std::string key = digest.str();
  bool mountable = false;
  {
    auto txn = index_.read();
    if (txn && txn->blob(key)) {
      if (auto from = request.queryParam("from")) {
        auto source = resolveRepository(config_, *from, "");
        mountable = source && txn->isLinked(source->key, key);
      } else {
        // Without `from` the spec lets us mount any blob we hold.
        mountable = true;
      }
    }
  }
  if (!mountable) {
    // Not mountable: an ordinary upload session, as the spec asks (202).
    return beginUpload(ex, route, repo);
  }

  std::weak_ptr<http::Exchange> weak = ex;
  std::string repo_key = repo.key;
  return whenComplete([this, weak, repo_key, key, route, digest] {
    auto ex = weak.lock();
    if (!ex) return;
    pool_.run(
        ex->loop(),
        [this, repo_key, key]() -> Status {
          auto txn = index_.write();
          if (!txn) return txn.status();
          // Checked again under the writer lock: gc or eviction may have taken it since.
          auto record = txn->blob(key);
          if (!record) return notFound("blob " + key + " is no longer held");
          // Mounted into a local repository, it is pushed content now: never evicted.
          record->flags |= cache::kBlobPushed;
          Status status = txn->putBlob(key, *record);
          if (status) status = txn->link(repo_key, key);
          return status ? txn->commit() : status;
        },
        [weak, route, digest](Status status) {
          auto ex = weak.lock();
          if (!ex) return;
          if (!status) {
            respond(ex,
                    errorFromStatus(status, ErrorCode::kBlobUnknown, ErrorCode::kDigestInvalid));
            return;
          }
          respond(ex, blobCreated(route, digest));
        });
  });
}

std::shared_ptr<Upload> Registry::acquireInStep(const ExchangePtr& ex, const Route& route,
                                                const Repository& repo) {
  auto upload = uploads_.acquire(route.reference, repo.key);
  if (!upload) {
    respond(ex, errorFromStatus(upload.status(), ErrorCode::kBlobUploadUnknown,
                                ErrorCode::kBlobUploadInvalid));
    return nullptr;
  }
  std::shared_ptr<Upload> held = std::move(*upload);
  const std::string* content_range = ex->request().headers.get("Content-Range");
  if (content_range == nullptr) return held;

  auto range = parseContentRange(*content_range);
  if (range && range->first == held->size()) return held;
  uint64_t size = held->size();
  uploads_.release(held);
  http::Response refused =
      errorResponse(ErrorCode::kBlobUploadInvalid,
                    range ? "chunk starts at " + std::to_string(range->first) +
                                " but the upload holds " + std::to_string(size) + " bytes"
                          : "malformed Content-Range: " + *content_range,
                    416);
  refused.headers.add("Location", uploadLocation(route, route.reference));
  refused.headers.add("Range", uploadRange(size));
  refused.headers.add("Docker-Upload-UUID", route.reference);
  respond(ex, std::move(refused));
  return nullptr;
}

std::unique_ptr<http::Handler> Registry::patchUpload(const ExchangePtr& ex, const Route& route,
                                                     const Repository& repo) {
  std::shared_ptr<Upload> held = acquireInStep(ex, route, repo);
  if (!held) return nullptr;
  return std::make_unique<UploadBodyHandler>(*this, ex, route, std::move(held), std::nullopt);
}

std::unique_ptr<http::Handler> Registry::putUpload(const ExchangePtr& ex, const Route& route,
                                                   const Repository& repo) {
  auto digest_param = ex->request().queryParam("digest");
  auto digest = cache::Digest::parse(digest_param.value_or(""));
  if (!digest) {
    respond(ex, errorResponse(ErrorCode::kDigestInvalid,
                              digest_param ? digest.status().message()
                                           : std::string("the closing PUT needs ?digest=")));
    return nullptr;
  }
  std::shared_ptr<Upload> held = acquireInStep(ex, route, repo);
  if (!held) return nullptr;
  return std::make_unique<UploadBodyHandler>(*this, ex, route, std::move(held), *digest);
}

void Registry::getUpload(const ExchangePtr& ex, const Route& route, const Repository& repo) {
  auto size = uploads_.sizeOf(route.reference, repo.key);
  if (!size) {
    respond(ex, errorFromStatus(size.status(), ErrorCode::kBlobUploadUnknown,
                                ErrorCode::kBlobUploadInvalid));
    return;
  }
  respond(ex, uploadAccepted(204, route, route.reference, *size));
}

void Registry::deleteUpload(const ExchangePtr& ex, const Route& route, const Repository& repo) {
  auto upload = uploads_.acquire(route.reference, repo.key);
  if (!upload) {
    respond(ex, errorFromStatus(upload.status(), ErrorCode::kBlobUploadUnknown,
                                ErrorCode::kBlobUploadInvalid));
    return;
  }
  std::weak_ptr<http::Exchange> weak = ex;
  std::shared_ptr<Upload> held = std::move(*upload);
  pool_.run(
      ex->loop(), [this, held] { return uploads_.cancel(held); },
      [weak](Status status) {
        auto ex = weak.lock();
        if (!ex) return;
        if (!status) {
          respond(ex, errorFromStatus(status, ErrorCode::kBlobUploadUnknown,
                                      ErrorCode::kBlobUploadInvalid));
          return;
        }
        http::Response response;
        response.status = 204;
        respond(ex, std::move(response));
      });
}

}  // namespace regcache::proxy
