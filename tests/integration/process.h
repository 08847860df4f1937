#pragma once

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

extern char** environ;

namespace crm::testing {

// A child process of the test with its output in a log file; killed (and
// reaped) when the object dies so a failing test leaves nothing behind.
class Process {
 public:
  Process(std::vector<std::string> argv, std::vector<std::string> env, std::string log_path)
      : argv_(std::move(argv)), env_(std::move(env)), log_path_(std::move(log_path)) {}
  ~Process() { Kill(SIGKILL); }
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  // Starts the child. It is killed when the thread that started it ends
  // (PR_SET_PDEATHSIG): a test killed by a signal or a timeout, whose
  // destructors never run, does not leave services running. Start the
  // processes of a test from its main thread.
  bool Start() {
    // Everything the child needs is built before fork: after it, in a
    // threaded process, the child may make only async-signal-safe calls.
    std::vector<char*> args;
    for (auto& a : argv_) args.push_back(a.data());
    args.push_back(nullptr);
    std::vector<std::string> env_strings;
    for (char** e = environ; *e != nullptr; ++e) env_strings.emplace_back(*e);
    env_strings.insert(env_strings.end(), env_.begin(), env_.end());
    std::vector<char*> envp;
    for (auto& e : env_strings) envp.push_back(e.data());
    envp.push_back(nullptr);
    // The child reports a failed exec on this pipe; a successful one
    // closes it (O_CLOEXEC) with nothing written.
    int report[2];
    if (pipe2(report, O_CLOEXEC) != 0) return false;
    const pid_t parent = getpid();
    const pid_t pid = fork();
    if (pid < 0) {
      close(report[0]);
      close(report[1]);
      return false;
    }
    if (pid == 0) {
      close(report[0]);
      int err = 0;
      if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent) {
        err = ECHILD;  // the parent is already gone
      } else if (const int fd = open(log_path_.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
                 fd < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0) {
        err = errno;
      } else {
        if (fd > 2) close(fd);
        execve(args[0], args.data(), envp.data());
        err = errno;
      }
      (void)!write(report[1], &err, sizeof(err));
      _exit(127);
    }
    close(report[1]);
    int err = 0;
    ssize_t n;
    while ((n = read(report[0], &err, sizeof(err))) < 0 && errno == EINTR) {
    }
    close(report[0]);
    pid_ = pid;
    if (n > 0) {
      Wait(absl::Seconds(5));
      return false;
    }
    return true;
  }

  pid_t pid() const { return pid_; }

  void Signal(int sig) const {
    if (pid_ > 0) ::kill(pid_, sig);
  }

  // Sends `sig` and reaps; returns the exit status (or -signal).
  int Kill(int sig) {
    if (pid_ <= 0) return 0;
    ::kill(pid_, sig);
    return Wait(absl::Seconds(30));
  }

  // Waits for exit; on timeout kills hard. Returns exit code or -signal.
  int Wait(absl::Duration timeout) {
    if (pid_ <= 0) return 0;
    const absl::Time deadline = absl::Now() + timeout;
    int status = 0;
    while (waitpid(pid_, &status, WNOHANG) == 0) {
      if (absl::Now() > deadline) {
        ::kill(pid_, SIGKILL);
        waitpid(pid_, &status, 0);
        pid_ = -1;
        return -SIGKILL;
      }
      absl::SleepFor(absl::Milliseconds(20));
    }
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
  }

  // False once the process has exited, reaped or not (a zombie still takes
  // signals); leaves the exit status for Wait().
  bool running() const {
    if (pid_ <= 0) return false;
    siginfo_t info{};
    if (waitid(P_PID, static_cast<id_t>(pid_), &info, WEXITED | WNOHANG | WNOWAIT) != 0) {
      return false;
    }
    return info.si_pid == 0;
  }

  std::string Log() const {
    std::ifstream in(log_path_);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }

 private:
  std::vector<std::string> argv_;
  std::vector<std::string> env_;
  std::string log_path_;
  pid_t pid_ = -1;
};

// `word` as one shell word, whatever it holds (the build dir is under the
// checkout, whose path may hold spaces or quotes).
inline std::string ShellQuote(absl::string_view word) {
  return absl::StrCat("'", absl::StrReplaceAll(word, {{"'", "'\\''"}}), "'");
}

#ifdef CRM_CTL_BIN
// crmctl, for a shell command line.
inline std::string CtlCommand() { return ShellQuote(CRM_CTL_BIN); }
#endif

// Runs a shell command and returns its standard output.
inline std::string RunCommand(const std::string& command) {
  std::string out;
  std::unique_ptr<FILE, int (*)(FILE*)> pipe(popen(command.c_str(), "r"), pclose);
  if (!pipe) return out;
  std::array<char, 512> buf{};
  while (fgets(buf.data(), buf.size(), pipe.get()) != nullptr) out += buf.data();
  return out;
}

#ifdef CRM_CTL_BIN
// `crmctl digest analytics` of a data dir: equal digests, identical views.
inline std::string AnalyticsDigest(const std::string& data_dir) {
  return RunCommand(CtlCommand() + " digest analytics --data-dir=" + data_dir);
}
#endif

}  // namespace crm::testing
