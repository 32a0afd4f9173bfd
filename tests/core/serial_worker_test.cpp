#include "kpay/core/serial_worker.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <stdexcept>
#include <thread>
#include <vector>

namespace kpay::core {
namespace {

TEST(SerialWorker, RunsJobsInOrderOnItsOwnThread) {
  SerialWorker worker;
  std::vector<int> seen;  // written by the worker, read after wait_idle()
  std::thread::id where;
  for (int i = 0; i < 100; ++i) {
    worker.submit([&, i] {
      seen.push_back(i);
      where = std::this_thread::get_id();
    });
  }
  worker.wait_idle();
  ASSERT_EQ(seen.size(), 100u);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(seen[static_cast<std::size_t>(i)], i);
  EXPECT_NE(where, std::this_thread::get_id());
  EXPECT_TRUE(worker.idle());
}

TEST(SerialWorker, SubmitWaitsForTheJobInHand) {
  SerialWorker worker;
  std::promise<void> release;
  auto released = release.get_future().share();
  std::atomic<int> running{0};
  std::atomic<int> most{0};
  auto job = [&] {
    int now = ++running;
    most = std::max(most.load(), now);
    released.wait();
    --running;
  };
  worker.submit(job);
  EXPECT_FALSE(worker.idle());
  // The second submit may only return once the first job has finished.
  auto second = std::async(std::launch::async, [&] { worker.submit(job); });
  EXPECT_EQ(second.wait_for(std::chrono::milliseconds(50)), std::future_status::timeout);
  release.set_value();
  second.get();
  worker.wait_idle();
  EXPECT_EQ(most.load(), 1);
}

TEST(SerialWorker, AJobsExceptionReachesTheOwner) {
  SerialWorker worker;
  worker.submit([] { throw std::runtime_error("disk full"); });
  EXPECT_THROW(worker.wait_idle(), std::runtime_error);
  // Reported once; the worker keeps working.
  bool ran = false;
  worker.submit([&] { ran = true; });
  worker.wait_idle();
  EXPECT_TRUE(ran);
}

TEST(SerialWorker, DestructionFinishesTheJobInHand) {
  bool done = false;
  {
    SerialWorker worker;
    worker.submit([&] {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      done = true;
    });
  }
  EXPECT_TRUE(done);
}

}  // namespace
}  // namespace kpay::core
