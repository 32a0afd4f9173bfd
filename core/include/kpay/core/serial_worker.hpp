// One background thread running one job at a time, handed over by one owner
// thread: the second stage of a two-stage pipeline. The processor gathers
// and decodes batch N+1 on its Kafka thread while this thread commits batch N
// to SQLite; at most one job is ever queued or running, so the pipeline holds
// two batches, never more.
//
// Every member is called from the owner thread only. A job's effects are
// visible to the owner once wait_idle() (or the next submit()) returned.
#pragma once

#include <condition_variable>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>

namespace kpay::core {

class SerialWorker {
 public:
  SerialWorker();
  // Finishes the job in hand, then joins.
  ~SerialWorker();
  SerialWorker(const SerialWorker&) = delete;
  SerialWorker& operator=(const SerialWorker&) = delete;

  // Waits for the previous job to finish, then starts `job` and returns.
  void submit(std::function<void()> job);
  // Returns once no job is running. A job that threw rethrows here (or in
  // the next submit()), on the owner thread.
  void wait_idle();
  bool idle() const;

 private:
  void loop();

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::function<void()> job_;  // non-empty while queued or running
  std::exception_ptr error_;
  bool closing_ = false;
  std::thread thread_;  // last: starts once the members above exist
};

}  // namespace kpay::core
