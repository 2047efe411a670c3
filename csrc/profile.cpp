// Where the time of libtorch's operators goes (`bertkit bench --profile`): a global
// RecordFunction callback, libtorch's own profiling hook (what torch.profiler builds on), that
// sums each operator's self time (its own time minus the operators it called) per name.
#include "bertkit.h"

#include <ATen/record_function.h>

#include <chrono>
#include <cstring>
#include <mutex>
#include <sstream>
#include <string>
#include <unordered_map>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

// An operator running on this thread: when it started and how long its callees took.
struct Frame {
  Clock::time_point start;
  double callees = 0;
};

thread_local std::vector<Frame> running;
std::mutex totals_mutex;
// Per operator name: self seconds and calls.
std::unordered_map<std::string, std::pair<double, int64_t>> totals;
at::CallbackHandle handle = 0;

std::unique_ptr<at::ObserverContext> enter(const at::RecordFunction&) {
  running.push_back(Frame{Clock::now()});
  return nullptr;
}

void leave(const at::RecordFunction& fn, at::ObserverContext*) {
  if (running.empty()) return;  // started before the callback was added
  Frame frame = running.back();
  running.pop_back();
  double seconds = std::chrono::duration<double>(Clock::now() - frame.start).count();
  if (!running.empty()) running.back().callees += seconds;
  std::lock_guard<std::mutex> lock(totals_mutex);
  auto& total = totals[fn.name()];
  total.first += seconds - frame.callees;
  total.second += 1;
}

}  // namespace

extern "C" {

// Starts summing operator times (from zero). 0 on success, -1 on error.
int bertkit_profile_start() {
  return bertkit_guard([&] {
    {
      std::lock_guard<std::mutex> lock(totals_mutex);
      totals.clear();
    }
    running.clear();
    handle = at::addGlobalCallback(at::RecordFunctionCallback(enter, leave).scopes({at::RecordScope::FUNCTION}));
    return 0;
  });
}

// Stops, and writes "name\tself_seconds\tcalls\n" per operator into `out` (at most `cap`
// bytes, NUL-terminated). Returns the bytes the whole text needs (call again with more room
// if that is not less than `cap`), -1 on error.
int bertkit_profile_stop(char* out, int cap) {
  return bertkit_guard([&] {
    if (handle != 0) {
      at::removeCallback(handle);
      handle = 0;
    }
    std::ostringstream text;
    std::lock_guard<std::mutex> lock(totals_mutex);
    for (const auto& [name, total] : totals) {
      text << name << '\t' << total.first << '\t' << total.second << '\n';
    }
    std::string s = text.str();
    if (cap > 0) {
      size_t n = std::min(s.size(), static_cast<size_t>(cap - 1));
      std::memcpy(out, s.data(), n);
      out[n] = '\0';
    }
    return static_cast<int>(s.size());
  });
}

}  // extern "C"
