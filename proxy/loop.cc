// Event loops and the blocking pool: how work crosses between threads without locks on the
// data path.
#include "proxy/loop.h"

#include <event2/event.h>
#include <event2/thread.h>

#include <cstdlib>

namespace regcache::proxy {

namespace {

// libevent needs its locking callbacks installed before the first event_base is made, so
// that event_active() and event_base_loopbreak() from other threads are safe.
void enableLibeventThreads() {
  static std::once_flag once;
  std::call_once(once, [] {
    if (evthread_use_pthreads() != 0) {
      std::abort();  // the library was built without pthreads: nothing can work
    }
  });
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Loop

Loop::Loop() {
  enableLibeventThreads();
  base_ = event_base_new();
  if (base_ == nullptr) {
    std::abort();  // only fails when out of memory or file descriptors at start-up
  }
  wake_ = event_new(base_, -1, 0, &Loop::onWake, this);
}

Loop::~Loop() {
  event_free(wake_);
  event_base_free(base_);
}

void Loop::post(std::function<void()> fn) {
  {
    std::lock_guard lock(mu_);
    if (stopped_) {
      return;
    }
    pending_.push_back(std::move(fn));
    if (pending_.size() > 1) {
      return;  // an earlier post already activated the wake event
    }
  }
  event_active(wake_, EV_READ, 0);
}

void Loop::run() {
  thread_id_ = std::this_thread::get_id();
  {
    std::lock_guard lock(mu_);
    if (stopped_) {
      return;
    }
  }
  // A stop() that races with the start of the loop is caught by onWake, which stop() also
  // triggers: event_base_loop() clears a loopbreak made before it started.
  event_base_loop(base_, EVLOOP_NO_EXIT_ON_EMPTY);
}

void Loop::stop() {
  {
    std::lock_guard lock(mu_);
    stopped_ = true;
  }
  event_base_loopbreak(base_);
  event_active(wake_, EV_READ, 0);
}

bool Loop::inLoopThread() const { return thread_id_ == std::this_thread::get_id(); }

void Loop::onWake(int /*fd*/, short /*what*/, void* arg) {
  auto* loop = static_cast<Loop*>(arg);
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
