// The upstream Client's answers to 401 challenges: Bearer (a token fetched from the realm,
// cached per upstream and scope) or Basic (the configured credentials).
#include <spdlog/spdlog.h>

#include "upstream/auth.h"
#include "upstream/client_impl.h"

namespace regcache::upstream {

// A 401 can be answered once: with a token when it offers Bearer with a realm, else with
// Basic credentials when it offers Basic and we have them.
bool Client::Impl::answerable(Transfer* t) {
  std::optional<Challenge> basic;
  for (const auto& [name, value] : t->head.headers) {
    if (name != "www-authenticate") {
      continue;
    }
    Result<std::vector<Challenge>> challenges = parseChallenges(value);
    if (!challenges.isOk()) {
      spdlog::debug("upstream.bad_challenge upstream={} reason=\"{}\"", t->upstream->name,
                    challenges.status().message());
      continue;
    }
    for (Challenge& challenge : challenges.value()) {
      if (challenge.scheme == "bearer" && !challenge.realm.empty()) {
        t->challenge = std::move(challenge);
        return true;
      }
      if (challenge.scheme == "basic" && !basic) {
        basic = std::move(challenge);
      }
    }
  }
  if (basic && !t->upstream->username.empty()) {
    t->challenge = std::move(*basic);
    return true;
  }
  return false;
}

// =============================================================================================
// Auth

void Client::Impl::authenticate(Transfer* t) {
  t->challenged = true;
  t->auth_head = t->head;
  t->auth_body = std::move(t->body);
  if (t->challenge.scheme == "basic") {
    spdlog::debug("upstream.auth upstream={} scheme=basic", t->upstream->name);
    t->bearer.clear();
    t->use_basic = true;
    startAttempt(t, false);
    return;
  }
  fetchToken(t);
}

// The token request is a transfer of its own (with its own retries), on the same connection
// pool; the parent waits for its on_done.
void Client::Impl::fetchToken(Transfer* t) {
  std::string scope = t->challenge.scope;
  if (scope.empty()) {
    scope = t->token_scope;
  }
  if (t->token_scope.empty()) {
    t->token_scope = scope;
  }

  struct Reply {
    int status = 0;
    std::string body;
  };
  auto reply = std::make_shared<Reply>();
  Callbacks callbacks;
  callbacks.on_head = [reply](const ResponseHead& head) { reply->status = head.status; };
  callbacks.on_data = [reply](std::string_view data) {
    reply->body.append(data);
    return true;
  };
  callbacks.on_done = [this, parent_id = t->id, reply](Status status) {
    onTokenDone(parent_id, std::move(status), reply->status, reply->body);
  };

  Request request;
  request.method = "GET";
  Transfer* child = newTransfer(*t->upstream, std::move(request), std::move(callbacks), true);
  child->url = tokenUrl(t->challenge, scope);
  // The realm is the registry's word: credentials go there, but never in clear text when the
  // registry itself is reached over TLS.
  bool realm_secure =
      child->url.rfind("https://", 0) == 0 || t->upstream->base_url.rfind("http://", 0) == 0;
  child->use_basic = !t->upstream->username.empty() && realm_secure;
  t->token_child = child->id;
  spdlog::debug("upstream.token_fetch upstream={} realm={} scope={}", t->upstream->name,
                logPath(child), scope);
  startAttempt(child, true);
}

void Client::Impl::onTokenDone(TransferId parent_id, Status status, int http_status,
                               std::string_view body) {
  Transfer* t = find(parent_id);
  if (t == nullptr) {
    return;
  }
  t->token_child = 0;
  if (!status.isOk()) {
    finish(t, Status(Code::kUnavailable, "token endpoint: " + status.message()));
    return;
  }
  if (http_status != 200) {
    spdlog::warn("upstream.token_refused upstream={} status={}", t->upstream->name, http_status);
    deliverAuthResponse(t);
    return;
  }
  Result<TokenGrant> grant = parseTokenResponse(body);
  if (!grant.isOk()) {
    spdlog::warn("upstream.token_invalid upstream={} reason=\"{}\"", t->upstream->name,
                 grant.status().message());
    deliverAuthResponse(t);
    return;
  }

  tokens_->put(t->upstream->name, t->token_scope, grant->token, grant->expires_in);
  t->bearer = std::move(grant->token);
  t->use_basic = false;
  startAttempt(t, false);
}

// No token to be had: the caller gets the registry's own 401.
void Client::Impl::deliverAuthResponse(Transfer* t) {
  t->head = std::move(t->auth_head);
  t->body = std::move(t->auth_body);
  deliverFinal(t);
}

}  // namespace regcache::upstream
