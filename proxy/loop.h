// Event loops (one libevent base per thread) and the blocking pool that keeps fsync, LMDB
// writes and other blocking calls off them.
#pragma once

#include <sys/time.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

struct event_base;
struct event;

namespace regcache::proxy {

// A duration as libevent's timers take it.
inline timeval toTimeval(std::chrono::milliseconds duration) {
  return timeval{static_cast<time_t>(duration.count() / 1000),
                 static_cast<suseconds_t>(duration.count() % 1000 * 1000)};
}

// One event_base driven by one thread. post() may be called from any thread; everything else
// only from the loop's own thread.
class Loop {
 public:
  Loop();
  ~Loop();
  Loop(const Loop&) = delete;
  Loop& operator=(const Loop&) = delete;

  event_base* base() const { return base_; }

  // Runs `fn` on this loop's thread, soon. Thread-safe. Functions posted after stop() are
  // dropped.
  void post(std::function<void()> fn);

  // Runs the loop on the calling thread until stop().
  void run();
  // Thread-safe: makes run() return after the current callback.
  void stop();

  // True on the thread currently inside run().
  bool inLoopThread() const;

 private:
  static void onWake(int fd, short what, void* arg);

  // Tells the loop thread to run onWake: the one thing other threads do to a loop.
  void signal();

  event_base* base_ = nullptr;  // unlocked: only the loop's own thread touches it
  int wake_fd_ = -1;            // an eventfd that post() and stop() write to
  event* wake_ = nullptr;       // reads wake_fd_ and runs onWake on the loop
  std::atomic<std::thread::id> thread_id_;
  std::mutex mu_;
  std::vector<std::function<void()>> pending_;  // guarded by mu_
  std::vector<std::function<void()>> running_;  // loop thread only: the batch onWake runs
  bool stopped_ = false;                        // guarded by mu_
};

// A fixed set of threads for blocking work: fsync, rename, LMDB write transactions, hashing a
// file. Jobs run in FIFO order across the threads.
class BlockingPool {
 public:
  explicit BlockingPool(size_t threads);
  ~BlockingPool();  // finishes queued jobs, then joins

  void submit(std::function<void()> job);

  // Runs `work` on the pool, then `done(result)` on `loop`. `done` must check that whatever it
  // touches still exists (use weak pointers): the client may be gone by then.
  template <typename Work, typename Done>
  void run(Loop& loop, Work work, Done done) {
    submit([&loop, work = std::move(work), done = std::move(done)]() mutable {
      auto result = std::make_shared<decltype(work())>(work());
      loop.post([done = std::move(done), result]() mutable { done(std::move(*result)); });
    });
  }

 private:
  void worker();

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;  // guarded by mu_
  bool stopping_ = false;                   // guarded by mu_
  std::vector<std::thread> threads_;
};

}  // namespace regcache::proxy
