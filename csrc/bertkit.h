// What every C entry point of csrc/ shares: exceptions never cross into Rust. A failed call
// returns -1 and keeps libtorch's message for bertkit_last_error (read by src/ffi.rs).
#pragma once

#include <exception>
#include <string>

// The message of the last failed call on this thread.
extern thread_local std::string bertkit_error;

// Runs `body` (returning an int status, 0 or more on success); an exception becomes -1 with
// its message kept.
template <typename F>
int bertkit_guard(F&& body) {
  try {
    return body();
  } catch (const std::exception& e) {
    bertkit_error = e.what();
  } catch (...) {
    bertkit_error = "unknown C++ exception";
  }
  return -1;
}
