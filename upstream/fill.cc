// Blob fills and the readers that follow them.
#include "upstream/fill.h"

#include <event2/buffer.h>
#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>

namespace regcache::upstream {

namespace {

// How often a fill broken mid-way is resumed before it gives up.
constexpr int kMaxResumes = 3;
// Readers waiting for bytes are woken after this much progress, or this long after the last
// wake-up, whichever comes first: often enough for a slow drip, rarely enough for 1 GB/s.
constexpr uint64_t kWakeBytes = 64 * 1024;
constexpr auto kWakeInterval = std::chrono::milliseconds(5);
// Readers hand the socket at least this much at a time (one sendfile segment).
constexpr size_t kMinSegment = 1 << 20;
// The write queue: buffers of this size; the transfer pauses when this much is queued and
// resumes when the writer is down to the low-water mark.
constexpr size_t kChunkBytes = 1024 * 1024;
constexpr uint64_t kHighWater = 4 << 20;
constexpr uint64_t kLowWater = 1 << 20;
// Free queue buffers kept for reuse while fills run, and the writer threads.
constexpr size_t kSpareBuffers = 16;
constexpr size_t kWriterThreads = 2;

bool isTerminal(Fill::State state) {
  return state == Fill::State::kDone || state == Fill::State::kFailed;
}

// Every byte is in and hashed right: readers may have all of it, while the fsync, rename and
// index write go on (a client needs correct bytes, not durable ones).
bool isVerified(Fill::State state) {
  return state == Fill::State::kVerifying || state == Fill::State::kDone;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// FillReader: a response body that follows a fill's temp file.

class FillReader : public proxy::http::BodySource {
 public:
  FillReader(std::shared_ptr<Fill> fill, proxy::Loop& loop, uint64_t offset,
             std::optional<uint64_t> length)
      : fill_(std::move(fill)), loop_(loop), offset_(offset) {
    if (length) end_ = offset + *length;
    fill_->readers_.fetch_add(1);
    fill_->attached_.fetch_add(1);
  }
  ~FillReader() override { fill_->attached_.fetch_sub(1); }

  void start(std::function<void()> wake) override { wake_ = std::move(wake); }

  Pull pull(evbuffer* out, size_t max_bytes) override {
    Fill::State state = fill_->progress().state;
    if (state == Fill::State::kFailed) return Pull::kFailed;
    uint64_t readable = fill_->readable();
    uint64_t end = end_ ? *end_ : (isVerified(state) ? readable : UINT64_MAX);
    if (offset_ >= end) return Pull::kDone;

    uint64_t available = std::min(readable, end);
    if (available <= offset_) {
      fill_->notifyOnProgress(loop_, alive_, wake_, readable, state);
      return Pull::kWait;
    }
    uint64_t want =
        std::min<uint64_t>(std::max<size_t>(max_bytes, kMinSegment), available - offset_);
    // A file segment goes out with sendfile: no copy through user space. It gets its own
    // descriptor, closed when the buffer lets go of it, because the buffer may outlive this
    // reader and the fill.
    int fd = ::dup(fill_->fd());
    if (fd < 0) return Pull::kFailed;
    evbuffer_file_segment* segment = evbuffer_file_segment_new(
        fd, static_cast<ev_off_t>(offset_), static_cast<ev_off_t>(want), EVBUF_FS_CLOSE_ON_FREE);
    if (segment == nullptr) {
      ::close(fd);
      return Pull::kFailed;
    }
    int added = evbuffer_add_file_segment(out, segment, 0, static_cast<ev_off_t>(want));
    evbuffer_file_segment_free(segment);
    if (added != 0) return Pull::kFailed;
    offset_ += want;
    return offset_ >= end ? Pull::kDone : Pull::kMore;
  }

 private:
  std::shared_ptr<Fill> fill_;
  proxy::Loop& loop_;
  uint64_t offset_;
  std::optional<uint64_t> end_;
  std::function<void()> wake_;
  std::shared_ptr<int> alive_ = std::make_shared<int>(0);  // guards wake-ups posted to us
};

// ---------------------------------------------------------------------------------------------
// Fill

Fill::Fill(FillTable& table, std::string digest, std::string repository_key, std::string remote,
           const UpstreamOptions& upstream)
    : table_(table),
      digest_(std::move(digest)),
      repository_key_(std::move(repository_key)),
      remote_(std::move(remote)),
      upstream_(upstream) {}

Fill::~Fill() {
  if (client_ != nullptr && transfer_ != 0) client_->cancel(transfer_);
  if (fd_ >= 0) ::close(fd_);
  if (!temp_path_.empty() && state_ != State::kDone) ::unlink(temp_path_.c_str());
}

Fill::Progress Fill::progress() const {
  std::lock_guard lock(mu_);
  return Progress{state_, size_, written_.load()};
}

Status Fill::error() const {
  std::lock_guard lock(mu_);
  return error_;
}

int Fill::upstreamStatus() const {
  std::lock_guard lock(mu_);
  return upstream_status_;
}

uint64_t Fill::readable() const {
  uint64_t written = written_.load();
  std::lock_guard lock(mu_);
  if (isVerified(state_)) return written;
  return written == 0 ? 0 : written - 1;
}

void Fill::notifyOnProgress(proxy::Loop& loop, std::weak_ptr<void> alive,
                            std::function<void()> wake, uint64_t seen_readable, State seen_state) {
  std::unique_lock lock(mu_);
  uint64_t written = written_.load();
  uint64_t readable = isVerified(state_) ? written : (written == 0 ? 0 : written - 1);
  if (state_ == seen_state && readable == seen_readable && !isTerminal(state_)) {
    waiters_.push_back({&loop, std::move(alive), std::move(wake)});
    return;
  }
  lock.unlock();
  loop.post([alive = std::move(alive), wake = std::move(wake)] {
    if (alive.lock()) wake();
  });
}

std::shared_ptr<proxy::http::BodySource> Fill::reader(proxy::Loop& loop, uint64_t offset,
                                                      std::optional<uint64_t> length) {
  return std::make_shared<FillReader>(shared_from_this(), loop, offset, length);
}

void Fill::start(proxy::Loop& loop, Client& client) {
  loop_ = &loop;
  client_ = &client;
  auto digest = cache::Digest::parse(digest_);
  if (!digest) {
    fail(digest.status());
    return;
  }
  hasher_.emplace(digest->algorithm());
  temp_path_ = table_.store_.tempPath();
  fd_ = ::open(temp_path_.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd_ < 0) {
    fail(ioError("creating " + temp_path_ + ": " + std::strerror(errno)));
    return;
  }
  spdlog::debug("fill.start digest={} upstream={} repository={}", digest_, upstream_.name, remote_);
  request(0);
}

void Fill::request(uint64_t from) {
  Request r;
  r.path = "/v2/" + remote_ + "/blobs/" + digest_;
  r.repository = remote_;
  r.streaming = true;
  if (from > 0) r.headers.emplace_back("Range", "bytes=" + std::to_string(from) + "-");
  resume_from_ = from;
  received_ = from;
  paused_ = false;
  head_ok_ = false;

  std::weak_ptr<Fill> weak = weak_from_this();
  Callbacks callbacks;
  callbacks.on_head = [weak](const ResponseHead& head) {
    if (auto self = weak.lock()) self->onHead(head);
  };
  callbacks.on_data = [weak](std::string_view data) {
    auto self = weak.lock();
    return self && self->onData(data);
  };
  callbacks.on_done = [weak](Status status) {
    if (auto self = weak.lock()) self->onDone(std::move(status));
  };
  transfer_ = client_->start(upstream_, std::move(r), std::move(callbacks));
}

void Fill::onHead(const ResponseHead& head) {
  {
    std::lock_guard lock(mu_);
    upstream_status_ = head.status;
  }
  if (resume_from_ > 0) {
    const std::string* range = head.header("content-range");
    std::string expected = "bytes " + std::to_string(resume_from_) + "-";
    if (head.status == 206 && range != nullptr && range->rfind(expected, 0) == 0) {
      head_ok_ = true;
      return;
    }
    // No range support upstream (200), or a range we did not ask for: starting over would
    // hand readers a prefix from one attempt and the rest from another, so the fill fails.
    return;
  }
  if (head.status != 200) return;
  head_ok_ = true;
  {
    std::lock_guard lock(mu_);
    size_ = head.contentLength();
    state_ = State::kStreaming;
  }
  wakeWaiters(true);
}

// On the loop: copy into the queue (a memcpy; libcurl's buffer is reused once we return) and
// let a writer job take it from there.
bool Fill::onData(std::string_view data) {
  // An error body is discarded; a whole body sent instead of a range is not worth reading.
  if (!head_ok_) return !resuming_;
  received_ += data.size();
  std::optional<uint64_t> size;
  {
    std::lock_guard lock(mu_);
    size = size_;
  }
  if (size && received_ > *size) {
    fail(corrupt("upstream sent more than its Content-Length for " + digest_));
    return false;
  }
  bool start_writer = false;
  bool over = false;
  bool out_of_memory = false;
  {
    std::lock_guard lock(io_mu_);
    if (io_stop_) return false;
    while (!data.empty()) {
      if (queue_.empty() || queue_.back().size == kChunkBytes) {
        QueueBuffer buffer = table_.takeBuffer();
        if (buffer == nullptr) {
          out_of_memory = true;
          break;
        }
        queue_.push_back(Chunk{std::move(buffer), 0});
      }
      Chunk& back = queue_.back();
      size_t n = std::min(data.size(), kChunkBytes - back.size);
      std::memcpy(back.data.get() + back.size, data.data(), n);
      back.size += n;
      queued_bytes_ += n;
      data.remove_prefix(n);
    }
    if (!draining_) {
      draining_ = true;
      start_writer = true;
    }
    if (queued_bytes_ >= kHighWater) {
      resume_on_drain_ = true;
      over = true;
    }
  }
  if (start_writer) table_.writers_->submit([self = shared_from_this()] { self->drain(); });
  if (out_of_memory) {
    fail(Status(Code::kInternal, "no memory for the write queue of " + digest_));
    return false;
  }
  if (over && !paused_) {
    paused_ = true;
    client_->pause(transfer_);
  }
  return true;
}

// A writer job: takes chunks off the queue's front until it is empty. One runs per fill at a
// time, so the file is written, and the hash fed, in order.
void Fill::drain() {
  std::weak_ptr<Fill> weak = weak_from_this();
  while (true) {
    Chunk chunk;
    {
      std::lock_guard lock(io_mu_);
      if (io_stop_) {
        for (Chunk& c : queue_) table_.giveBuffer(std::move(c.data));
        queue_.clear();
        queued_bytes_ = 0;
      }
      if (queue_.empty()) {
        draining_ = false;
        if (on_drained_) loop_->post(std::exchange(on_drained_, nullptr));
        return;
      }
      chunk = std::move(queue_.front());
      queue_.pop_front();
    }
    Status status = writeChunk(std::string_view(chunk.data.get(), chunk.size));
    bool resume = false;
    {
      std::lock_guard lock(io_mu_);
      queued_bytes_ -= std::min<uint64_t>(queued_bytes_, chunk.size);
      if (!status) {
        io_stop_ = true;
        io_error_ = status;
      }
      if (resume_on_drain_ && queued_bytes_ <= kLowWater) {
        resume_on_drain_ = false;
        resume = true;
      }
    }
    table_.giveBuffer(std::move(chunk.data));
    if (!status) {
      loop_->post([weak, status] {
        if (auto self = weak.lock()) self->fail(status);
      });
    } else if (resume) {
      loop_->post([weak] {
        if (auto self = weak.lock()) self->resumeTransfer();
      });
    }
    wakeWaiters(false);
  }
}

// On a writer thread.
Status Fill::writeChunk(std::string_view bytes) {
  uint64_t at = written_.load();
  const char* p = bytes.data();
  size_t left = bytes.size();
  while (left > 0) {
    ssize_t n = ::pwrite(fd_, p, left, static_cast<off_t>(at));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ioError("writing fill of " + digest_ + ": " + std::strerror(errno));
    p += n;
    at += static_cast<uint64_t>(n);
    left -= static_cast<size_t>(n);
  }
  hasher_->update(bytes);
  written_.store(at);
  return Status::ok();
}

void Fill::resumeTransfer() {
  if (!paused_ || transfer_ == 0) return;
  paused_ = false;
  client_->resume(transfer_);
}

// The transfer ended; what it means is decided once the writer has every byte it delivered.
void Fill::onDone(Status status) {
  transfer_ = 0;
  paused_ = false;
  {
    std::lock_guard lock(io_mu_);
    if (draining_) {
      on_drained_ = [weak = weak_from_this(), status = std::move(status)]() mutable {
        if (auto self = weak.lock()) self->afterBody(std::move(status));
      };
      return;
    }
  }
  afterBody(std::move(status));
}

void Fill::afterBody(Status status) {
  if (progress().state == State::kFailed) return;
  std::optional<Status> io_error;
  {
    std::lock_guard lock(io_mu_);
    io_error = io_error_;
  }
  if (io_error) {
    fail(std::move(*io_error));
    return;
  }
  std::optional<uint64_t> size = progress().size;
  uint64_t written = written_.load();
  int upstream_status = upstreamStatus();

  if (!head_ok_ && resuming_) {
    fail(Status(Code::kUnavailable, "upstream " + upstream_.name + " cannot resume " + digest_ +
                                        " (answered " + std::to_string(upstream_status) +
                                        " to a Range request)"));
    return;
  }
  if (!head_ok_) {
    if (upstream_status == 404) {
      fail(notFound("upstream " + upstream_.name + " has no blob " + digest_));
    } else if (!status.isOk()) {
      fail(Status(Code::kUnavailable, status.message()));
    } else {
      fail(Status(Code::kUnavailable, "upstream " + upstream_.name + " answered " +
                                          std::to_string(upstream_status) + " for " + digest_));
    }
    return;
  }
  if (status.isOk() && head_ok_ && (!size || written == *size)) {
    verify();
    return;
  }

  // Broken mid-way: resume from what we have, a few times.
  if (resumes_ < kMaxResumes) {
    ++resumes_;
    resuming_ = true;
    spdlog::warn("fill.resume digest={} upstream={} from={} attempt={} reason=\"{}\"", digest_,
                 upstream_.name, written, resumes_,
                 status.isOk() ? "short body" : status.message());
    request(written);
    return;
  }
  fail(Status(Code::kUnavailable, "upstream " + upstream_.name + " transfer of " + digest_ +
                                      " broke after " + std::to_string(written) +
                                      " bytes: " + status.message()));
}

void Fill::verify() {
  cache::Digest actual = hasher_->finish();
  if (actual.str() != digest_) {
    fail(corrupt("upstream " + upstream_.name + " sent bytes hashing to " + actual.str() + " for " +
                 digest_));
    return;
  }
  {
    std::lock_guard lock(mu_);
    state_ = State::kVerifying;
  }
  wakeWaiters(true);
  uint64_t size = written_.load();
  const cache::BlobStore& store = table_.store_;
  const cache::Index& index = table_.index_;
  std::string temp = temp_path_;
  std::string repository = repository_key_;
  table_.pool_.run(
      *loop_,
      [&store, &index, temp, actual, size, repository]() -> Status {
        // Durable first, then placed and indexed under the writer lock (see BlobStore::place).
        Status status = store.prepare(temp);
        if (!status) return status;
        auto txn = index.write();
        if (!txn) return txn.status();
        status = store.place(temp, actual);
        if (!status) return status;
        cache::BlobRecord record{size, static_cast<int64_t>(std::time(nullptr)),
                                 cache::kBlobCached};
        status = txn->putBlob(actual.str(), record);
        if (status) status = txn->link(repository, actual.str());
        return status ? txn->commit() : status;
      },
      [self = shared_from_this(), size](Status status) {
        if (!status) {
          spdlog::error("fill.store digest={} error=\"{}\"", self->digest_, status.message());
          self->fail(status);
          return;
        }
        self->table_.stored_bytes_.fetch_add(size);
        spdlog::debug("fill.done digest={} bytes={} upstream={} readers={}", self->digest_, size,
                      self->upstream_.name, self->readers_.load());
        self->finish(State::kDone);
      });
}

void Fill::fail(Status status) {
  if (isTerminal(progress().state)) return;  // a writer's error may arrive after the end
  {
    std::lock_guard lock(io_mu_);
    io_stop_ = true;  // the writer drops what is queued
  }
  spdlog::warn("fill.failed digest={} upstream={} error=\"{}\"", digest_, upstream_.name,
               status.message());
  if (client_ != nullptr && transfer_ != 0) {
    client_->cancel(transfer_);
    transfer_ = 0;
  }
  if (!temp_path_.empty()) ::unlink(temp_path_.c_str());
  {
    std::lock_guard lock(mu_);
    error_ = std::move(status);
  }
  finish(State::kFailed);
}

void Fill::finish(State state) {
  {
    std::lock_guard lock(mu_);
    state_ = state;
  }
  wakeWaiters(true);
  if (table_.on_end_) table_.on_end_(*this);
  table_.remove(this);
}

// On the fill's loop or its writer.
void Fill::wakeWaiters(bool force) {
  uint64_t written = written_.load();
  auto now = std::chrono::steady_clock::now();
  std::vector<Waiter> waiters;
  {
    std::lock_guard lock(mu_);
    if (!force && written - notified_at_ < kWakeBytes && now - notified_time_ < kWakeInterval) {
      return;
    }
    if (waiters_.empty()) return;
    waiters.swap(waiters_);
    notified_at_ = written;
    notified_time_ = now;
  }
  for (auto& w : waiters) {
    w.loop->post([alive = std::move(w.alive), wake = std::move(w.wake)] {
      if (alive.lock()) wake();
    });
  }
}

// ---------------------------------------------------------------------------------------------
// FillTable

FillTable::FillTable(const cache::Index& index, const cache::BlobStore& store,
                     proxy::BlockingPool& pool, std::function<Client&(proxy::Loop&)> client_for,
                     size_t max_per_upstream)
    : index_(index),
      store_(store),
      pool_(pool),
      client_for_(std::move(client_for)),
      max_per_upstream_(max_per_upstream),
      writers_(std::make_unique<proxy::BlockingPool>(kWriterThreads)) {}

FillTable::~FillTable() { shutdown(); }

void FillTable::shutdown() {
  writers_.reset();
  std::lock_guard lock(mu_);
  for (auto& [digest, fill] : fills_) fill->client_ = nullptr;  // its Client goes next
}

void MappedBufferDelete::operator()(char* buffer) const { ::munmap(buffer, kChunkBytes); }

QueueBuffer FillTable::takeBuffer() {
  {
    std::lock_guard lock(buffers_mu_);
    if (!buffers_.empty()) {
      QueueBuffer buffer = std::move(buffers_.back());
      buffers_.pop_back();
      return buffer;
    }
  }
  // Populated up front: one call instead of a fault per page as the loop fills it.
  void* mapped = ::mmap(nullptr, kChunkBytes, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
  return QueueBuffer(mapped == MAP_FAILED ? nullptr : static_cast<char*>(mapped));
}

// Kept for reuse only while some fill runs: a fresh mapping costs its pages' zeroing.
void FillTable::giveBuffer(QueueBuffer buffer) {
  if (inFlight() == 0) return;
  std::lock_guard lock(buffers_mu_);
  if (buffers_.size() < kSpareBuffers) buffers_.push_back(std::move(buffer));
}

std::shared_ptr<Fill> FillTable::getOrStart(proxy::Loop& loop, const UpstreamOptions& upstream,
                                            const std::string& digest,
                                            const std::string& repository_key,
                                            const std::string& remote, bool* joined) {
  std::shared_ptr<Fill> fill;
  {
    std::lock_guard lock(mu_);
    auto it = fills_.find(digest);
    if (joined != nullptr) *joined = it != fills_.end();
    if (it != fills_.end()) return it->second;
    fill = std::make_shared<Fill>(*this, digest, repository_key, remote, upstream);
    fills_.emplace(digest, fill);
    Slots& slots = slots_[upstream.name];
    if (max_per_upstream_ != 0 && slots.running >= max_per_upstream_) {
      slots.waiting.emplace_back(fill, &loop);
      spdlog::debug("fill.queued digest={} upstream={} running={} waiting={}", digest,
                    upstream.name, slots.running, slots.waiting.size());
      return fill;
    }
    ++slots.running;
    fill->holds_slot_ = true;
  }
  startOn(loop, fill);
  return fill;
}

// On `loop`'s thread.
void FillTable::startOn(proxy::Loop& loop, const std::shared_ptr<Fill>& fill) {
  started_.fetch_add(1);
  fill->start(loop, client_for_(loop));
}

size_t FillTable::queued() const {
  std::lock_guard lock(mu_);
  size_t total = 0;
  for (const auto& [name, slots] : slots_) total += slots.waiting.size();
  return total;
}

size_t FillTable::inFlight() const {
  std::lock_guard lock(mu_);
  return fills_.size();
}

std::vector<FillTable::FillInfo> FillTable::snapshot() const {
  std::vector<std::shared_ptr<Fill>> fills;
  {
    std::lock_guard lock(mu_);
    fills.reserve(fills_.size());
    for (const auto& [digest, fill] : fills_) fills.push_back(fill);
  }
  std::vector<FillInfo> out;
  out.reserve(fills.size());
  for (const auto& fill : fills) {
    out.push_back(FillInfo{fill->digest(), fill->upstreamName(), fill->remote(), fill->progress(),
                           fill->attached()});
  }
  std::sort(out.begin(), out.end(),
            [](const FillInfo& a, const FillInfo& b) { return a.digest < b.digest; });
  return out;
}

// A fill ended: its slot passes to the oldest fill waiting on the same upstream, started on
// the loop that asked for it (posted: this may run inside the ending fill's callbacks).
void FillTable::remove(const Fill* fill) {
  std::shared_ptr<Fill> next;
  proxy::Loop* next_loop = nullptr;
  bool idle = false;
  {
    std::lock_guard lock(mu_);
    auto it = fills_.find(fill->digest());
    if (it != fills_.end() && it->second.get() == fill) fills_.erase(it);
    idle = fills_.empty();
    if (fill->holds_slot_) {
      const_cast<Fill*>(fill)->holds_slot_ = false;
      Slots& slots = slots_[fill->upstream_.name];
      --slots.running;
      if (!slots.waiting.empty()) {
        std::tie(next, next_loop) = std::move(slots.waiting.front());
        slots.waiting.pop_front();
        ++slots.running;
        next->holds_slot_ = true;
      } else if (slots.running == 0) {
        slots_.erase(fill->upstream_.name);
      }
    }
  }
  if (idle) {
    std::lock_guard lock(buffers_mu_);
    buffers_.clear();  // the memory goes back to the system between fills
  }
  if (next != nullptr) {
    next_loop->post([this, next, next_loop] { startOn(*next_loop, next); });
  }
}

}  // namespace regcache::upstream
