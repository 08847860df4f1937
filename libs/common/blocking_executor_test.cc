#include "libs/common/blocking_executor.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <string>

#include "absl/synchronization/notification.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/grpcpp.h"

namespace crm {
namespace {

TEST(BlockingExecutorTest, TryRunRefusesBeyondTheQueueBoundRunDoesNot) {
  BlockingExecutor executor(1, /*max_queued=*/1);
  absl::Notification release, ran_all;
  std::atomic<int> ran{0};
  executor.Run([&] { release.WaitForNotification(); });
  // The worker may not have taken the first task yet: wait until it has.
  absl::Notification taken;
  executor.Run([&] { taken.Notify(); });
  release.Notify();
  taken.WaitForNotification();

  absl::Notification hold;
  executor.Run([&] { hold.WaitForNotification(); });
  // The worker is busy or about to be; one waits in the queue at most.
  while (!executor.TryRun([&] { ++ran; })) {
  }
  EXPECT_FALSE(executor.TryRun([&] { ++ran; })) << "the queue holds one task";
  executor.Run([&] {
    ++ran;
    ran_all.Notify();
  });  // admitted work queues anyway
  hold.Notify();
  ran_all.WaitForNotification();
  EXPECT_EQ(ran.load(), 2);
}

// A unary service whose handler bodies run on a one-thread executor with a
// queue of one, to stage overload and calls abandoned while they wait.
class CountingHealth final : public grpc::health::v1::Health::CallbackService {
 public:
  explicit CountingHealth(BlockingExecutor& executor) : executor_(executor) {}
  grpc::ServerUnaryReactor* Check(grpc::CallbackServerContext* ctx,
                                  const grpc::health::v1::HealthCheckRequest*,
                                  grpc::health::v1::HealthCheckResponse*) override {
    return RunUnary(ctx, executor_, [this] {
      ++bodies;
      return absl::OkStatus();
    });
  }
  std::atomic<int> bodies{0};

 private:
  BlockingExecutor& executor_;
};

TEST(BlockingExecutorTest, OverloadIsResourceExhaustedAndAbandonedCallsDoNotRun) {
  BlockingExecutor executor(1, /*max_queued=*/1);
  CountingHealth service(executor);
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&service);
  auto server = builder.BuildAndStart();
  ASSERT_NE(server, nullptr);
  auto channel =
      grpc::CreateChannel("127.0.0.1:" + std::to_string(port), grpc::InsecureChannelCredentials());
  // Connected first: the 300 ms below are for the queue, not the handshake
  // (a call that never reached the server would leave the slot free).
  ASSERT_TRUE(
      channel->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(30)));
  auto stub = grpc::health::v1::Health::NewStub(channel);

  // The one worker is busy; its queue is empty.
  absl::Notification busy, release;
  executor.Run([&] {
    busy.Notify();
    release.WaitForNotification();
  });
  busy.WaitForNotification();

  grpc::health::v1::HealthCheckRequest req;
  grpc::health::v1::HealthCheckResponse resp;
  // Takes the one queue slot and waits there until its client gives up.
  grpc::ClientContext abandoned;
  abandoned.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(300));
  EXPECT_EQ(stub->Check(&abandoned, req, &resp).error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  // Its task still holds the slot: the next call is refused at once.
  grpc::ClientContext refused;
  refused.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  EXPECT_EQ(stub->Check(&refused, req, &resp).error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);

  release.Notify();
  // Behind the abandoned task: once this runs, the queue is empty again.
  absl::Notification drained;
  executor.Run([&] { drained.Notify(); });
  drained.WaitForNotification();
  grpc::ClientContext later;
  ASSERT_TRUE(stub->Check(&later, req, &resp).ok());
  EXPECT_EQ(service.bodies.load(), 1) << "only the last call's body ran";
  server->Shutdown();
}

}  // namespace
}  // namespace crm
