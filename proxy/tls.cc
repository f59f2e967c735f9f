// TLS contexts for the HTTP server. OpenSSL errors become Status here, with the file they are
// about in the message.
#include "proxy/tls.h"

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

namespace regcache::proxy::http {

namespace {

// TLS 1.2 suites: forward secrecy (ECDHE) and AEAD only. TLS 1.3 keeps OpenSSL's defaults.
constexpr const char* kTls12Ciphers =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";

// ALPN wire format: one length-prefixed protocol name.
constexpr unsigned char kAlpnHttp11[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};

// The oldest queued OpenSSL error as text, clearing the queue.
std::string takeSslError() {
  unsigned long code = ERR_get_error();
  ERR_clear_error();
  if (code == 0) {
    return "unknown OpenSSL error";
  }
  char text[256];
  ERR_error_string_n(code, text, sizeof text);
  return text;
}

// A client that offers no http/1.1 (h2 only, say) gets no ALPN answer rather than a protocol
// we do not speak; it then talks HTTP/1.1 or gives up.
int selectAlpn(SSL* /*ssl*/, const unsigned char** out, unsigned char* out_len,
               const unsigned char* in, unsigned int in_len, void* /*arg*/) {
  unsigned char* selected = nullptr;
  int rc = SSL_select_next_proto(&selected, out_len, kAlpnHttp11, sizeof kAlpnHttp11, in, in_len);
  if (rc != OPENSSL_NPN_NEGOTIATED) {
    return SSL_TLSEXT_ERR_NOACK;
  }
  *out = selected;
  return SSL_TLSEXT_ERR_OK;
}

// Fails early with the operating system's reason when a file cannot be opened at all, which
// says more than OpenSSL's "system lib" error.
Status checkReadable(const std::string& what, const std::string& file) {
  FILE* f = std::fopen(file.c_str(), "rb");
  if (f == nullptr) {
    return invalidArgument("cannot read TLS " + what + " " + file + ": " + std::strerror(errno));
  }
  std::fclose(f);
  return Status::ok();
}

std::string serialOf(SSL_CTX* ctx) {
  X509* cert = SSL_CTX_get0_certificate(ctx);
  if (cert == nullptr) {
    return "";
  }
  BIGNUM* number = ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), nullptr);
  if (number == nullptr) {
    return "";
  }
  char* hex = BN_bn2hex(number);
  std::string serial = hex != nullptr ? hex : "";
  OPENSSL_free(hex);
  BN_free(number);
  return serial;
}

Status configure(SSL_CTX* ctx) {
  if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
      SSL_CTX_set_cipher_list(ctx, kTls12Ciphers) != 1) {
    return Status(Code::kInternal, "TLS settings refused: " + takeSslError());
  }
  SSL_CTX_set_options(
      ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
  // Idle keep-alive connections hold no TLS read/write buffers (many idle clients are normal).
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
  SSL_CTX_set_alpn_select_cb(ctx, &selectAlpn, nullptr);
  // An encrypted key would otherwise make OpenSSL prompt on the terminal; it is refused.
  SSL_CTX_set_default_passwd_cb(ctx, [](char*, int, int, void*) { return 0; });
  return Status::ok();
}

}  // namespace

TlsContext::~TlsContext() { SSL_CTX_free(ctx_); }

Result<std::shared_ptr<TlsContext>> TlsContext::load(const std::string& cert_file,
                                                     const std::string& key_file) {
  if (Status s = checkReadable("certificate", cert_file); !s) {
    return s;
  }
  if (Status s = checkReadable("key", key_file); !s) {
    return s;
  }
  ERR_clear_error();
  SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
  if (ctx == nullptr) {
    return Status(Code::kInternal, "cannot make a TLS context: " + takeSslError());
  }
  std::shared_ptr<TlsContext> context(new TlsContext(ctx));  // frees ctx on every path
  if (Status s = configure(ctx); !s) {
    return s;
  }
  if (SSL_CTX_use_certificate_chain_file(ctx, cert_file.c_str()) != 1) {
    return invalidArgument("TLS certificate " + cert_file +
                           " is not a PEM certificate chain: " + takeSslError());
  }
  if (SSL_CTX_use_PrivateKey_file(ctx, key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
    // OpenSSL checks the pair as it loads the key; a mismatch is worth its own words.
    if (ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH) {
      ERR_clear_error();
      return invalidArgument("TLS key " + key_file + " does not match certificate " + cert_file);
    }
    return invalidArgument("TLS key " + key_file + " is not a PEM private key: " + takeSslError());
  }
  if (SSL_CTX_check_private_key(ctx) != 1) {
    ERR_clear_error();
    return invalidArgument("TLS key " + key_file + " does not match certificate " + cert_file);
  }
  context->serial_ = serialOf(ctx);
  return context;
}

}  // namespace regcache::proxy::http
