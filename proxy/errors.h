// The OCI error table: every refusal the API sends is made here, as the distribution spec's
// JSON error body with the status that goes with its code.
#pragma once

#include <string>
#include <string_view>

#include "cache/status.h"
#include "proxy/http.h"

namespace regcache::proxy {

// The distribution spec's error codes (section "Error Codes"), plus the few the registry
// ecosystem uses beside them.
enum class ErrorCode {
  kBlobUnknown,
  kBlobUploadInvalid,
  kBlobUploadUnknown,
  kDigestInvalid,
  kManifestBlobUnknown,
  kManifestInvalid,
  kManifestUnknown,
  kNameInvalid,
  kNameUnknown,
  kSizeInvalid,
  kUnauthorized,
  kDenied,
  kUnsupported,
  kTooManyRequests,
  kInternal,  // a real server fault, 500
};

std::string_view errorCodeName(ErrorCode code);
// The HTTP status the code is answered with by default.
int errorStatus(ErrorCode code);

// A response with the JSON error body. `status` 0 means errorStatus(code).
http::Response errorResponse(ErrorCode code, std::string_view message, int status = 0);

// Maps a Status from the lower rooms to the response for the given resource kind: kNotFound
// becomes `not_found`, kInvalidArgument becomes `invalid`, kIo and the rest 500.
http::Response errorFromStatus(const Status& status, ErrorCode not_found, ErrorCode invalid);

// Writes `s` as a JSON string literal (with quotes) onto `out`.
void appendJsonString(std::string& out, std::string_view s);

}  // namespace regcache::proxy
