// Manifest endpoints: GET/HEAD with Accept negotiation, PUT with validation of everything a
// manifest references, DELETE by digest or tag.
#include <spdlog/spdlog.h>

#include <ctime>

#include "proxy/errors.h"
#include "proxy/manifest.h"
#include "proxy/pull_through.h"
#include "proxy/reference.h"
#include "proxy/registry.h"

namespace regcache::proxy {

namespace {

int64_t nowSeconds() { return static_cast<int64_t>(std::time(nullptr)); }

}  // namespace

// A header that names no manifest type at all (or a wildcard) accepts anything: only a client
// that lists manifest types and leaves this one out is refused.
bool acceptsMediaType(const http::Request& request, std::string_view media_type) {
  bool lists_manifest_types = false;
  for (const auto& header : request.headers.all()) {
    if (strcasecmp(header.name.c_str(), "Accept") != 0) continue;
    std::string_view value = header.value;
    while (!value.empty()) {
      size_t comma = value.find(',');
      std::string_view item = value.substr(0, comma);
      value = comma == std::string_view::npos ? std::string_view{} : value.substr(comma + 1);
      item = item.substr(0, item.find(';'));
      while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
      while (!item.empty() && item.back() == ' ') item.remove_suffix(1);
      if (item == media_type || item == "*/*") return true;
      if (isManifestMediaType(item)) lists_manifest_types = true;
    }
  }
  return !lists_manifest_types;
}

http::Response manifestResponse(const http::Request& request, std::string_view media_type,
                                std::string_view digest, std::string_view bytes) {
  if (!acceptsMediaType(request, media_type)) {
    return errorResponse(ErrorCode::kManifestUnknown,
                         "manifest " + std::string(digest) + " is " + std::string(media_type) +
                             ", which the Accept header does not list");
  }
  http::Response response;
  response.headers.add("Content-Type", std::string(media_type));
  response.headers.add("Docker-Content-Digest", std::string(digest));
  response.headers.add("ETag", "\"" + std::string(digest) + "\"");
  if (request.isHead()) {
    response.head_length = bytes.size();
  } else {
    response.body.assign(bytes);
  }
  return response;
}

namespace {

// Layers that registries are not asked to hold (Windows base layers and the like).
bool isForeignLayer(const Descriptor& d) {
  return d.media_type == "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" ||
         d.media_type.starts_with("application/vnd.oci.image.layer.nondistributable.");
}

// The first descriptor the manifest references that the repository does not hold.
std::optional<std::string> missingReference(const cache::ReadTxn& txn, std::string_view repo,
                                            const Manifest& manifest) {
  if (manifest.config && !txn.isLinked(repo, manifest.config->digest)) {
    return "config blob " + manifest.config->digest;
  }
  for (const auto& layer : manifest.layers) {
    if (!isForeignLayer(layer) && !txn.isLinked(repo, layer.digest)) {
      return "layer blob " + layer.digest;
    }
  }
  for (const auto& child : manifest.manifests) {
    if (!txn.manifest(repo, child.digest)) return "manifest " + child.digest;
  }
  return std::nullopt;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// GET and HEAD

void Registry::getManifest(const ExchangePtr& ex, const Route& route, const Repository& repo) {
  auto reference = parseReference(route.reference);
  if (!reference) {
    ErrorCode code = route.reference.find(':') != std::string::npos ? ErrorCode::kDigestInvalid
                                                                    : ErrorCode::kManifestInvalid;
    respond(ex, errorResponse(code, reference.status().message()));
    return;
  }
  if (!repo.isLocal() && !config_.offline) {
    pull_.getManifest(ex, route, repo, *reference);
    return;
  }
  auto txn = index_.read();
  if (!txn) {
    respond(ex, errorFromStatus(txn.status(), ErrorCode::kManifestUnknown,
                                ErrorCode::kManifestInvalid));
    return;
  }
  std::string digest;
  if (reference->isDigest()) {
    digest = reference->digest->str();
  } else if (auto tag = txn->tag(repo.key, reference->tag)) {
    digest = tag->digest;
  }
  auto manifest =
      digest.empty() ? Result<cache::ManifestView>(notFound("")) : txn->manifest(repo.key, digest);
  if (!manifest) {
    respond(ex, errorResponse(ErrorCode::kManifestUnknown,
                              "manifest " + route.name + ":" + route.reference + " unknown"));
    return;
  }
  respond(ex, manifestResponse(ex->request(), manifest->media_type, digest, manifest->bytes));
}

// ---------------------------------------------------------------------------------------------
// PUT

// Collects a manifest body (at most kMaxManifestBytes), then validates and stores it.
class ManifestBodyHandler : public http::Handler {
 public:
  ManifestBodyHandler(Registry& registry, std::shared_ptr<http::Exchange> ex, Route route,
                      Repository repo, Reference reference)
      : registry_(registry),
        ex_(std::move(ex)),
        route_(std::move(route)),
        repo_(std::move(repo)),
        reference_(std::move(reference)) {}

  bool onBody(std::string_view data) override {
    if (body_.size() + data.size() > kMaxManifestBytes) {
      respond(ex_, tooLarge());
      failed_ = true;
      return false;
    }
    body_.append(data);
    return true;
  }

  void onEnd() override {
    if (failed_) return;
    const std::string* content_type = ex_->request().headers.get("Content-Type");
    std::string_view type = content_type ? std::string_view(*content_type) : "";
    type = type.substr(0, type.find(';'));
    while (!type.empty() && type.back() == ' ') type.remove_suffix(1);

    auto manifest = parseManifest(body_, type);
    if (!manifest) {
      respond(ex_, manifest.status().code() == Code::kTooLarge
                       ? tooLarge()
                       : errorResponse(ErrorCode::kManifestInvalid, manifest.status().message()));
      return;
    }
    cache::Digest digest =
        cache::digestOf(body_, reference_.isDigest() ? reference_.digest->algorithm()
                                                     : cache::DigestAlgorithm::kSha256);
    if (reference_.isDigest() && digest != *reference_.digest) {
      respond(ex_,
              errorResponse(ErrorCode::kDigestInvalid, "manifest digest is " + digest.str() +
                                                           ", not " + reference_.digest->str()));
      return;
    }
    if (!checkReferences(*manifest)) return;
    store(std::move(*manifest), digest);
  }

 private:
  static http::Response tooLarge() {
    return errorResponse(ErrorCode::kSizeInvalid,
                         "manifest exceeds " + std::to_string(kMaxManifestBytes) + " bytes", 413);
  }

  bool checkReferences(const Manifest& manifest) {
    auto txn = registry_.index_.read();
    if (!txn) {
      respond(ex_, errorFromStatus(txn.status(), ErrorCode::kManifestUnknown,
                                   ErrorCode::kManifestInvalid));
      return false;
    }
    if (auto missing = missingReference(*txn, repo_.key, manifest)) {
      respond(ex_, errorResponse(ErrorCode::kManifestBlobUnknown,
                                 *missing + " is not in " + route_.name));
      return false;
    }
    return true;
  }

  void store(Manifest manifest, const cache::Digest& digest) {
    cache::ManifestRecord record{manifest.media_type, std::move(body_),
                                 manifest.subject ? manifest.subject->digest : "",
                                 manifest.artifact_type, nowSeconds()};
    std::optional<cache::ReferrerRecord> referrer;
    if (manifest.subject) {
      referrer = cache::ReferrerRecord{digest.str(), manifest.media_type, manifest.artifact_type,
                                       record.bytes.size(), manifest.annotations_json};
    }
    std::string tag = reference_.isDigest() ? "" : reference_.tag;
    std::string key = repo_.key;
    std::string digest_str = digest.str();
    const cache::Index& index = registry_.index_;
    std::weak_ptr<http::Exchange> weak = ex_;
    Route route = route_;
    registry_.pool_.run(
        ex_->loop(),
        [&index, key, digest_str, tag, record = std::move(record), referrer]() -> Status {
          auto txn = index.write();
          if (!txn) return txn.status();
          Status status =
              txn->putManifest(key, digest_str, record, referrer ? &*referrer : nullptr);
          if (status && !tag.empty()) {
            status = txn->putTag(key, tag, digest_str, nowSeconds(), nowSeconds());
          }
          return status ? txn->commit() : status;
        },
        [weak, route, digest_str, subject = manifest.subject](Status status) {
          auto ex = weak.lock();
          if (!ex) return;
          if (!status) {
            spdlog::error("manifest.store digest={} error=\"{}\"", digest_str, status.message());
            respond(ex, errorFromStatus(status, ErrorCode::kManifestUnknown,
                                        ErrorCode::kManifestInvalid));
            return;
          }
          http::Response response;
          response.status = 201;
          response.headers.add("Location", "/v2/" + route.name + "/manifests/" + digest_str);
          response.headers.add("Docker-Content-Digest", digest_str);
          if (subject) response.headers.add("OCI-Subject", subject->digest);
          respond(ex, std::move(response));
        });
  }

  Registry& registry_;
  std::shared_ptr<http::Exchange> ex_;
  Route route_;
  Repository repo_;
  Reference reference_;
  std::string body_;
  bool failed_ = false;
};

std::unique_ptr<http::Handler> Registry::putManifest(const ExchangePtr& ex, const Route& route,
                                                     const Repository& repo) {
  auto reference = parseReference(route.reference);
  if (!reference) {
    ErrorCode code = route.reference.find(':') != std::string::npos ? ErrorCode::kDigestInvalid
                                                                    : ErrorCode::kManifestInvalid;
    respond(ex, errorResponse(code, reference.status().message()));
    return nullptr;
  }
  auto length = ex->request().content_length;
  if (length && *length > kMaxManifestBytes) {
    respond(ex,
            errorResponse(ErrorCode::kSizeInvalid,
                          "manifest exceeds " + std::to_string(kMaxManifestBytes) + " bytes", 413));
    return nullptr;
  }
  return std::make_unique<ManifestBodyHandler>(*this, ex, route, repo, std::move(*reference));
}

// ---------------------------------------------------------------------------------------------
// DELETE

void Registry::deleteManifest(const ExchangePtr& ex, const Route& route, const Repository& repo) {
  auto reference = parseReference(route.reference);
  if (!reference) {
    ErrorCode code = route.reference.find(':') != std::string::npos ? ErrorCode::kDigestInvalid
                                                                    : ErrorCode::kManifestInvalid;
    respond(ex, errorResponse(code, reference.status().message()));
    return;
  }
  std::weak_ptr<http::Exchange> weak = ex;
  std::string key = repo.key;
  std::string ref = reference->str();
  bool by_digest = reference->isDigest();
  pool_.run(
      ex->loop(),
      [this, key, ref, by_digest]() -> Status {
        auto txn = index_.write();
        if (!txn) return txn.status();
        Status status = by_digest ? txn->deleteManifest(key, ref) : txn->deleteTag(key, ref);
        return status ? txn->commit() : status;
      },
      [weak, route](Status status) {
        auto ex = weak.lock();
        if (!ex) return;
        if (!status) {
          respond(ex, errorFromStatus(status, ErrorCode::kManifestUnknown,
                                      ErrorCode::kManifestInvalid));
          return;
        }
        http::Response response;
        response.status = 202;
        respond(ex, std::move(response));
      });
}

}  // namespace regcache::proxy
