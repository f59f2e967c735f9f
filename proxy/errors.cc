// The one place where internal errors become the API's JSON errors.
#include "proxy/errors.h"

#include <cstdio>

namespace regcache::proxy {

namespace {

struct ErrorInfo {
  std::string_view name;
  int status;
};

constexpr ErrorInfo kErrors[] = {
    {"BLOB_UNKNOWN", 404},     {"BLOB_UPLOAD_INVALID", 400},   {"BLOB_UPLOAD_UNKNOWN", 404},
    {"DIGEST_INVALID", 400},   {"MANIFEST_BLOB_UNKNOWN", 400}, {"MANIFEST_INVALID", 400},
    {"MANIFEST_UNKNOWN", 404}, {"NAME_INVALID", 400},          {"NAME_UNKNOWN", 404},
    {"SIZE_INVALID", 400},     {"UNAUTHORIZED", 401},          {"DENIED", 403},
    {"UNSUPPORTED", 405},      {"TOOMANYREQUESTS", 429},       {"INTERNAL_ERROR", 500},
};

const ErrorInfo& info(ErrorCode code) { return kErrors[static_cast<int>(code)]; }

}  // namespace

std::string_view errorCodeName(ErrorCode code) { return info(code).name; }

int errorStatus(ErrorCode code) { return info(code).status; }

void appendJsonString(std::string& out, std::string_view s) {
  out.push_back('"');
  for (unsigned char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out.push_back(static_cast<char>(c));
        }
    }
  }
  out.push_back('"');
}

http::Response errorResponse(ErrorCode code, std::string_view message, int status) {
  http::Response response;
  response.status = status != 0 ? status : errorStatus(code);
  response.headers.add("Content-Type", "application/json");
  std::string& body = response.body;
  body = R"({"errors":[{"code":")";
  body += errorCodeName(code);
  body += R"(","message":)";
  appendJsonString(body, message);
  body += R"(,"detail":null}]})";
  return response;
}

http::Response errorFromStatus(const Status& status, ErrorCode not_found, ErrorCode invalid) {
  switch (status.code()) {
    case Code::kNotFound:
      return errorResponse(not_found, status.message());
    case Code::kInvalidArgument:
      return errorResponse(invalid, status.message());
    case Code::kTooLarge:
      return errorResponse(invalid, status.message(), 413);
    case Code::kConflict:
      // An upload that is busy or out of step: the spec's answer for a chunk out of order.
      return errorResponse(ErrorCode::kBlobUploadInvalid, status.message(), 416);
    case Code::kUnavailable:
      // The spec has no code for "could not ask upstream": the thing stays unknown to us, and
      // the status says it may be worth a retry.
      return errorResponse(not_found, status.message(), 503);
    default:
      return errorResponse(ErrorCode::kInternal, status.message());
  }
}

}  // namespace regcache::proxy
