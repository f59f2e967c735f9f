// Event loops and the blocking pool: how work crosses between threads without locks on the
// data path.
#include "proxy/loop.h"

#include <event2/event.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cstdlib>

namespace regcache::proxy {

// ---------------------------------------------------------------------------------------------
// Loop

// The base is made without locks and no libevent call ever crosses threads: other threads
// reach a loop only through post() and stop(), which write to an eventfd the loop reads. The
// locks libevent takes otherwise, on every event_add and every loop turn, were 3-4% of a
// cached manifest GET.
Loop::Loop() {
  event_config* config = event_config_new();
  if (config == nullptr || event_config_set_flag(config, EVENT_BASE_FLAG_NOLOCK) != 0) {
    std::abort();  // out of memory at start-up
  }
  base_ = event_base_new_with_config(config);
  event_config_free(config);
  wake_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (base_ == nullptr || wake_fd_ < 0) {
    std::abort();  // only fails when out of memory or file descriptors at start-up
  }
  wake_ = event_new(base_, wake_fd_, EV_READ | EV_PERSIST, &Loop::onWake, this);
  if (wake_ == nullptr || event_add(wake_, nullptr) != 0) {
    std::abort();
  }
}

Loop::~Loop() {
  event_free(wake_);
  event_base_free(base_);
  ::close(wake_fd_);
}

void Loop::signal() {
  uint64_t one = 1;
  // Fails only when the counter would overflow, and then the loop has a wake-up pending.
  [[maybe_unused]] ssize_t n = ::write(wake_fd_, &one, sizeof one);
}

void Loop::post(std::function<void()> fn) {
  {
    std::lock_guard lock(mu_);
    if (stopped_) {
      return;
    }
    pending_.push_back(std::move(fn));
    if (pending_.size() > 1) {
      return;  // an earlier post already signalled
    }
  }
  signal();
}

void Loop::run() {
  thread_id_ = std::this_thread::get_id();
  {
    std::lock_guard lock(mu_);
    if (stopped_) {
      return;
    }
  }
  // A stop() before the loop started left the eventfd readable: the first turn runs onWake,
  // which breaks the loop.
  event_base_loop(base_, EVLOOP_NO_EXIT_ON_EMPTY);
}

void Loop::stop() {
  {
    std::lock_guard lock(mu_);
    stopped_ = true;
  }
  signal();
}

bool Loop::inLoopThread() const { return thread_id_ == std::this_thread::get_id(); }

void Loop::onWake(int fd, short /*what*/, void* arg) {
  auto* loop = static_cast<Loop*>(arg);
  uint64_t count;
  [[maybe_unused]] ssize_t n = ::read(fd, &count, sizeof count);  // resets the eventfd
  bool stopped;
  {
    std::lock_guard lock(loop->mu_);
    loop->running_.swap(loop->pending_);
    stopped = loop->stopped_;
  }

  // Swapping two vectors keeps both capacities, so a steady stream of posts allocates no
  // vector storage.
  for (auto& fn : loop->running_) {
    fn();
  }
  loop->running_.clear();
  if (stopped) {
    event_base_loopbreak(loop->base_);
  }
}

// ---------------------------------------------------------------------------------------------
// BlockingPool

BlockingPool::BlockingPool(size_t threads) {
  if (threads == 0) {
    threads = 1;
  }
  threads_.reserve(threads);
  for (size_t i = 0; i < threads; ++i) {
    threads_.emplace_back([this] { worker(); });
  }
}

BlockingPool::~BlockingPool() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (auto& thread : threads_) {
    thread.join();
  }
}

void BlockingPool::submit(std::function<void()> job) {
  {
    std::lock_guard lock(mu_);
    jobs_.push_back(std::move(job));
  }
  cv_.notify_one();
}

void BlockingPool::worker() {
  for (;;) {
    std::function<void()> job;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [this] { return stopping_ || !jobs_.empty(); });
      if (jobs_.empty()) {
        return;  // stopping, and the queue is drained
      }
      job = std::move(jobs_.front());
      jobs_.pop_front();
    }
    job();
  }
}

}  // namespace regcache::proxy
