// A group of coroutines that can be cancelled together and waited for, as in
// Beast's advanced_server_flex_awaitable example (task_group): each child is
// spawned with a cancellation slot of its own; emit() delivers a cancellation
// to every child on the child's own executor (a cancellation signal is not
// thread-safe); wait_until() blocks the caller until the group is empty.
//
// The receiver's shutdown is two emits: `total` first (a connection waiting
// for its next request closes; a request already read is answered), then,
// when the grace period is over, `terminal` (everything stops).
// Internal to the receiver; not installed.
#pragma once

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <exception>
#include <list>
#include <memory>
#include <mutex>
#include <utility>

#include "io_types.hpp"

namespace kpay::receiver {

class TaskGroup {
 public:
  TaskGroup() = default;
  TaskGroup(const TaskGroup&) = delete;
  TaskGroup& operator=(const TaskGroup&) = delete;

  // Starts `task` on `executor` as a child of the group. `on_exception` runs
  // (on the child's executor) when the task ends by an exception.
  template <class OnException>
  void spawn(const Executor& executor, Task<void> task, OnException on_exception) {
    auto child = std::make_shared<Child>(executor);
    std::list<std::shared_ptr<Child>>::iterator position;
    {
      std::lock_guard lock(mu_);
      position = children_.insert(children_.end(), child);
    }
    asio::co_spawn(executor, std::move(task),
                   asio::bind_cancellation_slot(
                       child->signal.slot(),
                       [this, child, position, on_exception](std::exception_ptr e) mutable {
                         child->done = true;
                         if (e) on_exception(e);
                         finished(position);
                         // The coroutine's frame still refers to the slot's
                         // handler while this handler runs: release the
                         // child (and its signal) after it has unwound.
                         asio::post(child->executor, [child] {});
                       }));
  }

  // Every child still running receives `type`, on its own executor.
  void emit(asio::cancellation_type type) {
    std::lock_guard lock(mu_);
    for (const auto& child : children_) {
      asio::post(child->executor, [child, type] {
        if (!child->done) child->signal.emit(type);
      });
    }
  }

  // Blocks until every child has finished (true) or `deadline` passed (false).
  bool wait_until(std::chrono::steady_clock::time_point deadline) {
    std::unique_lock lock(mu_);
    return empty_.wait_until(lock, deadline, [&] { return children_.empty(); });
  }

  std::size_t size() const {
    std::lock_guard lock(mu_);
    return children_.size();
  }

 private:
  struct Child {
    explicit Child(Executor e) : executor(std::move(e)) {}
    Executor executor;
    asio::cancellation_signal signal;
    bool done = false;  // the child's executor only
  };

  void finished(std::list<std::shared_ptr<Child>>::iterator position) {
    {
      std::lock_guard lock(mu_);
      children_.erase(position);
    }
    empty_.notify_all();
  }

  mutable std::mutex mu_;
  std::condition_variable empty_;
  std::list<std::shared_ptr<Child>> children_;  // guarded by mu_
};

}  // namespace kpay::receiver
