// The harness that starts the services of the integration tests.
#include "tests/integration/process.h"

#include <gtest/gtest.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

namespace crm::testing {
namespace {

TEST(ProcessTest, AProgramThatCannotBeStartedIsReported) {
  Process missing({"/nonexistent/crm-service"}, {}, "/dev/null");
  EXPECT_FALSE(missing.Start());
  EXPECT_FALSE(missing.running());
}

// A service that exits at start (its port taken) is seen as gone before
// anyone reaps it, and its exit status is still there to read.
TEST(ProcessTest, AProcessThatExitedIsNotRunningAndKeepsItsStatus) {
  Process quitter({"/bin/sh", "-c", "exit 3"}, {}, "/dev/null");
  ASSERT_TRUE(quitter.Start());
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (quitter.running() && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(5));
  EXPECT_FALSE(quitter.running());
  EXPECT_EQ(quitter.Wait(absl::Seconds(5)), 3);

  Process sleeper({"/bin/sleep", "60"}, {}, "/dev/null");
  ASSERT_TRUE(sleeper.Start());
  EXPECT_TRUE(sleeper.running());
  sleeper.Kill(SIGKILL);
  EXPECT_FALSE(sleeper.running());
}

// A test killed by a signal or a timeout runs no destructors: its services
// must not live on, holding CPU and ports for the tests after it.
TEST(ProcessTest, AChildDiesWithTheProcessThatStartedIt) {
  // Orphans are adopted by this process, so it can reap the one below.
  ASSERT_EQ(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
  int pid_pipe[2];
  ASSERT_EQ(pipe(pid_pipe), 0);
  const pid_t starter = fork();
  ASSERT_GE(starter, 0);
  if (starter == 0) {
    close(pid_pipe[0]);
    Process sleeper({"/bin/sleep", "60"}, {}, "/dev/null");
    const pid_t pid = sleeper.Start() ? sleeper.pid() : -1;
    (void)!write(pid_pipe[1], &pid, sizeof(pid));
    pause();  // until killed
    _exit(0);
  }
  close(pid_pipe[1]);
  pid_t sleeper = -1;
  ASSERT_EQ(read(pid_pipe[0], &sleeper, sizeof(sleeper)), static_cast<ssize_t>(sizeof(sleeper)));
  close(pid_pipe[0]);
  ASSERT_GT(sleeper, 0);

  ASSERT_EQ(kill(starter, SIGKILL), 0);
  int status = 0;
  ASSERT_EQ(waitpid(starter, &status, 0), starter);

  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  pid_t reaped = 0;
  while ((reaped = waitpid(sleeper, &status, WNOHANG)) <= 0 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  if (reaped <= 0) {
    kill(sleeper, SIGKILL);
    waitpid(sleeper, &status, 0);
    FAIL() << "the child outlived the process that started it";
  }
  ASSERT_EQ(reaped, sleeper);
  EXPECT_TRUE(WIFSIGNALED(status));
  EXPECT_EQ(WTERMSIG(status), SIGKILL);
}

// Paths under the checkout go through a shell: one with a space or a quote
// must stay one word.
TEST(ProcessTest, AShellQuotedWordStaysOneWord) {
  for (const std::string word : {"/tmp/my crm/crmctl", "/home/o'brien/crm", "a$b`c`\\d\"e"}) {
    EXPECT_EQ(RunCommand("printf %s " + ShellQuote(word)), word);
  }
}

}  // namespace
}  // namespace crm::testing
