// Loop and BlockingPool: work crosses threads and comes back to the loop.
#include "proxy/loop.h"

#include <atomic>
#include <catch2/catch.hpp>
#include <future>

using regcache::proxy::BlockingPool;
using regcache::proxy::Loop;

TEST_CASE("Loop: post from another thread runs on the loop thread", "[http]") {
  Loop loop;
  std::thread runner([&] { loop.run(); });

  std::promise<std::pair<bool, std::thread::id>> ran;
  loop.post([&] { ran.set_value({loop.inLoopThread(), std::this_thread::get_id()}); });
  auto future = ran.get_future();
  REQUIRE(future.wait_for(std::chrono::seconds(5)) == std::future_status::ready);
  auto [in_loop, id] = future.get();
  CHECK(in_loop);
  CHECK(id == runner.get_id());
  CHECK_FALSE(loop.inLoopThread());

  loop.stop();
  runner.join();
}

TEST_CASE("Loop: stop before run makes run return at once", "[http]") {
  Loop loop;
  loop.stop();
  loop.run();
  std::atomic<bool> ran{false};
  loop.post([&] { ran = true; });  // dropped after stop
  CHECK_FALSE(ran);
}

TEST_CASE("BlockingPool: run does the work off the loop and the result back on it", "[http]") {
  Loop loop;
  std::thread runner([&] { loop.run(); });
  BlockingPool pool(2);

  std::promise<std::tuple<int, bool, bool>> finished;
  std::atomic<bool> work_in_loop{true};
  pool.run(
      loop,
      [&] {
        work_in_loop = loop.inLoopThread();
        return 41;
      },
      [&](int result) {
        finished.set_value({result + 1, loop.inLoopThread(), work_in_loop});
      });
  auto future = finished.get_future();
  REQUIRE(future.wait_for(std::chrono::seconds(5)) == std::future_status::ready);
  auto [value, done_in_loop, worked_in_loop] = future.get();
  CHECK(value == 42);
  CHECK(done_in_loop);
  CHECK_FALSE(worked_in_loop);

  loop.stop();
  runner.join();
}
