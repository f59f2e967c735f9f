// Command-line image references: split name, tag and digest, then route the name.
#include "proxy/image_ref.h"

namespace regcache::proxy {

std::string ImageRef::str() const {
  if (reference.isDigest()) return repository.key + "@" + reference.digest->str();
  return repository.key + ":" + reference.tag;
}

Result<ImageRef> parseImageRef(const Config& config, std::string_view text) {
  std::string_view name = text;
  std::string_view digest_text;
  std::string_view tag = "latest";

  // The digest follows '@'; a tag follows the last ':' after the last '/' (a ':' before it
  // belongs to a host:port upstream name).
  if (size_t at = name.find('@'); at != std::string_view::npos) {
    digest_text = name.substr(at + 1);
    name = name.substr(0, at);
  }
  size_t slash = name.rfind('/');
  size_t colon = name.rfind(':');
  if (colon != std::string_view::npos && (slash == std::string_view::npos || colon > slash)) {
    tag = name.substr(colon + 1);
    name = name.substr(0, colon);
  }
  if (name.empty())
    return invalidArgument("image reference \"" + std::string(text) + "\" has no repository name");

  auto reference = parseReference(digest_text.empty() ? tag : digest_text);
  if (!reference) {
    return invalidArgument("image reference \"" + std::string(text) +
                           "\": " + reference.status().message());
  }
  auto repository = resolveRepository(config, name, "");
  if (!repository) return repository.status();
  std::string_view routed = repository->isLocal() ? repository->key : repository->remote;
  if (!isValidRepository(routed)) {
    return invalidArgument("image reference \"" + std::string(text) + "\": \"" +
                           std::string(routed) + "\" is not a valid repository name");
  }
  return ImageRef{std::move(*repository), std::move(*reference)};
}

}  // namespace regcache::proxy
