// Blob fills: one upstream download per digest, written to a temp file while it is hashed,
// streamed to every client that asks for the digest meanwhile, then verified, fsynced,
// renamed into the blob store and indexed.
//
// A fill runs on the loop of the request that started it (its upstream Client lives there);
// readers may be on any loop. The loop only copies the bytes libcurl hands it into a queue; a
// thread of the FillTable's writer pool writes them to the temp file and hashes them, so that
// hashing (the dearest part of a fill) runs beside the loop's receiving and sending instead of
// between them. The queue is bounded: past a high-water mark the transfer is paused, and the
// writer resumes it once the queue has drained, so a fill's memory does not grow with the blob.
// Readers never see a byte the fill has not verified the blob would end with: the last byte is held
// back until the digest checks out (not until it is durable), so a client of a failed fill always
// gets a short body (a failed transfer), never a complete wrong one.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "cache/blob_store.h"
#include "cache/digest.h"
#include "cache/index.h"
#include "proxy/http.h"
#include "proxy/loop.h"
#include "upstream/client.h"

namespace regcache::upstream {

class FillTable;

// Frees a fill's queue buffer: they are mapped whole rather than taken from malloc, so that
// memory a fill used goes back to the system when the fills are done instead of staying in
// an allocator's arena.
struct MappedBufferDelete {
  void operator()(char* buffer) const;
};
using QueueBuffer = std::unique_ptr<char, MappedBufferDelete>;

class Fill : public std::enable_shared_from_this<Fill> {
 public:
  enum class State {
    kStarting,   // request sent, no response head yet
    kStreaming,  // upstream answered 200; bytes arriving
    kVerifying,  // every byte in and hashed right; fsync, rename and index on the pool
    kDone,       // stored and indexed: the blob is served from the store from now on
    kFailed,     // error() says why; the temp file is gone
  };

  struct Progress {
    State state = State::kStarting;
    std::optional<uint64_t> size;  // from upstream's Content-Length, when it sent one
    uint64_t written = 0;          // bytes in the temp file
  };

  Fill(FillTable& table, std::string digest, std::string repository_key, std::string remote,
       const UpstreamOptions& upstream);
  ~Fill();

  const std::string& digest() const { return digest_; }
  Progress progress() const;
  // Why the fill failed: kNotFound when upstream has no such blob, kUnavailable otherwise
  // (with upstream's HTTP status in `upstreamStatus()` when it answered).
  Status error() const;
  int upstreamStatus() const;
  // How many bytes a reader may send now: all once verified, else all but the last byte.
  uint64_t readable() const;
  // The temp file (valid while the Fill lives; pread it).
  int fd() const { return fd_; }
  // Number of readers attached so far (for tests and metrics).
  size_t readers() const { return readers_.load(); }
  // Readers following the fill now (attached and not yet destroyed).
  size_t attached() const { return attached_.load(); }
  const std::string& upstreamName() const { return upstream_.name; }
  // The repository on the upstream the blob is fetched from ("library/alpine").
  const std::string& remote() const { return remote_; }

  // Calls `wake` on `loop` the next time progress is made (bytes, head, end), or at once when
  // some was made since the caller saw `seen_readable` readable bytes in `seen_state`.
  // One-shot. `alive` guards the call: it is skipped once the token is gone. Any thread.
  void notifyOnProgress(proxy::Loop& loop, std::weak_ptr<void> alive, std::function<void()> wake,
                        uint64_t seen_readable, State seen_state);

  // A response body for a client on `loop` that follows this fill from `offset` for `length`
  // bytes (nullopt: to the end). The fill must have a head (state kStreaming or later).
  std::shared_ptr<proxy::http::BodySource> reader(proxy::Loop& loop, uint64_t offset,
                                                  std::optional<uint64_t> length);

 private:
  friend class FillTable;
  friend class FillReader;
  struct Waiter {
    proxy::Loop* loop;
    std::weak_ptr<void> alive;
    std::function<void()> wake;
  };

  // Fill's own loop thread only. The first time it is called is when the fill holds one of
  // its upstream's slots (FillTable's max_per_upstream).
  void start(proxy::Loop& loop, Client& client);
  void request(uint64_t from);
  void onHead(const ResponseHead& head);
  bool onData(std::string_view data);
  void onDone(Status status);
  void afterBody(Status status);
  void drain();
  Status writeChunk(std::string_view bytes);
  void resumeTransfer();
  void verify();
  void fail(Status status);
  void finish(State state);
  void wakeWaiters(bool force);

  FillTable& table_;
  const std::string digest_;
  const std::string repository_key_;
  const std::string remote_;
  const UpstreamOptions& upstream_;
  proxy::Loop* loop_ = nullptr;
  Client* client_ = nullptr;
  Client::TransferId transfer_ = 0;
  std::optional<cache::Hasher> hasher_;
  std::string temp_path_;
  int fd_ = -1;
  int resumes_ = 0;
  bool resuming_ = false;
  uint64_t resume_from_ = 0;
  bool head_ok_ = false;     // the current attempt's head was accepted
  bool holds_slot_ = false;  // counted in its upstream's running fills; guarded by table_.mu_
  uint64_t received_ = 0;    // bytes taken from upstream into the queue or the file
  bool paused_ = false;      // the transfer is paused until the queue drains

  // The write queue between the loop (which appends) and one writer job at a time (which
  // takes from the front, writes, hashes, and advances written_).
  struct Chunk {
    QueueBuffer data;
    size_t size = 0;
  };
  std::mutex io_mu_;
  std::deque<Chunk> queue_;           // guarded by io_mu_
  uint64_t queued_bytes_ = 0;         // guarded by io_mu_
  bool draining_ = false;             // guarded by io_mu_: a writer job owns the queue's front
  bool resume_on_drain_ = false;      // guarded by io_mu_: the writer resumes the transfer
  bool io_stop_ = false;              // guarded by io_mu_: failed; the writer drops the rest
  std::optional<Status> io_error_;    // guarded by io_mu_: the writer could not write
  std::function<void()> on_drained_;  // guarded by io_mu_: posted to the loop once empty

  mutable std::mutex mu_;
  State state_ = State::kStarting;    // guarded by mu_
  std::optional<uint64_t> size_;      // guarded by mu_
  std::atomic<uint64_t> written_{0};  // bytes in the file; advanced by the writer job
  Status error_;                      // guarded by mu_
  int upstream_status_ = 0;           // guarded by mu_
  std::vector<Waiter> waiters_;       // guarded by mu_
  uint64_t notified_at_ = 0;          // guarded by mu_
  std::chrono::steady_clock::time_point notified_time_{};  // guarded by mu_
  std::atomic<size_t> readers_{0};
  std::atomic<size_t> attached_{0};
};

// Every fill in flight, one per digest. Thread-safe.
//
// At most `max_per_upstream` fills run against one upstream at a time (0: no bound), so a
// burst of cold pulls cannot open hundreds of transfers to a registry that rate-limits us.
// Fills beyond it wait in a FIFO queue per upstream, in state kStarting: their readers wait
// for a response head as they would for a slow upstream, and get it once the fill starts.
// A queued fill starts, on the loop that asked for it, when a running one ends.
class FillTable {
 public:
  // `clientFor` gives the upstream Client of the calling loop.
  FillTable(const cache::Index& index, const cache::BlobStore& store, proxy::BlockingPool& pool,
            std::function<Client&(proxy::Loop&)> client_for, size_t max_per_upstream = 0);
  ~FillTable();

  // Finishes the writers' work and forgets the upstream Clients. Call after the loops have
  // stopped, before they and the Clients are destroyed.
  void shutdown();

  // The fill for `digest`, joined if one is in flight, else started on `loop` (the caller's),
  // or queued behind its upstream's running fills.
  // `repository_key` is the cache's repository the blob is linked into when it lands.
  // `joined` (optional) says whether a fill in flight was joined.
  std::shared_ptr<Fill> getOrStart(proxy::Loop& loop, const UpstreamOptions& upstream,
                                   const std::string& digest, const std::string& repository_key,
                                   const std::string& remote, bool* joined = nullptr);

  // Fills in the table: running and queued.
  size_t inFlight() const;
  // Fills waiting for a slot, across upstreams.
  size_t queued() const;

  // One fill in flight as the status page shows it.
  struct FillInfo {
    std::string digest;
    std::string upstream;
    std::string repository;  // on the upstream
    Fill::Progress progress;
    size_t clients = 0;  // readers attached now
  };
  // The fills in flight, by digest. Any thread.
  std::vector<FillInfo> snapshot() const;

  // Called on the fill's loop when a fill ends (kDone or kFailed), after its state is final.
  // Set once before the first fill starts.
  void setOnEnd(std::function<void(const Fill&)> on_end) { on_end_ = std::move(on_end); }
  // Total fills started (for tests and metrics).
  uint64_t started() const { return started_.load(); }
  // Bytes of blobs fills have stored since start (for the cache size estimate).
  uint64_t storedBytes() const { return stored_bytes_.load(); }

 private:
  friend class Fill;
  // Per upstream (by name): fills holding a slot, and those waiting for one.
  struct Slots {
    size_t running = 0;
    std::deque<std::pair<std::shared_ptr<Fill>, proxy::Loop*>> waiting;
  };
  void remove(const Fill* fill);
  void startOn(proxy::Loop& loop, const std::shared_ptr<Fill>& fill);
  // Queue buffers of kChunkBytes, reused while fills run; the spares go once none does.
  QueueBuffer takeBuffer();
  void giveBuffer(QueueBuffer buffer);

  const cache::Index& index_;
  const cache::BlobStore& store_;
  proxy::BlockingPool& pool_;
  std::function<Client&(proxy::Loop&)> client_for_;
  std::function<void(const Fill&)> on_end_;
  mutable std::mutex mu_;
  const size_t max_per_upstream_;
  std::unordered_map<std::string, std::shared_ptr<Fill>> fills_;  // guarded by mu_
  std::unordered_map<std::string, Slots> slots_;                  // guarded by mu_
  std::atomic<uint64_t> started_{0};
  std::atomic<uint64_t> stored_bytes_{0};
  std::mutex buffers_mu_;
  std::vector<QueueBuffer> buffers_;  // guarded by buffers_mu_
  // Last: joined before anything its jobs touch goes away.
  std::unique_ptr<proxy::BlockingPool> writers_;
};

}  // namespace regcache::upstream
