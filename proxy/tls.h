// The server's TLS settings: an OpenSSL context made from a PEM certificate chain and key, with
// the protocol floor, ciphers and ALPN the registry offers.
#pragma once

#include <memory>
#include <string>

#include "cache/status.h"

typedef struct ssl_ctx_st SSL_CTX;

namespace regcache::proxy::http {

// An SSL_CTX ready to accept connections: TLS 1.2 and later, ECDHE with AEAD ciphers for
// TLS 1.2 (OpenSSL's defaults for TLS 1.3), ALPN offering only "http/1.1".
//
// Immutable once loaded, so any thread may make connections from it. Each SSL made from it
// holds its own reference to the SSL_CTX (OpenSSL counts them): a context swapped out by a
// reload lives on until its last connection is freed.
class TlsContext {
 public:
  ~TlsContext();
  TlsContext(const TlsContext&) = delete;
  TlsContext& operator=(const TlsContext&) = delete;

  // Reads `cert_file` (a PEM chain, leaf first) and `key_file` (its PEM private key).
  // kInvalidArgument naming the file when one cannot be read, is not PEM, or the key does not
  // match the certificate. Blocking file reads: call off the event loops.
  static Result<std::shared_ptr<TlsContext>> load(const std::string& cert_file,
                                                  const std::string& key_file);

  SSL_CTX* get() const { return ctx_; }
  // The leaf certificate's serial number in hex, for logs.
  const std::string& serial() const { return serial_; }

 private:
  explicit TlsContext(SSL_CTX* ctx) : ctx_(ctx) {}

  SSL_CTX* ctx_;
  std::string serial_;
};

}  // namespace regcache::proxy::http
