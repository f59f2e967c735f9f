// Internals of the upstream Client shared by its source files (client.cc: the loop glue,
// attempts, retries and delivery; client_auth.cc: answering 401 challenges). Not a public
// header: nothing outside upstream/ includes it.
#pragma once

#include <curl/curl.h>
#include <event2/event.h>

#include <chrono>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "upstream/client.h"

namespace regcache::upstream {

// =============================================================================================
// Client::Impl

struct Client::Impl {
  struct Transfer;

  // What the current attempt's response means, decided when its body starts or it completes.
  enum class Next {
    kDeliver,  // the final response: hand it to the callbacks
    kRetry,    // 429 or 5xx with attempts left: discard it, wait, try again
    kAuth,     // 401 with a challenge we can answer: discard it, authenticate, try again
  };

  Impl(event_base* base, std::shared_ptr<TokenCache> tokens);
  ~Impl();

  // Re-entrancy guard: every entry point (libevent callback, public call) holds one. A
  // Transfer that finishes or is cancelled is only marked done and parked in graveyard_;
  // whatever frees memory (easy handles, callbacks, the Impl itself when the Client was
  // destroyed inside a callback) waits until the outermost Scope unwinds.
  struct Scope {
    explicit Scope(Impl* impl) : impl_(impl) { ++impl_->depth_; }
    ~Scope() {
      if (--impl_->depth_ == 0) {
        impl_->unwound();
      }
    }
    Impl* impl_;
  };

  TransferId start(const UpstreamOptions& upstream, Request request, Callbacks callbacks);
  void cancel(TransferId id);
  void pause(TransferId id);
  void resume(TransferId id);
  void orphan();

  // libcurl and libevent callbacks.
  static int onSocketChange(CURL* easy, curl_socket_t fd, int what, void* arg, void* socketp);
  static int onTimerChange(CURLM* multi, long timeout_ms, void* arg);
  static void onSocket(evutil_socket_t fd, short events, void* arg);
  static void onTimer(evutil_socket_t fd, short events, void* arg);
  static void onTransferTimer(evutil_socket_t fd, short events, void* arg);
  static size_t onHeader(char* data, size_t size, size_t count, void* arg);
  static size_t onBody(char* data, size_t size, size_t count, void* arg);

  Transfer* newTransfer(const UpstreamOptions& upstream, Request request, Callbacks callbacks,
                        bool internal);
  Transfer* find(TransferId id);
  void startAttempt(Transfer* t, bool counts);
  void configure(Transfer* t, CURL* easy);
  void detachEasy(Transfer* t);
  void checkDone();
  void onTransferDone(Transfer* t, CURLcode code);
  void decide(Transfer* t);
  bool answerable(Transfer* t);
  size_t onBodyBytes(Transfer* t, std::string_view data);
  void onFailure(Transfer* t, CURLcode code);
  void authenticate(Transfer* t);
  void fetchToken(Transfer* t);
  void onTokenDone(TransferId parent_id, Status status, int http_status, std::string_view body);
  void deliverAuthResponse(Transfer* t);
  void deliverFinal(Transfer* t);
  void finish(Transfer* t, Status status);
  void retire(Transfer* t);
  void scheduleRetry(Transfer* t, std::chrono::milliseconds delay, const std::string& reason);
  void failSoon(Transfer* t, Status status);
  void armTimer(Transfer* t, std::chrono::milliseconds delay);
  std::chrono::milliseconds backoff(const Transfer* t);
  void checkStall(Transfer* t);
  static std::string_view logPath(const Transfer* t);
  void unwound();
  void reap();

  event_base* base_;
  std::shared_ptr<TokenCache> tokens_;
  CURLM* multi_ = nullptr;
  event* timer_ = nullptr;                             // libcurl's single timeout
  std::unordered_map<curl_socket_t, event*> sockets_;  // what libcurl asked us to watch
  std::unordered_map<TransferId, std::unique_ptr<Transfer>> transfers_;  // not yet done
  std::vector<std::unique_ptr<Transfer>> graveyard_;  // done; freed when depth_ returns to 0
  TransferId next_id_ = 1;
  size_t user_active_ = 0;  // transfers_ minus internal token requests
  int depth_ = 0;
  bool orphaned_ = false;  // the Client is gone; delete this when depth_ returns to 0
  std::mt19937 rng_{std::random_device{}()};
};

// One Request from start() to on_done, across attempts, auth and redirects.
struct Client::Impl::Transfer {
  Client::TransferId id = 0;
  Impl* impl = nullptr;
  const UpstreamOptions* upstream = nullptr;
  Request request;
  Callbacks callbacks;
  std::string url;
  std::chrono::steady_clock::time_point started;
  bool internal = false;  // a token request made on behalf of another transfer

  // Auth for the next attempt.
  std::string bearer;      // sent as Authorization: Bearer; never logged
  bool use_basic = false;  // send username/password with Basic
  bool challenged = false;
  Challenge challenge;      // the 401's challenge being answered
  std::string token_scope;  // the TokenCache key for a token fetched for this transfer
  Client::TransferId token_child = 0;
  ResponseHead auth_head;  // the 401, delivered when its token cannot be had
  std::string auth_body;

  // The current attempt.
  int attempt = 0;  // attempts counted against max_attempts; auth retries do not count
  CURL* easy = nullptr;
  curl_slist* header_list = nullptr;
  char errbuf[CURL_ERROR_SIZE] = {};
  ResponseHead head;
  bool decided = false;
  Next next = Next::kDeliver;
  std::chrono::milliseconds retry_delay{0};
  std::string body;  // non-streaming: the final body, delivered at completion
  bool head_delivered = false;
  bool data_delivered = false;
  bool aborted = false;  // on_data returned false
  bool paused = false;   // the caller asked for no more body until it resumes

  // During an attempt of a streaming request: the stall watchdog. Between attempts: the
  // backoff, or a start failure reported from the loop.
  event* timer = nullptr;
  std::chrono::steady_clock::time_point last_progress;  // streaming: the last byte seen
  std::optional<Status> failure;
  bool done = false;  // finished or cancelled: no callback runs, the Impl frees it soon

  ~Transfer();
};

}  // namespace regcache::upstream
